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

/// A thread adding increasing ids with `write` (true: acknowledged) until stopped; keeps the
/// acknowledged ones and when each was sent (an id sent before a kill may be acknowledged
/// after).
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<(u32, Instant)>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Writer {
    fn start(write: impl Fn(u32) -> bool + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, acked) = (stop.clone(), acked.clone());
            std::thread::spawn(move || {
                let mut id = 0;
                while !stop.load(Ordering::Relaxed) {
                    id += 1;
                    let sent = Instant::now();
                    if write(id) {
                        acked.lock().unwrap().push((id, sent));
                    } else {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            })
        };
        Writer {
            stop,
            acked,
            thread,
        }
    }

    /// Waits for a write sent after `t` to be acknowledged; when it was sent.
    fn wait_after(&self, t: Instant, secs: u64, what: &str) -> Instant {
        eventually(Duration::from_secs(secs), what, || {
            self.acked
                .lock()
                .unwrap()
                .iter()
                .map(|(_, at)| *at)
                .find(|at| *at > t)
                .ok_or(format!("no write acknowledged since {:?}", t.elapsed()))
        })
    }

    fn stop(self) -> Vec<(u32, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let acked = self.acked.lock().unwrap().clone();
        assert!(!acked.is_empty());
        acked
    }
}

/// The acknowledged ids not among those `stored` lists, one per line.
fn missing(acked: &[(u32, Instant)], stored: &str) -> Vec<(u32, Instant)> {
    let have: std::collections::HashSet<u32> = stored
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    acked
        .iter()
        .filter(|(id, _)| !have.contains(id))
        .copied()
        .collect()
}

/// A node goes at once: its worker, its apps and `servers` (pids), all -9. Its data
/// directory, to bring it back with.
fn kill_node(c: &mut TestCluster, node: &str, servers: Vec<u32>) -> std::path::PathBuf {
    let w = c.worker(node);
    w.1.kill9();
    let data = w.2.clone();
    kill_apps(&data);
    for pid in servers {
        unsafe_free_kill(pid as i32, 9);
    }
    data
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
    let writer = {
        let url = url.clone();
        Writer::start(move |id| psql(&url, &format!("INSERT INTO ids VALUES ({id})")).0)
    };

    let mut old_primaries = Vec::new();
    for round in 1..=rounds() {
        // Writes in each round, before its kill.
        writer.wait_after(Instant::now(), 30, "a write before the kill");
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
        let data = kill_node(&mut c, &node, pids);
        eventually(Duration::from_secs(5), "the primary's server gone", || {
            pids_with(&server)
                .is_empty()
                .then_some(())
                .ok_or("still there".into())
        });
        let killed = Instant::now();
        let at = writer.wait_after(killed, 60, "writes accepted again");
        eprintln!("FIGURE kill_to_writable_ms {}", (at - killed).as_millis());
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
    writer.wait_after(Instant::now(), 30, "writes after the switchover");
    wait_in_sync(&c, 120);
    let acked = writer.stop();

    // Every acknowledged id is there.
    let (ok, out) = psql(&url, "SELECT id FROM ids ORDER BY id");
    assert!(ok, "{out}");
    let missing = missing(&acked, &out);
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

/// `redis-cli` with the app's URL: what it printed, and whether it exited 0.
fn redis(url: &str, args: &[&str]) -> (bool, String) {
    // (A server that went away mid-command must not hang the writer.)
    let out = Command::new("timeout")
        .args(["5", "redis-cli", "-u", url, "--no-auth-warning"])
        .args(args)
        .output()
        .expect("redis-cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn redis_info(c: &TestCluster) -> Value {
    c.json(&["addons:info", "redis-cache-1", "-a", "cache"])
}

fn redis_url(c: &TestCluster) -> String {
    c.json(&["config", "-a", "cache"])["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait_redis_in_sync(c: &TestCluster) -> Value {
    eventually(Duration::from_secs(90), "the replica in sync", || {
        let i = redis_info(c);
        (i["ha"]["in_sync"] == true && i["ha"]["lag"]["bytes"].is_u64())
            .then_some(i.clone())
            .ok_or_else(|| format!("{}", i["ha"]))
    })
}

/// Redis with a replica: the primary's node is killed, the replica takes over and the app
/// gets a new release with its URL; the old primary comes back as a replica and refuses
/// writes; a planned switchover loses nothing. Replication is asynchronous: ids acknowledged
/// just before a kill may be lost, and the test prints how many (`FIGURE redis_lost`).
#[test]
fn redis_fails_over_to_its_replica_and_apps_get_the_new_url() {
    let config = TEST_CONFIG.replace(
        "[master]\n",
        &format!("[master]\naddon_port_min = {}\n", handler_port_base()),
    );
    let mut c = TestCluster::start_with(&config);
    let ports = [("h1", 32700u16), ("h2", 32900u16)];
    for (n, p) in ports {
        c.add_worker(n, p);
    }
    c.deploy("cache", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&["addons:create", "redis", "-a", "cache", "--ha"])
        .unwrap();
    let first = wait_redis_in_sync(&c);
    assert_eq!(first["ha"]["synchronous"], false);
    let text = c
        .cli_ok(&["addons:info", "redis-cache-1", "-a", "cache"])
        .unwrap();
    assert!(
        text.contains("asynchronous") && text.contains("bytes behind"),
        "{text}"
    );
    let url = Arc::new(Mutex::new(redis_url(&c)));
    // The replica refuses writes; apps never get its address.
    let replica_port = first["ha"]["standby"]["port"].as_u64().unwrap();
    let at_replica = {
        let u = url.lock().unwrap().clone();
        let (head, _) = u.rsplit_once(':').unwrap();
        format!("{head}:{replica_port}")
    };
    let (_, out) = redis(&at_replica, &["SET", "k", "v"]);
    assert!(out.contains("READONLY"), "{out}");

    // The writer: each acknowledged RPUSH is an id that must be there (or be counted lost).
    let writer = {
        let url = url.clone();
        Writer::start(move |id| {
            let u = url.lock().unwrap().clone();
            let (ok, out) = redis(&u, &["RPUSH", "ids", &id.to_string()]);
            ok && out.parse::<u64>().is_ok()
        })
    };

    let mut kills = Vec::new();
    for round in 1..=rounds() {
        // Writes in each round, before its kill.
        writer.wait_after(Instant::now(), 30, "a write before the kill");
        let before = redis_info(&c);
        let node = before["ha"]["primary"]["node"]
            .as_str()
            .unwrap()
            .to_string();
        let port = before["ha"]["primary"]["port"].as_u64().unwrap();
        let server = format!("redis-server *:{port}");
        let pids = pids_with(&server);
        assert!(
            !pids.is_empty(),
            "round {round}: the primary on port {port}"
        );
        let data = kill_node(&mut c, &node, pids);
        let killed = Instant::now();
        kills.push(killed);
        // The app gets the new primary's URL in a new release (as a restarted process would).
        eventually(Duration::from_secs(30), "the failover recorded", || {
            let after = redis_info(&c);
            (after["ha"]["primary"]["node"] != node.as_str()
                && after["ha"]["failovers"] == round as u64)
                .then_some(())
                .ok_or(format!("{}", after["ha"]))
        });
        let new_url = redis_url(&c);
        assert!(!new_url.ends_with(&format!(":{port}")), "{new_url}");
        *url.lock().unwrap() = new_url;
        let at = writer.wait_after(killed, 30, "writes accepted again");
        eprintln!(
            "FIGURE redis_kill_to_writable_ms {}",
            (at - killed).as_millis()
        );
        // The node comes back: its old primary is a replica now and refuses writes.
        let port_min = ports.iter().find(|(n, _)| *n == node).unwrap().1;
        let d = c.spawn_worker(&node, &data, port_min);
        c.worker(&node).1 = d;
        let back = wait_redis_in_sync(&c);
        assert_eq!(back["ha"]["standby"]["node"], node.as_str(), "{back}");
        let old = {
            let u = url.lock().unwrap().clone();
            let (head, _) = u.rsplit_once(':').unwrap();
            format!("{head}:{port}")
        };
        let (_, out) = redis(&old, &["RPUSH", "ids", "2000000"]);
        assert!(out.contains("READONLY"), "{out}");
    }

    // A planned switchover: no write lost.
    let before = redis_info(&c);
    let out = c.json(&["addons:failover", "redis-cache-1", "-a", "cache"]);
    eprintln!("FIGURE redis_switchover_ms {}", out["took_ms"]);
    let after = redis_info(&c);
    assert_eq!(
        after["ha"]["primary"]["node"],
        before["ha"]["standby"]["node"]
    );
    *url.lock().unwrap() = redis_url(&c);
    writer.wait_after(Instant::now(), 30, "writes after the switchover");
    wait_redis_in_sync(&c);
    let acked = writer.stop();

    let u = url.lock().unwrap().clone();
    let (ok, out) = redis(&u, &["LRANGE", "ids", "0", "-1"]);
    assert!(ok, "{out}");
    let lost = missing(&acked, &out);
    // What asynchronous replication may lose: writes acknowledged just before a kill, and
    // nothing else (none from the switchover).
    for (id, at) in &lost {
        assert!(
            kills
                .iter()
                .any(|k| *at <= *k && k.duration_since(*at) < Duration::from_secs(2)),
            "id {id} was lost though it was not acknowledged just before a kill"
        );
    }
    eprintln!("FIGURE redis_acked {} lost {}", acked.len(), lost.len());
}

/// Three nodes: the standby's node is lost and stays away, so a new standby is built on the
/// third node (and, that node lost in turn, back on the first one, afresh); then the primary's
/// server cannot start any more (a setting it does not know
/// in its configuration) and the master fails over to that new standby; the broken server,
/// restarted as a standby, takes a fresh copy and follows. No acknowledged commit is lost.
#[test]
fn a_lost_standby_is_rebuilt_elsewhere_and_a_server_that_cannot_start_fails_over() {
    let config = TEST_CONFIG.replace(
        "[master]\n",
        &format!("[master]\naddon_port_min = {}\n", handler_port_base()),
    );
    let mut c = TestCluster::start_with(&config);
    let nodes = [("h1", 33300u16), ("h2", 33500u16), ("h3", 33700u16)];
    for (n, p) in nodes {
        c.add_worker(n, p);
    }
    c.deploy("bank", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&["addons:create", "postgres", "-a", "bank", "--ha"])
        .unwrap();
    wait_in_sync(&c, 120);
    // (The standby reports what it applied every 10 s at most: lag shows from then on.)
    let first = eventually(Duration::from_secs(15), "the standby's lag", || {
        let i = info(&c);
        i["ha"]["lag"]["bytes"]
            .is_u64()
            .then_some(i.clone())
            .ok_or(format!("{}", i["ha"]))
    });
    let text = c
        .cli_ok(&["addons:info", "pg-bank-1", "-a", "bank"])
        .unwrap();
    assert!(
        text.contains("Lag") && text.contains("bytes behind"),
        "{text}"
    );
    let url = c.json(&["config", "-a", "bank"])["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let (ok, out) = psql(&url, "CREATE TABLE ids (id int PRIMARY KEY)");
    assert!(ok, "{out}");
    let writer = {
        let url = url.clone();
        Writer::start(move |id| psql(&url, &format!("INSERT INTO ids VALUES ({id})")).0)
    };

    // The standby's node goes and stays away.
    let primary = first["ha"]["primary"]["node"].as_str().unwrap().to_string();
    let gone = first["ha"]["standby"]["node"].as_str().unwrap().to_string();
    let standby_port = first["ha"]["standby"]["port"].as_u64().unwrap();
    let pids = pids_with(&format!("bin/postgres\0-D\0data\0-p\0{standby_port}\0"));
    let gone_data = kill_node(&mut c, &gone, pids);
    let killed = Instant::now();
    let rebuilt = eventually(Duration::from_secs(120), "a new standby", || {
        let i = info(&c);
        (i["ha"]["standby"]["node"] != gone.as_str() && i["ha"]["in_sync"] == true)
            .then_some(i.clone())
            .ok_or(format!("{}", i["ha"]))
    });
    eprintln!("FIGURE standby_rebuilt_ms {}", killed.elapsed().as_millis());
    let third = rebuilt["ha"]["standby"]["node"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(third != gone && third != primary, "{}", rebuilt["ha"]);
    assert_eq!(rebuilt["ha"]["primary"]["node"], primary.as_str());
    writer.wait_after(Instant::now(), 30, "commits with the new standby");

    // The lost node comes back (its old copy stays there, stopped); then the new standby's
    // node goes: the standby moves back there and copies the primary afresh rather than
    // resume from its older copy.
    let port_min = nodes.iter().find(|(n, _)| *n == gone).unwrap().1;
    let d = c.spawn_worker(&gone, &gone_data, port_min);
    c.worker(&gone).1 = d;
    eventually(Duration::from_secs(30), "the node back", || {
        let nodes = c.json(&["nodes"]);
        nodes
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == gone.as_str() && n["state"] == "up")
            .then_some(())
            .ok_or(format!("{nodes}"))
    });
    let pids = pids_with(&format!("bin/postgres\0-D\0data\0-p\0{standby_port}\0"));
    kill_node(&mut c, &third, pids);
    let moved_back = eventually(Duration::from_secs(120), "the standby moved back", || {
        let i = info(&c);
        (i["ha"]["standby"]["node"] == gone.as_str() && i["ha"]["in_sync"] == true)
            .then_some(i.clone())
            .ok_or(format!("{}", i["ha"]))
    });
    let log = c
        .cli_ok(&["logs", "-a", "bank", "--addon", "pg-bank-1", "-n", "3000"])
        .unwrap();
    assert!(log.contains("an older copy"), "{log}");
    writer.wait_after(Instant::now(), 30, "commits with the standby moved back");
    let standby_now = moved_back["ha"]["standby"]["node"]
        .as_str()
        .unwrap()
        .to_string();

    // The primary's server cannot start any more: restarted too often, it fails over.
    let dir = c.worker(&primary).2.join("addons/pg-bank-1/data");
    let port = rebuilt["ha"]["primary"]["port"].as_u64().unwrap();
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("postgresql.auto.conf"))
        .unwrap();
    use std::io::Write;
    writeln!(conf, "zeroku_no_such_setting = 1").unwrap();
    drop(conf);
    let server = format!("bin/postgres\0-D\0data\0-p\0{port}\0");
    let postmaster = pids_with(&server).into_iter().min().expect("the primary");
    unsafe_free_kill(postmaster as i32, 9);
    let broken = Instant::now();
    let over = eventually(Duration::from_secs(90), "a failover", || {
        let i = info(&c);
        (i["ha"]["failovers"] == 1)
            .then_some(i.clone())
            .ok_or(format!("{}", i["ha"]))
    });
    eprintln!(
        "FIGURE crashed_server_failover_ms {}",
        broken.elapsed().as_millis()
    );
    assert_eq!(
        over["ha"]["primary"]["node"],
        standby_now.as_str(),
        "{}",
        over["ha"]
    );
    let why = over["ha"]["last_failover"].as_str().unwrap_or_default();
    assert!(why.contains("cannot start"), "{why}");
    writer.wait_after(Instant::now(), 30, "commits on the new primary");
    // The broken server, restarted as a standby, is a copy of the new primary now.
    let back = wait_in_sync(&c, 180);
    assert_eq!(back["ha"]["standby"]["node"], primary.as_str());
    let acked = writer.stop();
    let (ok, out) = psql(&url, "SELECT id FROM ids ORDER BY id");
    assert!(ok, "{out}");
    let missing = missing(&acked, &out);
    assert!(missing.is_empty(), "acknowledged and lost: {missing:?}");
}
