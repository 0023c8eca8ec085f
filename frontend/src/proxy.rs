//! The proxy backend: forwards a request to one of an app's `web`
//! instances (round-robin), over pooled keep-alive connections
//! ([`crate::upstream`]). A failed connect moves on to the next instance
//! with the same request, so a deploy or a dying node loses no request; a
//! pooled connection the instance had closed is replaced by a new one;
//! bodies stream both ways.

use crate::edge::{closing_page, error_page, Body};
use crate::upstream::{Pool, PooledBody};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

/// The request body, shared between attempts: an attempt whose connection
/// failed never read it, so the next attempt can still send it.
#[derive(Clone)]
struct SharedBody {
    inner: Arc<Mutex<Option<Inner>>>,
    touched: Arc<AtomicBool>,
}

/// A body as it arrives, or one read whole first (a chunked one: checked
/// before anything goes upstream).
enum Inner {
    Streamed(Incoming),
    Whole(Option<Bytes>),
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
            Some(Inner::Streamed(b)) => Pin::new(b).poll_frame(cx),
            Some(Inner::Whole(b)) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(Inner::Streamed(b)) => b.is_end_stream(),
            Some(Inner::Whole(b)) => b.is_none(),
            None => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        let guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            Some(Inner::Streamed(b)) => b.size_hint(),
            Some(Inner::Whole(b)) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            None => SizeHint::with_exact(0),
        }
    }
}

pub struct Proxy {
    pool: Arc<Pool<SharedBody>>,
    next: AtomicUsize,
    timeout: Duration,
}

/// Why an attempt on one instance failed.
enum Failed {
    /// No connection: the request was not sent.
    Connect(crate::upstream::ConnectError),
    /// Sent (perhaps in part) and then the connection failed.
    Upstream(hyper::Error),
}

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [HeaderName; 10] = [
    hyper::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    hyper::header::PROXY_AUTHENTICATE,
    hyper::header::PROXY_AUTHORIZATION,
    hyper::header::TE,
    hyper::header::TRAILER,
    hyper::header::TRANSFER_ENCODING,
    hyper::header::UPGRADE,
    // Only ever sent with `Upgrade: h2c` (RFC 7540 §3.2.1).
    HeaderName::from_static("http2-settings"),
];

impl Proxy {
    pub fn new(timeout: Duration) -> Proxy {
        Proxy {
            pool: Pool::new(),
            next: AtomicUsize::new(0),
            timeout,
        }
    }

    /// Sends `req` to `addr` on a pooled connection, else a new one. A
    /// pooled connection that turns out closed before the request went out
    /// is dropped and the next one tried. One the instance closes as the
    /// request goes out (its keep-alive timeout running out at that moment)
    /// is, for a `repeatable` request whose body was not read, followed by
    /// one more try on a new connection, as nginx does with its cached
    /// upstream connections.
    async fn attempt(
        &self,
        addr: &str,
        mut req: Request<SharedBody>,
        repeatable: bool,
    ) -> Result<
        (
            Response<Incoming>,
            hyper::client::conn::http1::SendRequest<SharedBody>,
        ),
        Failed,
    > {
        let mut fresh = false;
        loop {
            let (mut tx, pooled) = match self.pool.take(addr).filter(|_| !fresh) {
                Some(tx) => (tx, true),
                None => (Pool::connect(addr).await.map_err(Failed::Connect)?, false),
            };
            // Nothing has been sent when these fail.
            let unsent = |e| Failed::Connect(crate::upstream::ConnectError::Handshake(e));
            if let Err(e) = tx.ready().await {
                if pooled {
                    continue;
                }
                return Err(unsent(e));
            }
            let again = (pooled && repeatable).then(|| copy_request(&req));
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok((resp, tx)),
                Err(mut e) => match e.take_message() {
                    Some(r) if pooled => req = r,
                    Some(_) => return Err(unsent(e.into_error())),
                    None => match again {
                        Some(r) if !r.body().touched.load(Ordering::Relaxed) => {
                            tracing::debug!(upstream = addr, error = %e.error(),
                                "pooled connection closed under the request; once more on a new one");
                            req = r;
                            fresh = true;
                        }
                        _ => return Err(Failed::Upstream(e.into_error())),
                    },
                },
            }
        }
    }

    /// Forwards `req` to one of `upstreams` (`host:port`).
    pub async fn forward(
        &self,
        app: &str,
        upstreams: &[String],
        req: Request<Incoming>,
        forwarded: &Forwarded,
        max_body: u64,
    ) -> Response<Body> {
        if upstreams.is_empty() {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("app {app} has no web instance up right now"),
            );
        }
        let (mut parts, body) = req.into_parts();
        // A chunked body is read whole before anything goes upstream (as
        // nginx buffers request bodies): a malformed one is the client's
        // error, refused with nothing sent, and the instance gets a body
        // with a Content-Length.
        let body = if parts.headers.contains_key(hyper::header::TRANSFER_ENCODING) {
            match http_body_util::Limited::new(body, max_body as usize)
                .collect()
                .await
            {
                Ok(b) => {
                    let b = b.to_bytes();
                    parts.headers.remove(hyper::header::TRANSFER_ENCODING);
                    parts
                        .headers
                        .insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(b.len()));
                    Inner::Whole(Some(b))
                }
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return closing_page(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!("request bodies are limited to {max_body} bytes"),
                    )
                }
                Err(e) => {
                    return closing_page(
                        StatusCode::BAD_REQUEST,
                        &format!("the request's chunked body is malformed: {e}"),
                    )
                }
            }
        } else {
            Inner::Streamed(body)
        };
        // A WebSocket (or other) upgrade is carried through: the upstream's
        // 101 joins the two connections byte for byte. Not h2c: HTTP/2 is
        // not offered, and never passed on.
        let upgrade = parts
            .headers
            .get(hyper::header::UPGRADE)
            .cloned()
            .filter(|_| !crate::framing::asks_h2c(&parts.headers))
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
        // Origin-form to the instance; the client's Host goes with it.
        let target = hyper::Uri::from(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/")),
        );
        // Only a request whose body was never read can be sent again, and
        // (an instance killed or closing mid-request) only if repeating it
        // is harmless.
        let repeatable = crate::idempotent(&parts.method);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last_error = String::new();
        for k in 0..upstreams.len() {
            let addr = &upstreams[(start + k) % upstreams.len()];
            let mut attempt = Request::new(shared.clone());
            *attempt.method_mut() = parts.method.clone();
            *attempt.uri_mut() = target.clone();
            // The last instance to try takes the headers; others a copy.
            *attempt.headers_mut() = if k + 1 == upstreams.len() {
                std::mem::take(&mut parts.headers)
            } else {
                parts.headers.clone()
            };
            if !attempt.headers().contains_key(hyper::header::HOST) {
                if let Ok(h) = HeaderValue::from_str(addr) {
                    attempt.headers_mut().insert(hyper::header::HOST, h);
                }
            }
            match crate::coarse::timeout(self.timeout, self.attempt(addr, attempt, repeatable))
                .await
            {
                Err(_) => {
                    return error_page(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "app {app} did not answer within {} s",
                            self.timeout.as_secs()
                        ),
                    );
                }
                Ok(Ok((mut resp, tx))) => {
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
                            // The connection is the client's now: not pooled.
                            let (rp, body) = resp.into_parts();
                            return Response::from_parts(rp, body.map_err(Into::into).boxed());
                        }
                    }
                    let (mut rp, body) = resp.into_parts();
                    strip_hop_by_hop(&mut rp.headers);
                    let body = PooledBody::new(body, tx, self.pool.clone(), addr);
                    return Response::from_parts(rp, body.map_err(Into::into).boxed());
                }
                Ok(Err(Failed::Connect(e))) => {
                    tracing::warn!(app, upstream = %addr, error = %e, "upstream failed");
                    last_error = format!("{addr}: {e}");
                }
                Ok(Err(Failed::Upstream(e))) => {
                    tracing::warn!(app, upstream = %addr, error = %e, "upstream failed");
                    last_error = format!("{addr}: {e}");
                    if shared.touched.load(Ordering::Relaxed) || !repeatable {
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

/// The same request again, sharing the body (not yet read when it is used).
fn copy_request(req: &Request<SharedBody>) -> Request<SharedBody> {
    let mut r = Request::new(req.body().clone());
    *r.method_mut() = req.method().clone();
    *r.uri_mut() = req.uri().clone();
    *r.version_mut() = req.version();
    *r.headers_mut() = req.headers().clone();
    r
}

fn strip_hop_by_hop(h: &mut hyper::HeaderMap) {
    // One pass over the names finds those to drop (most messages have none
    // or only `Connection`); each is then removed once.
    let mut drop: Vec<HeaderName> = h
        .keys()
        .filter(|k| HOP_BY_HOP.contains(k))
        .cloned()
        .collect();
    if drop.is_empty() {
        return;
    }
    // Headers named in Connection are hop-by-hop too.
    for v in h.get_all(hyper::header::CONNECTION) {
        let Ok(v) = v.to_str() else { continue };
        for n in v.split(',') {
            let n = n.trim();
            if n.eq_ignore_ascii_case("keep-alive")
                || n.eq_ignore_ascii_case("close")
                || n.eq_ignore_ascii_case("upgrade")
            {
                continue; // options, or already on the list if present
            }
            if let Ok(n) = HeaderName::from_bytes(n.as_bytes()) {
                drop.push(n);
            }
        }
    }
    for n in drop {
        h.remove(n);
    }
}

/// What the edge tells the app about the original request.
pub struct Forwarded {
    /// The client's address, formatted once per connection.
    pub peer_ip: HeaderValue,
    pub proto: &'static str,
    /// The edge's port, formatted once.
    pub port: HeaderValue,
    /// The client's `X-Request-Id`, or one made up for the request.
    pub request_id: HeaderValue,
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
        h.insert(X_FORWARDED_PORT, self.port.clone());
        h.insert(X_REQUEST_ID, self.request_id.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = hyper::HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, X-Trace"),
            ("keep-alive", "timeout=5"),
            ("x-trace", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/plain"),
            ("x-kept", "2"),
        ] {
            h.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kept"]);

        // Nothing hop-by-hop: nothing changes.
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
    }
}
