//! CURVE on a socket: a server proves its key and asks the ZAP handler about each client; a
//! client proves its own key and checks the server's.

use crate::{BusError, Keys, PublicKey};

fn set(what: &'static str, r: zmq::Result<()>) -> Result<(), BusError> {
    r.map_err(|source| BusError::Zmq { what, source })
}

/// Makes `sock` a CURVE server with `keys`. Every connecting peer is checked by the ZAP handler
/// of the socket's context ([`crate::zap`]) under `domain`, so one handler can tell the sockets
/// apart. Set before `bind`.
pub fn server(sock: &zmq::Socket, keys: &Keys, domain: &str) -> Result<(), BusError> {
    set(
        "make the socket a CURVE server",
        sock.set_curve_server(true),
    )?;
    set(
        "set the socket's CURVE secret key",
        sock.set_curve_secretkey(keys.secret()),
    )?;
    set("set the socket's ZAP domain", sock.set_zap_domain(domain))
}

/// Makes `sock` a CURVE client with `keys` of the server whose public key is `server`. Set
/// before `connect`; a server with another key never completes the handshake.
pub fn client(sock: &zmq::Socket, keys: &Keys, server: &PublicKey) -> Result<(), BusError> {
    set(
        "set the server's CURVE key",
        sock.set_curve_serverkey(server),
    )?;
    set(
        "set the socket's CURVE public key",
        sock.set_curve_publickey(&keys.public),
    )?;
    set(
        "set the socket's CURVE secret key",
        sock.set_curve_secretkey(keys.secret()),
    )
}
