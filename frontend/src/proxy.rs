//! The proxy backend: forwards a request to one of an app's `web`
//! instances (round-robin), over pooled keep-alive connections. A failed
//! connect moves on to the next instance with the same request, so a
//! deploy or a dying node loses no request; bodies stream both ways.

use crate::edge::{error_page, Body};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// The request body, shared between attempts: an attempt whose connection
/// failed never read it, so the next attempt can still send it.
#[derive(Clone)]
struct SharedBody {
    inner: Arc<Mutex<Option<Incoming>>>,
    touched: Arc<AtomicBool>,
}

impl hyper::body::Body for SharedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.touched.store(true, Ordering::Relaxed);
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

pub struct Proxy {
    client: Client<HttpConnector, SharedBody>,
    next: AtomicUsize,
    timeout: Duration,
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

impl Proxy {
    pub fn new(timeout: Duration) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Proxy {
            client,
            next: AtomicUsize::new(0),
            timeout,
        }
    }

    /// Forwards `req` to one of `upstreams` (`host:port`).
    pub async fn forward(
        &self,
        app: &str,
        upstreams: &[String],
        req: Request<Incoming>,
        forwarded: &Forwarded,
    ) -> Response<Body> {
        if upstreams.is_empty() {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("app {app} has no web instance up right now"),
            );
        }
        let (mut parts, body) = req.into_parts();
        // A WebSocket (or other) upgrade is carried through: the upstream's
        // 101 joins the two connections byte for byte.
        let upgrade = parts
            .headers
            .get(hyper::header::UPGRADE)
            .cloned()
            .filter(|_| {
                parts
                    .headers
                    .get_all(hyper::header::CONNECTION)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| {
                        v.split(',')
                            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                    })
            });
        let mut client_upgrade = upgrade
            .as_ref()
            .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());
        strip_hop_by_hop(&mut parts.headers);
        if let Some(u) = &upgrade {
            parts.headers.insert(hyper::header::UPGRADE, u.clone());
            parts.headers.insert(
                hyper::header::CONNECTION,
                HeaderValue::from_static("upgrade"),
            );
        }
        forwarded.apply(&mut parts.headers);
        let shared = SharedBody {
            inner: Arc::new(Mutex::new(Some(body))),
            touched: Arc::new(AtomicBool::new(false)),
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::new();
        for k in 0..upstreams.len() {
            let addr = &upstreams[(start + k) % upstreams.len()];
            let uri = match format!("http://{addr}{path}").parse() {
                Ok(u) => u,
                Err(e) => {
                    last_error = format!("bad upstream {addr}: {e}");
                    continue;
                }
            };
            let mut attempt = Request::new(shared.clone());
            *attempt.method_mut() = parts.method.clone();
            *attempt.uri_mut() = uri;
            *attempt.headers_mut() = parts.headers.clone();
            match tokio::time::timeout(self.timeout, self.client.request(attempt)).await {
                Err(_) => {
                    return error_page(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "app {app} did not answer within {} s",
                            self.timeout.as_secs()
                        ),
                    );
                }
                Ok(Ok(mut resp)) => {
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                        if let Some(client) = client_upgrade.take() {
                            let upstream = hyper::upgrade::on(&mut resp);
                            let app = app.to_string();
                            tokio::spawn(async move {
                                match tokio::try_join!(client, upstream) {
                                    Ok((c, u)) => {
                                        let (mut c, mut u) = (
                                            hyper_util::rt::TokioIo::new(c),
                                            hyper_util::rt::TokioIo::new(u),
                                        );
                                        let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
                                    }
                                    Err(e) => tracing::debug!(app, error = %e, "upgrade failed"),
                                }
                            });
                            let (rp, body) = resp.into_parts();
                            return Response::from_parts(rp, body.map_err(Into::into).boxed());
                        }
                    }
                    let (mut rp, body) = resp.into_parts();
                    strip_hop_by_hop(&mut rp.headers);
                    return Response::from_parts(rp, body.map_err(Into::into).boxed());
                }
                Ok(Err(e)) => {
                    tracing::warn!(app, upstream = %addr, error = %e, "upstream failed");
                    last_error = format!("{addr}: {e}");
                    // Only a request whose body was never read can go to
                    // another instance: after a failed connect always; after
                    // a connection that died before the answer (an instance
                    // killed mid-request) only if repeating it is harmless.
                    let idempotent = matches!(
                        parts.method,
                        hyper::Method::GET
                            | hyper::Method::HEAD
                            | hyper::Method::OPTIONS
                            | hyper::Method::PUT
                            | hyper::Method::DELETE
                    );
                    if shared.touched.load(Ordering::Relaxed) || !(e.is_connect() || idempotent) {
                        break;
                    }
                }
            }
        }
        error_page(
            StatusCode::BAD_GATEWAY,
            &format!("app {app} could not be reached ({last_error})"),
        )
    }
}

fn strip_hop_by_hop(h: &mut hyper::HeaderMap) {
    // Headers named in Connection are hop-by-hop too.
    let named: Vec<HeaderName> = h
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// What the edge tells the app about the original request.
pub struct Forwarded {
    /// The client's address, formatted once per connection.
    pub peer_ip: HeaderValue,
    pub proto: &'static str,
    pub port: u16,
    pub request_id: String,
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

impl Forwarded {
    fn apply(&self, h: &mut hyper::HeaderMap) {
        let xff = match h.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
            Some(prev) => {
                let mut v = Vec::with_capacity(prev.len() + 2 + self.peer_ip.len());
                v.extend_from_slice(prev);
                v.extend_from_slice(b", ");
                v.extend_from_slice(self.peer_ip.as_bytes());
                HeaderValue::from_bytes(&v).ok()
            }
            None => Some(self.peer_ip.clone()),
        };
        if let Some(xff) = xff {
            h.insert(X_FORWARDED_FOR, xff);
        }
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(self.proto));
        h.insert(X_FORWARDED_PORT, HeaderValue::from(self.port));
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert(X_REQUEST_ID, v);
        }
    }
}
