//! The master at rest with every node heartbeating: the real PULL thread (CURVE, ZAP) and the
//! real periodic tasks (`periodic::run`), 5,000 nodes each sending its full heartbeat once a
//! second from a child process (this binary with `--heartbeats`: one CURVE PUSH socket per
//! node, with that node's own key), while the subscriber child still holds every SUB socket.
//! Measured: the CPU time of the master's own threads (the bench's line reader excluded) over
//! the window, per thread, and the heartbeats received.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroku_bus::Keys;
use zeroku_conf::wire::{self, Message};
use zeroku_conf::Heartbeat;
use zeroku_master::bus;
use zeroku_master::cluster::Cluster;

/// What one at-rest window measured.
pub struct Window {
    pub interval: Duration,
    pub heartbeats: u64,
    pub cpu: Duration,
    pub threads: Vec<(String, Duration)>,
}

/// Both windows: every node at 1 s, then at the interval the master asks for.
pub struct Rest {
    pub secs: u64,
    pub nodes: usize,
    pub hb_bytes_mean: usize,
    pub handshakes: Duration,
    pub windows: Vec<Window>,
}

/// Runs the window: heartbeats from `hbs` (one per node, in the order of `node_keys`).
pub fn run(
    cluster: &Arc<Cluster>,
    ctx: &zmq::Context,
    master_keys: &Keys,
    node_keys: &[(String, Keys)],
    hbs: Vec<Heartbeat>,
    dir: &std::path::Path,
    secs: u64,
) -> Rest {
    let endpoint = format!("tcp://127.0.0.1:{}", super::free_port());
    // Heard from no node yet: the window starts once every one of them heartbeats here.
    cluster.live().clear();
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (c, n) = (cluster.clone(), received.clone());
    let pull = bus::start_pull(
        ctx,
        &endpoint,
        master_keys,
        move |who, m| {
            n.fetch_add(1, Ordering::Relaxed);
            c.on_message(who, m)
        },
        cluster.dropped.clone(),
        cluster.refused.clone(),
        stop.clone(),
    )
    .expect("bind PULL");
    // The heartbeats, encoded once, for the child to send as they are.
    let mut frames = Vec::new();
    let mut bytes = 0;
    for hb in hbs {
        let b = wire::encode(&Message::Heartbeat(hb)).expect("encode heartbeat");
        bytes += b.len();
        frames.extend_from_slice(&(b.len() as u32).to_le_bytes());
        frames.extend_from_slice(&b);
    }
    let hb_file = dir.join("heartbeats");
    std::fs::write(&hb_file, &frames).expect("heartbeats file");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("master-rt")
        .enable_all()
        .build()
        .expect("runtime");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ticker = rt.spawn(zeroku_master::periodic::run(
        cluster.clone(),
        Duration::from_millis(cluster.cfg.republish_interval_ms),
        shutdown.clone(),
    ));
    let mut child = spawn(&endpoint, dir, &master_keys.public_z85());
    let mut pace_in = child.stdin.take().expect("child stdin");
    // Every node heard from (5,000 CURVE handshakes first), then a few quiet seconds.
    let t0 = Instant::now();
    while cluster.live().len() < node_keys.len() && t0.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let handshakes = t0.elapsed();
    let heard = cluster.live().len();
    assert_eq!(
        heard,
        node_keys.len(),
        "only {heard} nodes heartbeat within 300 s"
    );
    std::thread::sleep(Duration::from_secs(5));

    let mut windows = Vec::new();
    for interval in [Duration::from_secs(1), cluster.pace().heartbeat] {
        writeln!(pace_in, "{}", interval.as_millis()).expect("tell the child");
        // The new pace settles (a round at the old one may still be under way).
        std::thread::sleep(interval.max(Duration::from_secs(2)) * 2);
        windows.push(window(&received, interval, secs));
    }
    let _ = child.kill();
    let _ = child.wait();
    shutdown.cancel();
    let _ = rt.block_on(ticker);
    stop.store(true, Ordering::Relaxed);
    let _ = pull.join();
    Rest {
        secs,
        nodes: node_keys.len(),
        hb_bytes_mean: bytes / node_keys.len().max(1),
        handshakes,
        windows,
    }
}

/// The master's threads' CPU over `secs`, and the heartbeats it took meanwhile.
fn window(received: &AtomicU64, interval: Duration, secs: u64) -> Window {
    let before = threads();
    let n0 = received.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(secs));
    let n1 = received.load(Ordering::Relaxed);
    let after = threads();
    let mut per: HashMap<String, Duration> = HashMap::new();
    for (tid, (name, t)) in &after {
        let was = before.get(tid).map_or(Duration::ZERO, |(_, t)| *t);
        *per.entry(name.clone()).or_default() += t.saturating_sub(was);
    }
    per.retain(|name, _| !name.starts_with("bench-"));
    let cpu = per.values().sum();
    let mut threads: Vec<_> = per.into_iter().collect();
    threads.sort_by_key(|t| std::cmp::Reverse(t.1));
    Window {
        interval,
        heartbeats: n1 - n0,
        cpu,
        threads,
    }
}

/// CPU time (user + system) of each of this process's threads: tid → (name, time).
fn threads() -> HashMap<String, (String, Duration)> {
    let hz = 100.0; // USER_HZ on Linux
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let p = e.path();
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(p.join("stat")),
            std::fs::read_to_string(p.join("comm")),
        ) else {
            continue;
        };
        // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        // Threads of one kind share a name: keep them apart by tid, add up by name later.
        let name = name
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            (name.to_string(), Duration::from_secs_f64(ticks as f64 / hz)),
        );
    }
    out
}

fn spawn(endpoint: &str, dir: &std::path::Path, master: &str) -> Child {
    let exe = std::env::current_exe().expect("current_exe");
    Command::new(exe)
        .args([
            "--heartbeats",
            endpoint,
            &dir.join("node-keys").display().to_string(),
            &dir.join("heartbeats").display().to_string(),
            master,
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn heartbeat child")
}

/// The child: a CURVE PUSH socket per node, each node's heartbeat sent once per interval
/// (1 s, then what each line on stdin says, in ms), the nodes spread evenly over it, 900 nodes
/// per thread.
pub fn child(endpoint: &str, keys_file: &str, hb_file: &str, master: &str) {
    let master = zeroku_bus::keys::decode(master, "master key").expect("master key");
    let nodes: Vec<Keys> = std::fs::read_to_string(keys_file)
        .expect("keys file")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Keys::from_z85(f[1], f[2]).expect("keys")
        })
        .collect();
    let mut raw = Vec::new();
    std::fs::File::open(hb_file)
        .and_then(|mut f| f.read_to_end(&mut raw))
        .expect("heartbeats file");
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 4 <= raw.len() {
        let len = u32::from_le_bytes(raw[at..at + 4].try_into().expect("len")) as usize;
        frames.push(raw[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    assert_eq!(frames.len(), nodes.len(), "a heartbeat per node");
    let every_ms = Arc::new(AtomicU64::new(1000));
    let e = every_ms.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            match line.ok().and_then(|l| l.trim().parse().ok()) {
                Some(ms) => e.store(ms, Ordering::Relaxed),
                None => return,
            }
        }
    });
    // A context per thread, each under libzmq's default limit of 1,023 sockets.
    let per = 900;
    let mut handles = Vec::new();
    for (keys, frames) in nodes.chunks(per).zip(frames.chunks(per)) {
        let (keys, frames, endpoint) = (keys.to_vec(), frames.to_vec(), endpoint.to_string());
        let every_ms = every_ms.clone();
        handles.push(std::thread::spawn(move || {
            let ctx = zmq::Context::new();
            let socks: Vec<zmq::Socket> = keys
                .iter()
                .map(|k| {
                    let s = ctx.socket(zmq::PUSH).expect("socket");
                    s.set_linger(0).expect("linger");
                    s.set_sndhwm(10).expect("sndhwm");
                    zeroku_bus::curve::client(&s, k, &master).expect("curve");
                    s.connect(&endpoint).expect("connect");
                    s
                })
                .collect();
            loop {
                let every = Duration::from_millis(every_ms.load(Ordering::Relaxed));
                let step = every / socks.len().max(1) as u32;
                let start = Instant::now();
                for (i, (s, f)) in socks.iter().zip(&frames).enumerate() {
                    let due = start + step * i as u32;
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    // A full queue (handshake not done yet): the next round tries again.
                    let _ = s.send(f.as_slice(), zmq::DONTWAIT);
                }
            }
        }));
    }
    let _ = std::io::stdout().flush();
    for h in handles {
        let _ = h.join();
    }
}
