//! Add-ons as the cluster runs them: the instance spec of each add-on's server (pinned to its
//! node) and the URL apps get. Pure functions of the store's add-ons: backups are
//! [`crate::backups`]'.
//!
//! What a kind *is* (its server, URL, backup tool) is `zeroku_services`'; which add-ons exist
//! and where is the store's.

use crate::store::{Addon, Store, StoreError};
use zeroku_conf::{AddonRun, InstanceSpec, Limits, SlugRef};
use zeroku_services::Kind;

/// The instance id of an add-on's server: `<name>.<kind>.1`.
pub fn instance_id(a: &Addon) -> String {
    zeroku_conf::names::instance_id(&a.name, &a.kind, 1)
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
    }
}

/// What the add-on's node runs: its server, from its data directory, on its port.
pub fn spec(a: &Addon) -> Option<InstanceSpec> {
    let kind = kind_of(a).ok()?;
    Some(InstanceSpec {
        id: instance_id(a),
        app: a.name.clone(),
        app_seq: a.seq,
        proc_type: a.kind.clone(),
        index: 1,
        release: 1,
        command: kind.start_script(),
        env: kind.start_env(&service(a)),
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
            port: a.port,
        }),
        requires: Vec::new(),
    })
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

/// The URL an attached app gets.
pub fn url(a: &Addon, host: &str) -> Result<String, String> {
    Ok(kind_of(a)?.url(&service(a), host))
}
