//! Joining the master and following its route table: registration (with a
//! token saved for restarts), the table over the API at start, then every
//! change on ZMQ SUB topic `routes`.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
pub use zeroku_client::v1::FrontendJoined as Joined;
use zeroku_client::v1::RegisterFrontend;
use zeroku_client::{Client, ClientError, Method};
use zeroku_conf::config::FrontendConfig;
use zeroku_conf::wire::{self, Message, ROUTES_TOPIC};
use zeroku_conf::RouteTable;

#[derive(Serialize, Deserialize)]
struct Saved {
    name: String,
    master: String,
    token: String,
}

/// Registers with the master (retrying while it is unreachable); `None` if
/// shut down first.
pub async fn join(
    cfg: &FrontendConfig,
    data: &Path,
    token: Option<&str>,
    shutdown: &CancellationToken,
) -> Result<Option<Joined>, ClientError> {
    let saved_path = data.join("frontend-token.json");
    let saved: Option<Saved> = std::fs::read(&saved_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|s: &Saved| s.name == cfg.name && s.master == cfg.master);
    let mut tokens: Vec<String> = saved.map(|s| s.token).into_iter().collect();
    tokens.extend(token.map(str::to_string));
    let host = if cfg.handler_advertise.is_empty() {
        &cfg.handler_bind
    } else {
        &cfg.handler_advertise
    };
    let body = RegisterFrontend {
        name: cfg.name.clone(),
        handler_host: host.clone(),
    };
    let mut delay = Duration::from_millis(200);
    loop {
        let mut refused = None;
        for t in &tokens {
            match Client::new(&cfg.master, t)?
                .send::<Joined>(Method::POST, "/v1/frontends/register", &body)
                .await
            {
                Ok(j) => {
                    let s = Saved {
                        name: cfg.name.clone(),
                        master: cfg.master.clone(),
                        token: j.token.clone(),
                    };
                    let tmp = data.join("frontend-token.json.tmp");
                    let write = zeroku_client::write_private(
                        &tmp,
                        &serde_json::to_vec(&s).unwrap_or_default(),
                    )
                    .and_then(|()| std::fs::rename(&tmp, &saved_path));
                    if let Err(e) = write {
                        tracing::warn!(error = %e, "cannot save the frontend token");
                    }
                    return Ok(Some(j));
                }
                Err(
                    e @ ClientError::Api {
                        status: 400..=499, ..
                    },
                ) => refused = Some(e),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the master yet; retrying");
                    refused = None;
                    break;
                }
            }
        }
        if let Some(e) = refused {
            return Err(e);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// The route table over the API, retried while the master is unreachable.
pub async fn fetch(
    client: &Client,
    shutdown: &CancellationToken,
) -> Result<Option<RouteTable>, ClientError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match client.get::<RouteTable>("/v1/routes").await {
            Ok(t) => return Ok(Some(t)),
            Err(
                e @ ClientError::Api {
                    status: 400..=499, ..
                },
            ) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "cannot fetch the route table yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// A thread with a SUB socket on `routes`, forwarding each table to `tx`.
/// Garbage is logged and dropped.
pub fn subscribe(
    endpoint: &str,
    tx: tokio::sync::mpsc::Sender<RouteTable>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, zmq::Error> {
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::SUB)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(200)?;
    sock.set_maxmsgsize(256 << 20)?;
    sock.set_subscribe(ROUTES_TOPIC.as_bytes())?;
    sock.connect(endpoint)?;
    Ok(std::thread::Builder::new()
        .name("zmq-routes".into())
        .spawn(move || {
            let _ctx = ctx;
            while !stop.load(Ordering::Relaxed) {
                let parts = match sock.recv_multipart(0) {
                    Ok(p) => p,
                    Err(zmq::Error::EAGAIN) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "routes socket");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                };
                if parts.len() != 2 || parts[0] != ROUTES_TOPIC.as_bytes() {
                    tracing::warn!(
                        frames = parts.len(),
                        "dropped a malformed message on the routes socket"
                    );
                    continue;
                }
                match wire::decode(&parts[1]) {
                    Ok(Message::Routes(t)) => {
                        if tx.blocking_send(t).is_err() {
                            break;
                        }
                    }
                    Ok(_) => tracing::warn!("dropped a non-route message on the routes socket"),
                    Err(e) => tracing::warn!(error = %e, "dropped an undecodable route table"),
                }
            }
        })
        .expect("spawn thread"))
}
