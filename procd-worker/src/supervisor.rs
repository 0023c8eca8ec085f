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
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use zeroku_conf::config::WorkerConfig;
use zeroku_conf::{InstanceSpec, InstanceState, InstanceStatus, NodeList};

type Key = (String, u32);

/// A process this worker started (or adopted).
#[derive(Debug)]
struct Proc {
    rec: ProcRecord,
    since: Instant,
    up: bool,
    /// When SIGTERM was sent.
    term_at: Option<Instant>,
    killed: bool,
}

#[derive(Debug)]
struct Slot {
    spec: InstanceSpec,
    desired: bool,
    proc: Option<Proc>,
    port: u16,
    restarts: u32,
    recent: VecDeque<Instant>,
    backoff: Duration,
    next_start: Instant,
    last_exit: Option<String>,
    crashed: bool,
}

/// Something the supervisor wants the outside world to do or know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Fetch and unpack this slug, then call [`Supervisor::slug_ready`].
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
}

impl<R: Runtime> Supervisor<R> {
    /// Re-adopts the processes an earlier run of the worker left running.
    pub fn new(rt: R, cfg: WorkerConfig, now: Instant) -> Supervisor<R> {
        let adopted = rt
            .adopt()
            .into_iter()
            .map(|rec| {
                tracing::info!(instance.id = %rec.instance, proc.pid = rec.pid, release = rec.release, "re-adopted running process");
                Proc {
                    rec,
                    since: now,
                    up: true,
                    term_at: None,
                    killed: false,
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
            events: Vec::new(),
            changed: true,
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

    pub fn runtime(&self) -> &R {
        &self.rt
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

    /// Slugs some slot still needs.
    pub fn slugs_in_use(&self) -> HashSet<String> {
        self.slots
            .values()
            .map(|s| s.spec.slug.sha256.clone())
            .collect()
    }

    pub fn slug_ready(&mut self, sha256: &str, dir: PathBuf) {
        self.asked.remove(sha256);
        self.slugs.insert(sha256.to_string(), dir);
    }

    /// A slug could not be fetched: ask again on a later tick.
    pub fn slug_failed(&mut self, sha256: &str) {
        self.asked.remove(sha256);
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
        let desired: HashMap<Key, InstanceSpec> = list
            .instances
            .into_iter()
            .map(|s| ((s.id.clone(), s.release), s))
            .collect();
        for slot in self.slots.values_mut() {
            slot.desired = false;
        }
        for (key, spec) in desired {
            if let Some(slot) = self.slots.get_mut(&key) {
                slot.desired = true;
                slot.spec = spec;
                continue;
            }
            let claimed = self
                .adopted
                .iter()
                .position(|p| p.rec.instance == key.0 && p.rec.release == key.1)
                .map(|i| self.adopted.swap_remove(i));
            let port = claimed
                .as_ref()
                .map_or_else(|| self.free_port(), |p| p.rec.port);
            self.slots.insert(
                key,
                Slot {
                    spec,
                    desired: true,
                    proc: claimed,
                    port,
                    restarts: 0,
                    recent: VecDeque::new(),
                    backoff: Duration::from_millis(self.cfg.backoff_initial_ms),
                    next_start: now,
                    last_exit: None,
                    crashed: false,
                },
            );
        }
        // Adopted processes no list wants are stopped.
        for p in std::mem::take(&mut self.adopted) {
            tracing::info!(instance.id = %p.rec.instance, proc.pid = p.rec.pid, "adopted process is no longer wanted");
            self.stop(p, now);
        }
        self.changed = true;
        fresh
    }

    fn free_port(&self) -> u16 {
        let used: HashSet<u16> = self
            .slots
            .values()
            .map(|s| s.port)
            .chain(self.stopping.iter().map(|p| p.rec.port))
            .chain(self.adopted.iter().map(|p| p.rec.port))
            .collect();
        let bindable = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        (self.cfg.port_min..=self.cfg.port_max)
            .find(|p| !used.contains(p) && bindable(*p))
            .unwrap_or(0)
    }

    fn system(&mut self, rec_app: &str, instance: &str, release: u32, line: String) {
        self.events.push(Event::System {
            app: rec_app.to_string(),
            instance: instance.to_string(),
            release,
            line,
        });
    }

    fn stop(&mut self, mut p: Proc, now: Instant) {
        if p.term_at.is_none() {
            let msg = format!("Stopping process (pid {}) with SIGTERM", p.rec.pid);
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

    /// One pass: reap exits, start what is due, retire replaced releases,
    /// escalate slow stops. Call it often (e.g. every 100 ms).
    pub fn tick(&mut self, now: Instant) {
        self.reap_stopping(now);
        let keys: Vec<Key> = self.slots.keys().cloned().collect();
        for key in &keys {
            self.watch_slot(key, now);
        }
        // Retire slots no longer desired once their replacement is up.
        let up_ids: HashSet<String> = self
            .slots
            .values()
            .filter(|s| s.desired && (s.proc.as_ref().is_some_and(|p| p.up) || s.crashed))
            .map(|s| s.spec.id.clone())
            .collect();
        let wanted_ids: HashSet<String> = self
            .slots
            .values()
            .filter(|s| s.desired)
            .map(|s| s.spec.id.clone())
            .collect();
        for key in keys {
            let retire = match self.slots.get(&key) {
                Some(s) if !s.desired => {
                    up_ids.contains(&s.spec.id)
                        || !wanted_ids.contains(&s.spec.id)
                        || s.proc.is_none()
                }
                _ => false,
            };
            if retire {
                if let Some(slot) = self.slots.remove(&key) {
                    if let Some(p) = slot.proc {
                        self.stop(p, now);
                    }
                    self.changed = true;
                }
            }
        }
    }

    fn reap_stopping(&mut self, now: Instant) {
        let grace = Duration::from_millis(self.cfg.stop_grace_ms);
        let mut still = Vec::new();
        for mut p in std::mem::take(&mut self.stopping) {
            if let Some(exit) = self.rt.poll(&p.rec) {
                self.system(
                    &p.rec.app.clone(),
                    &p.rec.instance.clone(),
                    p.rec.release,
                    format!("Process stopped: {exit}"),
                );
                self.rt.forget(&p.rec);
                self.events.push(Event::Gone(p.rec));
                self.changed = true;
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
        let ready_after = Duration::from_millis(self.cfg.ready_after_ms);
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        // An exited process.
        if let Some(p) = &mut slot.proc {
            match self.rt.poll(&p.rec) {
                None => {
                    if !p.up && now.duration_since(p.since) >= ready_after {
                        p.up = true;
                        self.changed = true;
                    }
                    if slot.crashed
                        || slot.backoff > Duration::from_millis(self.cfg.backoff_initial_ms)
                    {
                        let stable = now.duration_since(p.since)
                            >= Duration::from_millis(self.cfg.backoff_reset_ms);
                        if stable {
                            slot.backoff = Duration::from_millis(self.cfg.backoff_initial_ms);
                            slot.crashed = false;
                            self.changed = true;
                        }
                    }
                    return;
                }
                Some(exit) => {
                    let Some(p) = slot.proc.take() else { return };
                    let ran = now.duration_since(p.since);
                    if ran >= Duration::from_millis(self.cfg.backoff_reset_ms) {
                        slot.backoff = Duration::from_millis(self.cfg.backoff_initial_ms);
                    }
                    slot.last_exit = Some(exit.to_string());
                    slot.next_start = now + slot.backoff;
                    let delay = slot.backoff;
                    slot.backoff =
                        (slot.backoff * 2).min(Duration::from_millis(self.cfg.backoff_max_ms));
                    let (app, id, rel) = (
                        slot.spec.app.clone(),
                        slot.spec.id.clone(),
                        slot.spec.release,
                    );
                    let desired = slot.desired;
                    self.rt.forget(&p.rec);
                    self.events.push(Event::Gone(p.rec));
                    let what = if desired {
                        format!("Process {exit}; restarting in {} ms", delay.as_millis())
                    } else {
                        format!("Process {exit}")
                    };
                    tracing::info!(instance.id = %id, release = rel, %exit, "process exited");
                    self.system(&app, &id, rel, what);
                    self.changed = true;
                }
            }
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if !slot.desired || slot.proc.is_some() || now < slot.next_start {
            return;
        }
        let sha = slot.spec.slug.sha256.clone();
        let Some(dir) = self.slugs.get(&sha).cloned() else {
            if self.asked.insert(sha.clone()) {
                self.events.push(Event::NeedSlug(sha));
            }
            return;
        };
        let spec = slot.spec.clone();
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.insert("PORT".into(), slot.port.to_string());
        env.insert("ZEROKU_APP".into(), spec.app.clone());
        env.insert("ZEROKU_INSTANCE".into(), spec.id.clone());
        env.insert("ZEROKU_PROCESS_TYPE".into(), spec.proc_type.clone());
        env.insert("ZEROKU_RELEASE".into(), format!("v{}", spec.release));
        env.insert("ZEROKU_NODE".into(), self.node.clone());
        env.insert("DYNO".into(), format!("{}.{}", spec.proc_type, spec.index));
        let req = StartRequest {
            spec: &spec,
            slug_dir: &dir,
            port: slot.port,
            env,
        };
        let first = slot.restarts == 0 && slot.last_exit.is_none();
        match self.rt.start(&req) {
            Ok(rec) => {
                let msg = format!(
                    "Starting process with command `{}` (pid {}, PORT {})",
                    spec.command, rec.pid, rec.port
                );
                tracing::info!(instance.id = %spec.id, proc.pid = rec.pid, release = spec.release, "started");
                if !first {
                    slot.restarts += 1;
                    slot.recent.push_back(now);
                    while slot
                        .recent
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
                    {
                        slot.recent.pop_front();
                    }
                    if slot.recent.len() > self.cfg.crash_restarts_per_minute as usize {
                        slot.crashed = true;
                    }
                }
                slot.proc = Some(Proc {
                    rec,
                    since: now,
                    up: false,
                    term_at: None,
                    killed: false,
                });
                self.system(&spec.app, &spec.id, spec.release, msg);
            }
            Err(e) => {
                tracing::warn!(instance.id = %spec.id, error = %e, "start failed");
                slot.last_exit = Some(e.to_string());
                slot.next_start = now + slot.backoff;
                slot.backoff =
                    (slot.backoff * 2).min(Duration::from_millis(self.cfg.backoff_max_ms));
                slot.restarts += 1;
                slot.recent.push_back(now);
                if slot.recent.len() > self.cfg.crash_restarts_per_minute as usize {
                    slot.crashed = true;
                }
                self.system(
                    &spec.app,
                    &spec.id,
                    spec.release,
                    format!("Failed to start: {e}"),
                );
            }
        }
        self.changed = true;
    }

    /// The state of everything on this node, for the heartbeat.
    pub fn statuses(&self) -> Vec<InstanceStatus> {
        let mut out: Vec<InstanceStatus> = self
            .slots
            .values()
            .map(|s| {
                let state = match &s.proc {
                    Some(p) if p.up => InstanceState::Up,
                    Some(_) if s.crashed => InstanceState::Crashed,
                    Some(_) => InstanceState::Starting,
                    None if s.crashed => InstanceState::Crashed,
                    None if s.last_exit.is_some() => InstanceState::Restarting,
                    None => InstanceState::Starting,
                };
                InstanceStatus {
                    id: s.spec.id.clone(),
                    release: s.spec.release,
                    state,
                    pid: s.proc.as_ref().map(|p| p.rec.pid),
                    port: Some(s.port),
                    restarts: s.restarts,
                    started_at: s.proc.as_ref().map_or(0, |p| p.rec.started_at),
                    last_exit: s.last_exit.clone(),
                }
            })
            .collect();
        out.extend(self.stopping.iter().map(|p| InstanceStatus {
            id: p.rec.instance.clone(),
            release: p.rec.release,
            state: InstanceState::Stopping,
            pid: Some(p.rec.pid),
            port: Some(p.rec.port),
            restarts: 0,
            started_at: p.rec.started_at,
            last_exit: None,
        }));
        out.sort_by(|a, b| (&a.id, a.release).cmp(&(&b.id, b.release)));
        out
    }
}

#[cfg(test)]
mod tests;
