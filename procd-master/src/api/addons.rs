//! `/v1/apps/:app/addons…` and `/v1/apps/:app/attachments…`: creating, attaching, backing up,
//! restoring and destroying add-ons. An add-on is reached through an app it is attached to, and
//! the route's permission is on that app; what reaches another app's data (attaching an add-on
//! to a second app) also needs `manage` on the add-on's own app.

use super::{app_exists, body_json, change, files::file_reply, ok, Caller, Master, Reply};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{Addon, Backup, NewAddon, Perm};
use crate::{addons, backups};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

#[derive(Deserialize)]
struct Create {
    kind: String,
    /// The config var's name without `_URL`; the kind's default (`DATABASE`) when absent.
    #[serde(default, rename = "as")]
    alias: Option<String>,
    /// A standby on another node, synchronous, with failover (PostgreSQL).
    #[serde(default)]
    ha: bool,
}

#[derive(Deserialize)]
struct SetSchedule {
    /// `02:00 UTC`.
    at: String,
    #[serde(default = "seven")]
    keep_daily: u32,
    #[serde(default = "four")]
    keep_weekly: u32,
}

fn seven() -> u32 {
    7
}

fn four() -> u32 {
    4
}

#[derive(Deserialize)]
struct Attach {
    addon: String,
    #[serde(default, rename = "as")]
    alias: Option<String>,
}

/// `DATABASE`, `REPORTING`: what goes before `_URL`.
fn check_alias(alias: &str) -> Result<(), ApiError> {
    let ok = !alias.is_empty()
        && alias.len() <= 64
        && alias.starts_with(|c: char| c.is_ascii_uppercase())
        && alias
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{alias:?} is not a config var name: use capitals, digits and _ (e.g. DATABASE for DATABASE_URL)"
        )))
    }
}

/// The add-on `name`, which must be attached to `app`.
pub(super) fn attached(c: &Cluster, app: &str, name: &str) -> Result<Addon, ApiError> {
    let store = c.store();
    let on_app = store
        .attachments(Some(app), Some(name))?
        .into_iter()
        .next()
        .is_some();
    match store.addon(name)? {
        Some(a) if on_app || a.app == app => Ok(a),
        _ => Err(ApiError::not_found(format!(
            "no add-on {name:?} attached to {app} (see `zeroku addons -a {app}`)"
        ))),
    }
}

/// An add-on as `addons` and `addons:info` show it.
fn view(c: &Cluster, a: &Addon) -> Result<Value, ApiError> {
    let attachments: Vec<Value> = c
        .store()
        .attachments(None, Some(&a.name))?
        .into_iter()
        .map(|t| json!({"app": t.app, "as": crate::store::url_var(&t.alias)}))
        .collect();
    let id = addons::instance_id(a);
    let (state, last_exit) = c
        .live()
        .get(&a.node)
        .and_then(|l| l.heartbeat.as_ref())
        .and_then(|h| h.instances.iter().find(|i| i.id == id))
        .map_or(("starting".to_string(), None), |i| {
            (i.state.to_string(), i.last_exit.clone())
        });
    Ok(json!({
        "name": a.name,
        "kind": a.kind,
        "app": a.app,
        "node": a.node,
        "port": a.port,
        "state": state,
        "last_exit": last_exit,
        "memory_mb": a.memory_mb,
        "created_at": a.created_at,
        "attachments": attachments,
        "ha": ha_view(c, a),
        "backups": c.store().backups(&a.name)?.iter().filter(|b| b.state == "ok").count(),
        "schedule": schedule_view(c, &a.name)?,
    }))
}

/// Its servers and their roles, when it has a standby.
fn ha_view(c: &Cluster, a: &Addon) -> Value {
    if !a.ha() {
        return Value::Null;
    }
    let state = |node: &str, id: Option<String>| {
        c.live()
            .get(node)
            .and_then(|l| l.heartbeat.as_ref())
            .and_then(|h| h.instances.iter().find(|i| Some(&i.id) == id.as_ref()))
            .map_or("starting".to_string(), |i| i.state.to_string())
    };
    let (last_at, last_why) = a
        .last_failover
        .split_once(' ')
        .map_or((Value::Null, Value::Null), |(t, w)| {
            (json!(t.parse::<u64>().ok()), json!(w))
        });
    json!({
        "primary": {"node": a.node, "port": a.port, "state": state(&a.node, Some(addons::instance_id(a)))},
        "standby": {"node": a.standby_node, "port": a.standby_port, "state": state(&a.standby_node, addons::standby_id(a))},
        "sync": a.sync,
        "in_sync": a.in_sync,
        "synchronous": addons::kind_of(a).ok().and_then(|k| k.ha()).is_some_and(|h| h.synchronous()),
        "failovers": a.failovers,
        "last_failover_at": last_at,
        "last_failover": last_why,
    })
}

/// What `sync=on` means for `a`'s kind, in a user's words.
fn counts_on(a: &Addon) -> &'static str {
    match addons::kind_of(a).ok().and_then(|k| k.ha()) {
        Some(ha) if ha.synchronous() => "commits wait for it",
        _ => "writes are refused when it has been silent 10 s (replication is asynchronous)",
    }
}

/// `addons:settings NAME ha=on|off sync=on|off`.
async fn settings(
    c: &Arc<Cluster>,
    app: &str,
    name: &str,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    if a.app != app {
        return Err(ApiError::forbidden(format!(
            "{name} belongs to {}: change it from there",
            a.app
        )));
    }
    let body: std::collections::BTreeMap<String, String> = body_json(req).await?;
    // Not while a failover or a new standby is under way (it waits for them); the add-on is
    // read again after.
    let _busy = crate::failover::exclusive(&a.name).await;
    let a = attached(c, app, name)?;
    let on_off = |k: &str, v: &str| match v {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(ApiError::invalid(format!("{k}={v}: use {k}=on or {k}=off"))),
    };
    let mut said = Vec::new();
    for (k, v) in &body {
        match k.as_str() {
            "ha" | "sync" => {
                on_off(k, v)?;
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "no add-on setting {k:?}: the settings are ha and sync"
                )))
            }
        }
    }
    if let Some(v) = body.get("ha") {
        match (on_off("ha", v)?, a.ha()) {
            (true, false) => {
                let (now, _) = enable_ha(c, &a)?;
                said.push(format!(
                    "{name}: a standby on {}; {} once it is in sync",
                    now.standby_node,
                    counts_on(&now)
                ));
            }
            (false, true) => {
                crate::failover::set_sync(c, &a, false)
                    .await
                    .map_err(ApiError::invalid)?;
                change(c, |s| {
                    s.set_standby(&a.name, None, 0..=0)?;
                    let Some(now) = s.addon(&a.name)? else {
                        return Ok(());
                    };
                    let url = addons::url_of(s, &now).unwrap_or_default();
                    s.set_addon_password(&a.name, &now.password, &url)?;
                    Ok(())
                })?;
                said.push(format!(
                    "{name}: no standby any more; the apps' URL names the primary alone (a new release)"
                ));
            }
            _ => said.push(format!("{name}: ha is {v} already")),
        }
    }
    if let Some(v) = body.get("sync") {
        let on = on_off("sync", v)?;
        let now = attached(c, app, name)?;
        if !now.ha() {
            return Err(ApiError::invalid(format!(
                "{name} has no standby: sync needs ha=on"
            )));
        }
        crate::failover::set_sync(c, &now, on)
            .await
            .map_err(ApiError::invalid)?;
        said.push(if on {
            format!(
                "{name}: sync=on: {} once it is in sync (addons:info)",
                counts_on(&now)
            )
        } else {
            format!("{name}: sync=off: writes no longer count on the standby; a write may be on the primary alone, and there is no automatic failover until sync=on")
        });
    }
    let now = attached(c, app, name)?;
    ok(json!({"addon": view(c, &now)?, "said": said}))
}

/// `addons:failover`: a planned switchover.
async fn switch_over(c: &Arc<Cluster>, app: &str, name: &str) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    if a.app != app {
        return Err(ApiError::forbidden(format!(
            "{name} belongs to {}: fail it over from there",
            a.app
        )));
    }
    let took = crate::failover::switch_over(c, name)
        .await
        .map_err(ApiError::invalid)?;
    let now = attached(c, app, name)?;
    ok(json!({"addon": view(c, &now)?, "took_ms": took.as_millis() as u64}))
}

/// `view` with what the server says of itself (its version, the size of the apps' data), or
/// nulls when it does not answer within 5 s.
async fn view_live(c: &Cluster, a: &Addon) -> Result<Value, ApiError> {
    let mut v = view(c, a)?;
    let (mut version, mut size) = (None, None);
    // The store's guard must be gone before anything is awaited.
    let host = addons::host(&c.store(), a);
    if let (Ok(kind), Ok(host)) = (addons::kind_of(a), host) {
        if let Ok((tool, input)) = kind.stats(&addons::service(a), &host) {
            let asked = backups::run_with_input(&tool, &input);
            if let Ok(Ok(out)) =
                tokio::time::timeout(std::time::Duration::from_secs(5), asked).await
            {
                (version, size) = kind.parse_stats(&out);
            }
        }
    }
    v["version"] = json!(version);
    v["size"] = json!(size);
    if a.ha() {
        v["ha"]["lag"] = match crate::failover::lag(c, a).await {
            Some(l) => json!({"bytes": l.bytes, "ms": l.ms}),
            None => Value::Null,
        };
    }
    Ok(v)
}

fn backup_view(b: &Backup) -> Value {
    json!({
        "id": b.id(),
        "addon": b.addon,
        "kind": b.kind,
        "state": b.state,
        "size": b.size,
        "sha256": b.sha256,
        "error": b.error,
        "created_at": b.created_at,
        "scheduled": b.scheduled,
    })
}

/// `b001` → 1.
fn backup_number(id: &str) -> Result<u32, ApiError> {
    id.strip_prefix('b')
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::invalid(format!("{id:?} is not a backup id like b001")))
}

fn find_backup(c: &Cluster, a: &Addon, id: &str) -> Result<Backup, ApiError> {
    let n = backup_number(id)?;
    c.store().backup(&a.name, n)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no backup {id} of {} (see `zeroku pg:backups -a {}`)",
            a.name, a.app
        ))
    })
}

/// Where a new add-on goes: the up, undrained node with the fewest add-ons.
fn pick_node(c: &Cluster) -> Result<String, ApiError> {
    let store = c.store();
    let addons = store.addons()?;
    store
        .nodes()?
        .into_iter()
        .filter(|n| n.state == "up" && !n.draining)
        .min_by_key(|n| {
            (
                addons.iter().filter(|a| a.node == n.name).count(),
                std::cmp::Reverse(n.capacity_mb),
                n.name.clone(),
            )
        })
        .map(|n| n.name)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_node",
                "no node is up to run the add-on (see `zeroku nodes`)",
            )
        })
}

fn new_secret() -> Result<String, ApiError> {
    crate::store::new_token().map_err(ApiError::internal)
}

/// The routes of this module; `None` when the path is not one of them.
pub(super) async fn dispatch(
    m: &Master,
    caller: &Caller,
    req: Request<Incoming>,
    method: &Method,
    segs: &[&str],
) -> Option<Result<Reply, ApiError>> {
    let c = &m.cluster;
    let out = match (method, segs) {
        (&Method::GET, ["addons"]) => list_all(c, caller).await,
        (&Method::GET, ["apps", app, "addons"]) => list(c, app).await,
        (&Method::POST, ["apps", app, "addons"]) => create(c, app, req).await,
        (&Method::GET, ["apps", app, "addons", name]) => match attached(c, app, name) {
            Ok(a) => view_live(c, &a).await.and_then(ok),
            Err(e) => Err(e),
        },
        (&Method::DELETE, ["apps", app, "addons", name]) => destroy(c, app, name, &req),
        (&Method::POST, ["apps", app, "attachments"]) => attach(c, caller, app, req).await,
        (&Method::DELETE, ["apps", app, "attachments", name]) => detach(c, app, name),
        (&Method::POST, ["apps", app, "addons", name, "credentials"]) => rotate(c, app, name).await,
        (&Method::POST, ["apps", app, "addons", name, "failover"]) => {
            switch_over(c, app, name).await
        }
        (&Method::PATCH, ["apps", app, "addons", name, "settings"]) => {
            settings(c, app, name, req).await
        }
        (&Method::PUT, ["apps", app, "addons", name, "schedule"]) => {
            schedule(c, app, name, Some(req)).await
        }
        (&Method::DELETE, ["apps", app, "addons", name, "schedule"]) => {
            schedule(c, app, name, None).await
        }
        (&Method::GET, ["apps", app, "addons", name, "backups"]) => attached(c, app, name)
            .and_then(|a| Ok(c.store().backups(&a.name)?))
            .and_then(|bs| ok(json!(bs.iter().map(backup_view).collect::<Vec<_>>()))),
        (&Method::POST, ["apps", app, "addons", name, "backups"]) => capture(c, app, name),
        (&Method::GET, ["apps", app, "addons", name, "backups", id]) => attached(c, app, name)
            .and_then(|a| find_backup(c, &a, id))
            .and_then(|b| ok(backup_view(&b))),
        (&Method::GET, ["apps", app, "addons", name, "backups", id, "file"]) => {
            download(c, app, name, id).await
        }
        (&Method::POST, ["apps", app, "addons", name, "backups", id, "restore"]) => {
            let to = super::query(&req).get("to").cloned();
            restore(c, caller, app, name, id, to.as_deref()).await
        }
        _ => return None,
    };
    Some(out)
}

async fn list_all(c: &Arc<Cluster>, caller: &Caller) -> Result<Reply, ApiError> {
    let all = c.store().addons()?;
    let mut out = Vec::new();
    for a in &all {
        if caller.perms(c, &a.app)?.contains(&Perm::View) {
            out.push(view_live(c, a).await?);
        }
    }
    ok(json!(out))
}

async fn list(c: &Arc<Cluster>, app: &str) -> Result<Reply, ApiError> {
    app_exists(c, app)?;
    let names: Vec<String> = c
        .store()
        .attachments(Some(app), None)?
        .into_iter()
        .map(|t| t.addon)
        .collect();
    let mut out = Vec::new();
    for n in names {
        // The store's guard must be gone before `view` takes it again.
        let addon = c.store().addon(&n)?;
        if let Some(a) = addon {
            out.push(view_live(c, &a).await?);
        }
    }
    ok(json!(out))
}

async fn create(c: &Arc<Cluster>, app: &str, req: Request<Incoming>) -> Result<Reply, ApiError> {
    app_exists(c, app)?;
    let body: Create = body_json(req).await?;
    let kind = zeroku_services::kind(&body.kind).map_err(|e| ApiError::invalid(e.to_string()))?;
    let alias = body
        .alias
        .unwrap_or_else(|| kind.default_alias().to_string());
    if body.ha && kind.ha().is_none() {
        return Err(ApiError::invalid(format!(
            "--ha: {} add-ons have no standbys",
            kind.name()
        )));
    }
    let (a, rel) = new_addon(c, app, kind, &alias)?;
    let (a, rel) = if body.ha {
        match enable_ha(c, &a) {
            Ok((a, r)) => (a, r.or(rel)),
            Err(e) => {
                c.system_log(
                    app,
                    &a.name,
                    format!("{}: no standby: {}", a.name, e.message),
                );
                return Err(e);
            }
        }
    } else {
        (a, rel)
    };
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({"addon": view(c, &a)?, "as": format!("{alias}_URL"), "release": rel.map(|r| r.version)}),
    ))
}

/// A new add-on of `kind` for `app`, attached as `alias`.
fn new_addon(
    c: &Arc<Cluster>,
    app: &str,
    kind: &dyn zeroku_services::Kind,
    alias: &str,
) -> Result<(Addon, Option<crate::store::Release>), ApiError> {
    check_alias(alias)?;
    let node = pick_node(c)?;
    let host = c
        .store()
        .nodes()?
        .into_iter()
        .find(|n| n.name == node)
        .map(|n| n.host)
        .unwrap_or_else(|| "127.0.0.1".into());
    let (password, admin_password) = (new_secret()?, new_secret()?);
    let min = c.cfg.addon_port_min;
    let url = |a: &Addon| addons::url(a, &host).unwrap_or_default();
    let new = NewAddon {
        kind: kind.name(),
        prefix: kind.prefix(),
        app,
        alias,
        node: &node,
        ports: min..=min.saturating_add(999),
        password: &password,
        admin_password: &admin_password,
        memory_mb: c.cfg.addon_memory_mb,
        url: &url,
    };
    let (a, rel) = match change(c, |s| s.create_addon(&new))? {
        Ok(v) => v,
        Err(why) => return Err(refused(app, why)),
    };
    c.system_log(
        app,
        &a.name,
        format!(
            "Created {} ({}) on {} as {alias}_URL",
            a.name, a.kind, a.node
        ),
    );
    Ok((a, rel))
}

/// Gives `a` a standby on another node (the one with the fewest add-ons), points the apps'
/// URLs at both servers, and starts waiting for the standby to be in sync.
fn enable_ha(
    c: &Arc<Cluster>,
    a: &Addon,
) -> Result<(Addon, Option<crate::store::Release>), ApiError> {
    let node = addons::standby_node(&c.store(), a)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_node",
            "a standby needs a second node that is up (see `zeroku nodes`)",
        )
    })?;
    let min = c.cfg.addon_port_min;
    let rel = change(c, |s| {
        if s.set_standby(&a.name, Some(&node), min..=min.saturating_add(999))?
            .is_none()
        {
            return Ok(Err(()));
        }
        let Some(now) = s.addon(&a.name)? else {
            return Ok(Err(()));
        };
        let url = addons::url_of(s, &now).unwrap_or_default();
        let versions = s.set_addon_password(&a.name, &now.password, &url)?;
        Ok(Ok((now, versions)))
    })?;
    let Ok((now, versions)) = rel else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_port",
            "every add-on port is in use (1000 from addon_port_min)",
        ));
    };
    c.system_log(
        &a.app,
        &a.name,
        format!(
            "{}: a standby on {node}; {} once it is in sync",
            a.name,
            counts_on(a)
        ),
    );
    tokio::spawn(crate::failover::make_sync(c.clone(), a.name.clone()));
    let rel = match versions.iter().max() {
        Some(v) => c.store().release(&a.app, *v)?,
        None => None,
    };
    Ok((now, rel))
}

fn refused(app: &str, why: crate::store::Refused) -> ApiError {
    use crate::store::Refused as R;
    match why {
        R::AliasTaken { alias, addon } => ApiError::new(
            StatusCode::CONFLICT,
            "alias_taken",
            format!("{app} already has {alias}_URL from {addon}: choose another name with --as"),
        ),
        R::Attached { alias } => ApiError::new(
            StatusCode::CONFLICT,
            "attached",
            format!("it is already attached to {app} as {alias}_URL"),
        ),
        R::NoPort => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_port",
            "every add-on port is in use (1000 from addon_port_min)",
        ),
    }
}

fn destroy(
    c: &Arc<Cluster>,
    app: &str,
    name: &str,
    req: &Request<Incoming>,
) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    if a.app != app {
        return Err(ApiError::forbidden(format!(
            "{name} belongs to {}: destroy it from there (-a {})",
            a.app, a.app
        )));
    }
    let detach = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv == "detach=true" || kv == "detach=1")
    });
    let others: Vec<String> = c
        .store()
        .attachments(None, Some(name))?
        .into_iter()
        .filter(|t| t.app != app)
        .map(|t| t.app)
        .collect();
    if !others.is_empty() && !detach {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "attached",
            format!(
                "{name} is attached to {} too: detach it there first, or destroy with --detach",
                others.join(", ")
            ),
        ));
    }
    let shas = change(c, |s| s.destroy_addon(name))?;
    // The server stops with the next list; its data directory stays on the node until an
    // operator removes it (a mistaken destroy is not a lost database).
    backups::remove_files(c, &shas)?;
    c.system_log(app, name, format!("Destroyed {name}"));
    ok(json!({"destroyed": name, "detached": others}))
}

async fn attach(
    c: &Arc<Cluster>,
    caller: &Caller,
    app: &str,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    app_exists(c, app)?;
    let body: Attach = body_json(req).await?;
    let a = c.store().addon(&body.addon)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no add-on named {:?} (see `zeroku addons`)",
            body.addon
        ))
    })?;
    // Its credentials go to `app`: the caller must be able to manage the add-on's own app.
    if !caller.perms(c, &a.app)?.contains(&Perm::Manage) {
        return Err(ApiError::forbidden(format!(
            "attaching {} needs `manage` on {}, the app it belongs to",
            a.name, a.app
        )));
    }
    let kind = addons::kind_of(&a).map_err(ApiError::internal)?;
    let alias = body
        .alias
        .unwrap_or_else(|| kind.default_alias().to_string());
    check_alias(&alias)?;
    let url = addons::url_of(&c.store(), &a).map_err(ApiError::internal)?;
    let rel = match change(c, |s| s.attach(&a.name, app, &alias, &url))? {
        Ok(r) => r,
        Err(why) => return Err(refused(app, why)),
    };
    c.system_log(app, &a.name, format!("Attached {} as {alias}_URL", a.name));
    ok(
        json!({"addon": a.name, "app": app, "as": format!("{alias}_URL"), "release": rel.map(|r| r.version)}),
    )
}

fn detach(c: &Arc<Cluster>, app: &str, name: &str) -> Result<Reply, ApiError> {
    app_exists(c, app)?;
    let a = attached(c, app, name)?;
    if a.app == app {
        return Err(ApiError::forbidden(format!(
            "{name} belongs to {app}: destroy it instead (zeroku addons:destroy {name} -a {app})"
        )));
    }
    match change(c, |s| s.detach(name, app))? {
        Some(rel) => {
            c.system_log(app, name, format!("Detached {name}"));
            ok(json!({"addon": name, "app": app, "release": rel.map(|r| r.version)}))
        }
        None => Err(ApiError::not_found(format!(
            "{name} is not attached to {app}"
        ))),
    }
}

/// A new password for the apps: set on the server, then in every attached app's URL (a new
/// release each); the old one is refused from then on.
async fn rotate(c: &Arc<Cluster>, app: &str, name: &str) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    if a.app != app {
        return Err(ApiError::forbidden(format!(
            "{name} belongs to {}: rotate its credentials from there",
            a.app
        )));
    }
    let _busy = crate::failover::exclusive(&a.name).await;
    let a = attached(c, app, name)?;
    let kind = addons::kind_of(&a).map_err(ApiError::internal)?;
    let host = addons::host(&c.store(), &a)?;
    let password = new_secret()?;
    let service = zeroku_services::Addon {
        name: &a.name,
        port: a.port,
        password: &a.password,
        admin_password: &a.admin_password,
        memory_mb: a.memory_mb,
        follows: None,
    };
    // A standby that keeps a password of its own (Redis) first: if it does not answer,
    // nothing has changed.
    let mut servers = Vec::new();
    if a.ha() && kind.password_per_server() {
        let mut standby = service.clone();
        standby.port = a.standby_port;
        let host = addons::host(
            &c.store(),
            &Addon {
                node: a.standby_node.clone(),
                ..a.clone()
            },
        )?;
        servers.push((standby, host, "the standby"));
    }
    servers.push((service, host, "the server"));
    for (service, host, which) in servers {
        let (tool, input) = kind
            .rotate(&service, &host, &password)
            .map_err(|e| ApiError::invalid(e.to_string()))?;
        let said = backups::run_with_input(&tool, &input).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "addon_failed",
                format!("{which}: {e}"),
            )
        })?;
        if kind.rotate_failed(&said) {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "addon_failed",
                format!("{which} refused the new password: {}", said.trim()),
            ));
        }
    }
    let mut rotated = a.clone();
    rotated.password = password;
    let url = addons::url_of(&c.store(), &rotated).map_err(ApiError::internal)?;
    let releases = change(c, |s| {
        s.set_addon_password(&a.name, &rotated.password, &url)
    })?;
    c.system_log(app, name, format!("Rotated the credentials of {name}"));
    ok(json!({"addon": name, "releases": releases}))
}

/// Sets (a request) or removes (none) the add-on's daily backup.
async fn schedule(
    c: &Arc<Cluster>,
    app: &str,
    name: &str,
    req: Option<Request<Incoming>>,
) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    let set = match req {
        Some(req) => {
            let s: SetSchedule = body_json(req).await?;
            let at = crate::schedule::parse_at(&s.at).map_err(ApiError::invalid)?;
            if s.keep_daily + s.keep_weekly == 0 || s.keep_daily > 366 || s.keep_weekly > 520 {
                return Err(ApiError::invalid(
                    "keep at least one backup: --keep-daily 0-366, --keep-weekly 0-520, not both 0",
                ));
            }
            Some((at, s.keep_daily, s.keep_weekly))
        }
        None => None,
    };
    c.store().set_schedule(&a.name, set)?;
    c.schedules_changed.notify_one();
    let line = match set {
        Some((at, d, w)) => format!(
            "Backups of {name} scheduled daily at {:02}:{:02} UTC, keeping {d} daily and {w} weekly",
            at / 60,
            at % 60
        ),
        None => format!("Scheduled backups of {name} stopped"),
    };
    c.system_log(app, name, line.clone());
    ok(json!({"addon": name, "schedule": schedule_view(c, name)?, "said": line}))
}

fn schedule_view(c: &Cluster, name: &str) -> Result<Value, ApiError> {
    Ok(c.store()
        .schedules()?
        .into_iter()
        .find(|s| s.addon == name)
        .map_or(Value::Null, |s| {
            json!({
                "at": format!("{:02}:{:02} UTC", s.at_minute / 60, s.at_minute % 60),
                "keep_daily": s.keep_daily,
                "keep_weekly": s.keep_weekly,
            })
        }))
}

/// Starts a backup; it runs on after the answer (`GET …/backups/:id` follows it).
fn capture(c: &Arc<Cluster>, app: &str, name: &str) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    if c.store()
        .backups(&a.name)?
        .iter()
        .any(|b| b.state == "running")
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            format!("a backup of {name} is running already"),
        ));
    }
    let b = backups::start_capture(c, a, app, false)?;
    Ok(Reply::Json(StatusCode::ACCEPTED, backup_view(&b)))
}

async fn download(c: &Arc<Cluster>, app: &str, name: &str, id: &str) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    let b = find_backup(c, &a, id)?;
    let path = backups::backup_path(&c.data, &b).ok_or_else(|| {
        ApiError::invalid(format!(
            "{id} did not succeed: there is nothing to download"
        ))
    })?;
    file_reply(
        &path,
        &format!("{id}'s file is missing from the backup store"),
    )
    .await
}

/// Restores backup `id` of the add-on, or `<other add-on>::<id>` of another one whose data the
/// caller may read (`deploy` on an app it is attached to).
async fn restore(
    c: &Arc<Cluster>,
    caller: &Caller,
    app: &str,
    name: &str,
    id: &str,
    to: Option<&str>,
) -> Result<Reply, ApiError> {
    let a = attached(c, app, name)?;
    let b = match id.split_once("::") {
        None => find_backup(c, &a, id)?,
        Some((from, id)) => {
            let source = c.store().addon(from)?;
            let readable = match &source {
                Some(_) => {
                    let apps = c.store().attachments(None, Some(from))?;
                    let mut ok = false;
                    for t in apps {
                        ok |= caller.perms(c, &t.app)?.contains(&Perm::Deploy);
                    }
                    ok
                }
                None => false,
            };
            match source {
                Some(s) if readable => find_backup(c, &s, id)?,
                _ => {
                    return Err(ApiError::not_found(format!(
                        "no add-on {from:?} whose backups you may read"
                    )))
                }
            }
        }
    };
    let data = c.data.clone();
    let (a2, b2) = (a.clone(), b.clone());
    let path = tokio::task::spawn_blocking(move || backups::verify(&data, &a2, &b2))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::invalid)?;
    // --to NEW: into a new add-on of the same kind, attached as NEW (a fork).
    let target = match to {
        Some(alias) => {
            let kind = addons::kind_of(&a).map_err(ApiError::internal)?;
            let (fork, _) = new_addon(c, app, kind, alias.trim_end_matches("_URL"))?;
            backups::wait_up(c, &fork)
                .await
                .map_err(|e| ApiError::new(StatusCode::GATEWAY_TIMEOUT, "not_up", e))?;
            fork
        }
        None => a,
    };
    let host = addons::host(&c.store(), &target)?;
    backups::restore(&target, &host, &path, &c.cfg.api)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "restore_failed",
                format!("{e} (the database is as it was)"),
            )
        })?;
    c.system_log(
        app,
        &target.name,
        format!("Restored {id} into {}", target.name),
    );
    ok(json!({"restored": b.id(), "addon": target.name}))
}
