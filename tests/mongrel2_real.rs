//! Proves the differential-test harness against the REAL Mongrel2 1.12
//! (Debian `mongrel2-core`, installed by scripts/deps.sh): starts Mongrel2
//! with one handler route, puts `tests/m2/capture_handler.py` behind it,
//! sends the scenarios of `mongrel2::requests` and asserts on what the
//! handler received and on the HTTP responses.
//!
//! Fails (does not skip) when Mongrel2 or pyzmq is missing.
//! `M2_WRITE_FIXTURES=1 cargo test --test mongrel2_real` rewrites
//! `tests/m2/fixtures/<protocol>.jsonl` from the run.

#[path = "common/mongrel2.rs"]
mod mongrel2;

use mongrel2::{requests, CaptureHandler, Mongrel2};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const UPLOAD_LIMIT: usize = 4096;

struct Rig {
    m2: Mongrel2,
    h: CaptureHandler,
    _dir: tempfile::TempDir,
    /// (scenario, conn_id) in the order the scenarios ran.
    scenarios: Vec<(String, String)>,
}

impl Rig {
    fn start(protocol: &str) -> Rig {
        let m2 = Mongrel2::start(protocol, Some(UPLOAD_LIMIT))
            .unwrap_or_else(|e| panic!("cannot start the real Mongrel2: {e}"));
        let dir = tempfile::tempdir().unwrap();
        let h = CaptureHandler::start(&m2.send_spec, &m2.recv_spec, &dir.path().join("cap.jsonl"))
            .unwrap_or_else(|e| panic!("cannot start capture_handler.py: {e}\n{}", m2.logs()));
        Rig {
            m2,
            h,
            _dir: dir,
            scenarios: Vec::new(),
        }
    }

    fn port(&self) -> u16 {
        self.m2.http_port
    }

    fn wait(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        self.h
            .wait_for(WAIT, what, pred)
            .unwrap_or_else(|e| panic!("{e}\nmongrel2:\n{}", self.m2.logs()))
    }

    /// Waits for the first record with this request path; returns its
    /// conn_id and remembers it under `scenario`.
    fn conn_of(&mut self, scenario: &str, path: &str) -> String {
        let recs = self.wait(&format!("a message for {path}"), |r| {
            r.iter().any(|x| x["path"] == path)
        });
        let id = recs.iter().find(|x| x["path"] == path).unwrap()["conn_id"]
            .as_str()
            .unwrap()
            .to_string();
        self.scenarios.push((scenario.to_string(), id.clone()));
        id
    }

    /// Waits until connection `id` has `n` records of kind `kind`.
    fn wait_kind(&self, id: &str, kind: &str, n: usize) -> Vec<Value> {
        self.wait(&format!("{n} {kind} message(s) for conn {id}"), |r| {
            r.iter()
                .filter(|x| x["conn_id"] == id && x["kind"] == kind)
                .count()
                >= n
        });
        self.h.for_conn(id)
    }

    fn expected_disconnect(&self, id: &str) -> String {
        format!(
            "{} {id} @* 17:{{\"METHOD\":\"JSON\"}},21:{{\"type\":\"disconnect\"}},",
            self.m2.sender_uuid
        )
    }

    fn assert_disconnect(&self, rec: &Value, id: &str) {
        assert_eq!(rec["kind"], "disconnect", "{rec}");
        assert_eq!(rec["path"], "@*");
        assert_eq!(rec["headers"], json!({"METHOD": "JSON"}));
        assert_eq!(mongrel2::body(rec), br#"{"type":"disconnect"}"#);
        if self.m2.protocol == "json" {
            assert_eq!(
                String::from_utf8_lossy(&mongrel2::raw(rec)),
                self.expected_disconnect(id)
            );
        }
    }

    /// With M2_WRITE_FIXTURES=1, writes every record, tagged with its
    /// scenario, to tests/m2/fixtures/<protocol>.jsonl.
    fn write_fixtures(&self) {
        if std::env::var("M2_WRITE_FIXTURES").ok().as_deref() != Some("1") {
            return;
        }
        let dir = mongrel2::m2_file("fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let mut out = String::new();
        for mut r in self.h.records() {
            let sc = self
                .scenarios
                .iter()
                .find(|(_, id)| r["conn_id"] == id.as_str())
                .map(|(s, _)| s.as_str())
                .unwrap_or("unknown");
            r["scenario"] = json!(sc);
            r.as_object_mut().unwrap().remove("t");
            out.push_str(&serde_json::to_string(&r).unwrap());
            out.push('\n');
        }
        std::fs::write(dir.join(format!("{}.jsonl", self.m2.protocol)), out).unwrap();
    }
}

fn h<'a>(rec: &'a Value, key: &str) -> &'a Value {
    &rec["headers"][key]
}

/// The server keys and client headers every HTTP request carries.
fn assert_request_common(rec: &Value, method: &str, path: &str, uri: &str) {
    assert_eq!(h(rec, "METHOD"), method, "{rec}");
    assert_eq!(h(rec, "PATH"), path);
    assert_eq!(rec["path"], path);
    assert_eq!(h(rec, "URI"), uri);
    assert_eq!(h(rec, "VERSION"), "HTTP/1.1");
    assert_eq!(h(rec, "PATTERN"), "/");
    assert_eq!(h(rec, "URL_SCHEME"), "http");
    assert_eq!(h(rec, "REMOTE_ADDR"), "127.0.0.1");
    assert_eq!(h(rec, "x-forwarded-for"), "127.0.0.1");
    assert_eq!(h(rec, "host"), "localhost");
    assert_eq!(rec["sender"], mongrel2::SENDER_UUID);
    let server_keys = [
        "PATH",
        "METHOD",
        "VERSION",
        "URI",
        "QUERY",
        "FRAGMENT",
        "PATTERN",
        "URL_SCHEME",
        "REMOTE_ADDR",
        "FLAGS",
    ];
    for k in rec["headers"].as_object().expect("headers object").keys() {
        assert!(
            server_keys.contains(&k.as_str()) || *k == k.to_ascii_lowercase(),
            "header key {k:?} neither a server key nor lowercase: {rec}"
        );
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(data)?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string()
}

// ------------------------------------------------------------------ scenarios

fn scenario_get(rig: &mut Rig) {
    let (s, resp) = mongrel2::http_exchange(rig.port(), requests::GET).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok /hello/world");
    let id = rig.conn_of("get", "/hello/world");
    let recs = rig.h.for_conn(&id);
    let rec = &recs[0];
    assert_eq!(rec["kind"], "request");
    assert_request_common(rec, "GET", "/hello/world", "/hello/world?a=1&b=two%20words");
    assert_eq!(h(rec, "QUERY"), "a=1&b=two%20words");
    assert!(rec["headers"].get("FRAGMENT").is_none());
    assert_eq!(h(rec, "x-dup"), &json!(["one", "two"]));
    assert_eq!(h(rec, "x-mixed-case"), "Value");
    assert_eq!(h(rec, "user-agent"), "m2-diff/1");
    assert_eq!(h(rec, "accept"), "*/*");
    assert_eq!(rec["body_len"], 0);
    let raw = mongrel2::raw(rec);
    let prefix = format!("{} {id} /hello/world ", mongrel2::SENDER_UUID);
    assert!(raw.starts_with(prefix.as_bytes()), "{rec}");
    if rig.m2.protocol == "json" {
        assert_eq!(rec["headers_encoding"], "json");
        assert!(raw.ends_with(b"},0:,"), "{}", String::from_utf8_lossy(&raw));
    } else {
        assert_eq!(rec["headers_encoding"], "tnetstring");
        assert!(raw.ends_with(b"}0:,"), "{}", String::from_utf8_lossy(&raw));
    }
    // The client closing its keep-alive connection is a disconnect too.
    drop(s);
    let recs = rig.wait_kind(&id, "disconnect", 1);
    assert_eq!(recs.len(), 2, "{recs:?}");
    rig.assert_disconnect(&recs[1], &id);
}

fn scenario_post(rig: &mut Rig) {
    let (_s, resp) = mongrel2::http_exchange(rig.port(), requests::POST).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"ok /submit");
    let id = rig.conn_of("post", "/submit");
    let rec = &rig.h.for_conn(&id)[0];
    assert_eq!(rec["kind"], "request");
    assert_request_common(rec, "POST", "/submit", "/submit");
    assert!(rec["headers"].get("QUERY").is_none());
    assert_eq!(h(rec, "content-length"), "24");
    assert_eq!(h(rec, "content-type"), "application/x-www-form-urlencoded");
    assert_eq!(mongrel2::body(rec), requests::POST_BODY);
    assert_eq!(rec["body_len"], 24);
}

/// Checks an upload-start/upload-done pair and returns the temp file path.
fn assert_upload(rig: &Rig, id: &str, method: &str, path: &str, data: &[u8]) -> String {
    let recs = rig.wait_kind(id, "upload-done", 1);
    let (start, done) = (&recs[0], &recs[1]);
    assert_eq!(start["kind"], "upload-start", "{recs:?}");
    assert_eq!(done["kind"], "upload-done");
    for r in [start, done] {
        assert_request_common(r, method, path, path);
        assert_eq!(r["body_len"], 0);
    }
    let file = h(start, "x-mongrel2-upload-start")
        .as_str()
        .unwrap()
        .to_string();
    assert!(start["headers"].get("x-mongrel2-upload-done").is_none());
    assert_eq!(h(done, "x-mongrel2-upload-start"), file.as_str());
    assert_eq!(h(done, "x-mongrel2-upload-done"), file.as_str());
    assert!(
        file.starts_with(&format!("{}/upload.", rig.m2.upload_dir.display())),
        "{file}"
    );
    assert_eq!(start["replies_b64"], json!([]));
    let uf = &done["upload_file"];
    assert_eq!(uf["exists"], true, "{done}");
    assert_eq!(uf["size"], data.len());
    assert_eq!(uf["sha256"], sha256_hex(data));
    file
}

fn scenario_chunked(rig: &mut Rig) {
    let (_s, resp) = mongrel2::http_exchange(rig.port(), requests::CHUNKED).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"uploaded 12");
    let id = rig.conn_of("chunked", "/chunked");
    let file = assert_upload(rig, &id, "POST", "/chunked", b"hello, world");
    let recs = rig.h.for_conn(&id);
    assert_eq!(h(&recs[0], "transfer-encoding"), "chunked");
    assert!(recs[0]["headers"].get("content-length").is_none());
    // Mongrel2 never deletes upload files (zeroku does: documented difference).
    assert!(std::path::Path::new(&file).exists());
}

fn scenario_limit(rig: &mut Rig) {
    // Exactly the limit: still inline.
    let req = requests::large_post("/limit/at", UPLOAD_LIMIT);
    let (_s, resp) = mongrel2::http_exchange(rig.port(), &req).unwrap();
    assert_eq!(resp.body, b"ok /limit/at");
    let id = rig.conn_of("limit-at", "/limit/at");
    let rec = &rig.h.for_conn(&id)[0];
    assert_eq!(rec["kind"], "request");
    assert_eq!(rec["body_len"], UPLOAD_LIMIT);
    // One byte over: upload-start/done.
    let req = requests::large_post("/limit/over", UPLOAD_LIMIT + 1);
    let (_s, resp) = mongrel2::http_exchange(rig.port(), &req).unwrap();
    assert_eq!(
        resp.body,
        format!("uploaded {}", UPLOAD_LIMIT + 1).as_bytes()
    );
    let id = rig.conn_of("limit-over", "/limit/over");
    let body = &req[req.len() - UPLOAD_LIMIT - 1..];
    assert_upload(rig, &id, "POST", "/limit/over", body);
    assert_eq!(
        h(&rig.h.for_conn(&id)[0], "content-length"),
        (UPLOAD_LIMIT + 1).to_string().as_str()
    );
}

fn scenario_large(rig: &mut Rig) {
    let n = 300_000;
    let req = requests::large_post("/large", n);
    let (_s, resp) = mongrel2::http_exchange(rig.port(), &req).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, format!("uploaded {n}").as_bytes());
    let id = rig.conn_of("large", "/large");
    assert_upload(rig, &id, "POST", "/large", &req[req.len() - n..]);
}

fn scenario_websocket(rig: &mut Rig) -> String {
    let mut s = mongrel2::connect(rig.port());
    s.write_all(requests::WS_HANDSHAKE).unwrap();
    let resp = mongrel2::read_response(&mut s).unwrap();
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some(requests::WS_ACCEPT)
    );
    let id = rig.conn_of("websocket", "/ws/chat");

    s.write_all(&mongrel2::ws_client_frame(
        0x1,
        b"hello zeroku",
        requests::WS_MASK,
    ))
    .unwrap();
    assert_eq!(
        mongrel2::ws_read_frame(&mut s).unwrap(),
        (0x81, b"hello zeroku".to_vec())
    );
    // A fragmented message arrives reassembled, FLAGS of the first frame + FIN.
    let mut frag = mongrel2::ws_client_frame(0x1, b"frag", requests::WS_MASK);
    frag[0] = 0x01; // no FIN
    frag.extend(mongrel2::ws_client_frame(0x0, b"ment", requests::WS_MASK));
    s.write_all(&frag).unwrap();
    assert_eq!(
        mongrel2::ws_read_frame(&mut s).unwrap(),
        (0x81, b"fragment".to_vec())
    );
    // Close: the handler answers with a close frame, then an empty reply.
    s.write_all(&mongrel2::ws_client_frame(
        0x8,
        &[0x03, 0xe8],
        requests::WS_MASK,
    ))
    .unwrap();
    assert_eq!(
        mongrel2::ws_read_frame(&mut s).unwrap(),
        (0x88, vec![0x03, 0xe8])
    );
    mongrel2::wait_eof(&mut s, WAIT).unwrap();

    let recs = rig.wait_kind(&id, "websocket", 3);
    let (hs, f1, f2, f3) = (&recs[0], &recs[1], &recs[2], &recs[3]);
    assert_eq!(hs["kind"], "websocket_handshake");
    assert_request_common(hs, "WEBSOCKET_HANDSHAKE", "/ws/chat", "/ws/chat");
    assert_eq!(mongrel2::body(hs), requests::WS_ACCEPT.as_bytes());
    assert_eq!(h(hs, "upgrade"), "websocket");
    assert_eq!(h(hs, "connection"), "Upgrade");
    assert_eq!(h(hs, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(h(hs, "sec-websocket-version"), "13");
    assert_eq!(h(hs, "origin"), "http://localhost");
    assert!(hs["headers"].get("FLAGS").is_none());
    for (f, flags, body) in [
        (f1, "0x81", &b"hello zeroku"[..]),
        (f2, "0x81", &b"fragment"[..]),
        (f3, "0x88", &[0x03, 0xe8][..]),
    ] {
        assert_eq!(f["kind"], "websocket");
        // Frames repeat the handshake's headers, METHOD=WEBSOCKET, + FLAGS.
        assert_request_common(f, "WEBSOCKET", "/ws/chat", "/ws/chat");
        assert_eq!(h(f, "sec-websocket-key"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(h(f, "FLAGS"), flags);
        assert_eq!(mongrel2::body(f), body);
    }
    id
}

fn scenario_disconnects(rig: &mut Rig) {
    // 1. The client leaves while its request is with the handler.
    let mut s = mongrel2::connect(rig.port());
    s.write_all(requests::NOREPLY).unwrap();
    let id = rig.conn_of("disconnect-waiting", "/noreply/1");
    drop(s);
    let recs = rig.wait_kind(&id, "disconnect", 1);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["kind"], "request");
    rig.assert_disconnect(&recs[1], &id);

    // 2. ... and the handler replies later: a second disconnect (reply to a
    // dead connection id).
    let mut s = mongrel2::connect(rig.port());
    s.write_all(requests::DELAYED).unwrap();
    let id = rig.conn_of("disconnect-then-reply", "/delay/1000/x");
    drop(s);
    let recs = rig.wait_kind(&id, "disconnect", 2);
    assert_eq!(recs.len(), 3, "{recs:?}");
    rig.assert_disconnect(&recs[1], &id);
    rig.assert_disconnect(&recs[2], &id);

    // 3. The client leaves in the middle of a large upload: upload-start,
    // then a disconnect; Mongrel2 deletes the partial temp file.
    let req = requests::large_post("/upload-aborted", 50_000);
    let mut s = mongrel2::connect(rig.port());
    s.write_all(&req[..req.len() - 40_000]).unwrap();
    let id = rig.conn_of("disconnect-mid-upload", "/upload-aborted");
    drop(s);
    let recs = rig.wait_kind(&id, "disconnect", 1);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[0]["kind"], "upload-start");
    rig.assert_disconnect(&recs[1], &id);
    let file = h(&recs[0], "x-mongrel2-upload-start").as_str().unwrap();
    assert!(!std::path::Path::new(file).exists(), "{file} left behind");

    // 4. The client leaves before its request is complete (head, or a
    // small body): the handler hears nothing at all.
    let mut s = mongrel2::connect(rig.port());
    s.write_all(requests::PARTIAL_HEAD).unwrap();
    drop(s);
    let mut s = mongrel2::connect(rig.port());
    s.write_all(
        b"POST /partial-body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nonly ten b",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(s);
}

/// A request after everything else, so that anything the earlier scenarios
/// provoked has been delivered before we assert on its absence.
fn barrier(rig: &mut Rig) {
    let (_s, resp) = mongrel2::http_exchange(
        rig.port(),
        b"GET /barrier HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .unwrap();
    assert_eq!(resp.body, b"ok /barrier");
    rig.conn_of("barrier", "/barrier");
}

#[test]
fn real_mongrel2_json() {
    let mut rig = Rig::start("json");
    scenario_get(&mut rig);
    scenario_post(&mut rig);
    scenario_chunked(&mut rig);
    scenario_limit(&mut rig);
    scenario_large(&mut rig);
    let ws = scenario_websocket(&mut rig);
    scenario_disconnects(&mut rig);
    barrier(&mut rig);

    let all = rig.h.records();
    for r in &all {
        assert_ne!(r["kind"], "unparsed", "{r}");
        assert!(r.get("headers_error").is_none(), "{r}");
        assert_ne!(r["path"], "/partial-head", "{r}");
        assert_ne!(r["path"], "/partial-body", "{r}");
    }
    // A connection the handler closed itself (WebSocket close answered with
    // an empty reply) gets no disconnect message.
    assert!(
        !rig.h
            .for_conn(&ws)
            .iter()
            .any(|r| r["kind"] == "disconnect"),
        "{:?}",
        rig.h.for_conn(&ws)
    );
    rig.write_fixtures();
}

#[test]
fn real_mongrel2_tnetstring() {
    let mut rig = Rig::start("tnetstring");
    scenario_get(&mut rig);
    scenario_post(&mut rig);
    scenario_chunked(&mut rig);
    let _ = scenario_websocket(&mut rig);
    // Only the first case of the disconnect scenarios, then a barrier.
    let mut s: TcpStream = mongrel2::connect(rig.port());
    s.write_all(requests::NOREPLY).unwrap();
    let id = rig.conn_of("disconnect-waiting", "/noreply/1");
    drop(s);
    let recs = rig.wait_kind(&id, "disconnect", 1);
    rig.assert_disconnect(&recs[1], &id);
    barrier(&mut rig);
    for r in rig.h.records() {
        assert!(r.get("headers_error").is_none(), "{r}");
        if r["kind"] != "disconnect" {
            assert_eq!(r["headers_encoding"], "tnetstring", "{r}");
        }
    }
    rig.write_fixtures();
}
