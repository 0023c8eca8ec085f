//! The frontend end to end: a Mongrel2-protocol handler app (Python, pyzmq)
//! and a `$PORT` web app behind a real frontend, custom domains, unknown
//! hosts, no handler (503 after the hold time), a handler that never
//! answers (504), garbage from a handler.

mod common;
use common::*;
use std::time::Duration;

/// A Mongrel2-protocol handler written the way handlers for Mongrel2 are,
/// reading its endpoints from M2_SEND_SPEC / M2_RECV_SPEC.
const HANDLER_PY: &str = r#"
import json, os, zmq
ctx = zmq.Context()
pull, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
for ep in os.environ["M2_SEND_SPEC"].split():
    pull.connect(ep)
for ep in os.environ["M2_RECV_SPEC"].split():
    pub.connect(ep)
me = os.environ.get("ZEROKU_INSTANCE", "?")
while True:
    msg = pull.recv()
    sender, conn_id, path, rest = msg.split(b" ", 3)
    hlen, rest = rest.split(b":", 1)
    headers = json.loads(rest[: int(hlen)])
    rest = rest[int(hlen) + 1 :]
    blen, rest = rest.split(b":", 1)
    body = rest[: int(blen)]
    if headers.get("METHOD") == "JSON":
        continue
    out = ("hello from %s path=%s method=%s body=%d xff=%s" % (
        me, path.decode(), headers["METHOD"], len(body), headers.get("x-forwarded-for"))).encode()
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out)
    pub.send(sender + b" " + str(len(conn_id)).encode() + b":" + conn_id + b", " + resp)
"#;

const WEB_PY: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        out = ("hello web from %s xfp=%s rid=%s xff=%s xfport=%s" % (os.environ.get("ZEROKU_INSTANCE"),
            self.headers.get("X-Forwarded-Proto"), bool(self.headers.get("X-Request-Id")),
            self.headers.get("X-Forwarded-For"), self.headers.get("X-Forwarded-Port"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

fn config() -> String {
    format!("{TEST_CONFIG}\n[frontend]\nhold_ms = 1500\ntimeout_ms = 5000\n")
}

#[test]
fn handlers_web_apps_domains_and_errors() {
    let mut c = TestCluster::start_with(&config());
    c.add_worker("f1", 33000);
    let fe = c.add_frontend("edge1");

    // A handler app.
    c.deploy(
        "chat",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", HANDLER_PY),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "chat", "handler=2"]).unwrap();
    c.wait_up("chat", 2, Duration::from_secs(30));
    let (st, _, body) = wait_http_ok(
        &fe,
        "chat.localhost",
        "/hello/world?x=1",
        Duration::from_secs(15),
    );
    assert_eq!(st, 200);
    assert!(
        body.starts_with("hello from chat.handler.")
            && body.contains("path=/hello/world method=GET"),
        "{body}"
    );
    assert!(body.contains("xff=127.0.0.1"), "{body}");
    // A body reaches the handler; keep-alive works for several requests.
    let (st, _, body) = http_request(
        &fe,
        "POST /post HTTP/1.1\r\nHost: chat.localhost\r\nContent-Length: 5\r\n\r\nhelloGET /again HTTP/1.1\r\nHost: chat.localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(st, 200);
    assert!(body.contains("path=/post method=POST body=5"), "{body}");
    assert!(
        body.contains("path=/again method=GET"),
        "pipelined second request: {body}"
    );

    // A web app on $PORT.
    c.deploy(
        "site",
        &[("Procfile", "web: python3 app.py\n"), ("app.py", WEB_PY)],
    );
    c.wait_up("site", 1, Duration::from_secs(30));
    let (_, _, body) = eventually(
        Duration::from_secs(15),
        "the web app through the proxy",
        || {
            let r = http_get(&fe, "site.localhost:8080", "/")?;
            if r.0 == 200 {
                Ok(r)
            } else {
                Err(format!("{r:?}"))
            }
        },
    );
    assert!(
        body.starts_with("hello web from site.web.1 xfp=http rid=True xff=127.0.0.1 xfport="),
        "{body}"
    );
    let port = fe.rsplit(':').next().unwrap_or_default();
    assert!(body.ends_with(&format!("xfport={port}")), "{body}");
    // A client's own X-Forwarded-For is kept, with its address after it.
    let raw = "GET / HTTP/1.1\r\nHost: site.localhost\r\nX-Forwarded-For: 10.1.2.3\r\nConnection: close\r\n\r\n";
    let (_, _, body) = http_request(&fe, raw).unwrap();
    assert!(body.contains("xff=10.1.2.3, 127.0.0.1 "), "{body}");

    // A custom domain.
    c.cli_ok(&["domains:add", "-a", "site", "www.example.test"])
        .unwrap();
    assert!(c
        .cli_ok(&["domains", "-a", "site"])
        .unwrap()
        .contains("www.example.test"));
    eventually(Duration::from_secs(10), "the custom domain", || {
        let r = http_get(&fe, "www.example.test", "/")?;
        if r.0 == 200 && r.2.contains("hello web") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    let e = String::from_utf8_lossy(
        &c.cli(&["domains:add", "-a", "chat", "www.example.test"])
            .stderr,
    )
    .into_owned();
    assert!(e.contains("already belongs to app site"), "{e}");

    // An unknown host.
    let (st, _, body) = http_get(&fe, "nope.localhost", "/").unwrap();
    assert_eq!(st, 404);
    assert!(
        body.contains("zeroku") && body.contains("nope.localhost"),
        "{body}"
    );

    // Prometheus metrics on the admin port.
    let (st, _, metrics) = http_get(&c.frontend_admin, "x", "/metrics").unwrap();
    assert_eq!(st, 200);
    assert!(
        metrics.contains(r#"zeroku_frontend_requests_total{app="chat",code="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("zeroku_frontend_request_duration_seconds_bucket"),
        "{metrics}"
    );

    // Garbage from a "handler" (the test, as root, in the app's socket
    // directory) is dropped; the app keeps working.
    let (send_ep, recv_ep) = c.handler_ipc("edge1", "chat");
    let ctx = zmq::Context::new();
    let evil = ctx.socket(zmq::PUB).unwrap();
    evil.connect(&recv_ep).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    for g in [
        &b"\xff\xfe garbage"[..],
        b"no-spaces",
        b"uuid 999:1, x",
        b"",
    ] {
        evil.send(g, 0).unwrap();
    }
    let (st, _, _) = http_get(&fe, "chat.localhost", "/still").unwrap();
    assert_eq!(st, 200);

    // No handler connected: held for hold_ms, then 503.
    c.cli_ok(&["ps:scale", "-a", "chat", "handler=0"]).unwrap();
    // Gone from ps at once; the processes themselves are gone when the
    // worker reports nothing running.
    eventually(Duration::from_secs(20), "handler processes stopped", || {
        let n = c.json(&["nodes"]);
        let running = n[0]["running"].as_u64().unwrap_or(99);
        // the web app's one instance is still running
        if c.ps("chat").is_empty() && running == 1 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    let t = std::time::Instant::now();
    let (st, _, body) = http_get(&fe, "chat.localhost", "/").unwrap();
    assert_eq!(st, 503, "{body}");
    assert!(
        t.elapsed() >= Duration::from_millis(1000),
        "answered before the hold time: {:?}",
        t.elapsed()
    );

    // A request held while no handler is connected is delivered when one
    // connects (here the test itself, as a handler, 300 ms later).
    let fe2 = fe.clone();
    let waiting = std::thread::spawn(move || http_get(&fe2, "chat.localhost", "/held"));
    std::thread::sleep(Duration::from_millis(300));
    let pull = ctx.socket(zmq::PULL).unwrap();
    pull.set_rcvtimeo(5000).unwrap();
    pull.connect(&send_ep).unwrap();
    let replies = ctx.socket(zmq::PUB).unwrap();
    replies.connect(&recv_ep).unwrap();
    let (sender, conn_id) = next_request(&pull, "/held");
    let reply = format!(
        "{sender} {}:{conn_id}, HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate",
        conn_id.len()
    );
    // The PUB connection may still be joining: repeat until answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !waiting.is_finished() && std::time::Instant::now() < deadline {
        replies.send(reply.as_bytes(), 0).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let (st, _, body) = waiting.join().unwrap().unwrap();
    assert_eq!((st, body.as_str()), (200, "late"));

    // A response head split over several replies, the body after it.
    let fe4 = fe.clone();
    let split = std::thread::spawn(move || http_get(&fe4, "chat.localhost", "/split"));
    let (sender, conn_id) = next_request(&pull, "/split");
    for piece in [
        "HTTP/1.1 200 OK\r\nContent-Le",
        "ngth: 5\r\nX-Pie",
        "ces: 3\r\n\r\nhel",
        "lo",
    ] {
        let part = format!("{sender} {}:{conn_id}, {piece}", conn_id.len());
        replies.send(part.as_bytes(), 0).unwrap();
    }
    let (st, head, body) = split.join().unwrap().unwrap();
    assert_eq!((st, body.as_str()), (200, "hello"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-pieces: 3"), "{head}");

    // A handler that takes a request and never answers: 504 once the hold
    // time and the timeout (1.5 + 5 s) have passed, not before.
    let t = std::time::Instant::now();
    let fe3 = fe.clone();
    let never = std::thread::spawn(move || http_get(&fe3, "chat.localhost", "/never"));
    let (sender, conn_id) = next_request(&pull, "/never");
    let (st, _, body) = never.join().unwrap().unwrap();
    assert_eq!(st, 504, "{body}");
    assert!(body.contains("did not answer within 5 s"), "{body}");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(6400),
        "504 before the hold time and the timeout: {waited:?}"
    );
    // Its answer comes too late for a request that is gone; the handler
    // hears that the client left, as from Mongrel2.
    let late = format!(
        "{sender} {}:{conn_id}, HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate",
        conn_id.len()
    );
    replies.send(late.as_bytes(), 0).unwrap();
    let notice = loop {
        let msg = pull.recv_bytes(0).expect("a disconnect notice");
        let text = String::from_utf8_lossy(&msg).into_owned();
        if text.starts_with(&format!("{sender} {conn_id} @* ")) {
            break text;
        }
    };
    assert!(notice.contains(r#""type":"disconnect""#), "{notice}");
}

/// The next request a handler (the test) pulls, skipping disconnect notices
/// of earlier clients: its sender UUID and connection id, once its path is
/// checked to be `path`.
fn next_request(pull: &zmq::Socket, path: &str) -> (String, String) {
    loop {
        let msg = pull
            .recv_bytes(0)
            .unwrap_or_else(|e| panic!("no request for {path}: {e}"));
        let text = String::from_utf8_lossy(&msg).into_owned();
        if text.contains(" @* ") {
            continue;
        }
        let mut words = text.splitn(4, ' ');
        let (sender, conn_id) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        assert_eq!(words.next(), Some(path), "{text}");
        return (sender.to_string(), conn_id.to_string());
    }
}

/// The app's handler ports from the master's route table.
fn handler_ports(c: &TestCluster, app: &str) -> (u64, u64) {
    let a = c.app_route(app).unwrap();
    (
        a["handler"]["send_port"].as_u64().unwrap(),
        a["handler"]["recv_port"].as_u64().unwrap(),
    )
}

#[test]
fn the_access_log_has_each_requests_real_status_and_duration() {
    let mut c = TestCluster::start_with(&config());
    c.add_worker("al", 33100);
    let log = c.dir.path().join("access.log");
    let fe = c.add_frontend_with(
        "edge-al",
        &[("ZEROKU_FRONTEND_ACCESS_LOG", log.to_str().unwrap())],
    );
    c.deploy(
        "chat",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", HANDLER_PY),
        ],
    );
    c.wait_up("chat", 1, Duration::from_secs(30));
    wait_http_ok(
        &fe,
        "chat.localhost",
        "/logged?q=1",
        Duration::from_secs(15),
    );
    let (st, _, _) = http_get(&fe, "nobody.localhost", "/missing").unwrap();
    assert_eq!(st, 404);
    let text = eventually(Duration::from_secs(5), "both requests logged", || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("path=\"/missing\"") && t.contains("path=\"/logged\"") {
            Ok(t)
        } else {
            Err(t)
        }
    });
    let line = |path: &str| {
        text.lines()
            .rev()
            .find(|l| l.contains(path))
            .unwrap()
            .to_string()
    };
    let ok = line("/logged");
    assert!(
        ok.contains(" access app=chat host=\"chat.localhost\" method=GET ")
            && ok.contains(" status=200 ms="),
        "{ok}"
    );
    let missing = line("/missing");
    assert!(
        missing.contains("app=- host=\"nobody.localhost\"") && missing.contains(" status=404 "),
        "{missing}"
    );
    let ms: f64 = ok.rsplit("ms=").next().unwrap().trim().parse().unwrap();
    assert!(ms > 0.0, "{ok}");
}

#[test]
fn websockets_and_uploads_reach_handlers_as_mongrel2_sends_them() {
    use std::io::{Read, Write};
    use zeroku_frontend::m2::Connection;
    let mut c = TestCluster::start_with(&config());
    c.add_worker("w1", 33200);
    let fe = c.add_frontend("edge1");
    // The app's handler is this test (zeroku_frontend::m2::Connection);
    // the release only declares the process type, scaled to 0.
    c.deploy("live", &[("Procfile", "handler: sleep 1000\n")]);
    c.cli_ok(&["ps:scale", "-a", "live", "handler=0"]).unwrap();
    eventually(Duration::from_secs(10), "handler route", || {
        std::panic::catch_unwind(|| handler_ports(&c, "live"))
            .map_err(|_| "no route yet".to_string())
    });
    let (send, recv) = c.handler_ipc("edge1", "live");
    eventually(Duration::from_secs(10), "frontend has the route", || {
        let r = http_get(&fe, "live.localhost", "/")?;
        if r.0 == 503 {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen2 = seen.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let handler = std::thread::spawn(move || {
        let conn = Connection::new("test-handler", &send, &recv).unwrap();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let Some(req) = conn.recv_timeout(Duration::from_millis(100)).unwrap() else {
                continue;
            };
            seen2.lock().unwrap().push(req.headers.clone());
            match req.method() {
                Some("WEBSOCKET_HANDSHAKE") => {
                    let accept = String::from_utf8(req.body.clone()).unwrap();
                    let resp = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                    conn.reply(&req, resp.as_bytes()).unwrap();
                }
                Some("WEBSOCKET") => {
                    let mut echo = b"echo:".to_vec();
                    echo.extend_from_slice(&req.body);
                    conn.reply_websocket(&req, 1, &echo).unwrap();
                }
                Some("JSON") => {}
                _ => {
                    if let Some(done) = req.header("x-mongrel2-upload-done") {
                        let size = std::fs::metadata(done).map(|m| m.len()).unwrap_or(0);
                        conn.reply_http(
                            &req,
                            200,
                            &[],
                            format!(
                                "uploaded {size} start={}",
                                req.header("x-mongrel2-upload-start") == Some(done)
                            )
                            .as_bytes(),
                        )
                        .unwrap();
                    } else if req.header("x-mongrel2-upload-start").is_none() {
                        conn.reply_http(
                            &req,
                            200,
                            &[],
                            format!("plain {}", req.body.len()).as_bytes(),
                        )
                        .unwrap();
                    }
                }
            }
        }
    });

    // WebSocket: handshake, a masked text frame, the echo.
    let mut s = std::net::TcpStream::connect(&fe).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: live.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    let mask = [7u8, 1, 2, 3];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend(b"hi".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut reply = [0u8; 9];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"\x81\x07echo:hi");
    drop(s);

    // A body over the upload threshold arrives as a temp file, announced
    // twice (start, done); the file is gone after the request.
    let body = "x".repeat(30_000);
    let (st, _, text) = http_request(
        &fe,
        &format!("POST /up HTTP/1.1\r\nHost: live.localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()),
    )
    .unwrap();
    assert_eq!((st, text.as_str()), (200, "uploaded 30000 start=true"));
    // A small body comes inline; a chunked one as an upload.
    let (st, _, text) = http_request(&fe, "POST /small HTTP/1.1\r\nHost: live.localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc").unwrap();
    assert_eq!((st, text.as_str()), (200, "plain 3"));
    let (st, _, text) = http_request(
        &fe,
        "POST /chunked HTTP/1.1\r\nHost: live.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nwiki\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!((st, text.as_str()), (200, "uploaded 4 start=true"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    handler.join().unwrap();

    let seen = seen.lock().unwrap();
    let methods: Vec<&str> = seen.iter().filter_map(|h| h["METHOD"].as_str()).collect();
    assert!(
        methods.contains(&"WEBSOCKET_HANDSHAKE") && methods.contains(&"WEBSOCKET"),
        "{methods:?}"
    );
    let ws = seen.iter().find(|h| h["METHOD"] == "WEBSOCKET").unwrap();
    assert_eq!(ws["FLAGS"], "0x81");
    assert!(
        seen.iter().any(|h| h["METHOD"] == "JSON"),
        "a disconnect notice after the websocket closed"
    );
    let uploads: Vec<&str> = seen
        .iter()
        .filter_map(|h| h["x-mongrel2-upload-start"].as_str())
        .collect();
    assert!(!uploads.is_empty());
    for u in uploads {
        assert!(
            !std::path::Path::new(u).exists(),
            "upload file {u} left behind"
        );
    }
}

const WS_WEB_PY: &str = r#"
import base64, hashlib, os, socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["PORT"])))
s.listen(16)
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(4096)
        if not d:
            return
        data += d
    head, buf = data.split(b"\r\n\r\n", 1)
    key = [l.split(b":", 1)[1].strip() for l in head.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key")][0]
    acc = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    while True:
        while len(buf) < 2 or len(buf) < 6 + (buf[1] & 0x7f):
            d = c.recv(4096)
            if not d:
                return
            buf += d
        n = buf[1] & 0x7f
        mask = buf[2:6]
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[6:6 + n]))
        buf = buf[6 + n:]
        out = b"proxied:" + payload
        c.sendall(bytes([0x81, len(out)]) + out)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

#[test]
fn websockets_are_carried_through_the_proxy() {
    use std::io::{Read, Write};
    let mut c = TestCluster::start_with(&config());
    c.add_worker("w1", 33400);
    let fe = c.add_frontend("edge1");
    c.deploy(
        "wsweb",
        &[("Procfile", "web: python3 ws.py\n"), ("ws.py", WS_WEB_PY)],
    );
    c.wait_up("wsweb", 1, Duration::from_secs(30));
    let mut s = eventually(
        Duration::from_secs(15),
        "the upgrade through the proxy",
        || {
            let mut s = std::net::TcpStream::connect(&fe).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /ws HTTP/1.1\r\nHost: wsweb.localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
            .map_err(|e| e.to_string())?;
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).map_err(|e| e.to_string())?;
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            if head.starts_with("HTTP/1.1 101") && head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") {
                Ok(s)
            } else {
                Err(head)
            }
        },
    );
    let mask = [9u8, 8, 7, 6];
    let mut frame = vec![0x81, 0x80 | 3];
    frame.extend_from_slice(&mask);
    frame.extend(b"abc".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).unwrap();
    let mut reply = [0u8; 13];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"\x81\x0bproxied:abc");
}

/// An instance that answers the first request on each connection and
/// closes the connection on the second without answering, as one whose
/// keep-alive timeout runs out just as the proxy reuses the connection.
/// `GET /seen` (always answered) lists the request lines it has read.
const CLOSING_WEB_PY: &str = r#"
import os, socket, threading
seen, lock = [], threading.Lock()
def serve(c):
    buf, n = b"", 0
    while True:
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                c.close(); return
            buf += d
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        cl = sum(int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:"))
        while len(buf) < cl:
            buf += c.recv(65536)
        buf, n = buf[cl:], n + 1
        if lines[0].startswith("GET /seen"):
            out = "|".join(seen).encode()
        else:
            with lock:
                seen.append(lines[0].rsplit(" ", 1)[0])
            if n > 1:
                c.close(); return
            out = b"answered"
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(os.environ["PORT"])))
s.listen(64)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()
"#;

#[test]
fn a_pooled_connection_closed_under_a_get_is_retried_once_and_a_post_is_not() {
    let mut c = TestCluster::start_with(&config());
    c.add_worker("w1", 35000);
    let fe = c.add_frontend("edge1");
    c.deploy(
        "closer",
        &[
            ("Procfile", "web: python3 web.py\n"),
            ("web.py", CLOSING_WEB_PY),
        ],
    );
    c.wait_up("closer", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "closer.localhost", "/first", Duration::from_secs(15));
    // The proxy pools the connection once the response body has ended;
    // give it that moment before the next request (sent on a new client
    // connection, the proxy's pool being per instance, not per client).
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = http_get(&fe, "closer.localhost", "/again").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "answered"),
        "a GET whose pooled connection the instance closed is sent once more on a new one"
    );
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = http_request(
        &fe,
        "POST /once HTTP/1.1\r\nHost: closer.localhost\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .unwrap();
    assert_eq!(
        status, 502,
        "a POST the instance may have acted on is not repeated: {body}"
    );
    let (_, _, seen) = http_get(&fe, "closer.localhost", "/seen").unwrap();
    let seen: Vec<&str> = seen.split('|').collect();
    assert_eq!(
        seen.iter().filter(|l| **l == "GET /again").count(),
        2,
        "the GET reached the instance on the closing connection, then on a new one: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|l| **l == "POST /once").count(),
        1,
        "{seen:?}"
    );
}

#[test]
fn path_routes_send_prefixes_to_static_dirs_and_web() {
    let mut c = TestCluster::start_with(&config());
    c.add_worker("w1", 33600);
    let fe = c.add_frontend("edge1");
    c.deploy(
        "mix",
        &[
            ("Procfile", "web: python3 app.py\n"),
            ("app.py", WEB_PY),
            ("public/index.html", "<h1>static home</h1>\n"),
            ("public/css/site.css", "body { color: red }\n"),
        ],
    );
    c.wait_up("mix", 1, Duration::from_secs(30));
    c.cli_ok(&["routes:add", "-a", "mix", "/static", "dir:public"])
        .unwrap();
    let e = String::from_utf8_lossy(
        &c.cli(&["routes:add", "-a", "mix", "/x", "dir:../etc"])
            .stderr,
    )
    .into_owned();
    assert!(e.contains("not a backend"), "{e}");
    let e = String::from_utf8_lossy(&c.cli(&["routes:add", "-a", "mix", "static", "web"]).stderr)
        .into_owned();
    assert!(e.contains("not a route prefix"), "{e}");
    assert!(c
        .cli_ok(&["routes", "-a", "mix"])
        .unwrap()
        .contains("dir:public"));

    let (_, head, body) = wait_http_ok(
        &fe,
        "mix.localhost",
        "/static/css/site.css",
        Duration::from_secs(15),
    );
    assert_eq!(body, "body { color: red }\n");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/css"),
        "{head}"
    );
    let (st, _, body) = http_get(&fe, "mix.localhost", "/static/").unwrap();
    assert_eq!((st, body.as_str()), (200, "<h1>static home</h1>\n"));
    for escape in [
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2fapp.py",
    ] {
        let (st, _, body) = http_get(&fe, "mix.localhost", escape).unwrap();
        assert!(st == 404 || st == 400, "{escape}: {st} {body}");
        assert!(
            !body.contains("ThreadingHTTPServer"),
            "{escape} leaked app.py"
        );
    }
    // Other paths (and `/staticx`, which is not below `/static`) go to web.
    let (st, _, body) = http_get(&fe, "mix.localhost", "/staticx").unwrap();
    assert_eq!(st, 200);
    assert!(body.starts_with("hello web from mix.web.1"), "{body}");
    c.cli_ok(&["routes:remove", "-a", "mix", "/static"])
        .unwrap();
    eventually(Duration::from_secs(10), "the route removed", || {
        let r = http_get(&fe, "mix.localhost", "/static/css/site.css")?;
        if r.2.starts_with("hello web") {
            Ok(())
        } else {
            Err(format!("{r:?}"))
        }
    });
}

/// Sends GETs from `threads` clients until `stop`; returns (ok, failures).
fn load(
    fe: &str,
    host: &'static str,
    threads: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<std::thread::JoinHandle<(u32, Vec<String>)>> {
    (0..threads)
        .map(|_| {
            let (fe, stop) = (fe.to_string(), stop.clone());
            std::thread::spawn(move || {
                let (mut ok, mut bad) = (0, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match http_get(&fe, host, "/load") {
                        Ok((200, _, _)) => ok += 1,
                        other => bad.push(format!("{other:?}")),
                    }
                }
                (ok, bad)
            })
        })
        .collect()
}

fn finish(handles: Vec<std::thread::JoinHandle<(u32, Vec<String>)>>) -> (u32, Vec<String>) {
    let mut ok = 0;
    let mut bad = Vec::new();
    for h in handles {
        let (o, b) = h.join().unwrap();
        ok += o;
        bad.extend(b);
    }
    (ok, bad)
}

#[test]
fn deploys_and_crashes_under_load_lose_no_request() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let mut c = TestCluster::start_with(&format!(
        "{TEST_CONFIG}\n[frontend]\nhold_ms = 5000\ntimeout_ms = 10000\n"
    ));
    c.add_worker("w1", 34000);
    let fe = c.add_frontend("edge1");

    // Handlers replaced by a new release (config:set) under load.
    c.deploy(
        "busy",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", HANDLER_PY),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "busy", "handler=2"]).unwrap();
    c.wait_up("busy", 2, Duration::from_secs(30));
    wait_http_ok(&fe, "busy.localhost", "/", Duration::from_secs(15));
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&fe, "busy.localhost", 3, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    c.cli_ok(&["config:set", "-a", "busy", "GREETING=v2"])
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "v2 handlers up and the old ones gone",
        || {
            let ps = c.ps("busy");
            let n = c.json(&["nodes"]);
            let done = ps.len() == 2
                && ps.iter().all(|p| p["release"] == 2 && p["state"] == "up")
                && n[0]["running"] == 2;
            if done {
                Ok(())
            } else {
                Err(format!("{ps:?}"))
            }
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = finish(clients);
    assert!(ok > 20, "only {ok} requests during the deploy");
    assert!(
        bad.is_empty(),
        "{} of {} requests failed during a handler deploy: {:?}",
        bad.len(),
        ok as usize + bad.len(),
        &bad[..bad.len().min(5)]
    );

    // A web instance killed (kill -9) under load.
    c.deploy(
        "site",
        &[("Procfile", "web: python3 app.py\n"), ("app.py", WEB_PY)],
    );
    c.cli_ok(&["ps:scale", "-a", "site", "web=2"]).unwrap();
    c.wait_up("site", 2, Duration::from_secs(30));
    eventually(Duration::from_secs(15), "both web instances routed", || {
        let r = c.app_route("site")?;
        if r["web"].as_array().map_or(0, Vec::len) == 2 {
            Ok(())
        } else {
            Err(r.to_string())
        }
    });
    let victim = c.ps("site")[0]["pid"].as_u64().unwrap() as i32;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&fe, "site.localhost", 3, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    unsafe_free_kill(-victim, 9);
    eventually(
        Duration::from_secs(20),
        "the killed instance restarted",
        || {
            let ps = c.ps("site");
            let back = ps.len() == 2
                && ps.iter().all(|p| p["state"] == "up")
                && ps.iter().any(|p| p["restarts"].as_u64() == Some(1));
            if back {
                Ok(())
            } else {
                Err(format!("{ps:?}"))
            }
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = finish(clients);
    assert!(ok > 20, "only {ok} requests around the crash");
    assert!(
        bad.is_empty(),
        "{} of {} requests failed around a crash: {:?}",
        bad.len(),
        ok as usize + bad.len(),
        &bad[..bad.len().min(5)]
    );
}

#[test]
fn the_edge_refuses_bad_requests_and_slow_clients_cleanly() {
    use std::io::{Read, Write};
    let mut c = TestCluster::start_with(&format!(
        "{TEST_CONFIG}\n[frontend]\nheader_timeout_ms = 1000\nmax_header_bytes = 16384\nmax_body_bytes = 1000\n"
    ));
    c.add_worker("w1", 34200);
    let fe = c.add_frontend("edge1");
    c.deploy(
        "site",
        &[("Procfile", "web: python3 app.py\n"), ("app.py", WEB_PY)],
    );
    c.wait_up("site", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "site.localhost", "/", Duration::from_secs(15));
    // A slowloris client holds a connection without finishing its head...
    let mut slow = std::net::TcpStream::connect(&fe).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: site.localhost\r\nX-Slow: 1\r\n")
        .unwrap();
    // ...while others are served.
    let (st, _, _) = http_get(&fe, "site.localhost", "/").unwrap();
    assert_eq!(st, 200);
    // Malformed request line: 400, connection closed.
    let (st, _, _) = http_request(&fe, "THIS IS NOT HTTP\r\n\r\n").unwrap_or((
        400,
        String::new(),
        String::new(),
    ));
    assert_eq!(st, 400);
    // One header line over 8 KB: 431.
    let big = "a".repeat(9000);
    let (st, _, body) = http_request(
        &fe,
        &format!(
            "GET / HTTP/1.1\r\nHost: site.localhost\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
        ),
    )
    .unwrap();
    assert_eq!(st, 431, "{body}");
    // Headers over the configured total: 431 too.
    let many: String = (0..40)
        .map(|i| format!("X-H{i}: {}\r\n", "b".repeat(500)))
        .collect();
    let (st, _, _) = http_request(
        &fe,
        &format!("GET / HTTP/1.1\r\nHost: site.localhost\r\n{many}Connection: close\r\n\r\n"),
    )
    .unwrap();
    assert_eq!(st, 431);
    // A body over the limit: 413.
    let (st, _, _) = http_request(&fe, "POST / HTTP/1.1\r\nHost: site.localhost\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(st, 413);
    // The slow client is cut off after the header timeout.
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let t = std::time::Instant::now();
    let _ = slow.read_to_end(&mut buf);
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "slow client kept for {:?}",
        t.elapsed()
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout"), "{text}");
    // A keep-alive connection that sent nothing more is closed without a word.
    let mut idle = std::net::TcpStream::connect(&fe).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: site.localhost\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = idle.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("HTTP/1.1 408"), "{text}");
    // And the edge still serves.
    assert_eq!(http_get(&fe, "site.localhost", "/").unwrap().0, 200);
}

#[test]
fn tls_is_terminated_at_the_edge() {
    let dir = tempdir();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let st = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=site.localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(st.success());
    let https = format!("127.0.0.1:{}", free_port());
    let mut c = TestCluster::start_with(&format!(
        "{TEST_CONFIG}\n[frontend]\nhttps = \"{https}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    c.add_worker("w1", 34400);
    let _fe = c.add_frontend("edge1");
    c.deploy(
        "site",
        &[("Procfile", "web: python3 app.py\n"), ("app.py", WEB_PY)],
    );
    c.wait_up("site", 1, Duration::from_secs(30));
    let port = https.rsplit(':').next().unwrap();
    let body = eventually(Duration::from_secs(15), "the app over HTTPS", || {
        let o = std::process::Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args([
                "--resolve",
                &format!("site.localhost:{port}:127.0.0.1"),
                &format!("https://site.localhost:{port}/"),
            ])
            .output()
            .map_err(|e| e.to_string())?;
        let b = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() && b.starts_with("hello web") {
            Ok(b)
        } else {
            Err(format!("{b} {}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    assert!(body.contains("xfp=https"), "{body}");
    // Plain HTTP spoken to the TLS port is refused without harm.
    let r = http_request(&https, "GET / HTTP/1.1\r\nHost: site.localhost\r\n\r\n");
    assert!(r.is_err() || r.as_ref().is_ok_and(|r| r.0 != 200), "{r:?}");
}

#[test]
fn handlers_serve_every_frontend() {
    let mut c = TestCluster::start_with(&config());
    c.add_worker("w1", 34600);
    let fe1 = c.add_frontend("edge1");
    c.deploy(
        "chat",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", HANDLER_PY),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "chat", "handler=1"]).unwrap();
    c.wait_up("chat", 1, Duration::from_secs(30));
    wait_http_ok(&fe1, "chat.localhost", "/one", Duration::from_secs(15));
    // A second frontend joins later: the handler is restarted with both
    // frontends' endpoints and answers through both.
    // (on one machine, each frontend binds handler sockets on its own
    // loopback address, as it would on its own node)
    let fe2 = c.add_frontend_with("edge2", &[("ZEROKU_FRONTEND_HANDLER_BIND", "127.0.0.2")]);
    for fe in [&fe2, &fe1] {
        eventually(Duration::from_secs(20), "both frontends", || {
            let r = http_get(fe, "chat.localhost", "/both")?;
            if r.0 == 200 && r.2.contains("path=/both") {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        });
    }
}
