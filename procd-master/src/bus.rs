//! The master's two ZMQ sockets, each on its own thread (the `zmq` crate is
//! blocking): PUB sends node process lists; PULL receives heartbeats and logs
//! from workers. Undecodable messages are counted, logged and dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Duration;
use zeroku_conf::wire::{self, Message};

/// (topic, encoded message) for the PUB thread.
pub type Outgoing = (String, Vec<u8>);

#[derive(Debug, thiserror::Error)]
#[error("cannot bind ZMQ {kind} socket to {endpoint}: {source} (is another zeroku master running? pick another address with --{kind})")]
pub struct BindError {
    pub kind: &'static str,
    pub endpoint: String,
    #[source]
    pub source: zmq::Error,
}

fn bind(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    name: &'static str,
    ep: &str,
) -> Result<zmq::Socket, BindError> {
    let err = |source| BindError {
        kind: name,
        endpoint: ep.to_string(),
        source,
    };
    let s = ctx.socket(kind).map_err(err)?;
    s.set_linger(0).map_err(err)?;
    s.bind(ep).map_err(err)?;
    Ok(s)
}

/// Binds PUB and starts its thread; it runs until `stop` is set.
pub fn start_pub(
    ctx: &zmq::Context,
    endpoint: &str,
    rx: Receiver<Outgoing>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BindError> {
    let sock = bind(ctx, zmq::PUB, "pub", endpoint)?;
    sock.set_sndhwm(100_000).ok();
    Ok(std::thread::Builder::new()
        .name("zmq-pub".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok((topic, bytes)) => {
                        if let Err(e) = sock.send_multipart([topic.as_bytes(), &bytes[..]], 0) {
                            tracing::warn!(error = %e, topic, "publish failed");
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        })
        .expect("spawn thread"))
}

/// Binds PULL and starts its thread, calling `on_message` for every valid
/// message; garbage increments `dropped`.
pub fn start_pull(
    ctx: &zmq::Context,
    endpoint: &str,
    on_message: impl Fn(Message) + Send + 'static,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BindError> {
    let sock = bind(ctx, zmq::PULL, "pull", endpoint)?;
    sock.set_rcvtimeo(200).ok();
    sock.set_maxmsgsize(64 << 20).ok();
    Ok(std::thread::Builder::new()
        .name("zmq-pull".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let parts = match sock.recv_multipart(0) {
                    Ok(p) => p,
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "pull socket");
                        continue;
                    }
                };
                let Some(bytes) = parts.last().filter(|_| parts.len() == 1) else {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(frames = parts.len(), "dropped message: expected 1 frame");
                    continue;
                };
                match wire::decode(bytes) {
                    Ok(m) => on_message(m),
                    Err(e) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "dropped message on pull socket");
                    }
                }
            }
        })
        .expect("spawn thread"))
}

/// Sends to the PUB thread without blocking the caller for long.
pub fn publish(tx: &SyncSender<Outgoing>, topic: String, msg: &Message) {
    match wire::encode(msg) {
        Ok(bytes) => {
            if tx.send((topic, bytes)).is_err() {
                tracing::debug!("publisher stopped");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode"),
    }
}
