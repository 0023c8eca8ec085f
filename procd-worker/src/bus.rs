//! The worker's two ZMQ sockets, each on its own thread: SUB receives this
//! node's lists (topic `node/<name>/<key id>`) and the master's sign of life
//! (topic `alive`), PUSH sends heartbeats and logs.
//! Both are CURVE clients of the master: they prove the node's key and talk
//! only to a server with the master's key. Garbage on SUB is logged, counted
//! and dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use zeroku_conf::wire::{self, Message, ALIVE_TOPIC};

/// This node's bus key pair and the master's public key.
#[derive(Clone)]
pub struct Curve {
    pub keys: zeroku_bus::Keys,
    pub server: zeroku_bus::PublicKey,
}

impl Curve {
    fn apply(&self, sock: &zmq::Socket) -> Result<(), zmq::Error> {
        self.apply_to(sock, &self.server)
    }

    /// Makes `sock` a CURVE client with this node's keys of the server with key `server`
    /// (another than the master: a frontend, for a handler relay).
    pub fn apply_to(
        &self,
        sock: &zmq::Socket,
        server: &zeroku_bus::PublicKey,
    ) -> Result<(), zmq::Error> {
        zeroku_bus::curve::client(sock, &self.keys, server).map_err(|e| match e {
            zeroku_bus::BusError::Zmq { source, .. } | zeroku_bus::BusError::NoCurve(source) => {
                source
            }
            zeroku_bus::BusError::BadKey { .. } => zmq::Error::EINVAL,
        })
    }
}

/// Connects SUB to `endpoint` for `topic` and [`ALIVE_TOPIC`], forwarding decoded lists
/// (`Message::NodeList`) and signs of life (`Message::Alive`) to `tx`.
pub fn start_sub(
    ctx: &zmq::Context,
    endpoint: &str,
    curve: &Curve,
    topic: &str,
    tx: tokio::sync::mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, zmq::Error> {
    let sock = ctx.socket(zmq::SUB)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(200)?;
    sock.set_maxmsgsize(256 << 20)?;
    sock.set_subscribe(topic.as_bytes())?;
    sock.set_subscribe(ALIVE_TOPIC.as_bytes())?;
    curve.apply(&sock)?;
    sock.connect(endpoint)?;
    let topic = topic.to_string();
    Ok(std::thread::Builder::new()
        .name("zmq-sub".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let parts = match sock.recv_multipart(0) {
                    Ok(p) => p,
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "sub socket");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if parts.len() != 2 {
                    dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        frames = parts.len(),
                        "dropped malformed message on sub socket"
                    );
                    continue;
                }
                // Subscriptions match by prefix: `node/n1` also receives
                // `node/n10`'s lists; those are not ours.
                let alive = parts[0] == ALIVE_TOPIC.as_bytes();
                if parts[0] != topic.as_bytes() && !alive {
                    continue;
                }
                match wire::decode(&parts[1]) {
                    Ok(m @ Message::NodeList(_)) if !alive => {
                        if tx.blocking_send(m).is_err() {
                            break;
                        }
                    }
                    Ok(m @ Message::Alive(_)) if alive => {
                        if tx.blocking_send(m).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            "dropped a message of the wrong kind for its topic on sub socket"
                        );
                    }
                    Err(e) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "dropped undecodable message on sub socket");
                    }
                }
            }
        })
        .expect("spawn thread"))
}

/// Connects PUSH to `endpoint`; sends whatever arrives on `rx`. Sends never
/// block: while the master is away, messages queue up to the high-water
/// mark and are then dropped (heartbeats are full state, so nothing is lost
/// but old log lines).
pub fn start_push(
    ctx: &zmq::Context,
    endpoint: &str,
    curve: &Curve,
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    high_water_mark: i32,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, zmq::Error> {
    let sock = ctx.socket(zmq::PUSH)?;
    sock.set_linger(1000)?;
    sock.set_sndhwm(high_water_mark)?;
    curve.apply(&sock)?;
    sock.connect(endpoint)?;
    Ok(std::thread::Builder::new()
        .name("zmq-push".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(bytes) => {
                        if let Err(e) = sock.send(bytes, zmq::DONTWAIT) {
                            tracing::debug!(error = %e, "push: message dropped");
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        })
        .expect("spawn thread"))
}
