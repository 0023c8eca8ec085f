//! The master's two ZMQ sockets, each on its own thread (the `zmq` crate is blocking): XPUB
//! sends node process lists and the route table; PULL receives heartbeats and logs from workers.
//!
//! Both are CURVE servers with the master's key: only peers whose keys the ZAP handler knows
//! complete a handshake ([`zeroku_bus::zap`]). The publisher runs in manual subscription mode:
//! each subscription arrives here with its peer's key, and is applied only if that peer may have
//! the topic (a node its own list, a frontend the route table). Every message received carries
//! the key of its sender, for the cluster to check against what it claims. Undecodable messages
//! are counted, logged and dropped.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use zeroku_bus::peer::{self, Subscription};
use zeroku_bus::{curve, Keys};
use zeroku_conf::wire::{self, Message};

/// (topic, encoded message) for the PUB thread.
pub type Outgoing = (String, Vec<u8>);

/// The ZAP domain of the master's bus sockets.
pub const DOMAIN: &str = "zeroku-bus";

#[derive(Debug, thiserror::Error)]
#[error("cannot bind ZMQ {kind} socket to {endpoint}: {source} (is another zeroku master running? pick another address with --{kind})")]
pub struct BindError {
    pub kind: &'static str,
    pub endpoint: String,
    #[source]
    pub source: zmq::Error,
}

/// How the cluster hands messages to the PUB thread: a bounded queue, and a byte on a socket
/// pair that wakes the thread, which otherwise sleeps in `poll` until a peer subscribes.
#[derive(Clone)]
pub struct Publisher {
    tx: SyncSender<Outgoing>,
    wake: Arc<UnixStream>,
}

/// The PUB thread's end of a [`Publisher`].
pub struct Outbox {
    rx: Receiver<Outgoing>,
    wake: UnixStream,
}

impl Publisher {
    /// A publisher that queues at most `capacity` messages, and the outbox the PUB thread reads.
    pub fn channel(capacity: usize) -> std::io::Result<(Publisher, Outbox)> {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let (a, b) = UnixStream::pair()?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok((
            Publisher {
                tx,
                wake: Arc::new(a),
            },
            Outbox { rx, wake: b },
        ))
    }

    /// Queues a message; false once the PUB thread has stopped.
    pub fn send(&self, topic: String, bytes: Vec<u8>) -> bool {
        if self.tx.send((topic, bytes)).is_err() {
            return false;
        }
        // A full socket buffer means a wake-up is pending already.
        let _ = (&*self.wake).write(&[1]);
        true
    }
}

fn bind(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    name: &'static str,
    ep: &str,
    keys: &Keys,
) -> Result<zmq::Socket, BindError> {
    let err = |source| BindError {
        kind: name,
        endpoint: ep.to_string(),
        source,
    };
    let mut s = ctx.socket(kind).map_err(err)?;
    s.set_linger(0).map_err(err)?;
    if kind == zmq::XPUB {
        peer::set_xpub_manual(&mut s).map_err(|e| err(bus_errno(e)))?;
    }
    curve::server(&s, keys, DOMAIN).map_err(|e| err(bus_errno(e)))?;
    s.bind(ep).map_err(err)?;
    Ok(s)
}

fn bus_errno(e: zeroku_bus::BusError) -> zmq::Error {
    match e {
        zeroku_bus::BusError::Zmq { source, .. } | zeroku_bus::BusError::NoCurve(source) => source,
        zeroku_bus::BusError::BadKey { .. } => zmq::Error::EINVAL,
    }
}

/// What the publisher does with a subscription: refuse it, or apply it and send the topic's
/// current message (if any) at once, so a peer that just connected does not wait for the next
/// change or republish.
pub enum Decision {
    Refuse,
    Accept(Option<Vec<u8>>),
}

/// Binds the XPUB socket and starts its thread; it runs until `stop` is set.
/// `on_subscribe(peer key, topic)` decides each subscription; refusals are counted in
/// `refused`.
pub fn start_pub(
    ctx: &zmq::Context,
    endpoint: &str,
    keys: &Keys,
    outbox: Outbox,
    on_subscribe: impl Fn(&str, &[u8]) -> Decision + Send + 'static,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BindError> {
    let sock = bind(ctx, zmq::XPUB, "pub", endpoint, keys)?;
    sock.set_sndhwm(100_000).ok();
    let _ = peer::count_failed_handshakes(ctx, &sock, "pub", refused.clone(), stop.clone());
    Ok(std::thread::Builder::new()
        .name("zmq-pub".into())
        .spawn(move || {
            let Outbox { rx, mut wake } = outbox;
            let wake_fd = wake.as_raw_fd();
            let mut buf = [0u8; 256];
            while !stop.load(Ordering::Relaxed) {
                let mut items = [
                    sock.as_poll_item(zmq::POLLIN),
                    zmq::PollItem::from_fd(wake_fd, zmq::POLLIN),
                ];
                if let Err(e) = zmq::poll(&mut items, 500) {
                    tracing::warn!(error = %e, "publisher poll");
                    continue;
                }
                let (subscriptions, woken) = (items[0].is_readable(), items[1].is_readable());
                if woken {
                    while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
                }
                loop {
                    match rx.try_recv() {
                        Ok((topic, bytes)) => {
                            if let Err(e) = sock.send_multipart([topic.as_bytes(), &bytes[..]], 0) {
                                tracing::warn!(error = %e, topic, "publish failed");
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => return,
                    }
                }
                if subscriptions {
                    subscribe(&sock, &on_subscribe, &refused);
                }
            }
        })
        .expect("spawn thread"))
}

/// Handles the subscriptions waiting on a manual XPUB socket.
fn subscribe(
    sock: &zmq::Socket,
    on_subscribe: &impl Fn(&str, &[u8]) -> Decision,
    refused: &AtomicU64,
) {
    while let Ok(mut msg) = sock.recv_msg(zmq::DONTWAIT) {
        let who = peer::user_id(&mut msg).unwrap_or_default();
        let Some(sub) = peer::parse(&msg) else {
            continue;
        };
        match sub {
            Subscription::Unsubscribe(_) => {
                let _ = peer::accept(sock, &sub);
            }
            Subscription::Subscribe(topic) => match on_subscribe(&who, topic) {
                Decision::Accept(welcome) => {
                    if let Err(e) = peer::accept(sock, &sub) {
                        tracing::warn!(error = %e, "cannot apply a subscription");
                        continue;
                    }
                    if let Some(bytes) = welcome {
                        let _ = sock.send_multipart([topic, &bytes[..]], 0);
                    }
                }
                Decision::Refuse => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        topic = %String::from_utf8_lossy(topic),
                        "refused a subscription its peer may not have"
                    );
                }
            },
        }
    }
}

/// Binds PULL and starts its thread, calling `on_message(sender's key, message)` for every
/// valid message; garbage increments `dropped`.
pub fn start_pull(
    ctx: &zmq::Context,
    endpoint: &str,
    keys: &Keys,
    on_message: impl Fn(&str, Message) + Send + 'static,
    dropped: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, BindError> {
    let sock = bind(ctx, zmq::PULL, "pull", endpoint, keys)?;
    sock.set_rcvtimeo(500).ok();
    sock.set_maxmsgsize(64 << 20).ok();
    let _ = peer::count_failed_handshakes(ctx, &sock, "pull", refused, stop.clone());
    Ok(std::thread::Builder::new()
        .name("zmq-pull".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut msg = match sock.recv_msg(0) {
                    Ok(m) => m,
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "pull socket");
                        continue;
                    }
                };
                if msg.get_more() {
                    let mut frames = 1;
                    while sock.get_rcvmore().unwrap_or(false) && sock.recv_msg(0).is_ok() {
                        frames += 1;
                    }
                    dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(frames, "dropped message: expected 1 frame");
                    continue;
                }
                let who = peer::user_id(&mut msg).unwrap_or_default();
                match wire::decode(&msg) {
                    Ok(m) => on_message(&who, m),
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
pub fn publish(p: &Publisher, topic: String, msg: &Message) {
    match wire::encode(msg) {
        Ok(bytes) => {
            if !p.send(topic, bytes) {
                tracing::debug!("publisher stopped");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot encode"),
    }
}
