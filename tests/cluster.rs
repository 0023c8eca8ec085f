//! Master + two workers: spreading, worker restarts with re-adoption, node
//! loss and return. Real processes, loopback, temp dirs.

mod common;
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn by_node(ps: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in ps {
        m.entry(p["node"].as_str().unwrap_or("-").to_string())
            .or_default()
            .push(p.clone());
    }
    m
}

fn pids(ps: &[Value]) -> HashSet<u64> {
    ps.iter().filter_map(|p| p["pid"].as_u64()).collect()
}

/// Processes whose environment says they are instance `id`.
/// Processes of this test's cluster (their working directory, the slug, is
/// under `root`) whose environment says they are instance `id`; other runs
/// on the machine may use the same instance names.
fn processes_of(root: &std::path::Path, id: &str) -> Vec<u32> {
    let needle = format!("ZEROKU_INSTANCE={id}\0");
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        // Only the process zeroku started (the shell), not its children.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let session_leader = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(3).map(|s| s == pid.to_string()))
            .unwrap_or(false);
        let ours = std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(root));
        if ours && session_leader && String::from_utf8_lossy(&env).contains(&needle) && alive(pid) {
            out.push(pid);
        }
    }
    out
}

/// Log lines (as the API's JSON) with a sequence number above `after`.
fn log_lines(c: &TestCluster, app: &str, after: u64) -> Vec<Value> {
    let out = c
        .cli_ok(&["logs", "-a", app, "-n", "1000", "--json"])
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["seq"].as_u64().unwrap_or(0) > after)
        .collect()
}

fn max_seq(c: &TestCluster, app: &str) -> u64 {
    log_lines(c, app, 0)
        .iter()
        .filter_map(|l| l["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

#[test]
fn two_nodes_spread_readopt_fail_over_and_return() {
    let mut c = TestCluster::start();
    c.add_worker("n1", 31000);
    c.add_worker("n2", 31200);
    eventually(Duration::from_secs(15), "two nodes up", || {
        let n = c.json(&["nodes"]);
        let up = n.as_array().map_or(0, |a| {
            a.iter()
                .filter(|x| x["state"] == "up" && x["last_seen_ms"].is_number())
                .count()
        });
        if up == 2 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    c.deploy("multi", TICKER);
    c.cli_ok(&["ps:scale", "-a", "multi", "clock=4"]).unwrap();
    let ps = c.wait_up("multi", 4, Duration::from_secs(30));
    let nodes = by_node(&ps);
    assert_eq!(nodes.get("n1").map(Vec::len), Some(2), "{ps:?}");
    assert_eq!(nodes.get("n2").map(Vec::len), Some(2), "{ps:?}");
    let n2_pids = pids(&nodes["n2"]);
    assert_eq!(n2_pids.len(), 2);

    // kill -9 the n2 worker: its instances keep running.
    c.worker("n2").1.kill9();
    for pid in &n2_pids {
        assert!(
            alive(*pid as u32),
            "instance pid {pid} died with its worker"
        );
    }
    // Restart it on the same data: the same PIDs are adopted, nothing is
    // started twice, logs keep flowing.
    let seq_at_restart = max_seq(&c, "multi");
    let data = c.worker("n2").2.clone();
    let d = c.spawn_worker("n2", &data, 31200);
    c.worker("n2").1 = d;
    // The new worker says so once it has adopted them (before that, ps
    // still shows the old worker's last heartbeat).
    eventually(
        Duration::from_secs(20),
        "the restarted worker adopts",
        || {
            let log = c.worker("n2").1.log_text();
            if log.matches("re-adopted").count() >= 2 {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    let ps = eventually(Duration::from_secs(20), "n2 re-adopted", || {
        let ps = c.ps("multi");
        let n2 = by_node(&ps).remove("n2").unwrap_or_default();
        let ok = n2.len() == 2 && n2.iter().all(|p| p["state"] == "up") && pids(&n2) == n2_pids;
        if ok {
            Ok(ps)
        } else {
            Err(format!("{ps:?}"))
        }
    });
    for p in &ps {
        let id = p["id"].as_str().unwrap();
        assert_eq!(
            processes_of(c.dir.path(), id).len(),
            1,
            "{id} runs {:?}",
            processes_of(c.dir.path(), id)
        );
    }
    let restart_log = c.worker("n2").1.log_text();
    assert!(restart_log.contains("re-adopted"), "{restart_log}");
    let n2_ids: Vec<String> = by_node(&ps)["n2"]
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    eventually(
        Duration::from_secs(10),
        "n2 logs flowing after restart",
        || {
            let fresh = log_lines(&c, "multi", seq_at_restart);
            let missing: Vec<&String> = n2_ids
                .iter()
                .filter(|id| {
                    !fresh.iter().any(|l| {
                        l["instance"] == id.as_str()
                            && l["line"].as_str().unwrap_or("").starts_with("tick")
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("no new lines from {missing:?}"))
            }
        },
    );

    // Node lost: the worker stops and its instances die. Within 10 s all
    // four run on n1.
    c.worker("n2").1.kill9();
    kill_apps(&data);
    let lost = std::time::Instant::now();
    eventually(Duration::from_secs(10), "all four up on n1", || {
        let ps = c.ps("multi");
        let ok = ps.len() == 4 && ps.iter().all(|p| p["node"] == "n1" && p["state"] == "up");
        if ok {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    eprintln!("node loss to 4 up on n1: {:?}", lost.elapsed());
    let nodes = c.json(&["nodes"]);
    assert!(nodes.to_string().contains("\"dead\""), "{nodes}");

    // n2 comes back: nothing runs twice, nothing moves back by itself.
    let d = c.spawn_worker("n2", &data, 31200);
    c.worker("n2").1 = d;
    eventually(Duration::from_secs(15), "n2 back up", || {
        let n = c.json(&["nodes"]);
        let n2 = n
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "n2").cloned())
            .unwrap_or_default();
        if n2["state"] == "up" && n2["running"] == 0 {
            Ok(())
        } else {
            Err(n2.to_string())
        }
    });
    let ps = c.wait_up("multi", 4, Duration::from_secs(10));
    for p in &ps {
        let id = p["id"].as_str().unwrap();
        assert_eq!(
            processes_of(c.dir.path(), id).len(),
            1,
            "{id} runs {:?}",
            processes_of(c.dir.path(), id)
        );
    }

    // Drain n1: everything moves to n2.
    c.cli_ok(&["nodes:drain", "n1"]).unwrap();
    eventually(Duration::from_secs(20), "drained to n2", || {
        let ps = c.ps("multi");
        let ok = ps.len() == 4 && ps.iter().all(|p| p["node"] == "n2" && p["state"] == "up");
        if ok {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    let ps = c.ps("multi");
    for p in &ps {
        let id = p["id"].as_str().unwrap();
        eventually(Duration::from_secs(10), "old copies stopped", || {
            let n = processes_of(c.dir.path(), id).len();
            if n == 1 {
                Ok(())
            } else {
                Err(format!("{id}: {n}"))
            }
        });
    }
}

#[test]
fn master_restart_loses_nothing_acknowledged() {
    let mut c = TestCluster::start();
    c.add_worker("solo", 31400);
    c.deploy("keep", TICKER);
    c.cli_ok(&["config:set", "-a", "keep", "GREETING=persisted"])
        .unwrap();
    c.cli_ok(&["ps:scale", "-a", "keep", "clock=2"]).unwrap();
    let before = c.wait_up("keep", 2, Duration::from_secs(30));
    c.restart_master();
    let after = c.wait_up("keep", 2, Duration::from_secs(30));
    assert_eq!(
        pids(&before),
        pids(&after),
        "instances were restarted by a master restart"
    );
    let rel = c.json(&["releases", "-a", "keep"]);
    assert_eq!(rel.as_array().map(Vec::len), Some(2));
    let cfg = c.json(&["config", "-a", "keep"]);
    assert_eq!(cfg["GREETING"], "persisted");
}

#[test]
fn a_second_worker_cannot_take_the_name_of_a_live_node() {
    let mut c = TestCluster::start();
    c.add_worker("twin", 31600);
    eventually(Duration::from_secs(15), "twin up", || {
        let n = c.json(&["nodes"]);
        if n[0]["last_seen_ms"].is_number() {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    let other = c.dir.path().join("worker-twin-2");
    let mut d = c.spawn_worker("twin", &other, 31700);
    let status = eventually(Duration::from_secs(15), "the impostor to exit", || {
        d.child
            .as_mut()
            .unwrap()
            .try_wait()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "still running".to_string())
    });
    assert!(!status.success());
    let log = d.log_text();
    assert!(
        log.contains("already up") && log.contains("--node"),
        "{log}"
    );
}

/// The value of the sample `name{labels}` in a Prometheus page (labels in the order written).
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The master and every worker serve Prometheus `/metrics` (and `/healthz`) on their
/// `metrics` address: nodes, apps and instances as the master sees them; each instance's
/// state, restarts, memory and CPU as its worker sees them.
#[test]
fn master_and_workers_serve_prometheus_metrics() {
    let (mp, wp) = (free_port(), free_port());
    let config = TEST_CONFIG
        .replacen(
            "metrics = \"\"",
            &format!("metrics = \"127.0.0.1:{mp}\""),
            1,
        )
        .replacen(
            "metrics = \"\"",
            &format!("metrics = \"127.0.0.1:{wp}\""),
            1,
        );
    let mut c = TestCluster::start_with(&config);
    c.add_worker("n1", 33900);
    c.deploy(
        "busy",
        &[
            ("Procfile", "worker: python3 busy.py\n"),
            (
                "busy.py",
                "import time\nwhile True:\n    sum(range(10000))\n    time.sleep(0.01)\n",
            ),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "busy", "worker=2"]).unwrap();
    let (master, worker) = (format!("127.0.0.1:{mp}"), format!("127.0.0.1:{wp}"));
    let get = |addr: &str| {
        let (st, head, body) = http_get(addr, "x", "/metrics").unwrap();
        assert_eq!(st, 200);
        assert!(
            head.to_lowercase().contains("text/plain; version=0.0.4"),
            "{head}"
        );
        body
    };
    let page = eventually(
        Duration::from_secs(30),
        "both instances in the metrics",
        || {
            let page = get(&master);
            (sample(&page, "zeroku_master_instances{state=\"up\"}") == Some(2.0))
                .then_some(page.clone())
                .ok_or(page)
        },
    );
    assert_eq!(
        sample(&page, "zeroku_master_nodes{state=\"up\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(sample(&page, "zeroku_master_apps"), Some(1.0));
    assert_eq!(sample(&page, "zeroku_master_instances_placed"), Some(2.0));
    assert!(sample(&page, "zeroku_master_heartbeats_total").is_some_and(|n| n > 0.0));
    assert!(page.contains("# TYPE zeroku_master_lists_published_total counter"));

    let series = |what: &str| {
        format!("zeroku_worker_instance_{what}{{app=\"busy\",type=\"worker\",instance=\"busy.worker.1\"}}")
    };
    let page = eventually(Duration::from_secs(30), "the worker's instances", || {
        let page = get(&worker);
        (sample(&page, "zeroku_worker_instances{state=\"up\"}") == Some(2.0)
            && sample(&page, &series("cpu_seconds_total")).is_some_and(|s| s > 0.0))
        .then_some(page.clone())
        .ok_or(page)
    });
    // A python process holds megabytes.
    let rss = sample(&page, &series("memory_bytes")).unwrap_or(0.0);
    assert!(rss > 1e6, "{page}");
    assert_eq!(sample(&page, &series("restarts")), Some(0.0));
    assert!(sample(&page, "zeroku_worker_list_generation").is_some_and(|g| g > 0.0));
    for addr in [&master, &worker] {
        assert_eq!(http_get(addr, "x", "/healthz").unwrap().0, 200);
        assert_eq!(http_get(addr, "x", "/v1/apps").unwrap().0, 404);
    }
}

/// A cluster whose worker and frontend report every 300 ms, running `shop` (a web process)
/// behind its frontend (returned).
fn shop(config: &str, port_min: u16) -> (TestCluster, String) {
    let mut c = TestCluster::start_with(config);
    let fast = [("ZEROKU_WORKER_REPORT_INTERVAL_MS", "300")];
    let data = c.dir.path().join("worker-n1");
    let d = c.spawn_worker_with_env("n1", &data, port_min, &fast);
    c.workers.push(("n1".into(), d, data));
    let fe = c.add_frontend_with("edge", &[("ZEROKU_FRONTEND_REPORT_INTERVAL_MS", "300")]);
    c.deploy(
        "shop",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("index.html", "<h1>shop</h1>\n"),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "shop", "web=1"]).unwrap();
    wait_http_ok(&fe, "shop.localhost", "/", Duration::from_secs(30));
    (c, fe)
}

/// `zeroku metrics`: the master keeps, per app and minute, what its frontends answered
/// (requests by status class, latency quantiles) and what its workers saw each process type
/// use (instances, memory, CPU, restarts). Only a frontend's own token may report its traffic.
#[test]
fn the_master_keeps_each_apps_minutes() {
    let (c, fe) = shop(TEST_CONFIG, 34100);
    for _ in 0..20 {
        assert_eq!(http_get(&fe, "shop.localhost", "/").unwrap().0, 200);
    }
    for _ in 0..5 {
        assert_eq!(http_get(&fe, "shop.localhost", "/nope").unwrap().0, 404);
    }
    let sum = |v: &Value, f: &dyn Fn(&Value) -> u64| {
        v["minutes"]
            .as_array()
            .map_or(0, |m| m.iter().map(f).sum::<u64>())
    };
    let v = eventually(
        Duration::from_secs(30),
        "the requests and the usage kept",
        || {
            let v = c.json(&["metrics", "-a", "shop"]);
            let ok = sum(&v, &|m| m["by_class"]["2xx"].as_u64().unwrap_or(0)) >= 20
                && sum(&v, &|m| m["by_class"]["4xx"].as_u64().unwrap_or(0)) == 5
                && sum(&v, &|m| {
                    m["types"]["web"]["memory_bytes"].as_u64().unwrap_or(0)
                }) > 0;
            ok.then_some(v.clone()).ok_or(format!("{v}"))
        },
    );
    let last = v["minutes"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["requests"].as_u64() > Some(0))
        .unwrap()
        .clone();
    let (p50, p99) = (
        last["p50_ms"].as_f64().unwrap(),
        last["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= 10_000.0, "{last}");
    assert_eq!(last["types"]["web"]["instances"], 1, "{last}");
    let text = c
        .cli_ok(&["metrics", "-a", "shop", "--minutes", "5"])
        .unwrap();
    let lower = text.to_lowercase();
    assert!(
        lower.contains("p95 ms") && lower.contains("web: mb"),
        "{text}"
    );
    // Bad input is refused.
    let o = c.cli(&["metrics", "-a", "shop", "--minutes", "0"]);
    assert!(!o.status.success());
    // Nobody but the frontend itself reports its traffic.
    let body = r#"{"apps":[{"app":"shop","classes":[0,0,0,0,1000],"buckets":[]}]}"#;
    let user: Value = c.json(&["users:add", "nobody"]);
    let token = user["token"].as_str().unwrap().to_string();
    let (st, _, _) = http_request(
        &c.master.api,
        &format!(
            "POST /v1/frontends/edge/traffic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            token,
            body.len()
        ),
    )
    .unwrap();
    assert_eq!(st, 403);
    let v = c.json(&["metrics", "-a", "shop"]);
    assert!(
        sum(&v, &|m| m["by_class"]["5xx"].as_u64().unwrap_or(0)) < 1000,
        "{v}"
    );
}

/// A webhook receiver: answers its first POST 500 (the master must try again), the rest 200;
/// the JSON bodies it took.
fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        for (n, s) in l.incoming().flatten().enumerate() {
            let mut r = BufReader::new(s);
            let mut len = 0;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let status = if n == 0 { "500 Oops" } else { "200 OK" };
            if n > 0 {
                if let Ok(v) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(v);
                }
            }
            let _ = r.get_mut().write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    (url, got)
}

/// `zeroku alerts:add`: a rule on an app's metrics fires once when it starts to hold and is
/// resolved once when it stops (on complete minutes: this test takes two of them), each a
/// JSON POST to the webhook (tried again when the webhook fails); bad rules and webhooks are
/// refused.
#[test]
fn an_alert_fires_once_and_is_resolved_once() {
    let config = TEST_CONFIG.replace(
        "[master]\n",
        "[master]\nalert_check_ms = 300\nalert_settle_ms = 1000\n",
    );
    let (c, fe) = shop(&config, 34300);
    let (url, got) = webhook();
    for (rule, hook) in [
        ("p96 > 1ms", url.as_str()),
        ("p95 > 1ms for 0m", url.as_str()),
        ("p95 > 1ms", "syslog+tcp://127.0.0.1:1"),
        ("p95 > 1ms", "not a url"),
    ] {
        let o = c.cli(&["alerts:add", "-a", "shop", rule, "--webhook", hook]);
        assert!(!o.status.success(), "{rule} {hook}");
    }
    assert_eq!(c.json(&["alerts", "-a", "shop"]), serde_json::json!([]));
    // Wait for a minute of its own, so the requests below are all in it.
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60
    };
    while second() > 40 {
        std::thread::sleep(Duration::from_millis(200));
    }
    c.cli_ok(&[
        "alerts:add",
        "-a",
        "shop",
        "requests > 10",
        "--webhook",
        &url,
    ])
    .unwrap();
    for _ in 0..15 {
        assert_eq!(http_get(&fe, "shop.localhost", "/").unwrap().0, 200);
    }
    let states = |got: &Arc<Mutex<Vec<Value>>>| -> Vec<String> {
        let mut s: Vec<String> = got
            .lock()
            .unwrap()
            .iter()
            .map(|v| v["state"].as_str().unwrap_or("?").to_string())
            .collect();
        s.dedup();
        s
    };
    // Once the minute is complete (it ends, then every reporter has sent it).
    eventually(Duration::from_secs(90), "the alert fired", || {
        (states(&got) == ["firing"])
            .then_some(())
            .ok_or(format!("{:?}", got.lock().unwrap()))
    });
    let fired = got.lock().unwrap()[0].clone();
    assert_eq!(fired["app"], "shop");
    assert_eq!(fired["rule"], "requests > 10");
    assert!(fired["value"].as_f64() > Some(10.0), "{fired}");
    let listed = c.json(&["alerts", "-a", "shop"]);
    assert_eq!(listed[0]["firing"], true, "{listed}");
    // The next minute has no requests: resolved, once, when it is complete.
    eventually(Duration::from_secs(90), "the alert resolved", || {
        (states(&got) == ["firing", "resolved"])
            .then_some(())
            .ok_or(format!("{:?}", got.lock().unwrap()))
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(states(&got), ["firing", "resolved"]);
    let log = c
        .cli_ok(&["logs", "-a", "shop", "--source", "zeroku", "-n", "200"])
        .unwrap();
    assert!(
        log.contains("is firing") && log.contains("is resolved"),
        "{log}"
    );
    let id = listed[0]["id"].to_string();
    c.cli_ok(&["alerts:remove", "-a", "shop", &id]).unwrap();
    assert_eq!(c.json(&["alerts", "-a", "shop"]), serde_json::json!([]));
}
