//! The handler backend: one [`Hub`] per app, owning the app's
//! Mongrel2-protocol sockets — PUSH (requests out, bound on the app's send
//! port) and XSUB (replies in, bound on its recv port, subscribed to this
//! frontend's UUID) — so no app can see another's requests.
//!
//! Both directions run on the tokio runtime: the requests of one scheduler
//! tick are sent together by a task per hub (so libzmq writes them in one
//! segment), and replies are read by a task woken through the reply
//! socket's `ZMQ_FD`, each handed straight to the request waiting on its
//! connection id. A thread per hub holds requests while no handler is
//! connected and watches handlers leave.
//!
//! PUSH has `ZMQ_IMMEDIATE` set: while no handler is connected, a request
//! stays in the hub's own queue, for at most the hold time, and is
//! delivered as soon as a handler connects; after that the requester is
//! told [`Chunk::NoHandler`] (503). A monitor on PUSH sees handlers
//! disconnect: an idempotent request one of them took and never answered
//! (a restart, a crash) is sent again, so a deploy loses no request.
//! Garbage from a handler is logged and dropped.

use crate::m2;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use zeroku_conf::HandlerRoute;

/// What a request hears from its handler.
#[derive(Debug)]
pub enum Chunk {
    /// Raw HTTP response bytes (a handler writes the whole response).
    Data(Bytes),
    /// An empty reply: close the connection.
    Close,
    /// No handler connected within the hold time.
    NoHandler,
}

type Waiters = Arc<Mutex<IdMap<UnboundedSender<Chunk>>>>;
/// Retryable requests a handler took and has not answered yet, with when
/// they were sent.
type Taken = Arc<Mutex<IdMap<(Vec<u8>, Instant)>>>;

/// A map keyed by connection id. The ids are the frontend's own
/// (sequential), not a client's, so a multiply spreads them well enough, at
/// a fraction of SipHash's cost: these maps are touched several times per
/// request.
type IdMap<V> = HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

static HUB_SEQ: AtomicU64 = AtomicU64::new(0);

/// Where a frontend with data directory `data` binds its per-app `ipc://` handler sockets.
pub fn ipc_dir(data: &std::path::Path) -> std::path::PathBuf {
    data.join("handlers")
}

/// A request: held until a handler connects (or the hold time ends).
const HOLD: u8 = 0;
/// A notice (disconnect): sent if a handler is connected, else dropped.
const NOTICE: u8 = 1;
/// A request held like [`HOLD`], and sent again if the handler that took
/// it disconnects before answering.
const RETRY: u8 = 2;
/// Requests sent up to this long after a handler disconnected are suspect…
const SUSPECT: Duration = Duration::from_millis(500);
/// …and sent again if still unanswered after this long.
const RESEND_AFTER: Duration = Duration::from_secs(1);

pub struct Hub {
    pub app: String,
    pub route: HandlerRoute,
    /// The app's directory (sockets, upload files) and the uid owning it.
    pub dir: std::path::PathBuf,
    pub uid: Option<u32>,
    /// Headers as tnetstrings (the app's `m2_protocol` setting) instead
    /// of JSON; changes without rebinding.
    pub tnetstring: Arc<AtomicBool>,
    /// inproc PUSH to the hub thread: (conn id, kind, message), for
    /// disconnect notices.
    cmd: Mutex<zmq::Socket>,
    /// Requests of this scheduler tick, sent together by [`send_requests`]
    /// (which owns the other inproc PUSH, for requests that must wait for
    /// a handler).
    outbox: Arc<Mutex<Vec<Outgoing>>>,
    /// Wakes [`send_requests`] when the outbox gets its first request.
    flush: Arc<tokio::sync::Notify>,
    waiters: Waiters,
    stop: Arc<AtomicBool>,
    /// Ends the task reading replies.
    stop_replies: Arc<tokio::sync::Notify>,
    /// Replies from handlers that did not parse.
    pub garbage: Arc<AtomicU64>,
    /// Requests waiting for a handler.
    pub queued: Arc<AtomicU64>,
}

impl Hub {
    /// Binds the app's sockets and starts its thread.
    pub fn start(
        ctx: &zmq::Context,
        app: &str,
        route: &HandlerRoute,
        walls: &crate::endpoints::Walls,
        uuid: &str,
        hold: Duration,
    ) -> Result<Hub, String> {
        let err = |what: &str, e: zmq::Error| format!("app {app}: cannot {what}: {e}");
        let push = ctx
            .socket(zmq::PUSH)
            .map_err(|e| err("create a PUSH socket", e))?;
        push.set_linger(0).map_err(|e| err("configure PUSH", e))?;
        push.set_immediate(true)
            .map_err(|e| err("configure PUSH", e))?;
        push.set_sndhwm(100_000)
            .map_err(|e| err("configure PUSH", e))?;
        let send_ep = walls.bind(&push, app, route.seq, "send", route.send_port)?;
        let sub = ctx
            .socket(zmq::XSUB)
            .map_err(|e| err("create a SUB socket", e))?;
        sub.set_linger(0).map_err(|e| err("configure SUB", e))?;
        sub.set_maxmsgsize(64 << 20)
            .map_err(|e| err("configure SUB", e))?;
        // XSUB: handlers (PUB) still get the subscription, and send only
        // replies addressed to this frontend, but libzmq does not match
        // every reply against it a second time here; `on_reply` checks the
        // UUID anyway. It is kept for handlers that connect later.
        let mut subscription = Vec::with_capacity(uuid.len() + 1);
        subscription.push(1);
        subscription.extend_from_slice(uuid.as_bytes());
        sub.send(&subscription[..], 0)
            .map_err(|e| err("subscribe", e))?;
        let recv_ep = walls.bind(&sub, app, route.seq, "recv", route.recv_port)?;
        let inproc = format!(
            "inproc://zeroku-hub-{}",
            HUB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let cmd_in = ctx
            .socket(zmq::PULL)
            .map_err(|e| err("create a command socket", e))?;
        cmd_in
            .bind(&inproc)
            .map_err(|e| err("bind the command socket", e))?;
        let cmd = ctx
            .socket(zmq::PUSH)
            .map_err(|e| err("create a command socket", e))?;
        cmd.connect(&inproc)
            .map_err(|e| err("connect the command socket", e))?;
        let cmd2 = ctx
            .socket(zmq::PUSH)
            .map_err(|e| err("create a command socket", e))?;
        cmd2.connect(&inproc)
            .map_err(|e| err("connect the command socket", e))?;
        let mon_ep = format!("{inproc}-monitor");
        push.monitor(&mon_ep, zmq::SocketEvent::DISCONNECTED as i32)
            .map_err(|e| err("monitor the PUSH socket", e))?;
        let monitor = ctx
            .socket(zmq::PAIR)
            .map_err(|e| err("create a monitor socket", e))?;
        monitor
            .connect(&mon_ep)
            .map_err(|e| err("connect the monitor socket", e))?;

        let push = Arc::new(Mutex::new(push));
        let taken: Taken = Arc::default();
        let waiters: Waiters = Arc::default();
        let tnetstring = Arc::new(AtomicBool::new(route.protocol == "tnetstring"));
        let stop = Arc::new(AtomicBool::new(false));
        let garbage = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let replies = Replies {
            app: app.to_string(),
            uuid: uuid.to_string(),
            push: push.clone(),
            taken: taken.clone(),
            tnetstring: tnetstring.clone(),
            waiters: waiters.clone(),
            garbage: garbage.clone(),
        };
        let reader = crate::zmq_fd::watch(&sub)
            .map_err(|e| format!("app {app}: cannot watch the SUB socket: {e}"))?;
        let stop_replies = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(read_replies(sub, reader, replies, stop_replies.clone()));
        let outbox: Arc<Mutex<Vec<Outgoing>>> = Arc::default();
        let flush = Arc::new(tokio::sync::Notify::new());
        let sender = Sender {
            app: app.to_string(),
            push: push.clone(),
            taken: taken.clone(),
            queued: queued.clone(),
            cmd: Mutex::new(cmd),
        };
        tokio::spawn(send_requests(
            sender,
            outbox.clone(),
            flush.clone(),
            stop.clone(),
        ));
        let mut t = HubThread {
            app: app.to_string(),
            push: push.clone(),
            cmd_in,
            monitor,
            taken: taken.clone(),
            last_disconnect: None,
            waiters: waiters.clone(),
            pending: VecDeque::new(),
            hold,
            queued: queued.clone(),
        };
        let s = stop.clone();
        std::thread::Builder::new()
            .name(format!("m2-{app}"))
            .spawn(move || t.run(&s))
            .map_err(|e| format!("app {app}: cannot start the handler thread: {e}"))?;
        tracing::info!(app, send = %send_ep, recv = %recv_ep, "handler sockets bound");
        Ok(Hub {
            app: app.to_string(),
            route: route.clone(),
            dir: walls.app_dir(app),
            uid: walls.uid(route.seq),
            tnetstring,
            cmd: Mutex::new(cmd2),
            outbox,
            flush,
            waiters,
            stop,
            stop_replies,
            garbage,
            queued,
        })
    }

    /// Registers the request on `conn_id` for replies, then sends `msg`.
    /// A `retryable` (idempotent) request that a handler took but never
    /// answered before disconnecting is sent again.
    pub fn send(
        &self,
        conn_id: u64,
        msg: Vec<u8>,
        replies: UnboundedSender<Chunk>,
        retryable: bool,
    ) {
        lock(&self.waiters).insert(conn_id, replies);
        self.enqueue(conn_id, msg, retryable);
    }

    /// Sends another message for a request already registered.
    pub fn send_more(&self, conn_id: u64, msg: Vec<u8>) {
        self.enqueue(conn_id, msg, false);
    }

    /// Requests made in one scheduler tick go out together: libzmq's I/O
    /// thread is woken once for them and writes them in one segment, and
    /// the handler reads them in one go.
    fn enqueue(&self, conn_id: u64, msg: Vec<u8>, retryable: bool) {
        let first = {
            let mut out = lock(&self.outbox);
            out.push(Outgoing {
                conn_id,
                msg,
                retryable,
            });
            out.len() == 1
        };
        if first {
            self.flush.notify_one();
        }
    }

    /// Stops delivering replies for `conn_id` to its request.
    pub fn forget(&self, conn_id: u64) {
        lock(&self.waiters).remove(&conn_id);
    }

    /// Tells the handlers the client on `conn_id` went away.
    pub fn disconnect(&self, uuid: &str, conn_id: u64) {
        self.forget(conn_id);
        let proto = if self.tnetstring.load(Ordering::Relaxed) {
            m2::codec::Protocol::Tnetstring
        } else {
            m2::codec::Protocol::Json
        };
        self.command(
            conn_id,
            NOTICE,
            m2::codec::encode_disconnect_as(uuid, conn_id, proto),
        );
    }

    fn command(&self, conn_id: u64, kind: u8, msg: Vec<u8>) {
        let sock = lock(&self.cmd);
        if let Err(e) = sock.send_multipart([&conn_id.to_be_bytes()[..], &[kind][..], &msg[..]], 0)
        {
            tracing::error!(app = %self.app, error = %e, "handler thread unreachable");
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.stop_replies.notify_one();
        self.flush.notify_one();
    }
}

/// A request for the app's handlers, not sent yet.
struct Outgoing {
    conn_id: u64,
    msg: Vec<u8>,
    retryable: bool,
}

/// What sends requests needs.
struct Sender {
    app: String,
    push: Arc<Mutex<zmq::Socket>>,
    taken: Taken,
    queued: Arc<AtomicU64>,
    /// To the hub thread, for requests that must wait for a handler.
    cmd: Mutex<zmq::Socket>,
}

/// Sends the requests of each tick: woken by the first of them, it lets the
/// tasks already runnable add theirs, then sends them all. Straight to a
/// handler when one is connected and nobody queues ahead; else to the hub
/// thread, which holds them.
async fn send_requests(
    s: Sender,
    outbox: Arc<Mutex<Vec<Outgoing>>>,
    flush: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
) {
    let mut batch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        flush.notified().await;
        tokio::task::yield_now().await;
        std::mem::swap(&mut batch, &mut *lock(&outbox));
        let push = lock(&s.push);
        // Once one waits for the hub thread, the rest of the batch queues
        // behind it, so that an app's messages keep their order.
        let mut via_thread = s.queued.load(Ordering::Relaxed) > 0;
        for o in batch.drain(..) {
            if !via_thread {
                match push.send(&o.msg[..], zmq::DONTWAIT) {
                    Ok(()) => {
                        if o.retryable {
                            lock(&s.taken).insert(o.conn_id, (o.msg, Instant::now()));
                        }
                        continue;
                    }
                    Err(zmq::Error::EAGAIN) => {}
                    Err(e) => tracing::warn!(app = %s.app, error = %e, "cannot send to handlers"),
                }
                via_thread = true;
            }
            let kind = if o.retryable { RETRY } else { HOLD };
            let sock = lock(&s.cmd);
            if let Err(e) =
                sock.send_multipart([&o.conn_id.to_be_bytes()[..], &[kind][..], &o.msg[..]], 0)
            {
                tracing::error!(app = %s.app, error = %e, "handler thread unreachable");
            }
        }
    }
}

/// Reads replies on a tokio task: the SUB socket's `ZMQ_FD` wakes it, and
/// each reply goes straight to the request waiting on its connection (no
/// thread hop in between).
async fn read_replies(
    sub: zmq::Socket,
    ready: tokio::io::unix::AsyncFd<crate::zmq_fd::ZmqFd>,
    r: Replies,
    stop: Arc<tokio::sync::Notify>,
) {
    loop {
        // ZMQ_FD signals changes, not data: read until the socket has no
        // more, then wait for the next signal. A non-blocking receive that
        // finds nothing has processed the socket's pending commands, as
        // ZMQ_EVENTS would (libzmq's `socket_base_t::recv`), so it alone
        // tells that waiting is safe: one mailbox check less per wake.
        loop {
            match sub.recv_bytes(zmq::DONTWAIT) {
                Ok(msg) => r.on_reply(msg),
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    tracing::error!(app = %r.app, error = %e, "the handler reply socket failed");
                    return;
                }
            }
        }
        tokio::select! {
            g = ready.readable() => match g {
                Ok(mut g) => g.clear_ready(),
                Err(_) => return,
            },
            _ = stop.notified() => return,
        }
    }
}

/// What a reply needs to find its request.
struct Replies {
    app: String,
    uuid: String,
    push: Arc<Mutex<zmq::Socket>>,
    taken: Taken,
    tnetstring: Arc<AtomicBool>,
    waiters: Waiters,
    garbage: Arc<AtomicU64>,
}

/// A request waiting for a handler to take it.
struct Pending {
    give_up_at: Instant,
    conn_id: u64,
    msg: Vec<u8>,
    retryable: bool,
}

struct HubThread {
    app: String,
    push: Arc<Mutex<zmq::Socket>>,
    cmd_in: zmq::Socket,
    /// Disconnect events of `push`.
    monitor: zmq::Socket,
    taken: Taken,
    /// When a handler last disconnected.
    last_disconnect: Option<Instant>,
    waiters: Waiters,
    pending: VecDeque<Pending>,
    hold: Duration,
    queued: Arc<AtomicU64>,
}

impl HubThread {
    fn run(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let timeout = if self.pending.is_empty() { 200 } else { 5 };
            let ready = {
                let mut items = [
                    self.cmd_in.as_poll_item(zmq::POLLIN),
                    self.monitor.as_poll_item(zmq::POLLIN),
                ];
                if zmq::poll(&mut items, timeout).is_err() {
                    continue;
                }
                [items[0].is_readable(), items[1].is_readable()]
            };
            if ready[0] {
                while let Ok(parts) = self.cmd_in.recv_multipart(zmq::DONTWAIT) {
                    self.on_command(&parts);
                }
            }
            if ready[1] {
                while self.monitor.recv_multipart(zmq::DONTWAIT).is_ok() {}
                let now = Instant::now();
                self.last_disconnect = Some(now);
                self.resend_taken(|sent| sent <= now);
            }
            // A request sent just as a handler went away may have gone down
            // with it (the event and the dying pipe race): if it is still
            // unanswered a second later, it goes out again too.
            if let Some(d) = self.last_disconnect {
                let now = Instant::now();
                self.resend_taken(|sent| {
                    sent <= d + SUSPECT && now.duration_since(sent) > RESEND_AFTER
                });
                if now.duration_since(d) > SUSPECT + RESEND_AFTER {
                    self.last_disconnect = None;
                }
            }
            self.flush();
            self.queued
                .store(self.pending.len() as u64, Ordering::Relaxed);
        }
    }

    fn on_command(&mut self, parts: &[Vec<u8>]) {
        let [id, kind, msg] = parts else { return };
        let conn_id = id.as_slice().try_into().map_or(0, u64::from_be_bytes);
        match kind.first() {
            Some(&NOTICE) => {
                let _ = lock(&self.push).send(&msg[..], zmq::DONTWAIT);
            }
            k => self.pending.push_back(Pending {
                give_up_at: Instant::now() + self.hold,
                conn_id,
                msg: msg.clone(),
                retryable: k == Some(&RETRY),
            }),
        }
    }

    /// Sends queued requests while a handler takes them; answers 503 to
    /// those that waited too long.
    fn flush(&mut self) {
        while let Some(p) = self.pending.pop_front() {
            match lock(&self.push).send(&p.msg[..], zmq::DONTWAIT) {
                Ok(()) => {
                    if p.retryable {
                        lock(&self.taken).insert(p.conn_id, (p.msg, Instant::now()));
                    }
                }
                Err(zmq::Error::EAGAIN) => {
                    if Instant::now() < p.give_up_at {
                        self.pending.push_front(p);
                        break;
                    }
                    self.no_handler(p.conn_id);
                }
                Err(e) => tracing::warn!(app = %self.app, error = %e, "cannot send to handlers"),
            }
        }
        // Requests behind the first that waited too long.
        let now = Instant::now();
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|p| p.give_up_at <= now)
            .map(|p| p.conn_id)
            .collect();
        if !expired.is_empty() {
            self.pending.retain(|p| p.give_up_at > now);
            for id in expired {
                self.no_handler(id);
            }
        }
        // Requests whose client left are not worth resending.
        if lock(&self.taken).len() > 10_000 {
            let w = lock(&self.waiters);
            lock(&self.taken).retain(|id, _| w.contains_key(id));
        }
    }

    fn no_handler(&self, conn_id: u64) {
        if let Some(tx) = lock(&self.waiters).remove(&conn_id) {
            let _ = tx.send(Chunk::NoHandler);
        }
    }

    /// A handler disconnected: what was taken (and `pick`ed by when it was
    /// sent) and not answered goes out again, first in line.
    fn resend_taken(&mut self, pick: impl Fn(Instant) -> bool) {
        // Locks in the order replies take them: waiters, then taken.
        let waiting = lock(&self.waiters);
        let mut taken = lock(&self.taken);
        let ids: Vec<u64> = taken
            .iter()
            .filter(|(_, (_, sent))| pick(*sent))
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let again: Vec<(u64, Vec<u8>)> = ids
            .into_iter()
            .filter_map(|id| taken.remove(&id).map(|(msg, _)| (id, msg)))
            .filter(|(id, _)| waiting.contains_key(id))
            .collect();
        drop(waiting);
        drop(taken);
        if !again.is_empty() {
            tracing::info!(app = %self.app, requests = again.len(), "a handler went away: sending its unanswered requests again");
        }
        for (conn_id, msg) in again {
            self.pending.push_front(Pending {
                give_up_at: Instant::now() + self.hold,
                conn_id,
                msg,
                retryable: true,
            });
        }
    }
}

impl Replies {
    fn on_reply(&self, msg: Vec<u8>) {
        let (ids, body) = match m2::codec::parse_handler_message_ref(&msg) {
            Ok(m2::codec::HandlerMessageRef::Reply { uuid, ids, body })
                if uuid == self.uuid.as_bytes() =>
            {
                let at = msg.len() - body.len();
                (ids, at)
            }
            // Another frontend's reply (handlers publish to all), or an
            // extended control reply, which zeroku does not act on.
            Ok(_) => return,
            Err(e) => {
                self.garbage.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(app = %self.app, error = %e, bytes = msg.len(), "dropped a garbage reply from a handler");
                return;
            }
        };
        // The body is passed on as a slice of the message: no copy.
        let body = Bytes::from(msg).slice(body..);
        let mut dead = Vec::new();
        {
            let w = lock(&self.waiters);
            let mut taken = lock(&self.taken);
            for id in ids {
                taken.remove(&id);
                let chunk = if body.is_empty() {
                    Chunk::Close
                } else {
                    Chunk::Data(body.clone())
                };
                match w.get(&id) {
                    Some(tx) if tx.send(chunk).is_ok() => {}
                    _ if body.is_empty() => {}
                    _ => dead.push(id),
                }
            }
        }
        // A reply for a connection that is gone: tell the handler, as
        // Mongrel2 does.
        for id in dead {
            let proto = if self.tnetstring.load(Ordering::Relaxed) {
                m2::codec::Protocol::Tnetstring
            } else {
                m2::codec::Protocol::Json
            };
            let msg = m2::codec::encode_disconnect_as(&self.uuid, id, proto);
            let _ = lock(&self.push).send(&msg[..], zmq::DONTWAIT);
        }
    }
}

/// Every app's hub, kept in step with the route table.
pub struct Hubs {
    ctx: zmq::Context,
    pub uuid: String,
    pub walls: crate::endpoints::Walls,
    hold: Duration,
    hubs: Mutex<HashMap<String, Arc<Hub>>>,
}

impl Hubs {
    /// Hubs whose sockets `walls` binds (in `ctx`, whose ZAP handler they set up).
    pub fn new(
        ctx: zmq::Context,
        uuid: String,
        walls: crate::endpoints::Walls,
        hold: Duration,
    ) -> Hubs {
        Hubs {
            ctx,
            uuid,
            walls,
            hold,
            hubs: Mutex::new(HashMap::new()),
        }
    }

    /// Binds hubs for apps that gained a handler route, drops those that
    /// lost it (or whose ports moved).
    pub fn sync<'a>(&self, routes: impl Iterator<Item = (&'a str, &'a HandlerRoute)>) {
        let wanted: HashMap<&str, &HandlerRoute> = routes.collect();
        for (app, r) in &wanted {
            self.walls.set_relays(app, &r.relay_keys);
        }
        self.walls.keep_relays(&wanted.keys().copied().collect());
        let mut hubs = lock(&self.hubs);
        // A hub stays while its ports do; the header protocol changes in
        // place (rebinding the same ports at once would fail).
        hubs.retain(|app, hub| {
            wanted.get(app.as_str()).is_some_and(|r| {
                let same = r.send_port == hub.route.send_port
                    && r.recv_port == hub.route.recv_port
                    && r.seq == hub.route.seq;
                if same {
                    hub.tnetstring
                        .store(r.protocol == "tnetstring", Ordering::Relaxed);
                }
                same
            })
        });
        for (app, route) in wanted {
            if hubs.contains_key(app) {
                continue;
            }
            match Hub::start(&self.ctx, app, route, &self.walls, &self.uuid, self.hold) {
                Ok(h) => {
                    hubs.insert(app.to_string(), Arc::new(h));
                }
                Err(e) => tracing::error!(error = %e, "handler route unavailable"),
            }
        }
    }

    /// (app, requests waiting for a handler) of every hub.
    pub fn queue_depths(&self) -> Vec<(String, u64)> {
        lock(&self.hubs)
            .iter()
            .map(|(app, h)| (app.clone(), h.queued.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn get(&self, app: &str) -> Option<Arc<Hub>> {
        lock(&self.hubs).get(app).cloned()
    }
}
