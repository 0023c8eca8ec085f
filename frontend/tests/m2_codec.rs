//! The Mongrel2 handler wire format (frontend/src/m2) against the facts in
//! shared/MONGREL2.md, plus a real ZMQ round trip through `m2::Connection`.

use std::time::Duration;

use proptest::prelude::*;
use serde_json::{json, Value as J};
use zeroku_frontend::m2::{self, tnetstring, CodecError, HandlerMessage, Protocol, RequestHead};

const UUID: &str = "f400bf85-4538-4f7a-8908-67e313d515c2";

/// The request of the MONGREL2.md example: `curl -H 'X-Dup: one' -H 'X-Dup:
/// two' 'http://127.0.0.1:6767/hello/world?a=1&b=2'`, routed by `/hello`.
fn example_head() -> RequestHead {
    RequestHead {
        method: "GET".into(),
        path: "/hello/world".into(),
        query: Some("a=1&b=2".into()),
        fragment: None,
        uri: "/hello/world?a=1&b=2".into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            ("Host".into(), b"127.0.0.1:6767".to_vec()),
            ("User-Agent".into(), b"curl/7.88.1".to_vec()),
            ("Accept".into(), b"*/*".to_vec()),
            ("X-Dup".into(), b"one".to_vec()),
            ("X-Dup".into(), b"two".to_vec()),
        ],
        remote_addr: "127.0.0.1".into(),
        pattern: "/hello".into(),
        url_scheme: "http".into(),
    }
}

fn headers_of(msg: &[u8]) -> J {
    m2::parse_request(msg).expect("parses").headers
}

fn keys_of(msg: &[u8]) -> Vec<String> {
    // serde_json's Map is sorted; recover the wire order from the JSON text.
    let req = m2::parse_request(msg).unwrap();
    assert_eq!(req.protocol, Protocol::Json);
    let start = msg.iter().position(|&b| b == b'{').unwrap();
    let mut de = serde_json::Deserializer::from_slice(&msg[start..]).into_iter::<J>();
    de.next().unwrap().unwrap();
    let text = std::str::from_utf8(&msg[start..start + de.byte_offset()]).unwrap();
    let mut keys = Vec::new();
    let mut depth = 0;
    let mut chars = text.char_indices().peekable();
    let mut expect_key = false;
    while let Some((_, c)) = chars.next() {
        match c {
            '{' | '[' => {
                depth += 1;
                expect_key = c == '{';
            }
            '}' | ']' => depth -= 1,
            ',' if depth == 1 => expect_key = true,
            '"' => {
                let mut s = String::new();
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            s.push(chars.next().unwrap().1);
                        }
                        '"' => break,
                        c => s.push(c),
                    }
                }
                if expect_key && depth == 1 {
                    keys.push(s);
                }
                expect_key = false;
            }
            _ => {}
        }
    }
    keys
}

#[test]
fn request_example_bytes_exactly() {
    let msg = m2::encode_request(UUID, 1, &example_head(), &[], b"", Protocol::Json);
    // MONGREL2.md shows this message with length prefix 309, but the JSON it
    // shows is 289 bytes long; a netstring's length must match its data, so
    // the prefix here is 289 (everything else is byte for byte the doc's).
    let want = concat!(
        "f400bf85-4538-4f7a-8908-67e313d515c2 1 /hello/world 289:",
        r#"{"PATH":"/hello/world","x-dup":["one","two"],"x-forwarded-for":"127.0.0.1","accept":"*/*","user-agent":"curl/7.88.1","host":"127.0.0.1:6767","METHOD":"GET","VERSION":"HTTP/1.1","URI":"/hello/world?a=1&b=2","QUERY":"a=1&b=2","PATTERN":"/hello","URL_SCHEME":"http","REMOTE_ADDR":"127.0.0.1"}"#,
        ",0:,"
    );
    assert_eq!(String::from_utf8(msg.clone()).unwrap(), want);

    let req = m2::parse_request(&msg).unwrap();
    assert_eq!(req.sender, UUID);
    assert_eq!(req.conn_id, 1);
    assert_eq!(req.path, "/hello/world");
    assert_eq!(req.body, b"");
    assert_eq!(req.header("x-dup"), Some("one"));
    assert_eq!(req.header_values("x-dup"), ["one", "two"]);
    assert_eq!(req.method(), Some("GET"));
    assert!(!req.is_disconnect());
    assert!(!req.should_close());
}

#[test]
fn header_order_is_independent_of_arrival_order() {
    // Mongrel2 emits client headers in its hash table's order, not arrival
    // order; the example's order results from any arrival order.
    let mut head = example_head();
    head.headers.reverse();
    head.headers.swap(0, 1); // keep "one" before "two"
    let msg = m2::encode_request(UUID, 1, &head, &[], b"", Protocol::Json);
    assert_eq!(
        keys_of(&msg),
        [
            "PATH",
            "x-dup",
            "x-forwarded-for",
            "accept",
            "user-agent",
            "host",
            "METHOD",
            "VERSION",
            "URI",
            "QUERY",
            "PATTERN",
            "URL_SCHEME",
            "REMOTE_ADDR"
        ]
    );
}

#[test]
fn body_and_fragment() {
    let mut head = example_head();
    head.method = "POST".into();
    head.fragment = Some("frag".into());
    head.query = None;
    head.uri = "/hello/world".into();
    let msg = m2::encode_request(UUID, 42, &head, &[], b"a=1, b=\0", Protocol::Json);
    assert!(msg.ends_with(b"},8:a=1, b=\0,"));
    let keys = keys_of(&msg);
    assert!(!keys.contains(&"QUERY".to_string()));
    assert_eq!(
        keys[keys.len() - 7..],
        [
            "METHOD",
            "VERSION",
            "URI",
            "FRAGMENT",
            "PATTERN",
            "URL_SCHEME",
            "REMOTE_ADDR"
        ]
    );
    let req = m2::parse_request(&msg).unwrap();
    assert_eq!(req.conn_id, 42);
    assert_eq!(req.body, b"a=1, b=\0");
    assert_eq!(req.header("FRAGMENT"), Some("frag"));
    assert_eq!(req.method(), Some("POST"));
}

#[test]
fn duplicates_become_lists_capped_at_five() {
    let mut head = example_head();
    head.headers = (1..=7)
        .map(|i| ("Cookie".to_string(), format!("c{i}").into_bytes()))
        .collect();
    let h = headers_of(&m2::encode_request(
        UUID,
        1,
        &head,
        &[],
        b"",
        Protocol::Json,
    ));
    assert_eq!(h["cookie"], json!(["c1", "c2", "c3", "c4", "c5"]));
    // Case-insensitive: different spellings are the same header.
    head.headers = vec![
        ("Accept".into(), b"a".to_vec()),
        ("ACCEPT".into(), b"b".to_vec()),
    ];
    let h = headers_of(&m2::encode_request(
        UUID,
        1,
        &head,
        &[],
        b"",
        Protocol::Json,
    ));
    assert_eq!(h["accept"], json!(["a", "b"]));
}

#[test]
fn server_keys_and_forwarded_for_win() {
    let mut head = example_head();
    head.headers
        .push(("X-Forwarded-For".into(), b"6.6.6.6".to_vec()));
    head.headers.push(("Path".into(), b"/evil".to_vec()));
    head.headers.push(("METHOD".into(), b"EVIL".to_vec()));
    let msg = m2::encode_request(UUID, 1, &head, &[], b"", Protocol::Json);
    let h = headers_of(&msg);
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["PATH"], "/hello/world");
    assert_eq!(h["METHOD"], "GET");
    assert_eq!(h["method"], "EVIL"); // lowercased client header, distinct key
                                     // Every key appears once.
    let keys = keys_of(&msg);
    let mut dedup = keys.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), keys.len());
    // The client's x-forwarded-for keeps Mongrel2's slot for that name.
    assert_eq!(keys[2], "x-forwarded-for");
}

#[test]
fn extra_keys_override() {
    let extra = vec![
        ("METHOD".to_string(), "WEBSOCKET".to_string()),
        ("FLAGS".to_string(), "0x81".to_string()),
        (
            "x-mongrel2-upload-start".to_string(),
            "/tmp/up.1".to_string(),
        ),
        ("accept".to_string(), "overridden".to_string()),
        ("QUERY".to_string(), "z=9".to_string()),
    ];
    let msg = m2::encode_request(UUID, 3, &example_head(), &extra, b"hi", Protocol::Json);
    let h = headers_of(&msg);
    assert_eq!(h["METHOD"], "WEBSOCKET");
    assert_eq!(h["FLAGS"], "0x81");
    assert_eq!(h["x-mongrel2-upload-start"], "/tmp/up.1");
    assert_eq!(h["accept"], "overridden");
    assert_eq!(h["QUERY"], "z=9");
    let keys = keys_of(&msg);
    assert_eq!(keys.iter().filter(|k| *k == "METHOD").count(), 1);
    assert_eq!(keys.iter().filter(|k| *k == "accept").count(), 1);
}

#[test]
fn json_is_valid_for_control_chars_and_bad_utf8() {
    let mut head = example_head();
    head.headers = vec![
        ("X-Ctl".into(), b"a\x01b\x1f\tc\"d\\e".to_vec()),
        ("X-Bin".into(), b"\xff\xfeok\xc3".to_vec()),
        ("X-Utf8".into(), "caf\u{e9} \u{1f600}".as_bytes().to_vec()),
    ];
    head.path = "/p\"q\\r".into();
    let msg = m2::encode_request(UUID, 1, &head, &[], b"", Protocol::Json);
    let h = headers_of(&msg);
    assert_eq!(h["x-ctl"], "a\u{1}b\u{1f}\tc\"d\\e");
    assert_eq!(h["x-bin"], "\u{fffd}\u{fffd}ok\u{fffd}");
    assert_eq!(h["x-utf8"], "caf\u{e9} \u{1f600}");
    assert_eq!(h["PATH"], "/p\"q\\r");
}

#[test]
fn tnetstring_protocol() {
    let mut head = example_head();
    head.headers.push(("X-Bin".into(), b"\xff\x00".to_vec()));
    let msg = m2::encode_request(UUID, 7, &head, &[], b"body", Protocol::Tnetstring);
    let prefix = format!("{UUID} 7 /hello/world ");
    assert!(msg.starts_with(prefix.as_bytes()));
    let rest = &msg[prefix.len()..];
    let (dict, body) = tnetstring::decode(rest).unwrap();
    assert_eq!(body, b"4:body,");
    let tnetstring::Value::Dict(pairs) = &dict else {
        panic!("headers are not a dict: {dict:?}")
    };
    let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
    let want: Vec<&[u8]> = vec![
        b"REMOTE_ADDR",
        b"METHOD",
        b"URL_SCHEME",
        b"PATTERN",
        b"QUERY",
        b"URI",
        b"VERSION",
        b"PATH",
        b"host",
        b"user-agent",
        b"accept",
        b"x-forwarded-for",
        b"x-dup",
    ];
    // x-bin lands somewhere among the client headers; drop it for the check.
    let mut got = keys.clone();
    got.retain(|k| *k != b"x-bin");
    assert_eq!(got, want);
    // Raw bytes survive in tnetstrings.
    let bin = pairs.iter().find(|(k, _)| k == b"x-bin").unwrap();
    assert_eq!(bin.1, tnetstring::Value::String(b"\xff\x00".to_vec()));
    let dup = pairs.iter().find(|(k, _)| k == b"x-dup").unwrap();
    assert_eq!(
        dup.1,
        tnetstring::Value::List(vec![
            tnetstring::Value::String(b"one".to_vec()),
            tnetstring::Value::String(b"two".to_vec())
        ])
    );

    // The same keys and values as the JSON encoding (but for the bad bytes).
    let req = m2::parse_request(&msg).unwrap();
    assert_eq!(req.protocol, Protocol::Tnetstring);
    assert_eq!(req.body, b"body");
    let mut json_head = example_head();
    json_head
        .headers
        .push(("X-Bin".into(), b"\xff\x00".to_vec()));
    let j = headers_of(&m2::encode_request(
        UUID,
        7,
        &json_head,
        &[],
        b"body",
        Protocol::Json,
    ));
    assert_eq!(req.headers, j);
}

#[test]
fn disconnect_message() {
    let msg = m2::encode_disconnect(UUID, 17);
    assert_eq!(
        msg,
        format!("{UUID} 17 @* 17:{{\"METHOD\":\"JSON\"}},21:{{\"type\":\"disconnect\"}},")
            .as_bytes()
    );
    let req = m2::parse_request(&msg).unwrap();
    assert_eq!(req.path, "@*");
    assert_eq!(req.conn_id, 17);
    assert!(req.is_disconnect());
    assert_eq!(req.json_body(), Some(json!({"type": "disconnect"})));
}

#[test]
fn reply_example() {
    let body = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nmulti";
    let mut msg = format!("{UUID} 8:20 21 22, ").into_bytes();
    msg.extend_from_slice(body);
    let r = m2::parse_reply(&msg).unwrap();
    assert_eq!(r.uuid, UUID);
    assert_eq!(r.ids, [20, 21, 22]);
    assert_eq!(r.body, body);
    assert_eq!(m2::encode_reply(UUID, &[20, 21, 22], body), msg);

    // Empty body = close; the trailing space may be missing then.
    let close = m2::parse_reply(format!("{UUID} 1:5, ").as_bytes()).unwrap();
    assert_eq!((close.ids, close.body), (vec![5], vec![]));
    let close = m2::parse_reply(format!("{UUID} 1:5,").as_bytes()).unwrap();
    assert_eq!((close.ids, close.body), (vec![5], vec![]));
    // A trailing space in the id list is allowed (Mongrel2's grammar).
    assert_eq!(
        m2::parse_reply(format!("{UUID} 2:5 , x").as_bytes())
            .unwrap()
            .ids,
        [5]
    );
    // 128 ids are fine.
    let ids: Vec<u64> = (0..128).collect();
    assert_eq!(
        m2::parse_reply(&m2::encode_reply(UUID, &ids, b"x"))
            .unwrap()
            .ids,
        ids
    );
}

#[test]
fn control_reply() {
    let value = tnetstring::Value::List(vec![
        tnetstring::Value::String(b"ctl".to_vec()),
        tnetstring::Value::Dict(vec![(b"credits".to_vec(), tnetstring::Value::Int(4))]),
    ]);
    let msg = m2::encode_control(UUID, &[9], &value);
    assert_eq!(
        msg,
        format!("{UUID} 3:X 9, 24:3:ctl,14:7:credits,1:4#}}]").as_bytes()
    );
    assert_eq!(
        m2::parse_handler_message(&msg).unwrap(),
        HandlerMessage::Control {
            uuid: UUID.into(),
            ids: vec![9],
            value
        }
    );
    assert!(matches!(
        m2::parse_reply(&msg),
        Err(CodecError::UnexpectedControl { .. })
    ));
}

#[test]
fn garbage_replies_are_errors() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"nospace".to_vec(),
            "expected space after the sender UUID at byte 7",
        ),
        (
            format!("{UUID} 8:20 21 22 body").into_bytes(),
            "expected ',' ending the netstring at byte 47",
        ),
        (
            format!("{UUID} x:1, b").into_bytes(),
            "connection id list: length at byte 37",
        ),
        (
            format!("{UUID} 99:1, b").into_bytes(),
            "declares 99 bytes but only",
        ),
        (
            format!("{UUID} 3:1 a, b").into_bytes(),
            "invalid connection id (not a decimal u64) at byte 41",
        ),
        (
            format!("{UUID} 2:-1, b").into_bytes(),
            "invalid connection id",
        ),
        (format!("{UUID} 0:, b").into_bytes(), "no ids"),
        (
            format!("{UUID} 3:1  , b").into_bytes(),
            "invalid connection id",
        ),
        (
            format!("{UUID} 1:1,b").into_bytes(),
            "expected space after the connection id list at byte 41",
        ),
        (
            format!("{UUID} 20:99999999999999999999, b").into_bytes(),
            "invalid connection id",
        ),
        (b" 1:1, b".to_vec(), "sender UUID (empty) at byte 0"),
        (b"a\x01b 1:1, b".to_vec(), "not printable ASCII) at byte 1"),
        (
            format!("{UUID} 3:X 1, garbage").into_bytes(),
            "tnetstring length at byte 44",
        ),
    ];
    for (msg, want) in cases {
        let err = m2::parse_reply(&msg).expect_err(&String::from_utf8_lossy(&msg));
        let text = err.to_string();
        assert!(
            text.contains(want),
            "{:?}: {text:?} lacks {want:?}",
            String::from_utf8_lossy(&msg)
        );
    }
    // More than 128 ids.
    let ids: Vec<u64> = (0..129).collect();
    let err = m2::parse_reply(&m2::encode_reply(UUID, &ids, b"x")).unwrap_err();
    assert!(
        matches!(err, CodecError::TooManyIds { count: 129, .. }),
        "{err}"
    );
}

#[test]
fn garbage_requests_are_errors() {
    let cases: Vec<&[u8]> = vec![
        b"",
        b"uuid",
        b"uuid 1",
        b"uuid 1 /p",
        b"uuid x /p 2:{},0:,",
        b"uuid 1 /p 2:{},",
        b"uuid 1 /p 2:{},0:,extra",
        b"uuid 1 /p 3:abc,0:,",
        b"uuid 1 /p 2:[],0:,",
        b"uuid 1 /p 1:1#0:,",
        b"uuid 1 /p 2:{}]0:,",
        b"uuid 1 /p 99:{},0:,",
        b"uuid 1 /p 2:{},5:ab,",
    ];
    for msg in cases {
        assert!(
            m2::parse_request(msg).is_err(),
            "{:?}",
            String::from_utf8_lossy(msg)
        );
    }
}

fn arb_head() -> impl Strategy<Value = RequestHead> {
    let name = "[A-Za-z][A-Za-z0-9-]{0,12}";
    let value = proptest::collection::vec(any::<u8>(), 0..20);
    (
        proptest::collection::vec((name, value), 0..12),
        proptest::option::of("[ -~]{0,10}"),
        "/[ -~]{0,20}",
    )
        .prop_map(|(headers, query, path)| RequestHead {
            method: "GET".into(),
            path: path.replace(' ', "%20"),
            query,
            fragment: None,
            uri: "/".into(),
            version: "HTTP/1.1".into(),
            headers,
            remote_addr: "10.0.0.1".into(),
            pattern: "/".into(),
            url_scheme: "https".into(),
        })
}

proptest! {
    #[test]
    fn parse_reply_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = m2::parse_handler_message(&msg);
    }

    #[test]
    fn parse_reply_never_panics_near_valid(
        ids in "[0-9 X]{0,12}", len in 0usize..15, tail in proptest::collection::vec(any::<u8>(), 0..20)
    ) {
        let mut msg = format!("abc {len}:{ids},").into_bytes();
        msg.extend_from_slice(&tail);
        let _ = m2::parse_handler_message(&msg);
    }

    #[test]
    fn parse_request_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = m2::parse_request(&msg);
    }

    #[test]
    fn parse_request_never_panics_near_valid(
        prefix in "[a-z]{1,3} [0-9]{1,3} /[a-z]{0,3} ", tail in proptest::collection::vec(any::<u8>(), 0..60)
    ) {
        let mut msg = prefix.into_bytes();
        msg.extend_from_slice(&tail);
        let _ = m2::parse_request(&msg);
    }

    #[test]
    fn tnetstring_decode_never_panics(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = tnetstring::decode(&msg);
    }

    #[test]
    fn tnetstring_decode_never_panics_structured(msg in "([0-9]{1,2}:|[,#^!~}\\]a-z0-9]){0,40}") {
        let _ = tnetstring::decode(msg.as_bytes());
    }

    #[test]
    fn reply_round_trip(
        ids in proptest::collection::vec(any::<u64>(), 1..=128),
        body in proptest::collection::vec(any::<u8>(), 0..100),
        uuid in "[A-Za-z0-9-]{1,40}",
    ) {
        let r = m2::parse_reply(&m2::encode_reply(&uuid, &ids, &body)).unwrap();
        prop_assert_eq!(r, m2::Reply { uuid, ids, body });
    }

    #[test]
    fn request_round_trip(
        head in arb_head(),
        id in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..100),
        tnet in any::<bool>(),
    ) {
        let proto = if tnet { Protocol::Tnetstring } else { Protocol::Json };
        let msg = m2::encode_request(UUID, id, &head, &[], &body, proto);
        let req = m2::parse_request(&msg).unwrap();
        prop_assert_eq!(req.protocol, proto);
        prop_assert_eq!(req.conn_id, id);
        prop_assert_eq!(&req.path, &head.path);
        prop_assert_eq!(&req.body, &body);
        prop_assert_eq!(req.header("PATH"), Some(head.path.as_str()));
        prop_assert_eq!(req.header("QUERY"), head.query.as_deref());
        prop_assert_eq!(req.header("x-forwarded-for"), Some("10.0.0.1"));
        for (name, value) in &head.headers {
            let name = name.to_ascii_lowercase();
            if name == "x-forwarded-for" { continue; }
            let got = req.header_values(&name);
            let want = String::from_utf8_lossy(value);
            prop_assert!(got.contains(&want.as_ref()) || got.len() == 5, "{name}: {got:?} lacks {want:?}");
        }
    }

    #[test]
    fn tnetstring_round_trip(v in arb_tnet()) {
        prop_assert_eq!(tnetstring::decode_exact(&v.encode()).unwrap(), v);
    }
}

fn arb_tnet() -> impl Strategy<Value = tnetstring::Value> {
    use tnetstring::Value as V;
    let leaf = prop_oneof![
        Just(V::Null),
        any::<bool>().prop_map(V::Bool),
        any::<i64>().prop_map(V::Int),
        (-1e12f64..1e12).prop_map(V::Float),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(V::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(V::List),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..6), inner), 0..6)
                .prop_map(V::Dict),
        ]
    })
}

/// A real ZMQ round trip: the test binds PUSH and SUB like a server, a
/// `Connection` in another thread answers, the test parses the reply.
#[test]
fn handler_connection_round_trip() {
    let ctx = zmq::Context::new();
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.bind("tcp://127.0.0.1:*").unwrap();
    let send_spec = push.get_last_endpoint().unwrap().unwrap();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.bind("tcp://127.0.0.1:*").unwrap();
    sub.set_subscribe(UUID.as_bytes()).unwrap();
    let recv_spec = sub.get_last_endpoint().unwrap().unwrap();
    // A second, unused frontend: handlers connect to every endpoint listed.
    let other = ctx.socket(zmq::PUSH).unwrap();
    other.bind("tcp://127.0.0.1:*").unwrap();
    let other_spec = other.get_last_endpoint().unwrap().unwrap();

    let send_spec_all = format!("{send_spec} {other_spec}");
    let handler = std::thread::spawn(move || {
        let conn = m2::Connection::new("test-handler", &send_spec_all, &recv_spec).unwrap();
        let mut served = 0;
        loop {
            let Some(req) = conn.recv_timeout(Duration::from_secs(20)).unwrap() else {
                panic!("no request within 20 s");
            };
            if req.is_disconnect() {
                return served;
            }
            if req.path == "/close" {
                conn.close(&req).unwrap();
                continue;
            }
            let body = format!("hello {}", req.path);
            conn.reply_http(
                &req,
                200,
                &[("Content-Type", "text/plain")],
                body.as_bytes(),
            )
            .unwrap();
            served += 1;
        }
    });

    sub.set_rcvtimeo(200).unwrap();
    // PUB/SUB drops messages until the subscription has propagated: retry
    // with a fresh connection id until a reply comes back.
    let mut reply = None;
    for id in 1..=100u64 {
        let msg = m2::encode_request(UUID, id, &example_head(), &[], b"", Protocol::Json);
        push.send(msg, 0).unwrap();
        match sub.recv_bytes(0) {
            Ok(bytes) => {
                reply = Some(bytes);
                break;
            }
            Err(zmq::Error::EAGAIN) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let reply = m2::parse_reply(&reply.expect("a reply within 20 s")).unwrap();
    assert_eq!(reply.uuid, UUID);
    assert_eq!(reply.ids.len(), 1);
    let body = String::from_utf8(reply.body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(
        body.ends_with("Content-Length: 18\r\n\r\nhello /hello/world"),
        "{body}"
    );

    // Now that PUB/SUB is up, one request gives exactly one reply.
    sub.set_rcvtimeo(5000).unwrap();
    let mut head = example_head();
    head.path = "/close".into();
    push.send(
        m2::encode_request(UUID, 555, &head, &[], b"", Protocol::Tnetstring),
        0,
    )
    .unwrap();
    // Skip late replies to the retried requests above.
    let close = loop {
        let r = m2::parse_reply(&sub.recv_bytes(0).unwrap()).unwrap();
        if r.ids != [555] {
            assert!(r.ids[0] <= 100, "{r:?}");
            continue;
        }
        break r;
    };
    assert_eq!(close.body, b"");

    push.send(m2::encode_disconnect(UUID, 1), 0).unwrap();
    assert!(handler.join().unwrap() >= 1);
}

#[test]
fn handler_from_env_requires_specs() {
    // Only checks the error path; the variables are not set in tests.
    if std::env::var_os("M2_SEND_SPEC").is_none() {
        let err = m2::Connection::from_env().unwrap_err();
        assert!(err.to_string().contains("M2_SEND_SPEC"), "{err}");
    }
    let err = m2::Connection::new("x", "", "tcp://127.0.0.1:1").unwrap_err();
    assert!(err.to_string().contains("send_spec"), "{err}");
}
