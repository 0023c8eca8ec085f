//! The supervisor: makes what runs on this node match the newest list.
//!
//! It is synchronous and owns no I/O of its own — processes go through a
//! [`Runtime`], time is passed in, slugs are asked for and handed back — so
//! the whole policy (start-new-then-stop-old, back-off, crash detection,
//! re-adoption, SIGTERM→SIGKILL) is unit-tested with a test double.
//!
//! Each desired `(instance, release)` is a *slot*. A slot whose release is
//! no longer desired keeps running until the slot replacing it is up (or has
//! crashed), then it is stopped; a slot whose instance is gone is stopped at
//! once.

use crate::runtime::{ProcRecord, Runtime, StartRequest, StopSignal};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zeroku_conf::config::WorkerConfig;
use zeroku_conf::manifest::OnChange;
use zeroku_conf::{InstanceSpec, InstanceState, InstanceStatus, NodeList};

mod addrs;
mod discovery;

/// A slot: instance id, release and incarnation (`ps:restart`). A new
/// release or incarnation is a new slot next to the old one.
type Key = (String, u32, u32);

/// The process type that serves HTTP on `$PORT`.
const WEB: &str = "web";

/// Config var naming a path a new `web` process must answer with 2xx/3xx
/// before it counts as up (like Dokku's checks).
pub const HEALTHCHECK_VAR: &str = "HEALTHCHECK_PATH";

/// A process this worker started (or adopted).
#[derive(Debug)]
struct Proc {
    rec: ProcRecord,
    /// The slug it runs from, when known (not for adopted processes no
    /// list claimed).
    slug: Option<String>,
    since: Instant,
    up: bool,
    /// When it came up: the release it replaces drains from then on.
    up_at: Option<Instant>,
    /// When SIGTERM was sent.
    term_at: Option<Instant>,
    /// For a handler process: its spec, whose relays must outlive a
    /// replacement until the process itself has exited.
    handler: Option<InstanceSpec>,
    killed: bool,
}

/// Whether an add-on's server is to follow another primary than it did (a failover made it a
/// standby, or its primary moved): it starts again as a standby of that one. (A standby
/// promoted to primary is not restarted: it was promoted where it runs.)
fn follows_other(old: &InstanceSpec, new: &InstanceSpec) -> bool {
    const KEYS: [&str; 2] = ["ZEROKU_ADDON_PRIMARY_HOST", "ZEROKU_ADDON_PRIMARY_PORT"];
    let of = |s: &InstanceSpec| KEYS.map(|k| s.env.get(k).cloned());
    new.addon.is_some() && new.env.contains_key(KEYS[0]) && of(old) != of(new)
}

/// `pid N`, or `container ID` for a container.
fn what(rec: &ProcRecord) -> String {
    match &rec.container {
        Some(c) => format!("container {}", &c[..c.len().min(12)]),
        None => format!("pid {}", rec.pid),
    }
}

/// Whether nothing on this host is bound to `port` now.
fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// How the supervisor names an app's unpacked slug: `<app>/<sha256>`. Each
/// app has its own copy, readable by its uid only, even when two apps run
/// the same image.
pub fn slug_key(spec: &InstanceSpec) -> String {
    format!("{}/{}", spec.app, spec.slug.sha256)
}

impl Proc {
    /// The process runs `spec` (a handler keeps its spec for its relays).
    fn serving(mut self, spec: &InstanceSpec) -> Proc {
        self.handler = (!spec.handler.is_empty()).then(|| spec.clone());
        self
    }
}

#[derive(Debug)]
struct Slot {
    spec: InstanceSpec,
    desired: bool,
    proc: Option<Proc>,
    /// `$PORT`, chosen at the first start; 0 until then.
    port: u16,
    restarts: u32,
    /// Restarts within the last minute.
    recent: VecDeque<Instant>,
    backoff: Duration,
    next_start: Instant,
    last_exit: Option<String>,
    crashed: bool,
    /// A one-off that has exited: it is not started again.
    done: bool,
}

impl Slot {
    fn new(
        spec: InstanceSpec,
        desired: bool,
        proc: Option<Proc>,
        cfg: &WorkerConfig,
        now: Instant,
    ) -> Slot {
        Slot {
            spec,
            desired,
            port: proc.as_ref().map_or(0, |p| p.rec.port),
            proc,
            restarts: 0,
            recent: VecDeque::new(),
            backoff: Duration::from_millis(cfg.backoff_initial_ms),
            next_start: now,
            last_exit: None,
            crashed: false,
            done: false,
        }
    }

    /// The instance failed (exited, or could not start): wait the back-off,
    /// double it, and mark the slot crashed after too many restarts within
    /// a minute.
    fn failed(&mut self, why: String, now: Instant, cfg: &WorkerConfig) -> Duration {
        let delay = self.backoff;
        self.last_exit = Some(why);
        self.next_start = now + delay;
        self.backoff = (self.backoff * 2).min(Duration::from_millis(cfg.backoff_max_ms));
        delay
    }

    /// A new process of this slot is starting after a failure.
    fn restarted(&mut self, now: Instant, cfg: &WorkerConfig) {
        self.restarts += 1;
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() > cfg.crash_restarts_per_minute as usize {
            self.crashed = true;
        }
    }
}

/// Something the supervisor wants the outside world to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Fetch and unpack this slug for this app (the key is [`slug_key`]),
    /// then call [`Supervisor::slug_ready`] (or [`Supervisor::slug_failed`]).
    NeedSlug(String),
    /// A platform log line about an instance.
    System {
        app: String,
        instance: String,
        release: u32,
        line: String,
    },
    /// A process is gone for good: read its last log lines, then drop them.
    Gone(ProcRecord),
}

pub struct Supervisor<R: Runtime> {
    rt: R,
    cfg: WorkerConfig,
    node: String,
    generation: u64,
    slots: HashMap<Key, Slot>,
    /// Processes being stopped, no longer tied to a desired slot.
    stopping: Vec<Proc>,
    /// Adopted at start-up, waiting for the first list to claim them.
    adopted: Vec<Proc>,
    slugs: HashMap<String, PathBuf>,
    asked: HashSet<String>,
    events: Vec<Event>,
    changed: bool,
    /// Where handler relays put their `ipc://` sockets (`None`: no relays,
    /// handlers get remote frontends' TCP endpoints as they are).
    relay_dir: Option<PathBuf>,
    /// Where add-on servers keep their data: `<addons_dir>/<add-on name>`.
    addons_dir: Option<PathBuf>,
    /// `$PORT`s held against the other workers of this host.
    ports: crate::ports::PortClaims,
    /// Instances were stopped for lack of word from the master ([`Supervisor::master_silent`])
    /// and nothing has been heard since.
    silenced: bool,
    /// When word came back after such a silence ([`Supervisor::heard`]).
    heard_again: Option<Instant>,
    /// The instances that silence stopped: only they wait before starting again.
    silenced_ids: HashSet<String>,
    /// Where instances' requirement files are written ([`crate::require`]);
    /// `None`: only the variables.
    require_dir: Option<PathBuf>,
    /// The local port of each (app, requirement) with a stable address on this node
    /// ([`crate::forward`]), kept in `<require_dir>/ports.json` across restarts.
    local_ports: std::collections::BTreeMap<(String, String), u16>,
}

impl<R: Runtime> Supervisor<R> {
    /// Ports are claimed in `dir`, shared by every worker of this host (the
    /// ports adopted processes hold are claimed at once).
    pub fn set_port_claims(&mut self, dir: &std::path::Path) {
        self.ports = crate::ports::PortClaims::new(Some(dir));
        let held: Vec<u16> = self
            .adopted
            .iter()
            .map(|p| p.rec.port)
            .chain(self.local_ports.values().copied())
            .collect();
        for p in held.into_iter().filter(|p| *p != 0) {
            self.ports.claim(p);
        }
    }

    /// Handler processes from now on reach remote frontends through relays
    /// with sockets under `dir`.
    /// Where add-on servers keep their data (`<data>/addons`).
    pub fn set_addons_dir(&mut self, dir: PathBuf) {
        self.addons_dir = Some(dir);
    }

    pub fn set_relay_dir(&mut self, dir: PathBuf) {
        self.relay_dir = Some(dir);
    }

    /// Instances' requirement files go under `dir` (`<data>/require`), with the ports of the
    /// stable addresses an earlier run gave out.
    pub fn set_require_dir(&mut self, dir: PathBuf) {
        self.local_ports = addrs::load_ports(&dir);
        for p in self.local_ports.values().copied().collect::<Vec<_>>() {
            self.ports.claim(p);
        }
        self.require_dir = Some(dir);
    }

    /// The specs of the handler processes running (or still stopping):
    /// what the relays must serve.
    pub fn running_handlers(&self) -> Vec<&InstanceSpec> {
        self.slots
            .values()
            .filter_map(|s| s.proc.as_ref())
            .chain(&self.stopping)
            .filter_map(|p| p.handler.as_ref())
            .collect()
    }

    /// Re-adopts the processes an earlier run of the worker left running.
    pub fn new(rt: R, cfg: WorkerConfig, now: Instant) -> Supervisor<R> {
        let found = rt.adopt();
        let mut events = Vec::new();
        for rec in found.exited {
            rt.kill_leftovers(&rec);
            events.push(Event::System {
                app: rec.app.clone(),
                instance: rec.instance.clone(),
                release: rec.release,
                line: format!(
                    "Process (pid {}) exited while the worker was not running",
                    rec.pid
                ),
            });
            events.push(Event::Gone(rec));
        }
        let adopted = found
            .running
            .into_iter()
            .map(|rec| {
                tracing::info!(instance.id = %rec.instance, proc.pid = rec.pid, release = rec.release, "re-adopted running process");
                Proc {
                    rec,
                    slug: None,
                    since: now,
                    up: true,
                    up_at: Some(now),
                    term_at: None,
                    killed: false,
                    handler: None,
                }
            })
            .collect();
        Supervisor {
            rt,
            node: cfg.node.clone(),
            cfg,
            generation: 0,
            slots: HashMap::new(),
            stopping: Vec::new(),
            adopted,
            slugs: HashMap::new(),
            asked: HashSet::new(),
            events,
            changed: true,
            relay_dir: None,
            addons_dir: None,
            ports: Default::default(),
            silenced: false,
            heard_again: None,
            silenced_ids: HashSet::new(),
            require_dir: None,
            local_ports: Default::default(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether anything reportable changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Every process record this worker watches (for log tailing).
    pub fn records(&self) -> Vec<&ProcRecord> {
        self.slots
            .values()
            .filter_map(|s| s.proc.as_ref())
            .chain(&self.stopping)
            .chain(&self.adopted)
            .map(|p| &p.rec)
            .collect()
    }

    /// Slugs a slot or a stopping process still needs on disk.
    /// The runtime the supervisor drives.
    pub fn runtime(&self) -> &R {
        &self.rt
    }

    /// The number of app `app` (its uid is the worker's base plus this), if
    /// a slot of it is known.
    pub fn app_seq(&self, app: &str) -> Option<u32> {
        self.slots
            .values()
            .find(|s| s.spec.app == app)
            .map(|s| s.spec.app_seq)
    }

    /// The slug keys ([`slug_key`]) a slot or a stopping process uses.
    pub fn slugs_in_use(&self) -> HashSet<String> {
        self.slots
            .values()
            .map(|s| slug_key(&s.spec))
            .chain(self.stopping.iter().filter_map(|p| p.slug.clone()))
            .collect()
    }

    pub fn slug_ready(&mut self, key: &str, dir: PathBuf) {
        self.asked.remove(key);
        self.slugs.insert(key.to_string(), dir);
    }

    /// A slug could not be fetched: the slots waiting for it show why and
    /// ask again after their back-off.
    pub fn slug_failed(&mut self, key: &str, why: &str, now: Instant) {
        self.asked.remove(key);
        for slot in self.slots.values_mut() {
            if slot.desired && slot.proc.is_none() && slug_key(&slot.spec) == key {
                slot.failed(format!("cannot fetch slug: {why}"), now, &self.cfg);
                self.changed = true;
            }
        }
    }

    /// Applies a node list if it is not older than the one applied.
    pub fn apply(&mut self, list: NodeList, now: Instant) -> bool {
        if list.node != self.node {
            tracing::warn!(list.node = %list.node, "ignored a list for another node");
            return false;
        }
        if list.generation < self.generation {
            tracing::debug!(
                generation = list.generation,
                current = self.generation,
                "ignored an older list"
            );
            return false;
        }
        let fresh = list.generation > self.generation;
        self.generation = list.generation;
        for slot in self.slots.values_mut() {
            slot.desired = false;
        }
        let mut wanted_ids = HashMap::new();
        let mut notices = Vec::new();
        for spec in list.instances {
            let key = (spec.id.clone(), spec.release, spec.restart);
            wanted_ids.insert(spec.id.clone(), spec.clone());
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.desired = true;
                // Same release, other environment or command (e.g. handler
                // endpoints after a frontend joined): restart it.
                // Not an add-on's server for its environment: that only seeds its first
                // start (a rotated password is the server's own business by then).
                let providers = discovery::changed(&slot.spec, &spec);
                // `restart` restarts for new providers, not for none: the process keeps
                // what it had until some are back (its file says none meanwhile).
                let changed = (slot.spec.env != spec.env && spec.addon.is_none())
                    || follows_other(&slot.spec, &spec)
                    || slot.spec.command != spec.command
                    || slot.spec.stack != spec.stack
                    || slot.spec.handler != spec.handler
                    || providers
                        .iter()
                        .any(|r| r.on_change == OnChange::Restart && !r.addrs.is_empty());
                if !changed && !providers.is_empty() {
                    notices.push((key.clone(), providers, true));
                }
                slot.spec = spec;
                if changed {
                    if let Some(p) = slot.proc.take() {
                        tracing::info!(instance.id = %key.0, "environment changed: restarting");
                        slot.next_start = now;
                        self.stop(p, now);
                    }
                }
                continue;
            }
            let claimed = self
                .claim_adopted(&key, Some(&slug_key(&spec)))
                .map(|p| p.serving(&spec));
            // An add-on's server re-adopted as a standby that is not running as one (the
            // master failed over while this worker was away): it starts again as a standby.
            let claimed = match claimed {
                Some(p) if self.runs_as_primary(&spec) => {
                    tracing::warn!(instance.id = %spec.id, "a primary that is to be a standby: restarting it as one");
                    self.stop(p, now);
                    None
                }
                other => other,
            };
            if claimed.is_some() && !spec.requires.is_empty() {
                // Started by an earlier run of the worker: its files may be older than this
                // list.
                notices.push((key.clone(), Vec::new(), false));
            }
            let slot = Slot::new(spec, true, claimed, &self.cfg, now);
            self.slots.insert(key, slot);
        }
        // Adopted processes of an instance that is wanted at another
        // release become old slots: they run until their replacement is up.
        // The rest are stopped.
        for p in std::mem::take(&mut self.adopted) {
            match wanted_ids.get(&p.rec.instance) {
                Some(newer) => {
                    // A process of an earlier incarnation (the worker restarted
                    // during a `ps:restart`) takes a number no slot has.
                    let mut restart = newer.restart;
                    while self
                        .slots
                        .contains_key(&(p.rec.instance.clone(), p.rec.release, restart))
                    {
                        restart = restart.wrapping_sub(1);
                    }
                    let key = (p.rec.instance.clone(), p.rec.release, restart);
                    let spec = InstanceSpec {
                        release: p.rec.release,
                        restart,
                        ..newer.clone()
                    };
                    let p = p.serving(&spec);
                    self.slots
                        .insert(key, Slot::new(spec, false, Some(p), &self.cfg, now));
                }
                None => {
                    tracing::info!(instance.id = %p.rec.instance, proc.pid = p.rec.pid, "adopted process is no longer wanted");
                    self.stop(p, now);
                }
            }
        }
        // Processes of an earlier release still running (draining, or their replacement
        // not up): the same providers, for the requirements they share with the new one.
        for (key, slot) in self.slots.iter_mut() {
            let Some(newer) = wanted_ids.get(&key.0) else {
                continue;
            };
            if slot.desired || slot.proc.is_none() || slot.spec.requires.is_empty() {
                continue;
            }
            let mut now_has = slot.spec.clone();
            for r in &mut now_has.requires {
                if let Some(n) = newer.requires.iter().find(|n| n.name == r.name) {
                    r.addrs.clone_from(&n.addrs);
                }
            }
            let providers: Vec<_> = discovery::changed(&slot.spec, &now_has)
                .into_iter()
                .filter(|r| r.on_change != OnChange::Restart)
                .collect();
            slot.spec = now_has;
            if !providers.is_empty() {
                notices.push((key.clone(), providers, true));
            }
        }
        for (key, providers, tell) in notices {
            self.providers_changed(&key, &providers, tell);
        }
        self.gc_require_dirs();
        self.changed = true;
        fresh
    }

    fn claim_adopted(&mut self, key: &Key, slug: Option<&String>) -> Option<Proc> {
        let i = self
            .adopted
            .iter()
            .position(|p| p.rec.instance == key.0 && p.rec.release == key.1)?;
        // (Any incarnation: the record does not keep it.)
        let mut p = self.adopted.swap_remove(i);
        p.slug = slug.cloned();
        Some(p)
    }

    /// Whether `spec` is an add-on's standby whose server, as its data directory says, does
    /// not run as a standby (PostgreSQL's `standby.signal`; a Redis file without `replicaof`,
    /// which its start script writes and a promotion rewrites).
    fn runs_as_primary(&self, spec: &InstanceSpec) -> bool {
        let (Some(run), Some(dir)) = (&spec.addon, &self.addons_dir) else {
            return false;
        };
        if !spec.env.contains_key("ZEROKU_ADDON_PRIMARY_HOST") {
            return false;
        }
        let dir = dir.join(&spec.app);
        match run.kind.as_str() {
            "postgres" => !dir.join("data/standby.signal").exists(),
            "redis" => std::fs::read_to_string(dir.join("redis.conf"))
                .is_ok_and(|c| !c.lines().any(|l| l.starts_with("replicaof "))),
            _ => false,
        }
    }

    /// A port in the configured range that no process of ours uses and that
    /// nothing else on the machine has bound.
    /// The ports slots, stopping and adopted processes hold.
    fn ports_in_use(&self) -> HashSet<u16> {
        self.slots
            .values()
            .map(|s| s.port)
            .chain(self.stopping.iter().map(|p| p.rec.port))
            .chain(self.adopted.iter().map(|p| p.rec.port))
            .chain(self.local_ports.values().copied())
            .filter(|p| *p != 0)
            .collect()
    }

    /// A port no instance of this worker holds, no other worker of this host
    /// has claimed, and nothing on this host is bound to.
    fn free_port(&mut self) -> Option<u16> {
        let used = self.ports_in_use();
        self.ports.keep_only(&used);
        (self.cfg.port_min..=self.cfg.port_max)
            .find(|p| !used.contains(p) && bindable(*p) && self.ports.claim(*p))
    }

    /// Something came from the master. After a silence that stopped instances, the first
    /// messages may be lists published before it began (held in the network while it was cut
    /// off) and still naming what the master has moved since: instances of apps with
    /// `stop_when_lost_ms` are started again only once that long has passed since word came
    /// back (at least three republish intervals), by which time the master has sent this
    /// node's current list (it resends a list to a node whose heartbeat names an older one).
    pub fn heard(&mut self, now: Instant) {
        if std::mem::take(&mut self.silenced) {
            self.heard_again = Some(now);
        } else if self
            .heard_again
            .is_some_and(|t| now.duration_since(t) > Duration::from_secs(3600))
        {
            // (Long past any hold: what that silence stopped is forgotten.)
            self.heard_again = None;
            self.silenced_ids.clear();
        }
    }

    /// Nothing has come from the master for `silent`: the instances of apps
    /// whose `stop_when_lost_ms` that passes stop, as if their list no
    /// longer had them (the master has moved them elsewhere by then). The
    /// next list the master sends decides again.
    pub fn master_silent(&mut self, silent: Duration) {
        let mut lost = Vec::new();
        for s in self.slots.values_mut() {
            let limit = s.spec.stop_when_lost_ms.map(Duration::from_millis);
            if s.desired && limit.is_some_and(|l| silent >= l) {
                s.desired = false;
                self.silenced = true;
                self.silenced_ids.insert(s.spec.id.clone());
                lost.push((s.spec.app.clone(), s.spec.id.clone(), s.spec.release));
            }
        }
        for (app, id, release) in lost {
            let line = format!(
                "No word from the master for {} s: stopping (the app's stop_when_lost_ms)",
                silent.as_secs()
            );
            self.system(&app, &id, release, line);
            self.changed = true;
        }
    }

    fn system(&mut self, app: &str, instance: &str, release: u32, line: String) {
        self.events.push(Event::System {
            app: app.to_string(),
            instance: instance.to_string(),
            release,
            line,
        });
    }

    fn stop(&mut self, mut p: Proc, now: Instant) {
        if p.term_at.is_none() {
            let msg = format!("Stopping process ({}) with SIGTERM", what(&p.rec));
            self.system(
                &p.rec.app.clone(),
                &p.rec.instance.clone(),
                p.rec.release,
                msg,
            );
            if let Err(e) = self.rt.signal(&p.rec, StopSignal::Term) {
                tracing::warn!(error = %e, "stop");
            }
            p.term_at = Some(now);
        }
        self.stopping.push(p);
        self.changed = true;
    }

    /// The leader of `rec` exited: kill what it left behind, drop its record
    /// and let the agent drain its log.
    fn gone(&mut self, rec: ProcRecord) {
        self.rt.kill_leftovers(&rec);
        self.rt.forget(&rec);
        self.events.push(Event::Gone(rec));
        self.changed = true;
    }

    /// Whether anything is in motion: a process starting, not yet up, waiting to be
    /// (re)started, being stopped, or a one-off whose output someone may be waiting for. At
    /// rest (nothing in motion) the agent ticks less often.
    pub fn busy(&self) -> bool {
        !self.stopping.is_empty()
            || self.slots.values().any(|s| {
                (s.desired && !s.done && s.proc.as_ref().is_none_or(|p| !p.up))
                    || (!s.desired && s.proc.is_some())
                    || (s.spec.proc_type == zeroku_conf::RUN_TYPE && !s.done)
            })
    }

    /// One pass: reap exits, start what is due, retire replaced releases,
    /// escalate slow stops. Call it often (e.g. every 100 ms).
    pub fn tick(&mut self, now: Instant) {
        self.reap_stopping(now);
        let keys: Vec<Key> = self.slots.keys().cloned().collect();
        for key in &keys {
            self.watch_slot(key, now);
        }
        // Retire slots no longer desired once their replacement has been up
        // for the drain time (frontends learn the new one meanwhile). A
        // replacement that never comes up leaves the old one serving.
        let drain = Duration::from_millis(self.cfg.drain_ms);
        let up_ids: HashSet<String> = self
            .slots
            .values()
            .filter(|s| {
                s.desired
                    && s.proc
                        .as_ref()
                        .and_then(|p| p.up_at)
                        .is_some_and(|at| now.duration_since(at) >= drain)
            })
            .map(|s| s.spec.id.clone())
            .collect();
        let wanted_ids: HashSet<String> = self
            .slots
            .values()
            .filter(|s| s.desired)
            .map(|s| s.spec.id.clone())
            .collect();
        // Of an instance's replaced processes, only the newest one that is up
        // keeps serving while its successor is not up: one that never came
        // up serves nothing (several quick releases that do not start must
        // not pile up processes), and an older one is superseded.
        let mut serving: HashMap<&str, (u32, u32)> = HashMap::new();
        for s in self.slots.values().filter(|s| !s.desired) {
            if s.proc.as_ref().is_some_and(|p| p.up) {
                let e = serving.entry(s.spec.id.as_str()).or_insert((0, 0));
                *e = (*e).max((s.spec.release, s.spec.restart));
            }
        }
        let serving: HashMap<String, (u32, u32)> = serving
            .into_iter()
            .map(|(id, v)| (id.to_string(), v))
            .collect();
        let mut retired_requirer = false;
        for key in keys {
            let retire = match self.slots.get(&key) {
                Some(s) if !s.desired => {
                    up_ids.contains(&s.spec.id)
                        || !wanted_ids.contains(&s.spec.id)
                        || s.proc.as_ref().is_none_or(|p| !p.up)
                        || serving.get(&s.spec.id) != Some(&(s.spec.release, s.spec.restart))
                }
                _ => false,
            };
            if retire {
                if let Some(slot) = self.slots.remove(&key) {
                    retired_requirer |= !slot.spec.requires.is_empty();
                    if let Some(p) = slot.proc {
                        self.stop(p, now);
                    }
                    self.changed = true;
                }
            }
        }
        if retired_requirer {
            self.gc_require_dirs();
        }
    }

    fn reap_stopping(&mut self, now: Instant) {
        let grace = Duration::from_millis(self.cfg.stop_grace_ms);
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.stopping) {
            if let Some(exit) = self.rt.poll(&p.rec) {
                let msg = format!("Process stopped: {exit}");
                self.system(
                    &p.rec.app.clone(),
                    &p.rec.instance.clone(),
                    p.rec.release,
                    msg,
                );
                self.gone(p.rec);
                continue;
            }
            if !p.killed && p.term_at.is_some_and(|t| now.duration_since(t) >= grace) {
                let msg = format!(
                    "Process did not stop within {} ms of SIGTERM; sending SIGKILL",
                    grace.as_millis()
                );
                self.system(
                    &p.rec.app.clone(),
                    &p.rec.instance.clone(),
                    p.rec.release,
                    msg,
                );
                let _ = self.rt.signal(&p.rec, StopSignal::Kill);
                p.killed = true;
            }
            still.push(p);
        }
        self.stopping = still;
    }

    fn watch_slot(&mut self, key: &Key, now: Instant) {
        let cfg = self.cfg.clone();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Some(p) = &mut slot.proc {
            let Some(exit) = self.rt.poll(&p.rec) else {
                let ran = now.duration_since(p.since);
                // A web process is up once it accepts on $PORT; others
                // once they have run a while.
                // Add-on servers too: a database is up when it accepts.
                let web =
                    (slot.spec.proc_type == WEB || slot.spec.addon.is_some()) && p.rec.port != 0;
                // Readiness is checked until the process is up, then no more.
                let ready = if p.up {
                    true
                } else if web {
                    let check = slot
                        .spec
                        .env
                        .get(HEALTHCHECK_VAR)
                        .map(String::as_str)
                        .filter(|p| p.starts_with('/') && !p.contains(char::is_whitespace));
                    !p.killed && self.rt.accepting(&p.rec, check)
                } else if !slot.spec.handler.is_empty() {
                    // A handler: up once connected to every frontend.
                    let (specs, _) =
                        crate::relay::handler_specs(self.relay_dir.as_deref(), &slot.spec);
                    let eps: Vec<&str> = specs.split_whitespace().collect();
                    match self.rt.connected(&p.rec, &eps) {
                        Some(c) => c,
                        None => ran >= Duration::from_millis(cfg.ready_after_ms),
                    }
                } else {
                    ran >= Duration::from_millis(cfg.ready_after_ms)
                };
                if !p.up && ready {
                    p.up = true;
                    p.up_at = Some(now);
                    self.changed = true;
                } else if !p.up
                    && web
                    && slot.spec.addon.is_none()
                    && !p.killed
                    && ran >= Duration::from_millis(cfg.boot_timeout_ms)
                {
                    // Heroku's R10: killed, then restarted with back-off.
                    p.killed = true;
                    let _ = self.rt.signal(&p.rec, StopSignal::Kill);
                    let line = format!(
                        "Error R10 (Boot timeout): web process failed to bind to $PORT ({}) within {} s; killing it",
                        p.rec.port,
                        cfg.boot_timeout_ms / 1000
                    );
                    let (app, id, rel) = (
                        slot.spec.app.clone(),
                        slot.spec.id.clone(),
                        slot.spec.release,
                    );
                    self.system(&app, &id, rel, line);
                    return;
                }
                let initial = Duration::from_millis(cfg.backoff_initial_ms);
                if (slot.crashed || slot.backoff > initial)
                    && ran >= Duration::from_millis(cfg.backoff_reset_ms)
                {
                    // Stable again: the back-off starts over, and the exit that
                    // made it restart is history.
                    slot.backoff = initial;
                    slot.crashed = false;
                    slot.last_exit = None;
                    self.changed = true;
                }
                return;
            };
            let Some(p) = slot.proc.take() else { return };
            if slot.spec.proc_type == zeroku_conf::RUN_TYPE {
                // A one-off ends once: reported as done, never restarted.
                slot.done = true;
                slot.last_exit = Some(exit.to_string());
                let (app, id, rel) = (
                    slot.spec.app.clone(),
                    slot.spec.id.clone(),
                    slot.spec.release,
                );
                self.system(&app, &id, rel, format!("Process {exit}"));
                self.gone(p.rec);
                return;
            }
            let delay = slot.failed(exit.to_string(), now, &cfg);
            let (app, id, rel, desired) = (
                slot.spec.app.clone(),
                slot.spec.id.clone(),
                slot.spec.release,
                slot.desired,
            );
            tracing::info!(instance.id = %id, release = rel, %exit, "process exited");
            let line = if desired {
                format!("Process {exit}; restarting in {} ms", delay.as_millis())
            } else {
                format!("Process {exit}")
            };
            self.system(&app, &id, rel, line);
            self.gone(p.rec);
        }
        self.start_if_due(key, now);
    }

    fn start_if_due(&mut self, key: &Key, now: Instant) {
        let held = |s: &Slot| match (s.spec.stop_when_lost_ms, self.heard_again) {
            (Some(ms), Some(t)) => {
                now < t + Duration::from_millis(ms) && self.silenced_ids.contains(&s.spec.id)
            }
            _ => false,
        };
        let port = match self.slots.get(key) {
            Some(s)
                if s.desired && !s.done && s.proc.is_none() && now >= s.next_start && !held(s) =>
            {
                s.port
            }
            _ => return,
        };
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        if slot.spec.addon.is_some() {
            self.start_addon(key, now);
            return;
        }
        let sha = slug_key(&slot.spec);
        let dir = match self.slugs.get(&sha) {
            // Unpacked slugs can be collected while unused: fetch it again.
            Some(d) if d.is_dir() => d.clone(),
            _ => {
                self.slugs.remove(&sha);
                if self.asked.insert(sha.clone()) {
                    self.events.push(Event::NeedSlug(sha));
                }
                return;
            }
        };
        // A port that something else took meanwhile (a process outside the
        // cluster, another worker's instance) is replaced by another.
        let port = match port {
            0 => self.free_port(),
            p if bindable(p) => Some(p),
            p => {
                let new = self.free_port();
                if let (Some(slot), Some(n)) = (self.slots.get(key), new) {
                    let (app, id, rel) = (
                        slot.spec.app.clone(),
                        slot.spec.id.clone(),
                        slot.spec.release,
                    );
                    self.system(
                        &app,
                        &id,
                        rel,
                        format!("Port {p} is taken on this host: using {n}"),
                    );
                }
                new
            }
        };
        let cfg = self.cfg.clone();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let spec = slot.spec.clone();
        let Some(port) = port else {
            let why = format!(
                "no free port in {}-{} (port_min/port_max)",
                cfg.port_min, cfg.port_max
            );
            self.cannot_start(key, why, now);
            return;
        };
        slot.port = port;
        self.launch(key, &spec, &dir, port, Some(sha), now);
    }

    /// Starts an add-on's server: from its data directory, on its own port.
    fn start_addon(&mut self, key: &Key, now: Instant) {
        let cfg = self.cfg.clone();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let spec = slot.spec.clone();
        let Some(run) = &spec.addon else { return };
        let port = run.port;
        let dir = match &self.addons_dir {
            Some(d) => d.join(&spec.app),
            None => {
                slot.failed("this worker keeps no add-on data".into(), now, &cfg);
                return;
            }
        };
        if !bindable(port) {
            let why =
                format!("port {port} is taken on this node: the add-on's server cannot listen");
            self.cannot_start(key, why, now);
            return;
        }
        slot.port = port;
        self.launch(key, &spec, &dir, port, None, now);
    }

    /// A start that could not happen: retried with back-off, the reason in the app's log.
    fn cannot_start(&mut self, key: &Key, why: String, now: Instant) {
        let cfg = self.cfg.clone();
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.failed(why.clone(), now, &cfg);
        let (app, id, release) = (
            slot.spec.app.clone(),
            slot.spec.id.clone(),
            slot.spec.release,
        );
        self.system(&app, &id, release, format!("Failed to start: {why}"));
        self.changed = true;
    }

    /// Starts `spec`'s process from `dir` on `port` and records it in its slot.
    fn launch(
        &mut self,
        key: &Key,
        spec: &InstanceSpec,
        dir: &std::path::Path,
        port: u16,
        sha: Option<String>,
        now: Instant,
    ) {
        let cfg = self.cfg.clone();
        if !self.slots.contains_key(key) {
            return;
        }
        let env = self.env_of(spec, port);
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let req = StartRequest {
            spec,
            slug_dir: dir,
            port,
            env,
        };
        let after_failure = slot.last_exit.is_some();
        let line = match self.rt.start(&req) {
            Ok(rec) => {
                tracing::info!(instance.id = %spec.id, proc.pid = rec.pid, release = spec.release, "started");
                if after_failure {
                    slot.restarted(now, &cfg);
                }
                let line = format!(
                    "Starting process with command `{}` ({}, PORT {port})",
                    spec.command,
                    what(&rec)
                );
                slot.proc = Some(Proc {
                    rec,
                    slug: sha,
                    since: now,
                    up: false,
                    up_at: None,
                    term_at: None,
                    killed: false,
                    handler: (!spec.handler.is_empty()).then(|| spec.clone()),
                });
                line
            }
            Err(e) => {
                tracing::warn!(instance.id = %spec.id, error = %e, "start failed");
                slot.restarted(now, &cfg);
                slot.failed(e.to_string(), now, &cfg);
                format!("Failed to start: {e}")
            }
        };
        self.system(&spec.app, &spec.id, spec.release, line);
        self.changed = true;
    }

    /// The state of everything on this node, for the heartbeat.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        let mut out: Vec<InstanceStatus> = self
            .slots
            .values()
            .map(|s| {
                let state = match &s.proc {
                    _ if s.done => InstanceState::Done,
                    Some(p) if p.up => InstanceState::Up,
                    _ if s.crashed => InstanceState::Crashed,
                    Some(_) => InstanceState::Starting,
                    None if s.last_exit.is_some() => InstanceState::Restarting,
                    None => InstanceState::Starting,
                };
                InstanceStatus {
                    id: s.spec.id.clone(),
                    release: s.spec.release,
                    state,
                    pid: s.proc.as_ref().and_then(|p| pid_of(&p.rec)),
                    port: (s.port != 0).then_some(s.port),
                    restarts: s.restarts,
                    started_at: s.proc.as_ref().map_or(0, |p| p.rec.started_at),
                    last_exit: s.last_exit.clone(),
                    container: s.proc.as_ref().and_then(|p| container_of(&p.rec)),
                    restart: s.spec.restart,
                }
            })
            .collect();
        out.extend(self.stopping.iter().map(|p| InstanceStatus {
            id: p.rec.instance.clone(),
            release: p.rec.release,
            state: InstanceState::Stopping,
            pid: pid_of(&p.rec),
            port: Some(p.rec.port),
            restarts: 0,
            started_at: p.rec.started_at,
            last_exit: None,
            container: container_of(&p.rec),
            restart: 0,
        }));
        out.sort_by(|a, b| (&a.id, a.release, a.restart).cmp(&(&b.id, b.release, b.restart)));
        out
    }
}

/// The process id, for a native process.
fn pid_of(rec: &ProcRecord) -> Option<u32> {
    (rec.container.is_none() && rec.pid != 0).then_some(rec.pid)
}

/// The container's short id (as `docker ps` shows it).
fn container_of(rec: &ProcRecord) -> Option<String> {
    rec.container
        .as_deref()
        .map(|c| c.chars().take(12).collect())
}

#[cfg(test)]
mod tests;
