//! zeroku-bus: how the master, the workers and the frontends trust each other on ZeroMQ.
//!
//! * [`keys`]: CURVE key pairs ([`Keys`]), their z85 text form and short ids;
//! * [`curve`]: making a socket a CURVE server (with a ZAP domain) or a client of a known server;
//! * [`zap`]: a ZAP handler thread that lets in only the keys a caller-supplied function knows,
//!   and counts the others;
//! * [`peer`]: who sent a message (the key the ZAP handler let in), and subscription control on
//!   an XPUB socket, so a publisher decides which peer may receive which topic.
//!
//! This crate knows sockets and keys, never what travels over them: it must not decode the
//! wire messages, hold the cluster's state or decide who is registered (its callers do).

pub mod curve;
pub mod keys;
pub mod peer;
pub mod zap;

pub use keys::{key_id, Keys, PublicKey};

/// Errors of this crate: a message a user can act on, with the libzmq error underneath.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("this libzmq has no CURVE support (it must be built with libsodium): {0}")]
    NoCurve(zmq::Error),
    #[error("{what} is not a CURVE key: expected 40 characters of z85")]
    BadKey { what: String },
    #[error("cannot {what}: {source}")]
    Zmq {
        what: &'static str,
        #[source]
        source: zmq::Error,
    },
}
