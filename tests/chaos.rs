//! Chaos (issue: "Nothing runs twice, nothing is lost", item 10): for N rounds, a change (a
//! config var, a scale) is made while a random daemon (the master, a worker, the frontend) is
//! killed with SIGKILL at a random moment and started again, and a client keeps sending requests.
//! After each round, once the cluster settles, it checks:
//!
//! - every acknowledged change is there (the config var has its value; the formation its size);
//! - no instance runs twice: the app's processes on the machine are exactly the instances `ps`
//!   lists, one each, every one of them in `ps` (no process outside it);
//! - the edge answered no 5xx outside the windows from a kill to the cluster settling again;
//! - the master left no build sources or work directories behind.
//!
//! `ZEROKU_CHAOS_ROUNDS` (3 in the suite; `bash bench/chaos.sh` runs 30) and
//! `ZEROKU_CHAOS_SEED` (printed, to replay a run). It prints a table of the rounds.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The app: a web process that answers `ok`, with a marker to find its processes by.
const APP_PY: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The marker on the command line of every web process of the app.
const MARKER: &str = "chaos-web-marker";

/// A small xorshift: reproducible from its seed, no crate needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Starts the frontend (again: same data and address).
fn spawn_frontend(c: &TestCluster, http: &str) -> Daemon {
    let join = c.cli_ok(&["nodes:join-token"]).expect("join token");
    let data = c.dir.path().join("frontend-edge");
    let admin = format!("127.0.0.1:{}", free_port());
    let cfg = c.config_path();
    Daemon::spawn_with_env(
        &[
            "frontend",
            "--data",
            data.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--name",
            "edge",
            "--master",
            &c.master.url,
            "--http",
            http,
            "--admin",
            &admin,
        ],
        c.dir.path().join("frontend-edge.log"),
        &[("ZEROKU_JOIN_TOKEN", join.trim())],
    )
}

#[test]
fn changes_survive_daemons_killed_at_random_moments() {
    let rounds: u64 = std::env::var("ZEROKU_CHAOS_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("ZEROKU_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64 | 1)
        });
    println!("chaos: {rounds} rounds, ZEROKU_CHAOS_SEED={seed}");
    let mut rng = Rng(seed);
    let mut c = TestCluster::start();
    c.add_worker("w1", 37500);
    c.add_worker("w2", 37600);
    let http = format!("127.0.0.1:{}", free_port());
    let mut frontend = spawn_frontend(&c, &http);
    c.deploy(
        "chaos",
        &[
            ("Procfile", &format!("web: exec python3 app.py {MARKER}\n")),
            ("app.py", APP_PY),
        ],
    );
    c.wait_up("chaos", 1, Duration::from_secs(30));
    wait_http_ok(&http, "chaos.localhost", "/", Duration::from_secs(20));

    // A client that never stops: (when, status; 0 when the connection failed).
    let answers: Arc<Mutex<Vec<(Instant, u16)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (answers, stop, http) = (answers.clone(), stop.clone(), http.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let st = http_get(&http, "chaos.localhost", "/").map_or(0, |r| r.0);
                answers.lock().unwrap().push((Instant::now(), st));
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let mut windows: Vec<(Instant, Instant)> = Vec::new();
    let mut table = Vec::new();
    let mut web = 1u64;
    for round in 1..=rounds {
        let victim = ["master", "w1", "w2", "frontend"][rng.next(4) as usize];
        let delay = Duration::from_millis(rng.next(1500));
        let scale = rng.next(2) == 0;
        let target = 1 + rng.next(3);
        let change: Vec<String> = if scale {
            vec![
                "ps:scale".into(),
                "-a".into(),
                "chaos".into(),
                format!("web={target}"),
            ]
        } else {
            vec![
                "config:set".into(),
                "-a".into(),
                "chaos".into(),
                format!("ROUND={round}"),
            ]
        };
        let (url, token) = (c.master.url.clone(), c.master.token.clone());
        let action = std::thread::spawn(move || {
            std::process::Command::new(bin())
                .args(&change)
                .env("ZEROKU_URL", url)
                .env("ZEROKU_TOKEN", token)
                .output()
                .is_ok_and(|o| o.status.success())
        });
        std::thread::sleep(delay);
        let killed = Instant::now();
        match victim {
            "master" => c.restart_master(),
            "frontend" => {
                frontend.kill9();
                frontend = spawn_frontend(&c, &http);
            }
            w => {
                let port = if w == "w1" { 37500 } else { 37600 };
                let data = c.worker(w).2.clone();
                c.worker(w).1.kill9();
                let d = c.spawn_worker(w, &data, port);
                c.worker(w).1 = d;
            }
        }
        let acked = action.join().unwrap_or(false);
        if acked && scale {
            web = target;
        }
        // Settled: the formation is as acknowledged, every instance up, and the app's processes
        // on the machine are exactly those `ps` lists.
        let settled = eventually(Duration::from_secs(90), "the cluster to settle", || {
            let ps = c.ps("chaos");
            let listed: Vec<u64> = ps.iter().filter_map(|p| p["pid"].as_u64()).collect();
            let running = pids_with(MARKER);
            let up = ps.iter().filter(|p| p["state"] == "up").count() as u64;
            let ok = ps.len() as u64 == web
                && up == web
                && running.len() as u64 == web
                && running.iter().all(|p| listed.contains(&u64::from(*p)));
            if ok {
                Ok(Instant::now())
            } else {
                Err(format!("want web={web}; ps {ps:?}; processes {running:?}"))
            }
        });
        windows.push((killed, settled));
        if acked && !scale {
            let v = c.cli_ok(&["config:get", "-a", "chaos", "ROUND"]).unwrap();
            assert_eq!(
                v.trim(),
                round.to_string(),
                "round {round}: an acknowledged config:set is lost"
            );
        }
        for d in ["builds/incoming", "builds/work"] {
            let left: Vec<_> = std::fs::read_dir(c.master.data.join(d))
                .map(|rd| rd.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "round {round}: left in {d}: {left:?}");
        }
        table.push(format!(
            "| {round} | {victim} | {} ms | {} | {} | {:.1} s |",
            delay.as_millis(),
            if scale {
                format!("web={target}")
            } else {
                format!("ROUND={round}")
            },
            if acked { "yes" } else { "no" },
            settled.duration_since(killed).as_secs_f64()
        ));
    }
    // A last stretch with nothing killed: every answer in it must be a 200.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let _ = client.join();
    let answers = answers.lock().unwrap();
    let in_window = |t: &Instant| {
        windows
            .iter()
            .any(|(a, b)| *t >= *a && *t <= *b + Duration::from_secs(1))
    };
    let bad: Vec<String> = answers
        .iter()
        .filter(|(t, st)| *st != 200 && !in_window(t))
        .map(|(t, st)| {
            format!(
                "{st} at {:?} after the start",
                t.duration_since(answers[0].0)
            )
        })
        .collect();
    let during = answers
        .iter()
        .filter(|(t, st)| *st != 200 && in_window(t))
        .count();
    println!("| round | killed | after | change | acknowledged | settled in |");
    println!("|---:|---|---:|---|---|---:|");
    for row in &table {
        println!("{row}");
    }
    println!(
        "{} requests; {during} not 200 inside the kill-to-settled windows; {} outside",
        answers.len(),
        bad.len()
    );
    assert!(
        bad.is_empty(),
        "answers other than 200 outside the windows: {bad:?}"
    );
}
