//! Where HTTP readers or Mongrel2 handlers could disagree with the edge (issue: "Mongrel2
//! handlers from the wild"). Requests two readers could take differently are refused with 400
//! before any backend sees them (RFC 9112, as nginx decides: two Host lines, malformed chunked
//! bodies; a proxied request's chunked body is read whole before it goes upstream), each on its
//! own connection while another client is served. And Mongrel2's rules for handlers: an empty
//! reply closes the client's connection with no bytes; a request whose body never arrived whole
//! is never announced, not even by a disconnect; upload files are the handler's own (its uid,
//! 0600) to write, rename and delete; a handler's several messages stream to the client as they
//! come; what a handler writes reaches the client byte for byte (header case and order, nothing
//! added), messages after a complete response included.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

/// A web app that logs every request that reaches it, with its Upgrade header.
const LOGGING_WEB_PY: &str = r#"
import os, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        print("REACHED %s upgrade=%s body=%r" % (self.requestline, self.headers.get("Upgrade"), body), flush=True)
        out = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(out)
    do_GET = do_POST = answer
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"#;

/// What every handler below starts with: its sockets, `send`, and `requests()`, which yields
/// each message as (sender, conn_id, path, headers, body).
const HANDLER_PRELUDE: &str = r#"
import json, os, stat, zmq
ctx = zmq.Context()
pull, pub = ctx.socket(zmq.PULL), ctx.socket(zmq.PUB)
for ep in os.environ["M2_SEND_SPEC"].split():
    pull.connect(ep)
for ep in os.environ["M2_RECV_SPEC"].split():
    pub.connect(ep)
def send(sender, conn_id, data):
    pub.send(sender + b" " + str(len(conn_id)).encode() + b":" + conn_id + b", " + data)
def requests():
    while True:
        sender, conn_id, path, rest = pull.recv().split(b" ", 3)
        hlen, rest = rest.split(b":", 1)
        headers = json.loads(rest[: int(hlen)])
        blen, rest = rest[int(hlen) + 1 :].split(b":", 1)
        yield sender, conn_id, path, headers, rest[: int(blen)]
"#;

/// A handler app's script: the prelude, then `body`.
fn handler_py(body: &str) -> String {
    format!("{HANDLER_PRELUDE}{body}")
}

/// A handler that logs every message it gets and answers `/empty` with an empty reply.
const LOGGING_HANDLER_PY: &str = r#"
for sender, conn_id, path, headers, body in requests():
    print("GOT conn=%s %s %s %s" % (conn_id.decode(), headers.get("METHOD"), path.decode(), body.decode("utf-8", "replace")), flush=True)
    if headers.get("METHOD") == "JSON":
        continue
    send(sender, conn_id, b"" if path == b"/empty" else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
"#;

/// Sends `raw` on a new connection, then reads until the edge closes it (or 5 s pass).
fn exchange(addr: &str, raw: &[u8]) -> Vec<u8> {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

fn status(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Waits until `marker` is in the app's logs, then returns them.
fn logs_through(c: &TestCluster, app: &str, marker: &str) -> String {
    eventually(Duration::from_secs(20), "the marker in the logs", || {
        let logs = c.cli_ok(&["logs", "-a", app, "-n", "1000"])?;
        if logs.contains(marker) {
            Ok(logs)
        } else {
            Err(logs)
        }
    })
}

#[test]
fn ambiguous_and_malformed_requests_get_400_and_reach_no_backend() {
    let mut c = TestCluster::start();
    c.add_worker("h1", 35900);
    let fe = c.add_frontend("edge");
    c.deploy(
        "site",
        &[
            ("Procfile", "web: python3 app.py\n"),
            ("app.py", LOGGING_WEB_PY),
        ],
    );
    c.wait_up("site", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "site.localhost", "/", Duration::from_secs(20));

    let host = "Host: site.localhost\r\n";
    let chunked = format!("{host}Transfer-Encoding: chunked\r\n");
    let cases: Vec<(&str, String)> = vec![
        (
            "two Host lines",
            format!("GET /two-hosts HTTP/1.1\r\n{host}Host: other.localhost\r\n\r\n"),
        ),
        (
            "two different Content-Length lines",
            format!(
                "POST /two-cl HTTP/1.1\r\n{host}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
            ),
        ),
        (
            "two equal Content-Length lines",
            format!(
                "POST /two-equal-cl HTTP/1.1\r\n{host}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
            ),
        ),
        (
            "Content-Length and Transfer-Encoding",
            format!(
                "POST /cl-te HTTP/1.1\r\n{chunked}Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            ),
        ),
        (
            "a bare LF in a chunk line",
            format!("POST /bare-lf HTTP/1.1\r\n{chunked}\r\n3\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk size -1",
            format!("POST /minus-one HTTP/1.1\r\n{chunked}\r\n-1\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk size 0x3",
            format!("POST /hex-prefix HTTP/1.1\r\n{chunked}\r\n0x3\r\nabc\r\n0\r\n\r\n"),
        ),
        (
            "chunk size over 2^64",
            format!("POST /huge HTTP/1.1\r\n{chunked}\r\n1FFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n"),
        ),
    ];
    for (what, raw) in &cases {
        let reply = exchange(&fe, raw.as_bytes());
        assert!(
            status(&reply).starts_with("HTTP/1.1 400"),
            "{what}: {}",
            String::from_utf8_lossy(&reply)
        );
        // Meanwhile another client is served.
        assert_eq!(
            http_get(&fe, "site.localhost", "/").unwrap().0,
            200,
            "{what}"
        );
    }
    // A head that never ends sends nothing upstream.
    let mut s = std::net::TcpStream::connect(&fe).unwrap();
    s.write_all(format!("GET /never-ends HTTP/1.1\r\n{host}X-A: 1\r\n").as_bytes())
        .unwrap();
    drop(s);
    // A well-formed chunked body arrives whole, with its length; h2c is not passed on.
    let reply = exchange(
        &fe,
        format!("POST /good-chunks HTTP/1.1\r\n{chunked}Connection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").as_bytes(),
    );
    assert!(status(&reply).starts_with("HTTP/1.1 200"), "{reply:?}");
    let reply = exchange(
        &fe,
        format!("GET /h2c HTTP/1.1\r\n{host}Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n").as_bytes(),
    );
    assert!(status(&reply).starts_with("HTTP/1.1 200"), "{reply:?}");
    assert_eq!(http_get(&fe, "site.localhost", "/marker").unwrap().0, 200);
    let logs = logs_through(&c, "site", "REACHED GET /marker");
    assert!(
        logs.contains("POST /good-chunks HTTP/1.1 upgrade=None body=b'abcde'"),
        "{logs}"
    );
    assert!(logs.contains("GET /h2c HTTP/1.1 upgrade=None"), "{logs}");
    for path in [
        "/two-hosts",
        "/two-cl",
        "/two-equal-cl",
        "/cl-te",
        "/bare-lf",
        "/minus-one",
        "/hex-prefix",
        "/huge",
        "/never-ends",
    ] {
        assert!(
            !logs.contains(&format!(" {path} ")),
            "{path} reached the app: {logs}"
        );
    }
}

#[test]
fn an_empty_reply_closes_and_an_unfinished_body_is_never_announced() {
    let mut c = TestCluster::start();
    c.add_worker("h2", 36100);
    let fe = c.add_frontend("edge");
    c.deploy(
        "hand",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", &handler_py(LOGGING_HANDLER_PY)),
        ],
    );
    c.wait_up("hand", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "hand.localhost", "/", Duration::from_secs(20));

    // An empty reply: the connection closes and the client gets no bytes (not a 502).
    let reply = exchange(&fe, b"GET /empty HTTP/1.1\r\nHost: hand.localhost\r\n\r\n");
    assert!(reply.is_empty(), "{}", String::from_utf8_lossy(&reply));
    // A POST whose body stops after 3 of 100 bytes: the handler hears nothing of it.
    let mut s = std::net::TcpStream::connect(&fe).unwrap();
    s.write_all(
        b"POST /unfinished HTTP/1.1\r\nHost: hand.localhost\r\nContent-Length: 100\r\n\r\nabc",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    // Two Host lines are refused for handler apps too.
    let reply = exchange(
        &fe,
        b"GET /two-hosts HTTP/1.1\r\nHost: hand.localhost\r\nHost: hand.localhost\r\n\r\n",
    );
    assert!(status(&reply).starts_with("HTTP/1.1 400"), "{reply:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(http_get(&fe, "hand.localhost", "/marker").unwrap().0, 200);
    let logs = logs_through(&c, "hand", "GET /marker");
    assert!(logs.contains(" GET /empty"), "{logs}");
    assert!(!logs.contains("/unfinished"), "{logs}");
    assert!(!logs.contains("/two-hosts"), "{logs}");
    // A disconnect only ever names a connection the handler had a request from.
    let conn_of = |l: &str| {
        l.split("conn=")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("")
            .to_string()
    };
    let served: Vec<String> = logs
        .lines()
        .filter(|l| l.contains("GOT conn=") && !l.contains(" JSON "))
        .map(conn_of)
        .collect();
    let told: Vec<String> = logs
        .lines()
        .filter(|l| l.contains("\"disconnect\""))
        .map(conn_of)
        .collect();
    assert!(
        !told.is_empty(),
        "the closed connections were told of: {logs}"
    );
    for t in &told {
        assert!(
            served.contains(t),
            "a disconnect for conn {t}, never served: {logs}"
        );
    }
}

/// A handler that does with its upload files what handler libraries do: checks they are its
/// own, writes to them, renames and deletes them.
const UPLOAD_HANDLER_PY: &str = r#"
for sender, conn_id, path, headers, body in requests():
    done = headers.get("x-mongrel2-upload-done")
    if headers.get("METHOD") == "JSON" or (headers.get("x-mongrel2-upload-start") and not done):
        continue
    if done:
        st = os.stat(done)
        with open(done, "r+b") as f:
            f.seek(0, 2)
            f.write(b"appended")
        size = os.path.getsize(done)
        os.rename(done, done + ".mine")
        os.remove(done + ".mine")
        out = b"mine=%s mode=%o size=%d" % (str(st.st_uid == os.getuid()).encode(), stat.S_IMODE(st.st_mode), size)
    else:
        out = b"no upload"
    send(sender, conn_id, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
"#;

#[test]
fn a_handler_owns_its_upload_files() {
    let mut c = TestCluster::start();
    c.add_worker("h3", 36300);
    let fe = c.add_frontend("edge");
    c.deploy(
        "up",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", &handler_py(UPLOAD_HANDLER_PY)),
        ],
    );
    c.wait_up("up", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "up.localhost", "/", Duration::from_secs(20));
    // Over the upload threshold (20 KB): the body arrives as a file the handler owns (its
    // uid, 0600), may write to, rename and delete.
    let body = "x".repeat(30_000);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: up.localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (st, _, text) = http_request(&fe, &raw).unwrap();
    assert_eq!(
        (st, text.as_str()),
        (200, "mine=True mode=600 size=30008"),
        "{text}"
    );
    // A chunked body that passes the threshold part way arrives whole too.
    let chunk = "y".repeat(10_000);
    let chunks = format!("2710\r\n{chunk}\r\n").repeat(3);
    let raw = format!(
        "POST /upload HTTP/1.1\r\nHost: up.localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunks}0\r\n\r\n"
    );
    let (st, _, text) = http_request(&fe, &raw).unwrap();
    assert_eq!(
        (st, text.as_str()),
        (200, "mine=True mode=600 size=30008"),
        "{text}"
    );
}

/// A handler that streams: on `/clock` a head and a first line, then the rest of the lines and
/// an empty message (close) only once `/go` arrives on another connection.
const STREAMING_HANDLER_PY: &str = r#"
clock = None
for sender, conn_id, path, headers, body in requests():
    if headers.get("METHOD") == "JSON":
        continue
    if path == b"/clock":
        clock = (sender, conn_id)
        send(sender, conn_id, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        send(sender, conn_id, b"tick 1\n")
    elif path == b"/go" and clock:
        send(clock[0], clock[1], b"tick 2\n")
        send(clock[0], clock[1], b"tick 3\n")
        send(clock[0], clock[1], b"")
        send(sender, conn_id, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\ngo")
    else:
        send(sender, conn_id, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
"#;

#[test]
fn a_streaming_handler_reaches_the_client_piece_by_piece() {
    let mut c = TestCluster::start();
    c.add_worker("h4", 36500);
    let fe = c.add_frontend("edge");
    c.deploy(
        "clock",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", &handler_py(STREAMING_HANDLER_PY)),
        ],
    );
    c.wait_up("clock", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "clock.localhost", "/", Duration::from_secs(20));
    let mut s = std::net::TcpStream::connect(&fe).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /clock HTTP/1.1\r\nHost: clock.localhost\r\n\r\n")
        .unwrap();
    // The first line arrives while the handler still holds the rest.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("tick 1") {
        let n = s
            .read(&mut buf)
            .expect("the first line, before the rest is sent");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(http_get(&fe, "clock.localhost", "/go").unwrap().0, 200);
    // Then the rest, in order, and the close.
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let at = |t: &str| text.find(t).unwrap_or_else(|| panic!("no {t:?} in {text}"));
    assert!(
        at("tick 1") < at("tick 2") && at("tick 2") < at("tick 3"),
        "{text}"
    );
}

/// A handler that writes its responses its own way: mixed-case headers in its order, no Date;
/// on `/more`, bytes past the end of a complete response; every message is logged.
const EXACT_HANDLER_PY: &str = r#"
for sender, conn_id, path, headers, body in requests():
    print("GOT %s %s" % (headers.get("METHOD"), path.decode()), flush=True)
    if headers.get("METHOD") == "JSON":
        continue
    if path == b"/exact":
        send(sender, conn_id, b"HTTP/1.1 200 OK\r\nX-Custom-Case: Yes\r\nContent-Length: 5\r\nx-lower: a\r\n\r\nhello")
        send(sender, conn_id, b"")
    elif path == b"/more":
        send(sender, conn_id, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        send(sender, conn_id, b"AFTER")
        send(sender, conn_id, b"")
    else:
        out = b"%s %d" % (path, len(body))
        send(sender, conn_id, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(out), out))
"#;

#[test]
fn a_handlers_bytes_reach_the_client_as_written_and_hostile_requests_do_not_reach_it() {
    let mut c = TestCluster::start();
    c.add_worker("h5", 36700);
    let fe = c.add_frontend("edge");
    c.deploy(
        "exact",
        &[
            ("Procfile", "handler: python3 handler.py\n"),
            ("handler.py", &handler_py(EXACT_HANDLER_PY)),
        ],
    );
    c.wait_up("exact", 1, Duration::from_secs(30));
    wait_http_ok(&fe, "exact.localhost", "/", Duration::from_secs(20));
    let host = "Host: exact.localhost\r\n";

    // Byte for byte: the handler's header case and order, no Date added.
    let reply = exchange(&fe, format!("GET /exact HTTP/1.1\r\n{host}\r\n").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "HTTP/1.1 200 OK\r\nX-Custom-Case: Yes\r\nContent-Length: 5\r\nx-lower: a\r\n\r\nhello"
    );
    // Messages after a complete response reach the client too, in order.
    let reply = exchange(&fe, format!("GET /more HTTP/1.1\r\n{host}\r\n").as_bytes());
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokAFTER"
    );
    // Keep-alive: two requests on one connection (the second with a body), answered in order.
    let mut s = std::net::TcpStream::connect(&fe).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /one HTTP/1.1\r\n{host}\r\nPOST /two HTTP/1.1\r\n{host}Content-Length: 3\r\n\r\nabc").as_bytes())
        .unwrap();
    let want = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n/one 0HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n/two 3";
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < want.len() {
        let n = s.read(&mut buf).expect("both answers");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(String::from_utf8_lossy(&got), want);
    drop(s);

    // What two readers could take differently is refused, and the handler never hears of it.
    let chunked = format!("{host}Transfer-Encoding: chunked\r\n");
    let cases = [
        format!("GET /two-hosts HTTP/1.1\r\n{host}Host: other.localhost\r\n\r\n"),
        format!("POST /two-equal-cl HTTP/1.1\r\n{host}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
        format!("POST /cl-te HTTP/1.1\r\n{chunked}Content-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        format!("POST /bare-lf HTTP/1.1\r\n{chunked}\r\n3\nabc\r\n0\r\n\r\n"),
        format!("POST /minus-one HTTP/1.1\r\n{chunked}\r\n-1\r\nabc\r\n0\r\n\r\n"),
        format!("POST /hex-prefix HTTP/1.1\r\n{chunked}\r\n0x3\r\nabc\r\n0\r\n\r\n"),
        format!("POST /huge HTTP/1.1\r\n{chunked}\r\n1FFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n"),
        // A handshake with a body: the body could be read as the next request.
        format!("GET /ws-body HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 49\r\n\r\nGET /smuggled HTTP/1.1\r\n{host}\r\n"),
    ];
    for raw in &cases {
        let reply = exchange(&fe, raw.as_bytes());
        assert!(
            status(&reply).starts_with("HTTP/1.1 400"),
            "{raw:?}: {}",
            String::from_utf8_lossy(&reply)
        );
        assert_eq!(
            http_get(&fe, "exact.localhost", "/").unwrap().0,
            200,
            "{raw:?}"
        );
    }
    // A well-formed chunked body arrives whole (as an upload file, as in Mongrel2).
    let reply = exchange(
        &fe,
        format!("POST /good-chunks HTTP/1.1\r\n{chunked}\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .as_bytes(),
    );
    assert!(
        reply.is_empty() || status(&reply).starts_with("HTTP/1.1 200"),
        "{reply:?}"
    );
    assert_eq!(http_get(&fe, "exact.localhost", "/marker").unwrap().0, 200);
    let logs = logs_through(&c, "exact", "GOT GET /marker");
    assert!(logs.contains("GOT POST /good-chunks"), "{logs}");
    for path in [
        "/two-hosts",
        "/two-equal-cl",
        "/cl-te",
        "/bare-lf",
        "/minus-one",
        "/hex-prefix",
        "/huge",
        "/ws-body",
        "/smuggled",
    ] {
        assert!(
            !logs.contains(&format!(" {path}")),
            "{path} reached the handler: {logs}"
        );
    }
}
