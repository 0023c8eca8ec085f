//! What an operator hits in the first hour (issue: "Operator CLI"), each a regression test:
//! settings checked before they act and rolled out like a deploy, impossible sizes refused and
//! pending instances explained, another app's host refused as a domain, a config change that
//! changes nothing making no release.

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
