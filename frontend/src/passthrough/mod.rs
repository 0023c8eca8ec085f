//! A client connection of an app served only by handlers, owned the way
//! Mongrel2 owns it. Requests are parsed here (httparse) and sent to the
//! app's handlers; every message a handler sends to the connection is
//! written to the client as it is, in order — its head byte for byte (case,
//! order, nothing added), several messages for one request, messages after
//! a complete response — and an empty message closes the connection with
//! no bytes. The connection stays open until the handler closes it or the
//! client goes.
//!
//! Replies are also read along the way, without changing them, to know the
//! status (access log, metrics), where each response ends (a client's
//! `Connection: close` is honoured once its answer is out) and when a
//! WebSocket handshake was accepted. A client that closes its end closes the
//! connection, and the handlers are told, as in Mongrel2 and nginx.
//!
//! This module must not route elsewhere: a request on the connection for
//! another app or backend is answered (404/421) and the connection closed,
//! and the client opens a new one. Apps with web or static path routes are
//! served by the edge's hyper server instead ([`crate::edge`]).

use crate::chunked::Dechunk;
use crate::edge::{closing_page, error_page, Body, Conn, ConnLimits, Edge};
use crate::handlers::{Chunk, Hub};
use crate::m2;
use bytes::{Buf, BytesMut};
use hyper::{Response, StatusCode};
use reply::{write_response, ReplyBody};
use request::{decide, Decision};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use zeroku_conf::{AppRoute, Backend};

mod body;
mod reply;
mod request;

pub(crate) use reply::write_response as write_page;

/// Most header lines a request may have.
const MAX_HEADERS: usize = 100;
/// Requests a client may have waiting for answers (pipelined) before the
/// edge stops reading more.
const MAX_WAITING: usize = 100;
/// A reply head longer than this is not read for its status.
const MAX_REPLY_HEAD: usize = 64 << 10;

/// Whether connections whose first request is for `route` are owned here:
/// an app with handlers and no other backend.
pub(crate) fn owns(route: &AppRoute) -> bool {
    route.handler.is_some()
        && route
            .paths
            .iter()
            .all(|p| matches!(p.backend, Backend::Handler))
}

/// Who serves a new connection, decided by its first request head.
pub(crate) enum First {
    /// Closed (or errored) before a whole head arrived.
    Gone,
    /// A head began and did not finish within the header timeout.
    TimedOut,
    /// Served here.
    Handler(Arc<Hub>),
    /// Served by hyper (everything else, malformed heads included: hyper
    /// answers those as it always has).
    Hyper,
    /// Refused with 400 before anyone sees it: why, the method and path.
    /// (hyper would take these its own way: merge equal lengths, let
    /// chunked win over a length.)
    Ambiguous(&'static str, hyper::Method, String),
}

/// Reads the connection's first request head into `buf` and decides.
pub(crate) async fn first_request<I: AsyncRead + Unpin>(
    io: &mut I,
    buf: &mut BytesMut,
    edge: &Edge,
    limits: &ConnLimits,
    https: bool,
) -> First {
    let read = async {
        loop {
            buf.reserve(4096);
            match io.read_buf(buf).await {
                Ok(0) | Err(_) => return First::Gone,
                Ok(_) => {}
            }
            let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut fields);
            match req.parse(buf) {
                Ok(httparse::Status::Complete(_)) => {}
                Ok(httparse::Status::Partial) if buf.len() <= limits.max_header_bytes => continue,
                _ => return First::Hyper,
            }
            let fields = req.headers.iter().map(|h| (h.name, h.value));
            if let Some(why) = crate::framing::ambiguous_fields(fields) {
                let method = req
                    .method
                    .and_then(|m| hyper::Method::from_bytes(m.as_bytes()).ok())
                    .unwrap_or(hyper::Method::GET);
                let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
                return First::Ambiguous(why, method, path.to_string());
            }
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .and_then(|h| std::str::from_utf8(h.value).ok());
            let routes = edge.routes();
            // The edge answers these itself: ACME challenges, redirects to HTTPS, and answers
            // that get an HSTS header.
            let own_answer = |route: &AppRoute| {
                req.path
                    .is_some_and(|p| p.starts_with(crate::edge::ACME_PATH))
                    || (route.force_https && !https)
                    || (route.hsts.is_some() && https)
            };
            return match host.and_then(|h| routes.lookup(h)) {
                Some(route) if owns(route) && !own_answer(route) => match edge.hubs.get(&route.app)
                {
                    Some(hub) => First::Handler(hub),
                    None => First::Hyper,
                },
                _ => First::Hyper,
            };
        }
    };
    match tokio::time::timeout(limits.header_timeout, read).await {
        Ok(first) => first,
        Err(_) => First::TimedOut,
    }
}

/// A request sent to the handlers, until its response has been relayed.
struct Pending {
    started: Instant,
    /// When the request was complete (sent whole): the handler's time to
    /// answer counts from here. `None` while an upload is still arriving.
    sent: Option<Instant>,
    method: hyper::Method,
    host: String,
    path: String,
    websocket: bool,
    /// The client asked to close after this response (`Connection: close`,
    /// or HTTP/1.0 without keep-alive).
    close_after: bool,
    /// A reply head split over several messages, gathered.
    head: BytesMut,
    /// The response's status, once its head has been read.
    status: Option<u16>,
    body: ReplyBody,
    upload: Option<PathBuf>,
}

/// What the client is sending.
enum Reading {
    Head,
    Body(Box<BodyIn>),
    /// A WebSocket handshake is with the handler: its answer decides what
    /// the next bytes are (frames, after a 101, for messages with this head).
    Upgrading(Box<m2::codec::RequestHead>),
    WebSocket {
        reader: crate::ws::FrameReader,
        head: Box<m2::codec::RequestHead>,
    },
}

/// A request body on its way in.
struct BodyIn {
    head: Box<m2::codec::RequestHead>,
    framing: BodyFraming,
    sink: Sink,
    got: u64,
    retryable: bool,
    /// The request, until it is sent whole (an upload's is waiting already).
    pending: Option<Pending>,
}

enum BodyFraming {
    Length(u64),
    Chunked(Dechunk),
}

enum Sink {
    Memory(BytesMut),
    /// An upload (over the threshold, or chunked): a temp file the handler
    /// was told of when it began.
    File {
        file: tokio::fs::File,
        start: (String, String),
    },
}

#[derive(PartialEq, Eq)]
enum Flow {
    Go,
    End,
}

/// One owned connection.
struct Session<'a, W> {
    edge: &'a Edge,
    conn: &'a Conn,
    hub: Arc<Hub>,
    limits: &'a ConnLimits,
    wr: W,
    tx: UnboundedSender<Chunk>,
    reading: Reading,
    waiting: VecDeque<Pending>,
    /// A request reached the handlers: they are told when the client goes.
    served: bool,
    handler_closed: bool,
    client_done: bool,
    last_io: Instant,
    head_started: Option<Instant>,
    shutting: Option<Instant>,
    /// A request asked for the connection to close after its answer: no
    /// request after it is read.
    last_request: bool,
}

/// Serves the connection until the client or the handler closes it.
/// `inbuf` holds what was read already (at least the first request head).
pub(crate) async fn serve<I: AsyncRead + AsyncWrite + Unpin>(
    io: I,
    mut inbuf: BytesMut,
    edge: &Edge,
    conn: &Conn,
    hub: Arc<Hub>,
    limits: &ConnLimits,
    shutdown: &CancellationToken,
) {
    let (mut rd, wr) = tokio::io::split(io);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut s = Session {
        edge,
        conn,
        hub,
        limits,
        wr,
        tx,
        reading: Reading::Head,
        waiting: VecDeque::new(),
        served: false,
        handler_closed: false,
        client_done: false,
        last_io: Instant::now(),
        head_started: None,
        shutting: None,
        last_request: false,
    };
    loop {
        if s.advance(&mut inbuf).await == Flow::End || s.finished(&inbuf) {
            break;
        }
        let deadline = s.deadline(&inbuf);
        let wants_input = s.wants_input(&inbuf);
        if wants_input && inbuf.capacity() - inbuf.len() < 4096 {
            inbuf.reserve(16 << 10);
        }
        let flow = tokio::select! {
            biased;
            c = rx.recv() => match c {
                Some(c) => s.on_chunk(c).await,
                None => Flow::End,
            },
            r = rd.read_buf(&mut inbuf), if wants_input => {
                match r {
                    Ok(0) | Err(_) => s.client_done = true,
                    Ok(_) => s.last_io = Instant::now(),
                }
                Flow::Go
            },
            () = crate::coarse::Sleep::until(deadline) => s.on_timeout(&inbuf).await,
            () = shutdown.cancelled(), if s.shutting.is_none() => {
                s.shutting = Some(Instant::now() + Duration::from_secs(10));
                Flow::Go
            },
        };
        if flow == Flow::End {
            break;
        }
    }
    s.finish().await;
}

impl<W: AsyncWrite + Unpin> Session<'_, W> {
    /// Whether to read more from the client now.
    fn wants_input(&self, inbuf: &BytesMut) -> bool {
        if self.client_done
            || self.shutting.is_some()
            || self.last_request
            || self.waiting.len() >= MAX_WAITING
        {
            return false;
        }
        match self.reading {
            Reading::Head => inbuf.len() <= self.limits.max_header_bytes,
            Reading::Upgrading(_) => inbuf.len() < 64 << 10,
            Reading::Body(_) | Reading::WebSocket { .. } => true,
        }
    }

    /// Whether the connection is done: the client closed it (its end of
    /// the stream closes the connection, as in Mongrel2 and nginx: the
    /// handlers are told), or the edge is shutting down and nothing is
    /// owed to the client any more.
    fn finished(&self, inbuf: &BytesMut) -> bool {
        self.client_done || (self.shutting.is_some() && self.waiting.is_empty() && inbuf.is_empty())
    }

    /// The next moment something must be checked.
    fn deadline(&self, inbuf: &BytesMut) -> Instant {
        let mut d = Instant::now() + Duration::from_secs(3600);
        if let Some(t) = self.answer_due() {
            d = d.min(t);
        }
        if matches!(self.reading, Reading::Body(_)) {
            // A body that stops arriving.
            d = d.min(self.last_io + self.edge.timeout);
        }
        if matches!(self.reading, Reading::Head) && self.wants_input(inbuf) {
            if let Some(t) = self.head_started {
                d = d.min(t + self.limits.header_timeout);
            } else if self.waiting.is_empty() && inbuf.is_empty() {
                // An idle keep-alive connection, closed as hyper closes it.
                d = d.min(self.last_io + self.limits.header_timeout);
            }
        }
        if let Some(t) = self.shutting {
            d = d.min(t);
        }
        d
    }

    /// When the request in front must have its answer's head: the hold
    /// time (for a handler to connect) and the timeout after it was sent.
    fn answer_due(&self) -> Option<Instant> {
        let p = self.waiting.front()?;
        match (p.status, p.sent) {
            (None, Some(sent)) => Some(sent + self.edge.hold + self.edge.timeout),
            _ => None,
        }
    }

    async fn on_timeout(&mut self, inbuf: &BytesMut) -> Flow {
        let now = Instant::now();
        if self.shutting.is_some_and(|t| now >= t) {
            return Flow::End;
        }
        if self.answer_due().is_some_and(|t| now >= t) {
            // Nothing of an answer: 504. Part of a head: the connection
            // closes (the client has bytes it cannot finish reading).
            if self.waiting.front().is_some_and(|p| p.head.is_empty()) {
                let msg = format!(
                    "the app's handler did not answer within {} s",
                    self.edge.timeout.as_secs()
                );
                self.answer_front(closing_page(StatusCode::GATEWAY_TIMEOUT, &msg))
                    .await;
            }
            return Flow::End;
        }
        if matches!(self.reading, Reading::Body(_)) && now >= self.last_io + self.edge.timeout {
            return Flow::End;
        }
        if matches!(self.reading, Reading::Head) && self.wants_input(inbuf) {
            if let Some(t) = self.head_started {
                if now >= t + self.limits.header_timeout {
                    let _ = self.wr.write_all(crate::head_timeout::RESPONSE_408).await;
                    return Flow::End;
                }
            } else if self.waiting.is_empty()
                && inbuf.is_empty()
                && now >= self.last_io + self.limits.header_timeout
            {
                return Flow::End;
            }
        }
        Flow::Go
    }

    /// Consumes what the client sent, as far as it goes.
    async fn advance(&mut self, inbuf: &mut BytesMut) -> Flow {
        loop {
            match &mut self.reading {
                Reading::Head => {
                    if inbuf.is_empty() {
                        self.head_started = None;
                        return Flow::Go;
                    }
                    if self.shutting.is_some() || self.last_request {
                        return Flow::Go;
                    }
                    self.head_started.get_or_insert_with(Instant::now);
                    match self.on_head(inbuf).await {
                        Some(Flow::End) => return Flow::End,
                        Some(Flow::Go) => self.head_started = None,
                        None => return Flow::Go,
                    }
                }
                Reading::Body(_) => match self.on_body(inbuf).await {
                    Some(flow) => {
                        if flow == Flow::End {
                            return flow;
                        }
                    }
                    None => return Flow::Go,
                },
                Reading::Upgrading(_) => return Flow::Go,
                Reading::WebSocket { reader, head } => {
                    reader.push(inbuf);
                    inbuf.clear();
                    loop {
                        match reader.next_message() {
                            Ok(Some(m)) => {
                                let msg = crate::edge::websocket_message(
                                    &self.edge.hubs.uuid,
                                    self.conn.id,
                                    head,
                                    &m,
                                    &self.hub,
                                );
                                self.hub.send(self.conn.id, msg, self.tx.clone(), false);
                            }
                            Ok(None) => return Flow::Go,
                            Err(e) => {
                                tracing::debug!(app = %self.hub.app, error = %e, "closing websocket");
                                return Flow::End;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Writes the edge's own answer to the request in front (or to the
    /// connection, when none is waiting), and logs it.
    /// Returns whether the connection is to close after it.
    async fn answer_front(&mut self, resp: Response<Body>) -> bool {
        let status = resp.status().as_u16();
        let mut close = resp
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v == "close");
        if let Some(p) = self.waiting.pop_front() {
            self.log(&p, status);
            close |= p.close_after;
            self.drop_upload(p.upload);
        }
        let _ = write_response(&mut self.wr, resp).await;
        close
    }

    /// Answers a request the edge refuses, before it reaches a handler.
    async fn refuse(&mut self, req: Option<(&hyper::Method, &str, &str)>, resp: Response<Body>) {
        let status = resp.status().as_u16();
        let (method, host, path) = req.unwrap_or((&hyper::Method::GET, "", ""));
        let app = self.hub.app.clone();
        self.edge
            .access
            .log(&app, host, method, path, status, Instant::now());
        self.edge
            .metrics
            .observe(&app, status, Duration::from_secs(0));
        let _ = write_response(&mut self.wr, resp).await;
    }

    fn log(&self, p: &Pending, status: u16) {
        self.edge.access.log(
            &self.hub.app,
            &p.host,
            &p.method,
            &p.path,
            status,
            p.started,
        );
        self.edge
            .metrics
            .observe(&self.hub.app, status, p.started.elapsed());
    }

    fn drop_upload(&self, upload: Option<PathBuf>) {
        if let Some(path) = upload {
            let _ = std::fs::remove_file(path);
        }
    }

    /// A request head in `inbuf`: `None` while incomplete, else what became
    /// of the connection.
    async fn on_head(&mut self, inbuf: &mut BytesMut) -> Option<Flow> {
        let decision = decide(self, inbuf);
        match decision {
            Decision::Partial if inbuf.len() > self.limits.max_header_bytes => {
                let msg = format!(
                    "the request head is over {} bytes",
                    self.limits.max_header_bytes
                );
                self.refuse(
                    None,
                    closing_page(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &msg),
                )
                .await;
                Some(Flow::End)
            }
            Decision::Partial => None,
            Decision::Refuse {
                method,
                host,
                path,
                resp,
                close,
                n,
            } => {
                self.refuse(Some((&method, &host, &path)), resp).await;
                if close {
                    return Some(Flow::End);
                }
                inbuf.advance(n);
                Some(Flow::Go)
            }
            Decision::Send {
                msg,
                retryable,
                pending,
                n,
            } => {
                inbuf.advance(n);
                self.send(msg, retryable, pending);
                Some(Flow::Go)
            }
            Decision::Handshake {
                msg,
                head,
                pending,
                n,
            } => {
                inbuf.advance(n);
                self.send(msg, false, pending);
                self.reading = Reading::Upgrading(head);
                Some(Flow::Go)
            }
            Decision::Body {
                head,
                framing,
                length,
                retryable,
                expect_continue,
                mut pending,
                n,
            } => {
                inbuf.advance(n);
                if expect_continue && inbuf.is_empty() {
                    let _ = self.wr.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                }
                // A body known to be over the threshold is an upload from
                // its start (a chunked one may become one: `on_body`).
                let upload = length.is_some_and(|n| n > self.edge.upload_threshold);
                let sink = if upload {
                    match self.start_upload(&head, &mut pending).await {
                        Ok(sink) => sink,
                        Err(resp) => {
                            self.refuse(
                                Some((&pending.method, &pending.host, &pending.path)),
                                resp,
                            )
                            .await;
                            return Some(Flow::End);
                        }
                    }
                } else {
                    Sink::Memory(BytesMut::with_capacity(length.unwrap_or(1024) as usize))
                };
                let pending = if upload {
                    self.waiting.push_back(pending);
                    None
                } else {
                    Some(pending)
                };
                self.reading = Reading::Body(Box::new(BodyIn {
                    head,
                    framing,
                    sink,
                    got: 0,
                    retryable,
                    pending,
                }));
                Some(Flow::Go)
            }
        }
    }

    /// Sends a whole request to the handlers.
    fn send(&mut self, msg: Vec<u8>, retryable: bool, mut pending: Pending) {
        pending.sent = Some(Instant::now());
        self.last_request |= pending.close_after;
        self.hub.send(self.conn.id, msg, self.tx.clone(), retryable);
        self.served = true;
        self.waiting.push_back(pending);
    }

    /// A message from the handler for this connection.
    async fn on_chunk(&mut self, chunk: Chunk) -> Flow {
        match chunk {
            Chunk::Data(d) => {
                self.last_io = Instant::now();
                // A client that stops reading is let go (what the handler
                // sends it meanwhile waits in memory only this long).
                let write = tokio::time::timeout(self.edge.timeout, self.wr.write_all(&d));
                if !matches!(write.await, Ok(Ok(()))) {
                    return Flow::End;
                }
                self.track(&d)
            }
            // An empty message: the handler closes the connection, with no
            // bytes, and is not told of it.
            Chunk::Close => {
                self.handler_closed = true;
                Flow::End
            }
            Chunk::NoHandler => {
                let unanswered = self
                    .waiting
                    .front()
                    .is_some_and(|p| p.status.is_none() && p.head.is_empty());
                if unanswered {
                    let msg = format!(
                        "no handler of this app connected within {} s",
                        self.edge.hold.as_secs()
                    );
                    let close = self
                        .answer_front(error_page(StatusCode::SERVICE_UNAVAILABLE, &msg))
                        .await;
                    if matches!(self.reading, Reading::Upgrading(_)) && self.waiting.is_empty() {
                        self.reading = Reading::Head;
                    }
                    if close {
                        return Flow::End;
                    }
                }
                Flow::Go
            }
        }
    }

    /// The connection ends: upload files go, and the handlers hear of the
    /// client leaving unless one of them closed it.
    async fn finish(mut self) {
        for p in std::mem::take(&mut self.waiting) {
            self.drop_upload(p.upload);
        }
        if self.handler_closed || !self.served {
            self.hub.forget(self.conn.id);
        } else {
            self.hub.disconnect(&self.edge.hubs.uuid, self.conn.id);
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.wr.shutdown()).await;
    }
}
