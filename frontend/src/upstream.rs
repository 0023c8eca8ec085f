//! Keep-alive HTTP/1.1 connections to app instances, pooled by address,
//! for the proxy. A connection goes back to the pool when the response it
//! carried has been read to the end; one that is closed, upgraded, or idle
//! for [`IDLE_TIMEOUT`] is dropped.
//!
//! The pool is keyed by the instance's `host:port` as the route table has
//! it, hashed once per lookup: hyper_util's generic pool hashed the
//! (scheme, authority) key a byte at a time, dozens of times per request.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long an idle connection is kept (the upstream may close it first).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per instance, as nginx's `keepalive 64`.
const MAX_IDLE: usize = 64;
/// How long a connect may take before the next instance is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a connection could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot connect within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    #[error("HTTP handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

struct Idle<B> {
    tx: SendRequest<B>,
    since: Instant,
}

struct State<B> {
    idle: HashMap<String, Vec<Idle<B>>>,
    next_sweep: Instant,
}

/// Idle connections by instance address.
pub struct Pool<B> {
    state: Mutex<State<B>>,
}

impl<B> Pool<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new() -> Arc<Pool<B>> {
        Arc::new(Pool {
            state: Mutex::new(State {
                idle: HashMap::new(),
                next_sweep: Instant::now() + IDLE_TIMEOUT,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<B>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An idle connection to `addr` that is still open, newest first.
    pub fn take(&self, addr: &str) -> Option<SendRequest<B>> {
        let mut s = self.lock();
        let list = s.idle.get_mut(addr)?;
        while let Some(i) = list.pop() {
            if !i.tx.is_closed() && i.since.elapsed() < IDLE_TIMEOUT {
                return Some(i.tx);
            }
        }
        None
    }

    /// Keeps `tx` for the next request to `addr`.
    pub fn put(&self, addr: &str, tx: SendRequest<B>) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut s = self.lock();
        if now >= s.next_sweep {
            // Instances that went away (a deploy moves them to new ports)
            // leave closed connections behind.
            s.next_sweep = now + IDLE_TIMEOUT;
            s.idle.retain(|_, list| {
                list.retain(|i| !i.tx.is_closed() && now.duration_since(i.since) < IDLE_TIMEOUT);
                !list.is_empty()
            });
        }
        let idle = Idle { tx, since: now };
        match s.idle.get_mut(addr) {
            Some(list) if list.len() >= MAX_IDLE => {}
            Some(list) => list.push(idle),
            None => {
                s.idle.insert(addr.to_string(), vec![idle]);
            }
        }
    }

    /// A new connection to `addr` (TCP_NODELAY), its HTTP/1.1 side run by
    /// a task of its own, upgrades allowed.
    pub async fn connect(addr: &str) -> Result<SendRequest<B>, ConnectError> {
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        tcp.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(hyper_util::rt::TokioIo::new(tcp))
            .await?;
        let addr = addr.to_string();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(upstream = %addr, error = %e, "upstream connection");
            }
        });
        Ok(tx)
    }
}

/// A response body from an instance: once it has been read to the end, its
/// connection goes back to the pool.
pub struct PooledBody<B> {
    inner: Incoming,
    back: Option<(SendRequest<B>, Arc<Pool<B>>, String)>,
}

impl<B> PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// `inner`, read from `tx`'s connection to `addr`.
    pub fn new(inner: Incoming, tx: SendRequest<B>, pool: Arc<Pool<B>>, addr: &str) -> Self {
        let mut body = PooledBody {
            inner,
            back: Some((tx, pool, addr.to_string())),
        };
        // An empty body (HEAD, 204, 304) may never be polled.
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    fn give_back(&mut self) {
        if let Some((tx, pool, addr)) = self.back.take() {
            pool.put(&addr, tx);
        }
    }
}

impl<B> Body for PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.give_back(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.give_back(),
            // A broken body: its connection is not reused.
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
