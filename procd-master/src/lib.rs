//! zeroku-master: the control plane.
//!
//! - [`store`]: apps, releases, config vars, formation, nodes, placements and
//!   tokens in SQLite (WAL).
//! - [`scheduler`]: which node runs each instance (pure).
//! - [`cluster`]: the core that re-places instances on every change and
//!   publishes each node's full process list with a new generation.
//! - [`bus`]: the ZMQ PUB (lists) and PULL (heartbeats, logs) threads.
//! - [`builds`], [`git`], [`keys`]: builds and deploys, git over HTTP, SSH
//!   keys for git over SSH.
//! - [`api`]: the operator HTTP API under `/v1` (its client and shared
//!   types are the `zeroku-client` crate).
//!
//! The layers run one way: `store` → `scheduler` → `cluster` →
//! `builds`/`git`/`keys` → `api`. A module imports only from layers below
//! its own (`scripts/check-layers.sh` checks it); helpers several layers
//! need (`exe`, `live`, `settings`, `stacks`, `logbook`, `terminal`, `bus`)
//! sit below the lowest one that uses them.
//!
//! The master decides what should run where; it must never start or signal
//! a process itself — only workers do that, from the lists it publishes.
#![forbid(unsafe_code)]

pub mod acme;
pub mod addons;
pub mod alerts;
pub mod api;
pub mod backups;
pub mod builds;
pub mod bus;
pub mod certs;
pub mod cluster;
pub mod dirs;
pub mod discovery;
pub mod drains;
pub mod error;
pub mod exe;
pub mod failover;
pub mod git;
pub mod keys;
pub mod live;
pub mod logbook;
pub mod metrics;
pub mod moves;
pub mod peers;
pub mod periodic;
pub mod restarts;
pub mod routes;
pub mod schedule;
pub mod scheduler;
pub mod settings;
pub mod stacks;
pub mod store;
pub mod terminal;
pub mod ui;
pub mod views;

use cluster::Cluster;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use zeroku_conf::config::MasterConfig;

#[derive(Debug, Error)]
pub enum MasterError {
    #[error("invalid master config: {0}")]
    Config(String),
    #[error("cannot use data directory {path}: {source}")]
    Data {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the state database {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: store::StoreError,
    },
    #[error("cannot open the slug store: {0}")]
    Slugs(String),
    #[error("cannot set up the bus: {0}")]
    Bus(String),
    #[error(transparent)]
    Bind(#[from] bus::BindError),
    #[error("cannot listen on {addr} for the API: {source} (is another zeroku master running? pick another address with --api)")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running master, for `zeroku up` and tests.
pub struct Started {
    pub cluster: Arc<Cluster>,
    pub api_addr: std::net::SocketAddr,
    /// The admin token, when this start created it (first start).
    pub new_admin_token: Option<String>,
}

/// Opens the state, creates the admin token on first start (written to
/// `<data>/cli.env`), binds every socket, then serves until `shutdown`.
pub async fn run(
    cfg: MasterConfig,
    data: &Path,
    shutdown: CancellationToken,
    started: Option<tokio::sync::oneshot::Sender<Started>>,
) -> Result<(), MasterError> {
    cfg.validate().map_err(MasterError::Config)?;
    let data_err = |source| MasterError::Data {
        path: data.to_path_buf(),
        source,
    };
    dirs::passable(data).map_err(data_err)?;
    let db_path = data.join("master.db");
    dirs::private_database(&db_path).map_err(data_err)?;
    for d in ["slugs", "stacks", "ssh", "repos"] {
        dirs::private(&data.join(d)).map_err(data_err)?;
    }
    let store = store::Store::open(&db_path).map_err(|source| MasterError::Store {
        path: db_path.clone(),
        source,
    })?;
    let slugs = zeroku_slug::SlugStore::open(&data.join("slugs"))
        .map_err(|e| MasterError::Slugs(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(&cfg.api)
        .await
        .map_err(|source| MasterError::Listen {
            addr: cfg.api.clone(),
            source,
        })?;
    let api_addr = listener.local_addr().map_err(data_err)?;

    let keys = bus_keys(data).map_err(data_err)?;
    cluster_id(data).map_err(data_err)?;
    let ctx = zmq::Context::new();
    let stop = Arc::new(AtomicBool::new(false));
    let (publisher, outbox) = bus::Publisher::channel(65_536).map_err(data_err)?;
    let cluster = Arc::new(Cluster::new(
        cfg.clone(),
        data,
        store,
        slugs,
        publisher,
        keys.public_z85(),
    ));
    // The ZAP handler first: it must answer for every bus socket of this context.
    let weak = Arc::downgrade(&cluster);
    let zap_thread = zeroku_bus::zap::start(
        &ctx,
        move |_, key| weak.upgrade()?.peers.knows(key),
        cluster.refused.clone(),
        stop.clone(),
    )
    .map_err(|e| MasterError::Bus(e.to_string()))?;
    let weak = Arc::downgrade(&cluster);
    let pub_thread = bus::start_pub(
        &ctx,
        &cfg.pub_endpoint,
        &keys,
        outbox,
        move |who, topic| match weak.upgrade() {
            Some(c) => c.on_subscribe(who, topic),
            None => bus::Decision::Refuse,
        },
        cluster.refused.clone(),
        stop.clone(),
    )?;
    let new_admin_token = ensure_admin(&cluster, data, api_addr).map_err(data_err)?;
    let builds = builds::Builds::open(data, cfg.builds_at_once, api_addr).map_err(data_err)?;
    let master = Arc::new(api::Master {
        cluster: cluster.clone(),
        builds: Arc::new(builds),
        drains: drains::Drains::default(),
    });
    keys::setup(&cluster, data, &api_addr.to_string()).map_err(data_err)?;
    let weak = Arc::downgrade(&cluster);
    let pull_thread = bus::start_pull(
        &ctx,
        &cfg.pull_endpoint,
        &keys,
        move |who, m| {
            if let Some(c) = weak.upgrade() {
                c.on_message(who, m)
            }
        },
        cluster.dropped.clone(),
        cluster.refused.clone(),
        stop.clone(),
    )?;
    {
        let mut s = cluster.store();
        if let Err(e) = cluster.replan(&mut s) {
            tracing::error!(error = %e, "initial placement");
        }
    }
    builds::resume_deploys(&cluster);
    // A backup cut off by the master's stop is not one.
    match cluster
        .store()
        .fail_running_backups("the master stopped while it ran")
    {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            backups = n,
            "backups cut off by the last stop marked failed"
        ),
        Err(e) => tracing::error!(error = %e, "cannot mark cut-off backups failed"),
    }
    master.drains.sync(&cluster);
    tokio::spawn(schedule::run(cluster.clone()));
    // Standbys a stopped master was still waiting for.
    for a in cluster.store().addons().unwrap_or_default() {
        if a.ha() && !a.in_sync && a.sync {
            tokio::spawn(failover::make_sync(cluster.clone(), a.name));
        }
    }
    tracing::info!(api = %api_addr, pub_endpoint = %cfg.pub_endpoint, pull_endpoint = %cfg.pull_endpoint, data = %data.display(), "master running");
    if let Some(tx) = started {
        let _ = tx.send(Started {
            cluster: cluster.clone(),
            api_addr,
            new_admin_token,
        });
    }

    zeroku_metrics::spawn_admin(
        &cfg.metrics,
        Arc::new(metrics::Metrics(cluster.clone())),
        shutdown.clone(),
    )
    .await;
    tokio::spawn(alerts::run(
        cluster.clone(),
        Duration::from_millis(cfg.alert_check_ms.max(100)),
        Duration::from_millis(cfg.alert_settle_ms),
        shutdown.clone(),
    ));
    tokio::spawn(acme::run(cluster.clone(), shutdown.clone()));
    let ticker = tokio::spawn(periodic::run(
        cluster.clone(),
        Duration::from_millis(cfg.republish_interval_ms),
        shutdown.clone(),
    ));
    serve(listener, master, shutdown.clone()).await;
    let _ = ticker.await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(cluster);
    let _ = tokio::task::spawn_blocking(move || {
        let _ = pull_thread.join();
        let _ = pub_thread.join();
        let _ = zap_thread.join();
    })
    .await;
    tracing::info!("master stopped");
    Ok(())
}

/// Makes `<data>/cluster-id` on the first start: 12 random hex digits naming this cluster.
fn cluster_id(data: &Path) -> std::io::Result<()> {
    let path = data.join("cluster-id");
    if std::fs::read_to_string(&path).is_ok_and(|s| s.trim().len() == 12) {
        return Ok(());
    }
    let id = &store::new_token()?[..12];
    let tmp = data.join("cluster-id.tmp");
    zeroku_client::write_private(&tmp, id.as_bytes())?;
    std::fs::rename(&tmp, &path)
}

/// The master's CURVE key pair on the bus, made on first start and kept in `<data>/bus.key`
/// (mode 0600): peers that joined check the bus against its public half.
fn bus_keys(data: &Path) -> std::io::Result<zeroku_bus::Keys> {
    let path = data.join("bus.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let mut lines = text.lines();
        if let (Some(p), Some(s)) = (lines.next(), lines.next()) {
            return zeroku_bus::Keys::from_z85(p.trim(), s.trim()).map_err(|e| {
                std::io::Error::other(format!("{}: {e} (remove it to make a new key; every node and frontend must then join again)", path.display()))
            });
        }
    }
    let keys = zeroku_bus::Keys::generate().map_err(std::io::Error::other)?;
    let tmp = data.join("bus.key.tmp");
    let text = format!("{}\n{}\n", keys.public_z85(), keys.secret_z85());
    zeroku_client::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    Ok(keys)
}

/// Creates the first admin token and `<data>/cli.env` (mode 0600).
fn ensure_admin(
    c: &Cluster,
    data: &Path,
    api: std::net::SocketAddr,
) -> std::io::Result<Option<String>> {
    let env_path = data.join("cli.env");
    if c.store().has_admin().unwrap_or(false) && env_path.exists() {
        return Ok(None);
    }
    let token = store::new_token()?;
    c.store()
        .add_token(&token, store::Role::Admin, None)
        .map_err(std::io::Error::other)?;
    let text = format!("export ZEROKU_URL=http://{api}\nexport ZEROKU_TOKEN={token}\n");
    let tmp = data.join("cli.env.tmp");
    zeroku_client::write_private(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, &env_path)?;
    Ok(Some(token))
}

/// The API accept loop: a task per connection, at most 1024 at once; on
/// shutdown stops accepting and lets open connections finish their request.
async fn serve(
    listener: tokio::net::TcpListener,
    master: Arc<api::Master>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(1024));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            acc = listener.accept() => match acc {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (m, shutdown) = (master.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let m = m.clone();
                async move { Ok::<_, std::convert::Infallible>(api::handle(m, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "api connection") },
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
                }
            }
        });
    }
}
