//! [`Cluster`]: the master's core. Holds the store, the slug store, the live
//! view of nodes (last heartbeat) and the lists last published, and turns
//! every change into a re-placement and fresh node lists.

use crate::bus::{self, Decision, Publisher};
pub use crate::live::Live;
use crate::logbook::LogBook;
use crate::peers::{Peer, Peers};
use crate::routes;
use crate::scheduler::{self, NodeSlot};
use crate::store::{Frontend, Placement, Release, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use zeroku_conf::config::MasterConfig;
use zeroku_conf::wire::{Alive, Message, ALIVE_TOPIC, ROUTES_TOPIC};
use zeroku_conf::{Heartbeat, InstanceSpec, Limits, NodeList, RouteTable, SlugRef};
use zeroku_slug::SlugStore;

pub struct Cluster {
    pub cfg: MasterConfig,
    /// The master's data directory.
    pub data: PathBuf,
    pub slugs: SlugStore,
    pub logs: LogBook,
    /// Messages dropped on the PULL socket because they did not decode, or because their
    /// sender may not say what they say.
    pub dropped: std::sync::Arc<AtomicU64>,
    /// Bus peers refused: unknown keys, failed handshakes, subscriptions to others' topics.
    pub refused: std::sync::Arc<AtomicU64>,
    /// Every node's and frontend's bus key.
    pub peers: Peers,
    /// The master's public bus key (z85), which peers check the bus against.
    pub bus_key: String,
    /// This cluster's identity (`<data>/cluster-id`, made on the first start).
    pub cluster_id: String,
    /// The apps each node ran lately (its lists and heartbeats): a node's log lines are taken
    /// for these apps only.
    node_apps: Mutex<HashMap<String, HashMap<String, Instant>>>,
    store: Mutex<Store>,
    live: Mutex<HashMap<String, Live>>,
    lists: Mutex<HashMap<String, NodeList>>,
    /// The frontends the handler specs in `lists` were built for.
    frontends: Mutex<Vec<Frontend>>,
    /// The route table last published.
    routes: Mutex<RouteTable>,
    /// App names, refreshed on every re-plan, to filter incoming log lines.
    known_apps: Mutex<std::collections::HashSet<String>>,
    publisher: Publisher,
    started: Instant,
    /// Nodes whose last heartbeat offered the docker runtime.
    docker_nodes: Mutex<std::collections::HashSet<String>>,
    /// Terminals of interactive one-offs being connected or in use.
    pub terminals: crate::terminal::Terminals,
    /// Woken when a backup schedule changes ([`crate::schedule`]).
    pub schedules_changed: tokio::sync::Notify,
    /// Woken when an app's certificates should be looked at now (`certs:auto`, a domain
    /// added or removed) ([`crate::acme`]).
    pub acme_changed: tokio::sync::Notify,
    /// ACME HTTP-01 challenges under way, in the route table.
    acme_challenges: Mutex<Vec<zeroku_conf::AcmeChallenge>>,
    /// The ACME account's key thumbprint, in the route table.
    acme_thumbprint: Mutex<String>,
    /// Something the route table is built from changed (a re-plan, a heartbeat that differs
    /// from the node's last, a node lost): the next liveness tick rebuilds it.
    routes_stale: AtomicBool,
    /// How often nodes heartbeat and when a silent one is dead, for the cluster's size.
    pace: Mutex<crate::live::Paces>,
    /// When [`Cluster::check_liveness`] last read every node from the store.
    liveness_read: Mutex<Instant>,
    /// The providers of every service the lists last published were built with.
    providers: Mutex<crate::discovery::Providers>,
    /// Counts changes of `providers`, for `services:watch` to wait on.
    pub services_changed: tokio::sync::watch::Sender<u64>,
    /// Instances heartbeats newly reported crashed (restarted too often): (node, instance id,
    /// last exit), for the next liveness tick to fail add-ons over ([`Cluster::take_crashed`]).
    crashed: Mutex<Vec<(String, String, String)>>,
    /// What `/metrics` counts ([`crate::metrics`]).
    pub counters: Counters,
    /// Woken when an alert rule is added or removed ([`crate::alerts`]).
    pub alerts_changed: tokio::sync::Notify,
}

/// Counts of what the master did since it started, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Heartbeats taken from the bus.
    pub heartbeats: std::sync::atomic::AtomicU64,
    /// Node lists published (each a new generation).
    pub lists: std::sync::atomic::AtomicU64,
}

/// How long a node's log lines are taken for an app it no longer runs (its last lines arrive
/// after it stopped).
const NODE_APPS_FOR: Duration = Duration::from_secs(600);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Each app's log, on disk under `<data>/logs` unless `log_retention_mb` is 0
/// (or the directory cannot be used: then in memory, and said so).
fn open_logs(cfg: &MasterConfig, data: &Path) -> LogBook {
    if cfg.log_retention_mb == 0 {
        return LogBook::new(cfg.log_lines_per_app);
    }
    let keep = crate::logbook::Retention {
        max_bytes: cfg.log_retention_mb << 20,
        max_age: std::time::Duration::from_secs(cfg.log_retention_hours.saturating_mul(3600)),
    };
    let dir = data.join("logs");
    LogBook::open(&dir, cfg.log_lines_per_app, keep).unwrap_or_else(|e| {
        tracing::error!(dir = %dir.display(), error = %e, "cannot keep logs on disk; keeping them in memory only");
        LogBook::new(cfg.log_lines_per_app)
    })
}

impl Cluster {
    /// A line in `app`'s log from zeroku itself (`zeroku logs --source
    /// zeroku`), naming `instance` or, when empty, none.
    pub fn system_log(&self, app: &str, instance: &str, line: String) {
        tracing::info!(app, instance, "{line}");
        let ts_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.logs.push(vec![zeroku_conf::LogLine {
            app: app.to_string(),
            instance: if instance.is_empty() {
                "zeroku".into()
            } else {
                instance.to_string()
            },
            release: 0,
            ts_ms,
            stream: zeroku_conf::Stream::System,
            line,
        }]);
    }

    pub fn new(
        cfg: MasterConfig,
        data: &Path,
        store: Store,
        slugs: SlugStore,
        publisher: Publisher,
        bus_key: String,
    ) -> Cluster {
        let peers = Peers::load(
            &store.nodes().unwrap_or_default(),
            &store.frontends().unwrap_or_default(),
        );
        let cluster_id = std::fs::read_to_string(data.join("cluster-id"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let pace = crate::live::Paces::new(crate::live::Pace::for_nodes(&cfg, 0));
        Cluster {
            cluster_id,
            refused: Default::default(),
            peers,
            bus_key,
            node_apps: Mutex::default(),
            logs: open_logs(&cfg, data),
            cfg,
            data: data.to_path_buf(),
            slugs,
            dropped: Default::default(),
            store: Mutex::new(store),
            live: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            known_apps: Mutex::new(Default::default()),
            frontends: Mutex::new(Vec::new()),
            routes: Mutex::new(RouteTable::default()),
            publisher,
            started: Instant::now(),
            terminals: Default::default(),
            schedules_changed: tokio::sync::Notify::new(),
            acme_changed: tokio::sync::Notify::new(),
            acme_challenges: Mutex::default(),
            acme_thumbprint: Mutex::default(),
            docker_nodes: Mutex::default(),
            routes_stale: AtomicBool::new(true),
            pace: Mutex::new(pace),
            liveness_read: Mutex::new(Instant::now()),
            providers: Mutex::default(),
            crashed: Mutex::default(),
            counters: Counters::default(),
            alerts_changed: tokio::sync::Notify::new(),
            // From the clock: a watcher's generation from before a master restart is older.
            services_changed: tokio::sync::watch::Sender::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            ),
        }
    }

    /// The store, for reads and writes that need no re-placement.
    /// Forgets the published lists, so the next re-plan rebuilds them all
    /// (an app's runtime changed: same release, other specs).
    pub fn invalidate_lists(&self) {
        lock(&self.lists).clear();
    }

    /// Nodes whose last heartbeat offered the docker runtime.
    pub fn docker_nodes(&self) -> std::collections::HashSet<String> {
        lock(&self.docker_nodes).clone()
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    /// Runs `f` on the store, then re-places and publishes what changed.
    pub fn change<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut store = self.store();
        let out = f(&mut store)?;
        self.replan(&mut store)?;
        Ok(out)
    }

    /// Re-places every instance and publishes each node list that changed.
    pub fn replan(&self, store: &mut Store) -> Result<(), StoreError> {
        self.routes_stale.store(true, Ordering::Release);
        let nodes = store.nodes()?;
        let up = nodes.iter().filter(|n| n.state == "up").count();
        if lock(&self.pace).set(crate::live::Pace::for_nodes(&self.cfg, up)) {
            let p = self.pace();
            tracing::info!(
                nodes = up,
                heartbeat_ms = p.heartbeat.as_millis() as u64,
                dead_after_ms = p.dead_after.as_millis() as u64,
                "heartbeat pace changed"
            );
            self.publish_alive();
        }
        let apps = store.apps()?;
        let mut releases: HashMap<String, Release> = HashMap::new();
        for app in &apps {
            if let Some(r) = store.current_release(&app.name)? {
                releases.insert(app.name.clone(), r);
            }
        }
        *lock(&self.known_apps) = apps.iter().map(|a| a.name.clone()).collect();
        let seqs: HashMap<String, u32> = apps.into_iter().map(|a| (a.name, a.seq)).collect();

        // Only process types the current release declares can run.
        let formation: Vec<_> = store
            .all_formation()?
            .into_iter()
            .filter(|f| {
                releases
                    .get(&f.app)
                    .is_some_and(|r| r.process_types.contains_key(&f.proc_type))
            })
            .collect();
        let slots: Vec<NodeSlot> = nodes
            .iter()
            .map(|n| NodeSlot {
                name: n.name.clone(),
                capacity_mb: n.capacity_mb,
                schedulable: n.state == "up" && !n.draining,
            })
            .collect();
        // Apps that run in containers, and their stack.
        let settings = store.settings()?;
        let stacks: HashMap<&str, &str> = settings
            .iter()
            .filter(|(a, k, v)| k == "runtime" && v == "docker" && !a.is_empty())
            .filter_map(|(a, _, _)| {
                settings
                    .iter()
                    .find(|(b, k, _)| b == a && k == "stack")
                    .map(|(_, _, s)| (a.as_str(), s.as_str()))
            })
            .collect();
        // The image each stack's apps run in: its current version (one
        // small file read per stack in use).
        let stacks_dir = crate::stacks::dir(&self.data);
        let images: HashMap<&str, String> = stacks
            .values()
            .map(|s| (*s, crate::stacks::image(&stacks_dir, s)))
            .collect();
        // CPU limits (the `cpu` setting).
        let cpus: HashMap<&str, u32> = settings
            .iter()
            .filter(|(_, k, _)| k == "cpu")
            .filter_map(|(a, _, v)| Some((a.as_str(), crate::settings::cpu_millis(v)?)))
            .collect();
        // Instances a worker stops when it loses the master (`stop_when_lost_ms`).
        let stop_when_lost: HashMap<&str, u64> = settings
            .iter()
            .filter(|(_, k, _)| k == "stop_when_lost_ms")
            .filter_map(|(a, _, v)| Some((a.as_str(), v.parse().ok()?)))
            .collect();
        // Docker apps only go to nodes whose heartbeat offers docker.
        let containers = scheduler::Containers {
            apps: stacks.keys().map(|a| a.to_string()).collect(),
            nodes: lock(&self.docker_nodes).clone(),
        };
        let restarts = store.restarts()?;
        let current = store.placements()?;
        let mut placed = scheduler::place_with(&slots, &formation, &current, &containers);
        if placed != current {
            store.update_placements(&current, &placed)?;
        }
        // What each app's instances require, resolved against the providers up now.
        let providers = {
            let live = lock(&self.live);
            crate::discovery::providers(&releases, &placed, &nodes, &live)
        };
        let requires: HashMap<&str, Vec<zeroku_conf::Required>> = releases
            .iter()
            .filter(|(_, r)| !r.build.manifest.requires.is_empty())
            .map(|(a, r)| (a.as_str(), crate::discovery::required(a, r, &providers)))
            .collect();
        self.set_providers(providers);
        // One-offs (zeroku run) ride along on their node's list until they end.
        let oneoffs: HashMap<String, (String, Option<zeroku_conf::Tty>)> = store
            .active_oneoffs()?
            .into_iter()
            .map(|o| {
                placed.push(Placement {
                    id: o.id.clone(),
                    app: o.app.clone(),
                    proc_type: zeroku_conf::RUN_TYPE.to_string(),
                    index: o.n,
                    node: Some(o.node.clone()),
                    memory_mb: self.cfg.default_memory_mb,
                });
                (o.id, (o.command, o.tty))
            })
            .collect();
        // Add-on servers run on the node that holds their data, whatever its state.
        let mut addon_specs: HashMap<String, InstanceSpec> = HashMap::new();
        for a in store.addons()? {
            let Some(spec) = crate::addons::spec(&a) else {
                tracing::warn!(addon = %a.name, kind = %a.kind, "add-on of an unknown kind: not run");
                continue;
            };
            placed.push(Placement {
                id: spec.id.clone(),
                app: a.name.clone(),
                proc_type: a.kind.clone(),
                index: 1,
                node: Some(a.node.clone()),
                memory_mb: a.memory_mb,
            });
            lock(&self.known_apps).insert(a.name.clone());
            addon_specs.insert(spec.id.clone(), spec);
            // Its standby, following the primary wherever that is.
            let primary_host = nodes
                .iter()
                .find(|n| n.name == a.node)
                .map_or("127.0.0.1", |n| n.host.as_str());
            if let Some(standby) = crate::addons::standby_spec(&a, primary_host) {
                placed.push(Placement {
                    id: standby.id.clone(),
                    app: a.name.clone(),
                    proc_type: a.kind.clone(),
                    index: standby.index,
                    node: Some(a.standby_node.clone()),
                    memory_mb: a.memory_mb,
                });
                addon_specs.insert(standby.id.clone(), standby);
            }
        }
        // What each node should run. A list only changes when an instance
        // is added or removed, or changes release or memory (releases are
        // immutable), so specs are built only for nodes whose list changed.
        let mut wanted: HashMap<&str, Vec<&Placement>> = HashMap::new();
        for p in &placed {
            let runnable = releases.contains_key(&p.app) || addon_specs.contains_key(&p.id);
            if let (Some(node), true) = (p.node.as_deref(), runnable) {
                wanted.entry(node).or_default().push(p);
            }
        }
        let mut lists = lock(&self.lists);
        let frontends = store.frontends()?;
        {
            let mut known = lock(&self.frontends);
            if *known != frontends {
                // Handler processes get every frontend's endpoints: rebuild
                // every list.
                lists.clear();
                *known = frontends.clone();
            }
        }
        let changed: Vec<&str> = nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| {
                let want = wanted.get(n).map_or(&[][..], Vec::as_slice);
                lists.get(*n).is_none_or(|l| {
                    !same_instances(
                        &l.instances,
                        want,
                        &releases,
                        &restarts,
                        &requires,
                        &addon_specs,
                    )
                })
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let first = store.next_generations(changed.len() as u64)?;
        for (generation, node) in (first..).zip(changed) {
            let instances = wanted.get(node).map_or_else(Vec::new, |ps| {
                ps.iter()
                    .map(|p| {
                        if let Some(spec) = addon_specs.get(&p.id) {
                            return spec.clone();
                        }
                        let seq = seqs.get(&p.app).copied().unwrap_or(0);
                        let mut s = spec(p, &releases[&p.app], seq);
                        s.stack = stacks
                            .get(p.app.as_str())
                            .and_then(|st| images.get(st))
                            .cloned();
                        s.limits.cpu_millis = cpus.get(p.app.as_str()).copied().unwrap_or(0);
                        s.stop_when_lost_ms = stop_when_lost.get(p.app.as_str()).copied();
                        s.restart = restarts.get(&p.id).copied().unwrap_or(0);
                        s.requires = requires.get(p.app.as_str()).cloned().unwrap_or_default();
                        if let Some((cmd, tty)) = oneoffs.get(&p.id) {
                            s.command = cmd.clone();
                            s.tty = tty.clone();
                        }
                        if p.proc_type == routes::HANDLER_TYPE {
                            s.handler = routes::handler_endpoints(
                                self.cfg.handler_port_min,
                                &p.app,
                                seq,
                                node,
                                &frontends,
                            );
                            s.env
                                .insert("M2_SENDER_ID".into(), format!("zeroku-{}", p.id));
                        }
                        s
                    })
                    .collect()
            });
            let list = NodeList {
                node: node.to_string(),
                generation,
                instances,
            };
            tracing::info!(
                node,
                generation,
                instances = list.instances.len(),
                "publishing node list"
            );
            self.saw_apps(node, list.instances.iter().map(|i| i.app.as_str()));
            self.publish_list(&list);
            self.counters.lists.fetch_add(1, Ordering::Relaxed);
            lists.insert(node.to_string(), list);
        }
        Ok(())
    }

    /// [`Cluster::refresh_routes`] if anything it is built from may have changed since the
    /// last time: called on every liveness tick, it costs nothing at rest.
    pub fn refresh_routes_if_stale(&self) {
        if self.routes_stale.swap(false, Ordering::AcqRel) {
            self.refresh_routes();
            self.refresh_services();
        }
    }

    /// Rebuilds the route table from the store and the last heartbeats, and
    /// publishes it if it changed. Called after changes, and by the liveness tick when
    /// heartbeats changed something.
    pub fn refresh_routes(&self) {
        let store = self.store();
        let built = (|| -> Result<_, StoreError> {
            let apps = store.apps()?;
            let mut releases = HashMap::new();
            for a in &apps {
                if let Some(r) = store.current_release(&a.name)? {
                    releases.insert(a.name.clone(), r);
                }
            }
            let (domains, placements, nodes) =
                (store.domains()?, store.placements()?, store.nodes()?);
            let paths = store.routes()?;
            let settings = store.settings()?;
            let certs = store.cert_refs()?;
            let live = lock(&self.live);
            Ok(routes::build(&routes::Inputs {
                apps: &apps,
                releases: &releases,
                domains: &domains,
                paths: &paths,
                settings: &settings,
                certs: &certs,
                placements: &placements,
                nodes: &nodes,
                live: &live,
                handler_port_min: self.cfg.handler_port_min,
            }))
        })();
        let apps = match built {
            Ok(a) => a,
            Err(e) => return tracing::error!(error = %e, "building the route table"),
        };
        let acme = lock(&self.acme_challenges).clone();
        let acme_thumbprint = lock(&self.acme_thumbprint).clone();
        let mut current = lock(&self.routes);
        if current.apps == apps
            && current.acme == acme
            && current.acme_thumbprint == acme_thumbprint
            && current.generation > 0
        {
            return;
        }
        let generation = match store.next_generations(1) {
            Ok(g) => g,
            Err(e) => return tracing::error!(error = %e, "route table generation"),
        };
        *current = RouteTable {
            generation,
            apps,
            acme,
            acme_thumbprint,
        };
        tracing::debug!(
            generation,
            apps = current.apps.len(),
            "publishing route table"
        );
        bus::publish(
            &self.publisher,
            ROUTES_TOPIC.to_string(),
            &Message::Routes(current.clone()),
        );
    }

    /// Keeps the providers the lists are built with, and wakes `services:watch`ers when they
    /// changed.
    fn set_providers(&self, providers: crate::discovery::Providers) {
        let mut cur = lock(&self.providers);
        if *cur != providers {
            *cur = providers;
            self.services_changed.send_modify(|n| *n += 1);
        }
    }

    /// The providers of every service now (as the lists last published have them).
    pub fn providers(&self) -> crate::discovery::Providers {
        lock(&self.providers).clone()
    }

    /// Heartbeats changed what is up: when that changes a service's providers, re-plans, so
    /// the lists of the nodes running its requirers carry the new addresses. Costs one read of
    /// the current releases and placements, only when heartbeats changed something.
    pub fn refresh_services(&self) {
        let mut store = self.store();
        let changed = (|| -> Result<bool, StoreError> {
            let mut releases = HashMap::new();
            for a in store.apps()? {
                if let Some(r) = store.current_release(&a.name)? {
                    releases.insert(a.name, r);
                }
            }
            if releases
                .values()
                .all(|r| r.build.manifest.provides.is_empty())
            {
                return Ok(!lock(&self.providers).is_empty());
            }
            let (placements, nodes) = (store.placements()?, store.nodes()?);
            let live = lock(&self.live);
            let now = crate::discovery::providers(&releases, &placements, &nodes, &live);
            Ok(*lock(&self.providers) != now)
        })();
        match changed {
            Ok(true) => {
                tracing::info!("service providers changed: re-planning");
                if let Err(e) = self.replan(&mut store) {
                    tracing::error!(error = %e, "re-planning after providers changed");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, "looking for service providers"),
        }
    }

    /// Looks at `app`'s certificates now, whatever its last failure said about waiting.
    pub fn acme_wake(&self, app: &str) {
        if let Err(e) = self.store().cert_retry_now(app) {
            tracing::error!(app, error = %e, "cannot clear the certificate back-off");
        }
        self.acme_changed.notify_one();
    }

    /// Answers HTTP-01 `challenge` at every frontend (published at once).
    pub fn add_acme_challenge(&self, challenge: zeroku_conf::AcmeChallenge) {
        lock(&self.acme_challenges).push(challenge);
        self.refresh_routes();
    }

    /// Stops answering the challenges with these tokens.
    pub fn remove_acme_challenges(&self, tokens: &[String]) {
        lock(&self.acme_challenges).retain(|c| !tokens.contains(&c.token));
        self.refresh_routes();
    }

    /// Frontends answer any challenge token for the account with this thumbprint.
    pub fn set_acme_thumbprint(&self, thumbprint: &str) {
        *lock(&self.acme_thumbprint) = thumbprint.to_string();
        self.refresh_routes();
    }

    pub fn route_table(&self) -> RouteTable {
        lock(&self.routes).clone()
    }

    /// The heartbeat interval and dead timeout asked of nodes now.
    pub fn pace(&self) -> crate::live::Pace {
        lock(&self.pace).now
    }

    /// How long a node may be silent before it is dead, now (longer than `pace()`'s for a
    /// while after the pace shortened).
    pub fn dead_after(&self) -> Duration {
        lock(&self.pace).dead_after()
    }

    /// Forgets a removed node's list and what it was heard running.
    pub fn forget_node(&self, node: &str) {
        lock(&self.live).remove(node);
        lock(&self.lists).remove(node);
        lock(&self.node_apps).remove(node);
    }

    /// Tells every node at once that the master is there, and the heartbeat interval.
    fn publish_alive(&self) {
        bus::publish(&self.publisher, ALIVE_TOPIC.to_string(), &self.alive());
    }

    fn alive(&self) -> Message {
        Message::Alive(Alive {
            heartbeat_ms: self.pace().heartbeat.as_millis() as u64,
        })
    }

    /// Every republish interval: the sign of life every node hears ([`Message::Alive`]), the
    /// route table (one message), and the lists of nodes whose last heartbeat reports an older
    /// generation than their list's or none at all (a lost message; a new subscription gets
    /// its list at once anyway). At rest that is two messages, however large the cluster.
    pub fn republish(&self) {
        self.publish_alive();
        let routes = lock(&self.routes).clone();
        if routes.generation > 0 {
            bus::publish(
                &self.publisher,
                ROUTES_TOPIC.to_string(),
                &Message::Routes(routes),
            );
        }
        let behind: Vec<NodeList> = {
            let live = lock(&self.live);
            lock(&self.lists)
                .values()
                .filter(|l| {
                    live.get(&l.node)
                        .and_then(|n| n.heartbeat.as_ref())
                        .is_none_or(|hb| hb.generation < l.generation)
                })
                .cloned()
                .collect()
        };
        for l in &behind {
            self.publish_list(l);
        }
    }

    /// Publishes a node's list on its topic: only the node's own bus key may receive it. A node
    /// with no key yet (it joined before the bus was encrypted) gets it over the API.
    fn publish_list(&self, l: &NodeList) {
        match self.peers.node_topic(&l.node) {
            Some(topic) => bus::publish(&self.publisher, topic, &Message::NodeList(l.clone())),
            None => tracing::debug!(node = %l.node, "node has no bus key: list not published"),
        }
    }

    /// Whether the bus peer with key `who` may subscribe to `topic`, and what to send it now.
    pub fn on_subscribe(&self, who: &str, topic: &[u8]) -> Decision {
        if !self.peers.may_subscribe(who, topic) {
            return Decision::Refuse;
        }
        let msg = match self.peers.get(who) {
            // Not on `alive`: every node would get each newcomer's welcome. A joining node has
            // the pace from its join answer; the next republish interval says it again.
            Some(Peer::Node(_)) if topic == ALIVE_TOPIC.as_bytes() => None,
            Some(Peer::Node(node)) => Some(Message::NodeList(self.list(&node)))
                .filter(|m| matches!(m, Message::NodeList(l) if l.generation > 0)),
            Some(Peer::Frontend(_)) => Some(Message::Routes(self.route_table()))
                .filter(|m| matches!(m, Message::Routes(r) if r.generation > 0)),
            None => None,
        };
        Decision::Accept(msg.and_then(|m| zeroku_conf::wire::encode(&m).ok()))
    }

    /// Remembers that `node` runs (or ran) instances of `apps`.
    fn saw_apps<'a>(&self, node: &str, apps: impl Iterator<Item = &'a str>) {
        let now = Instant::now();
        let mut all = lock(&self.node_apps);
        let mine = all.entry(node.to_string()).or_default();
        for a in apps {
            match mine.get_mut(a) {
                Some(t) => *t = now,
                None => {
                    mine.insert(a.to_string(), now);
                }
            }
        }
        // Apps gone from the node long ago are forgotten.
        mine.retain(|_, t| now.duration_since(*t) < NODE_APPS_FOR);
    }

    /// Counts a message dropped because its sender may not say it (at most one log line per
    /// power of two, so a flood does not flood the log too).
    fn refuse(&self, why: &str, who: &str) {
        let n = self
            .dropped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        if n.is_power_of_two() {
            tracing::warn!(peer = %who, dropped = n, "dropped a bus message: {why}");
        }
    }

    pub fn list(&self, node: &str) -> NodeList {
        lock(&self.lists).get(node).cloned().unwrap_or(NodeList {
            node: node.to_string(),
            generation: 0,
            instances: Vec::new(),
        })
    }

    /// The generation of the list last published to `node` (0: none yet).
    pub fn generation(&self, node: &str) -> u64 {
        lock(&self.lists).get(node).map_or(0, |l| l.generation)
    }

    /// A message from the bus peer with key `who`: a node may speak for itself only, and of
    /// the apps it runs.
    pub fn on_message(&self, who: &str, msg: Message) {
        let node = match self.peers.get(who) {
            Some(Peer::Node(n)) => n,
            Some(Peer::Frontend(f)) => {
                return self.refuse("a frontend sent a worker's message", &f)
            }
            None => return self.refuse("its sender's key is not registered", who),
        };
        match msg {
            Message::Heartbeat(hb) if hb.node != node => self.refuse(
                &format!("node {node} sent a heartbeat as {}", hb.node),
                &node,
            ),
            Message::Heartbeat(hb) => {
                self.saw_apps(
                    &node,
                    hb.instances
                        .iter()
                        .filter_map(|i| i.id.split_once('.').map(|(a, _)| a)),
                );
                self.on_heartbeat(hb)
            }
            Message::Logs(lines) => {
                let n = lines.len();
                let lines: Vec<_> = {
                    let all = lock(&self.node_apps);
                    let mine = all.get(&node);
                    lines
                        .into_iter()
                        .filter(|l| mine.is_some_and(|m| m.contains_key(&l.app)))
                        .collect()
                };
                // Lines of a deleted app, sent after it was deleted, are not kept either.
                let lines: Vec<_> = {
                    let known = lock(&self.known_apps);
                    lines
                        .into_iter()
                        .filter(|l| known.contains(&l.app))
                        .collect()
                };
                if lines.len() < n {
                    self.refuse(
                        &format!("node {node} sent log lines of apps it does not run"),
                        &node,
                    );
                }
                self.logs.push(lines);
            }
            Message::Usage(u) if u.node != node => {
                self.refuse(&format!("node {node} sent usage as {}", u.node), &node)
            }
            Message::Usage(u) => {
                let n = u.instances.len();
                // Only instances the master placed on this node (its list says so; a heartbeat
                // is the node's own word).
                let mine: Vec<_> = {
                    let lists = lock(&self.lists);
                    let placed: HashSet<&str> = lists
                        .get(&node)
                        .map(|l| l.instances.iter().map(|s| s.id.as_str()).collect())
                        .unwrap_or_default();
                    u.instances
                        .into_iter()
                        .filter(|i| placed.contains(i.id.as_str()))
                        .collect()
                };
                if mine.len() < n {
                    self.refuse(
                        &format!("node {node} sent the usage of apps it does not run"),
                        &node,
                    );
                }
                if let Err(e) = self.store().add_usage(&node, &mine) {
                    tracing::error!(error = %e, node = %node, "recording usage");
                }
            }
            Message::NodeList(l) => {
                tracing::warn!(node = %l.node, "ignored a node list sent to the master")
            }
            Message::Routes(_) => tracing::warn!("ignored a route table sent to the master"),
            Message::Alive(_) => tracing::warn!("ignored a sign of life sent to the master"),
        }
    }

    /// The instances reported crashed since the last call.
    pub fn take_crashed(&self) -> Vec<(String, String, String)> {
        std::mem::take(&mut *lock(&self.crashed))
    }

    fn on_heartbeat(&self, hb: Heartbeat) {
        self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
        // At rest a node says the same thing every interval: only its time changes.
        let crashed_before: Vec<String> = {
            let mut live = lock(&self.live);
            match live.get_mut(&hb.node) {
                Some(l) if l.up && l.heartbeat.as_ref() == Some(&hb) => {
                    l.last_seen = Instant::now();
                    return;
                }
                Some(l) => l.heartbeat.as_ref().map_or_else(Vec::new, |h| {
                    h.instances
                        .iter()
                        .filter(|i| i.state == zeroku_conf::InstanceState::Crashed)
                        .map(|i| i.id.clone())
                        .collect()
                }),
                None => Vec::new(),
            }
        };
        let newly_crashed = hb.instances.iter().filter(|i| {
            i.state == zeroku_conf::InstanceState::Crashed && !crashed_before.contains(&i.id)
        });
        lock(&self.crashed).extend(newly_crashed.map(|i| {
            (
                hb.node.clone(),
                i.id.clone(),
                i.last_exit.clone().unwrap_or_default(),
            )
        }));
        let mut store = self.store();
        let node = match store.node(&hb.node) {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "reading nodes");
                return;
            }
        };
        let Some(node) = node else {
            tracing::warn!(node = %hb.node, "heartbeat from a node that never joined; ignored");
            return;
        };
        let name = hb.node.clone();
        // A node that gained or lost docker changes where docker apps go.
        let docker = hb.runtimes.iter().any(|r| r.starts_with("docker"));
        let docker_changed = {
            let mut d = lock(&self.docker_nodes);
            if docker {
                d.insert(name.clone())
            } else {
                d.remove(&name)
            }
        };
        // One-offs that ended: recorded, and dropped from the node's list.
        let done: Vec<(String, String)> = hb
            .instances
            .iter()
            .filter(|i| i.state == zeroku_conf::InstanceState::Done)
            .map(|i| (i.id.clone(), i.last_exit.clone().unwrap_or_default()))
            .collect();
        let mut ended = false;
        // Whatever fails here is tried again on the next heartbeat (no fast path until then).
        let mut settled = true;
        for (id, exit) in &done {
            match store.finish_oneoff(id, exit) {
                Ok(e) => ended |= e,
                Err(e) => {
                    settled = false;
                    tracing::error!(error = %e, instance = %id, "recording a one-off's end");
                }
            }
        }
        if ended || docker_changed {
            if let Err(e) = self.replan(&mut store) {
                settled = false;
                tracing::error!(error = %e, "dropping ended one-offs");
            }
        }
        if node.state != "up" {
            tracing::info!(node = %name, "node is back");
            let res = store
                .set_node_state(&name, "up")
                .and_then(|_| self.replan(&mut store));
            if let Err(e) = res {
                settled = false;
                tracing::error!(error = %e, node = %name, "marking node up");
            }
        }
        lock(&self.live).insert(
            name,
            Live {
                last_seen: Instant::now(),
                heartbeat: Some(hb),
                up: settled,
            },
        );
        // Only now: a tick that took the flag before this heartbeat was in `live` would
        // build the table without it and never again.
        self.routes_stale.store(true, Ordering::Release);
    }

    /// Marks nodes dead that have been silent for the dead timeout (`dead_after_ms`, longer on
    /// a large cluster: [`crate::live::Pace`]), and moves their instances. Called every
    /// 250 ms (`periodic::LIVENESS`); O(nodes) in memory, the store read once per dead timeout.
    /// Marks the nodes whose heartbeats stopped dead and re-places their instances; returns
    /// them.
    pub fn check_liveness(&self) -> Vec<String> {
        let dead_after = self.dead_after();
        let full = {
            let mut last = lock(&self.liveness_read);
            let due = last.elapsed() >= dead_after;
            if due {
                *last = Instant::now();
            }
            due
        };
        let mut store = self.store();
        // Every tick, from memory: the nodes heard from whose heartbeats stopped. Once per dead
        // timeout, from the store: every node it has up, those not heard since the start too.
        let up: Option<Vec<String>> = if full {
            match store.nodes() {
                Ok(n) => Some(
                    n.into_iter()
                        .filter(|n| n.state == "up")
                        .map(|n| n.name)
                        .collect(),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "reading nodes");
                    return Vec::new();
                }
            }
        } else {
            None
        };
        let mut live = lock(&self.live);
        let silent: Vec<String> = match up {
            Some(up) => up
                .into_iter()
                .filter(|n| {
                    let seen = live.get(n).map_or(self.started, |l| l.last_seen);
                    seen.elapsed() > dead_after
                })
                .collect(),
            None => live
                .iter()
                .filter(|(_, l)| l.up && l.last_seen.elapsed() > dead_after)
                .map(|(n, _)| n.clone())
                .collect(),
        };
        if silent.is_empty() {
            return silent;
        }
        // Its next heartbeat, the same as its last or not, brings it back.
        for n in &silent {
            if let Some(l) = live.get_mut(n) {
                l.up = false;
            }
        }
        drop(live);
        self.routes_stale.store(true, Ordering::Release);
        for n in &silent {
            tracing::warn!(node = %n, "node missed its heartbeats; marking it dead and moving its instances");
            if let Err(e) = store.set_node_state(n, "dead") {
                tracing::error!(error = %e, "marking node dead");
            }
        }
        if let Err(e) = self.replan(&mut store) {
            tracing::error!(error = %e, "re-placing after node loss");
        }
        silent
    }

    pub fn live(&self) -> MutexGuard<'_, HashMap<String, Live>> {
        lock(&self.live)
    }

    /// Deletes slugs no recent release of any app refers to (after their
    /// grace period). Errors are logged: collection never fails a request.
    pub fn gc_slugs(&self) {
        let keep = {
            let store = self.store();
            let mut keep = std::collections::HashSet::new();
            let apps = match store.apps() {
                Ok(a) => a,
                Err(e) => return tracing::warn!(error = %e, "slug gc: reading apps"),
            };
            for app in apps {
                match store.releases(&app.name) {
                    Ok(rels) => {
                        let skip = rels.len().saturating_sub(self.cfg.keep_releases as usize);
                        keep.extend(rels.into_iter().skip(skip).map(|r| r.slug_sha256));
                    }
                    Err(e) => return tracing::warn!(error = %e, "slug gc: reading releases"),
                }
            }
            keep
        };
        let grace = Duration::from_secs(self.cfg.slug_gc_grace_secs);
        if let Err(e) = self.slugs.gc(&keep, grace) {
            tracing::warn!(error = %e, "slug garbage collection");
        }
    }
}

/// Whether a published list already says what `want` says.
fn same_instances(
    have: &[InstanceSpec],
    want: &[&Placement],
    releases: &HashMap<String, Release>,
    restarts: &HashMap<String, u32>,
    requires: &HashMap<&str, Vec<zeroku_conf::Required>>,
    addon_specs: &HashMap<String, InstanceSpec>,
) -> bool {
    have.len() == want.len()
        && have.iter().zip(want).all(|(h, p)| {
            h.id == p.id
                && h.requires.as_slice()
                    == requires.get(p.app.as_str()).map_or(&[][..], Vec::as_slice)
                && h.limits.memory_mb == p.memory_mb
                && h.restart == restarts.get(&p.id).copied().unwrap_or(0)
                && match addon_specs.get(&p.id) {
                    // An add-on's server: the whole spec (a failover changes whom it follows).
                    Some(a) => a == h,
                    None => releases.get(&p.app).is_some_and(|r| r.version == h.release),
                }
        })
}

/// The spec of one placed instance at its app's current release.
pub fn spec(p: &Placement, rel: &Release, app_seq: u32) -> InstanceSpec {
    InstanceSpec {
        id: p.id.clone(),
        app: p.app.clone(),
        app_seq,
        proc_type: p.proc_type.clone(),
        index: p.index,
        release: rel.version,
        command: rel
            .process_types
            .get(&p.proc_type)
            .cloned()
            .unwrap_or_default(),
        env: rel.env.clone(),
        slug: SlugRef {
            sha256: rel.slug_sha256.clone(),
            size: rel.slug_size,
        },
        limits: Limits {
            memory_mb: p.memory_mb,
            ..Limits::default()
        },
        stack: None,
        tty: None,
        handler: Vec::new(),
        restart: 0,
        stop_when_lost_ms: None,
        addon: None,
        requires: Vec::new(),
    }
}
