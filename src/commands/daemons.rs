//! `zeroku up`, `zeroku master`, `zeroku worker`: load config (defaults,
//! then file, then flags), run until SIGTERM or ctrl-c.

use crate::cli::MasterFlags;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;
use zeroku_conf::config::{self, ClusterConfig};

/// The join token a worker or frontend starts with: from `--token-file`, else from
/// `ZEROKU_JOIN_TOKEN` (never from the command line, which every local process can read).
pub fn join_token(file: Option<&Path>) -> Result<Option<String>> {
    if let Some(f) = file {
        let t = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the join token file {}", f.display()))?;
        let t = t.trim().to_string();
        anyhow::ensure!(
            !t.is_empty(),
            "the join token file {} is empty",
            f.display()
        );
        return Ok(Some(t));
    }
    Ok(std::env::var("ZEROKU_JOIN_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// Cancels `token` on SIGTERM or ctrl-c.
fn on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
        }
        token.cancel();
    });
}

/// Defaults, then the file, then `ZEROKU_MASTER_*` / `ZEROKU_WORKER_*`
/// environment variables; flags are applied by the caller.
fn load(path: Option<&Path>) -> Result<ClusterConfig> {
    let cfg: ClusterConfig = config::load(path)?;
    Ok(config::apply_env(&cfg, std::env::vars())?)
}

fn apply_master_flags(cfg: &mut ClusterConfig, f: MasterFlags) {
    if let Some(a) = f.api {
        cfg.master.api = a;
    }
    if let Some(p) = f.pub_endpoint {
        cfg.master.pub_endpoint = p;
    }
    if let Some(p) = f.pull_endpoint {
        cfg.master.pull_endpoint = p;
    }
}

fn check(cfg: &ClusterConfig, path: Option<&Path>) -> Result<()> {
    cfg.validate().map_err(|e| match path {
        Some(p) => anyhow::anyhow!("config file {}: {e}", p.display()),
        None => anyhow::anyhow!("{e}"),
    })
}

/// Where `zeroku up` keeps its state without `--data`. As root, not under
/// /root: app processes run under their own uid and must reach their slugs.
fn default_data() -> PathBuf {
    if std::env::var("USER").as_deref() == Ok("root")
        || std::env::var_os("HOME").is_some_and(|h| h == "/root")
    {
        return PathBuf::from("/var/lib/zeroku");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(x).join("zeroku");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/zeroku"),
        None => PathBuf::from("/var/lib/zeroku"),
    }
}

pub async fn up(
    data: Option<PathBuf>,
    config_path: Option<PathBuf>,
    flags: MasterFlags,
    node: Option<String>,
    (http, admin): (Option<String>, Option<String>),
    check_only: bool,
) -> Result<()> {
    let data = data.unwrap_or_else(default_data);
    std::fs::create_dir_all(&data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let config_path = match config_path {
        Some(p) => p,
        None => {
            let p = data.join("zeroku.toml");
            if !p.exists() {
                std::fs::write(&p, config::EXAMPLE)
                    .with_context(|| format!("cannot write {}", p.display()))?;
            }
            p
        }
    };
    let mut cfg = load(Some(&config_path))?;
    apply_master_flags(&mut cfg, flags);
    if let Some(n) = node {
        cfg.worker.node = n;
    }
    if let Some(h) = http {
        cfg.frontend.http = h;
    }
    if let Some(a) = admin {
        cfg.frontend.admin = a;
    }
    cfg.worker.master = format!("http://{}", cfg.master.api);
    cfg.frontend.master = cfg.worker.master.clone();
    // The embedded frontend shares the local worker's host: its handlers use ipc://.
    if cfg.frontend.node.is_empty() {
        cfg.frontend.node = cfg.worker.node.clone();
        cfg.frontend.app_uid_base = cfg.worker.app_uid_base;
    }
    // Deploys print the address of the embedded frontend.
    if cfg.master.app_url == config::MasterConfig::default().app_url {
        let port = cfg.frontend.http.rsplit(':').next().unwrap_or("8080");
        let port = if port == "80" {
            String::new()
        } else {
            format!(":{port}")
        };
        cfg.master.app_url = format!("http://{{app}}.{}{port}", cfg.frontend.base_domain);
    }
    check(&cfg, Some(&config_path))?;
    if check_only {
        println!("config {} is valid", config_path.display());
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let master = {
        let (cfg, data, shutdown) = (cfg.master.clone(), data.clone(), shutdown.clone());
        tokio::spawn(async move { zeroku_master::run(cfg, &data, shutdown, Some(tx)).await })
    };
    let started = match rx.await {
        Ok(s) => s,
        Err(_) => {
            return master.await?.context("the master could not start");
        }
    };
    // The local worker and frontend join with a join token each, like any
    // other node (used up by the first start; later starts come back with
    // the credentials they saved).
    let join_token = || -> Result<String> {
        let t = zeroku_master::store::new_token()?;
        let expires = zeroku_master::store::now() + 600;
        started
            .cluster
            .store()
            .add_expiring_token(&t, zeroku_master::store::Role::Join, None, expires)
            .context("creating a local join token")?;
        Ok(t)
    };
    let (join, fjoin) = (join_token()?, join_token()?);
    let api_url = format!("http://{}", started.api_addr);
    cfg.worker.master = api_url.clone();
    cfg.frontend.master = api_url;
    let worker = {
        let (cfg, wdata, shutdown, join) = (
            cfg.worker.clone(),
            data.join("worker"),
            shutdown.clone(),
            join.clone(),
        );
        tokio::spawn(async move { zeroku_worker::run(cfg, &wdata, Some(join), shutdown).await })
    };
    let (ftx, frx) = tokio::sync::oneshot::channel();
    let frontend = {
        let (cfg, fdata, shutdown) = (
            cfg.frontend.clone(),
            data.join("frontend"),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            zeroku_frontend::run(cfg, &fdata, Some(fjoin), shutdown, Some(ftx)).await
        })
    };
    let http_addr = match frx.await {
        Ok(a) => a,
        Err(_) => {
            shutdown.cancel();
            let _ = master.await;
            return frontend.await?.context("the frontend could not start");
        }
    };
    let env = data.join("cli.env");
    eprintln!(
        "\nzeroku is up: master API http://{api}, apps at http://<app>.{base}:{port}, node {node}, data {data}\n\n\
         Next, in another shell:\n  . {env}\n  zeroku apps:create hello\n  \
         zeroku releases:create -a hello examples/clock\n  zeroku ps:scale -a hello clock=2\n  \
         zeroku ps -a hello\n  zeroku logs -a hello --tail\n\nStop with ctrl-c (app processes keep running and are re-adopted on the next `zeroku up`).\n",
        api = started.api_addr,
        base = cfg.frontend.base_domain,
        port = http_addr.port(),
        node = cfg.worker.node,
        data = data.display(),
        env = env.display(),
    );
    drop(started);
    // If one daemon stops with an error, the others stop too.
    let watch = |name: &'static str,
                 h: tokio::task::JoinHandle<Result<(), anyhow::Error>>,
                 shutdown: CancellationToken| async move {
        let r = match h.await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("{name} panicked: {e}")),
        };
        if let Err(e) = &r {
            tracing::error!(error = %format!("{e:#}"), "{name} stopped");
            shutdown.cancel();
        }
        r.with_context(|| name)
    };
    let m = tokio::spawn(async move { master.await?.map_err(anyhow::Error::from) });
    let w = tokio::spawn(async move { worker.await?.map_err(anyhow::Error::from) });
    let f = tokio::spawn(async move { frontend.await?.map_err(anyhow::Error::from) });
    let (m, w, f) = tokio::join!(
        watch("master", m, shutdown.clone()),
        watch("worker", w, shutdown.clone()),
        watch("frontend", f, shutdown.clone())
    );
    m?;
    w?;
    f?;
    Ok(())
}

pub struct FrontendFlags {
    pub name: Option<String>,
    pub master: Option<String>,
    pub http: Option<String>,
    pub admin: Option<String>,
}

pub async fn frontend(
    data: PathBuf,
    config_path: Option<PathBuf>,
    f: FrontendFlags,
    token: Option<String>,
    check_only: bool,
) -> Result<()> {
    let mut cfg = load(config_path.as_deref())?;
    if let Some(v) = f.name {
        cfg.frontend.name = v;
    }
    if let Some(v) = f.master {
        cfg.frontend.master = v;
    }
    if let Some(v) = f.http {
        cfg.frontend.http = v;
    }
    if let Some(v) = f.admin {
        cfg.frontend.admin = v;
    }
    check(&cfg, config_path.as_deref())?;
    if check_only {
        println!("frontend config is valid");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    zeroku_frontend::run(cfg.frontend, &data, token, shutdown, None).await?;
    Ok(())
}

pub async fn master(
    data: PathBuf,
    config_path: Option<PathBuf>,
    flags: MasterFlags,
    check_only: bool,
) -> Result<()> {
    let mut cfg = load(config_path.as_deref())?;
    apply_master_flags(&mut cfg, flags);
    check(&cfg, config_path.as_deref())?;
    if check_only {
        println!("master config is valid");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    zeroku_master::run(cfg.master, &data, shutdown, None).await?;
    Ok(())
}

pub struct WorkerFlags {
    pub node: Option<String>,
    pub master: Option<String>,
    pub capacity_mb: Option<u64>,
    pub port_min: Option<u16>,
    pub port_max: Option<u16>,
}

pub async fn worker(
    data: PathBuf,
    config_path: Option<PathBuf>,
    f: WorkerFlags,
    token: Option<String>,
    check_only: bool,
) -> Result<()> {
    let mut cfg = load(config_path.as_deref())?;
    let w = &mut cfg.worker;
    if let Some(v) = f.node {
        w.node = v;
    }
    if let Some(v) = f.master {
        w.master = v;
    }
    if let Some(v) = f.capacity_mb {
        w.capacity_mb = v;
    }
    if let Some(v) = f.port_min {
        w.port_min = v;
    }
    if let Some(v) = f.port_max {
        w.port_max = v;
    }
    check(&cfg, config_path.as_deref())?;
    if check_only {
        println!("worker config is valid");
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    on_signal(shutdown.clone());
    zeroku_worker::run(cfg.worker, &data, token, shutdown).await?;
    Ok(())
}
