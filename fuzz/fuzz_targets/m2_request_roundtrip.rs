//! Fuzzes the request encoder against its decoder: any request head the
//! frontend can hand a handler (`m2::codec::encode_request`, JSON or
//! tnetstring headers) must parse back with `m2::codec::parse_request` to
//! exactly what was sent.
//!
//! The input is turned into a request by `arbitrary`, within what the
//! frontend guarantees: a server UUID of printable ASCII without spaces and a
//! non-empty path without spaces (hyper refuses spaces in a request target);
//! method, headers and bodies are any bytes.
//!
//! Must hold: no panic; the message parses; sender, connection id, path, body
//! and protocol come back unchanged; the headers are exactly the model of
//! what Mongrel2 sends: client names lowercased, a repeated name a list of its
//! first 5 values, `x-forwarded-for` the peer address, the extra keys on top,
//! and the server keys (`PATH`, `METHOD`, ...); bytes that are not UTF-8 read
//! as U+FFFD.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value as J};
use zeroku_frontend::m2::codec::{encode_request, parse_request, Protocol, RequestHead};

#[derive(Debug, Arbitrary)]
struct Input {
    uuid: String,
    conn_id: u64,
    method: String,
    path: String,
    query: Option<String>,
    fragment: Option<String>,
    uri: String,
    http10: bool,
    headers: Vec<(String, Vec<u8>)>,
    remote_addr: String,
    pattern: String,
    https: bool,
    extra: Vec<(Extra, String)>,
    body: Vec<u8>,
    tnetstring: bool,
}

/// The keys the frontend adds (`edge.rs`), and any other lowercase name.
#[derive(Debug, Arbitrary)]
enum Extra {
    Method,
    Flags,
    UploadStart,
    UploadDone,
    Other(String),
}

fn lossy(b: &[u8]) -> J {
    J::String(String::from_utf8_lossy(b).into_owned())
}

fn no_space(s: String, default: &str) -> String {
    let s: String = s.chars().filter(|&c| c != ' ').collect();
    if s.is_empty() {
        default.to_string()
    } else {
        s
    }
}

fuzz_target!(|input: Input| {
    let uuid: String = input
        .uuid
        .chars()
        .filter(|c| ('!'..='~').contains(c))
        .collect();
    let uuid = if uuid.is_empty() {
        "u".to_string()
    } else {
        uuid
    };
    let head = RequestHead {
        method: input.method,
        path: no_space(input.path, "/"),
        query: input.query,
        fragment: input.fragment,
        uri: input.uri,
        version: if input.http10 { "HTTP/1.0" } else { "HTTP/1.1" }.into(),
        headers: input.headers,
        remote_addr: input.remote_addr,
        pattern: input.pattern,
        url_scheme: if input.https { "https" } else { "http" }.into(),
    };
    let extra: Vec<(String, String)> = input
        .extra
        .into_iter()
        .map(|(k, v)| {
            let k = match k {
                Extra::Method => "METHOD".to_string(),
                Extra::Flags => "FLAGS".to_string(),
                Extra::UploadStart => "x-mongrel2-upload-start".to_string(),
                Extra::UploadDone => "x-mongrel2-upload-done".to_string(),
                Extra::Other(k) => k.to_ascii_lowercase(),
            };
            (k, v)
        })
        .collect();
    let proto = if input.tnetstring {
        Protocol::Tnetstring
    } else {
        Protocol::Json
    };

    let msg = encode_request(&uuid, input.conn_id, &head, &extra, &input.body, proto);
    let req = match parse_request(&msg) {
        Ok(r) => r,
        Err(e) => panic!("an encoded request does not parse: {e}"),
    };
    assert_eq!(req.sender, uuid);
    assert_eq!(req.conn_id, input.conn_id);
    assert_eq!(req.path, head.path);
    assert_eq!(req.body, input.body);
    assert_eq!(req.protocol, proto);

    // The model: client headers, then x-forwarded-for, then the extra keys.
    let mut model: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    let mut set = |name: String, value: Vec<u8>, replace: bool| match model
        .iter_mut()
        .find(|(n, _)| *n == name)
    {
        Some((_, vals)) if replace => *vals = vec![value],
        Some((_, vals)) => {
            if vals.len() < 5 {
                vals.push(value)
            }
        }
        None => model.push((name, vec![value])),
    };
    for (name, value) in &head.headers {
        set(name.to_ascii_lowercase(), value.clone(), false);
    }
    set(
        "x-forwarded-for".into(),
        head.remote_addr.as_bytes().to_vec(),
        true,
    );
    let mut server: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("PATH", Some(head.path.as_bytes().to_vec())),
        ("METHOD", Some(head.method.as_bytes().to_vec())),
        ("VERSION", Some(head.version.as_bytes().to_vec())),
        ("URI", Some(head.uri.as_bytes().to_vec())),
        ("QUERY", head.query.as_ref().map(|q| q.as_bytes().to_vec())),
        (
            "FRAGMENT",
            head.fragment.as_ref().map(|f| f.as_bytes().to_vec()),
        ),
        ("PATTERN", Some(head.pattern.as_bytes().to_vec())),
        ("URL_SCHEME", Some(head.url_scheme.as_bytes().to_vec())),
        ("REMOTE_ADDR", Some(head.remote_addr.as_bytes().to_vec())),
    ];
    for (k, v) in &extra {
        match server.iter_mut().find(|(s, _)| s == k) {
            Some((_, slot)) => *slot = Some(v.as_bytes().to_vec()),
            None => set(k.clone(), v.as_bytes().to_vec(), true),
        }
    }
    let mut expected = Map::new();
    for (name, vals) in model {
        let v = match vals.as_slice() {
            [one] => lossy(one),
            many => J::Array(many.iter().map(|v| lossy(v)).collect()),
        };
        expected.insert(name, v);
    }
    for (k, v) in server {
        if let Some(v) = v {
            expected.insert(k.to_string(), lossy(&v));
        }
    }
    assert_eq!(req.headers, J::Object(expected));
});
