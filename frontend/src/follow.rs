//! Joining the master and following its route table: registration (with a
//! token saved for restarts), the table over the API at start, then every
//! change on ZMQ SUB topic `routes`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zeroku_client::join::{until_answered, Saved};
use zeroku_client::v1::{FrontendJoined, RegisterFrontend};
use zeroku_client::{Client, ClientError, Method};
use zeroku_conf::config::FrontendConfig;
use zeroku_conf::wire::{self, Message, ROUTES_TOPIC};
use zeroku_conf::RouteTable;

/// This frontend's credentials and the bus, once joined.
pub struct Joined {
    pub token: String,
    pub keys: zeroku_bus::Keys,
    pub pub_endpoint: String,
    pub master_key: zeroku_bus::PublicKey,
}

/// Why a frontend could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("no token to join the cluster: give a join token from `zeroku nodes:join-token` with --token-file or ZEROKU_JOIN_TOKEN")]
    NoToken,
    #[error("{0}")]
    Keys(String),
}

/// Comes back with the credentials saved by an earlier run, or joins with the join token
/// `token` (used up by it) under a new bus key; retries while the master is unreachable.
/// `None` if shut down first.
pub async fn join(
    cfg: &FrontendConfig,
    data: &Path,
    token: Option<&str>,
    shutdown: &CancellationToken,
) -> Result<Option<Joined>, JoinError> {
    let saved_path = data.join("frontend-token.json");
    let host = if cfg.handler_advertise.is_empty() {
        &cfg.handler_bind
    } else {
        &cfg.handler_advertise
    };
    let body = |keys: &zeroku_bus::Keys| RegisterFrontend {
        name: cfg.name.clone(),
        handler_host: host.clone(),
        bus_key: keys.public_z85(),
        node: cfg.node.clone(),
        ipc_dir: crate::handlers::ipc_dir(data).display().to_string(),
    };
    let joined = |token: String, keys: zeroku_bus::Keys, j: FrontendJoined| {
        let master_key = zeroku_bus::keys::decode(&j.master_key, "the master's bus key")
            .map_err(|e| JoinError::Keys(e.to_string()))?;
        Ok::<_, JoinError>(Some(Joined {
            token,
            keys,
            pub_endpoint: j.pub_endpoint,
            master_key,
        }))
    };
    if let Some(s) =
        Saved::load(&saved_path, &cfg.name, &cfg.master).filter(|s| !s.bus_public.is_empty())
    {
        let keys = zeroku_bus::Keys::from_z85(&s.bus_public, &s.bus_secret)
            .map_err(|e| JoinError::Keys(format!("{}: {e}", saved_path.display())))?;
        let client = Client::new(&cfg.master, &s.token)?;
        let (path, hello) = (format!("/v1/frontends/{}/hello", cfg.name), body(&keys));
        match until_answered(shutdown, "reach the master", || {
            client.send::<FrontendJoined>(Method::POST, &path, &hello)
        })
        .await
        {
            Ok(Some(j)) => return joined(s.token, keys, j),
            Ok(None) => return Ok(None),
            Err(e) if token.is_none() => return Err(e.into()),
            Err(e) => {
                tracing::warn!(error = %e, "the master refused this frontend's saved token; joining again with the join token")
            }
        }
    }
    let token = token.ok_or(JoinError::NoToken)?;
    let keys = zeroku_bus::Keys::generate().map_err(|e| JoinError::Keys(e.to_string()))?;
    let (client, register) = (Client::new(&cfg.master, token)?, body(&keys));
    let Some(j) = until_answered(shutdown, "reach the master", || {
        client.send::<FrontendJoined>(Method::POST, "/v1/frontends/register", &register)
    })
    .await?
    else {
        return Ok(None);
    };
    let saved = Saved {
        name: cfg.name.clone(),
        master: cfg.master.clone(),
        token: j.token.clone(),
        bus_public: keys.public_z85(),
        bus_secret: keys.secret_z85(),
    };
    if let Err(e) = saved.store(&saved_path) {
        tracing::warn!(error = %e, "cannot save the frontend token");
    }
    joined(j.token.clone(), keys, j)
}

/// The route table over the API, retried while the master is unreachable.
pub async fn fetch(
    client: &Client,
    shutdown: &CancellationToken,
) -> Result<Option<RouteTable>, ClientError> {
    until_answered(shutdown, "fetch the route table", || {
        client.get::<RouteTable>("/v1/routes")
    })
    .await
}

/// A thread with a SUB socket on `routes`, forwarding each table to `tx`.
/// Garbage is logged and dropped.
pub fn subscribe(
    endpoint: &str,
    joined: &Joined,
    tx: tokio::sync::mpsc::Sender<RouteTable>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, zmq::Error> {
    let ctx = zmq::Context::new();
    let sock = ctx.socket(zmq::SUB)?;
    sock.set_linger(0)?;
    sock.set_rcvtimeo(200)?;
    sock.set_maxmsgsize(256 << 20)?;
    sock.set_subscribe(ROUTES_TOPIC.as_bytes())?;
    zeroku_bus::curve::client(&sock, &joined.keys, &joined.master_key).map_err(|e| match e {
        zeroku_bus::BusError::Zmq { source, .. } | zeroku_bus::BusError::NoCurve(source) => source,
        zeroku_bus::BusError::BadKey { .. } => zmq::Error::EINVAL,
    })?;
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
