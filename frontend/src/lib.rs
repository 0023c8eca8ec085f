//! zeroku-frontend: the public HTTP/1.1 edge.
//!
//! - [`follow`]: joins the master and follows its route table.
//! - [`routing`]: `Host` → app (`<app>.<base domain>`, custom domains).
//! - [`edge`]: the hyper server; answers its own errors in one place.
//! - [`handlers`]: per-app Mongrel2-protocol socket pairs (ZMQ PUSH/SUB),
//!   one thread each, so no app sees another's requests; [`endpoints`]
//!   binds them (`ipc://` in a directory only the app's uid may enter, and
//!   TCP with CURVE for relays of handlers on other nodes).
//! - [`proxy`]: round-robin proxying to `web` instances on `$PORT`, over
//!   the keep-alive connections `upstream` pools.
//! - [`m2`]: the Mongrel2 handler wire format and a Rust handler library.
//!
//! The frontend holds no state beyond in-flight requests: routes come from
//! the master. It must not start processes or change the cluster.

pub mod access_log;
mod ascii;
mod chunked;
mod coarse;
pub mod dir;
pub mod edge;
pub mod endpoints;
pub mod follow;
pub mod framing;
pub mod handlers;
pub mod head_timeout;
pub mod m2;
pub mod metrics;
mod passthrough;
mod prefixed;
pub mod proxy;
pub mod routing;
pub mod tls;
mod upstream;
pub mod ws;
mod zmq_fd;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use zeroku_client::{Client, ClientError};
use zeroku_conf::config::FrontendConfig;

#[derive(Debug, Error)]
pub enum FrontendError {
    #[error("invalid frontend config: {0}")]
    Config(String),
    #[error("cannot use data directory {path}: {source}")]
    Data {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the master refused this frontend: {0}")]
    Refused(#[source] follow::JoinError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot listen on {addr} for HTTP: {source} (is something else on that port? pick another with --http)")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("ZMQ: cannot follow routes at {endpoint}: {source}")]
    Zmq {
        endpoint: String,
        #[source]
        source: zmq::Error,
    },
}

/// A random UUID (v4), the frontend's identity towards handlers; kept in
/// `<data>/frontend-uuid` so it survives restarts.
fn frontend_uuid(data: &Path) -> std::io::Result<String> {
    let path = data.join("frontend-uuid");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if s.len() == 36 {
            return Ok(s.to_string());
        }
    }
    let mut b = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let uuid = format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    );
    std::fs::write(&path, &uuid)?;
    Ok(uuid)
}

/// Runs a frontend until `shutdown`; `started` gets the bound HTTP address.
pub async fn run(
    cfg: FrontendConfig,
    data: &Path,
    token: Option<String>,
    shutdown: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<(), FrontendError> {
    cfg.validate().map_err(FrontendError::Config)?;
    let data_err = |source| FrontendError::Data {
        path: data.to_path_buf(),
        source,
    };
    {
        // Handlers pass through to their app's directory below; nobody lists it.
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(data)
            .and_then(|()| std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o711)))
            .map_err(data_err)?;
    }
    let uuid = frontend_uuid(data).map_err(data_err)?;
    let listener = tokio::net::TcpListener::bind(&cfg.http)
        .await
        .map_err(|source| FrontendError::Listen {
            addr: cfg.http.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(data_err)?;
    let Some(joined) = follow::join(&cfg, data, token.as_deref(), &shutdown)
        .await
        .map_err(FrontendError::Refused)?
    else {
        return Ok(());
    };
    let client = Client::new(&cfg.master, &joined.token)?;
    let ctx = zmq::Context::new();
    let walls = endpoints::Walls::new(
        &ctx,
        joined.keys.clone(),
        &handlers::ipc_dir(data),
        &cfg.handler_bind,
        cfg.app_uid_base,
    )
    .map_err(|e| FrontendError::Data {
        path: handlers::ipc_dir(data),
        source: std::io::Error::other(e),
    })?;
    let hubs = handlers::Hubs::new(
        ctx,
        uuid.clone(),
        walls,
        std::time::Duration::from_millis(cfg.hold_ms),
    );
    let uploads = edge::Uploads::default();
    let access =
        access_log::AccessLog::open(&cfg.access_log).map_err(|source| FrontendError::Data {
            path: cfg.access_log.clone().into(),
            source,
        })?;
    let access = Arc::new(access);
    access.spawn_flusher();
    let certs = Arc::new(tls::Certs::new(&cfg.tls_cert, &cfg.tls_key).map_err(FrontendError::Tls)?);
    let edge = Arc::new(edge::Edge::new(
        hubs,
        addr.port(),
        &cfg,
        uploads,
        access.clone(),
        certs.clone(),
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let sub =
        follow::subscribe(&joined.pub_endpoint, &joined, tx, stop.clone()).map_err(|source| {
            FrontendError::Zmq {
                endpoint: joined.pub_endpoint.clone(),
                source,
            }
        })?;
    let Some(table) = follow::fetch(&client, &shutdown).await? else {
        return Ok(());
    };
    let slugs = Arc::new(
        zeroku_slug::SlugCache::open(&data.join("slugs")).map_err(|e| FrontendError::Data {
            path: data.join("slugs"),
            source: std::io::Error::other(e),
        })?,
    );
    let fetcher = SlugFetcher {
        cache: slugs,
        client: client.clone(),
        name: cfg.name.clone(),
    };
    apply(&edge, table, &cfg.base_domain, &fetcher);
    tracing::info!(http = %addr, uuid, base_domain = %cfg.base_domain, "frontend running");
    if let Some(tx) = started {
        let _ = tx.send(addr);
    }
    if !cfg.admin.is_empty() {
        let admin = tokio::net::TcpListener::bind(&cfg.admin)
            .await
            .map_err(|source| FrontendError::Listen {
                addr: cfg.admin.clone(),
                source,
            })?;
        tracing::info!(admin = %admin.local_addr().map_err(data_err)?, "metrics at /metrics");
        tokio::spawn(metrics::serve_admin(
            admin,
            edge.metrics.clone(),
            shutdown.clone(),
        ));
    }
    tokio::spawn(report_traffic(
        edge.metrics.clone(),
        client.clone(),
        cfg.name.clone(),
        std::time::Duration::from_millis(cfg.report_interval_ms.max(100)),
        shutdown.clone(),
    ));
    let follower = {
        let (edge, base, shutdown, fetcher) = (
            edge.clone(),
            cfg.base_domain.clone(),
            shutdown.clone(),
            fetcher.clone(),
        );
        tokio::spawn(async move {
            let mut gauges = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = gauges.tick() => {
                        for (app, n) in edge.hubs.queue_depths() {
                            edge.metrics.set_queue_depth(&app, n);
                        }
                    }
                    t = rx.recv() => match t {
                        Some(t) => apply(&edge, t, &base, &fetcher),
                        None => break,
                    },
                }
            }
        })
    };
    let limits = edge::ConnLimits {
        max_header_bytes: cfg.max_header_bytes,
        header_timeout: std::time::Duration::from_millis(cfg.header_timeout_ms),
    };
    if !cfg.https.is_empty() {
        let acceptor = tls::acceptor(certs).map_err(FrontendError::Tls)?;
        let l = tokio::net::TcpListener::bind(&cfg.https)
            .await
            .map_err(|source| FrontendError::Listen {
                addr: cfg.https.clone(),
                source,
            })?;
        tracing::info!(https = %cfg.https, "TLS listener");
        tokio::spawn(edge::serve(
            l,
            edge.clone(),
            limits.clone(),
            Some(acceptor),
            shutdown.clone(),
        ));
    }
    edge::serve(listener, edge, limits, None, shutdown).await;
    stop.store(true, Ordering::Relaxed);
    let _ = follower.await;
    let _ = tokio::task::spawn_blocking(move || sub.join()).await;
    access.flush();
    tracing::info!("frontend stopped");
    Ok(())
}

/// Fetches the slugs `dir` routes serve from (like a worker does), and the apps'
/// certificates.
#[derive(Clone)]
struct SlugFetcher {
    cache: Arc<zeroku_slug::SlugCache>,
    client: Client,
    /// This frontend's name: certificates are fetched under it.
    name: String,
}

/// Fetches the chain and key of certificate `sha` from the master, into `edge.certs`; a few
/// tries (the table may name one a moment before it is stored).
async fn fetch_cert(edge: Arc<edge::Edge>, f: SlugFetcher, sha: String) {
    #[derive(serde::Deserialize)]
    struct Pem {
        chain_pem: String,
        key_pem: String,
    }
    let path = format!("/v1/frontends/{}/certs/{sha}", f.name);
    for attempt in 0..5u32 {
        match f.client.get::<Pem>(&path).await {
            Ok(p) => {
                match tls::certified_key(p.chain_pem.as_bytes(), p.key_pem.as_bytes(), &sha) {
                    Ok(k) => {
                        tracing::info!(cert = %sha, "serving a new certificate");
                        edge.certs.insert(sha, k);
                    }
                    Err(e) => {
                        tracing::warn!(cert = %sha, error = %e, "an unusable certificate");
                        edge.certs.failed(&sha);
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(cert = %sha, attempt, error = %e, "cannot fetch a certificate");
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
            }
        }
    }
    edge.certs.failed(&sha);
}

/// Installs a route table unless it is older than the current one.
fn apply(
    edge: &Arc<edge::Edge>,
    table: zeroku_conf::RouteTable,
    base_domain: &str,
    fetcher: &SlugFetcher,
) {
    if table.generation < edge.routes().generation {
        return;
    }
    for sha in table
        .apps
        .iter()
        .filter_map(|a| a.slug.as_ref())
        .map(|s| s.sha256.clone())
    {
        if edge.slug_dir(&sha).is_some() {
            continue;
        }
        let (edge, f) = (edge.clone(), fetcher.clone());
        tokio::spawn(async move {
            let (client, path) = (f.client.clone(), format!("/v1/slugs/{sha}"));
            let fetch = |dest: std::path::PathBuf| async move {
                client
                    .download(&path, &dest)
                    .await
                    .map_err(|e| e.to_string())
            };
            match f.cache.ensure(&sha, None, fetch).await {
                Ok(dir) => {
                    edge.slugs
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(sha, dir);
                }
                Err(e) => {
                    tracing::warn!(slug = %sha, error = %e, "cannot fetch a slug for a dir route")
                }
            }
        });
    }
    edge.hubs.sync(
        table
            .apps
            .iter()
            .filter_map(|a| a.handler.as_ref().map(|h| (a.app.as_str(), h))),
    );
    for sha in edge.certs.set_routes(&table.apps, base_domain) {
        tokio::spawn(fetch_cert(edge.clone(), fetcher.clone(), sha));
    }
    let routes = routing::Routes::new(table, base_domain);
    tracing::debug!(generation = routes.generation, "route table applied");
    *edge.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
}

/// Whether a request with this method may be sent again after it may have
/// reached its backend (RFC 9110 §9.2.2: idempotent methods; TRACE aside):
/// to another handler when one dies holding it, or to an instance again
/// when its connection closes under it.
pub(crate) fn idempotent(m: &hyper::Method) -> bool {
    use hyper::Method;
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    )
}

/// Every `every`, tells the master what each app was asked since the last time (its
/// per-minute metrics, `zeroku metrics`); nothing when nothing was asked. A report the master
/// did not take is not sent again: its minute misses those requests.
async fn report_traffic(
    metrics: Arc<metrics::Metrics>,
    client: Client,
    name: String,
    every: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut last = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let traffic = metrics.traffic_since(&mut last);
        if traffic.apps.is_empty() {
            continue;
        }
        let path = format!("/v1/frontends/{name}/traffic");
        if let Err(e) = client
            .send::<serde_json::Value>(hyper::Method::POST, &path, &traffic)
            .await
        {
            tracing::warn!(error = %e, "reporting traffic to the master");
        }
    }
}
