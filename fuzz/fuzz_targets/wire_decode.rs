//! Fuzzes the ZMQ message envelope: `zeroku_conf::wire::decode`, the msgpack
//! `(version, Message)` every daemon reads off the bus (node lists, heartbeats,
//! logs, route tables) from peers it does not fully trust.
//!
//! Must hold: no panic, no unbounded allocation; and a message that decodes
//! encodes again and decodes to the same message (the round trip is exact).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_conf::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = wire::decode(data) else {
        return;
    };
    let again = wire::encode(&msg).expect("a decoded message encodes");
    let back = wire::decode(&again).expect("an encoded message decodes");
    assert_eq!(back, msg, "decode(encode(m)) != m");
});
