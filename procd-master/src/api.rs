//! The operator HTTP API: JSON under `/v1`, bearer tokens.
//!
//! Routing is a `match` on (method, path segments); every handler returns
//! `Result<Json, ApiError>` and errors become JSON in one place. Roles:
//! admin tokens may do everything; join tokens may only register a node;
//! node tokens may read their own node's list and download slugs.
//!
//! This is the top layer of the master: it may use every module below it
//! (store, scheduler, cluster, builds, git, keys), and none of them uses it.

use crate::builds::Builds;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{Formation, Role};
use crate::terminal;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use zeroku_client::{v1, Body};
use zeroku_conf::names;

/// What the API serves: the cluster's core and the build service.
pub struct Master {
    pub cluster: Arc<Cluster>,
    pub builds: Arc<Builds>,
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

struct Caller {
    role: Role,
    node: Option<String>,
}

impl Caller {
    fn admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            _ => Err(ApiError::forbidden(
                "this token may not do that: it needs an admin token",
            )),
        }
    }
    fn node_or_admin(&self, node: Option<&str>) -> Result<(), ApiError> {
        match (self.role, node) {
            (Role::Admin, _) => Ok(()),
            (Role::Node, None) => Ok(()),
            (Role::Node, Some(n)) if self.node.as_deref() == Some(n) => Ok(()),
            _ => Err(ApiError::forbidden(
                "this token may not do that: it needs an admin or node token",
            )),
        }
    }
}

fn auth(cluster: &Cluster, req: &Request<Incoming>) -> Result<Caller, ApiError> {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    match cluster.store().token(token.trim())? {
        Some((role, node)) => Ok(Caller { role, node }),
        None => Err(ApiError::unauthorized()),
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
fn change<T>(
    c: &Cluster,
    f: impl FnOnce(&mut crate::store::Store) -> Result<T, crate::store::StoreError>,
) -> Result<T, crate::store::StoreError> {
    let out = tokio::task::block_in_place(|| c.change(f))?;
    c.refresh_routes();
    Ok(out)
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
    let (cluster, b) = (&m.cluster, &m.builds);
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    if segs.first() != Some(&"v1") {
        return Err(ApiError::not_found(format!(
            "no such API path {path} (the API is under /v1)"
        )));
    }
    let caller = auth(cluster, &req)?;
    let c = cluster.as_ref();
    match (&method, &segs[1..]) {
        (&Method::GET, ["status"]) => ok(json!({
            "version": env!("CARGO_PKG_VERSION"),
            "dropped_messages": c.dropped.load(Ordering::Relaxed),
        })),
        (&Method::GET, ["apps"]) => {
            caller.admin()?;
            ok(json!(c.store().apps()?))
        }
        (&Method::POST, ["apps"]) => {
            caller.admin()?;
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
            match change(c, |s| {
                let app = s.create_app(&n.name)?;
                if app.is_some() {
                    for (k, v) in &n.settings {
                        s.set_setting(&n.name, k, v)?;
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
            caller.admin()?;
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
            caller.admin()?;
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
            Ok(Reply::Raw(r))
        }
        (&Method::POST, ["apps", app, "runs"]) => {
            // A one-off instance of the current release (zeroku run).
            caller.admin()?;
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
            caller.admin()?;
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
            caller.admin()?;
            app_exists(c, app)?;
            let o = c
                .store()
                .oneoff(app, n.parse().unwrap_or(0))?
                .ok_or_else(|| ApiError::not_found(format!("app {app} has no one-off {n:?}")))?;
            terminal_upgrade(cluster, req, o, terminal::Side::Client)
        }
        (&Method::GET, ["nodes", node, "runs", id, "terminal"]) => {
            // The worker's end: only the node the one-off runs on.
            caller.node_or_admin(Some(node))?;
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
            // The app's git repository, created if needed (git over ssh).
            caller.admin()?;
            app_exists(c, app)?;
            let dir = crate::git::repo_dir(&b.data, app);
            crate::git::ensure_repo(&dir, c.cfg.build_max_source_mb << 20)
                .await
                .map_err(ApiError::internal)?;
            ok(json!({"path": dir}))
        }
        (&Method::GET, ["keys"]) => {
            caller.admin()?;
            let keys: Vec<Value> = c
                .store()
                .keys()?
                .into_iter()
                .map(|(name, _, fp)| json!({"name": name, "fingerprint": fp}))
                .collect();
            ok(json!(keys))
        }
        (&Method::POST, ["keys"]) => {
            caller.admin()?;
            #[derive(Deserialize)]
            struct K {
                name: String,
                key: String,
            }
            let k: K = body_json(req).await?;
            names::node(&k.name).map_err(|e| ApiError::invalid(format!("key name: {e}")))?;
            let (key, fp) = crate::keys::parse(&k.key).map_err(ApiError::invalid)?;
            if !c.store().add_key(&k.name, &key, &fp)? {
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
                    "authorized_keys_file": file,
                    "authorized_keys_line": crate::keys::line(&exe, &api, &b.data, &k.name, &key),
                }),
            ))
        }
        (&Method::DELETE, ["keys", name]) => {
            caller.admin()?;
            if !c.store().remove_key(name)? {
                return Err(ApiError::not_found(format!("no key named {name:?}")));
            }
            let keys = c.store().keys()?;
            crate::keys::write(&b.data, &b.api_addr.to_string(), &keys)
                .map_err(ApiError::internal)?;
            ok(json!({"removed": name}))
        }
        (&Method::GET, ["apps", app, "builds", "output"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            let out = b.last_output(app).ok_or_else(|| {
                ApiError::not_found(format!(
                    "app {app} has not been built yet (git push, or zeroku deploy)"
                ))
            })?;
            ok(json!({"output": out}))
        }
        (&Method::DELETE, ["apps", app]) => {
            caller.admin()?;
            app_exists(c, app)?;
            change(c, |s| s.delete_app(app))?;
            c.logs.forget(app);
            b.forget(app);
            let _ = std::fs::remove_dir_all(crate::git::repo_dir(&b.data, app));
            spawn_gc(cluster);
            ok(json!({"deleted": app}))
        }
        (&Method::GET, ["apps", app, "config"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            ok(json!(c.store().config(app)?))
        }
        (&Method::PATCH, ["apps", app, "config"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            let changes: BTreeMap<String, Option<String>> = body_json(req).await?;
            for k in changes.keys() {
                check_config_key(k)?;
            }
            let desc = describe_config(&changes);
            let rel = change(c, |s| s.set_config(app, &changes, &desc))?;
            ok(json!({"config": c.store().config(app)?, "release": rel.map(|r| r.version)}))
        }
        (&Method::GET, ["apps", app, "releases"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            ok(json!(c.store().releases(app)?))
        }
        (&Method::POST, ["apps", app, "releases"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            let n: NewRelease = body_json(req).await?;
            if n.process_types.is_empty() {
                return Err(ApiError::invalid(
                    "a release needs at least one process type (is the Procfile empty?)",
                ));
            }
            for (t, cmd) in &n.process_types {
                names::process_type(t).map_err(|e| ApiError::invalid(e.to_string()))?;
                if cmd.trim().is_empty() {
                    return Err(ApiError::invalid(format!(
                        "process type {t:?} has no command"
                    )));
                }
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
            caller.admin()?;
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
            caller.admin()?;
            app_exists(c, app)?;
            ok(json!(c.store().formation(app)?))
        }
        (&Method::PATCH, ["apps", app, "formation"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            let ups: Vec<Scale> = body_json(req).await?;
            let rows = check_scale(c, app, ups)?;
            change(c, |s| s.set_formation(&rows))?;
            ok(json!(c.store().formation(app)?))
        }
        (&Method::GET, ["apps", app, "ps"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            crate::views::ps(c, app).map(ok)?
        }
        (&Method::GET, ["apps", app, "logs"]) => {
            caller.admin()?;
            app_exists(c, app)?;
            let q = query(&req);
            let after = q.get("after").and_then(|v| v.parse().ok()).unwrap_or(0);
            let lines = q.get("lines").and_then(|v| v.parse().ok()).unwrap_or(100);
            let (lines, next) = c.logs.read(app, after, lines);
            let lines: Vec<Value> = lines
                .into_iter()
                .map(|(seq, l)| json!({"seq": seq, "ts_ms": l.ts_ms, "instance": l.instance, "release": l.release, "stream": l.stream, "line": l.line}))
                .collect();
            ok(json!({"lines": lines, "next": next}))
        }
        (&Method::GET, ["nodes"]) => {
            caller.admin()?;
            crate::views::nodes(c).map(ok)?
        }
        (&Method::POST, ["nodes", "join-token"]) => {
            caller.admin()?;
            let token = new_token()?;
            c.store().add_token(&token, Role::Join, None)?;
            ok(json!({"token": token}))
        }
        (&Method::POST, ["nodes", "register"]) => {
            let r: v1::RegisterNode = body_json(req).await?;
            names::node(&r.name).map_err(|e| ApiError::invalid(e.to_string()))?;
            check_host(&r.host)?;
            let same_node =
                caller.role == Role::Node && caller.node.as_deref() == Some(r.name.as_str());
            if !(caller.role == Role::Join || caller.role == Role::Admin || same_node) {
                return Err(ApiError::forbidden("this token may not register that node"));
            }
            // A second worker under the name of a live node would run all
            // of its instances twice: only that node's own token may
            // re-register it while it is alive. A node that has registered
            // but not yet sent its first heartbeat counts as alive too, or
            // two workers starting together could both take the name.
            if !same_node {
                let seen = c.live().get(&r.name).map(|l| l.last_seen.elapsed());
                let up = c.store().node(&r.name)?.is_some_and(|n| n.state == "up");
                if let Some(ago) =
                    seen.filter(|a| up && a.as_millis() < u128::from(c.cfg.dead_after_ms))
                {
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
            }
            let token = new_token()?;
            c.store()
                .replace_scoped_token(&token, Role::Node, &r.name)?;
            c.live().insert(
                r.name.clone(),
                crate::live::Live {
                    last_seen: std::time::Instant::now(),
                    heartbeat: None,
                },
            );
            change(c, |s| s.upsert_node(&r.name, r.capacity_mb, &r.host))?;
            tracing::info!(node = %r.name, capacity_mb = r.capacity_mb, "node registered");
            ok(json!(v1::NodeJoined {
                node_token: token,
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
                heartbeat_interval_ms: c.cfg.heartbeat_interval_ms,
            }))
        }
        (&Method::POST, ["frontends", "register"]) => {
            let r: v1::RegisterFrontend = body_json(req).await?;
            names::node(&r.name).map_err(|e| ApiError::invalid(e.to_string()))?;
            check_host(&r.handler_host)?;
            let same =
                caller.role == Role::Frontend && caller.node.as_deref() == Some(r.name.as_str());
            if !(caller.role == Role::Join || caller.role == Role::Admin || same) {
                return Err(ApiError::forbidden(
                    "this token may not register a frontend",
                ));
            }
            let token = new_token()?;
            c.store()
                .replace_scoped_token(&token, Role::Frontend, &r.name)?;
            let changed = c.store().upsert_frontend(&r.name, &r.handler_host)?;
            if changed {
                // Handler processes must learn the new endpoints.
                change(c, |_| Ok(()))?;
            }
            tracing::info!(frontend = %r.name, handler_host = %r.handler_host, "frontend registered");
            ok(json!(v1::FrontendJoined {
                token,
                pub_endpoint: c
                    .cfg
                    .advertise_pub
                    .clone()
                    .unwrap_or_else(|| c.cfg.pub_endpoint.clone()),
            }))
        }
        (&Method::GET, ["routes"]) => {
            if !matches!(caller.role, Role::Admin | Role::Frontend) {
                return Err(ApiError::forbidden(
                    "the route table needs an admin or frontend token",
                ));
            }
            ok(json!(c.route_table()))
        }
        (&Method::GET, ["apps", app, "settings"]) => {
            caller.admin()?;
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
            caller.admin()?;
            app_exists(c, app)?;
            let changes: BTreeMap<String, String> = body_json(req).await?;
            check_settings(c, Some(app), &changes)?;
            for (k, v) in &changes {
                c.store().set_setting(app, k, v)?;
            }
            if ["runtime", "stack", "cpu"]
                .iter()
                .any(|k| changes.contains_key(*k))
            {
                // Same release, other specs: every list is rebuilt.
                c.invalidate_lists();
                change(c, |_| Ok(()))?;
            }
            c.refresh_routes();
            ok(json!(changes))
        }
        (&Method::GET, ["apps", app, "routes"]) => {
            caller.admin()?;
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
            caller.admin()?;
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
            caller.admin()?;
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
        (&Method::GET, ["apps", app, "domains"]) => {
            caller.admin()?;
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
            caller.admin()?;
            app_exists(c, app)?;
            #[derive(Deserialize)]
            struct D {
                domain: String,
            }
            let d: D = body_json(req).await?;
            let domain = d.domain.trim().trim_end_matches('.').to_ascii_lowercase();
            check_domain(&domain)?;
            if let Some(other) = c.store().add_domain(app, &domain)? {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("domain {domain} already belongs to app {other}"),
                ));
            }
            c.refresh_routes();
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"app": app, "domain": domain}),
            ))
        }
        (&Method::DELETE, ["apps", app, "domains", domain]) => {
            caller.admin()?;
            app_exists(c, app)?;
            if !c.store().remove_domain(app, domain)? {
                return Err(ApiError::not_found(format!(
                    "app {app} has no domain {domain}"
                )));
            }
            c.refresh_routes();
            ok(json!({"app": app, "removed": domain}))
        }
        (&Method::GET, ["nodes", node, "list"]) => {
            caller.node_or_admin(Some(node))?;
            if c.store().node(node)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "no node named {node:?}: register it first"
                )));
            }
            ok(json!(c.list(node)))
        }
        (&Method::POST, ["nodes", node, verb @ ("drain" | "undrain")]) => {
            caller.admin()?;
            let draining = *verb == "drain";
            let found = change(c, |s| s.set_node_draining(node, draining))?;
            if !found {
                return Err(ApiError::not_found(format!(
                    "no node named {node:?} (see `zeroku nodes`)"
                )));
            }
            ok(json!({"node": node, "draining": draining}))
        }
        (&Method::GET, ["slugs", sha]) => {
            if caller.role != Role::Frontend {
                caller.node_or_admin(None)?;
            }
            let path = c
                .slugs
                .path(sha)
                .map_err(|e| ApiError::invalid(e.to_string()))?;
            file_reply(&path, &format!("no slug {sha}")).await
        }
        (&Method::GET, ["stacks"]) => {
            caller.admin()?;
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
            caller.node_or_admin(None)?;
            check_stack(name)?;
            let path = stacks_dir(c)?.join(format!("{name}.tar"));
            file_reply(&path, &format!("no stack {name:?} (zeroku stacks:import)")).await
        }
        (&Method::PUT, ["stacks", name]) => {
            caller.admin()?;
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
            caller.admin()?;
            let info = receive_slug(c, sha, req.into_body()).await?;
            Ok(Reply::Json(
                StatusCode::CREATED,
                json!({"sha256": info.sha256, "size": info.size}),
            ))
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
struct Scale {
    #[serde(rename = "type")]
    proc_type: String,
    quantity: u32,
    memory_mb: Option<u64>,
}

/// Upgrades `req` to a WebSocket that becomes `side` of one-off `o`'s
/// terminal. A client waits up to two minutes for the node (a slug may be
/// downloading); a node waits 30 s for its client.
fn terminal_upgrade(
    cluster: &Arc<Cluster>,
    mut req: Request<Incoming>,
    o: crate::store::OneOff,
    side: terminal::Side,
) -> Result<Reply, ApiError> {
    use hyper::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
    let h = req.headers();
    let upgrade = h
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = match (upgrade, h.get(SEC_WEBSOCKET_KEY)) {
        (true, Some(k)) => k.as_bytes().to_vec(),
        _ => {
            return Err(ApiError::bad_request(
                "this is a WebSocket endpoint: send a WebSocket upgrade (zeroku run does)",
            ))
        }
    };
    if o.tty.is_none() {
        return Err(ApiError::invalid(format!(
            "{} was not started with a terminal (zeroku run from a terminal, without --no-tty)",
            o.id
        )));
    }
    if let Some(exit) = &o.exit {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ended",
            format!("{} has ended ({exit})", o.id),
        ));
    }
    if cluster.terminals.busy(&o.id, side) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            terminal::busy_reason(side),
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let c = cluster.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(up) => hyper_util::rt::TokioIo::new(up),
            Err(e) => {
                tracing::debug!(instance = %o.id, error = %e, "terminal upgrade failed");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            io,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let patience = match side {
            terminal::Side::Client => Duration::from_secs(120),
            terminal::Side::Node => Duration::from_secs(30),
        };
        let (app, n) = (o.app.clone(), o.n);
        let store_of = c.clone();
        let gone = move || {
            let ended = store_of.store().oneoff(&app, n).ok().flatten()?.exit?;
            Some(format!("the one-off ended ({ended})"))
        };
        c.terminals.attach(&o.id, side, ws, patience, gone).await;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let r = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, accept)
        .body(full(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Vec::new()).into_body())
        .map_err(ApiError::internal)?;
    Ok(Reply::Raw(r))
}

/// A host name or address other machines can use: no scheme, port or path.
/// A shell-style exit code from a worker's exit description.
fn exit_code(exit: &str) -> i32 {
    if let Some(c) = exit.strip_prefix("exited with status ") {
        return c.trim().parse().unwrap_or(1);
    }
    if let Some(s) = exit.strip_prefix("killed by signal ") {
        return 128 + s.trim().parse::<i32>().unwrap_or(0);
    }
    1
}

/// `<data>/stacks`: root file system tarballs, one per stack.
fn stacks_dir(c: &Cluster) -> Result<std::path::PathBuf, ApiError> {
    let d = crate::stacks::dir(&c.data);
    std::fs::create_dir_all(&d).map_err(ApiError::internal)?;
    Ok(d)
}

/// A file as the answer, streamed.
async fn file_reply(path: &std::path::Path, missing: &str) -> Result<Reply, ApiError> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(missing.to_string()))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let stream = tokio_util::io::ReaderStream::new(file).map_ok(Frame::data);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(Reply::Raw(r))
}

/// A stack name: an image name without a registry (`zk-bookworm`).
/// Validates app settings; `app` is `None` for an app being created.
fn check_settings(
    c: &Cluster,
    app: Option<&str>,
    changes: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (k, v) in changes {
        match (k.as_str(), v.as_str()) {
            ("m2_protocol", "json" | "tnetstring") => {}
            ("runtime", "native" | "docker") => {}
            ("runtime", other) => {
                return Err(ApiError::invalid(format!(
                    "runtime must be native or docker, not {other:?}"
                )))
            }
            ("stack", s) => check_stack(s)?,
            ("cpu", v) => {
                crate::settings::cpu_millis(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "cpu is in cores, from 0.01 to 256 (e.g. cpu=0.5), or 0 for no limit; not {v:?}"
                    ))
                })?;
            }
            ("m2_protocol", other) => {
                return Err(ApiError::invalid(format!(
                    "m2_protocol must be json or tnetstring, not {other:?}"
                )))
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown app setting {other:?} (known: m2_protocol, runtime, stack, cpu)"
                )))
            }
        }
    }
    let docker = changes.get("runtime").map(String::as_str) == Some("docker");
    let has_stack = changes.contains_key("stack")
        || app.is_some_and(|app| {
            c.store()
                .settings()
                .unwrap_or_default()
                .iter()
                .any(|(a, k, _)| a == app && k == "stack")
        });
    if docker && !has_stack {
        return Err(ApiError::invalid(
            "runtime=docker needs a stack too: stack=<name> (see `zeroku stacks`)",
        ));
    }
    Ok(())
}

fn check_stack(s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{s:?} is not a stack name (lowercase letters, digits, -, _ and .)"
        )))
    }
}

fn check_host(h: &str) -> Result<(), ApiError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{h:?} is not a host name or IP address"
        )))
    }
}

fn check_domain(d: &str) -> Result<(), ApiError> {
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if d.len() <= 253 && d.contains('.') && labels_ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{d:?} is not a domain name like www.example.com"
        )))
    }
}

/// Largest quantity of one process type: a typo like `web=1000000` must not
/// take the cluster down.
const MAX_QUANTITY: u32 = 10_000;

fn check_scale(c: &Cluster, app: &str, ups: Vec<Scale>) -> Result<Vec<Formation>, ApiError> {
    let store = c.store();
    let rel = store.current_release(app)?.ok_or_else(|| {
        ApiError::invalid(format!(
            "app {app} has no release yet: create one before scaling"
        ))
    })?;
    let current = store.formation(app)?;
    let known: Vec<&str> = rel.process_types.keys().map(String::as_str).collect();
    ups.into_iter()
        .map(|u| {
            if !rel.process_types.contains_key(&u.proc_type) {
                return Err(ApiError::invalid(format!(
                    "unknown process type {:?} for app {app} (its Procfile has: {})",
                    u.proc_type,
                    known.join(", ")
                )));
            }
            if u.quantity > MAX_QUANTITY {
                return Err(ApiError::invalid(format!(
                    "quantity {} is above the limit of {MAX_QUANTITY}",
                    u.quantity
                )));
            }
            let mem = u.memory_mb.or_else(|| {
                current
                    .iter()
                    .find(|f| f.proc_type == u.proc_type)
                    .map(|f| f.memory_mb)
            });
            Ok(Formation {
                app: app.to_string(),
                proc_type: u.proc_type,
                quantity: u.quantity,
                memory_mb: mem.unwrap_or(c.cfg.default_memory_mb),
            })
        })
        .collect()
}

fn check_config_key(k: &str) -> Result<(), ApiError> {
    let ok_chars = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_chars {
        return Err(ApiError::invalid(format!(
            "invalid config var name {k:?}: use letters, digits and _, not starting with a digit"
        )));
    }
    if k == "PORT" || k.starts_with("ZEROKU_") {
        return Err(ApiError::invalid(format!(
            "config var {k} is set by zeroku itself and cannot be changed"
        )));
    }
    Ok(())
}

fn describe_config(changes: &BTreeMap<String, Option<String>>) -> String {
    let set: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("Set {}", set.join(", ")));
    }
    if !unset.is_empty() {
        parts.push(format!("Unset {}", unset.join(", ")));
    }
    if parts.is_empty() {
        "Config unchanged".into()
    } else {
        parts.join("; ")
    }
}

/// A new API token, as the API's error when the system cannot make one.
fn new_token() -> Result<String, ApiError> {
    crate::store::new_token().map_err(ApiError::internal)
}

/// Streams a request body into `path`, at most `limit` bytes; on any error
/// the partial file is removed.
async fn receive_file(
    body: &mut Incoming,
    path: &std::path::Path,
    limit: u64,
    what: &str,
) -> Result<u64, ApiError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(ApiError::internal)?;
    let res: Result<u64, ApiError> = async {
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("{what} interrupted: {e}")))?;
            if let Ok(data) = frame.into_data() {
                n += data.len() as u64;
                if n > limit {
                    drain(body, limit.min(64 << 20)).await;
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "the {what} is over the limit of {} MB (remove large files from the app, or raise [master] build_max_source_mb)",
                            limit >> 20
                        ),
                    ));
                }
                file.write_all(&data).await.map_err(ApiError::internal)?;
            }
        }
        file.flush().await.map_err(ApiError::internal)?;
        Ok(n)
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    res
}

/// Reads and drops up to `most` more bytes of a refused body (for at most
/// 5 s), so a client still sending reads the refusal instead of a broken
/// pipe; a larger rest is cut off.
async fn drain(body: &mut Incoming, most: u64) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let mut n = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > most {
                break;
            }
        }
    })
    .await;
}

/// Streams an uploaded slug to a temp file, then verifies and stores it.
async fn receive_slug(
    c: &Cluster,
    sha: &str,
    mut body: Incoming,
) -> Result<zeroku_slug::SlugInfo, ApiError> {
    c.slugs
        .path(sha)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let tmp = zeroku_slug::store::upload_path(c.slugs.dir());
    receive_file(&mut body, &tmp, u64::MAX, "slug upload").await?;
    let (store, sha, tmp2) = (c.slugs.clone(), sha.to_string(), tmp.clone());
    let out = tokio::task::spawn_blocking(move || {
        zeroku_slug::verify(&tmp2, &sha)?;
        zeroku_slug::check(&tmp2)?;
        store.put_file(&tmp2, &sha)
    })
    .await
    .map_err(ApiError::internal)?;
    let _ = std::fs::remove_file(&tmp);
    out.map_err(|e| ApiError::invalid(format!("slug refused: {e}")))
}
