//! Add-ons as the cluster runs them: the instance spec of each add-on's server (pinned to its
//! node) and the URL apps get. Pure functions of the store's add-ons: backups are
//! [`crate::backups`]'.
//!
//! What a kind *is* (its server, URL, backup tool) is `zeroku_services`'; which add-ons exist
//! and where is the store's.

use crate::store::{Addon, Store, StoreError};
use zeroku_conf::{AddonRun, InstanceSpec, Limits, SlugRef};
use zeroku_services::Kind;

/// The instance id of an add-on's primary server: `<name>.<kind>.1` (`.2` after an odd
/// number of failovers).
pub fn instance_id(a: &Addon) -> String {
    zeroku_conf::names::instance_id(&a.name, &a.kind, a.primary_index)
}

/// The instance id of its standby server, if it has one.
pub fn standby_id(a: &Addon) -> Option<String> {
    a.ha()
        .then(|| zeroku_conf::names::instance_id(&a.name, &a.kind, a.standby_index()))
}

/// The kind of a stored add-on.
pub fn kind_of(a: &Addon) -> Result<&'static dyn Kind, String> {
    zeroku_services::kind(&a.kind).map_err(|e| e.to_string())
}

pub fn service(a: &Addon) -> zeroku_services::Addon<'_> {
    zeroku_services::Addon {
        name: &a.name,
        port: a.port,
        password: &a.password,
        admin_password: &a.admin_password,
        memory_mb: a.memory_mb,
        follows: None,
    }
}

/// What the add-on's node runs: its server, from its data directory, on its port.
pub fn spec(a: &Addon) -> Option<InstanceSpec> {
    server_spec(a, a.primary_index, a.port, None)
}

/// What its standby's node runs: a server following the primary (on `primary_host`).
pub fn standby_spec(a: &Addon, primary_host: &str) -> Option<InstanceSpec> {
    if !a.ha() {
        return None;
    }
    server_spec(
        a,
        a.standby_index(),
        a.standby_port,
        Some((primary_host, a.port)),
    )
}

fn server_spec(
    a: &Addon,
    index: u32,
    port: u16,
    follows: Option<(&str, u16)>,
) -> Option<InstanceSpec> {
    let kind = kind_of(a).ok()?;
    let mut service = service(a);
    service.port = port;
    service.follows = follows;
    let mut env = kind.start_env(&service);
    if a.ha() {
        // WAL kept for a standby that was away a while (or an old primary rejoining).
        env.insert("ZEROKU_ADDON_WAL_KEEP_MB".into(), "256".into());
    }
    if follows.is_some() {
        env.insert(
            "ZEROKU_ADDON_STANDBY_COPY".into(),
            a.standby_copy.to_string(),
        );
    }
    Some(InstanceSpec {
        id: zeroku_conf::names::instance_id(&a.name, &a.kind, index),
        app: a.name.clone(),
        app_seq: a.seq,
        proc_type: a.kind.clone(),
        index,
        release: 1,
        command: kind.start_script(),
        env,
        slug: SlugRef {
            sha256: String::new(),
            size: 0,
        },
        limits: Limits {
            memory_mb: a.memory_mb,
            ..Limits::default()
        },
        stack: None,
        tty: None,
        handler: Vec::new(),
        restart: 0,
        stop_when_lost_ms: None,
        addon: Some(AddonRun {
            kind: a.kind.clone(),
            port,
        }),
        requires: Vec::new(),
    })
}

/// Where `a`'s standby goes: the up, undrained node with the fewest add-on servers that
/// holds neither its primary nor its standby now; `None`: there is none.
pub fn standby_node(store: &Store, a: &Addon) -> Result<Option<String>, StoreError> {
    let all = store.addons()?;
    Ok(store
        .nodes()?
        .into_iter()
        .filter(|n| n.state == "up" && !n.draining && n.name != a.node && n.name != a.standby_node)
        .min_by_key(|n| {
            (
                all.iter()
                    .filter(|x| x.node == n.name || x.standby_node == n.name)
                    .count(),
                n.name.clone(),
            )
        })
        .map(|n| n.name))
}

/// Where apps reach the add-on: its node's address (as frontends reach that node's
/// instances).
pub fn host(store: &Store, a: &Addon) -> Result<String, StoreError> {
    Ok(store
        .nodes()?
        .into_iter()
        .find(|n| n.name == a.node)
        .map_or_else(|| "127.0.0.1".to_string(), |n| n.host))
}

/// The URL an attached app gets, its primary on `host`.
pub fn url(a: &Addon, host: &str) -> Result<String, String> {
    Ok(kind_of(a)?.url(&service(a), host))
}

/// The URL an attached app gets, read from the store: with a standby, both servers in the
/// order of their instance numbers where the kind's clients take both (PostgreSQL), so that a
/// failover changes nothing apps hold; the primary alone otherwise (Redis).
pub fn url_of(store: &Store, a: &Addon) -> Result<String, String> {
    let host_of = |node: &str| -> Result<String, String> {
        Ok(store
            .nodes()
            .map_err(|e| e.to_string())?
            .into_iter()
            .find(|n| n.name == node)
            .map_or_else(|| "127.0.0.1".to_string(), |n| n.host))
    };
    let primary = host_of(&a.node)?;
    if !a.ha() {
        return url(a, &primary);
    }
    let standby = host_of(&a.standby_node)?;
    let (p, s) = (
        (primary.as_str(), a.port),
        (standby.as_str(), a.standby_port),
    );
    let servers = if a.primary_index == 1 { [p, s] } else { [s, p] };
    match kind_of(a)?.ha_url(&service(a), servers) {
        Some(url) => Ok(url),
        None => url(a, &primary),
    }
}
