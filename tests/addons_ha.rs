//! A PostgreSQL add-on with a standby (`--ha`), on two nodes, while a writer inserts increasing
//! ids and keeps those whose commit was acknowledged: the primary's node is killed (worker and
//! servers, -9), the master fails over, the node comes back and its old primary rejoins as the
//! standby; then the other way round; then a planned `addons:failover`. No acknowledged id is
//! missing, the app's DATABASE_URL never changes, and an old primary takes no write.
//! (bench/addons.sh runs the long version with figures.)

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failovers in a row: 2, or `ZEROKU_HA_ROUNDS` (bench/failover.sh runs 20 and prints what
/// this test prints on its standard error: one `FIGURE` line per measure).
fn rounds() -> usize {
    std::env::var("ZEROKU_HA_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Runs `sql` with the app's URL as libpq takes it (both servers: it keeps the writable one).
fn psql(url: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "2")
        .output()
        .expect("psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// The app's URL pointed at one server (`port` on this host) only.
fn direct(url: &str, port: u64) -> String {
    let (cred, rest) = url.split_once('@').unwrap();
    let db = rest.split_once('/').unwrap().1.split('?').next().unwrap();
    format!("{cred}@127.0.0.1:{port}/{db}")
}

fn info(c: &TestCluster) -> Value {
    c.json(&["addons:info", "pg-bank-1", "-a", "bank"])
}

fn wait_in_sync(c: &TestCluster, secs: u64) -> Value {
    eventually(Duration::from_secs(secs), "the standby in sync", || {
        let i = info(c);
        (i["ha"]["in_sync"] == true)
            .then_some(i.clone())
            .ok_or_else(|| {
                let log = c
                    .cli_ok(&["logs", "-a", "bank", "--addon", "pg-bank-1", "-n", "1000"])
                    .unwrap_or_default();
                let log: Vec<&str> = log
                    .lines()
                    .filter(|l| {
                        [
                            "zeroku", "rewind", "FATAL", "ERROR", "PANIC", "starting", "promot",
                        ]
                        .iter()
                        .any(|w| l.contains(w))
                    })
                    .collect();
                format!("{}\n{}", i["ha"], log.join("\n"))
            })
    })
}

#[test]
fn acknowledged_commits_survive_failovers_and_old_primaries_take_no_writes() {
    let config = TEST_CONFIG.replace(
        "[master]\n",
        &format!("[master]\naddon_port_min = {}\n", handler_port_base()),
    );
    let mut c = TestCluster::start_with(&config);
    let ports = [("h1", 32300u16), ("h2", 32500u16)];
    for (n, p) in ports {
        c.add_worker(n, p);
    }
    c.deploy("bank", &[("Procfile", "worker: sleep 1000\n")]);
    // Redis has no standbys: said plainly.
    let o = c.cli(&["addons:create", "redis", "-a", "bank", "--ha"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("postgres add-ons only"));
    c.cli_ok(&["addons:create", "postgres", "-a", "bank", "--ha"])
        .unwrap();
    let first = wait_in_sync(&c, 120);
    assert_ne!(
        first["ha"]["primary"]["node"],
        first["ha"]["standby"]["node"]
    );
    let url = c.json(&["config", "-a", "bank"])["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        url.contains(',') && url.contains("target_session_attrs=read-write"),
        "{url}"
    );
    let (ok, out) = psql(&url, "CREATE TABLE ids (id int PRIMARY KEY)");
    assert!(ok, "{out}");

    // The writer: one connection per insert, as an app reconnecting after a failover would.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<(u32, Instant)>::new()));
    let writer = {
        let (stop, acked, url) = (stop.clone(), acked.clone(), url.clone());
        std::thread::spawn(move || {
            let mut id = 0;
            while !stop.load(Ordering::Relaxed) {
                id += 1;
                // (When it was sent: an insert sent before a kill may be acknowledged after.)
                let sent = Instant::now();
                if psql(&url, &format!("INSERT INTO ids VALUES ({id})")).0 {
                    acked.lock().unwrap().push((id, sent));
                } else {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        })
    };
    let writes_after = |t: Instant| {
        acked
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at > t)
            .count()
    };

    let mut old_primaries = Vec::new();
    for round in 1..=rounds() {
        std::thread::sleep(Duration::from_secs(1));
        let before = info(&c);
        let node = before["ha"]["primary"]["node"]
            .as_str()
            .unwrap()
            .to_string();
        let port = before["ha"]["primary"]["port"].as_u64().unwrap();
        let server = format!("bin/postgres\0-D\0data\0-p\0{port}\0");
        let pids = pids_with(&server);
        // (A backend just forked has the server's command line for a moment too.)
        assert!(
            !pids.is_empty(),
            "round {round}: the primary's server on port {port}"
        );
        // The primary's node goes: its worker and every server on it, at once.
        let w = c.worker(&node);
        w.1.kill9();
        let data = w.2.clone();
        kill_apps(&data);
        for pid in pids {
            unsafe_free_kill(pid as i32, 9);
        }
        eventually(Duration::from_secs(5), "the primary's server gone", || {
            pids_with(&server)
                .is_empty()
                .then_some(())
                .ok_or("still there".into())
        });
        let killed = Instant::now();
        eventually(Duration::from_secs(60), "writes accepted again", || {
            (writes_after(killed) > 0)
                .then_some(())
                .ok_or(format!("round {round}: no write since the kill"))
        });
        let first = acked
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .find(|at| *at > killed);
        if let Some(at) = first {
            eprintln!("FIGURE kill_to_writable_ms {}", (at - killed).as_millis());
        }
        // (The store says so a moment after the new primary takes writes.)
        eventually(Duration::from_secs(10), "the failover recorded", || {
            let after = info(&c);
            (after["ha"]["primary"]["node"] != node.as_str()
                && after["ha"]["failovers"] == round as u64)
                .then_some(())
                .ok_or(format!("{}", after["ha"]))
        });
        // The node comes back: its old primary rejoins as the standby and catches up.
        let port_min = ports.iter().find(|(n, _)| *n == node).unwrap().1;
        let d = c.spawn_worker(&node, &data, port_min);
        c.worker(&node).1 = d;
        let back = wait_in_sync(&c, 120);
        assert_eq!(back["ha"]["standby"]["node"], node.as_str(), "{back}");
        // The demoted primary, back, takes no write.
        let (ok, out) = psql(&direct(&url, port), "INSERT INTO ids VALUES (2000000)");
        assert!(!ok && out.contains("read-only"), "{out}");
        eprintln!("FIGURE demoted_primary_writes {}", u32::from(ok));
        old_primaries.push(port);
    }

    // A planned switchover: no commit lost, the URL unchanged.
    let before = info(&c);
    let out = c.json(&["addons:failover", "pg-bank-1", "-a", "bank"]);
    eprintln!("FIGURE switchover_ms {}", out["took_ms"]);
    let after = info(&c);
    assert_eq!(
        after["ha"]["primary"]["node"],
        before["ha"]["standby"]["node"]
    );
    let t = Instant::now();
    eventually(
        Duration::from_secs(30),
        "writes after the switchover",
        || (writes_after(t) > 0).then_some(()).ok_or("none".into()),
    );
    wait_in_sync(&c, 120);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Every acknowledged id is there.
    let (ok, out) = psql(&url, "SELECT id FROM ids ORDER BY id");
    assert!(ok, "{out}");
    let have: std::collections::HashSet<u32> =
        out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let acked: Vec<u32> = acked.lock().unwrap().iter().map(|(id, _)| *id).collect();
    let missing: Vec<&u32> = acked.iter().filter(|id| !have.contains(id)).collect();
    assert!(!acked.is_empty());
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
    assert_eq!(
        c.json(&["config", "-a", "bank"])["DATABASE_URL"].as_str(),
        Some(url.as_str()),
        "the app's URL never changed"
    );
    eprintln!("FIGURE acked {} missing {}", acked.len(), missing.len());
    // The standby (an old primary) takes no write.
    let standby = info(&c)["ha"]["standby"]["port"].as_u64().unwrap();
    let (ok, out) = psql(&direct(&url, standby), "INSERT INTO ids VALUES (1000000)");
    assert!(!ok && out.contains("read-only"), "{out}");
    assert!(!old_primaries.is_empty());
    let text = c
        .cli_ok(&["addons:info", "pg-bank-1", "-a", "bank"])
        .unwrap();
    assert!(
        text.contains("in sync") && text.contains("failover(s)"),
        "{text}"
    );

    // Settings: bad input is refused and changes nothing; sync=off stops waiting for the
    // standby (and says what that costs), sync=on waits for it again; ha=off drops it.
    for bad in ["sync=maybe", "colour=red", "sync"] {
        let o = c.cli(&["addons:settings", "pg-bank-1", bad, "-a", "bank"]);
        assert!(!o.status.success(), "{bad}");
    }
    assert_eq!(info(&c)["ha"]["in_sync"], true);
    let out = c
        .cli_ok(&["addons:settings", "pg-bank-1", "sync=off", "-a", "bank"])
        .unwrap();
    assert!(out.contains("no automatic failover"), "{out}");
    let i = info(&c);
    assert_eq!(i["ha"]["sync"], false);
    assert_eq!(i["ha"]["in_sync"], false);
    assert!(psql(&url, "INSERT INTO ids VALUES (3000000)").0);
    c.cli_ok(&["addons:settings", "pg-bank-1", "sync=on", "-a", "bank"])
        .unwrap();
    wait_in_sync(&c, 60);
    c.cli_ok(&["addons:settings", "pg-bank-1", "ha=off", "-a", "bank"])
        .unwrap();
    let i = info(&c);
    assert!(i["ha"].is_null(), "{i}");
    let single = c.json(&["config", "-a", "bank"])["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!single.contains(','), "{single}");
    let (ok, out) = psql(&single, "SELECT count(*) FROM ids WHERE id = 3000000");
    assert!(ok && out == "1", "{out}");
}
