//! The contract test: the same HTTP requests, byte for byte, to the real
//! Mongrel2 1.12 and to zeroku's frontend, with ONE unmodified capturing
//! handler process connected to both (tests/m2/capture_handler.py). The
//! messages the handler receives must match field by field and in order,
//! except for the sender UUID, connection ids and upload temp file names.
//! Where the handler ends a connection (an empty reply), what the client
//! receives must match too: byte for byte for a response the handler wrote
//! whole (its header case and order, nothing added) and for bytes it sent
//! past a complete response; status, body and the close for the rest.
//! A request whose body never arrives whole reaches neither handler, and
//! zeroku sends no disconnect for a connection the handler never heard of.

mod common;
#[path = "common/mongrel2.rs"]
mod mongrel2;

use common::*;
use mongrel2::{requests, CaptureHandler, Mongrel2};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

/// Bodies above this are uploads on both sides.
const UPLOAD_LIMIT: usize = 20480;

/// The header block of a request message, as raw text.
fn header_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw).into_owned();
    let mut it = text.splitn(4, ' ');
    let (_uuid, _id, _path, rest) = (it.next(), it.next(), it.next(), it.next().unwrap_or(""));
    let (len, rest) = rest.split_once(':').unwrap_or(("0", ""));
    let len: usize = len.parse().unwrap_or(0);
    rest.get(..len).unwrap_or(rest).to_string()
}

/// What may legitimately differ: upload temp file names.
fn normalize(headers: &str, parsed: &Value) -> String {
    let mut h = headers.to_string();
    for k in ["x-mongrel2-upload-start", "x-mongrel2-upload-done"] {
        if let Some(p) = parsed[k].as_str() {
            // (as a tnetstring the name's length comes first)
            h = h
                .replace(&format!("{}:{p}", p.len()), "<upload>")
                .replace(p, "<upload>");
        }
    }
    h
}

/// The scenario bytes with the app's host: zeroku routes by Host, and
/// Mongrel2 sends any host to its default host, so both get the same bytes.
fn h(req: &[u8]) -> Vec<u8> {
    let text =
        String::from_utf8_lossy(req).replacen("Host: localhost\r\n", "Host: diff.localhost\r\n", 1);
    text.into_bytes()
}

/// Sends `req` and reads until the server closes: everything the client got.
fn until_closed(port: u16, req: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut s = mongrel2::connect(port);
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// What a client makes of a response read to the close: status, body
/// (de-chunked), and nothing else.
fn client_view(raw: &[u8]) -> (String, Vec<u8>) {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (text.into_owned(), Vec::new());
    };
    let status = head.lines().next().unwrap_or("").to_string();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut out = Vec::new();
    if chunked {
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&after.as_bytes()[..n.min(after.len())]);
            rest = after.get(n + 2..).unwrap_or("");
        }
    } else {
        out.extend_from_slice(body.as_bytes());
    }
    (status, out)
}

/// Runs one scenario against a server's HTTP port; for the scenarios whose
/// client side is compared, what the client received.
fn run(name: &str, port: u16) -> Option<Vec<u8>> {
    match name {
        "empty" => return Some(until_closed(port, &h(requests::EMPTY))),
        "close" | "extra" => {
            let req = format!("GET /{name}/1 HTTP/1.1\r\nHost: localhost\r\n\r\n");
            return Some(until_closed(port, &h(req.as_bytes())));
        }
        "unfinished" => {
            let mut s = mongrel2::connect(port);
            s.write_all(&h(requests::UNFINISHED)).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(s);
        }
        "get" => {
            mongrel2::http_exchange(port, &h(requests::GET)).unwrap();
        }
        "post" => {
            mongrel2::http_exchange(port, &h(requests::POST)).unwrap();
        }
        "chunked" => {
            mongrel2::http_exchange(port, &h(requests::CHUNKED)).unwrap();
        }
        "large" => {
            mongrel2::http_exchange(port, &h(&requests::large_post("/large", 3 * UPLOAD_LIMIT)))
                .unwrap();
        }
        "ws" => {
            let (mut s, resp) = mongrel2::http_exchange(port, &h(requests::WS_HANDSHAKE)).unwrap();
            assert_eq!(resp.status, 101, "{name} on {port}");
            s.write_all(&mongrel2::ws_client_frame(
                1,
                b"hello zeroku",
                requests::WS_MASK,
            ))
            .unwrap();
            let (op, payload) = mongrel2::ws_read_frame(&mut s).unwrap();
            assert_eq!((op, payload.as_slice()), (0x81, &b"hello zeroku"[..]));
            // A fragmented message arrives reassembled.
            let mut first = mongrel2::ws_client_frame(1, b"frag", requests::WS_MASK);
            first[0] = 0x01;
            s.write_all(&first).unwrap();
            s.write_all(&mongrel2::ws_client_frame(0, b"mented", requests::WS_MASK))
                .unwrap();
            let (_, payload) = mongrel2::ws_read_frame(&mut s).unwrap();
            assert_eq!(payload, b"fragmented");
        }
        "noreply" => {
            // The client leaves while its request waits: a disconnect.
            let mut s = mongrel2::connect(port);
            s.write_all(&h(requests::NOREPLY)).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(s);
        }
        other => panic!("no scenario {other}"),
    }
    None
}

#[test]
fn zeroku_sends_handlers_exactly_what_mongrel2_sends() {
    differential("json");
}

#[test]
fn zeroku_sends_handlers_exactly_what_mongrel2_sends_with_tnetstring_headers() {
    differential("tnetstring");
}

fn differential(protocol: &str) {
    let m2 = Mongrel2::start(protocol, Some(UPLOAD_LIMIT))
        .expect("the real Mongrel2 (mongrel2-core) must run here");
    let mut c = TestCluster::start_with(&format!(
        "{TEST_CONFIG}\n[frontend]\nupload_threshold_bytes = {UPLOAD_LIMIT}\nhold_ms = 5000\n"
    ));
    c.add_worker("w1", 33800);
    let fe = c.add_frontend("edge1");
    let fe_port: u16 = fe.rsplit(':').next().unwrap().parse().unwrap();
    c.deploy("diff", &[("Procfile", "handler: sleep 100000\n")]);
    c.cli_ok(&["ps:scale", "-a", "diff", "handler=0"]).unwrap();
    c.cli_ok(&[
        "apps:settings",
        "-a",
        "diff",
        &format!("m2_protocol={protocol}"),
    ])
    .unwrap();
    let routes: Value = eventually(Duration::from_secs(10), "the handler route", || {
        let app = c.app_route("diff")?;
        if app["handler"]["protocol"] == protocol {
            Ok(app)
        } else {
            Err(app.to_string())
        }
    });
    assert!(routes["handler"]["send_port"].is_number(), "{routes}");
    // The handler is on the frontend's host: it reaches it over ipc://.
    let (zk_send, zk_recv) = c.handler_ipc("edge1", "diff");

    let out = c.dir.path().join("capture.jsonl");
    let h = CaptureHandler::start(
        &format!("{} {zk_send}", m2.send_spec),
        &format!("{} {zk_recv}", m2.recv_spec),
        &out,
    )
    .expect("capture handler");
    // Both servers see the handler.
    eventually(
        Duration::from_secs(10),
        "zeroku reaches the handler",
        || {
            let r = http_get(&fe, "diff.localhost", "/probe")?;
            if r.0 == 200 {
                Ok(())
            } else {
                Err(format!("{r:?}"))
            }
        },
    );
    let probe_records = h.records().len();

    let scenarios = [
        "get",
        "post",
        "chunked",
        "large",
        "ws",
        "noreply",
        "empty",
        "close",
        "extra",
        "unfinished",
    ];
    // What the client gets byte for byte, where the handler wrote it all.
    let exact = ["close", "extra"];
    for name in scenarios {
        let m2_saw = run(name, m2.http_port);
        let zk_saw = run(name, fe_port);
        if let (Some(a), Some(b)) = (m2_saw, zk_saw) {
            if exact.contains(&name) {
                assert!(
                    String::from_utf8_lossy(&a).contains(&format!("ok /{name}/1")),
                    "{name}: mongrel2 sent {:?}",
                    String::from_utf8_lossy(&a)
                );
                assert_eq!(
                    String::from_utf8_lossy(&a),
                    String::from_utf8_lossy(&b),
                    "{name}: the client's bytes differ"
                );
            }
            assert_eq!(
                client_view(&a),
                client_view(&b),
                "{name}: the client got\n m2: {:?}\n zk: {:?}",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            );
        }
    }
    // Disconnect notices come last; give both servers a moment.
    let m2_uuid = m2.sender_uuid.clone();
    let split = || {
        // (a late answer to a retried probe is not a scenario)
        let recs: Vec<Value> = h
            .records()
            .into_iter()
            .skip(probe_records)
            .filter(|r| r["path"] != "/probe")
            .collect();
        let (a, b): (Vec<Value>, Vec<Value>) = recs
            .into_iter()
            .partition(|r| r["sender"] == m2_uuid.as_str());
        (a, b)
    };
    // Requests must match one for one, in order. Disconnect notices are
    // timing-dependent in number (Mongrel2 sends one per reply to a gone
    // client, and for its own readiness probes): each connection that got
    // requests must get at least one, in the same format, on both sides.
    let is_disc = |r: &Value| r["path"] == "@*";
    // (connections the handler closed itself, with an empty reply)
    let closed_by_handler = |r: &Value| {
        let p = r["path"].as_str().unwrap_or("");
        ["/empty", "/close", "/extra"]
            .iter()
            .any(|x| p.starts_with(x))
    };
    let (m2_recs, zk_recs) = eventually(Duration::from_secs(10), "both servers' messages", || {
        let (a, b) = split();
        let reqs = |v: &[Value]| {
            v.iter()
                .filter(|r| !is_disc(r))
                .cloned()
                .collect::<Vec<_>>()
        };
        // (A connection the handler closed itself, with an empty reply, is
        // not reported back to it.)
        let answered = |v: &[Value]| {
            let ids: std::collections::BTreeSet<String> = v
                .iter()
                .filter(|r| !is_disc(r))
                .filter(|r| !closed_by_handler(r))
                .filter_map(|r| r["conn_id"].as_str().map(String::from))
                .collect();
            ids.iter()
                .all(|id| v.iter().any(|r| is_disc(r) && r["conn_id"] == id.as_str()))
        };
        let (ra, rb) = (reqs(&a), reqs(&b));
        if ra.len() == rb.len() && answered(&a) && answered(&b) {
            Ok((a, b))
        } else {
            let show = |v: &[Value]| {
                v.iter()
                    .map(|r| {
                        format!(
                            "{}:{}:{}",
                            r["conn_id"].as_str().unwrap_or("?"),
                            r["path"].as_str().unwrap_or("?"),
                            r["headers"]["METHOD"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let all = h.records();
            let senders: std::collections::BTreeSet<String> =
                all.iter().map(|r| format!("{}", r["sender"])).collect();
            let summary = format!(
                "{} records, senders {senders:?}, mongrel2 is {m2_uuid}",
                all.len()
            );
            Err(format!(
                "\n m2: {}\n zk: {}\n capture: {}",
                show(&a),
                show(&b),
                summary
            ))
        }
    });
    let disc_text = |v: &[Value]| {
        v.iter()
            .filter(|r| is_disc(r))
            .map(|r| (header_text(&mongrel2::raw(r)), mongrel2::body(r)))
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(
        disc_text(&m2_recs),
        disc_text(&zk_recs),
        "disconnect notices differ"
    );
    // A request whose body never arrived whole reaches neither handler, and
    // zeroku tells its handler of no connection it never had a request from.
    for (who, v) in [("mongrel2", &m2_recs), ("zeroku", &zk_recs)] {
        assert!(
            v.iter().all(|r| r["path"] != "/unfinished/1"),
            "{who} passed on an unfinished request"
        );
    }
    // (from every record of zeroku's, the probes' included)
    let all = h.records();
    let zk_ids: std::collections::BTreeSet<&str> = all
        .iter()
        .filter(|r| r["sender"] != m2_uuid.as_str() && !is_disc(r))
        .filter_map(|r| r["conn_id"].as_str())
        .collect();
    let closed_conns = |v: &[Value]| -> std::collections::BTreeSet<String> {
        v.iter()
            .filter(|r| closed_by_handler(r))
            .filter_map(|r| r["conn_id"].as_str().map(String::from))
            .collect()
    };
    // (Mongrel2 itself sometimes does, when the client's close races the
    // handler's: only zeroku is held to it.)
    let closed = closed_conns(&zk_recs);
    assert!(
        !zk_recs
            .iter()
            .any(|r| is_disc(r) && closed.contains(r["conn_id"].as_str().unwrap_or(""))),
        "zeroku told the handler of a connection it closed itself"
    );
    for d in zk_recs.iter().filter(|r| is_disc(r)) {
        let id = d["conn_id"].as_str().unwrap_or("?");
        assert!(
            zk_ids.contains(id),
            "zeroku sent a disconnect for connection {id}, which never had a request"
        );
    }
    let m2_recs: Vec<Value> = m2_recs.into_iter().filter(|r| !is_disc(r)).collect();
    let zk_recs: Vec<Value> = zk_recs.into_iter().filter(|r| !is_disc(r)).collect();
    assert_eq!(
        m2_recs.len(),
        13,
        "scenarios sent {} requests through Mongrel2",
        m2_recs.len()
    );

    let mut mismatches = Vec::new();
    for (i, (m, z)) in m2_recs.iter().zip(&zk_recs).enumerate() {
        let (mh, zh) = (mongrel2::raw(m), mongrel2::raw(z));
        let mt = normalize(&header_text(&mh), &m["headers"]);
        let zt = normalize(&header_text(&zh), &z["headers"]);
        if m["path"] != z["path"] || mt != zt || mongrel2::body(m) != mongrel2::body(z) {
            mismatches.push(format!(
                "message {i} ({}):\n  mongrel2: {mt}\n  zeroku:   {zt}\n  bodies {} / {} bytes",
                m["path"],
                mongrel2::body(m).len(),
                mongrel2::body(z).len()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} differences:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
