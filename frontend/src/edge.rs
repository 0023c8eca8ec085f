//! The public HTTP/1.1 server (hyper): finds the app by `Host`, and hands
//! the request to its handlers (Mongrel2 protocol) or proxies it to its
//! `web` instances. Errors become small pages in one place
//! ([`error_page`]).

use crate::handlers::{Chunk, Hub};
use crate::m2;
use crate::proxy::{Forwarded, Proxy};
use crate::routing::Routes;
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// A plain page for an error the edge answers itself.
pub fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    let text = format!(
        "{} {}\n\n{message}\n\n-- zeroku\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What every connection shares.
pub struct Edge {
    pub routes: RwLock<Arc<Routes>>,
    pub hubs: crate::handlers::Hubs,
    pub proxy: Proxy,
    pub port: u16,
    pub hold: Duration,
    pub timeout: Duration,
    pub max_body: u64,
    next_conn: AtomicU64,
    pub requests: AtomicU64,
}

impl Edge {
    pub fn new(
        hubs: crate::handlers::Hubs,
        port: u16,
        cfg: &zeroku_conf::config::FrontendConfig,
    ) -> Edge {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        Edge {
            routes: RwLock::new(Arc::new(Routes::default())),
            hubs,
            proxy: Proxy::new(timeout),
            port,
            hold: Duration::from_millis(cfg.hold_ms),
            timeout,
            max_body: cfg.max_body_bytes,
            next_conn: AtomicU64::new(1),
            requests: AtomicU64::new(0),
        }
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The state of one client connection.
struct Conn {
    id: u64,
    peer: SocketAddr,
    /// Hubs this connection has talked to: told when the client leaves.
    hubs: std::sync::Mutex<Vec<Arc<Hub>>>,
}

/// The accept loop: a task per connection, at most `max_conns` at once; on
/// shutdown, stops accepting and lets open requests finish (up to 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    max_header_bytes: usize,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(10_000));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let (edge, shutdown) = (edge.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = Arc::new(Conn {
                id: edge.next_conn.fetch_add(1, Ordering::Relaxed),
                peer,
                hubs: std::sync::Mutex::new(Vec::new()),
            });
            let (e2, c2) = (edge.clone(), conn.clone());
            let svc = hyper::service::service_fn(move |req| {
                let (edge, conn) = (e2.clone(), c2.clone());
                async move { Ok::<_, std::convert::Infallible>(handle(&edge, &conn, req).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .max_buf_size(max_header_bytes.max(8192))
                .keep_alive(true);
            let c = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(c);
            tokio::select! {
                r = c.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection") },
                _ = shutdown.cancelled() => {
                    c.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
                }
            }
            // The client is gone: handlers that served it are told.
            let hubs = std::mem::take(&mut *conn.hubs.lock().unwrap_or_else(|e| e.into_inner()));
            for h in hubs {
                h.disconnect(&edge.hubs.uuid, conn.id);
            }
        });
    }
}

async fn handle(edge: &Edge, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    edge.requests.fetch_add(1, Ordering::Relaxed);
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .unwrap_or("")
        .to_string();
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let routes = edge.routes();
    let Some(route) = routes.lookup(&host) else {
        let resp = error_page(
            StatusCode::NOT_FOUND,
            &format!("No app is served at {host:?} by this zeroku frontend. Apps answer at <app>.<base domain> or at their custom domains (zeroku domains:add)."),
        );
        log_access(&host, &method, &path, resp.status(), started);
        return resp;
    };
    let app = route.app.clone();
    let resp = if let (Some(_), Some(hub)) = (&route.handler, edge.hubs.get(&app)) {
        to_handler(edge, conn, hub, req).await
    } else if route.handler.is_some() {
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the handler sockets of app {app} are not available on this frontend"),
        )
    } else {
        let forwarded = Forwarded {
            peer_ip: conn.peer.ip().to_string(),
            proto: "http",
            port: edge.port,
            request_id: request_id(&req),
        };
        edge.proxy.forward(&app, &route.web, req, &forwarded).await
    };
    log_access(&host, &method, &path, resp.status(), started);
    resp
}

fn log_access(
    host: &str,
    method: &hyper::Method,
    path: &str,
    status: StatusCode,
    started: Instant,
) {
    tracing::info!(target: "access", host, %method, path, status = status.as_u16(), ms = started.elapsed().as_secs_f64() * 1000.0);
}

fn request_id(req: &Request<Incoming>) -> String {
    if let Some(id) = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        if !id.is_empty() && id.len() <= 200 {
            return id.to_string();
        }
    }
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", N.fetch_add(1, Ordering::Relaxed))
}

/// Sends the request to the app's handlers and turns their raw HTTP reply
/// into a response.
async fn to_handler(
    edge: &Edge,
    conn: &Conn,
    hub: Arc<Hub>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, edge.max_body as usize).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_big {
                error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request bodies are limited to {} bytes", edge.max_body),
                )
            } else {
                error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the request body: {e}"),
                )
            };
        }
    };
    let head = request_head(&parts, conn.peer);
    let msg = m2::codec::encode_request(
        &edge.hubs.uuid,
        conn.id,
        &head,
        &[],
        &body,
        m2::codec::Protocol::Json,
    );
    {
        let mut hubs = conn.hubs.lock().unwrap_or_else(|e| e.into_inner());
        if !hubs.iter().any(|h| Arc::ptr_eq(h, &hub)) {
            hubs.push(hub.clone());
        }
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    hub.send(conn.id, msg, tx);
    let guard = Forget {
        hub: hub.clone(),
        conn: conn.id,
        armed: true,
    };
    read_reply(edge, rx, guard).await
}

/// Unregisters a request from its hub when it ends, however it ends.
struct Forget {
    hub: Arc<Hub>,
    conn: u64,
    armed: bool,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if self.armed {
            self.hub.forget(self.conn);
        }
    }
}

fn request_head(parts: &hyper::http::request::Parts, peer: SocketAddr) -> m2::codec::RequestHead {
    let uri = &parts.uri;
    m2::codec::RequestHead {
        method: parts.method.as_str().to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        fragment: None,
        uri: uri
            .path_and_query()
            .map_or_else(|| uri.to_string(), |p| p.as_str().to_string()),
        version: format!("{:?}", parts.version),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
            .collect(),
        remote_addr: peer.ip().to_string(),
        pattern: "/".into(),
        url_scheme: "http".into(),
    }
}

/// Reads the handler's reply: the response head, then the body as framed
/// by the head (Content-Length, chunked, or until the handler closes).
async fn read_reply(
    edge: &Edge,
    mut rx: UnboundedReceiver<Chunk>,
    guard: Forget,
) -> Response<Body> {
    let deadline = tokio::time::Instant::now() + edge.hold + edge.timeout;
    let mut buf = BytesMut::new();
    let (status, headers, head_len) = loop {
        let chunk = match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => {
                return error_page(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the app's handler did not answer within {} s",
                        edge.timeout.as_secs()
                    ),
                )
            }
            Ok(None) => return error_page(StatusCode::BAD_GATEWAY, "the app's handler went away"),
            Ok(Some(c)) => c,
        };
        match chunk {
            Chunk::NoHandler => {
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "no handler of this app connected within {} s",
                        edge.hold.as_secs()
                    ),
                )
            }
            Chunk::Close => {
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    "the app's handler closed the connection without an answer",
                )
            }
            Chunk::Data(d) => buf.extend_from_slice(&d),
        }
        let mut hs = [httparse::EMPTY_HEADER; 100];
        let mut parsed = httparse::Response::new(&mut hs);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(n)) => {
                let status = parsed.code.unwrap_or(502);
                let headers: Vec<(String, Vec<u8>)> = parsed
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), h.value.to_vec()))
                    .collect();
                break (status, headers, n);
            }
            Ok(httparse::Status::Partial) if buf.len() < 64 << 10 => continue,
            Ok(httparse::Status::Partial) => {
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    "the app's handler sent a response head over 64 KiB",
                )
            }
            Err(e) => {
                return error_page(
                    StatusCode::BAD_GATEWAY,
                    &format!("the app's handler sent an invalid HTTP response: {e}"),
                )
            }
        }
    };
    buf.advance(head_len);
    let mut resp = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut framing = Framing::UntilClose;
    for (k, v) in &headers {
        let lk = k.to_ascii_lowercase();
        match lk.as_str() {
            "content-length" => {
                if let Some(n) = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    framing = Framing::Length(n);
                }
            }
            "transfer-encoding" => {
                if v.eq_ignore_ascii_case(b"chunked") {
                    framing = Framing::Chunked(Dechunk::default());
                }
                continue;
            }
            "connection" | "keep-alive" => continue,
            _ => {}
        }
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(k.as_bytes()),
            hyper::header::HeaderValue::from_bytes(v),
        ) {
            resp.headers_mut().append(name, value);
        }
    }
    if matches!(framing, Framing::UntilClose) {
        // The body ends when the handler closes: so does the connection.
        resp.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    let state = BodyState {
        rx,
        framing,
        pending: buf.freeze(),
        done: false,
        _guard: guard,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    });
    *resp.body_mut() = BodyExt::boxed(StreamBody::new(stream));
    resp
}

enum Framing {
    Length(u64),
    Chunked(Dechunk),
    UntilClose,
}

struct BodyState {
    rx: UnboundedReceiver<Chunk>,
    framing: Framing,
    /// Bytes received but not yet passed on.
    pending: Bytes,
    done: bool,
    _guard: Forget,
}

impl BodyState {
    async fn next(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        loop {
            if self.done {
                return None;
            }
            if !self.pending.is_empty() {
                let data = std::mem::take(&mut self.pending);
                let out = match &mut self.framing {
                    Framing::Length(left) => {
                        let n = (*left).min(data.len() as u64) as usize;
                        *left -= n as u64;
                        if *left == 0 {
                            self.done = true;
                        }
                        data.slice(..n)
                    }
                    Framing::Chunked(d) => match d.feed(&data) {
                        Ok((out, finished)) => {
                            self.done = finished;
                            out
                        }
                        Err(e) => return Some(Err(e.into())),
                    },
                    Framing::UntilClose => data,
                };
                if !out.is_empty() {
                    return Some(Ok(Frame::data(out)));
                }
                continue;
            }
            if matches!(self.framing, Framing::Length(0)) {
                return None;
            }
            match self.rx.recv().await {
                Some(Chunk::Data(d)) => self.pending = d,
                Some(Chunk::Close) | None => {
                    self.done = true;
                    return match self.framing {
                        Framing::UntilClose => None,
                        _ => Some(Err(
                            "the handler closed the connection in the middle of a response".into(),
                        )),
                    };
                }
                Some(Chunk::NoHandler) => return Some(Err("handler gone".into())),
            }
        }
    }
}

/// Decodes `Transfer-Encoding: chunked` incrementally.
#[derive(Default)]
pub struct Dechunk {
    /// Bytes left in the current chunk's data.
    left: u64,
    /// A partial size line or trailer.
    line: Vec<u8>,
    /// Waiting for the CRLF after a chunk's data.
    need_crlf: bool,
    in_trailer: bool,
}

impl Dechunk {
    /// Feeds raw bytes; returns decoded data and whether the body ended.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(Bytes, bool), String> {
        let mut out = BytesMut::new();
        while !input.is_empty() {
            if self.left > 0 {
                let n = (self.left as usize).min(input.len());
                out.extend_from_slice(&input[..n]);
                self.left -= n as u64;
                input = &input[n..];
                if self.left == 0 {
                    self.need_crlf = true;
                }
                continue;
            }
            let Some(nl) = input.iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(input);
                if self.line.len() > 4096 {
                    return Err("chunk size line too long".into());
                }
                break;
            };
            self.line.extend_from_slice(&input[..nl]);
            input = &input[nl + 1..];
            let line = std::mem::take(&mut self.line);
            let line = line.strip_suffix(b"\r").unwrap_or(&line);
            if self.need_crlf {
                if !line.is_empty() {
                    return Err("missing CRLF after chunk data".into());
                }
                self.need_crlf = false;
                continue;
            }
            if self.in_trailer {
                if line.is_empty() {
                    return Ok((out.freeze(), true));
                }
                continue;
            }
            let size = std::str::from_utf8(line)
                .ok()
                .map(|s| s.split(';').next().unwrap_or("").trim())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or_else(|| {
                    format!("bad chunk size line {:?}", String::from_utf8_lossy(line))
                })?;
            if size == 0 {
                self.in_trailer = true;
            } else {
                self.left = size;
            }
        }
        Ok((out.freeze(), false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_across_feeds() {
        let mut d = Dechunk::default();
        let (a, done) = d.feed(b"5\r\nhel").unwrap();
        assert_eq!((&a[..], done), (&b"hel"[..], false));
        let (b, done) = d.feed(b"lo\r\n3;x=y\r\n wo\r\n0\r\n").unwrap();
        assert_eq!((&b[..], done), (&b"lo wo"[..], false));
        let (c, done) = d.feed(b"\r\n").unwrap();
        assert_eq!((&c[..], done), (&b""[..], true));
        assert!(Dechunk::default().feed(b"zz\r\n").is_err());
    }
}
