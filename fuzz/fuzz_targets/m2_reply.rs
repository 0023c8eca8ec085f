//! Fuzzes what the frontend parses from Mongrel2 handlers (apps' own
//! processes): `UUID SIZE:ID ID ..., BODY` replies and `UUID SIZE:X ID ...,
//! TNETSTRING` control messages, through
//! `m2::codec::parse_handler_message_ref` (what `frontend::handlers` calls for
//! every reply), `parse_handler_message` and `parse_reply`.
//!
//! Must hold: no panic; the three entry points agree; a parsed reply has 1 to
//! MAX_IDS ids, and re-encoding it with `encode_reply` parses to the same reply
//! (`encode_control` likewise for control messages).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_frontend::m2::codec::{
    encode_control, encode_reply, parse_handler_message, parse_handler_message_ref, parse_reply,
    HandlerMessage, HandlerMessageRef, MAX_IDS,
};

fuzz_target!(|data: &[u8]| {
    let by_ref = parse_handler_message_ref(data);
    let owned = parse_handler_message(data);
    let reply = parse_reply(data);
    match (&by_ref, &owned) {
        (Ok(HandlerMessageRef::Reply { uuid, ids, body }), Ok(HandlerMessage::Reply(r))) => {
            assert_eq!(r.uuid.as_bytes(), *uuid);
            assert_eq!(&r.ids, ids);
            assert_eq!(r.body, *body);
            assert!(!ids.is_empty() && ids.len() <= MAX_IDS, "{} ids", ids.len());
            assert_eq!(reply.as_ref().ok(), Some(r));
            let again = parse_reply(&encode_reply(&r.uuid, &r.ids, &r.body))
                .expect("an encoded reply parses");
            assert_eq!(&again, r);
        }
        (
            Ok(HandlerMessageRef::Control { uuid, ids, value }),
            Ok(HandlerMessage::Control {
                uuid: u2,
                ids: i2,
                value: v2,
            }),
        ) => {
            assert_eq!(u2.as_bytes(), *uuid);
            assert_eq!((i2, v2.encode()), (ids, value.encode()));
            assert!(!ids.is_empty() && ids.len() <= MAX_IDS, "{} ids", ids.len());
            assert!(reply.is_err(), "parse_reply accepted a control message");
            match parse_handler_message(&encode_control(u2, i2, v2)) {
                Ok(HandlerMessage::Control {
                    uuid: u3,
                    ids: i3,
                    value: v3,
                }) => assert_eq!((&u3, &i3, v3.encode()), (u2, i2, v2.encode())),
                other => panic!("an encoded control message parses back as {other:?}"),
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b);
            assert!(reply.is_err());
        }
        (a, b) => panic!("parse_handler_message_ref gave {a:?} but parse_handler_message {b:?}"),
    }
});
