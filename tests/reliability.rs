//! What a fault-injection run found (issue: "Nothing runs twice, nothing is lost"), each a
//! regression test: sources a master killed mid-upload leaves are gone when it starts again;
//! config vars and commands no process could be started with are refused with the limit named;
//! no CLI table breaks on what the API returns; a deploy the master was waiting on when it was
//! killed is resumed (and rolled back) when it starts again; an app's log outlives the master.

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

#[test]
fn a_source_cut_off_by_a_master_kill_is_removed_when_it_starts_again() {
    let mut c = TestCluster::start();
    c.cli_ok(&["apps:create", "cut"]).unwrap();
    let addr = c.master.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/apps/cut/builds HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        c.master.token,
        50 << 20
    )
    .unwrap();
    s.write_all(&vec![0u8; 4 << 20]).unwrap();
    let incoming = c.master.data.join("builds/incoming");
    eventually(Duration::from_secs(10), "the upload on disk", || {
        let n = std::fs::read_dir(&incoming).map_or(0, |d| d.count());
        if n > 0 {
            Ok(())
        } else {
            Err("nothing yet".into())
        }
    });
    c.restart_master();
    drop(s);
    let left: Vec<_> = std::fs::read_dir(&incoming).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn what_no_process_can_start_with_is_refused_with_the_limit_named() {
    let c = TestCluster::start();
    c.cli_ok(&["apps:create", "lim"]).unwrap();
    let patch = |body: &serde_json::Value| -> (u16, String) {
        let addr = c.master.url.trim_start_matches("http://");
        let text = body.to_string();
        let raw = format!(
            "PATCH /v1/apps/lim/config HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            c.master.token,
            text.len()
        );
        let (st, _, body) = http_request(addr, &raw).unwrap();
        (st, body)
    };
    let (st, body) = patch(&serde_json::json!({"A": "x\u{0}y"}));
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("NUL"), "{body}");
    let (st, body) = patch(&serde_json::json!({"BIG": "v".repeat(900 << 10)}));
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("MAX_ARG_STRLEN"), "{body}");
    let many: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| (format!("K{i}"), serde_json::json!("v")))
        .collect();
    let (st, body) = patch(&serde_json::Value::Object(many));
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("at most 1000"), "{body}");
    assert!(c
        .json(&["releases", "-a", "lim"])
        .as_array()
        .unwrap()
        .is_empty());

    // A Procfile command with a NUL byte, or of 1 MB: refused before any release.
    let dir = c.dir.path().join("lim-src");
    write_tree(&dir, &[("Procfile", "web: echo a\u{0}b\n")]);
    let o = c.cli(&["releases:create", "-a", "lim", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("NUL"), "{err}");
    write_tree(
        &dir,
        &[("Procfile", &format!("web: {}\n", "x".repeat(1 << 20)))],
    );
    let o = c.cli(&["releases:create", "-a", "lim", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("MAX_ARG_STRLEN") && err.len() < 2000,
        "{err}"
    );
    assert!(c
        .json(&["releases", "-a", "lim"])
        .as_array()
        .unwrap()
        .is_empty());

    // 1,000 long names in one change: the release line names ten, and `releases` prints.
    write_tree(&dir, &[("Procfile", "clock: sleep 1000\n")]);
    c.cli_ok(&["releases:create", "-a", "lim", dir.to_str().unwrap()])
        .unwrap();
    let keys: serde_json::Map<String, serde_json::Value> = (0..1000)
        .map(|i| {
            (
                format!("A_RATHER_LONG_CONFIG_VARIABLE_NAME_{i:04}"),
                serde_json::json!("v"),
            )
        })
        .collect();
    let (st, body) = patch(&serde_json::Value::Object(keys));
    assert_eq!(st, 200, "{body}");
    let v = c.json(&["releases", "-a", "lim"]);
    let desc = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == 2)
        .unwrap()["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(desc.ends_with("_0009 and 990 more"), "{desc}");
    let out = c.cli_ok(&["releases", "-a", "lim"]).unwrap();
    assert!(out.lines().all(|l| l.chars().count() < 400), "{out}");
}

/// Item 2: a deploy waiting for its release to come up when the master is killed is resumed when
/// the master starts again, and rolled back as it would have been: the release that never came
/// up does not stay current.
#[test]
fn a_deploy_cut_off_by_a_master_kill_is_resumed_and_rolled_back() {
    let mut c = TestCluster::start_with(
        &TEST_CONFIG.replace("[master]\n", "[master]\ndeploy_timeout_secs = 6\n"),
    );
    c.add_worker("r2", 36900);
    let v1 = c.dir.path().join("src-resume-v1");
    write_tree(
        &v1,
        &[("Procfile", "web: exec python3 -m http.server $PORT\n")],
    );
    c.cli_ok(&["apps:create", "resume"]).unwrap();
    c.cli_ok(&["deploy", "-a", "resume", v1.to_str().unwrap()])
        .unwrap();
    c.wait_up("resume", 1, Duration::from_secs(30));
    // v2 never comes up (it listens nowhere, and does not exit): its deploy waits.
    let src = c.dir.path().join("src-resume-v2");
    write_tree(&src, &[("Procfile", "web: exec sleep 100000\n")]);
    let mut deploy = std::process::Command::new(bin())
        .args(["deploy", "-a", "resume", src.to_str().unwrap()])
        .env("ZEROKU_URL", &c.master.url)
        .env("ZEROKU_TOKEN", &c.master.token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // (`releases --json` lists the oldest first)
    let newest = |rel: &serde_json::Value| rel.as_array().and_then(|a| a.last()).cloned();
    eventually(Duration::from_secs(30), "v2 released, coming up", || {
        let rel = c.json(&["releases", "-a", "resume"]);
        if newest(&rel).is_some_and(|r| r["version"] == 2) {
            Ok(())
        } else {
            Err(rel.to_string())
        }
    });
    // Item 1: `ps` shows every process the worker runs: v1's, which serves until v2 is up, too.
    eventually(Duration::from_secs(20), "both processes in ps", || {
        let ps = c.ps("resume");
        let old = ps
            .iter()
            .any(|p| p["replaced"] == true && p["release"] == 1 && p["pid"].is_u64());
        let new = ps
            .iter()
            .any(|p| p["replaced"].is_null() && p["release"] == 2);
        if ps.len() == 2 && old && new {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    let table = c.cli_ok(&["ps", "-a", "resume"]).unwrap();
    assert!(table.contains("up, replaced"), "{table}");
    c.restart_master();
    let _ = deploy.kill();
    let _ = deploy.wait();
    // The master waits out the deploy's time and rolls back: v3 is v1 again, and serves.
    let rel = eventually(Duration::from_secs(30), "the rollback", || {
        let rel = c.json(&["releases", "-a", "resume"]);
        match newest(&rel) {
            Some(r) if r["description"] == "Rollback to v1" => Ok(r),
            _ => Err(rel.to_string()),
        }
    });
    assert_eq!(rel["version"], 3, "{rel}");
    eventually(Duration::from_secs(30), "v3 up", || {
        let ps = c.ps("resume");
        let up = |p: &serde_json::Value| p["state"] == "up" && p["release"] == 3;
        if ps.len() == 1 && ps.iter().all(up) {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    let logs = c.cli_ok(&["logs", "-a", "resume", "-n", "1000"]).unwrap();
    assert!(logs.contains("waiting for it again"), "{logs}");
    assert!(logs.contains("rolled back to v1 as v3"), "{logs}");
}

/// Item 4: an app's log outlives a master restart (kept on disk, in a directory only the master
/// may enter).
#[test]
fn an_apps_log_outlives_a_master_restart() {
    let mut c = TestCluster::start();
    c.add_worker("r3", 37100);
    c.deploy(
        "diary",
        &[(
            "Procfile",
            "worker: echo written-before-the-restart; exec sleep 100000\n",
        )],
    );
    c.cli_ok(&["ps:scale", "-a", "diary", "worker=1"]).unwrap();
    eventually(Duration::from_secs(30), "the line in the log", || {
        let logs = c.cli_ok(&["logs", "-a", "diary", "-n", "1000"])?;
        if logs.contains("written-before-the-restart") {
            Ok(())
        } else {
            Err(logs)
        }
    });
    c.restart_master();
    let logs = c.cli_ok(&["logs", "-a", "diary", "-n", "1000"]).unwrap();
    assert!(logs.contains("written-before-the-restart"), "{logs}");
    assert!(logs.contains("Starting process"), "{logs}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(c.master.data.join("logs"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

/// Receives log drains: a syslog server on TCP (what it gets, raw, in `syslog`) and an HTTPS
/// endpoint with a certificate from a test CA (each POST's content type, message count and
/// drain token, then its body, in `https`). Writes its two ports to `ports`.
const DRAIN_RECEIVER_PY: &str = r#"
import http.server, socket, ssl, sys, threading
out = sys.argv[1]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen()
def syslog():
    while True:
        c, _ = srv.accept()
        with open(out + "/syslog", "ab") as f:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                f.write(b)
                f.flush()
threading.Thread(target=syslog, daemon=True).start()
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        h = self.headers
        with open(out + "/https", "ab") as f:
            f.write(("%s %s %s\n" % (h["Content-Type"], h["Logplex-Msg-Count"], h["Logplex-Drain-Token"])).encode() + body + b"\n")
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(out + "/leaf.pem", out + "/leaf.key")
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
with open(out + "/ports.tmp", "w") as f:
    f.write("%d %d" % (srv.getsockname()[1], httpd.server_address[1]))
import os
os.rename(out + "/ports.tmp", out + "/ports")
httpd.serve_forever()
"#;

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Item 4: an app's log goes to the drains its users add — a syslog server over TCP (RFC 5424,
/// octet-counted) and an HTTPS endpoint (Heroku's logplex POSTs, the server's certificate checked
/// against the CA bundle the master is given) — and stops going when a drain is removed.
#[test]
fn an_apps_log_goes_to_its_drains() {
    let mut c = TestCluster::start();
    let dir = c.dir.path().join("drains");
    std::fs::create_dir_all(&dir).unwrap();
    let sh = |script: &str| {
        let o = std::process::Command::new("sh")
            .args(["-ec", script])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 1 -subj /CN=zeroku-test-ca 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout leaf.key -out leaf.csr -subj /CN=localhost 2>/dev/null
        printf 'subjectAltName=DNS:localhost\n' > san.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 1 -extfile san.ext 2>/dev/null");
    std::fs::write(dir.join("receiver.py"), DRAIN_RECEIVER_PY).unwrap();
    let _receiver = KillOnDrop(
        std::process::Command::new("python3")
            .arg(dir.join("receiver.py"))
            .arg(&dir)
            .spawn()
            .unwrap(),
    );
    let ports = eventually(Duration::from_secs(10), "the receiver's ports", || {
        std::fs::read_to_string(dir.join("ports")).map_err(|e| e.to_string())
    });
    let (syslog_port, https_port) = ports.split_once(' ').unwrap();
    // The master trusts the test CA (as OpenSSL does, from SSL_CERT_FILE).
    c.master.daemon.kill9();
    let argv: Vec<&str> = c.master.args.iter().map(String::as_str).collect();
    let ca = dir.join("ca.pem");
    c.master.daemon = Daemon::spawn_with_env(
        &argv,
        c.dir.path().join("master.log"),
        &[("SSL_CERT_FILE", ca.to_str().unwrap())],
    );
    eventually(Duration::from_secs(20), "the master again", || {
        c.cli_ok(&["apps"]).map(|_| ())
    });
    c.add_worker("r4", 37300);
    c.deploy(
        "drained",
        &[(
            "Procfile",
            "worker: echo drained-line-1; echo drained-line-2 >&2; exec sleep 100000\n",
        )],
    );
    let err = c
        .cli_ok(&["drains:add", "-a", "drained", "ftp://example.com/"])
        .unwrap_err();
    assert!(err.contains("syslog+tcp://HOST:PORT"), "{err}");
    let syslog = format!("syslog+tcp://127.0.0.1:{syslog_port}");
    let https = format!("https://localhost:{https_port}/logs");
    for url in [&syslog, &https] {
        c.cli_ok(&["drains:add", "-a", "drained", url]).unwrap();
    }
    let list = c.json(&["drains", "-a", "drained"]);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    c.cli_ok(&["ps:scale", "-a", "drained", "worker=1"])
        .unwrap();
    let got = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    eventually(Duration::from_secs(30), "both lines at both drains", || {
        let (s, h) = (got("syslog"), got("https"));
        let both = |t: &str| t.contains("drained-line-1") && t.contains("drained-line-2");
        if both(&s) && both(&h) {
            Ok(())
        } else {
            Err(format!("syslog: {s:?}\nhttps: {h:?}"))
        }
    });
    // RFC 5424, octet-counted: `LEN <PRI>1 TIME HOST APP PROCID - - MSG`; zeroku's own lines
    // as app-name `zeroku`.
    let s = got("syslog");
    let mut messages = Vec::new();
    let mut rest = s.as_bytes();
    while !rest.is_empty() {
        let (len, after) = std::str::from_utf8(rest).unwrap().split_once(' ').unwrap();
        let len: usize = len
            .parse()
            .unwrap_or_else(|_| panic!("a frame length in {s}"));
        messages.push(String::from_utf8_lossy(&after.as_bytes()[..len]).into_owned());
        rest = &after.as_bytes()[len..];
    }
    assert!(
        messages.iter().all(|m| m.starts_with("<190>1 20")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.ends_with(" drained app worker.1 - - drained-line-1")),
        "{messages:?}"
    );
    assert!(
        s.contains(" drained zeroku worker.1 - - Starting process"),
        "{s}"
    );
    let h = got("https");
    let token = list[0]["token"].as_str().unwrap_or("");
    assert!(h.starts_with("application/logplex-1 "), "{h}");
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|d| h.contains(d["token"].as_str().unwrap_or("?"))),
        "{token} {h}"
    );
    // Removed: gone from the list.
    c.cli_ok(&["drains:remove", "-a", "drained", &syslog])
        .unwrap();
    let list = c.json(&["drains", "-a", "drained"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

/// A network namespace joined to this one by a veth pair, deleted when dropped.
struct Netns {
    name: String,
    host_if: String,
    host_ip: String,
}

impl Netns {
    fn new() -> Netns {
        let n = std::process::id() % 250 + 1;
        let ns = Netns {
            name: format!("zkpart{n}"),
            host_if: format!("zkh{n}"),
            host_ip: format!("10.251.{n}.1"),
        };
        let (name, host_if, ns_if) = (&ns.name, &ns.host_if, format!("zkn{n}"));
        let script = format!(
            "ip netns del {name} 2>/dev/null || true
             ip link del {host_if} 2>/dev/null || true
             ip netns add {name}
             ip link add {host_if} type veth peer name {ns_if}
             ip link set {ns_if} netns {name}
             ip addr add {}/30 dev {host_if}
             ip link set {host_if} up
             ip netns exec {name} ip addr add 10.251.{n}.2/30 dev {ns_if}
             ip netns exec {name} ip link set {ns_if} up
             ip netns exec {name} ip link set lo up",
            ns.host_ip
        );
        let o = std::process::Command::new("sh")
            .args(["-ec", &script])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "cannot make a network namespace (this test runs as root): {}",
            String::from_utf8_lossy(&o.stderr)
        );
        ns
    }

    /// Cuts (`false`) or restores (`true`) the link.
    fn link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        let ok = std::process::Command::new("ip")
            .args(["link", "set", &self.host_if, state])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link set {} {state}", self.host_if);
    }

    /// The namespace's identity, as `/proc/PID/ns/net` shows it.
    fn id(&self) -> String {
        let o = std::process::Command::new("ip")
            .args(["netns", "exec", &self.name, "readlink", "/proc/self/ns/net"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

/// The network namespace of each running process whose command line has `marker`.
fn marked(marker: &str) -> Vec<(u32, String)> {
    pids_with(marker)
        .into_iter()
        .filter_map(|pid| {
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            Some((pid, ns.display().to_string()))
        })
        .collect()
}

/// Item 5: with the app setting `stop_when_lost_ms`, a worker cut off from the master by a network
/// partition (the worker in its own network namespace, the link taken down) stops the app's
/// instances once that long has passed, while the master has moved them to another node; when
/// the link is back, nothing starts again behind the partition.
#[test]
fn a_partitioned_worker_stops_what_the_master_moved() {
    let marker = format!("partition-marker-{}", std::process::id());
    let net = Netns::new();
    let mut c = TestCluster::start_reachable_at(TEST_CONFIG, &net.host_ip);
    // The worker behind the partition.
    let data = c.dir.path().join("worker-np");
    let _apps = KillApps(data.clone());
    let join = c.cli_ok(&["nodes:join-token"]).unwrap();
    let cfg = c.config_path();
    let mut behind = KillOnDrop(
        std::process::Command::new("ip")
            .args(["netns", "exec", &net.name, bin(), "worker", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .args(["--node", "np", "--master", &c.master.url])
            .args(["--port-min", "37700", "--port-max", "37799"])
            .env("ZEROKU_JOIN_TOKEN", join.trim())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(c.dir.path().join("worker-np.log")).unwrap())
            .env("RUST_LOG", "info,zeroku_worker=debug")
            .spawn()
            .unwrap(),
    );
    let src = c.dir.path().join("src-part");
    let cmd = format!("worker: exec python3 -c 'import time; time.sleep(100000)' {marker}\n");
    write_tree(&src, &[("Procfile", &cmd)]);
    c.cli_ok(&["apps:create", "part"]).unwrap();
    let err = c
        .cli_ok(&["apps:settings", "-a", "part", "stop_when_lost_ms=10"])
        .unwrap_err();
    assert!(err.contains("at least 3000"), "{err}");
    c.cli_ok(&["apps:settings", "-a", "part", "stop_when_lost_ms=3000"])
        .unwrap();
    c.cli_ok(&["releases:create", "-a", "part", src.to_str().unwrap()])
        .unwrap();
    c.cli_ok(&["ps:scale", "-a", "part", "worker=2"]).unwrap();
    let inside = net.id();
    eventually(
        Duration::from_secs(30),
        "both instances behind the partition",
        || {
            let m = marked(&marker);
            let ps = c.ps("part");
            let up = ps
                .iter()
                .filter(|p| p["state"] == "up" && p["node"] == "np")
                .count();
            if up == 2 && m.len() == 2 && m.iter().all(|(_, ns)| *ns == inside) {
                Ok(())
            } else {
                Err(format!("{ps:?} {m:?}"))
            }
        },
    );
    c.add_worker("hp", 37800);
    net.link(false);
    // The master moves the instances (dead timeout 3 s); the worker behind the partition stops
    // its own (3 s without a word): two processes, both outside.
    eventually(
        Duration::from_secs(40),
        "the instances moved, none left behind",
        || {
            let m = marked(&marker);
            let ps = c.ps("part");
            let moved = ps
                .iter()
                .filter(|p| p["state"] == "up" && p["node"] == "hp")
                .count();
            if moved == 2 && m.len() == 2 && m.iter().all(|(_, ns)| *ns != inside) {
                Ok(())
            } else {
                Err(format!("{ps:?} {m:?}"))
            }
        },
    );
    // The link back: the worker hears its (empty) list; nothing starts behind it again.
    net.link(true);
    eventually(Duration::from_secs(30), "the worker back", || {
        let nodes = c.json(&["nodes"]);
        let np = nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == "np"))
            .cloned();
        match np {
            Some(n) if n["state"] == "up" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let m = marked(&marker);
    let who = |pid: u32| {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string();
        let cmd = |p: &str| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default()
        };
        format!(
            "{pid} [{}] parent {ppid} [{}]",
            cmd(&pid.to_string()),
            cmd(&ppid)
        )
    };
    let whos: Vec<String> = m.iter().map(|(p, _)| who(*p)).collect();
    assert!(
        m.len() == 2 && m.iter().all(|(_, ns)| *ns != inside),
        "{m:?} {whos:?} {:?}\nthe master said:\n{}\nthe worker behind the partition said:\n{}",
        c.ps("part"),
        c.master
            .daemon
            .log_text()
            .lines()
            .filter(|l| !l.contains("fetch"))
            .collect::<Vec<_>>()
            .join("\n"),
        std::fs::read_to_string(c.dir.path().join("worker-np.log")).unwrap_or_default()
    );
    let _ = behind.0.kill();
}

/// Kills the app processes a worker started (from its records), when dropped.
struct KillApps(std::path::PathBuf);

impl Drop for KillApps {
    fn drop(&mut self) {
        kill_apps(&self.0);
    }
}
