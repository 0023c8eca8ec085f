//! The public HTTP/1.1 server (hyper): finds the app by `Host`, and hands
//! the request to its handlers (Mongrel2 protocol) or proxies it to its
//! `web` instances. Errors become small pages in one place
//! ([`error_page`]).

use crate::chunked::Dechunk;
use crate::handlers::{Chunk, Hub};
use crate::m2;
use crate::proxy::{Forwarded, Proxy};
use crate::routing::Routes;
use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;
use zeroku_conf::Backend;

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

/// An error page after which the connection is closed: what follows the
/// request on it cannot be trusted to be where a request starts.
pub(crate) fn closing_page(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = error_page(status, message);
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// Marks a response that must not be written: the connection is closed
/// with no bytes (a handler's empty reply, as Mongrel2 does).
#[derive(Clone, Copy, Debug)]
struct CloseSilently;

impl std::fmt::Display for CloseSilently {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the handler closed the connection")
    }
}

impl std::error::Error for CloseSilently {}

fn close_silently() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    r.extensions_mut().insert(CloseSilently);
    r
}

/// An app in maintenance: 503 with its page (HTML) or zeroku's, and `Retry-After`.
pub(crate) fn maintenance_page(page: &str) -> Response<Body> {
    let (body, ctype) = if page.is_empty() {
        (
            "503 Service Unavailable\n\nThis app is down for maintenance. Please try again soon.\n\n-- zeroku\n".to_string(),
            "text/plain; charset=utf-8",
        )
    } else {
        (page.to_string(), "text/html; charset=utf-8")
    };
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    h.insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("60"),
    );
    r
}

/// What every connection shares.
pub struct Edge {
    pub routes: RwLock<Arc<Routes>>,
    pub hubs: crate::handlers::Hubs,
    pub proxy: Proxy,
    pub port: u16,
    /// `port` as an `X-Forwarded-Port` value.
    port_header: hyper::header::HeaderValue,
    pub hold: Duration,
    pub timeout: Duration,
    pub max_body: u64,
    pub upload_threshold: u64,
    /// Unpacked slugs for `dir` routes: sha256 → directory.
    pub slugs: std::sync::Mutex<std::collections::HashMap<String, std::path::PathBuf>>,
    pub uploads: Uploads,
    next_conn: AtomicU64,
    pub requests: AtomicU64,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub access: Arc<crate::access_log::AccessLog>,
    /// The certificates HTTPS serves.
    pub certs: Arc<crate::tls::Certs>,
    /// The HTTPS listener's port, if there is one: where `force_https` redirects to.
    pub https_port: Option<u16>,
}

impl Edge {
    pub fn new(
        hubs: crate::handlers::Hubs,
        port: u16,
        cfg: &zeroku_conf::config::FrontendConfig,
        uploads: Uploads,
        access: Arc<crate::access_log::AccessLog>,
        certs: Arc<crate::tls::Certs>,
    ) -> Edge {
        let timeout = Duration::from_millis(cfg.timeout_ms);
        Edge {
            upload_threshold: cfg.upload_threshold_bytes,
            slugs: Default::default(),
            uploads,
            routes: RwLock::new(Arc::new(Routes::default())),
            hubs,
            proxy: Proxy::new(timeout),
            port,
            port_header: hyper::header::HeaderValue::from(port),
            hold: Duration::from_millis(cfg.hold_ms),
            timeout,
            max_body: cfg.max_body_bytes,
            next_conn: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            metrics: Arc::new(crate::metrics::Metrics::new()),
            access,
            certs,
            https_port: cfg
                .https
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .map(|p| match cfg.https_public_port {
                    0 => p,
                    public => public,
                }),
        }
    }

    /// The unpacked slug `sha256`, once the frontend has it.
    pub fn slug_dir(&self, sha256: &str) -> Option<std::path::PathBuf> {
        self.slugs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
            .cloned()
    }

    pub fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// The state of one client connection.
pub(crate) struct Conn {
    pub(crate) id: u64,
    /// The peer's address as a header value, for `X-Forwarded-For`.
    peer_ip: hyper::header::HeaderValue,
    /// The peer's address, for handlers (`REMOTE_ADDR`).
    pub(crate) remote_addr: String,
    /// Came in over TLS.
    pub(crate) https: bool,
    /// Hubs this connection has talked to: told when the client leaves.
    hubs: std::sync::Mutex<Vec<Arc<Hub>>>,
    /// Upgraded to a WebSocket: its session tells the handler when it ends.
    upgraded: std::sync::atomic::AtomicBool,
    /// A handler closed it (an empty reply): it knows, and is not told, as
    /// Mongrel2 does not tell it.
    handler_closed: Arc<std::sync::atomic::AtomicBool>,
}

/// Limits every connection shares.
#[derive(Clone)]
pub struct ConnLimits {
    pub max_header_bytes: usize,
    pub header_timeout: Duration,
}

/// The accept loop: a task per connection, at most 10,000 at once; with
/// `tls`, each connection is a TLS handshake first (rustls). On shutdown,
/// stops accepting and lets open requests finish (up to 10 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    edge: Arc<Edge>,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
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
        let (edge, shutdown, limits, tls) =
            (edge.clone(), shutdown.clone(), limits.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_conn(stream, peer, false, edge, limits, shutdown).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request head.
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(s)) => serve_conn(s, peer, true, edge, limits, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves one client connection (plain or TLS) until it closes.
async fn serve_conn<I>(
    io: I,
    peer: SocketAddr,
    https: bool,
    edge: Arc<Edge>,
    limits: ConnLimits,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + crate::head_timeout::LastWords
        + Unpin
        + Send
        + 'static,
{
    let (mut io, timed_out) = crate::head_timeout::Watched::new(io);
    // The first request decides who serves the connection: an app served
    // only by handlers gets it whole, as Mongrel2 serves it.
    let mut first = BytesMut::new();
    let owner = tokio::select! {
        f = crate::passthrough::first_request(&mut io, &mut first, &edge, &limits, https) => f,
        _ = shutdown.cancelled() => return,
    };
    let hub = match owner {
        crate::passthrough::First::Gone => return,
        crate::passthrough::First::TimedOut => {
            // Dropping the stream answers 408 if a head was begun.
            timed_out.store(true, Ordering::Relaxed);
            return;
        }
        crate::passthrough::First::Handler(hub) => Some(hub),
        crate::passthrough::First::Hyper => None,
        crate::passthrough::First::Ambiguous(why, method, path) => {
            edge.access.log("", "", &method, &path, 400, Instant::now());
            edge.metrics.observe("-", 400, Duration::from_secs(0));
            let page = closing_page(StatusCode::BAD_REQUEST, why);
            let _ = crate::passthrough::write_page(&mut io, page).await;
            return;
        }
    };
    let remote_addr = peer.ip().to_string();
    let conn = Arc::new(Conn {
        id: edge.next_conn.fetch_add(1, Ordering::Relaxed),
        peer_ip: hyper::header::HeaderValue::from_str(&remote_addr)
            .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("unknown")),
        remote_addr,
        https,
        hubs: std::sync::Mutex::new(Vec::new()),
        upgraded: std::sync::atomic::AtomicBool::new(false),
        handler_closed: Arc::new(std::sync::atomic::AtomicBool::new(false)),
    });
    if let Some(hub) = hub {
        crate::passthrough::serve(io, first, &edge, &conn, hub, &limits, &shutdown).await;
        return;
    }
    let io = crate::prefixed::Prefixed::new(first.freeze(), io);
    let (e2, c2) = (edge.clone(), conn.clone());
    let svc = hyper::service::service_fn(move |req| {
        let (edge, conn) = (e2.clone(), c2.clone());
        async move {
            let hsts = if conn.https {
                req.headers()
                    .get(hyper::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| edge.routes().lookup(h).and_then(|r| r.hsts))
            } else {
                None
            };
            let mut resp = handle(&edge, &conn, req).await;
            if let Some(v) = hsts.and_then(|age| {
                hyper::header::HeaderValue::from_str(&format!("max-age={age}")).ok()
            }) {
                resp.headers_mut()
                    .insert(hyper::header::STRICT_TRANSPORT_SECURITY, v);
            }
            // A service error makes hyper close the connection, writing nothing.
            match resp.extensions().get::<CloseSilently>() {
                Some(c) => Err(*c),
                None => Ok(resp),
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(crate::coarse::HyperTimer)
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let c = builder
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(c);
    tokio::select! {
        r = c.as_mut() => if let Err(e) = r {
            if e.is_timeout() {
                // Dropping the connection answers 408 if a head was begun.
                timed_out.store(true, Ordering::Relaxed);
            }
            tracing::debug!(%peer, error = %e, "connection");
        },
        _ = shutdown.cancelled() => {
            c.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
        }
    }
    // The client is gone: handlers that served it are told (unless one of
    // them closed it).
    if conn.upgraded.load(Ordering::Relaxed) || conn.handler_closed.load(Ordering::Relaxed) {
        return;
    }
    let hubs = std::mem::take(&mut *conn.hubs.lock().unwrap_or_else(|e| e.into_inner()));
    for h in hubs {
        h.disconnect(&edge.hubs.uuid, conn.id);
    }
}

/// Where ACME CAs look for HTTP-01 answers (RFC 8555 §8.3).
pub(crate) const ACME_PATH: &str = "/.well-known/acme-challenge/";

/// The key authorization for `token` as `text/plain`: from the route table's challenges, or
/// `<token>.<thumbprint>` of the master's account for any other well-formed token (a
/// challenge published a moment ago); 404 without an account. Nothing is asked of anyone.
async fn acme_answer(edge: &Edge, token: &str) -> Response<Body> {
    let routes = edge.routes();
    let well_formed = !token.is_empty()
        && token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let answer = match routes.acme(token) {
        Some(ka) => ka.to_string(),
        None if well_formed && !routes.acme_thumbprint.is_empty() => {
            format!("{token}.{}", routes.acme_thumbprint)
        }
        None => return error_page(StatusCode::NOT_FOUND, "no such ACME challenge here"),
    };
    let mut r = Response::new(
        Full::new(Bytes::from(answer))
            .map_err(|e| match e {})
            .boxed(),
    );
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    r
}

/// A redirect to the same URL over HTTPS (`force_https`) on this frontend's HTTPS port: 301
/// for GET and HEAD, 308 for the rest, which keeps the method and body.
fn to_https(host: &str, port: u16, req: &Request<Incoming>) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let host = crate::routing::normalize_host(host);
    let location = if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    };
    let status = if matches!(*req.method(), hyper::Method::GET | hyper::Method::HEAD) {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let text = format!("Moved to {location}\n");
    let mut r = Response::new(Full::new(Bytes::from(text)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    r
}

/// Longest request target and header line, as Mongrel2's 8 KB.
pub(crate) const MAX_LINE: usize = 8 << 10;

async fn handle(edge: &Edge, conn: &Conn, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    edge.requests.fetch_add(1, Ordering::Relaxed);
    let uri = req.uri();
    let target_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > MAX_LINE {
        return error_page(StatusCode::URI_TOO_LONG, "the request target is over 8 KB");
    }
    if let Some((k, _)) = req
        .headers()
        .iter()
        .find(|(k, v)| k.as_str().len() + v.len() + 2 > MAX_LINE)
    {
        return error_page(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!("the {k} header line is over 8 KB"),
        );
    }
    if let Some(why) = crate::framing::ambiguous(req.headers()) {
        let resp = closing_page(StatusCode::BAD_REQUEST, why);
        edge.access
            .log("", "", req.method(), req.uri().path(), 400, started);
        edge.metrics.observe("-", 400, started.elapsed());
        return resp;
    }
    // The Host value itself (a cheap clone), not a copy of it.
    let host_header = req.headers().get(hyper::header::HOST).cloned();
    let host: std::borrow::Cow<str> = match host_header.as_ref().and_then(|h| h.to_str().ok()) {
        Some(h) => h.into(),
        None => req.uri().host().unwrap_or("").to_string().into(),
    };
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    if let Some(token) = path.strip_prefix(ACME_PATH) {
        let resp = acme_answer(edge, token).await;
        edge.access
            .log("", &host, &method, &path, resp.status().as_u16(), started);
        return resp;
    }
    let routes = edge.routes();
    let Some(route) = routes.lookup(&host) else {
        let resp = error_page(
            StatusCode::NOT_FOUND,
            &format!("No app is served at {host:?} by this zeroku frontend. Apps answer at <app>.<base domain> or at their custom domains (zeroku domains:add)."),
        );
        edge.access
            .log("", &host, &method, &path, resp.status().as_u16(), started);
        edge.metrics
            .observe("-", resp.status().as_u16(), started.elapsed());
        return resp;
    };
    let app = route.app.clone();
    if let (true, false, Some(port)) = (route.force_https, conn.https, edge.https_port) {
        let resp = to_https(&host, port, &req);
        edge.access
            .log(&app, &host, &method, &path, resp.status().as_u16(), started);
        edge.metrics
            .observe(&app, resp.status().as_u16(), started.elapsed());
        return resp;
    }
    if let Some(page) = &route.maintenance {
        let resp = maintenance_page(page);
        edge.access.log(&app, &host, &method, &path, 503, started);
        edge.metrics.observe(&app, 503, started.elapsed());
        return resp;
    }
    let too_big = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > edge.max_body);
    if too_big {
        let resp = error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request bodies are limited to {} bytes", edge.max_body),
        );
        edge.metrics.observe(&app, 413, started.elapsed());
        return resp;
    }
    // A path route (longest prefix first), else the app's default backend.
    let matched = route
        .paths
        .iter()
        .find(|r| prefix_matches(&r.prefix, &path));
    let backend = match matched {
        Some(r) => r.backend.clone(),
        None if route.handler.is_some() => Backend::Handler,
        None => Backend::Web,
    };
    let resp = match backend {
        Backend::Handler => match (&route.handler, edge.hubs.get(&app)) {
            (Some(_), Some(hub)) => to_handler(edge, conn, hub, req).await,
            (None, _) => error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("app {app} has no handler process type"),
            ),
            (Some(_), None) => error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("the handler sockets of app {app} are not available on this frontend"),
            ),
        },
        Backend::Web => {
            let forwarded = Forwarded {
                peer_ip: conn.peer_ip.clone(),
                proto: if conn.https { "https" } else { "http" },
                port: edge.port_header.clone(),
                request_id: request_id(&req),
            };
            edge.proxy
                .forward(&app, &route.web, req, &forwarded, edge.max_body)
                .await
        }
        Backend::Dir { dir } => {
            let prefix = matched.map_or("/", |r| r.prefix.as_str());
            let rest = if prefix == "/" {
                path.as_str()
            } else {
                &path[prefix.len()..]
            };
            let rest = if rest.is_empty() { "/" } else { rest };
            match route.slug.as_ref().and_then(|s| edge.slug_dir(&s.sha256)) {
                Some(root) => {
                    crate::dir::serve(&root.join(&dir), &method, rest, req.headers()).await
                }
                None => error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "the files of app {app} are still being fetched; try again in a moment"
                    ),
                ),
            }
        }
    };
    edge.access
        .log(&app, &host, &method, &path, resp.status().as_u16(), started);
    edge.metrics
        .observe(&app, resp.status().as_u16(), started.elapsed());
    resp
}

/// Whether `path` is `prefix` or below it, by whole segments (`/api`
/// matches `/api` and `/api/x`, not `/apix`).
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|r| r.starts_with('/'))
}

/// The client's `X-Request-Id` (up to 200 bytes), else a new one: this
/// process's start time and a counter, in hex (unique per frontend run).
fn request_id(req: &Request<Incoming>) -> hyper::header::HeaderValue {
    if let Some(id) = req.headers().get("x-request-id") {
        if !id.is_empty() && id.len() <= 200 {
            return id.clone();
        }
    }
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static N: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut id = [0u8; 33];
    id[..16].copy_from_slice(&crate::ascii::hex16(start));
    id[16] = b'-';
    id[17..].copy_from_slice(&crate::ascii::hex16(N.fetch_add(1, Ordering::Relaxed)));
    hyper::header::HeaderValue::from_bytes(&id)
        .unwrap_or_else(|_| hyper::header::HeaderValue::from_static("-"))
}

/// Sends the request to the app's handlers and turns their raw HTTP reply
/// into a response. WebSocket upgrades and large bodies (as temp files)
/// take the paths Mongrel2 handlers expect.
async fn to_handler(
    edge: &Edge,
    conn: &Conn,
    hub: Arc<Hub>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (mut parts, body) = req.into_parts();
    let version = http_version(parts.version);
    // The hub is told of the client going away only if a request of this
    // connection reached it (Mongrel2 sends no disconnect for a connection
    // whose request never arrived whole).
    let served = || {
        let mut hubs = conn.hubs.lock().unwrap_or_else(|e| e.into_inner());
        if !hubs.iter().any(|h| Arc::ptr_eq(h, &hub)) {
            hubs.push(hub.clone());
        }
    };
    let uuid = edge.hubs.uuid.as_str();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut guard = Forget {
        hub: hub.clone(),
        conn: conn.id,
        armed: true,
        upload: None,
    };

    if let Some(key) = websocket_key(&parts) {
        let head = request_head(&parts, conn, &version).to_owned_head();
        let accept = crate::ws::accept_key(&key);
        let extra = [("METHOD".to_string(), "WEBSOCKET_HANDSHAKE".to_string())];
        let msg = m2::codec::encode_request(
            uuid,
            conn.id,
            &head,
            &extra,
            accept.as_bytes(),
            hub_protocol(&hub),
        );
        hub.send(conn.id, msg, tx.clone(), false);
        served();
        let reply = match read_head(edge, &mut rx).await {
            Ok(h) => h,
            Err(resp) => return resp,
        };
        if reply.status != 101 {
            return build_response(reply, rx, guard, conn.handler_closed.clone());
        }
        let Some(on_upgrade) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "this connection cannot be upgraded",
            );
        };
        let mut resp = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *resp.headers_mut() = reply.headers;
        let rest = reply.rest;
        let session = WsSession {
            hub,
            uuid: uuid.to_string(),
            conn_id: conn.id,
            head,
            tx,
            max: edge.max_body,
        };
        conn.upgraded.store(true, Ordering::Relaxed);
        tokio::spawn(session.run(on_upgrade, rest, rx, guard));
        return resp;
    }

    let head = request_head(&parts, conn, &version);
    let length = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if length.is_some_and(|n| n > edge.max_body) {
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request bodies are limited to {} bytes", edge.max_body),
        );
    }
    let chunked = length.is_none() && !hyper::body::Body::is_end_stream(&body);
    if chunked || length.is_some_and(|n| n > edge.upload_threshold) {
        // As Mongrel2: the body goes to a temp file; the handler hears of
        // it when it starts and when it is complete.
        let (path, file) = match edge.uploads.create(&hub) {
            Ok(p) => p,
            Err(e) => {
                return error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot store the upload: {e}"),
                )
            }
        };
        guard.upload = Some(path.clone());
        let start = (
            "x-mongrel2-upload-start".to_string(),
            path.display().to_string(),
        );
        let msg = m2::codec::encode_request_ref(
            uuid,
            conn.id,
            &head,
            std::slice::from_ref(&start),
            b"",
            hub_protocol(&hub),
        );
        hub.send(conn.id, msg, tx, false);
        served();
        if let Err(resp) = write_upload(body, file, edge.max_body).await {
            return resp;
        }
        let done = (
            "x-mongrel2-upload-done".to_string(),
            path.display().to_string(),
        );
        let msg = m2::codec::encode_request_ref(
            uuid,
            conn.id,
            &head,
            &[start, done],
            b"",
            hub_protocol(&hub),
        );
        hub.send_more(conn.id, msg);
    } else {
        let body = if hyper::body::Body::is_end_stream(&body) {
            Bytes::new()
        } else {
            match Limited::new(body, edge.max_body as usize).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        &format!("cannot read the request body: {e}"),
                    )
                }
            }
        };
        let msg =
            m2::codec::encode_request_ref(uuid, conn.id, &head, &[], &body, hub_protocol(&hub));
        // Safe to send again if a handler dies holding it.
        hub.send(conn.id, msg, tx, crate::idempotent(&parts.method));
        served();
    }
    match read_head(edge, &mut rx).await {
        Ok(head) => build_response(head, rx, guard, conn.handler_closed.clone()),
        Err(resp) => {
            if resp.extensions().get::<CloseSilently>().is_some() {
                conn.handler_closed.store(true, Ordering::Relaxed);
            }
            resp
        }
    }
}

/// The `Sec-WebSocket-Key` of a WebSocket upgrade request.
fn websocket_key(parts: &hyper::http::request::Parts) -> Option<String> {
    let h = &parts.headers;
    let has = |name: hyper::header::HeaderName, token: &str| {
        h.get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if parts.method != hyper::Method::GET
        || !has(hyper::header::UPGRADE, "websocket")
        || !has(hyper::header::CONNECTION, "upgrade")
    {
        return None;
    }
    h.get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Streams a request body into `f`, at most `max` bytes.
async fn write_upload(
    mut body: Incoming,
    mut f: tokio::fs::File,
    max: u64,
) -> Result<(), Response<Body>> {
    use tokio::io::AsyncWriteExt;
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            error_page(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            if n > max {
                return Err(error_page(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("request bodies are limited to {max} bytes"),
                ));
            }
            f.write_all(&data).await.map_err(|e| {
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("cannot store the upload: {e}"),
                )
            })?;
        }
    }
    f.flush().await.map_err(|e| {
        error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot store the upload: {e}"),
        )
    })
}

/// Temp files for uploads, readable by handlers (which may run as another
/// user), deleted when their request ends.
/// Upload files: in the app's own handler directory (which only its uid and
/// this frontend may enter), mode 0600 and owned by the app's uid, so its
/// handler may read, write, rename or delete it and no other app can see it.
#[derive(Default)]
pub struct Uploads {
    next: AtomicU64,
}

impl Uploads {
    pub(crate) fn create(
        &self,
        hub: &Hub,
    ) -> std::io::Result<(std::path::PathBuf, tokio::fs::File)> {
        use std::os::unix::fs::OpenOptionsExt;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = hub.dir.join(format!(
            "{}{}.{n}",
            crate::endpoints::UPLOAD_PREFIX,
            std::process::id()
        ));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        if let Some(uid) = hub.uid {
            if let Err(e) = std::os::unix::fs::fchown(&f, Some(uid), Some(uid)) {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
        // The body is written through this open file, never by path again:
        // the directory is the app's, and its handler could put a symlink
        // where the file was.
        Ok((path, tokio::fs::File::from_std(f)))
    }
}

/// The header encoding the app's handlers asked for.
pub(crate) fn hub_protocol(hub: &Hub) -> m2::codec::Protocol {
    if hub.tnetstring.load(Ordering::Relaxed) {
        m2::codec::Protocol::Tnetstring
    } else {
        m2::codec::Protocol::Json
    }
}

/// Unregisters a request from its hub when it ends, however it ends, and
/// deletes its upload file.
struct Forget {
    hub: Arc<Hub>,
    conn: u64,
    armed: bool,
    upload: Option<std::path::PathBuf>,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if self.armed {
            self.hub.forget(self.conn);
        }
        if let Some(p) = &self.upload {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `HTTP/1.1`, as Mongrel2 writes the version.
fn http_version(v: hyper::Version) -> std::borrow::Cow<'static, str> {
    match v {
        hyper::Version::HTTP_10 => "HTTP/1.0".into(),
        hyper::Version::HTTP_11 => "HTTP/1.1".into(),
        v => format!("{v:?}").into(),
    }
}

/// hyper's header map as (name, value) pairs for the handler codec.
#[derive(Clone, Copy)]
struct HyperHeaders<'a>(&'a hyper::HeaderMap);

impl<'a> IntoIterator for HyperHeaders<'a> {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = std::iter::Map<
        hyper::header::Iter<'a, hyper::header::HeaderValue>,
        fn(
            (
                &'a hyper::header::HeaderName,
                &'a hyper::header::HeaderValue,
            ),
        ) -> (&'a str, &'a [u8]),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))
    }
}

/// The request as handlers see it, borrowed from hyper's parsed head.
fn request_head<'a>(
    parts: &'a hyper::http::request::Parts,
    conn: &'a Conn,
    version: &'a str,
) -> m2::codec::RequestHeadRef<'a, HyperHeaders<'a>> {
    let uri = &parts.uri;
    m2::codec::RequestHeadRef {
        method: parts.method.as_str(),
        path: uri.path(),
        query: uri.query(),
        fragment: None,
        uri: target_of(uri),
        version,
        headers: HyperHeaders(&parts.headers),
        remote_addr: &conn.remote_addr,
        pattern: "/",
        url_scheme: if conn.https { "https" } else { "http" },
    }
}

/// The request target as sent, for `URI` (authority-form: the authority).
pub(crate) fn target_of(uri: &hyper::Uri) -> &str {
    uri.path_and_query()
        .map(|p| p.as_str())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// A client's WebSocket message for the handlers: `METHOD=WEBSOCKET`, with
/// its frame's first byte in `FLAGS`.
pub(crate) fn websocket_message(
    uuid: &str,
    conn_id: u64,
    head: &m2::codec::RequestHead,
    m: &crate::ws::Message,
    hub: &Hub,
) -> Vec<u8> {
    let extra = [
        ("METHOD".to_string(), "WEBSOCKET".to_string()),
        ("FLAGS".to_string(), format!("0x{:x}", m.first_byte)),
    ];
    m2::codec::encode_request(uuid, conn_id, head, &extra, &m.payload, hub_protocol(hub))
}

/// A handler's response head: status, headers (without the hop-by-hop
/// ones unless it is a 101), how the body is framed, and the bytes that
/// came after the head.
struct Head {
    status: u16,
    headers: hyper::HeaderMap,
    framing: Framing,
    rest: Bytes,
}

/// Reads the handler's response head (and what came after it). Header
/// values and the rest are slices of the reply, not copies.
async fn read_head(edge: &Edge, rx: &mut UnboundedReceiver<Chunk>) -> Result<Head, Response<Body>> {
    let deadline = crate::coarse::Sleep::after(edge.hold + edge.timeout);
    tokio::pin!(deadline);
    // Only a head split over several replies is gathered here.
    let mut gathered = BytesMut::new();
    loop {
        let chunk = tokio::select! {
            c = rx.recv() => c,
            () = &mut deadline => {
                return Err(error_page(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "the app's handler did not answer within {} s",
                        edge.timeout.as_secs()
                    ),
                ))
            }
        };
        let Some(chunk) = chunk else {
            return Err(error_page(
                StatusCode::BAD_GATEWAY,
                "the app's handler went away",
            ));
        };
        let data = match chunk {
            Chunk::NoHandler => {
                return Err(error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "no handler of this app connected within {} s",
                        edge.hold.as_secs()
                    ),
                ))
            }
            // An empty reply before any answer: closed with no bytes, as Mongrel2 does.
            Chunk::Close => return Err(close_silently()),
            Chunk::Data(d) => d,
        };
        // A head in one reply (the usual case) is parsed where it is; one
        // in several is gathered, each piece copied once.
        let first = gathered.is_empty();
        if !first {
            gathered.extend_from_slice(&data);
        }
        let parsed = parse_head(if first { &data } else { &gathered });
        match parsed {
            Ok(Some((status, fields, n))) => {
                let buf = if first {
                    data
                } else {
                    gathered.split().freeze()
                };
                let mut headers = hyper::HeaderMap::with_capacity(fields.len());
                let mut framing = Framing::UntilClose;
                for (name, value) in fields {
                    let value = buf.slice(value);
                    if name == hyper::header::CONTENT_LENGTH {
                        if let Some(n) = std::str::from_utf8(&value)
                            .ok()
                            .and_then(|s| s.trim().parse().ok())
                        {
                            framing = Framing::Length(n);
                        }
                    } else if name == hyper::header::TRANSFER_ENCODING
                        && value.eq_ignore_ascii_case(b"chunked")
                    {
                        framing = Framing::Chunked(Dechunk::default());
                    }
                    // hyper frames the body itself; hop-by-hop fields are
                    // the edge's (but a 101 passes them on: `Upgrade`).
                    let hop = name == hyper::header::TRANSFER_ENCODING
                        || name == hyper::header::CONNECTION
                        || name.as_str() == "keep-alive";
                    if hop && status != 101 {
                        continue;
                    }
                    if let Ok(v) = hyper::header::HeaderValue::from_maybe_shared(value) {
                        headers.append(name, v);
                    }
                }
                return Ok(Head {
                    status,
                    headers,
                    framing,
                    rest: buf.slice(n..),
                });
            }
            Ok(None) if gathered.len().max(data.len()) < 64 << 10 => {
                if first {
                    gathered.extend_from_slice(&data);
                }
            }
            Ok(None) => {
                return Err(error_page(
                    StatusCode::BAD_GATEWAY,
                    "the app's handler sent a response head over 64 KiB",
                ))
            }
            Err(e) => {
                return Err(error_page(
                    StatusCode::BAD_GATEWAY,
                    &format!("the app's handler sent an invalid HTTP response: {e}"),
                ))
            }
        }
    }
}

/// A response head parsed from `buf`: the status, each header's name and
/// where its value is in `buf`, and the head's length; `None` while it is
/// incomplete. Names that are not valid header names are dropped.
type ParsedHead = (
    u16,
    Vec<(hyper::header::HeaderName, std::ops::Range<usize>)>,
    usize,
);

fn parse_head(buf: &[u8]) -> Result<Option<ParsedHead>, httparse::Error> {
    // Room for the usual few headers first (the array is initialised on
    // every reply), for up to 100 when a head has more.
    let mut few = [httparse::EMPTY_HEADER; 16];
    let mut many;
    let mut parsed = httparse::Response::new(&mut few);
    let status = match parsed.parse(buf) {
        Err(httparse::Error::TooManyHeaders) => {
            many = [httparse::EMPTY_HEADER; 100];
            parsed = httparse::Response::new(&mut many);
            parsed.parse(buf)?
        }
        r => r?,
    };
    let httparse::Status::Complete(n) = status else {
        return Ok(None);
    };
    let base = buf.as_ptr() as usize;
    let fields = parsed
        .headers
        .iter()
        .filter_map(|h| {
            let name = hyper::header::HeaderName::from_bytes(h.name.as_bytes()).ok()?;
            let at = h.value.as_ptr() as usize - base;
            Some((name, at..at + h.value.len()))
        })
        .collect();
    Ok(Some((parsed.code.unwrap_or(502), fields, n)))
}

/// The response for a handler's head; the body follows as framed by the
/// head (Content-Length, chunked, or until the handler closes).
fn build_response(
    head: Head,
    rx: UnboundedReceiver<Chunk>,
    guard: Forget,
    handler_closed: Arc<std::sync::atomic::AtomicBool>,
) -> Response<Body> {
    let Head {
        status,
        mut headers,
        framing,
        rest,
    } = head;
    if matches!(framing, Framing::UntilClose) {
        // The body ends when the handler closes: so does the connection.
        headers.insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
    }
    let mut resp = Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    *resp.headers_mut() = headers;
    if let Framing::Length(n) = framing {
        if rest.len() as u64 >= n {
            // The usual case: the whole body came with the head. hyper then
            // writes head and body together, and the request is done with
            // its handler now (`guard` forgets it). Bytes past the length
            // are dropped, as the streaming path does.
            drop(guard);
            *resp.body_mut() = Full::new(rest.slice(..n as usize))
                .map_err(|e| match e {})
                .boxed();
            return resp;
        }
    }
    let state = BodyState {
        rx,
        framing,
        pending: rest,
        done: false,
        _guard: guard,
        handler_closed,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    });
    *resp.body_mut() = BodyExt::boxed(StreamBody::new(stream));
    resp
}

/// A WebSocket after the handler's 101: client frames go to the handler
/// as `METHOD=WEBSOCKET` messages (with `FLAGS`), the handler's replies
/// are written to the client raw, an empty reply closes.
struct WsSession {
    hub: Arc<Hub>,
    uuid: String,
    conn_id: u64,
    head: m2::codec::RequestHead,
    tx: tokio::sync::mpsc::UnboundedSender<Chunk>,
    max: u64,
}

impl WsSession {
    async fn run(
        self,
        on_upgrade: hyper::upgrade::OnUpgrade,
        early: Bytes,
        mut rx: UnboundedReceiver<Chunk>,
        guard: Forget,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let (mut rd, mut wr) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        if !early.is_empty() && wr.write_all(&early).await.is_err() {
            return;
        }
        let mut reader = crate::ws::FrameReader::new(self.max);
        let mut buf = vec![0u8; 16 << 10];
        loop {
            tokio::select! {
                n = rd.read(&mut buf) => {
                    let n = match n { Ok(0) | Err(_) => break, Ok(n) => n };
                    reader.push(&buf[..n]);
                    loop {
                        match reader.next_message() {
                            Ok(Some(m)) => {
                                let msg = websocket_message(&self.uuid, self.conn_id, &self.head, &m, &self.hub);
                                self.hub.send(self.conn_id, msg, self.tx.clone(), false);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::debug!(error = %e, "closing websocket");
                                let _ = wr.shutdown().await;
                                self.hub.disconnect(&self.uuid, self.conn_id);
                                return;
                            }
                        }
                    }
                }
                c = rx.recv() => match c {
                    Some(Chunk::Data(d)) => if wr.write_all(&d).await.is_err() { break },
                    Some(Chunk::Close) | Some(Chunk::NoHandler) | None => break,
                },
            }
        }
        let _ = wr.shutdown().await;
        self.hub.disconnect(&self.uuid, self.conn_id);
        drop(guard);
    }
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
    /// Set when the handler ends the body by closing (an empty reply).
    handler_closed: Arc<std::sync::atomic::AtomicBool>,
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
                c @ (Some(Chunk::Close) | None) => {
                    self.done = true;
                    if c.is_some() {
                        self.handler_closed.store(true, Ordering::Relaxed);
                    }
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
