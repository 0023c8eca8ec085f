//! The operator HTTP API: JSON under `/v1`, bearer tokens.
//!
//! Every route is in [`auth::ROUTES`] with what its caller needs (a user's
//! permission on the app, an admin, a node's own token...), checked before
//! the route runs; routing is then a `match` on (method, path segments).
//! Every handler returns `Result<Json, ApiError>` and errors become JSON in
//! one place. Every change is written to the audit log with who made it.
//!
//! - [`auth`]: callers, the route table, permissions;
//! - [`join`]: join tokens, nodes and frontends joining and coming back;
//! - [`people`]: users, app access, the audit log;
//! - [`checks`]: validation of settings, names, scales and config;
//! - [`files`]: bodies streamed to disk, slugs, files streamed back;
//! - [`runs`]: one-off terminals.
//!
//! This is the top layer of the master: it may use every module below it
//! (store, scheduler, cluster, builds, git, keys), and none of them uses it.

mod addons;
pub mod auth;
mod certs;
mod checks;
mod files;
pub(crate) mod join;
mod people;
mod runs;
mod services;
mod usage;

use auth::Caller;
use checks::*;
use files::*;
use runs::*;

use crate::builds::Builds;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::Role;
use crate::terminal;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use zeroku_client::{v1, Body};
use zeroku_conf::names;

/// What the API serves: the cluster's core and the build service.
pub struct Master {
    pub cluster: Arc<Cluster>,
    pub builds: Arc<Builds>,
    pub drains: crate::drains::Drains,
}

fn full(status: StatusCode, content_type: &str, bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(bytes))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    full(status, "application/json", body)
}

pub async fn handle(m: Arc<Master>, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path().starts_with("/git/") {
        return crate::git::handle(m.cluster.clone(), m.builds.clone(), req).await;
    }
    let p = req.uri().path();
    if p == "/ui" || p.starts_with("/ui/") {
        return crate::ui::handle(&m, req).await;
    }
    handle_v1(m, req).await
}

/// A request for the API itself (`/v1/...`): routed, answered as JSON or streamed.
pub async fn handle_v1(m: Arc<Master>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match route(&m, req).await {
        Ok(Reply::Json(status, v)) => json_response(status, &v),
        Ok(Reply::Raw(r)) => r,
        Err(e) => {
            tracing::debug!(%method, %path, status = %e.status, message = %e.message, "api error");
            let body = v1::ErrorBody {
                error: v1::ErrorDetail {
                    code: e.code.to_string(),
                    message: e.message,
                },
            };
            json_response(e.status, &json!(body))
        }
    }
}

enum Reply {
    Json(StatusCode, Value),
    Raw(Response<Body>),
}

fn ok(v: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json(StatusCode::OK, v))
}

/// The token a push over SSH runs its build with: the SSH key's user's own (a short-lived one,
/// for an hour), once they are found to have `deploy` on the app (`view` to fetch). A key from
/// before users (no owner) pushes as the caller, the master's own git token.
fn push_token(
    c: &Cluster,
    caller: &Caller,
    app: &str,
    key: Option<&str>,
    write: bool,
) -> Result<String, ApiError> {
    let Some(key) = key else {
        return Ok(caller.token.clone());
    };
    let owner = c
        .store()
        .key_owner(key)?
        .ok_or_else(|| ApiError::forbidden(format!("no SSH key named {key:?}")))?;
    if owner.is_empty() || !caller.admin {
        return Ok(caller.token.clone());
    }
    let need = if write {
        crate::store::Perm::Deploy
    } else {
        crate::store::Perm::View
    };
    let admin = c.store().user(&owner)?.is_some_and(|u| u.admin);
    if !admin && !c.store().perms(app, &owner)?.contains(&need) {
        return Err(ApiError::forbidden(format!(
            "user {owner} may not {} app {app:?} (it needs `{}`)",
            if write { "push to" } else { "fetch" },
            need.name()
        )));
    }
    let token = new_token()?;
    c.store()
        .add_expiring_token(&token, Role::User, Some(&owner), crate::store::now() + 3600)?;
    Ok(token)
}

/// A node token may act for its own node only.
fn own_node(caller: &Caller, node: &str) -> Result<(), ApiError> {
    if caller.admin || (caller.role == Role::Node && caller.node.as_deref() == Some(node)) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "this token may not act for node {node}"
    )))
}

/// Who may download slug `sha`: a node that runs an instance of it, a frontend whose `dir`
/// routes serve it, a user who may deploy an app that uses it, an admin. A slug holds an app's
/// code: nobody else gets it.
fn may_download(c: &Cluster, caller: &Caller, sha: &str) -> Result<(), ApiError> {
    let ok = caller.admin
        || match (caller.role, caller.node.as_deref()) {
            (Role::Node, Some(n)) => c.list(n).instances.iter().any(|i| i.slug.sha256 == sha),
            (Role::Frontend, _) => c
                .route_table()
                .apps
                .iter()
                .any(|a| a.slug.as_ref().is_some_and(|s| s.sha256 == sha)),
            (Role::User, Some(u)) => {
                let s = c.store();
                let apps = s.apps_of(u)?;
                let mut found = false;
                for app in apps {
                    if s.perms(&app, u)?.contains(&crate::store::Perm::Deploy)
                        && s.releases(&app)?.iter().any(|r| r.slug_sha256 == sha)
                    {
                        found = true;
                        break;
                    }
                }
                found
            }
            _ => false,
        };
    if ok {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "this token may not download slug {sha}: it belongs to no app this caller runs, serves or may deploy"
        )))
    }
}

async fn body_json<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, ApiError> {
    let bytes = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not the expected JSON: {e}")))
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runs a store change and the re-plan it causes. They do blocking SQLite
/// and ZMQ work, so the reactor thread hands its other tasks off meanwhile
/// (the master runs on tokio's multi-thread runtime).
pub(crate) fn change<T>(
    c: &Cluster,
    f: impl FnOnce(&mut crate::store::Store) -> Result<T, crate::store::StoreError>,
) -> Result<T, crate::store::StoreError> {
    let out = tokio::task::block_in_place(|| c.change(f))?;
    c.refresh_routes();
    Ok(out)
}

/// An answer streamed as the lines `rx` receives (a build's output, a
/// restart's progress), until its sender is dropped.
fn line_stream(rx: tokio::sync::mpsc::UnboundedReceiver<String>) -> Response<Body> {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|l| (Ok::<_, std::io::Error>(Frame::data(Bytes::from(l))), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Slug garbage collection after a deploy, off the request path.
fn spawn_gc(cluster: &Arc<Cluster>) {
    let c = cluster.clone();
    tokio::task::spawn_blocking(move || c.gc_slugs());
}

fn app_exists(cluster: &Cluster, app: &str) -> Result<crate::store::App, ApiError> {
    cluster
        .store()
        .app(app)?
        .ok_or_else(|| ApiError::not_found(format!("no app named {app:?} (see `zeroku apps`)")))
}

async fn route(m: &Master, req: Request<Incoming>) -> Result<Reply, ApiError> {
    let cluster = &m.cluster;
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    if segs.first() != Some(&"v1") {
        return Err(ApiError::not_found(format!(
            "no such API path {path} (the API is under /v1)"
        )));
    }
    let caller = auth::auth(cluster, &req)?;
    let c = cluster.as_ref();
    let route = auth::find(method.as_str(), &segs)
        .ok_or_else(|| ApiError::not_found(format!("no API route {method} {path}")))?;
    let app = (route.path.starts_with("/v1/apps/:app"))
        .then(|| segs.get(2).copied())
        .flatten();
    caller.allow(c, route, app)?;
    let reply = dispatch(m, &caller, req, &method, &segs).await?;
    if method != Method::GET {
        let detail = if path == route.path {
            String::new()
        } else {
            path.clone()
        };
        let entry = format!("{} {}", method, route.path);
        if let Err(e) = c
            .store()
            .record(&caller.actor(), app.unwrap_or(""), &entry, &detail)
        {
            tracing::warn!(error = %e, "cannot write the audit log");
        }
    }
    Ok(reply)
}

/// Runs the route `caller` may use (checked by [`route`]).
async fn dispatch(
    m: &Master,
    caller: &Caller,
    req: Request<Incoming>,
    method: &Method,
    segs: &[&str],
) -> Result<Reply, ApiError> {
    let (cluster, b) = (&m.cluster, &m.builds);
    let c = cluster.as_ref();
    let path = req.uri().path().to_string();
    if segs.get(1) == Some(&"addons")
        || segs
            .get(3)
            .is_some_and(|s| *s == "addons" || *s == "attachments")
    {
        if let Some(reply) = addons::dispatch(m, caller, req, method, &segs[1..]).await {
            return reply;
        }
        return Err(ApiError::not_found(format!("no API route {method} {path}")));
    }
    match (method, &segs[1..]) {
        (&Method::GET, ["status"]) => ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "dropped_messages": c.dropped.load(Ordering::Relaxed),
            "refused_peers": c.refused.load(Ordering::Relaxed),
            // The pace in force: longer than configured on a cluster past its heartbeat budget.
            "heartbeat_ms": c.pace().heartbeat.as_millis() as u64,
            "dead_after_ms": c.pace().dead_after.as_millis() as u64,
        })),
        (&Method::GET, ["apps"]) => {
            let apps = c.store().apps()?;
            if caller.admin {
                return ok(json!(apps));
            }
            let mine = c.store().apps_of(caller.user().unwrap_or_default())?;
            let apps: Vec<_> = apps
                .into_iter()
                .filter(|a| mine.contains(&a.name))
                .collect();
            ok(json!(apps))
        }
        (&Method::POST, ["apps"]) => {
            #[derive(Deserialize)]
            struct New {
                name: String,
                /// App settings from the start (`runtime`, `stack`, ...).
                #[serde(default)]
                settings: BTreeMap<String, String>,
            }
            let n: New = body_json(req).await?;
            names::app(&n.name).map_err(|e| ApiError::invalid(e.to_string()))?;
            check_settings(c, None, &n.settings)?;
            let creator = caller.user().map(str::to_string);
            match change(c, |s| {
                let app = s.create_app(&n.name)?;
                if app.is_some() {
                    for (k, v) in &n.settings {
                        s.set_setting(&n.name, k, v)?;
                    }
                    // Whoever creates an app may do everything with it.
                    if let Some(u) = &creator {
                        s.set_access(&n.name, u, &crate::store::Perm::ALL)?;
                    }
                }
                Ok(app)
            })? {
                Some(app) => Ok(Reply::Json(StatusCode::CREATED, json!(app))),
                None => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("app {:?} already exists", n.name),
                )),
            }
        }
        (&Method::GET, ["apps", app]) => {
            let mut v = crate::views::app_info(c, &app_exists(c, app)?)?;
            // The git remote, on the address the caller reached us at.
            let host = req
                .headers()
                .get(hyper::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(String::from)
                .unwrap_or_else(|| b.api_addr.to_string());
            v["git_url"] = json!(format!("http://{host}/git/{app}.git"));
            v["web_url"] = json!(c.cfg.app_url.replace("{app}", app));
            ok(v)
        }
        (&Method::POST, ["apps", app, "builds"]) => {
            app_exists(c, app)?;
            let builds = b.clone();
            let commit = query(&req)
                .get("commit")
                .filter(|v| {
                    v.len() >= 7 && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_hexdigit())
                })
                .cloned();
            let src = builds.incoming();
            let mut body = req.into_body();
            let limit = c.cfg.build_max_source_mb << 20;
            receive_file(&mut body, &src, limit, "source").await?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            let origin = crate::builds::Origin { commit };
            tokio::spawn(builds.run(cluster.clone(), app.to_string(), src, origin, tx));
            Ok(Reply::Raw(line_stream(rx)))
        }
        (&Method::POST, ["apps", app, "runs"]) => {
            // A one-off instance of the current release (zeroku run).
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct Run {
                command: String,
                /// Run on a terminal (the CLI attaches to
                /// `runs/<n>/terminal`).
                #[serde(default)]
                tty: Option<zeroku_conf::Tty>,
            }
            let r: Run = body_json(req).await?;
            if let Some(t) = &r.tty {
                if t.cols == 0 || t.rows == 0 || !t.term.chars().all(|c| c.is_ascii_graphic()) {
                    return Err(ApiError::invalid(
                        "a terminal needs a size of at least 1x1 and a plain $TERM name",
                    ));
                }
            }
            if r.command.trim().is_empty() || r.command.contains('\n') {
                return Err(ApiError::invalid("give one command line to run"));
            }
            if c.store().current_release(app)?.is_none() {
                return Err(ApiError::invalid(format!(
                    "app {app} has no release to run from: deploy it first"
                )));
            }
            // The up node with the least memory placed on it (for a
            // docker app, one with docker).
            let docker_app = c
                .store()
                .settings()?
                .iter()
                .any(|(a, k, v)| a == app && k == "runtime" && v == "docker");
            let docker_nodes = c.docker_nodes();
            let node = {
                let s = c.store();
                let mut used: std::collections::HashMap<String, u64> = Default::default();
                for p in s.placements()? {
                    if let Some(n) = p.node {
                        *used.entry(n).or_default() += p.memory_mb;
                    }
                }
                s.nodes()?
                    .into_iter()
                    .filter(|n| n.state == "up" && !n.draining)
                    .filter(|n| !docker_app || docker_nodes.contains(&n.name))
                    .min_by_key(|n| used.get(&n.name).copied().unwrap_or(0))
                    .map(|n| n.name)
            }
            .ok_or_else(|| ApiError::invalid("no node is up to run it on (see `zeroku nodes`)"))?;
            let o = change(c, |s| s.create_oneoff(app, r.command.trim(), &node, r.tty))?;
            Ok(Reply::Json(StatusCode::CREATED, json!(o)))
        }
        (&Method::GET, ["apps", app, "runs", n]) => {
            app_exists(c, app)?;
            let n: u32 = n
                .parse()
                .map_err(|_| ApiError::invalid(format!("{n:?} is not a run number")))?;
            let o = c.store().oneoff(app, n)?.ok_or_else(|| {
                ApiError::not_found(format!("app {app} has no one-off number {n}"))
            })?;
            let live = c
                .live()
                .get(&o.node)
                .and_then(|l| l.heartbeat.as_ref())
                .and_then(|h| h.instances.iter().find(|i| i.id == o.id).cloned());
            let state = match (&o.exit, &live) {
                (Some(_), _) => "done".to_string(),
                (None, Some(s)) if s.state == zeroku_conf::InstanceState::Up => "running".into(),
                (None, Some(s)) => s.state.to_string(),
                (None, None) => "starting".into(),
            };
            let exit = o.exit.clone().or_else(|| live.and_then(|s| s.last_exit));
            ok(json!({
                "id": o.id, "node": o.node, "command": o.command, "state": state,
                "exit": exit, "exit_code": o.exit.as_deref().map(exit_code),
            }))
        }
        (&Method::GET, ["apps", app, "runs", n, "terminal"]) => {
            // The CLI's end of an interactive one-off's terminal.
            app_exists(c, app)?;
            let o = c
                .store()
                .oneoff(app, n.parse().unwrap_or(0))?
                .ok_or_else(|| ApiError::not_found(format!("app {app} has no one-off {n:?}")))?;
            terminal_upgrade(cluster, req, o, terminal::Side::Client)
        }
        (&Method::GET, ["nodes", node, "runs", id, "terminal"]) => {
            // The worker's end: only the node the one-off runs on.
            own_node(caller, node)?;
            let o = id
                .rsplit_once(".run.")
                .and_then(|(app, n)| c.store().oneoff(app, n.parse().ok()?).transpose())
                .transpose()?
                .filter(|o| o.node == *node)
                .ok_or_else(|| {
                    ApiError::not_found(format!("node {node} runs no one-off {id:?}"))
                })?;
            terminal_upgrade(cluster, req, o, terminal::Side::Node)
        }
        (&Method::POST, ["apps", app, "repo"]) => {
            // The app's git repository, created if needed (git over ssh),
            // and a token to push with as the SSH key's user.
            app_exists(c, app)?;
            #[derive(Deserialize, Default)]
            struct Repo {
                /// The SSH key the push came with (the forced command names it).
                #[serde(default)]
                key: Option<String>,
                /// A push (receive-pack) rather than a fetch.
                #[serde(default)]
                write: bool,
            }
            let r: Repo = body_json(req).await.unwrap_or_default();
            let token = push_token(c, caller, app, r.key.as_deref(), r.write)?;
            let dir = crate::git::repo_dir(&b.data, app);
            crate::git::ensure_repo(&dir, c.cfg.build_max_source_mb << 20)
                .await
                .map_err(ApiError::internal)?;
            ok(json!({"path": dir, "token": token}))
        }
        (&Method::GET, ["keys"]) => {
            let mine = caller.user().unwrap_or_default();
            let keys: Vec<Value> = c
                .store()
                .key_list()?
                .into_iter()
                .filter(|(_, _, owner)| caller.admin || owner == mine)
                .map(|(name, fp, owner)| json!({"name": name, "fingerprint": fp, "user": owner}))
                .collect();
            ok(json!(keys))
        }
        (&Method::POST, ["keys"]) => {
            #[derive(Deserialize)]
            struct K {
                name: String,
                key: String,
                /// Whose key (admins only; others add their own).
                #[serde(default)]
                user: Option<String>,
            }
            let k: K = body_json(req).await?;
            names::node(&k.name).map_err(|e| ApiError::invalid(format!("key name: {e}")))?;
            let (key, fp) = crate::keys::parse(&k.key).map_err(ApiError::invalid)?;
            let owner = match (&k.user, caller.admin) {
                (Some(u), true) => {
                    if c.store().user(u)?.is_none() {
                        return Err(ApiError::not_found(format!("no user named {u:?}")));
                    }
                    u.clone()
                }
                (Some(_), false) => {
                    return Err(ApiError::forbidden(
                        "only an admin may add another user's key",
                    ))
                }
                (None, _) => caller.user().unwrap_or_default().to_string(),
            };
            if !c.store().add_key(&k.name, &key, &fp, &owner)? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("a key named {:?} or with fingerprint {fp} is already there (see `zeroku keys`)", k.name),
                ));
            }
            let api = b.api_addr.to_string();
            let keys = c.store().keys()?;
            let file = crate::keys::write(&b.data, &api, &keys).map_err(ApiError::internal)?;
            let exe = crate::exe::zeroku_exe().map_err(ApiError::internal)?;
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({
                    "name": k.name,
                    "fingerprint": fp,
                    "user": owner,
                    "authorized_keys_file": file,
                    "authorized_keys_line": crate::keys::line(&exe, &api, &b.data, &k.name, &key),
                }),
            ))
        }
        (&Method::DELETE, ["keys", name]) => {
            let owner = c.store().key_owner(name)?;
            let mine = owner.as_deref() == caller.user();
            if owner.is_none() || !(caller.admin || mine) {
                return Err(ApiError::not_found(format!(
                    "no key named {name:?} (see `zeroku keys`)"
                )));
            }
            c.store().remove_key(name)?;
            let keys = c.store().keys()?;
            crate::keys::write(&b.data, &b.api_addr.to_string(), &keys)
                .map_err(ApiError::internal)?;
            ok(json!({"removed": name}))
        }
        (&Method::GET, ["apps", app, "builds", "output"]) => {
            app_exists(c, app)?;
            let out = b.last_output(app).ok_or_else(|| {
                ApiError::not_found(format!(
                    "app {app} has not been built yet (git push, or zeroku deploy)"
                ))
            })?;
            ok(json!({"output": out}))
        }
        (&Method::POST, ["apps", app, "rename"]) => {
            // Dokku's apps:rename: the app's instances are replaced by ones
            // under the new name (new ids); its data, config, releases,
            // domains, access and uid stay.
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Rename {
                name: String,
            }
            let r: Rename = body_json(req).await?;
            let new = r.name.as_str();
            names::app(new).map_err(|e| ApiError::invalid(e.to_string()))?;
            app_exists(c, app)?;
            if let Some(o) = c
                .store()
                .active_oneoffs()?
                .into_iter()
                .find(|o| o.app == *app)
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!(
                        "{} is running: rename {app} once its one-offs are done (or ps:stop them)",
                        o.id
                    ),
                ));
            }
            // Names under the base domain that were the old name's go with it.
            let dropped = checks::name_domains(c, app, &c.store().domains()?);
            let mut taken = false;
            b.rename(app, new, || {
                change(c, |s| {
                    taken = !s.rename_app(app, new)?;
                    if !taken {
                        for d in &dropped {
                            s.remove_domain(new, d)?;
                        }
                    }
                    Ok(())
                })
            })
            .map_err(|e| ApiError::new(StatusCode::CONFLICT, "conflict", e))?;
            if taken {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("app {new:?} already exists"),
                ));
            }
            c.logs.rename(app, new);
            m.drains.sync(&m.cluster);
            ok(json!({
                "renamed": app,
                "name": new,
                "url": c.cfg.app_url.replace("{app}", new),
                "domains_removed": dropped,
            }))
        }
        (&Method::DELETE, ["apps", app]) => {
            app_exists(c, app)?;
            let owned: Vec<String> = c
                .store()
                .addons()?
                .into_iter()
                .filter(|a| a.app == **app)
                .map(|a| a.name)
                .collect();
            if !owned.is_empty() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "has_addons",
                    format!(
                        "{app} has add-ons with data: destroy them first (zeroku addons:destroy {} -a {app})",
                        owned.join(" ")
                    ),
                ));
            }
            change(c, |s| s.delete_app(app))?;
            c.logs.forget(app);
            m.drains.sync(&m.cluster);
            b.forget(app);
            let _ = std::fs::remove_dir_all(crate::git::repo_dir(&b.data, app));
            spawn_gc(cluster);
            ok(json!({"deleted": app}))
        }
        (&Method::GET, ["apps", app, "config"]) => {
            app_exists(c, app)?;
            ok(json!(c.store().config(app)?))
        }
        (&Method::PATCH, ["apps", app, "config"]) => {
            app_exists(c, app)?;
            let asked: BTreeMap<String, Option<String>> = body_json(req).await?;
            for k in asked.keys() {
                check_config_key(k)?;
            }
            // Only what changes makes a release: unsetting a variable that is not set, or
            // setting one to the value it has, changes nothing.
            let current = c.store().config(app)?;
            let not_set: Vec<&String> = asked
                .iter()
                .filter(|(k, v)| v.is_none() && !current.contains_key(*k))
                .map(|(k, _)| k)
                .collect();
            let changes: BTreeMap<String, Option<String>> = asked
                .iter()
                .filter(|(k, v)| current.get(*k) != v.as_ref())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if changes.is_empty() {
                return ok(
                    json!({"config": current, "release": null, "unchanged": true, "not_set": not_set}),
                );
            }
            // What the app's processes would be started with must be startable.
            let mut after = current.clone();
            for (k, v) in &changes {
                match v {
                    Some(v) => after.insert(k.clone(), v.clone()),
                    None => after.remove(k),
                };
            }
            zeroku_conf::limits::config(&after).map_err(ApiError::invalid)?;
            let desc = describe_config(&changes);
            let rel = change(c, |s| s.set_config(app, &changes, &desc))?;
            ok(
                json!({"config": c.store().config(app)?, "release": rel.map(|r| r.version), "not_set": not_set}),
            )
        }
        (&Method::GET, ["apps", app, "releases"]) => {
            app_exists(c, app)?;
            ok(json!(c.store().releases(app)?))
        }
        (&Method::POST, ["apps", app, "releases"]) => {
            app_exists(c, app)?;
            let n: NewRelease = body_json(req).await?;
            if n.process_types.is_empty() {
                return Err(ApiError::invalid(
                    "a release needs at least one process type (is the Procfile empty?)",
                ));
            }
            zeroku_conf::limits::process_types(n.process_types.len()).map_err(ApiError::invalid)?;
            for (t, cmd) in &n.process_types {
                names::process_type(t).map_err(|e| ApiError::invalid(e.to_string()))?;
                if cmd.trim().is_empty() {
                    return Err(ApiError::invalid(format!(
                        "process type {t:?} has no command"
                    )));
                }
                zeroku_conf::limits::command(t, cmd).map_err(ApiError::invalid)?;
            }
            if !c
                .slugs
                .contains(&n.slug_sha256)
                .map_err(|e| ApiError::invalid(e.to_string()))?
            {
                return Err(ApiError::invalid(format!(
                    "slug {} is not in the slug store: upload it first (PUT /v1/slugs/<sha256>)",
                    n.slug_sha256
                )));
            }
            let size = c
                .slugs
                .path(&n.slug_sha256)
                .ok()
                .and_then(|p| std::fs::metadata(p).ok())
                .map_or(0, |m| m.len());
            let desc = n.description.unwrap_or_else(|| "Deploy".into());
            let mem = c.cfg.default_memory_mb;
            let rel = change(c, |s| {
                let new = crate::store::NewRelease {
                    slug_sha256: &n.slug_sha256,
                    slug_size: size,
                    process_types: &n.process_types,
                    description: &desc,
                    build: &Default::default(),
                };
                s.create_release(app, new, mem)
            })?;
            spawn_gc(cluster);
            Ok(Reply::Json(StatusCode::CREATED, json!(rel)))
        }
        (&Method::POST, ["apps", app, "rollback"]) => {
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct Rb {
                version: u32,
            }
            let rb: Rb = body_json(req).await?;
            let target = c.store().release(app, rb.version)?.ok_or_else(|| {
                ApiError::not_found(format!(
                    "app {app} has no release v{} (see `zeroku releases`)",
                    rb.version
                ))
            })?;
            if !c.slugs.contains(&target.slug_sha256).unwrap_or(false) {
                return Err(ApiError::invalid(format!(
                    "the slug of v{} was garbage-collected (only the newest {} releases keep theirs); deploy it again",
                    rb.version, c.cfg.keep_releases
                )));
            }
            let rel = change(c, |s| s.rollback(app, &target))?;
            Ok(Reply::Json(StatusCode::CREATED, json!(rel)))
        }
        (&Method::GET, ["apps", app, "formation"]) => {
            app_exists(c, app)?;
            ok(json!(c.store().formation(app)?))
        }
        (&Method::PATCH, ["apps", app, "formation"]) => {
            app_exists(c, app)?;
            let ups: Vec<Scale> = body_json(req).await?;
            let rows = check_scale(c, app, ups)?;
            change(c, |s| s.set_formation(&rows))?;
            ok(json!(c.store().formation(app)?))
        }
        (&Method::GET, ["apps", app, "ps"]) => {
            app_exists(c, app)?;
            crate::views::ps(c, app).map(ok)?
        }
        (&Method::GET, ["apps", app, "logs"]) => {
            app_exists(c, app)?;
            let q = query(&req);
            // addon=NAME: the log of an add-on attached to the app.
            let owner = match q.get("addon") {
                Some(name) => addons::attached(c, app, name)?.name,
                None => app.to_string(),
            };
            let app = &owner.as_str();
            let after = q.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
            let lines = q.get("lines").and_then(|v| v.parse().ok()).unwrap_or(100);
            // ps=web (a process type) or ps=web.2 (an instance); source=app|zeroku.
            let ps = q.get("ps").cloned().unwrap_or_default();
            let source = q.get("source").cloned().unwrap_or_default();
            if !matches!(source.as_str(), "" | "app" | "zeroku") {
                return Err(ApiError::invalid(format!(
                    "source is app (the app's own output) or zeroku (deploys, restarts, crashes), not {source:?}"
                )));
            }
            let keep = |l: &zeroku_conf::LogLine| {
                let local = l
                    .instance
                    .strip_prefix(&format!("{app}."))
                    .unwrap_or(&l.instance);
                let ps_ok =
                    ps.is_empty() || local == ps || local.split('.').next() == Some(ps.as_str());
                let system = l.stream == zeroku_conf::Stream::System;
                let source_ok = match source.as_str() {
                    "app" => !system,
                    "zeroku" => system,
                    _ => true,
                };
                ps_ok && source_ok
            };
            let (lines, next) = c.logs.read_where(app, after, lines, keep);
            let lines: Vec<Value> = lines
                .into_iter()
                .map(|(seq, l)| json!({"seq": seq, "ts_ms": l.ts_ms, "instance": l.instance, "release": l.release, "stream": l.stream, "line": l.line}))
                .collect();
            ok(json!({"lines": lines, "next": next}))
        }
        (&Method::GET, ["nodes"]) => crate::views::nodes(c).map(ok)?,
        (&Method::POST, ["nodes", "join-token"]) => {
            let r: v1::NewJoinToken = body_json(req).await.unwrap_or_default();
            join::join_token(c, r).map(ok)?
        }
        (&Method::POST, ["nodes", "register"]) => {
            let r: v1::RegisterNode = body_json(req).await?;
            join::register_node(c, caller, r).map(ok)?
        }
        (&Method::POST, ["nodes", node, "hello"]) => {
            let r: v1::RegisterNode = body_json(req).await?;
            join::node_hello(c, caller, node, r).map(ok)?
        }
        (&Method::POST, ["frontends", "register"]) => {
            let r: v1::RegisterFrontend = body_json(req).await?;
            join::register_frontend(c, caller, r).map(ok)?
        }
        (&Method::POST, ["frontends", name, "hello"]) => {
            let r: v1::RegisterFrontend = body_json(req).await?;
            join::frontend_hello(c, caller, name, r).map(ok)?
        }
        (&Method::GET, ["routes"]) => ok(json!(c.route_table())),
        (&Method::GET, ["services"]) => services::list(c, caller, &req).await,
        (&Method::GET, ["frontends", name, "certs", sha]) => {
            certs::for_frontend(c, caller, name, sha)
        }
        (&Method::GET, ["apps", app, "certs"]) => {
            app_exists(c, app)?;
            certs::list(c, app)
        }
        (&Method::POST, ["apps", app, "certs"]) => {
            app_exists(c, app)?;
            certs::add(c, app, req).await
        }
        (&Method::DELETE, ["apps", app, "certs", sha]) => {
            app_exists(c, app)?;
            certs::remove(c, app, sha)
        }
        (&Method::POST, ["frontends", name, "traffic"]) => {
            usage::traffic(c, caller, name, req).await
        }
        (&Method::GET, ["apps", app, "metrics"]) => {
            app_exists(c, app)?;
            usage::app(c, app, &req)
        }
        (&Method::GET, ["apps", app, "alerts"]) => {
            app_exists(c, app)?;
            usage::list_alerts(c, caller, app)
        }
        (&Method::POST, ["apps", app, "alerts"]) => {
            app_exists(c, app)?;
            usage::add_alert(c, app, req).await
        }
        (&Method::DELETE, ["apps", app, "alerts", id]) => {
            app_exists(c, app)?;
            usage::remove_alert(c, app, id)
        }
        (&Method::GET, ["apps", app, "settings"]) => {
            app_exists(c, app)?;
            let mine: BTreeMap<String, String> = c
                .store()
                .settings()?
                .into_iter()
                .filter(|(a, _, _)| a == app)
                .map(|(_, k, v)| (k, v))
                .collect();
            ok(json!(mine))
        }
        (&Method::PATCH, ["apps", app, "settings"]) => {
            app_exists(c, app)?;
            let changes: BTreeMap<String, String> = body_json(req).await?;
            check_settings(c, Some(app), &changes)?;
            let before: BTreeMap<String, String> = c
                .store()
                .settings()?
                .into_iter()
                .filter(|(a, _, _)| a == app)
                .map(|(_, k, v)| (k, v))
                .collect();
            let changed: BTreeMap<&String, &String> = changes
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .collect();
            let runs_differently = ["runtime", "stack", "cpu"]
                .iter()
                .any(|k| changed.keys().any(|c| c.as_str() == *k));
            let desc = format!(
                "Set {}",
                changed
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            // What workers do without the master changed: the same specs, told again.
            if changed.keys().any(|k| k.as_str() == "stop_when_lost_ms") {
                c.invalidate_lists();
            }
            // How instances run changed: a new release, rolled out like a deploy (new
            // instances up first; the old ones stay if the new never come up).
            let release = change(c, |s| {
                for (k, v) in &changed {
                    s.set_setting(app, k, v)?;
                }
                if runs_differently {
                    s.rerelease(app, &desc)
                } else {
                    Ok(None)
                }
            })?;
            c.refresh_routes();
            // `certs:auto` (again): look at the app's certificate now, with the setting stored.
            if changes.get("certs_auto").is_some_and(|v| v == "on") {
                c.acme_wake(app);
            }
            ok(json!({
                "settings": changes,
                "changed": changed.keys().collect::<Vec<_>>(),
                "release": release.map(|r| r.version),
            }))
        }
        (&Method::GET, ["apps", app, "routes"]) => {
            app_exists(c, app)?;
            let mine: Vec<_> = c
                .store()
                .routes()?
                .into_iter()
                .filter(|(a, _)| a == app)
                .map(|(_, r)| r)
                .collect();
            ok(json!(mine))
        }
        (&Method::POST, ["apps", app, "routes"]) => {
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct R {
                prefix: String,
                backend: String,
            }
            let r: R = body_json(req).await?;
            zeroku_conf::check_prefix(&r.prefix).map_err(ApiError::invalid)?;
            let backend: zeroku_conf::Backend = r.backend.parse().map_err(ApiError::invalid)?;
            c.store().set_route(app, &r.prefix, &backend)?;
            c.refresh_routes();
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"prefix": r.prefix, "backend": backend}),
            ))
        }
        (&Method::DELETE, ["apps", app, "routes", rest @ ..]) => {
            app_exists(c, app)?;
            let prefix = format!("/{}", rest.join("/"));
            let prefix = if prefix == "/" {
                prefix
            } else {
                prefix.trim_end_matches('/').to_string()
            };
            if !c.store().remove_route(app, &prefix)? {
                return Err(ApiError::not_found(format!(
                    "app {app} has no route {prefix}"
                )));
            }
            c.refresh_routes();
            ok(json!({"removed": prefix}))
        }
        (&Method::GET, ["apps", app, "drains"]) => {
            app_exists(c, app)?;
            let mine: Vec<_> = c
                .store()
                .drains()?
                .into_iter()
                .filter(|d| d.app == *app)
                .collect();
            ok(json!(mine))
        }
        (&Method::POST, ["apps", app, "drains"]) => {
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct D {
                url: String,
            }
            let d: D = body_json(req).await?;
            let url = d.url.trim().to_string();
            crate::drains::parse(&url).map_err(ApiError::bad_request)?;
            let token = format!("d.{}", &new_token()?[..32]);
            if !c.store().add_drain(app, &url, &token)? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("app {app} has drain {url} already"),
                ));
            }
            m.drains.sync(&m.cluster);
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"app": app, "url": url, "token": token}),
            ))
        }
        (&Method::DELETE, ["apps", app, "drains"]) => {
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct D {
                url: String,
            }
            let d: D = body_json(req).await?;
            if !c.store().remove_drain(app, d.url.trim())? {
                return Err(ApiError::not_found(format!(
                    "app {app} has no drain {} (see `zeroku drains -a {app}`)",
                    d.url.trim()
                )));
            }
            m.drains.sync(&m.cluster);
            ok(json!({"app": app, "removed": d.url.trim()}))
        }
        (&Method::GET, ["apps", app, "domains"]) => {
            app_exists(c, app)?;
            let mine: Vec<String> = c
                .store()
                .domains()?
                .into_iter()
                .filter(|(_, a)| a == app)
                .map(|(d, _)| d)
                .collect();
            ok(json!(mine))
        }
        (&Method::POST, ["apps", app, "domains"]) => {
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct D {
                domain: String,
            }
            let d: D = body_json(req).await?;
            let domain = d.domain.trim().trim_end_matches('.').to_ascii_lowercase();
            check_domain(&domain)?;
            check_domain_owner(c, app, &domain)?;
            if let Some(other) = c.store().add_domain(app, &domain)? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("domain {domain} already belongs to app {other}"),
                ));
            }
            c.refresh_routes();
            c.acme_wake(app);
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"app": app, "domain": domain}),
            ))
        }
        (&Method::DELETE, ["apps", app, "domains", domain]) => {
            app_exists(c, app)?;
            if !c.store().remove_domain(app, domain)? {
                return Err(ApiError::not_found(format!(
                    "app {app} has no domain {domain}"
                )));
            }
            c.refresh_routes();
            c.acme_wake(app);
            ok(json!({"app": app, "removed": domain}))
        }
        (&Method::GET, ["nodes", node, "list"]) => {
            own_node(caller, node)?;
            if c.store().node(node)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "no node named {node:?}: register it first"
                )));
            }
            ok(json!(c.list(node)))
        }
        (&Method::DELETE, ["nodes", node]) => {
            // Only a node that is gone: a live one would go on running what it runs.
            let n = c.store().node(node)?.ok_or_else(|| {
                ApiError::not_found(format!("no node named {node:?} (see `zeroku nodes`)"))
            })?;
            if n.state == "up" {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("node {node} is up: stop its worker first (zeroku nodes:drain {node} moves its instances off)"),
                ));
            }
            change(c, |s| s.remove_node(node))?;
            c.peers.set_node(node, "");
            c.forget_node(node);
            ok(json!({"removed": node}))
        }
        (&Method::POST, ["apps", app, "restart"]) => {
            // A rolling restart, one instance at a time (crate::restarts).
            #[derive(Deserialize, Default)]
            #[serde(deny_unknown_fields)]
            struct Restart {
                /// A process type or an instance; none: every instance.
                #[serde(default)]
                target: Option<String>,
            }
            let r: Restart = body_json(req).await?;
            app_exists(c, app)?;
            let placed = c.store().placements_of(app)?;
            let ids = crate::restarts::targets(&placed, app, r.target.as_deref())
                .map_err(ApiError::invalid)?;
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
            tokio::spawn(crate::restarts::roll(
                m.cluster.clone(),
                app.to_string(),
                ids,
                caller.actor(),
                tx,
            ));
            Ok(Reply::Raw(line_stream(rx)))
        }
        (&Method::POST, ["apps", app, "runs", n, "stop"]) => {
            app_exists(c, app)?;
            let o = c
                .store()
                .oneoff(app, n.parse().unwrap_or(0))?
                .ok_or_else(|| ApiError::not_found(format!("app {app} has no one-off {n:?}")))?;
            if o.exit.is_some() {
                return ok(json!({"id": o.id, "stopped": false, "exit": o.exit}));
            }
            let why = format!("stopped by {}", caller.actor());
            // Out of its node's list: the worker stops it.
            change(c, |s| s.finish_oneoff(&o.id, &why))?;
            ok(json!({"id": o.id, "stopped": true}))
        }
        (&Method::POST, ["nodes", node, verb @ ("drain" | "undrain")]) => {
            let draining = *verb == "drain";
            let found = change(c, |s| s.set_node_draining(node, draining))?;
            if !found {
                return Err(ApiError::not_found(format!(
                    "no node named {node:?} (see `zeroku nodes`)"
                )));
            }
            // Add-ons hold data: they move only when asked to.
            let moving = draining && query(&req).get("move_addons").is_some_and(|v| v == "true");
            let addons: Vec<String> = if moving {
                crate::moves::move_off(cluster, node)
                    .await
                    .map_err(ApiError::internal)?
            } else {
                c.store()
                    .addons()?
                    .into_iter()
                    .filter(|a| draining && a.node == **node)
                    .map(|a| {
                        format!(
                            "{} stays on {node}: its data is there (--move-addons moves it)",
                            a.name
                        )
                    })
                    .collect()
            };
            ok(json!({"node": node, "draining": draining, "addons": addons}))
        }
        (&Method::GET, ["slugs", sha]) => {
            may_download(c, caller, sha)?;
            let path = c
                .slugs
                .path(sha)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            file_reply(&path, &format!("no slug {sha}")).await
        }
        (&Method::GET, ["stacks"]) => {
            let dir = stacks_dir(c)?;
            // Which nodes have each stack, from their heartbeats.
            let on: Vec<(String, Vec<String>)> = c
                .live()
                .iter()
                .filter_map(|(n, l)| l.heartbeat.as_ref().map(|h| (n.clone(), h.stacks.clone())))
                .collect();
            let mut rows = Vec::new();
            for e in std::fs::read_dir(&dir)
                .map_err(ApiError::internal)?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(stack) = name.strip_suffix(".tar") else {
                    continue;
                };
                // Nodes with its current version.
                let image = crate::stacks::image(&dir, stack);
                let nodes: Vec<&String> = on
                    .iter()
                    .filter(|(_, s)| s.contains(&image))
                    .map(|(n, _)| n)
                    .collect();
                let size = e.metadata().map_or(0, |m| m.len());
                let version = image.split_once(':').map(|(_, v)| v);
                rows.push(json!({"name": stack, "size": size, "version": version, "nodes": nodes}));
            }
            rows.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
            ok(json!(rows))
        }
        (&Method::GET, ["stacks", name]) => {
            check_stack(name)?;
            let path = stacks_dir(c)?.join(format!("{name}.tar"));
            file_reply(&path, &format!("no stack {name:?} (zeroku stacks:import)")).await
        }
        (&Method::PUT, ["stacks", name]) => {
            check_stack(name)?;
            let dir = stacks_dir(c)?;
            let tmp = zeroku_slug::store::upload_path(&dir);
            let mut body = req.into_body();
            let n = receive_file(&mut body, &tmp, 4 << 30, "stack").await?;
            let path = dir.join(format!("{name}.tar"));
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(ApiError::internal)?;
            let (d, s) = (dir.clone(), name.to_string());
            let version = tokio::task::spawn_blocking(move || crate::stacks::record(&d, &s))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?;
            // Docker apps on this stack move to the new version: every
            // list is rebuilt (a node whose specs are unchanged keeps its
            // generation's contents and restarts nothing).
            c.invalidate_lists();
            change(c, |_| Ok(()))?;
            tracing::info!(stack = %name, bytes = n, %version, "stack imported");
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"name": name, "size": n, "version": version}),
            ))
        }
        (&Method::PUT, ["slugs", sha]) => {
            let info = receive_slug(c, sha, req.into_body()).await?;
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"sha256": info.sha256, "size": info.size}),
            ))
        }
        (&Method::GET, ["whoami"]) => people::whoami(c, caller).map(ok)?,
        (&Method::GET, ["users"]) => people::users(c).map(ok)?,
        (&Method::POST, ["users"]) => {
            let u = body_json(req).await?;
            people::add_user(c, u).map(|v| Reply::Json(StatusCode::CREATED, v))
        }
        (&Method::DELETE, ["users", user]) => {
            let v = people::remove_user(c, user)?;
            // Their SSH keys went with them.
            let keys = c.store().keys()?;
            crate::keys::write(&b.data, &b.api_addr.to_string(), &keys)
                .map_err(ApiError::internal)?;
            ok(v)
        }
        (&Method::POST, ["users", user, "tokens"]) => people::user_token(c, user).map(ok)?,
        (&Method::GET, ["apps", app, "access"]) => {
            app_exists(c, app)?;
            people::access(c, app).map(ok)?
        }
        (&Method::PUT, ["apps", app, "access", user]) => {
            app_exists(c, app)?;
            let g = body_json(req).await?;
            people::set_access(c, app, user, g).map(ok)?
        }
        (&Method::DELETE, ["apps", app, "access", user]) => {
            app_exists(c, app)?;
            people::remove_access(c, caller, app, user).map(ok)?
        }
        (&Method::GET, ["apps", app, "audit"]) => {
            let lines = query(&req)
                .get("lines")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100);
            people::audit(c, Some(app), lines).map(ok)?
        }
        (&Method::GET, ["audit"]) => {
            let q = query(&req);
            let lines = q.get("lines").and_then(|v| v.parse().ok()).unwrap_or(100);
            people::audit(c, q.get("app").map(String::as_str), lines).map(ok)?
        }
        _ => Err(ApiError::not_found(format!("no API route {method} {path}"))),
    }
}

#[derive(Deserialize)]
struct NewRelease {
    slug_sha256: String,
    process_types: BTreeMap<String, String>,
    description: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Scale {
    #[serde(rename = "type")]
    proc_type: String,
    quantity: u32,
    memory_mb: Option<u64>,
}

/// `ps:scale TYPE=N` as the API does it (checks, then the change), for the dashboard.
pub(crate) fn scale(
    c: &Cluster,
    app: &str,
    proc_type: &str,
    quantity: u32,
) -> Result<(), ApiError> {
    let rows = check_scale(
        c,
        app,
        vec![Scale {
            proc_type: proc_type.to_string(),
            quantity,
            memory_mb: None,
        }],
    )?;
    change(c, |s| s.set_formation(&rows))?;
    Ok(())
}

/// A new API token, as the API's error when the system cannot make one.
pub(crate) fn new_token() -> Result<String, ApiError> {
    crate::store::new_token().map_err(ApiError::internal)
}
