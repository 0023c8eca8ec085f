//! zeroku-metrics: what zeroku's daemons (frontend, master, worker) show Prometheus.
//!
//! * [`Text`]: writes families and samples in the text exposition format (0.0.4), label
//!   values escaped;
//! * [`serve_admin`]: the admin port, `GET /metrics` (what a [`Source`] renders at that
//!   moment) and `GET /healthz`, and nothing else.
//!
//! It owns the format and the port only: each daemon decides what it counts and keeps its
//! counters. Rendering happens when Prometheus asks, so a daemon nobody scrapes pays nothing.
//! It must not hold any daemon's state nor serve anything but metrics and health.
#![forbid(unsafe_code)]

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// What a daemon shows at `/metrics`: rendered on each scrape.
pub trait Source: Send + Sync + 'static {
    /// The metrics in the text exposition format.
    fn render(&self) -> String;
}

/// A page of metrics being written.
#[derive(Debug, Default)]
pub struct Text(String);

/// The kind of a family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Text {
    pub fn new() -> Text {
        Text::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Text {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample of `name` with `labels` (values escaped here).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Text {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
        self
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Text {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// Text written by hand, already in the format (for callers with their own writer).
    pub fn raw(&mut self, text: &str) -> &mut Text {
        self.0.push_str(text);
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}

type Body = BoxBody<Bytes, std::convert::Infallible>;

/// Serves `GET /metrics` (what `source` renders) and `GET /healthz` on `listener` until
/// `shutdown`, then lets open requests finish (up to 5 s).
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    source: Arc<dyn Source>,
    shutdown: CancellationToken,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin accept");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            // Reap finished connections so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (source, shutdown) = (source.clone(), shutdown.clone());
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let s = source.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&*s, &req)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            let c = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
            tokio::pin!(c);
            tokio::select! {
                r = c.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "admin connection") },
                _ = shutdown.cancelled() => {
                    c.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), c).await;
                }
            }
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(6), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}

/// Binds `addr` and serves it (see [`serve_admin`]) in a task of its own. An address that
/// cannot be bound is said in the log and the daemon goes on without metrics: the port is
/// not what it is for.
pub async fn spawn_admin(addr: &str, source: Arc<dyn Source>, shutdown: CancellationToken) {
    if addr.is_empty() {
        return;
    }
    match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => {
            let at = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            tracing::info!(metrics = %at, "metrics at /metrics");
            tokio::spawn(serve_admin(l, source, shutdown));
        }
        Err(e) => tracing::warn!(
            addr,
            error = %e,
            "cannot listen for /metrics: no metrics (set `metrics` in the config to another address, or \"\")"
        ),
    }
}

fn page(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn answer<B>(source: &dyn Source, req: &Request<B>) -> Response<Body> {
    const TEXT: &str = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            page(StatusCode::OK, CONTENT_TYPE, source.render())
        }
        (&Method::GET | &Method::HEAD, "/healthz") => page(StatusCode::OK, TEXT, "ok".into()),
        (_, "/metrics" | "/healthz") => {
            let mut r = page(StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n".into());
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            r
        }
        _ => page(
            StatusCode::NOT_FOUND,
            TEXT,
            "the zeroku admin port serves /metrics and /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_written_with_escaped_labels() {
        let mut t = Text::new();
        t.family("x_total", Kind::Counter, "Things.")
            .sample("x_total", &[("app", "a\"b"), ("code", "200")], 3.0)
            .single("y", Kind::Gauge, "One.", 1.5);
        assert_eq!(
            t.finish(),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total{app=\"a\\\"b\",code=\"200\"} 3\n# HELP y One.\n# TYPE y gauge\ny 1.5\n"
        );
    }
}
