//! The tenant walls, attacked the way an app would: a script deployed in an ordinary app
//! (`evil`), run with `zeroku run` (its own uid, its own environment), tries every attack of
//! the tenant-walls issue against another app (`bank`, a handler app with a secret config var)
//! and prints one JSON line per attempt. Every attempt must be refused; the test also checks
//! from outside that nothing it tried had an effect (bank's requests all answered by bank, no
//! forged log line, refusals counted by the master).

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const BANK_HANDLER: &str = r#"
import json, os, zmq
ctx = zmq.Context()
pull, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
for ep in os.environ["M2_SEND_SPEC"].split():
    pull.connect(ep)
for ep in os.environ["M2_RECV_SPEC"].split():
    pub.connect(ep)
while True:
    msg = pull.recv()
    sender, conn_id, path, rest = msg.split(b" ", 3)
    hlen, rest = rest.split(b":", 1)
    headers = json.loads(rest[: int(hlen)])
    if headers.get("METHOD") == "JSON":
        continue
    if "x-mongrel2-upload-start" in headers and "x-mongrel2-upload-done" not in headers:
        continue
    out = b"bank answered " + path
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out)
    pub.send(sender + b" " + str(len(conn_id)).encode() + b":" + conn_id + b", " + resp)
"#;

/// The attacker. argv[1] is hex of a JSON object saying what to attack.
const ATTACK_PY: &str = r#"
import glob, hashlib, json, os, re, socket, sys, time, urllib.request, zmq
cfg = json.loads(bytes.fromhex(sys.argv[1]))
ctx = zmq.Context()
def report(name, blocked, detail=""):
    print(json.dumps({"attack": name, "blocked": bool(blocked), "detail": str(detail)[:300]}), flush=True)

def sock(kind, ep, curve=False):
    s = ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, 300)
    if curve:
        pub_k, sec_k = zmq.curve_keypair()
        s.curve_publickey, s.curve_secretkey = pub_k, sec_k
        s.curve_serverkey = zmq.curve_keypair()[0]
    s.connect(ep)
    return s

def drain(socks, seconds):
    got = []
    end = time.time() + seconds
    while time.time() < end:
        for s in socks:
            try:
                got.append(s.recv(zmq.NOBLOCK))
            except zmq.Again:
                pass
        time.sleep(0.02)
    return got

# 1. Subscribe to the master's PUB: lists with every app's config vars.
subs = []
for curve in (False, True):
    s = sock(zmq.SUB, cfg["pub"], curve)
    s.setsockopt(zmq.SUBSCRIBE, b"")
    subs.append(s)
got = drain(subs, 3)
report("rogue SUB on the master's PUB", not got and not any(cfg["secret"].encode() in m for m in got), "%d messages" % len(got))

# 2. Forged heartbeats and log lines on the master's PULL.
for curve in (False, True):
    p = sock(zmq.PUSH, cfg["pull"], curve)
    for m in (bytes.fromhex(cfg["forged_heartbeat"]), bytes.fromhex(cfg["forged_logs"])):
        try:
            p.send(m, zmq.NOBLOCK)
        except zmq.Again:
            pass
time.sleep(1)
report("rogue PUSH to the master's PULL", True, "checked by the test: no forged line, refusals counted")

# 3. Take bank's requests and answer on its connections: its handler sockets.
hijack = []
for ep in cfg["handler_tcp_send"]:
    for curve in (False, True):
        hijack.append(sock(zmq.PULL, ep, curve))
ipc_errors = []
for ep in cfg["handler_ipc_send"]:
    try:
        hijack.append(sock(zmq.PULL, ep))
    except zmq.ZMQError as e:
        ipc_errors.append(str(e))
replies = []
for ep in cfg["handler_tcp_recv"] + cfg["handler_ipc_recv"]:
    try:
        replies.append(sock(zmq.PUB, ep))
    except zmq.ZMQError as e:
        ipc_errors.append(str(e))
print(json.dumps({"ready": True}), flush=True)
got = drain(hijack, cfg["hijack_seconds"])
report("handler-port hijack", not got, "%d requests taken; ipc: %s" % (len(got), ipc_errors))

# 4-6. Files: tokens, keys, the master's database, other apps' slugs, builds, uploads.
def readable(path):
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(64)
        return True
    except OSError:
        return False
for name, paths in cfg["files"].items():
    opened = [p for p in paths if readable(p)]
    report(name, not opened, opened)

# 7. Tokens in a daemon's (or the CLI's) command line or environment: any 64-hex word whose
# sha256 is one of the cluster's tokens (the test gives their hashes only).
known = set(cfg["token_hashes"])
leaks = []
for d in glob.glob("/proc/[0-9]*"):
    for what in ("cmdline", "environ"):
        try:
            with open(d + "/" + what, "rb") as f:
                text = f.read()
        except OSError:
            continue
        words = re.findall(rb"[0-9a-f]{64}", text)
        if b"--token\0" in text or any(hashlib.sha256(w).hexdigest() in known for w in words):
            leaks.append(d + "/" + what)
report("tokens in /proc/<pid>/cmdline and environ", not leaks, leaks)

# 8-9. The API with what an attacker could have: a used join token, a leaked node token.
def api(method, path, token, body):
    req = urllib.request.Request(cfg["api"] + path, method=method, data=json.dumps(body).encode(),
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
key = zmq.curve_keypair()[0].decode()
st = api("POST", "/v1/frontends/register", cfg["join_token"],
    {"name": "evil-edge", "handler_host": "127.0.0.1", "bus_key": key})
report("frontend registration with a used join token", st in (401, 403), st)
st1 = api("POST", "/v1/nodes/register", cfg["node_token"],
    {"name": cfg["node"], "capacity_mb": 1, "host": "127.0.0.1", "bus_key": key})
st2 = api("POST", "/v1/nodes/%s/hello" % cfg["node"], cfg["node_token"],
    {"name": cfg["node"], "capacity_mb": 1, "host": "127.0.0.1", "bus_key": key})
report("node token rotating or re-keying its node", st1 == 403 and st2 == 409, (st1, st2))
st = api("GET", "/v1/slugs/" + cfg["foreign_slug"], cfg["node_token"], {})
report("node token downloading a slug its node does not run", st == 403, st)
"#;

fn hexed(v: &Value) -> String {
    v.to_string().bytes().map(|b| format!("{b:02x}")).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(b))
}

fn saved_token(path: std::path::PathBuf) -> String {
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["token"].as_str().unwrap().to_string()
}

#[test]
fn an_app_reaches_nothing_of_another_app() {
    let mut c = TestCluster::start();
    c.add_worker("n1", 34800);
    // One frontend on n1 (handlers there use ipc://), one elsewhere (relayed over TCP).
    let fe = c.add_frontend_with("edge", &[("ZEROKU_FRONTEND_NODE", "n1")]);
    let _fe2 = c.add_frontend_with("edge2", &[("ZEROKU_FRONTEND_HANDLER_BIND", "127.0.0.2")]);
    // Built (a requirement in zeroku.toml: its instances get a file of providers only they may
    // read).
    let bank_src = c.dir.path().join("bank-src");
    write_tree(
        &bank_src,
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", BANK_HANDLER),
            (
                "zeroku.toml",
                "[requires.ledger]\napp = \"bank\"\nservice = \"ledger\"\non_change = \"none\"\n",
            ),
        ],
    );
    c.cli_ok(&["apps:create", "bank"]).unwrap();
    c.cli_ok(&["deploy", "-a", "bank", bank_src.to_str().unwrap()])
        .unwrap();
    c.cli_ok(&["config:set", "-a", "bank", "SECRET=bank-secret-4242"])
        .unwrap();
    c.cli_ok(&["ps:scale", "-a", "bank", "handler=1"]).unwrap();
    c.wait_up("bank", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "bank.localhost", "/warm", Duration::from_secs(20));
    c.deploy(
        "evil",
        &[
            ("Procfile", "worker: sleep 100000\n"),
            ("attack.py", ATTACK_PY),
        ],
    );
    // An upload in flight to bank while the attack runs.
    let fe_up = fe.clone();
    let upload = std::thread::spawn(move || {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&fe_up).unwrap();
        // (past the 20 KB upload threshold: the body is in a file from here on)
        s.write_all(b"POST /upload HTTP/1.1\r\nHost: bank.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5400\r\n").unwrap();
        s.write_all(&b"secret-upload-00".repeat(0x5400 / 16))
            .unwrap();
        s.write_all(b"\r\n").unwrap();
        std::thread::sleep(Duration::from_secs(25));
        let _ = s.write_all(b"0\r\n\r\n");
    });

    let route = c.app_route("bank").unwrap();
    let (send_port, recv_port) = (
        route["handler"]["send_port"].as_u64().unwrap(),
        route["handler"]["recv_port"].as_u64().unwrap(),
    );
    let (ipc_send, ipc_recv) = c.handler_ipc("edge", "bank");
    let bank_sha = c.json(&["releases", "-a", "bank"])[0]["slug_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let bank_instance = c.ps("bank")[0]["id"].as_str().unwrap().to_string();
    let master = c.master.data.clone();
    let worker = c.dir.path().join("worker-n1");
    let fe_dir = c.dir.path().join("frontend-edge");
    let node_token = saved_token(worker.join("node-token.json"));
    let frontend_token = saved_token(fe_dir.join("frontend-token.json"));
    // A join token that has done its work: a frontend joined with it.
    let used_join = c.cli_ok(&["nodes:join-token"]).unwrap().trim().to_string();
    let key = zeroku_bus::Keys::generate().unwrap().public_z85();
    let reg = json!({"name": "used-fe", "handler_host": "127.0.0.1", "bus_key": key}).to_string();
    let (st, _, body) = http_request(
        &c.master.api,
        &format!(
            "POST /v1/frontends/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {used_join}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reg}",
            reg.len()
        ),
    )
    .unwrap();
    assert_eq!(st, 200, "{body}");
    // What a hostile node would send: a heartbeat saying bank's handler is n1's (with a
    // port of the attacker's), and a log line in bank's name.
    let forged_heartbeat = zeroku_conf::wire::encode(&zeroku_conf::wire::Message::Heartbeat(
        zeroku_conf::Heartbeat {
            node: "n1".into(),
            generation: 1,
            capacity_mb: 1,
            cgroups_unavailable: None,
            instances: vec![],
            runtimes: vec![],
            stacks: vec![],
        },
    ))
    .unwrap();
    let forged_logs = zeroku_conf::wire::encode(&zeroku_conf::wire::Message::Logs(vec![
        zeroku_conf::LogLine {
            app: "bank".into(),
            instance: bank_instance.clone(),
            release: 1,
            ts_ms: 1,
            stream: zeroku_conf::Stream::Out,
            line: "FORGED-LINE".into(),
        },
    ]))
    .unwrap();
    let glob = |dir: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path().display().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let s = |p: std::path::PathBuf| p.display().to_string();
    // bank's requirement files (the test is empty without them).
    let require: Vec<String> = glob(&worker.join("require"))
        .iter()
        .filter(|d| d.contains("/bank."))
        .flat_map(|d| {
            let mut v = glob(std::path::Path::new(d));
            v.push(d.clone());
            v
        })
        .collect();
    assert!(
        require.iter().any(|f| f.ends_with("ledger")),
        "bank's requirement file: {require:?}"
    );
    let token_hashes: Vec<String> = [&c.master.token, &used_join, &node_token, &frontend_token]
        .iter()
        .map(|t| sha256_hex(t.as_bytes()))
        .collect();
    let cfg = json!({
        "pub": c.master_pub(),
        "pull": c.master.pull,
        "api": c.master.url,
        "secret": "bank-secret-4242",
        "forged_heartbeat": hex(&forged_heartbeat),
        "forged_logs": hex(&forged_logs),
        "handler_tcp_send": [format!("tcp://127.0.0.2:{send_port}")],
        "handler_tcp_recv": [format!("tcp://127.0.0.2:{recv_port}")],
        "handler_ipc_send": [ipc_send],
        "handler_ipc_recv": [ipc_recv],
        "hijack_seconds": 10,
        "join_token": used_join,
        "token_hashes": token_hashes,
        "node": "n1",
        "node_token": node_token,
        "foreign_slug": "0".repeat(64),
        "files": {
            "the worker's and frontend's tokens and bus keys": [
                s(worker.join("node-token.json")),
                s(fe_dir.join("frontend-token.json")),
            ],
            "the master's admin token, bus key, git token": [
                s(master.join("cli.env")), s(master.join("bus.key")), s(master.join("ssh/git-token")),
            ],
            "master.db and its WAL": [s(master.join("master.db")), s(master.join("master.db-wal"))],
            "bank's slug (image, unpacked, on the master)": [
                s(worker.join("slugs")),
                s(worker.join("apps")),
                s(worker.join(format!("apps/bank/{bank_sha}/handler.py"))),
                s(master.join(format!("slugs/{bank_sha}.sqfs"))),
                s(master.join("slugs")),
            ],
            "bank's build log, sources and repository": [
                s(master.join("builds/logs")),
                s(master.join("builds/incoming")),
                s(master.join("repos")),
            ],
            "bank's uploads and handler sockets": glob(&fe_dir.join("handlers/bank"))
                .into_iter()
                .chain([s(fe_dir.join("handlers/bank")), s(fe_dir.join("handlers"))])
                .collect::<Vec<_>>(),
            "bank's requirement files": require,
            "bank's logs, records and tmp": [
                s(worker.join("logs")), s(worker.join("procs")), s(worker.join("tmp")),
            ],
        },
    });
    eventually(
        Duration::from_secs(10),
        "an upload file while the attack runs",
        || {
            let files = glob(&fe_dir.join("handlers/bank"));
            if files.iter().any(|p| p.contains("upload.")) {
                Ok(())
            } else {
                Err(format!("{files:?}"))
            }
        },
    );

    // The attack, with bank's clients requesting all along.
    let fe2 = fe.clone();
    let clients = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(6));
        (0..8)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(300));
                http_get(&fe2, "bank.localhost", &format!("/r{i}"))
            })
            .collect::<Vec<_>>()
    });
    let out = c.cli(&[
        "run",
        "-a",
        "evil",
        "--",
        "python3",
        "attack.py",
        &hexed(&cfg),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let results: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("attack").is_some())
        .collect();
    eprintln!(
        "attack results:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(results.len() >= 12, "every attack reported: {text}");
    for r in &results {
        assert_eq!(r["blocked"], true, "not refused: {r}");
    }
    // Bank got every request of its clients, answered by its own handler.
    for r in clients.join().unwrap() {
        let (st, _, body) = r.expect("bank answers");
        assert_eq!(st, 200, "{body}");
        assert!(body.starts_with("bank answered /r"), "{body}");
    }
    // Nothing forged arrived; the master counted the refusals.
    let logs = c.cli_ok(&["logs", "-a", "bank", "-n", "1000"]).unwrap();
    assert!(!logs.contains("FORGED-LINE"), "{logs}");
    let status = c.api_get("/v1/status");
    assert!(status["refused_peers"].as_u64() >= Some(2), "{status}");
    // The node kept its token and key: it still runs bank.
    c.wait_up("bank", 1, Duration::from_secs(10));
    upload.join().unwrap();
}

/// A network namespace with a veth pair to the host: another host, as far as the bus can tell.
struct Netns {
    name: String,
    host_veth: String,
    pub host_ip: String,
}

impl Netns {
    fn create() -> Netns {
        let id = std::process::id() % 200 + 20;
        let (name, host_veth, ns_veth) = (
            format!("zkrogue{id}"),
            format!("zkh{id}"),
            format!("zkn{id}"),
        );
        let host_ip = format!("10.199.{id}.1");
        let ip = |args: &[&str]| {
            let o = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("ip (iproute2)");
            assert!(
                o.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &host_veth])
            .output();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_veth, "type", "veth", "peer", "name", &ns_veth,
        ]);
        ip(&["link", "set", &ns_veth, "netns", &name]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &host_veth]);
        ip(&["link", "set", &host_veth, "up"]);
        let ns_ip = format!("10.199.{id}.2/24");
        ip(&[
            "netns", "exec", &name, "ip", "addr", "add", &ns_ip, "dev", &ns_veth,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_veth, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Netns {
            name,
            host_veth,
            host_ip,
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .output();
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

const ROGUE_PY: &str = r#"
import json, sys, time, zmq
pub_ep, pull_ep, forged = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
ctx = zmq.Context()
socks = []
for curve in (False, True):
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    if curve:
        s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
        s.curve_serverkey = zmq.curve_keypair()[0]
    s.setsockopt(zmq.SUBSCRIBE, b"")
    s.connect(pub_ep)
    socks.append(s)
    p = ctx.socket(zmq.PUSH)
    p.setsockopt(zmq.LINGER, 0)
    if curve:
        p.curve_publickey, p.curve_secretkey = zmq.curve_keypair()
        p.curve_serverkey = zmq.curve_keypair()[0]
    p.connect(pull_ep)
    try:
        p.send(forged, zmq.NOBLOCK)
    except zmq.Again:
        pass
got = 0
end = time.time() + 4
while time.time() < end:
    for s in socks:
        try:
            s.recv(zmq.NOBLOCK)
            got += 1
        except zmq.Again:
            pass
    time.sleep(0.02)
print(json.dumps({"received": got}), flush=True)
"#;

#[test]
fn a_host_off_the_cluster_gets_nothing_from_the_bus() {
    let ns = Netns::create();
    let mut c = TestCluster::start_on(TEST_CONFIG, "0.0.0.0");
    c.add_worker("h1", 35000);
    c.deploy("app", &[("Procfile", "clock: sleep 100000\n")]);
    c.cli_ok(&["ps:scale", "-a", "app", "clock=1"]).unwrap();
    c.wait_up("app", 1, Duration::from_secs(30));
    let port = |ep: &str| ep.rsplit(':').next().unwrap().to_string();
    let pub_ep = format!("tcp://{}:{}", ns.host_ip, port(&c.master_pub()));
    let pull_ep = format!("tcp://{}:{}", ns.host_ip, port(&c.master.pull));
    let forged = zeroku_conf::wire::encode(&zeroku_conf::wire::Message::Logs(vec![
        zeroku_conf::LogLine {
            app: "app".into(),
            instance: "app.clock.1".into(),
            release: 1,
            ts_ms: 1,
            stream: zeroku_conf::Stream::Out,
            line: "FORGED-FROM-ANOTHER-HOST".into(),
        },
    ]))
    .unwrap();
    let before = c.api_get("/v1/status")["refused_peers"]
        .as_u64()
        .unwrap_or(0);
    // The bus is reachable from the namespace (the connection is made), and says nothing.
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "/usr/bin/python3",
            "-c",
            ROGUE_PY,
            &pub_ep,
            &pull_ep,
        ])
        .arg(hex(&forged))
        .output()
        .expect("python3 in the namespace");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(text.trim()).expect("the rogue's report");
    assert_eq!(v["received"], 0, "the rogue heard the bus");
    let after = c.api_get("/v1/status")["refused_peers"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        after >= before + 2,
        "every rogue connection refused and counted: {before} -> {after}"
    );
    let logs = c.cli_ok(&["logs", "-a", "app", "-n", "500"]).unwrap();
    assert!(!logs.contains("FORGED-FROM-ANOTHER-HOST"), "{logs}");
}
