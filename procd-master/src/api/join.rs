//! Joining the cluster: join tokens, and how nodes and frontends register and come back.
//!
//! - A join token is made by an admin, works once, and expires (an hour by default): a token
//!   read from somewhere it should not have been cannot be replayed for ever.
//! - `register` (a join or admin token) records a node or frontend with the CURVE public key it
//!   made for itself, and answers its own token and the master's bus key.
//! - `hello` (that node's or frontend's own token) is how it comes back after a restart: same
//!   token, same key. A node token can never register a node, rotate its own token or change
//!   its key: that takes a new join token from an admin.

use super::auth::Caller;
use super::checks::check_host;
use super::{change, new_token};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{Frontend, Role};
use hyper::StatusCode;
use serde_json::{json, Value};
use zeroku_client::v1;
use zeroku_conf::names;

/// How long a join token works without `--ttl`.
const DEFAULT_TTL_SECS: u64 = 3600;
/// The longest a join token may work.
const MAX_TTL_SECS: u64 = 7 * 24 * 3600;

pub fn join_token(c: &Cluster, r: v1::NewJoinToken) -> Result<Value, ApiError> {
    let ttl = r.ttl_secs.unwrap_or(DEFAULT_TTL_SECS);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::invalid(format!(
            "a join token lives from 1 s to {} days (--ttl), not {ttl} s",
            MAX_TTL_SECS / 86_400
        )));
    }
    let token = new_token()?;
    let expires_at = crate::store::now() + ttl;
    c.store()
        .add_expiring_token(&token, Role::Join, None, expires_at)?;
    Ok(json!(v1::JoinToken { token, expires_at }))
}

fn bus_key(key: &str) -> Result<(), ApiError> {
    zeroku_bus::keys::decode(key, "bus_key")
        .map(|_| ())
        .map_err(|e| ApiError::invalid(e.to_string()))
}

fn bus_info(c: &Cluster) -> v1::BusInfo {
    v1::BusInfo {
        pub_endpoint: c
            .cfg
            .advertise_pub
            .clone()
            .unwrap_or_else(|| c.cfg.pub_endpoint.clone()),
        pull_endpoint: c
            .cfg
            .advertise_pull
            .clone()
            .unwrap_or_else(|| c.cfg.pull_endpoint.clone()),
        heartbeat_interval_ms: c.pace().heartbeat.as_millis() as u64,
        master_key: c.bus_key.clone(),
        cluster: c.cluster_id.clone(),
    }
}

/// Only a join token or an admin token may make a node or frontend.
fn may_register(caller: &Caller, what: &str) -> Result<(), ApiError> {
    match caller.role {
        Role::Admin | Role::Join => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "only a join token or an admin token may register a {what}; a {what} that has joined comes back with POST /v1/{what}s/<name>/hello and its own token"
        ))),
    }
}

/// Uses up the caller's join token (an admin token stays).
fn use_up(c: &Cluster, caller: &Caller) -> Result<(), ApiError> {
    if caller.role != Role::Join || c.store().take_join_token(&caller.token)? {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this join token has been used or has expired: make a new one with `zeroku nodes:join-token`",
    ))
}

fn mark_alive(c: &Cluster, node: &str) {
    c.live().insert(
        node.to_string(),
        crate::live::Live {
            last_seen: std::time::Instant::now(),
            heartbeat: None,
            // Up in the store: silent from now on, it is dead after the dead timeout (no
            // heartbeat matches `None`, so the first one still goes the slow way).
            up: true,
        },
    );
}

pub(crate) fn register_node(
    c: &Cluster,
    caller: &Caller,
    r: v1::RegisterNode,
) -> Result<Value, ApiError> {
    names::node(&r.name).map_err(|e| ApiError::invalid(e.to_string()))?;
    check_host(&r.host)?;
    bus_key(&r.bus_key)?;
    may_register(caller, "node")?;
    // A second worker under the name of a live node would run all of its instances twice. A
    // node that has registered but not yet sent its first heartbeat counts as alive too, or two
    // workers starting together could both take the name.
    let seen = c.live().get(&r.name).map(|l| l.last_seen.elapsed());
    let up = c.store().node(&r.name)?.is_some_and(|n| n.state == "up");
    if let Some(ago) = seen.filter(|a| up && *a < c.dead_after()) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "node {:?} is already up (last heard from {} ms ago): pick another --node name, or stop that worker first",
                r.name,
                ago.as_millis()
            ),
        ));
    }
    use_up(c, caller)?;
    let token = new_token()?;
    c.store()
        .replace_scoped_token(&token, Role::Node, &r.name)?;
    mark_alive(c, &r.name);
    change(c, |s| {
        s.upsert_node(&r.name, r.capacity_mb, &r.host, &r.bus_key)
    })?;
    c.peers.set_node(&r.name, &r.bus_key);
    // Its list goes out on the topic of its new key.
    c.invalidate_lists();
    change(c, |_| Ok(()))?;
    tracing::info!(node = %r.name, capacity_mb = r.capacity_mb, key = %key_id(&r.bus_key), "node registered");
    Ok(json!(v1::NodeJoined {
        node_token: token,
        bus: bus_info(c),
    }))
}

fn key_id(z85: &str) -> String {
    zeroku_bus::keys::decode(z85, "key")
        .map(|k| zeroku_bus::key_id(&k))
        .unwrap_or_default()
}

/// A registered key, or none yet (joined before the bus was encrypted): the key a peer says it
/// has must be that one.
fn same_key(registered: &str, said: &str, what: &str) -> Result<(), ApiError> {
    if registered.is_empty() || registered == said {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        format!("{what} is registered with another bus key: join it again with a new join token (`zeroku nodes:join-token`)"),
    ))
}

pub(crate) fn node_hello(
    c: &Cluster,
    caller: &Caller,
    node: &str,
    r: v1::RegisterNode,
) -> Result<Value, ApiError> {
    if !(caller.role == Role::Node && caller.node.as_deref() == Some(node)) {
        return Err(ApiError::forbidden(format!(
            "only node {node}'s own token may say hello for it"
        )));
    }
    if r.name != node {
        return Err(ApiError::invalid(format!(
            "this is node {node}'s hello, not {:?}'s",
            r.name
        )));
    }
    check_host(&r.host)?;
    bus_key(&r.bus_key)?;
    let known = c
        .store()
        .node(node)?
        .ok_or_else(|| ApiError::not_found(format!("no node named {node:?}: join it first")))?;
    same_key(&known.bus_key, &r.bus_key, &format!("node {node}"))?;
    mark_alive(c, node);
    change(c, |s| {
        s.upsert_node(node, r.capacity_mb, &r.host, &r.bus_key)
    })?;
    if known.bus_key.is_empty() {
        c.peers.set_node(node, &r.bus_key);
        c.invalidate_lists();
        change(c, |_| Ok(()))?;
    }
    tracing::info!(%node, capacity_mb = r.capacity_mb, "node is back");
    Ok(json!(bus_info(c)))
}

fn check_frontend(r: &v1::RegisterFrontend) -> Result<(), ApiError> {
    names::node(&r.name).map_err(|e| ApiError::invalid(e.to_string()))?;
    check_host(&r.handler_host)?;
    bus_key(&r.bus_key)?;
    if !r.node.is_empty() {
        names::node(&r.node).map_err(|e| ApiError::invalid(format!("node: {e}")))?;
    }
    let dir_ok = r.ipc_dir.is_empty()
        || (r.ipc_dir.starts_with('/')
            && r.ipc_dir.len() < 200
            && !r.ipc_dir.split('/').any(|p| p == "..")
            && !r
                .ipc_dir
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control()));
    if !dir_ok {
        return Err(ApiError::invalid(format!(
            "ipc_dir {:?} must be an absolute path without spaces or ..",
            r.ipc_dir
        )));
    }
    Ok(())
}

fn frontend_row(r: v1::RegisterFrontend) -> Frontend {
    Frontend {
        name: r.name,
        handler_host: r.handler_host,
        bus_key: r.bus_key,
        node: r.node,
        ipc_dir: r.ipc_dir,
    }
}

fn frontend_joined(c: &Cluster, token: String) -> Value {
    json!(v1::FrontendJoined {
        token,
        pub_endpoint: bus_info(c).pub_endpoint,
        master_key: c.bus_key.clone(),
    })
}

pub(crate) fn register_frontend(
    c: &Cluster,
    caller: &Caller,
    r: v1::RegisterFrontend,
) -> Result<Value, ApiError> {
    check_frontend(&r)?;
    may_register(caller, "frontend")?;
    let exists = c.store().frontends()?.iter().any(|f| f.name == r.name);
    // A join token makes new frontends only: taking over a registered one (its handlers and
    // route table) takes an admin.
    if exists && caller.role == Role::Join {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "frontend {:?} is registered already: pick another name (an admin token may replace it)",
                r.name
            ),
        ));
    }
    use_up(c, caller)?;
    let token = new_token()?;
    c.store()
        .replace_scoped_token(&token, Role::Frontend, &r.name)?;
    let (name, host, key) = (r.name.clone(), r.handler_host.clone(), r.bus_key.clone());
    let f = frontend_row(r);
    if c.store().upsert_frontend(&f)? {
        // Handler processes must learn the new endpoints.
        change(c, |_| Ok(()))?;
    }
    c.peers.set_frontend(&name, &key);
    tracing::info!(frontend = %name, handler_host = %host, "frontend registered");
    Ok(frontend_joined(c, token))
}

pub(crate) fn frontend_hello(
    c: &Cluster,
    caller: &Caller,
    name: &str,
    r: v1::RegisterFrontend,
) -> Result<Value, ApiError> {
    if !(caller.role == Role::Frontend && caller.node.as_deref() == Some(name)) {
        return Err(ApiError::forbidden(format!(
            "only frontend {name}'s own token may say hello for it"
        )));
    }
    if r.name != name {
        return Err(ApiError::invalid(format!(
            "this is frontend {name}'s hello, not {:?}'s",
            r.name
        )));
    }
    check_frontend(&r)?;
    let known = c
        .store()
        .frontends()?
        .into_iter()
        .find(|f| f.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no frontend named {name:?}: join it first")))?;
    same_key(&known.bus_key, &r.bus_key, &format!("frontend {name}"))?;
    let key = r.bus_key.clone();
    if c.store().upsert_frontend(&frontend_row(r))? {
        change(c, |_| Ok(()))?;
    }
    c.peers.set_frontend(name, &key);
    Ok(frontend_joined(c, String::new()))
}
