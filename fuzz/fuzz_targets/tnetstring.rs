//! Fuzzes the tnetstring codec (`m2::tnetstring`): `decode` and
//! `decode_exact` on arbitrary bytes (request headers with `protocol =
//! "tnetstring"`, control replies from handlers), and `Value::to_json`.
//!
//! Must hold: no panic or stack overflow (nesting is capped); `decode_exact`
//! accepts exactly when `decode` leaves no rest; a decoded value re-encodes to
//! bytes that decode to a value with the same encoding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_frontend::m2::tnetstring::{decode, decode_exact};

fuzz_target!(|data: &[u8]| {
    let loose = decode(data);
    let exact = decode_exact(data);
    match (&loose, &exact) {
        (Ok((v, rest)), Ok(e)) => {
            assert!(rest.is_empty());
            assert_eq!(v.encode(), e.encode());
        }
        (Ok((_, rest)), Err(_)) => assert!(!rest.is_empty(), "decode_exact refused a whole value"),
        (Err(_), Ok(_)) => panic!("decode_exact accepted what decode refused"),
        (Err(a), Err(b)) => assert_eq!(a, b),
    }
    let Ok((value, _)) = loose else {
        return;
    };
    let _ = value.to_json();
    let enc = value.encode();
    let back = decode_exact(&enc).expect("an encoded value decodes");
    assert_eq!(back.encode(), enc, "encode(decode(encode(v))) != encode(v)");
});
