//! Fuzzes netstrings (`m2::netstring`, the framing of request bodies and of
//! the connection-id list in handler replies): `parse` on arbitrary bytes.
//!
//! Must hold: no panic; the payload and the rest are the input's own bytes
//! (`LEN:` + payload + `,` + rest); `encode(payload)` parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_frontend::m2::netstring::{encode, parse};

fuzz_target!(|data: &[u8]| {
    let Ok((payload, rest)) = parse(data) else {
        return;
    };
    let head = data.len() - rest.len() - payload.len() - 1;
    assert_eq!(data[head - 1], b':');
    assert_eq!(&data[head..head + payload.len()], payload);
    assert_eq!(data[head + payload.len()], b',');
    let enc = encode(payload);
    assert_eq!(
        parse(&enc).expect("an encoded netstring parses"),
        (payload, &b""[..])
    );
});
