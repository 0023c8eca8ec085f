//! What an operator hits in the first hour (issue: "Operator CLI"), each a regression test:
//! settings checked before they act and rolled out like a deploy, impossible sizes refused and
//! pending instances explained, another app's host refused as a domain, a config change that
//! changes nothing making no release, ports never shared; and Heroku's everyday verbs end to
//! end (rolling ps:restart, ps:stop, config:get, rollback, logs filters, maintenance,
//! domains:clear, open, apps:rename, nodes:remove, deploy progress).

mod common;
use common::*;
use std::time::Duration;

fn releases(c: &TestCluster, app: &str) -> usize {
    c.json(&["releases", "-a", app])
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn settings_are_checked_and_rolled_out_like_a_deploy() {
    let mut c = TestCluster::start();
    c.add_worker("o1", 35200);
    let fe = c.add_frontend("edge");
    c.deploy(
        "api",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("index.html", "api up\n"),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "api", "web=1"]).unwrap();
    c.wait_up("api", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "api.localhost", "/", Duration::from_secs(20));
    let before = releases(&c, "api");

    // A stack that does not exist is refused, naming the fix; nothing changes.
    let o = c.cli(&["apps:settings", "-a", "api", "stack=nope2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a typo'd stack was accepted");
    assert!(
        err.contains("no stack named \"nope2\"") && err.contains("zeroku stacks"),
        "{err}"
    );
    assert_eq!(releases(&c, "api"), before);
    // A setting that changes how instances run is a new release, rolled out: the app
    // answers all along, and the new instance runs the new release.
    let out = c
        .cli_ok(&["apps:settings", "-a", "api", "cpu=0.5"])
        .unwrap();
    assert!(out.contains("being replaced"), "{out}");
    assert_eq!(releases(&c, "api"), before + 1);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (st, _, body) = http_get(&fe, "api.localhost", "/").unwrap();
        assert_eq!(
            st, 200,
            "the app stopped answering during the change: {body}"
        );
        let ps = c.ps("api");
        if ps.len() == 1 && ps[0]["state"] == "up" && ps[0]["release"] == (before + 1) as u64 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{ps:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same value again changes nothing.
    let out = c
        .cli_ok(&["apps:settings", "-a", "api", "cpu=0.5"])
        .unwrap();
    assert!(out.contains("Nothing changed"), "{out}");
    assert_eq!(releases(&c, "api"), before + 1);
}

#[test]
fn impossible_sizes_are_refused_and_pending_instances_say_why() {
    let mut c = TestCluster::start();
    c.add_worker("s1", 35300);
    c.deploy("hello", &[("Procfile", "clock: sleep 100000\n")]);
    let o = c.cli(&["ps:scale", "-a", "hello", "clock=2:999999"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "999999 MB was accepted");
    assert!(
        err.contains("no node has 999999 MB free") && err.contains("8192 MB, on node s1"),
        "{err}"
    );
    let o = c.cli(&["ps:scale", "-a", "hello", "clock=2:4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "4 MB was accepted");
    assert!(err.contains("the minimum is 32 MB"), "{err}");
    assert!(c.ps("hello").is_empty(), "nothing was scaled");
    // More than fits: the rest waits, and says why.
    c.cli_ok(&["ps:scale", "-a", "hello", "clock=5:2048"])
        .unwrap();
    let ps = eventually(Duration::from_secs(10), "a pending instance", || {
        let ps = c.ps("hello");
        if ps.iter().any(|p| p["state"] == "pending") {
            Ok(ps)
        } else {
            Err(format!("{ps:?}"))
        }
    });
    let pending = ps.iter().find(|p| p["state"] == "pending").unwrap();
    assert!(
        pending["last_exit"]
            .as_str()
            .is_some_and(|r| r.contains("memory") || r.contains("MB free")),
        "{pending}"
    );
    let table = c.cli_ok(&["ps", "-a", "hello"]).unwrap();
    assert!(table.contains("pending"), "{table}");
}

#[test]
fn a_domain_that_is_another_apps_address_is_refused() {
    let mut c = TestCluster::start();
    c.add_worker("d1", 35400);
    c.cli_ok(&["apps:create", "chat"]).unwrap();
    c.cli_ok(&["apps:create", "site"]).unwrap();
    let o = c.cli(&["domains:add", "-a", "site", "chat.localhost"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "site took chat's host");
    assert!(
        err.contains("app chat's address") && err.contains("409"),
        "{err}"
    );
    let o = c.cli(&["domains:add", "-a", "site", "other.localhost"]);
    assert!(
        !o.status.success(),
        "a name under the base domain that is not site's"
    );
    let o = c.cli(&["domains:add", "-a", "site", "localhost.localhost"]);
    assert!(!o.status.success());
    // Its own name, names below it and outside names are fine.
    c.cli_ok(&["domains:add", "-a", "site", "www.site.localhost"])
        .unwrap();
    c.cli_ok(&["domains:add", "-a", "site", "www.example.test"])
        .unwrap();
}

#[test]
fn unsetting_a_variable_that_is_not_set_changes_nothing() {
    let mut c = TestCluster::start();
    c.add_worker("u1", 35500);
    c.deploy("app", &[("Procfile", "clock: sleep 100000\n")]);
    c.cli_ok(&["config:set", "-a", "app", "A=1"]).unwrap();
    let before = releases(&c, "app");
    let out = c.cli_ok(&["config:unset", "-a", "app", "NOPE"]).unwrap();
    assert!(out.contains("NOPE was not set"), "{out}");
    assert!(out.contains("Nothing changed"), "{out}");
    assert_eq!(releases(&c, "app"), before, "no release for nothing");
    // Setting a variable to the value it has is nothing too; a real change is a release.
    let out = c.cli_ok(&["config:set", "-a", "app", "A=1"]).unwrap();
    assert!(out.contains("Nothing changed"), "{out}");
    assert_eq!(releases(&c, "app"), before);
    c.cli_ok(&["config:unset", "-a", "app", "A", "NOPE"])
        .unwrap();
    assert_eq!(releases(&c, "app"), before + 1);
}

#[test]
fn workers_on_one_host_never_share_a_port_and_a_taken_port_is_replaced() {
    let mut c = TestCluster::start();
    // Two workers on this host with the same port range.
    c.add_worker("pa", 35600);
    c.add_worker("pb", 35600);
    c.deploy(
        "site",
        &[("Procfile", "web: exec python3 -m http.server $PORT\n")],
    );
    c.cli_ok(&["ps:scale", "-a", "site", "web=4"]).unwrap();
    let ps = c.wait_up("site", 4, Duration::from_secs(40));
    let mut ports: Vec<u64> = ps.iter().map(|p| p["port"].as_u64().unwrap()).collect();
    let nodes: std::collections::HashSet<&str> =
        ps.iter().map(|p| p["node"].as_str().unwrap()).collect();
    assert_eq!(nodes.len(), 2, "spread over both workers: {ps:?}");
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 4, "two instances share a port: {ps:?}");

    // Something outside the cluster takes an instance's port while it is down: it comes back
    // on another port instead of failing to bind for ever.
    let victim = &ps[0];
    let (id, port, pid) = (
        victim["id"].as_str().unwrap().to_string(),
        victim["port"].as_u64().unwrap() as u16,
        victim["pid"].as_u64().unwrap() as i32,
    );
    let squatter = std::process::Command::new("python3")
        .args([
            "-c",
            &format!(
                "import socket, time, os\nos.kill({pid}, 9)\ns = socket.socket()\nfor _ in range(200):\n    try:\n        s.bind(('127.0.0.1', {port})); break\n    except OSError:\n        time.sleep(0.01)\ns.listen(1)\nprint('bound', flush=True)\ntime.sleep(60)"
            ),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
        }
    }
    let _squatter = Kill(squatter);
    let back = eventually(
        Duration::from_secs(30),
        "the instance back on another port",
        || {
            let ps = c.ps("site");
            let me = ps.iter().find(|p| p["id"] == id).cloned().ok_or("gone")?;
            if me["state"] == "up"
                && me["port"].as_u64() != Some(u64::from(port))
                && me["pid"].as_u64() != Some(pid as u64)
            {
                Ok(me)
            } else {
                Err(me.to_string())
            }
        },
    );
    assert!(back["restarts"].as_u64() >= Some(1), "{back}");
    let logs = c.cli_ok(&["logs", "-a", "site", "-n", "200"]).unwrap();
    assert!(logs.contains(&format!("Port {port} is taken")), "{logs}");
}

#[test]
fn herokus_everyday_verbs() {
    let mut c = TestCluster::start();
    c.add_worker("v1", 35700);
    let fe = c.add_frontend("edge");
    let src = c.dir.path().join("site-src");
    write_tree(
        &src,
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("index.html", "site up\n"),
        ],
    );
    c.cli_ok(&["apps:create", "site"]).unwrap();
    let out = c
        .cli_ok(&["deploy", "-a", "site", src.to_str().unwrap()])
        .unwrap();
    // The deploy says what it is doing as it does it, in order.
    let mut last = 0;
    for step in [
        "-----> Uploading ",
        " sent in ",
        "-----> Source received: 2 files",
        "-----> Compressing slug: ",
        " squashfs (sha256 ",
        "-----> Released v1",
        "deployed in",
    ] {
        let at = out[last..]
            .find(step)
            .unwrap_or_else(|| panic!("no {step:?} after byte {last} of:\n{out}"));
        last += at + step.len();
    }
    c.cli_ok(&["ps:scale", "-a", "site", "web=1"]).unwrap();
    c.wait_up("site", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "site.localhost", "/", Duration::from_secs(20));

    // config:get
    c.cli_ok(&["config:set", "-a", "site", "GREETING=hi"])
        .unwrap();
    assert_eq!(
        c.cli_ok(&["config:get", "-a", "site", "GREETING"]).unwrap(),
        "hi\n"
    );
    let o = c.cli(&["config:get", "-a", "site", "NOPE"]);
    assert_eq!(o.status.code(), Some(1));

    // rollback with no version: to the release before the current one.
    let n = releases(&c, "site");
    let out = c.cli_ok(&["rollback", "-a", "site"]).unwrap();
    assert!(out.contains(&format!("to v{}", n - 1)), "{out}");

    // ps:restart TYPE: one instance at a time, each new process up before its
    // old one stops, no new release, no request lost meanwhile.
    c.cli_ok(&["ps:scale", "-a", "site", "web=2"]).unwrap();
    c.wait_up("site", 2, Duration::from_secs(30));
    let pids = |c: &TestCluster| -> Vec<(String, u64, u64)> {
        c.ps("site")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap_or("").to_string(),
                    p["pid"].as_u64().unwrap_or(0),
                    p["incarnation"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let before = pids(&c);
    let n = releases(&c, "site");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (fe, stop) = (fe.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                codes.push(http_get(&fe, "site.localhost", "/").map_or(0, |r| r.0));
                std::thread::sleep(Duration::from_millis(20));
            }
            codes
        })
    };
    let out = c.cli_ok(&["ps:restart", "-a", "site", "web"]).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let codes = load.join().unwrap();
    assert!(
        !codes.is_empty() && codes.iter().all(|c| *c == 200),
        "requests failed during the restart: {codes:?}"
    );
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("{s:?} not in {out}"));
    assert!(at("Restarting site.web.1 (1 of 2)") < at("site.web.1 is up again"));
    assert!(at("site.web.1 is up again") < at("Restarting site.web.2 (2 of 2)"));
    assert!(at("Restarting site.web.2 (2 of 2)") < at("site.web.2 is up again"));
    assert_eq!(releases(&c, "site"), n, "a restart makes no release");
    let after = eventually(Duration::from_secs(20), "both restarted", || {
        let now = pids(&c);
        if now.len() == 2 && now.iter().all(|(_, pid, inc)| *inc == 1 && *pid != 0) {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b.1, a.1, "{b:?} has the same process after the restart");
    }
    // One instance (ps:stop of one of the formation's restarts it too): the other stays.
    let out = c.cli_ok(&["ps:stop", "-a", "site", "web.2"]).unwrap();
    assert!(out.contains("part of the formation"), "{out}");
    let again = eventually(Duration::from_secs(20), "web.2 restarted", || {
        let now = pids(&c);
        if now.len() == 2 && now[1].2 == 2 && now[1].1 != 0 {
            Ok(now)
        } else {
            Err(format!("{now:?}"))
        }
    });
    assert_eq!(again[0], after[0], "web.1 untouched");
    let o = c.cli(&["ps:restart", "-a", "site", "worker"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no instance or process type"),
        "{err}"
    );
    c.cli_ok(&["ps:scale", "-a", "site", "web=1"]).unwrap();
    c.wait_up("site", 1, Duration::from_secs(30));

    // logs --ps and --source: zeroku's own lines about the web process.
    let lines = c
        .cli_ok(&[
            "logs", "-a", "site", "--ps", "web", "--source", "zeroku", "-n", "50",
        ])
        .unwrap();
    assert!(lines.contains("zeroku[site.web.1]"), "{lines}");
    assert!(!lines.contains("app["), "{lines}");
    let o = c.cli(&["logs", "-a", "site", "--source", "nobody"]);
    assert!(!o.status.success());

    // One-offs show in ps while they run, and ps:stop ends them.
    let out = c
        .cli_ok(&["run", "-a", "site", "--detach", "--", "sleep", "600"])
        .unwrap();
    assert!(out.contains("site.run.1"), "{out}");
    eventually(Duration::from_secs(20), "the one-off in ps", || {
        let ps = c.ps("site");
        if ps
            .iter()
            .any(|p| p["id"] == "site.run.1" && p["state"] == "up")
        {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    c.cli_ok(&["ps:stop", "-a", "site", "run.1"]).unwrap();
    eventually(Duration::from_secs(20), "the one-off gone", || {
        let ps = c.ps("site");
        if ps.iter().all(|p| p["id"] != "site.run.1") {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    assert!(!c.cli(&["ps:stop", "-a", "site", "web"]).status.success());

    // maintenance: 503 and the page, nothing stopped; then back.
    let page = c.dir.path().join("maint.html");
    std::fs::write(&page, "<h1>back soon</h1>").unwrap();
    c.cli_ok(&[
        "maintenance:on",
        "-a",
        "site",
        "--page",
        page.to_str().unwrap(),
    ])
    .unwrap();
    let (st, head, body) = eventually(Duration::from_secs(10), "the maintenance page", || {
        let r = http_get(&fe, "site.localhost", "/")?;
        if r.0 == 503 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert_eq!(st, 503);
    assert!(body.contains("back soon"), "{body}");
    assert!(head.to_ascii_lowercase().contains("retry-after"), "{head}");
    assert_eq!(c.ps("site")[0]["state"], "up", "nothing stopped");
    c.cli_ok(&["maintenance:off", "-a", "site"]).unwrap();
    wait_http_ok(&fe, "site.localhost", "/", Duration::from_secs(10));

    // domains:clear
    c.cli_ok(&["domains:add", "-a", "site", "a.example.test"])
        .unwrap();
    c.cli_ok(&["domains:add", "-a", "site", "b.example.test"])
        .unwrap();
    let out = c.cli_ok(&["domains:clear", "-a", "site"]).unwrap();
    assert!(
        out.contains("a.example.test") && out.contains("b.example.test"),
        "{out}"
    );
    assert_eq!(c.json(&["domains", "-a", "site"]), serde_json::json!([]));

    // open, and the app from the directory's zeroku git remote.
    let repo = c.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap()
    };
    git(&["init", "-q"]);
    git(&["remote", "add", "zeroku", "http://127.0.0.1:1/git/site.git"]);
    let o = std::process::Command::new(bin())
        .args(["open"])
        .current_dir(&repo)
        .env("ZEROKU_URL", &c.master.url)
        .env("ZEROKU_TOKEN", &c.master.token)
        .env_remove("ZEROKU_APP")
        .output()
        .unwrap();
    let url = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && url.contains("site.localhost"),
        "{url}"
    );
    let o = std::process::Command::new(bin())
        .args(["open"])
        .current_dir(c.dir.path())
        .env("ZEROKU_URL", &c.master.url)
        .env("ZEROKU_TOKEN", &c.master.token)
        .env_remove("ZEROKU_APP")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("which app?"));
}

#[test]
fn an_app_can_be_renamed_and_keeps_everything_but_its_name() {
    let mut c = TestCluster::start();
    c.add_worker("r1", 35800);
    let fe = c.add_frontend("edge");
    c.deploy(
        "old",
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("index.html", "renamed app\n"),
        ],
    );
    c.cli_ok(&["config:set", "-a", "old", "GREETING=hi"])
        .unwrap();
    c.cli_ok(&["domains:add", "-a", "old", "www.rename.test"])
        .unwrap();
    c.cli_ok(&["domains:add", "-a", "old", "api.old.localhost"])
        .unwrap();
    c.cli_ok(&["apps:create", "other"]).unwrap();
    c.wait_up("old", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "old.localhost", "/", Duration::from_secs(20));
    let n = releases(&c, "old");

    // Not while a one-off runs: its id would change under it.
    c.cli_ok(&["run", "-a", "old", "--detach", "--", "sleep", "600"])
        .unwrap();
    let o = c.cli(&["apps:rename", "new", "-a", "old"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("old.run.1 is running"),
        "{err}"
    );
    c.cli_ok(&["ps:stop", "-a", "old", "run.1"]).unwrap();
    // Not onto another app, nor to a name that is no name.
    let o = c.cli(&["apps:rename", "other", "-a", "old"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert!(!c
        .cli(&["apps:rename", "Bad/Name", "-a", "old"])
        .status
        .success());

    // From the app's git checkout: the zeroku remote follows the new name.
    let repo = c.dir.path().join("old-repo");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q"]);
    let zeroku = |args: &[&str]| {
        std::process::Command::new(bin())
            .args(args)
            .current_dir(&repo)
            .env("ZEROKU_URL", &c.master.url)
            .env("ZEROKU_TOKEN", &c.master.token)
            .env_remove("ZEROKU_APP")
            .output()
            .unwrap()
    };
    assert!(zeroku(&["git:remote", "-a", "old"]).status.success());
    let o = zeroku(&["apps:rename", "new"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("Renamed old to new") && out.contains("api.old.localhost"),
        "{out}"
    );
    assert!(git(&["remote", "get-url", "zeroku"]).ends_with("/new.git"));

    // Everything but the name stays: config, releases, custom domains; it runs and answers
    // under the new name only, with no new release.
    let apps = c.cli_ok(&["apps"]).unwrap();
    assert!(apps.contains("new") && !apps.contains("old"), "{apps}");
    assert_eq!(
        c.cli_ok(&["config:get", "-a", "new", "GREETING"]).unwrap(),
        "hi\n"
    );
    assert_eq!(releases(&c, "new"), n);
    let ps = c.wait_up("new", 1, Duration::from_secs(30));
    assert_eq!(ps[0]["id"], "new.web.1", "{ps:?}");
    let (_, _, body) = wait_http_ok(&fe, "new.localhost", "/", Duration::from_secs(20));
    assert!(body.contains("renamed app"), "{body}");
    wait_http_ok(&fe, "www.rename.test", "/", Duration::from_secs(20));
    eventually(
        Duration::from_secs(10),
        "the old name unrouted",
        || match http_get(&fe, "old.localhost", "/")? {
            (404, _, _) => Ok(()),
            r => Err(format!("{r:?}")),
        },
    );
    let domains = c.json(&["domains", "-a", "new"]).to_string();
    assert!(
        domains.contains("www.rename.test") && !domains.contains("old.localhost"),
        "{domains}"
    );
    let logs = c.cli_ok(&["logs", "-a", "new", "-n", "500"]).unwrap();
    assert!(
        logs.contains("old.web.1"),
        "the log history came along: {logs}"
    );
    // The old name is free again.
    c.cli_ok(&["apps:create", "old"]).unwrap();
}

/// On a cluster past its heartbeat budget (`max_heartbeats_per_sec`) the master asks every node
/// for slower heartbeats and waits longer before it calls a silent one dead, as Nomad does:
/// nodes at the slower pace stay up well past the configured dead timeout, a killed one is still
/// found dead, and the pace comes back down as the cluster shrinks.
#[test]
fn a_cluster_past_its_heartbeat_budget_slows_every_node_down() {
    let cfg = TEST_CONFIG.replace("[master]\n", "[master]\nmax_heartbeats_per_sec = 1\n");
    let mut c = TestCluster::start_with(&cfg);
    let names = ["p1", "p2", "p3"];
    for (n, port) in names.iter().zip([31100, 31300, 31500]) {
        c.add_worker(n, port);
    }
    let up = |c: &TestCluster| -> Vec<String> {
        c.json(&["nodes"])
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|n| n["state"] == "up")
                    .filter_map(|n| n["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let pace = |c: &TestCluster| {
        let s = c.api_get("/v1/status");
        (s["heartbeat_ms"].as_u64(), s["dead_after_ms"].as_u64())
    };
    // Three nodes at one heartbeat a second in all: every 3 s, dead after 18 s (the configured
    // 500 ms and 3 s, scaled together).
    eventually(
        Duration::from_secs(20),
        "three nodes at a 3 s pace",
        || match (up(&c).len(), pace(&c)) {
            (3, (Some(3000), Some(18000))) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // Every worker heartbeats at that pace (one that joined before the change hears it on
    // `alive`): over 9 s, each node goes well over 2 s unheard, which at the configured 500 ms
    // it never would.
    let mut longest = std::collections::HashMap::new();
    let until = std::time::Instant::now() + Duration::from_secs(9);
    while std::time::Instant::now() < until {
        for n in c.json(&["nodes"]).as_array().cloned().unwrap_or_default() {
            let (Some(name), Some(ms)) = (n["name"].as_str(), n["last_seen_ms"].as_u64()) else {
                continue;
            };
            let l = longest.entry(name.to_string()).or_insert(0);
            *l = ms.max(*l);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for n in names {
        let l = longest.get(n).copied().unwrap_or(0);
        assert!(
            l > 2000,
            "{n} was never unheard for more than {l} ms: {longest:?}"
        );
    }
    // Three times the configured dead timeout at the slower pace: nobody was lost.
    let now_up = up(&c);
    assert_eq!(
        now_up.len(),
        3,
        "a node on the slower pace was called dead: {now_up:?}"
    );
    c.worker("p3").1.kill9();
    eventually(Duration::from_secs(45), "p3 found dead", || {
        let u = up(&c);
        if u.len() == 2 && !u.contains(&"p3".to_string()) {
            Ok(())
        } else {
            Err(format!("{u:?}"))
        }
    });
    eventually(
        Duration::from_secs(10),
        "the pace back to 2 s",
        || match pace(&c) {
            (Some(2000), Some(12000)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
}

#[test]
fn a_node_that_is_gone_can_be_removed() {
    let mut c = TestCluster::start();
    c.add_worker("keep", 35800);
    c.add_worker("gone", 35900);
    let state = |c: &TestCluster| {
        c.json(&["nodes"])
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == "gone").cloned())
            .map(|n| n["state"].as_str().unwrap_or("").to_string())
    };
    eventually(Duration::from_secs(15), "gone is up", || match state(&c) {
        Some(s) if s == "up" => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let o = c.cli(&["nodes:remove", "gone"]);
    assert!(!o.status.success(), "a live node was removed");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("is up"), "{err}");
    // (The node is up from its registration; it saves its token a moment after.)
    let path = c.dir.path().join("worker-gone/node-token.json");
    eventually(Duration::from_secs(15), "gone's saved token", || {
        std::fs::metadata(&path)
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    c.worker("gone").1.kill9();
    eventually(Duration::from_secs(15), "gone is dead", || {
        match state(&c) {
            Some(s) if s == "dead" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    c.cli_ok(&["nodes:remove", "gone"]).unwrap();
    let n = c.json(&["nodes"]);
    assert!(!n.to_string().contains("\"gone\""), "{n}");
    // Its token no longer works.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let token = saved["token"].as_str().unwrap();
    let (st, _, _) = http_request(
        &c.master.api,
        &format!("GET /v1/nodes/gone/list HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(st, 401);
}
