//! A ZAP handler (ZeroMQ RFC 27): libzmq asks it about every peer that completes a CURVE
//! handshake with a server socket of the same context; a peer it refuses gets no connection at
//! all, so it can neither receive nor send anything.

use crate::{BusError, PublicKey};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// Where libzmq looks for the handler, in each context.
pub const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Starts the ZAP handler of `ctx`. For each CURVE client, `authorize(domain, key)` returns the
/// user id the peer's messages will carry ([`crate::peer::user_id`]), or `None` to refuse it;
/// refusals are counted in `refused`. Start it before binding any CURVE server socket in `ctx`.
/// It runs until `stop` is set.
pub fn start(
    ctx: &zmq::Context,
    authorize: impl Fn(&str, &PublicKey) -> Option<String> + Send + 'static,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BusError> {
    let zmq_err = |what| move |source| BusError::Zmq { what, source };
    let sock = ctx
        .socket(zmq::REP)
        .map_err(zmq_err("create the ZAP socket"))?;
    sock.set_linger(0)
        .map_err(zmq_err("configure the ZAP socket"))?;
    sock.set_rcvtimeo(500)
        .map_err(zmq_err("configure the ZAP socket"))?;
    sock.bind(ENDPOINT)
        .map_err(zmq_err("bind the ZAP handler"))?;
    std::thread::Builder::new()
        .name("zmq-zap".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let frames = match sock.recv_multipart(0) {
                    Ok(f) => f,
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "ZAP socket");
                        continue;
                    }
                };
                let reply = answer(&frames, &authorize);
                if reply[2] != b"200" {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = sock.send_multipart(reply, 0) {
                    tracing::warn!(error = %e, "ZAP reply");
                }
            }
        })
        .map_err(|e| BusError::Zmq {
            what: "start the ZAP thread",
            source: zmq::Error::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
        })
}

/// The reply to one ZAP request (RFC 27): version, request id, status code, status text, user
/// id, metadata.
pub fn answer(
    frames: &[Vec<u8>],
    authorize: &impl Fn(&str, &PublicKey) -> Option<String>,
) -> Vec<Vec<u8>> {
    let request_id = frames.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, text: &str, user: &str| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user.as_bytes().to_vec(),
            Vec::new(),
        ]
    };
    if frames.len() < 6 || frames[0] != b"1.0" {
        return reply("500", "malformed ZAP request", "");
    }
    let domain = String::from_utf8_lossy(&frames[2]);
    if frames[5] != b"CURVE" {
        tracing::warn!(
            mechanism = %String::from_utf8_lossy(&frames[5]),
            %domain,
            "refused a bus peer that does not use CURVE"
        );
        return reply("400", "CURVE only", "");
    }
    let Some(key) = frames.get(6).and_then(|k| PublicKey::try_from(&k[..]).ok()) else {
        return reply("400", "no client key", "");
    };
    match authorize(&domain, &key) {
        Some(user) => reply("200", "OK", &user),
        None => {
            tracing::warn!(
                key = %crate::key_id(&key),
                address = %String::from_utf8_lossy(&frames[3]),
                %domain,
                "refused a bus peer whose key is not registered"
            );
            reply("400", "unknown key", "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mechanism: &str, key: Option<&[u8]>) -> Vec<Vec<u8>> {
        let mut f = vec![
            b"1.0".to_vec(),
            b"7".to_vec(),
            b"bus".to_vec(),
            b"127.0.0.1".to_vec(),
            Vec::new(),
            mechanism.as_bytes().to_vec(),
        ];
        f.extend(key.map(<[u8]>::to_vec));
        f
    }

    #[test]
    fn only_known_curve_keys_get_a_user_id() {
        let known = [7u8; 32];
        let auth = |domain: &str, k: &PublicKey| {
            (domain == "bus" && *k == known).then(|| "n1".to_string())
        };
        let ok = answer(&request("CURVE", Some(&known)), &auth);
        assert_eq!(ok[1], b"7");
        assert_eq!(ok[2], b"200");
        assert_eq!(ok[4], b"n1");
        assert_eq!(
            answer(&request("CURVE", Some(&[8u8; 32])), &auth)[2],
            b"400"
        );
        assert_eq!(answer(&request("NULL", None), &auth)[2], b"400");
        assert_eq!(answer(&request("CURVE", Some(b"short")), &auth)[2], b"400");
        assert_eq!(answer(&[b"2.0".to_vec()], &auth)[2], b"500");
        assert_eq!(answer(&[], &auth).len(), 6);
    }
}
