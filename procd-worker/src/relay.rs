//! Handler relays: how a handler process on this node reaches a frontend on another node
//! without ever holding a key.
//!
//! The handler connects, as any Mongrel2 handler does, to the `ipc://` endpoints in its
//! `M2_SEND_SPEC`/`M2_RECV_SPEC`; for a remote frontend those are this worker's sockets in
//! `<data>/relay/<instance>.v<release>/`, a directory that belongs to the app's uid alone. The
//! relay forwards requests from the frontend's PUSH to the handler, replies (and the frontend's
//! subscription) back, over TCP with CURVE: the node's own bus key, the frontend's server key.
//!
//! A relay connects upstream only while its handler is connected downstream, and disconnects
//! when the handler goes: the frontend sees each handler instance come and go exactly as if it
//! were connected directly (no request is queued for a handler that is not there, and one a
//! dying handler took is sent again).
//!
//! One thread runs every relay of the node. This module moves messages; it must not decode or
//! change them.

use crate::bus::Curve;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use zeroku_conf::InstanceSpec;

/// The `M2_SEND_SPEC` and `M2_RECV_SPEC` of a handler instance: a local frontend's `ipc://`
/// endpoints as the master gave them, and this node's relay endpoints for the others (their
/// TCP endpoints as they are when there is no relay directory, e.g. in unit tests).
pub fn handler_specs(relay_dir: Option<&Path>, spec: &InstanceSpec) -> (String, String) {
    let mut send = Vec::new();
    let mut recv = Vec::new();
    for ep in &spec.handler {
        match (&ep.key, relay_dir) {
            (Some(_), Some(root)) => {
                let dir = instance_dir(root, spec);
                send.push(format!(
                    "ipc://{}",
                    dir.join(format!("{}.send", ep.frontend)).display()
                ));
                recv.push(format!(
                    "ipc://{}",
                    dir.join(format!("{}.recv", ep.frontend)).display()
                ));
            }
            _ => {
                send.push(ep.send.clone());
                recv.push(ep.recv.clone());
            }
        }
    }
    (send.join(" "), recv.join(" "))
}

/// `<root>/<instance>.v<release>`.
fn instance_dir(root: &Path, spec: &InstanceSpec) -> PathBuf {
    root.join(format!("{}.v{}", spec.id, spec.release))
}

/// One relay: a running handler instance and a remote frontend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Wanted {
    /// The instance's relay directory.
    pub dir: PathBuf,
    pub frontend: String,
    /// The frontend's TCP endpoints and CURVE key.
    pub send: String,
    pub recv: String,
    pub key: zeroku_bus::PublicKey,
    /// The app's uid, owner of the directory and sockets (when the worker is root).
    pub uid: Option<u32>,
}

/// The relays a running handler instance needs.
pub fn wanted(root: &Path, spec: &InstanceSpec, uid: Option<u32>) -> Vec<Wanted> {
    spec.handler
        .iter()
        .filter_map(|ep| {
            let key = zeroku_bus::keys::decode(ep.key.as_deref()?, "frontend key").ok()?;
            Some(Wanted {
                dir: instance_dir(root, spec),
                frontend: ep.frontend.clone(),
                send: ep.send.clone(),
                recv: ep.recv.clone(),
                key,
                uid,
            })
        })
        .collect()
}

/// The node's relays, run by one thread.
pub struct Relays {
    tx: SyncSender<HashSet<Wanted>>,
    wake: UnixStream,
    last: Mutex<HashSet<Wanted>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// Relay sockets that could not be set up (logged).
    pub failures: Arc<AtomicU64>,
}

impl Drop for Relays {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = (&self.wake).write(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Relays {
    /// Starts the relay thread; relays use the node's `curve` keys and live in `root`.
    pub fn start(ctx: zmq::Context, curve: Curve, root: &Path) -> std::io::Result<Relays> {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        std::fs::create_dir_all(root)?;
        let (s, f, root) = (stop.clone(), failures.clone(), root.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("zmq-relays".into())
            .spawn(move || run(ctx, curve, &root, rx, wake_rx, s, f))?;
        Ok(Relays {
            tx,
            wake,
            last: Mutex::default(),
            thread: Some(thread),
            stop,
            failures,
        })
    }

    /// Makes the running relays exactly `wanted` (cheap when nothing changed).
    pub fn sync(&self, wanted: Vec<Wanted>) {
        let wanted: HashSet<Wanted> = wanted.into_iter().collect();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last == wanted {
            return;
        }
        if self.tx.try_send(wanted.clone()).is_ok() {
            *last = wanted;
            let _ = (&self.wake).write(&[1]);
        }
    }
}

/// A relay's sockets. `up_*` face the frontend (TCP, CURVE), `down_*` the handler (ipc).
struct Relay {
    want: Wanted,
    down_push: zmq::Socket,
    down_xsub: zmq::Socket,
    up_pull: zmq::Socket,
    up_xpub: zmq::Socket,
    /// Events of `down_push`: a handler connecting or going.
    monitor: zmq::Socket,
    /// Handlers connected downstream.
    handlers: u32,
    connected: bool,
}

static MONITOR_SEQ: AtomicU64 = AtomicU64::new(0);

fn zmq_err(what: &str) -> impl Fn(zmq::Error) -> String + '_ {
    move |e| format!("cannot {what}: {e}")
}

impl Relay {
    fn open(ctx: &zmq::Context, curve: &Curve, want: Wanted) -> Result<Relay, String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&want.dir)
            .and_then(|()| {
                std::fs::set_permissions(&want.dir, std::fs::Permissions::from_mode(0o700))
            })
            .map_err(|e| format!("cannot set up {}: {e}", want.dir.display()))?;
        if let Some(uid) = want.uid {
            std::os::unix::fs::chown(&want.dir, Some(uid), Some(uid))
                .map_err(|e| format!("cannot give {} to uid {uid}: {e}", want.dir.display()))?;
        }
        let socket = |kind| ctx.socket(kind).map_err(zmq_err("create a relay socket"));
        let (down_push, down_xsub) = (socket(zmq::PUSH)?, socket(zmq::XSUB)?);
        let (up_pull, up_xpub) = (socket(zmq::PULL)?, socket(zmq::XPUB)?);
        for s in [&down_push, &down_xsub, &up_pull, &up_xpub] {
            s.set_linger(0)
                .map_err(zmq_err("configure a relay socket"))?;
        }
        for s in [&up_pull, &up_xpub] {
            curve
                .apply_to(s, &want.key)
                .map_err(zmq_err("set the relay's keys"))?;
        }
        let mon_ep = format!(
            "inproc://zeroku-relay-{}",
            MONITOR_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        down_push
            .monitor(
                &mon_ep,
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
                    | zmq::SocketEvent::DISCONNECTED as i32,
            )
            .map_err(zmq_err("monitor the relay socket"))?;
        let monitor = socket(zmq::PAIR)?;
        monitor
            .connect(&mon_ep)
            .map_err(zmq_err("connect the relay monitor"))?;
        for (s, suffix) in [(&down_push, "send"), (&down_xsub, "recv")] {
            let path = want.dir.join(format!("{}.{suffix}", want.frontend));
            s.bind(&format!("ipc://{}", path.display()))
                .map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
            if let Some(uid) = want.uid {
                std::os::unix::fs::chown(&path, Some(uid), Some(uid))
                    .map_err(|e| format!("cannot give {} to uid {uid}: {e}", path.display()))?;
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| format!("cannot protect {}: {e}", path.display()))?;
        }
        Ok(Relay {
            want,
            down_push,
            down_xsub,
            up_pull,
            up_xpub,
            monitor,
            handlers: 0,
            connected: false,
        })
    }

    /// Follows the handler: upstream while one is connected.
    fn on_events(&mut self) {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(ev) = frames.first().filter(|f| f.len() >= 2) else {
                continue;
            };
            let event = zmq::SocketEvent::from_raw(u16::from_le_bytes([ev[0], ev[1]]));
            match event {
                zmq::SocketEvent::HANDSHAKE_SUCCEEDED => self.handlers += 1,
                zmq::SocketEvent::DISCONNECTED => self.handlers = self.handlers.saturating_sub(1),
                _ => {}
            }
        }
        let want_up = self.handlers > 0;
        if want_up == self.connected {
            return;
        }
        let (send, recv) = (self.want.send.clone(), self.want.recv.clone());
        let r = if want_up {
            self.up_pull
                .connect(&send)
                .and_then(|()| self.up_xpub.connect(&recv))
        } else {
            let _ = self.up_pull.disconnect(&send);
            self.up_xpub.disconnect(&recv)
        };
        match r {
            Ok(()) => self.connected = want_up,
            Err(e) => tracing::warn!(frontend = %self.want.frontend, error = %e, "relay"),
        }
    }
}

/// Moves every message waiting on `from` to `to`; a message `to` cannot take now is dropped
/// (its requester times out or its handler answers again, as on a lost connection).
fn forward(from: &zmq::Socket, to: &zmq::Socket) {
    while let Ok(parts) = from.recv_multipart(zmq::DONTWAIT) {
        let _ = to.send_multipart(parts, zmq::DONTWAIT);
    }
}

fn run(
    ctx: zmq::Context,
    curve: Curve,
    root: &Path,
    rx: Receiver<HashSet<Wanted>>,
    mut wake: UnixStream,
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
) {
    let mut relays: HashMap<Wanted, Relay> = HashMap::new();
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::Relaxed) {
        let mut items = vec![zmq::PollItem::from_fd(wake.as_raw_fd(), zmq::POLLIN)];
        let order: Vec<&Wanted> = relays.keys().collect();
        for w in &order {
            let r = &relays[*w];
            items.push(r.up_pull.as_poll_item(zmq::POLLIN));
            items.push(r.down_xsub.as_poll_item(zmq::POLLIN));
            items.push(r.up_xpub.as_poll_item(zmq::POLLIN));
            items.push(r.monitor.as_poll_item(zmq::POLLIN));
        }
        if zmq::poll(&mut items, 1000).is_err() {
            continue;
        }
        let ready: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
        let order: Vec<Wanted> = order.into_iter().cloned().collect();
        drop(items);
        for (i, w) in order.iter().enumerate() {
            let Some(r) = relays.get_mut(w) else { continue };
            let at = 1 + i * 4;
            if ready[at + 3] {
                r.on_events();
            }
            if ready[at] {
                forward(&r.up_pull, &r.down_push);
            }
            if ready[at + 1] {
                forward(&r.down_xsub, &r.up_xpub);
            }
            if ready[at + 2] {
                // The frontend's subscription (its UUID), on to the handler.
                forward(&r.up_xpub, &r.down_xsub);
            }
        }
        if ready[0] {
            while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
            let mut latest = None;
            loop {
                match rx.try_recv() {
                    Ok(w) => latest = Some(w),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if let Some(wanted) = latest {
                relays.retain(|w, _| wanted.contains(w));
                for w in wanted {
                    if relays.contains_key(&w) {
                        continue;
                    }
                    match Relay::open(&ctx, &curve, w.clone()) {
                        Ok(r) => {
                            tracing::info!(frontend = %w.frontend, dir = %w.dir.display(), "relay up");
                            relays.insert(w, r);
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(frontend = %w.frontend, error = %e, "relay unavailable");
                        }
                    }
                }
                remove_stale_dirs(root, &relays);
            }
        }
    }
}

/// Removes relay directories no relay uses any more (their instances stopped).
fn remove_stale_dirs(root: &Path, relays: &HashMap<Wanted, Relay>) {
    let in_use: HashSet<&Path> = relays.keys().map(|w| w.dir.as_path()).collect();
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if !in_use.contains(p.as_path()) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}
