//! The README's 5-minute tour, end to end through the CLI binary against
//! `zeroku up`.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Up {
    daemon: Daemon,
    data: std::path::PathBuf,
    url: String,
    token: String,
}

impl Drop for Up {
    fn drop(&mut self) {
        self.daemon.kill9();
        kill_apps(&self.data.join("worker"));
    }
}

impl Up {
    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bin())
            .args(args)
            .env("ZEROKU_URL", &self.url)
            .env("ZEROKU_TOKEN", &self.token)
            .output()
            .expect("run zeroku")
    }
    fn ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "zeroku {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).expect("json")
    }
}

#[test]
fn tour() {
    let tmp = tempdir();
    let data = tmp.path().join("zk");
    let cfg = tmp.path().join("zeroku.toml");
    std::fs::write(
        &cfg,
        TEST_CONFIG.replace(
            "[master]\n",
            &format!("[master]\nhandler_port_min = {}\n", handler_port_base()),
        ),
    )
    .unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let (p1, p2) = (free_port(), free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let daemon = Daemon::spawn(
        &[
            "up",
            "--data",
            data.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--api",
            &api,
            "--pub",
            &format!("tcp://127.0.0.1:{p1}"),
            "--pull",
            &format!("tcp://127.0.0.1:{p2}"),
            "--http",
            &http,
            "--admin",
            "",
        ],
        tmp.path().join("up.log"),
    );
    let env = eventually(Duration::from_secs(20), "cli.env", || {
        std::fs::read_to_string(data.join("cli.env")).map_err(|e| e.to_string())
    });
    let get = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}=")))
            .unwrap()
            .to_string()
    };
    let up = Up {
        daemon,
        data: data.clone(),
        url: get("ZEROKU_URL"),
        token: get("ZEROKU_TOKEN"),
    };
    assert_eq!(up.url, format!("http://{api}"));
    eventually(Duration::from_secs(20), "the local node", || {
        let n = up.json(&["nodes"]);
        if n[0]["state"] == "up" && n[0]["last_seen_ms"].is_number() {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });

    up.ok(&["apps:create", "hello"]);
    let clock = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/clock");
    let out = up.ok(&["releases:create", "-a", "hello", clock]);
    assert!(out.contains("v1"), "{out}");
    up.ok(&["ps:scale", "-a", "hello", "clock=3"]);
    let ps = eventually(Duration::from_secs(30), "3 clocks up", || {
        let ps = up.json(&["ps", "-a", "hello"]);
        let a = ps.as_array().cloned().unwrap_or_default();
        if a.len() == 3 && a.iter().all(|p| p["state"] == "up" && p["pid"].is_number()) {
            Ok(a)
        } else {
            Err(ps.to_string())
        }
    });
    for p in &ps {
        for key in ["id", "type", "node", "state", "pid", "restarts", "release"] {
            assert!(!p[key].is_null(), "ps lacks {key}: {p}");
        }
        assert_eq!(p["release"], 1);
    }
    let table = up.ok(&["ps", "-a", "hello"]);
    assert!(
        table.contains("hello.clock.3") && table.contains("up"),
        "{table}"
    );

    // logs: lines from every instance, each with a time and instance id.
    let logs = eventually(Duration::from_secs(10), "logs from 3 instances", || {
        let l = up.ok(&["logs", "-a", "hello"]);
        let all = (1..=3).all(|i| l.contains(&format!("app[hello.clock.{i}] v1: tick")));
        if all {
            Ok(l)
        } else {
            Err(l)
        }
    });
    let line = logs.lines().find(|l| l.contains("tick")).unwrap();
    assert!(
        line.starts_with("20") && line.contains("Z app[hello.clock."),
        "{line}"
    );
    assert!(logs.contains("hello from hello.clock."), "{logs}");

    // logs --tail follows new lines.
    let mut tail = Command::new(bin())
        .args(["logs", "-a", "hello", "--tail", "-n", "0"])
        .env("ZEROKU_URL", &up.url)
        .env("ZEROKU_TOKEN", &up.token)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(tail.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    assert!(first.contains("hello.clock."), "{first}");
    let _ = tail.kill();
    let _ = tail.wait();

    // config:set makes v2; instances are replaced and see the new env.
    let out = up.ok(&["config:set", "-a", "hello", "GREETING=hi"]);
    assert!(out.contains("v2"), "{out}");
    eventually(Duration::from_secs(30), "v2 everywhere", || {
        let ps = up.json(&["ps", "-a", "hello"]);
        let a = ps.as_array().cloned().unwrap_or_default();
        if a.len() == 3 && a.iter().all(|p| p["state"] == "up" && p["release"] == 2) {
            Ok(())
        } else {
            Err(ps.to_string())
        }
    });
    eventually(Duration::from_secs(10), "new greeting in logs", || {
        let l = up.ok(&["logs", "-a", "hello"]);
        if l.contains("v2: tick") && l.contains("hi from hello.clock.") {
            Ok(())
        } else {
            Err(l)
        }
    });

    // rollback to v1: v3 with v1's slug and config.
    let out = up.ok(&["rollback", "-a", "hello", "v1"]);
    assert!(out.contains("v3"), "{out}");
    let rel = up.json(&["releases", "-a", "hello"]);
    let rel = rel.as_array().unwrap();
    assert_eq!(rel.len(), 3);
    assert_eq!(rel[2]["slug_sha256"], rel[0]["slug_sha256"]);
    assert_eq!(rel[2]["description"], "Rollback to v1");
    eventually(Duration::from_secs(30), "v3 everywhere", || {
        let ps = up.json(&["ps", "-a", "hello"]);
        let a = ps.as_array().cloned().unwrap_or_default();
        if a.len() == 3 && a.iter().all(|p| p["state"] == "up" && p["release"] == 3) {
            Ok(())
        } else {
            Err(ps.to_string())
        }
    });
    assert!(up
        .json(&["config", "-a", "hello"])
        .get("GREETING")
        .is_none());

    // The other read commands, as tables and as JSON.
    let releases = up.ok(&["releases", "-a", "hello"]);
    assert!(releases.contains("Rollback to v1"), "{releases}");
    let nodes = up.ok(&["nodes"]);
    assert!(nodes.contains("local") && nodes.contains("up"), "{nodes}");
    assert!(up.ok(&["apps"]).contains("hello"));
    let info = up.json(&["apps:info", "-a", "hello"]);
    assert_eq!(info["release"]["version"], 3);
    assert_eq!(info["instances"], 3);

    // HTTP apps through the embedded frontend, from the shipped examples.
    let ex = |name: &str| format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    up.ok(&["apps:create", "chat"]);
    up.ok(&["releases:create", "-a", "chat", &ex("python-handler")]);
    up.ok(&["ps:scale", "-a", "chat", "handler=2"]);
    let body = eventually(Duration::from_secs(30), "the python handler", || {
        let r = http_get(&http, "chat.localhost", "/hi")?;
        if r.0 == 200 {
            Ok(r.2)
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(body.contains("chat.handler."), "{body}");
    // The ws-echo example with its own client, as its README says to run it: the client
    // reaches `echo.localhost` at 127.0.0.1 with the name in the Host header.
    up.ok(&["apps:create", "echo"]);
    up.ok(&["releases:create", "-a", "echo", &ex("ws-echo")]);
    up.ok(&["ps:scale", "-a", "echo", "handler=1"]);
    let url = format!(
        "ws://echo.localhost:{}/echo",
        http.rsplit(':').next().unwrap()
    );
    let client = ex("ws-echo/client.py");
    eventually(Duration::from_secs(30), "the ws-echo client", || {
        let o = Command::new("python3")
            .args([client.as_str(), url.as_str(), "hello", "again"])
            .output()
            .map_err(|e| e.to_string())?;
        let out = String::from_utf8_lossy(&o.stdout);
        if o.status.success() && out == "hello\nagain\n" {
            Ok(())
        } else {
            Err(format!("{out} {}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    up.ok(&["apps:create", "site"]);
    up.ok(&["releases:create", "-a", "site", &ex("python-web")]);
    let body = eventually(Duration::from_secs(30), "the python web app", || {
        let r = http_get(&http, "site.localhost", "/")?;
        if r.0 == 200 {
            Ok(r.2)
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert!(body.contains("site.web.1"), "{body}");
    up.ok(&["domains:add", "-a", "site", "www.example.test"]);
    up.ok(&["routes:add", "-a", "site", "/static", "dir:public"]);
    eventually(
        Duration::from_secs(15),
        "the custom domain and the static dir",
        || {
            let r = http_get(&http, "www.example.test", "/static/")?;
            if r.0 == 200 && r.2.contains("Static files") {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        },
    );

    // Errors a user can act on.
    let bad = Command::new(bin())
        .args(["apps"])
        .env("ZEROKU_URL", &up.url)
        .env("ZEROKU_TOKEN", "wrong")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(err.contains("401") && err.contains("ZEROKU_TOKEN"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let o = up.cli(&["ps", "-a", "nope"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("no app named \"nope\"") && err.contains("404"),
        "{err}"
    );

    // ctrl-c/SIGTERM stops zeroku up cleanly; the apps keep running.
    let pids: Vec<u64> = up
        .json(&["ps", "-a", "hello"])
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    let mut up = up;
    let status = up.daemon.terminate().expect("exit status");
    assert!(
        status.success(),
        "zeroku up exited with {status}: {}",
        std::fs::read_to_string(tmp.path().join("up.log")).unwrap_or_default()
    );
    for pid in pids {
        assert!(alive(pid as u32), "app process {pid} died with zeroku up");
    }
}
