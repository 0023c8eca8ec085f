//! Who a message is from, and who may receive a topic.
//!
//! A server socket's messages carry the user id the ZAP handler gave their peer. An XPUB socket
//! in manual mode hands every (un)subscription to the application, which applies it only if the
//! peer may have that topic: a registered peer that subscribes to everything still receives
//! only what it was let in for.

// The zmq crate has no setter for ZMQ_XPUB_MANUAL; this module sets it through libzmq itself.
#![allow(unsafe_code)]

use crate::BusError;

/// The user id of the peer that sent `msg`, as the ZAP handler named it (`None` for a message
/// that did not come over an authenticated connection).
pub fn user_id(msg: &mut zmq::Message) -> Option<String> {
    msg.gets("User-Id").map(str::to_string)
}

/// Puts an XPUB socket in manual mode (`ZMQ_XPUB_MANUAL`): subscriptions reach the application
/// (with their peer's user id) and take effect only through [`accept`].
pub fn set_xpub_manual(sock: &mut zmq::Socket) -> Result<(), BusError> {
    let on: libc::c_int = 1;
    // SAFETY: `sock` is a live socket; the option takes an int, passed by pointer with its size.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            sock.as_mut_ptr(),
            zmq_sys::ZMQ_XPUB_MANUAL as libc::c_int,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: zmq_errno only reads libzmq's thread-local error number.
        let errno = unsafe { zmq_sys::zmq_errno() };
        Err(BusError::Zmq {
            what: "put the publisher in manual subscription mode",
            source: zmq::Error::from_raw(errno),
        })
    }
}

/// Counts in `failed` the peers whose handshake with `sock` fails before the ZAP handler is asked
/// (a peer without CURVE, or with the wrong server key), from a monitor thread that runs until
/// `stop` is set. `name` tells the monitors of one context apart.
pub fn count_failed_handshakes(
    ctx: &zmq::Context,
    sock: &zmq::Socket,
    name: &str,
    failed: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BusError> {
    use std::sync::atomic::Ordering;
    let zmq_err = |what| move |source| BusError::Zmq { what, source };
    let ep = format!("inproc://zeroku-handshakes-{name}");
    let events = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32;
    sock.monitor(&ep, events)
        .map_err(zmq_err("monitor the socket's handshakes"))?;
    let mon = ctx
        .socket(zmq::PAIR)
        .map_err(zmq_err("create a monitor socket"))?;
    mon.set_rcvtimeo(500)
        .map_err(zmq_err("configure the monitor socket"))?;
    mon.set_linger(0)
        .map_err(zmq_err("configure the monitor socket"))?;
    mon.connect(&ep)
        .map_err(zmq_err("connect the monitor socket"))?;
    let name = name.to_string();
    std::thread::Builder::new()
        .name("zmq-handshakes".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match mon.recv_multipart(0) {
                    Ok(frames) if frames.len() == 2 => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            socket = %name,
                            peer = %String::from_utf8_lossy(&frames[1]),
                            "refused a bus peer that failed the CURVE handshake"
                        );
                    }
                    _ => {}
                }
            }
        })
        .map_err(|e| BusError::Zmq {
            what: "start the monitor thread",
            source: zmq::Error::from_raw(e.raw_os_error().unwrap_or(libc::EAGAIN)),
        })
}

/// One subscription message read from a manual XPUB socket.
#[derive(Debug, PartialEq, Eq)]
pub enum Subscription<'a> {
    Subscribe(&'a [u8]),
    Unsubscribe(&'a [u8]),
}

/// Parses what a manual XPUB socket delivers: `1<topic>` or `0<topic>`.
pub fn parse(msg: &[u8]) -> Option<Subscription<'_>> {
    match msg.split_first() {
        Some((1, topic)) => Some(Subscription::Subscribe(topic)),
        Some((0, topic)) => Some(Subscription::Unsubscribe(topic)),
        _ => None,
    }
}

/// Applies the subscription just read from a manual XPUB socket, for the peer that sent it.
/// Must be called before the next read from that socket.
pub fn accept(sock: &zmq::Socket, sub: &Subscription<'_>) -> Result<(), BusError> {
    let r = match sub {
        Subscription::Subscribe(t) => sock.set_subscribe(t),
        Subscription::Unsubscribe(t) => sock.set_unsubscribe(t),
    };
    r.map_err(|source| BusError::Zmq {
        what: "apply a subscription",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse() {
        assert_eq!(
            parse(b"\x01routes"),
            Some(Subscription::Subscribe(b"routes"))
        );
        assert_eq!(
            parse(b"\x00node/a"),
            Some(Subscription::Unsubscribe(b"node/a"))
        );
        assert_eq!(parse(b"\x01"), Some(Subscription::Subscribe(b"")));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"\x02x"), None);
    }
}
