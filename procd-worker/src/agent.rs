//! The worker's main loop: join, follow the list, supervise, report.

use crate::bus;
use crate::docker::DockerRuntime;
use crate::logs::LogTailer;
use crate::native::NativeRuntime;
use crate::runtime::{Runtime, Terminal};
use crate::runtimes::Runtimes;
use crate::supervisor::{Event, Supervisor};
use crate::terminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use zeroku_client::join::{until_answered, Saved};
use zeroku_client::v1::{BusInfo, NodeJoined, RegisterNode};
use zeroku_client::{Client, ClientError, Method};
use zeroku_conf::config::WorkerConfig;
use zeroku_conf::wire::{self, node_topic, Message};
use zeroku_conf::{Heartbeat, LogLine, NodeList, Stream};
use zeroku_slug::SlugCache;

#[derive(Debug, Error)]
pub enum WorkerError {
    #[error("invalid worker config: {0}")]
    Config(String),
    #[error("cannot use data directory {path}: {source}")]
    Data {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no token to join the cluster: give a join token from `zeroku nodes:join-token` with --token-file or ZEROKU_JOIN_TOKEN")]
    NoToken,
    #[error("the master refused to let node {node} join: {source}")]
    Refused {
        node: String,
        #[source]
        source: ClientError,
    },
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot start the process runtime: {0}")]
    Runtime(String),
    #[error("ZMQ: cannot connect to {endpoint}: {source}")]
    Zmq {
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
}

/// How long one slug download and unpack may take before it is retried.
const SLUG_FETCH_TIMEOUT: Duration = Duration::from_secs(600);

/// How often the agent's loop runs while anything is in motion.
const BUSY_TICK: Duration = Duration::from_millis(100);

fn machine_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(1024, |kb| kb / 1024)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// This node's credentials and the bus, once joined.
struct Joined {
    token: String,
    keys: zeroku_bus::Keys,
    bus: BusInfo,
}

/// Comes back with the credentials saved by an earlier run, or joins with the join token
/// `token` (used up by it) under a new bus key; retries while the master is unreachable.
/// `None` if shut down first.
async fn join(
    cfg: &WorkerConfig,
    data: &Path,
    token: Option<&str>,
    capacity_mb: u64,
    shutdown: &CancellationToken,
) -> Result<Option<Joined>, WorkerError> {
    let saved_path = data.join("node-token.json");
    let body = |keys: &zeroku_bus::Keys| RegisterNode {
        name: cfg.node.clone(),
        capacity_mb,
        host: cfg.advertise_host.clone(),
        bus_key: keys.public_z85(),
    };
    let refused = |source| WorkerError::Refused {
        node: cfg.node.clone(),
        source,
    };
    let saved = Saved::load(&saved_path, &cfg.node, &cfg.master);
    if let Some(s) = saved.filter(|s| !s.bus_public.is_empty()) {
        let keys = zeroku_bus::Keys::from_z85(&s.bus_public, &s.bus_secret)
            .map_err(|e| WorkerError::Runtime(format!("{}: {e}", saved_path.display())))?;
        let client = Client::new(&cfg.master, &s.token)?;
        let (path, hello) = (format!("/v1/nodes/{}/hello", cfg.node), body(&keys));
        let hello = until_answered(shutdown, "reach the master", || {
            client.send::<BusInfo>(Method::POST, &path, &hello)
        })
        .await;
        match hello {
            Ok(Some(bus)) => {
                return Ok(Some(Joined {
                    token: s.token,
                    keys,
                    bus,
                }))
            }
            Ok(None) => return Ok(None),
            Err(e) if token.is_none() => return Err(refused(e)),
            Err(e) => {
                tracing::warn!(error = %e, "the master refused this node's saved token; joining again with the join token")
            }
        }
    }
    let token = token.ok_or(WorkerError::NoToken)?;
    let keys = zeroku_bus::Keys::generate().map_err(|e| WorkerError::Runtime(e.to_string()))?;
    let (client, register) = (Client::new(&cfg.master, token)?, body(&keys));
    let joined = until_answered(shutdown, "reach the master", || {
        client.send::<NodeJoined>(Method::POST, "/v1/nodes/register", &register)
    })
    .await
    .map_err(refused)?;
    let Some(j) = joined else {
        return Ok(None);
    };
    let saved = Saved {
        name: cfg.node.clone(),
        master: cfg.master.clone(),
        token: j.node_token.clone(),
        bus_public: keys.public_z85(),
        bus_secret: keys.secret_z85(),
    };
    saved
        .store(&saved_path)
        .map_err(|source| WorkerError::Data {
            path: saved_path.clone(),
            source,
        })?;
    Ok(Some(Joined {
        token: j.node_token,
        keys,
        bus: j.bus,
    }))
}

/// Runs the worker until `shutdown`. The processes it started keep running
/// when it returns; the next run re-adopts them.
pub async fn run(
    cfg: WorkerConfig,
    data: &Path,
    token: Option<String>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    cfg.validate().map_err(WorkerError::Config)?;
    // Apps pass through to their own directories below (0700, theirs); nobody
    // lists it. Credentials in it are 0600.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(data)
            .and_then(|()| std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o711)))
            .map_err(|source| WorkerError::Data {
                path: data.to_path_buf(),
                source,
            })?;
    }
    let capacity_mb = if cfg.capacity_mb == 0 {
        machine_memory_mb()
    } else {
        cfg.capacity_mb
    };
    let Some(joined) = join(&cfg, data, token.as_deref(), capacity_mb, &shutdown).await? else {
        return Ok(());
    };
    let master_key = zeroku_bus::keys::decode(&joined.bus.master_key, "the master's bus key")
        .map_err(|e| WorkerError::Runtime(e.to_string()))?;
    let client = Client::new(&cfg.master, &joined.token)?;
    let native = NativeRuntime::new(data, cfg.app_uid_base)
        .map_err(|e| WorkerError::Runtime(e.to_string()))?;
    let docker = {
        let (node, d, base) = (cfg.node.clone(), data.to_path_buf(), cfg.app_uid_base);
        let cluster = joined.bus.cluster.clone();
        tokio::task::spawn_blocking(move || DockerRuntime::connect(&node, &cluster, &d, base))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    match &docker {
        Ok(d) => tracing::info!(engine = %d.version, "docker runtime available"),
        Err(why) => tracing::info!(%why, "no docker runtime: native processes only"),
    }
    let rt = Runtimes {
        native,
        docker,
        master: (cfg.master.clone(), joined.token.clone()),
    };
    let (runtimes, limits) = (rt.names(), rt_limits(&rt));
    let cache = Arc::new(SlugCache::open(data).map_err(WorkerError::Runtime)?);
    let mut tailer = LogTailer::new(&data.join("logs"));
    let mut sup = Supervisor::new(rt, cfg.clone(), Instant::now());
    let relay_dir = data.join("relay");
    sup.set_relay_dir(relay_dir.clone());
    // Add-on servers' data: each in a 0700 directory of its own uid, under one they can only
    // pass through.
    let addons_dir = data.join("addons");
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&addons_dir)
            .map_err(|source| WorkerError::Data {
                path: addons_dir.clone(),
                source,
            })?;
    }
    sup.set_addons_dir(addons_dir);
    // Requirement files: each instance's in a directory of its app's group, under one apps
    // can only pass through.
    let require_dir = data.join("require");
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&require_dir)
            .and_then(|_| {
                std::fs::set_permissions(&require_dir, std::fs::Permissions::from_mode(0o711))
            });
        made.map_err(|source| WorkerError::Data {
            path: require_dir.clone(),
            source,
        })?;
    }
    sup.set_require_dir(require_dir);
    sup.set_port_claims(&crate::ports::host_dir());

    // Never rely on PUB alone: the list over the API first.
    let list_path = format!("/v1/nodes/{}/list", cfg.node);
    let mut delay = Duration::from_millis(200);
    let initial: NodeList = loop {
        match client.get(&list_path).await {
            Ok(l) => break l,
            Err(
                e @ ClientError::Api {
                    status: 400..=499, ..
                },
            ) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "cannot fetch this node's list yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    };
    sup.apply(initial, Instant::now());

    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let dropped = Arc::new(AtomicU64::new(0));
    let (list_tx, mut list_rx) = tokio::sync::mpsc::channel(16);
    let zmq_err = |endpoint: &str| {
        let endpoint = endpoint.to_string();
        move |source| WorkerError::Zmq { endpoint, source }
    };
    let curve = bus::Curve {
        keys: joined.keys.clone(),
        server: master_key,
    };
    let mut forwards = crate::forward::Forwards::default();
    let relays = crate::relay::Relays::start(zmq::Context::new(), curve.clone(), &relay_dir)
        .map_err(|source| WorkerError::Data {
            path: relay_dir.clone(),
            source,
        })?;
    let as_root = crate::native::is_root();
    let sub = bus::start_sub(
        &ctx,
        &joined.bus.pub_endpoint,
        &curve,
        &node_topic(&cfg.node, &joined.keys.id()),
        list_tx,
        dropped.clone(),
        stop.clone(),
    )
    .map_err(zmq_err(&joined.bus.pub_endpoint))?;
    // Heartbeats and logs on separate PUSH sockets (the master's PULL
    // fair-queues between them), so a log backlog never delays a heartbeat
    // past the dead-node timeout.
    let (hb_tx, hb_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let pull_ep = &joined.bus.pull_endpoint;
    let hb_push = bus::start_push(&ctx, pull_ep, &curve, hb_rx, 16, stop.clone())
        .map_err(zmq_err(pull_ep))?;
    let (log_tx, log_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(256);
    let log_push = bus::start_push(&ctx, pull_ep, &curve, log_rx, 256, stop.clone())
        .map_err(zmq_err(pull_ep))?;
    let send = |tx: &std::sync::mpsc::SyncSender<Vec<u8>>, m: &Message| match wire::encode(m) {
        Ok(b) => {
            if tx.try_send(b).is_err() {
                tracing::debug!("master not keeping up: message dropped");
            }
        }
        Err(e) => tracing::error!(error = %e, "encode"),
    };
    tracing::info!(node = %cfg.node, master = %cfg.master, generation = sup.generation(), "worker running");

    let (slug_tx, mut slug_rx) =
        tokio::sync::mpsc::channel::<(String, Result<PathBuf, String>)>(64);
    // Every 100 ms while anything is in motion (starts, stops, one-offs); every second at
    // rest, when a pass only looks for exits and new log lines. A child that exits wakes the
    // loop at once (SIGCHLD), so crashes of processes this worker started are seen as fast.
    let mut tick = tokio::time::interval(BUSY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resting = false;
    let mut child_exits =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
    // The master may ask for another interval later (a larger cluster): `Message::Alive`.
    let mut hb_every = Duration::from_millis(joined.bus.heartbeat_interval_ms.max(100));
    // At rest: often enough for every heartbeat to leave on time.
    let mut rest_tick = hb_every.clamp(BUSY_TICK, Duration::from_secs(1));
    let mut last_hb = Instant::now() - hb_every;
    let mut last_gc = Instant::now();
    let mut pending_logs: Vec<LogLine> = Vec::new();
    // When the master was last heard from (every list, republished ones too).
    let mut heard = Instant::now();
    let metrics = crate::metrics::Metrics::default();
    // What instances used, for the master's per-minute metrics.
    let mut report = tokio::time::interval(Duration::from_millis(cfg.report_interval_ms.max(100)));
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    report.tick().await;
    let mut reported = std::collections::HashMap::new();
    zeroku_metrics::spawn_admin(&cfg.metrics, Arc::new(metrics.clone()), shutdown.clone()).await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(msg) = list_rx.recv() => {
                heard = Instant::now();
                sup.heard(heard);
                match msg {
                    Message::NodeList(list) => {
                        let applied = sup.apply(list, Instant::now());
                        if applied {
                            tracing::info!(generation = sup.generation(), "applied new list");
                            // Act on it now rather than at the next tick.
                            tick.reset_immediately();
                        }
                    }
                    Message::Alive(a) => {
                        let every = Duration::from_millis(a.heartbeat_ms.max(100));
                        if every != hb_every {
                            tracing::info!(heartbeat_ms = a.heartbeat_ms, "the master asks for another heartbeat interval");
                            hb_every = every;
                            rest_tick = hb_every.clamp(BUSY_TICK, Duration::from_secs(1));
                            // Take the new rest tick at the next switch to rest.
                            resting = false;
                        }
                    }
                    _ => {}
                }
            }
            _ = report.tick() => {
                let snap = metrics.0.lock().map(|s| s.instances.clone()).unwrap_or_default();
                let usage = crate::metrics::usage(&cfg.node, &snap, &mut reported);
                if !usage.instances.is_empty() {
                    send(&hb_tx, &Message::Usage(usage));
                }
            }
            Some((sha, res)) = slug_rx.recv() => match res {
                Ok(dir) => sup.slug_ready(&sha, dir),
                Err(e) => {
                    tracing::warn!(slug = %sha, error = %e, "slug fetch failed; will retry");
                    sup.slug_failed(&sha, &e, Instant::now());
                }
            },
            Some(()) = async {
                match child_exits.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                tick.reset_immediately();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                sup.master_silent(now.duration_since(heard));
                sup.tick(now);
                for at in forwards.sync(sup.forwards()) {
                    sup.forward_failed(at, now);
                }
                relays.sync(
                    sup.running_handlers()
                        .into_iter()
                        .flat_map(|spec| {
                            let uid = as_root.then(|| cfg.app_uid_base.saturating_add(spec.app_seq));
                            crate::relay::wanted(&relay_dir, spec, uid)
                        })
                        .collect(),
                );
                for ev in sup.take_events() {
                    match ev {
                        Event::NeedSlug(sha) => {
                            let (cache, client, tx) = (cache.clone(), client.clone(), slug_tx.clone());
                            // The app's own copy, in a directory of its uid.
                            let app = sha.split('/').next().unwrap_or_default();
                            let uid = sup
                                .app_seq(app)
                                .filter(|_| as_root)
                                .map(|seq| cfg.app_uid_base.saturating_add(seq));
                            tokio::spawn(async move {
                                let digest = sha.rsplit('/').next().unwrap_or_default();
                                let path = format!("/v1/slugs/{digest}");
                                let fetch = |dest: PathBuf| async move {
                                    client.download(&path, &dest).await.map_err(|e| e.to_string())
                                };
                                let res = match tokio::time::timeout(SLUG_FETCH_TIMEOUT, cache.ensure(&sha, uid, fetch)).await {
                                    Ok(r) => r,
                                    Err(_) => Err(format!("gave up after {} s", SLUG_FETCH_TIMEOUT.as_secs())),
                                };
                                let _ = tx.send((sha, res)).await;
                            });
                        }
                        Event::System { app, instance, release, line } => {
                            pending_logs.push(LogLine { app, instance, release, ts_ms: now_ms(), stream: Stream::System, line });
                        }
                        Event::Gone(rec) => {
                            // Everything it wrote, an unterminated last line too.
                            loop {
                                let last = tailer.read_final(&rec);
                                if last.is_empty() {
                                    break;
                                }
                                pending_logs.extend(log_lines(&rec, last));
                            }
                            tailer.remove(&rec);
                        }
                    }
                }
                for (rec, t) in sup.runtime().take_terminals() {
                    let (client, node) = (client.clone(), cfg.node.clone());
                    match t {
                        Terminal::Pty(fd) => {
                            tokio::spawn(terminal::relay_pty(client, node, rec.instance, fd));
                        }
                        Terminal::Container { id, cols, rows } => {
                            if let Ok(d) = &sup.runtime().docker {
                                d.relay_terminal(client, node, rec.instance, id, (cols, rows));
                            }
                        }
                    }
                }
                for rec in sup.records() {
                    pending_logs.extend(log_lines(rec, tailer.read_new(rec)));
                }
                if !pending_logs.is_empty() {
                    for chunk in std::mem::take(&mut pending_logs).chunks(500) {
                        send(&log_tx, &Message::Logs(chunk.to_vec()));
                    }
                }
                if sup.take_changed() || last_hb.elapsed() >= hb_every {
                    last_hb = Instant::now();
                    let instances = sup.statuses();
                    metrics.set(sup.generation(), &instances);
                    send(&hb_tx, &Message::Heartbeat(Heartbeat {
                        node: cfg.node.clone(),
                        generation: sup.generation(),
                        capacity_mb,
                        cgroups_unavailable: limits.clone(),
                        instances,
                        runtimes: runtimes.clone(),
                        stacks: sup.runtime().stacks(),
                    }));
                }
                let rest = !sup.busy();
                if rest != resting {
                    resting = rest;
                    tick = tokio::time::interval_at(
                        tokio::time::Instant::now() + if rest { rest_tick } else { BUSY_TICK },
                        if rest { rest_tick } else { BUSY_TICK },
                    );
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                }
                if last_gc.elapsed() >= Duration::from_secs(30) {
                    last_gc = Instant::now();
                    let (cache, used, keep) = (cache.clone(), sup.slugs_in_use(), cfg.keep_unused_slugs);
                    tokio::task::spawn_blocking(move || cache.gc(&used, keep));
                }
            }
        }
    }
    tracing::info!(node = %cfg.node, "worker stopping; app processes keep running and will be re-adopted");
    stop.store(true, Ordering::Relaxed);
    // The SUB thread may be blocked handing over a list: let it go.
    drop(list_rx);
    drop((hb_tx, log_tx));
    let _ = tokio::task::spawn_blocking(move || {
        let _ = sub.join();
        let _ = hb_push.join();
        let _ = log_push.join();
    })
    .await;
    Ok(())
}

fn rt_limits(rt: &Runtimes) -> Option<String> {
    use crate::runtime::Runtime;
    rt.limits_unavailable()
}

fn log_lines(rec: &crate::runtime::ProcRecord, lines: Vec<String>) -> Vec<LogLine> {
    let ts = now_ms();
    lines
        .into_iter()
        .map(|line| LogLine {
            app: rec.app.clone(),
            instance: rec.instance.clone(),
            release: rec.release,
            ts_ms: ts,
            stream: Stream::Out,
            line,
        })
        .collect()
}
