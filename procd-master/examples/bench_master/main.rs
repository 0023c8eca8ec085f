//! Master benchmark: place 100,000 instances over 5,000 nodes and publish
//! every node's list over real ZMQ, using the real library (SQLite store,
//! `Cluster::replan`, `scheduler::place`, `bus::start_pub`).
//!
//! Shape (defaults): 5,000 nodes of 64 GiB; 1,000 apps, each with a release
//! of two process types, `web` = 70 × 512 MB and `worker` = 30 × 1 GiB (100
//! instances per app, 100,000 in all), and 8 config vars per app (a realistic
//! env: every instance carries its app's env in its node list).
//!
//! The subscribers run in a child process (this same binary, re-executed with
//! `--subscriber`): one SUB socket per node, as on a real cluster — each a
//! CURVE client with that node's own key, let in by the master's ZAP handler
//! and allowed its own topic only — spread over 10 threads, decoding every
//! list, reporting each one on stdout; so the master's RSS is the master's.
//!
//! Then the master at rest (`rest.rs`): every node heartbeating over the bus
//! from a second child, the real periodic tasks running, for `--rest` seconds.
//!
//! Run: `cargo run --release -p zeroku-master --example bench_master`
//! (options: `--nodes N --apps N --web N --worker N --sockets N --env N --rest SECS`;
//! `--sockets` is the number of subscriber threads). With `--discovery [--requirers N]`:
//! how one change of a service's providers reaches its requiring instances (`discovery.rs`).
//! With `--metrics-storage`: what a day of one app's per-minute metrics (`zeroku metrics`)
//! takes in the store, and what one report costs (`metrics_storage.rs`). With `--dashboard`:
//! the server time of the dashboard's pages on 100 apps and 1,000 instances (`dashboard.rs`).
//! Timings are printed, never asserted.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use zeroku_bus::Keys;
use zeroku_conf::config::MasterConfig;
use zeroku_conf::wire::{self, node_topic, Message};
use zeroku_conf::{Heartbeat, InstanceSpec, InstanceState, InstanceStatus, NodeList};
use zeroku_master::bus;
use zeroku_master::cluster::Cluster;
use zeroku_master::scheduler::{self, NodeSlot};
use zeroku_master::store::{Formation, Release, Store, StoreError};
use zeroku_slug::SlugStore;

mod dashboard;
mod discovery;
mod metrics_storage;
mod rest;

const WARMUP: &[u8] = b"warmup";

struct Params {
    nodes: usize,
    apps: usize,
    web: u32,
    worker: u32,
    sockets: usize,
    env: usize,
    node_mb: u64,
    rest: u64,
}

fn node_name(i: usize) -> String {
    // Fixed width, so a SUB prefix subscription matches exactly one node.
    format!("n{i:05}")
}

fn app_name(i: usize) -> String {
    format!("app{i:04}")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    raise_fd_limit();
    if args.get(1).map(String::as_str) == Some("--subscriber") {
        let sockets = args[5].parse().expect("sockets");
        subscriber(&args[2], &args[3], &args[4], sockets);
        return;
    }
    if args.get(1).map(String::as_str) == Some("--heartbeats") {
        rest::child(&args[2], &args[3], &args[4], &args[5]);
        return;
    }
    let mut p = Params {
        nodes: 5_000,
        apps: 1_000,
        web: 70,
        worker: 30,
        sockets: 10,
        env: 8,
        node_mb: 64 * 1024,
        rest: 30,
    };
    let (mut discovery, mut requirers, mut nodes_given) = (false, 1_000u32, false);
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--discovery" {
            discovery = true;
            continue;
        }
        if a == "--metrics-storage" {
            metrics_storage::run();
            return;
        }
        if a == "--dashboard" {
            if !nodes_given {
                p.nodes = 10;
            }
            dashboard::run(&p);
            return;
        }
        let mut v = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{a} needs a number"))
        };
        match a.as_str() {
            "--nodes" => {
                p.nodes = v();
                nodes_given = true;
            }
            "--requirers" => requirers = v() as u32,
            "--apps" => p.apps = v(),
            "--web" => p.web = v() as u32,
            "--worker" => p.worker = v() as u32,
            "--sockets" => p.sockets = v().max(1),
            "--env" => p.env = v(),
            "--rest" => p.rest = v() as u64,
            other => panic!("unknown option {other}"),
        }
    }
    if discovery {
        if !nodes_given {
            p.nodes = 10;
        }
        discovery::run(&p, requirers);
        return;
    }
    run(&p);
}

// ---------------------------------------------------------------- helpers

/// This process's CPU time so far, every thread (user + system).
#[allow(unsafe_code)]
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU per message over one PUSH->PULL connection, plain and with CURVE (both ends here):
/// what CURVE adds to every list published and every heartbeat received.
fn bus_cost(list_bytes: usize, nodes: usize) -> Table {
    let per_msg = |curve: bool, size: usize, n: usize| -> Duration {
        let ctx = zmq::Context::new();
        let (server, client) = (Keys::generate().unwrap(), Keys::generate().unwrap());
        let pull = ctx.socket(zmq::PULL).unwrap();
        if curve {
            zeroku_bus::curve::server(&pull, &server, "bench").unwrap();
        }
        pull.bind("tcp://127.0.0.1:*").unwrap();
        let ep = pull.get_last_endpoint().unwrap().unwrap();
        let push = ctx.socket(zmq::PUSH).unwrap();
        push.set_sndhwm(0).unwrap();
        if curve {
            zeroku_bus::curve::client(&push, &client, &server.public).unwrap();
        }
        push.connect(&ep).unwrap();
        let msg = vec![0x5au8; size];
        push.send(&msg[..], 0).unwrap();
        pull.recv_bytes(0).unwrap();
        let c0 = cpu_time();
        let receiver = std::thread::spawn(move || {
            for _ in 0..n {
                pull.recv_bytes(0).unwrap();
            }
        });
        for _ in 0..n {
            push.send(&msg[..], 0).unwrap();
        }
        receiver.join().unwrap();
        (cpu_time() - c0) / n as u32
    };
    let mut t = Table(Vec::new());
    let us = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6);
    for (what, size, n, per_sec) in [
        ("a node list", list_bytes, 20_000usize, None),
        ("a heartbeat (~20 instances)", 2_000, 50_000, Some(nodes)),
    ] {
        let (plain, curve) = (per_msg(false, size, n), per_msg(true, size, n));
        let added = curve.saturating_sub(plain);
        t.row(
            format!("{what}, {size} B: CPU per message plain / CURVE / added"),
            format!("{} / {} / {}", us(plain), us(curve), us(added)),
        );
        match per_sec {
            Some(k) => t.row(
                format!("  added for {k} heartbeats a second"),
                format!("{:.1}% of a core", added.as_secs_f64() * k as f64 * 100.0),
            ),
            None => t.row(
                format!("  added for {nodes} lists (a full replan or republish)"),
                ms(added * nodes as u32),
            ),
        }
    }
    t
}

/// One bus connection per node needs more descriptors than the usual soft limit of 1024.
#[allow(unsafe_code)]
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max.min(1 << 20);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// (VmRSS, VmHWM) in KiB of `pid` (or this process).
fn rss_kb(pid: Option<u32>) -> (u64, u64) {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let field = |k: &str| {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn per_sec(n: usize, d: Duration) -> String {
    format!("{:.0}/s", n as f64 / d.as_secs_f64())
}

/// Each node's bus keys in a file, for the subscriber child (`name public secret` a line).
fn keys_file(dir: &std::path::Path, node_keys: &[(String, Keys)]) -> std::path::PathBuf {
    let path = dir.join("node-keys");
    std::fs::write(
        &path,
        node_keys
            .iter()
            .map(|(n, k)| format!("{n} {} {}\n", k.public_z85(), k.secret_z85()))
            .collect::<String>(),
    )
    .expect("keys file");
    path
}

/// Node `node`'s heartbeat with every instance of its list up, except `down`.
fn heartbeat(cluster: &Cluster, node: &str, node_mb: u64, down: Option<&str>) -> Heartbeat {
    let l = cluster.list(node);
    Heartbeat {
        node: node.to_string(),
        generation: l.generation,
        capacity_mb: node_mb,
        cgroups_unavailable: None,
        runtimes: vec!["native".into()],
        stacks: Vec::new(),
        instances: l
            .instances
            .iter()
            .enumerate()
            .map(|(i, s)| InstanceStatus {
                id: s.id.clone(),
                release: s.release,
                state: if Some(s.id.as_str()) == down {
                    InstanceState::Starting
                } else {
                    InstanceState::Up
                },
                pid: Some(10_000 + i as u32),
                port: Some(20_000 + i as u16),
                restarts: 0,
                started_at: 0,
                last_exit: None,
                container: None,
                restart: 0,
            })
            .collect(),
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    (v, t.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Table(Vec<(String, String)>);

impl Table {
    fn row(&mut self, k: impl Into<String>, v: impl Into<String>) {
        self.0.push((k.into(), v.into()));
    }

    fn print(&self, title: &str) {
        let w = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let wv = self.0.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        println!("\n### {title}\n");
        println!("| {:w$} | {:>wv$} |", "metric", "value");
        println!("|{}|{}:|", "-".repeat(w + 2), "-".repeat(wv + 1));
        for (k, v) in &self.0 {
            println!("| {k:w$} | {v:>wv$} |");
        }
    }
}

// ---------------------------------------------------------------- setup

/// Fills the store; returns each node's bus key pair.
fn populate(store: &mut Store, p: &Params) -> Result<Vec<(String, Keys)>, StoreError> {
    let mut keys = Vec::with_capacity(p.nodes);
    for i in 1..=p.nodes {
        let k = Keys::generate().expect("CURVE keys");
        store.upsert_node(&node_name(i), p.node_mb, "127.0.0.1", &k.public_z85())?;
        keys.push((node_name(i), k));
    }
    let types: BTreeMap<String, String> = [
        (
            "web".to_string(),
            "bundle exec puma -C config/puma.rb -p $PORT".to_string(),
        ),
        (
            "worker".to_string(),
            "bundle exec sidekiq -c 10 -q default,mailers".to_string(),
        ),
    ]
    .into();
    for a in 1..=p.apps {
        let app = app_name(a);
        store.create_app(&app)?;
        let vars = [
            (
                "DATABASE_URL",
                format!(
                    "postgres://{app}:s3cr3t-{a:08x}@db-{}.internal:5432/{app}",
                    a % 17
                ),
            ),
            (
                "REDIS_URL",
                format!("redis://cache-{}.internal:6379/{}", a % 5, a % 16),
            ),
            (
                "SECRET_KEY_BASE",
                format!(
                    "{:064x}",
                    (a as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834)
                ),
            ),
            ("RAILS_ENV", "production".to_string()),
            ("LOG_LEVEL", "info".to_string()),
            ("WEB_CONCURRENCY", "4".to_string()),
            (
                "SENTRY_DSN",
                format!("https://{a:032x}@sentry.internal/{a}"),
            ),
            ("FEATURE_FLAGS", "new_checkout,fast_search".to_string()),
        ];
        let changes: BTreeMap<String, Option<String>> = vars
            .iter()
            .cycle()
            .take(p.env)
            .enumerate()
            .map(|(i, (k, v))| {
                let k = if i < vars.len() {
                    k.to_string()
                } else {
                    format!("{k}_{i}")
                };
                (k, Some(v.clone()))
            })
            .collect();
        store.set_config(&app, &changes, "bench config")?;
        let sha = format!("{:064x}", (a as u128) * 0x1234_5678_9abc_def1);
        let new = zeroku_master::store::NewRelease {
            slug_sha256: &sha,
            slug_size: 48 << 20,
            process_types: &types,
            description: "Deploy",
            build: &Default::default(),
        };
        store.create_release(&app, new, 512)?;
        store.set_formation(&[
            Formation {
                app: app.clone(),
                proc_type: "web".into(),
                quantity: p.web,
                memory_mb: 512,
            },
            Formation {
                app: app.clone(),
                proc_type: "worker".into(),
                quantity: p.worker,
                memory_mb: 1024,
            },
        ])?;
    }
    Ok(keys)
}

fn slots(store: &Store) -> Vec<NodeSlot> {
    store
        .nodes()
        .expect("nodes")
        .into_iter()
        .map(|n| NodeSlot {
            schedulable: n.state == "up" && !n.draining,
            name: n.name,
            capacity_mb: n.capacity_mb,
        })
        .collect()
}

// ---------------------------------------------------------------- subscriber child

/// The child process: a SUB socket per node (its key, its topic), spread over `threads`
/// threads. Prints `ready` once a warm-up message arrived on every topic, then
/// `L <node> <generation> <instances> <bytes>` for every list received.
fn subscriber(endpoint: &str, keys_file: &str, master: &str, threads: usize) {
    let master = zeroku_bus::keys::decode(master, "master key").expect("master key");
    let nodes: Vec<(String, Keys)> = std::fs::read_to_string(keys_file)
        .expect("keys file")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f[0].to_string(), Keys::from_z85(f[1], f[2]).expect("keys"))
        })
        .collect();
    let (out_tx, out_rx) = mpsc::channel::<String>();
    let ready = Arc::new(AtomicUsize::new(0));
    let nodes = Arc::new(nodes);
    for k in 0..threads {
        // A context per thread: libzmq allows 1,023 sockets in one.
        let ctx = zmq::Context::new();
        let mine: Vec<usize> = (0..nodes.len()).filter(|i| i % threads == k).collect();
        let socks: Vec<zmq::Socket> = mine
            .iter()
            .map(|&i| {
                let (name, keys) = &nodes[i];
                let sock = ctx.socket(zmq::SUB).expect("socket");
                sock.set_rcvhwm(0).expect("rcvhwm");
                sock.set_linger(0).expect("linger");
                zeroku_bus::curve::client(&sock, keys, &master).expect("curve");
                sock.set_subscribe(node_topic(name, &keys.id()).as_bytes())
                    .expect("subscribe");
                // As a worker does: the master's sign of life, to every node at once.
                sock.set_subscribe(wire::ALIVE_TOPIC.as_bytes())
                    .expect("subscribe");
                sock.connect(endpoint).expect("connect");
                sock
            })
            .collect();
        let (out, ready) = (out_tx.clone(), ready.clone());
        std::thread::spawn(move || {
            let _ctx = ctx;
            let mut warm: HashSet<usize> = HashSet::new();
            let mut is_ready = socks.is_empty();
            if is_ready && ready.fetch_add(1, Ordering::SeqCst) + 1 == threads {
                let _ = out.send("ready".into());
            }
            loop {
                let mut items: Vec<zmq::PollItem> =
                    socks.iter().map(|s| s.as_poll_item(zmq::POLLIN)).collect();
                if zmq::poll(&mut items, -1).is_err() {
                    return;
                }
                let readable: Vec<usize> = items
                    .iter()
                    .enumerate()
                    .filter(|(_, it)| it.is_readable())
                    .map(|(i, _)| i)
                    .collect();
                for j in readable {
                    while let Ok(parts) = socks[j].recv_multipart(zmq::DONTWAIT) {
                        if parts.len() != 2 {
                            let _ = out.send(format!("bad frames {}", parts.len()));
                            continue;
                        }
                        if parts[1] == WARMUP {
                            if !is_ready {
                                warm.insert(j);
                                if warm.len() == socks.len() {
                                    is_ready = true;
                                    if ready.fetch_add(1, Ordering::SeqCst) + 1 == threads {
                                        let _ = out.send("ready".into());
                                    }
                                }
                            }
                            continue;
                        }
                        let line = match wire::decode(&parts[1]) {
                            Ok(Message::NodeList(l)) => format!(
                                "L {} {} {} {}",
                                l.node,
                                l.generation,
                                l.instances.len(),
                                parts[1].len()
                            ),
                            Ok(Message::Alive(_)) => continue,
                            Ok(_) => "bad message kind".into(),
                            Err(e) => format!("bad decode {e}"),
                        };
                        let _ = out.send(line);
                    }
                }
            }
        });
    }
    drop(out_tx);
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    while let Ok(line) = out_rx.recv() {
        let _ = writeln!(w, "{line}");
        let mut more = out_rx.try_iter().peekable();
        while let Some(l) = more.next() {
            let _ = writeln!(w, "{l}");
            if more.peek().is_none() {
                break;
            }
        }
        if w.flush().is_err() {
            return;
        }
    }
}

/// A received list, as the child reported it, with when the parent read it.
struct Got {
    at: Instant,
    node: String,
    generation: u64,
    instances: usize,
    bytes: usize,
}

enum Line {
    Ready,
    List(Got),
    Other(String),
}

fn spawn_subscriber(
    endpoint: &str,
    keys_file: &std::path::Path,
    master: &str,
    p: &Params,
) -> (Child, mpsc::Receiver<Line>) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--subscriber",
            endpoint,
            &keys_file.display().to_string(),
            master,
            &p.sockets.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn subscriber child");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("bench-lines".into())
        .spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let at = Instant::now();
                let parsed = if line == "ready" {
                    Line::Ready
                } else if let Some(rest) = line.strip_prefix("L ") {
                    let f: Vec<&str> = rest.split(' ').collect();
                    Line::List(Got {
                        at,
                        node: f[0].to_string(),
                        generation: f[1].parse().unwrap_or(0),
                        instances: f[2].parse().unwrap_or(0),
                        bytes: f[3].parse().unwrap_or(0),
                    })
                } else {
                    Line::Other(line)
                };
                if tx.send(parsed).is_err() {
                    return;
                }
            }
        })
        .expect("thread");
    (child, rx)
}

/// Waits until `want` distinct nodes' lists arrived (or `timeout`).
fn collect(rx: &mpsc::Receiver<Line>, want: usize, timeout: Duration) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    let mut seen: HashMap<String, Got> = HashMap::new();
    while seen.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Line::List(g)) => {
                seen.insert(g.node.clone(), g);
            }
            Ok(Line::Ready) => {}
            Ok(Line::Other(l)) => eprintln!("subscriber: {l}"),
            Err(_) => {
                eprintln!(
                    "timed out: only {} of {want} lists arrived within {timeout:?}",
                    seen.len()
                );
                break;
            }
        }
    }
    seen.into_values().collect()
}

// ---------------------------------------------------------------- the bench

/// The master's bus, live: a [`Cluster`] over a store, publishing through a real CURVE PUB
/// socket with its ZAP handler, and the subscriber child with one SUB socket per node, every
/// subscription through before it returns.
struct Bus {
    ctx: zmq::Context,
    stop: Arc<AtomicBool>,
    master_keys: Keys,
    publisher: bus::Publisher,
    pub_thread: std::thread::JoinHandle<()>,
    zap_thread: std::thread::JoinHandle<()>,
    child: Child,
    lines: mpsc::Receiver<Line>,
    cluster: Arc<Cluster>,
}

impl Bus {
    fn up(
        dir: &std::path::Path,
        store: Store,
        node_keys: &[(String, Keys)],
        keys_file: &std::path::Path,
        p: &Params,
    ) -> Bus {
        let endpoint = format!("tcp://127.0.0.1:{}", free_port());
        let ctx = zmq::Context::new();
        let stop = Arc::new(AtomicBool::new(false));
        let master_keys = Keys::generate().expect("keys");
        let (publisher, outbox) = bus::Publisher::channel(65_536).expect("publisher");
        let cfg = MasterConfig {
            pub_endpoint: endpoint.clone(),
            // No node here ever heartbeats on its own: never mark one dead.
            dead_after_ms: 3_600_000,
            ..MasterConfig::default()
        };
        let slugs = SlugStore::open(&dir.join("slugs")).expect("slug store");
        let cluster = Arc::new(Cluster::new(
            cfg,
            dir,
            store,
            slugs,
            publisher.clone(),
            master_keys.public_z85(),
        ));
        let c = cluster.clone();
        let zap_thread = zeroku_bus::zap::start(
            &ctx,
            move |_, key| c.peers.knows(key),
            cluster.refused.clone(),
            stop.clone(),
        )
        .expect("ZAP");
        let c = cluster.clone();
        let pub_thread = bus::start_pub(
            &ctx,
            &endpoint,
            &master_keys,
            outbox,
            move |who, topic| c.on_subscribe(who, topic),
            cluster.refused.clone(),
            stop.clone(),
        )
        .expect("bind PUB");
        let (child, lines) = spawn_subscriber(&endpoint, keys_file, &master_keys.public_z85(), p);
        // Warm-up: publish on every node topic until the child has seen each one,
        // so every subscription has reached the PUB socket before timing.
        let t_warm = Instant::now();
        let mut ready = false;
        // (5,000 CURVE handshakes take a while on 2 cores: up to 3 minutes.)
        for _round in 0..90 {
            for (n, k) in node_keys {
                publisher.send(node_topic(n, &k.id()), WARMUP.to_vec());
            }
            let until = Instant::now() + Duration::from_millis(2000);
            while !ready && Instant::now() < until {
                match lines.recv_timeout(Duration::from_millis(50)) {
                    Ok(Line::Ready) => ready = true,
                    Ok(Line::Other(l)) => eprintln!("subscriber: {l}"),
                    _ => {}
                }
            }
            if ready {
                break;
            }
        }
        assert!(ready, "the subscribers never saw every topic");
        // Let the last warm-up round drain.
        std::thread::sleep(Duration::from_millis(300));
        while lines.try_recv().is_ok() {}
        eprintln!(
            "{} CURVE handshakes and subscriptions done after {:.2?}",
            p.nodes,
            t_warm.elapsed()
        );
        Bus {
            ctx,
            stop,
            master_keys,
            publisher,
            pub_thread,
            zap_thread,
            child,
            lines,
            cluster,
        }
    }

    fn down(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stop.store(true, Ordering::Relaxed);
        drop(self.cluster);
        drop(self.publisher);
        let _ = self.pub_thread.join();
        let _ = self.zap_thread.join();
    }
}

fn run(p: &Params) {
    let total = p.apps * (p.web + p.worker) as usize;
    println!(
        "bench_master: {} nodes × {} MiB; {} apps × (web={} × 512 MB + worker={} × 1024 MB) = {} instances; {} config vars per app; a CURVE SUB socket per node on {} threads in a child process",
        p.nodes, p.node_mb, p.apps, p.web, p.worker, total, p.env, p.sockets
    );
    let (rss_start, _) = rss_kb(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("master.db")).expect("store");
    let (res, t_setup) = timed(|| populate(&mut store, p));
    let node_keys = res.expect("populate");
    let keys_file = keys_file(dir.path(), &node_keys);
    let (rss_setup, _) = rss_kb(None);
    eprintln!("setup (SQLite rows for nodes, apps, releases, formation): {t_setup:.2?}");

    let bus = Bus::up(dir.path(), store, &node_keys, &keys_file, p);
    let (cluster, lines) = (bus.cluster.clone(), &bus.lines);
    let (rss_before, _) = rss_kb(None);

    // --- 1. the full replan: place + SQLite + encode + publish 5,000 lists.
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    cluster.change(|_| Ok::<_, StoreError>(())).expect("replan");
    let t_replan = t0.elapsed();
    let got = collect(lines, p.nodes, Duration::from_secs(120));
    let t_all = got.iter().map(|g| g.at).max().map_or(t_replan, |t| t - t0);
    let cpu_replan = cpu_time() - cpu0;
    let (rss_after, hwm_after) = rss_kb(None);
    let (child_rss, _) = rss_kb(Some(bus.child.id()));
    let got_instances: usize = got.iter().map(|g| g.instances).sum();
    let got_bytes: usize = got.iter().map(|g| g.bytes).sum();

    // Wire sizes of the lists the cluster holds, and their encoding cost.
    let names: Vec<String> = (1..=p.nodes).map(node_name).collect();
    let lists: Vec<_> = names.iter().map(|n| cluster.list(n)).collect();
    let (sizes, t_encode) = timed(|| {
        lists
            .iter()
            .map(|l| {
                wire::encode(&Message::NodeList(l.clone()))
                    .expect("encode")
                    .len()
            })
            .collect::<Vec<_>>()
    });
    let instances_in_lists: usize = lists.iter().map(|l| l.instances.len()).sum();
    let wire_total: usize = sizes.iter().sum();
    let wire_min = sizes.iter().min().copied().unwrap_or(0);
    let wire_max = sizes.iter().max().copied().unwrap_or(0);
    drop(lists);

    // --- 2. replans where nothing changed (median of 3).
    let mut t_noops = Vec::new();
    for _ in 0..3 {
        let (_, t) = timed(|| cluster.change(|_| Ok::<_, StoreError>(())).expect("replan"));
        t_noops.push(t);
    }
    let t_noop = median(t_noops);
    let (rss_noop, _) = rss_kb(None);

    // --- 3. incremental: scale one app's web by +1, three times (median).
    let app1 = app_name(1);
    let (mut t_incs, mut t_inc_alls) = (Vec::new(), Vec::new());
    let mut changed_lists = Vec::new();
    let mut inc_ok = true;
    for k in 1..=3 {
        let gens: HashMap<String, u64> = names
            .iter()
            .map(|n| (n.clone(), cluster.list(n).generation))
            .collect();
        let t0 = Instant::now();
        cluster
            .change(|s| {
                s.set_formation(&[Formation {
                    app: app1.clone(),
                    proc_type: "web".into(),
                    quantity: p.web + k,
                    memory_mb: 512,
                }])
            })
            .expect("scale +1");
        let t_inc = t0.elapsed();
        let changed: Vec<&String> = names
            .iter()
            .filter(|n| gens.get(*n) != Some(&cluster.list(n).generation))
            .collect();
        let got_inc = collect(lines, changed.len(), Duration::from_secs(60));
        inc_ok &= got_inc.len() == changed.len()
            && got_inc
                .iter()
                .all(|g| g.generation == cluster.list(&g.node).generation);
        t_inc_alls.push(got_inc.iter().map(|g| g.at).max().map_or(t_inc, |t| t - t0));
        t_incs.push(t_inc);
        changed_lists.push(changed.len());
    }
    let (t_inc, t_inc_all) = (median(t_incs), median(t_inc_alls));
    let (rss_inc, hwm_end) = rss_kb(None);

    // --- the scheduler alone, on the same input replan() gives it.
    // (Run after the replans, so that the RSS figures above are the replan's.)
    let (node_slots, formation) = {
        let s = cluster.store();
        (slots(&s), s.all_formation().expect("formation"))
    };
    let mut t_place = Vec::new();
    let mut placed = Vec::new();
    for _ in 0..3 {
        let (pl, t) = timed(|| scheduler::place(&node_slots, &formation, &[]));
        t_place.push(t);
        placed = pl;
    }
    let t_place = median(t_place);
    let unplaced = placed.iter().filter(|x| x.node.is_none()).count();
    let mut t_keep = Vec::new();
    for _ in 0..3 {
        let (again, t) = timed(|| scheduler::place(&node_slots, &formation, &placed));
        assert_eq!(again.len(), placed.len());
        t_keep.push(t);
    }
    let t_keep = median(t_keep);
    let mut plus_one = formation.clone();
    plus_one[0].quantity += 1;
    let (_, t_place_plus1) = timed(|| scheduler::place(&node_slots, &plus_one, &placed));
    drop(placed);

    // --- 4. where a replan's time goes: the same steps, one by one.
    let mut parts = Table(Vec::new());
    {
        let mut s = cluster.store();
        let (_, t) = timed(|| s.nodes().expect("nodes"));
        parts.row("store.nodes()", ms(t));
        let (apps, t_apps) = timed(|| s.apps().expect("apps"));
        let (_, t_rel) = timed(|| {
            for a in &apps {
                s.current_release(&a.name).expect("release");
            }
        });
        parts.row("store.apps() (called twice per replan)", ms(t_apps));
        parts.row(
            format!("store.current_release() × {} apps", apps.len()),
            ms(t_rel),
        );
        let (_, t) = timed(|| s.all_formation().expect("formation"));
        parts.row("store.all_formation()", ms(t));
        let (current, t) = timed(|| s.placements().expect("placements"));
        parts.row(
            format!("store.placements() ({} rows)", current.len()),
            ms(t),
        );
        let node_slots = slots(&s);
        let formation = s.all_formation().expect("formation");
        let (placed, t) = timed(|| scheduler::place(&node_slots, &formation, &current));
        parts.row("scheduler::place (sticky, nothing to move)", ms(t));
        let (eq, t) = timed(|| placed == current);
        parts.row(format!("placed != current (equal: {eq})"), ms(t));
        let (_, t) = timed(|| s.update_placements(&current, &placed).expect("update"));
        parts.row(
            format!(
                "store.update_placements() ({} rows, only changed rows written; skipped when equal)",
                placed.len()
            ),
            ms(t),
        );
        let (_, t) = timed(|| s.next_generations(p.nodes as u64).expect("generation"));
        parts.row(
            format!(
                "store.next_generations({}) (one write for all lists)",
                p.nodes
            ),
            ms(t),
        );
        // A replica of what replan() does after placing (cluster::spec is
        // private): one InstanceSpec per placement, env cloned from the
        // release, grouped per node, then compared with the lists held.
        let releases: HashMap<String, Release> = apps
            .iter()
            .filter_map(|a| s.current_release(&a.name).ok().flatten())
            .map(|r| (r.app.clone(), r))
            .collect();
        let seqs: HashMap<&str, u32> = apps.iter().map(|a| (a.name.as_str(), a.seq)).collect();
        let (mut per_node, t_specs) = timed(|| {
            let mut per_node: HashMap<&str, Vec<InstanceSpec>> = HashMap::new();
            for pl in &placed {
                let (Some(node), Some(rel)) = (pl.node.as_deref(), releases.get(&pl.app)) else {
                    continue;
                };
                per_node
                    .entry(node)
                    .or_default()
                    .push(zeroku_master::cluster::spec(
                        pl,
                        rel,
                        seqs.get(pl.app.as_str()).copied().unwrap_or(0),
                    ));
            }
            per_node
        });
        drop(s);
        let held: Vec<NodeList> = names.iter().map(|n| cluster.list(n)).collect();
        let (same, t_cmp) = timed(|| {
            held.iter()
                .filter(|l| {
                    per_node
                        .get(l.node.as_str())
                        .is_some_and(|v| *v == l.instances)
                })
                .count()
        });
        let (_, t_drop) = timed(|| per_node.clear());
        drop(held);
        parts.row(
            format!(
                "build {} InstanceSpecs per node (cluster::spec; replan does this only for nodes whose list changed)",
                placed.len()
            ),
            ms(t_specs),
        );
        parts.row(
            format!(
                "compare them with the {} lists held ({same} equal)",
                p.nodes
            ),
            ms(t_cmp),
        );
        parts.row("drop them", ms(t_drop));
    }
    parts.row(
        format!(
            "list.clone() + wire::encode × {} lists (as replan + bus::publish do)",
            p.nodes
        ),
        ms(t_encode),
    );

    // --- 5. what else the master does at this size: heartbeats and reads.
    let mut other = Table(Vec::new());
    // One heartbeat from every node: one interval's worth of work.
    let hbs: Vec<Heartbeat> = names
        .iter()
        .map(|n| heartbeat(&cluster, n, p.node_mb, None))
        .collect();
    let n_hb = hbs.len();
    let rest_hbs = hbs.clone();
    let who: HashMap<String, String> = node_keys
        .iter()
        .map(|(n, k)| (n.clone(), k.public_z85()))
        .collect();
    let (_, t_hb) = timed(|| {
        for hb in hbs {
            let key = &who[&hb.node];
            cluster.on_message(key, Message::Heartbeat(hb));
        }
    });
    let per_hb = t_hb / n_hb.max(1) as u32;
    other.row(
        format!("Cluster::on_message(Heartbeat) × {n_hb}, each node's first (the slow path: a store read; at rest they take the fast one, below)"),
        format!("{} ({:.0} µs each)", ms(t_hb), per_hb.as_secs_f64() * 1e6),
    );
    other.row(
        "  heartbeats/s one core absorbs vs. needed",
        format!(
            "{:.0}/s vs {}/s ({} nodes, 1 s interval)",
            1.0 / per_hb.as_secs_f64().max(1e-9),
            p.nodes,
            p.nodes
        ),
    );
    let cpu0 = cpu_time();
    let (_, t) = timed(|| cluster.republish());
    // Let the PUB thread send (and encrypt) all of it before reading the CPU time.
    std::thread::sleep(Duration::from_secs(2));
    let cpu_republish = cpu_time() - cpu0;
    other.row(
        format!("Cluster::republish() (every 5 s: the sign of life, and the lists of the nodes of {} whose heartbeat is behind)", p.nodes),
        ms(t),
    );
    let (_, t) = timed(|| cluster.check_liveness());
    other.row("Cluster::check_liveness() (every 250 ms)", ms(t));
    let (v, t) = timed(|| zeroku_master::views::ps(&cluster, &app1).expect("ps"));
    other.row(
        format!(
            "views::ps(one app, {} instances) = GET /v1/apps/<app>/ps",
            v.as_array().map_or(0, Vec::len)
        ),
        ms(t),
    );
    let (v, t) = timed(|| zeroku_master::views::nodes(&cluster).expect("nodes"));
    other.row(
        format!(
            "views::nodes() ({} nodes) = GET /v1/nodes",
            v.as_array().map_or(0, Vec::len)
        ),
        ms(t),
    );
    drop(v);

    // --- 6. at rest: every node heartbeating over the bus, the periodic tasks running.
    let at_rest = (p.rest > 0).then(|| {
        eprintln!(
            "at rest: {} nodes heartbeating every second for {} s",
            p.nodes, p.rest
        );
        rest::run(
            &cluster,
            &bus.ctx,
            &bus.master_keys,
            &node_keys,
            rest_hbs,
            dir.path(),
            p.rest,
        )
    });

    drop(cluster);
    bus.down();

    // --- report
    let mut t = Table(Vec::new());
    t.row(
        "shape",
        format!("{} nodes, {} apps, {} instances", p.nodes, p.apps, total),
    );
    t.row("unplaced instances", unplaced.to_string());
    t.row(
        "scheduler::place alone, from scratch (median of 3)",
        ms(t_place),
    );
    t.row("  placements/s", per_sec(total, t_place));
    t.row(
        "scheduler::place alone, sticky no-op (median of 3)",
        ms(t_keep),
    );
    t.row("scheduler::place alone, one app +1", ms(t_place_plus1));
    t.row("full replan: cluster.change() returns", ms(t_replan));
    t.row("full replan: last list received by a subscriber", ms(t_all));
    t.row(
        "full replan: both done (place + store + publish + deliver)",
        ms(t_all.max(t_replan)),
    );
    t.row(
        "  placements/s (both done)",
        per_sec(total, t_all.max(t_replan)),
    );
    t.row(
        "lists received / instances in them",
        format!("{} / {}", got.len(), got_instances),
    );
    t.row(
        "bytes per node list received (mean)",
        format!("{:.0} B", got_bytes as f64 / got.len().max(1) as f64),
    );
    t.row(
        "wire::encode size per list (mean / min / max)",
        format!(
            "{:.0} / {wire_min} / {wire_max} B",
            wire_total as f64 / p.nodes as f64
        ),
    );
    t.row(
        "wire bytes per instance",
        format!(
            "{:.0} B",
            wire_total as f64 / instances_in_lists.max(1) as f64
        ),
    );
    t.row(
        "total published",
        format!("{:.1} MB", wire_total as f64 / 1e6),
    );
    t.row("no-op replan, nothing changed (median of 3)", ms(t_noop));
    t.row(
        "incremental: one app web +1, change() returns (median of 3)",
        ms(t_inc),
    );
    t.row(
        "incremental: last changed list received (median of 3)",
        format!(
            "{} (lists republished: {:?}, {})",
            ms(t_inc_all),
            changed_lists,
            if inc_ok {
                "all received"
            } else {
                "SOME MISSING"
            }
        ),
    );
    t.row("master RSS at start", mib(rss_start));
    t.row("master RSS after SQLite setup", mib(rss_setup));
    t.row("master RSS before replan (Cluster built)", mib(rss_before));
    t.row("master RSS after the full replan", mib(rss_after));
    t.row("master RSS after 3 no-op replans", mib(rss_noop));
    t.row("master RSS after 3 incremental replans", mib(rss_inc));
    t.row(
        "master peak RSS (VmHWM) after the full replan",
        mib(hwm_after),
    );
    t.row("master peak RSS (VmHWM) at the end", mib(hwm_end));
    t.row(
        format!("subscriber child RSS ({} CURVE SUB sockets)", p.nodes),
        mib(child_rss),
    );
    t.row(
        "master CPU (all threads) for the full replan, publish included",
        ms(cpu_replan),
    );
    t.row(
        format!(
            "master CPU (all threads) for Cluster::republish() with {} nodes, none behind",
            p.nodes
        ),
        ms(cpu_republish),
    );
    t.print("master: place and publish");
    parts.print("where a replan's time goes (each step timed alone, same data)");
    other.print("other master work at this size (after the replans)");
    if let Some(r) = at_rest {
        let mut t = Table(Vec::new());
        let pct = |d: Duration| format!("{:.1}%", 100.0 * d.as_secs_f64() / r.secs as f64);
        t.row(
            "nodes heartbeating (full state each time)",
            format!("{} ({} B per heartbeat)", r.nodes, r.hb_bytes_mean),
        );
        for w in &r.windows {
            let at = format!("every {:.1?}", w.interval);
            t.row(
                format!("{at}: heartbeats received"),
                format!(
                    "{} in {} s ({:.0}/s)",
                    w.heartbeats,
                    r.secs,
                    w.heartbeats as f64 / r.secs as f64
                ),
            );
            t.row(
                format!("**{at}: master CPU at rest (its threads, % of one core)**"),
                format!("**{}**", pct(w.cpu)),
            );
            t.row(
                format!("{at}: CPU per heartbeat received"),
                format!(
                    "{:.1} µs",
                    w.cpu.as_secs_f64() * 1e6 / w.heartbeats.max(1) as f64
                ),
            );
            let busiest: Vec<String> = w
                .threads
                .iter()
                .take(4)
                .map(|(n, d)| format!("{n} {}", pct(*d)))
                .collect();
            t.row(format!("{at}: busiest threads"), busiest.join(", "));
        }
        t.row(
            "(until every node had been heard: CURVE handshakes)",
            format!("{:.1?}", r.handshakes),
        );
        t.print("master at rest: every node heartbeating (at 1 s, then at the pace the master asks for), the periodic tasks running");
    }
    bus_cost(wire_total / sizes.len().max(1), p.nodes).print(
        "the bus's added CPU: one CURVE connection vs a plain one, sender and receiver in this process",
    );
    println!(
        "\n(setup of the SQLite rows took {t_setup:.2?}; the master and the subscriber child share 2 cores.)"
    );
}
