//! Fuzzes the handler side of the Mongrel2 protocol:
//! `m2::codec::parse_request`, which `m2::Connection::recv` (the Rust handler
//! library) applies to every message a server sends, JSON or tnetstring
//! headers, requests and disconnect notices.
//!
//! Must hold: no panic, in the parser or in the accessors a handler calls on
//! what it returns (`header`, `header_values`, `method`, `json_body`,
//! `is_disconnect`, `should_close`); parsed headers are always a JSON object.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_frontend::m2::codec::parse_request;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_request(data) else {
        return;
    };
    assert!(req.headers.is_object());
    assert!(!req.path.is_empty());
    let _ = req.header("METHOD");
    let _ = req.header_values("x-dup");
    let _ = req.method();
    let _ = req.json_body();
    let _ = req.is_disconnect();
    let _ = req.should_close();
});
