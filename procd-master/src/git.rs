//! Git over HTTP: `/git/<app>.git/...` on the API port runs the real
//! `git http-backend` (CGI) over the app's bare repository in
//! `<data>/repos`. The password of HTTP basic auth is a token (the user name
//! is ignored): pushing needs `deploy` on the app, fetching `view` (an
//! admin's token may do both). The CLI's credential helper
//! (`zeroku git:remote`) hands git the token; no remote URL carries one. The repository's `pre-receive` hook is
//! `zeroku hook pre-receive`: it refuses other branches than main/master and
//! builds the pushed commit through `POST /v1/apps/<app>/builds`, so a
//! failed build rejects the push and its output reaches the user as
//! `remote:` lines.

use crate::builds::Builds;
use crate::cluster::Cluster;
use crate::store::{Perm, Role};
use base64::Engine;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use zeroku_client::Body;

fn text(status: StatusCode, msg: &str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(format!("{msg}\n")))
            .map_err(|e| match e {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Basic realm=\"zeroku\""),
        );
    }
    r
}

/// The token in a basic-auth header, with its role and scope, if the master knows it.
fn basic_token(
    cluster: &Cluster,
    req: &hyper::http::request::Parts,
) -> Option<(String, Role, Option<String>)> {
    let v = req
        .headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?.trim())
        .ok()?;
    let (_, token) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    let (role, scope) = cluster.store().token(token.trim()).ok()??;
    Some((token.trim().to_string(), role, scope))
}

/// Whether a token with `role` and `scope` may push to (`write`) or fetch `app`.
fn may_git(cluster: &Cluster, role: Role, scope: Option<&str>, app: &str, write: bool) -> bool {
    let need = if write { Perm::Deploy } else { Perm::View };
    let s = cluster.store();
    match (role, scope) {
        (Role::Admin, _) => true,
        (Role::User, Some(u)) => {
            s.user(u).ok().flatten().is_some_and(|u| u.admin)
                || s.perms(app, u).is_ok_and(|p| p.contains(&need))
        }
        _ => false,
    }
}

/// Serves one request under `/git/`.
pub async fn handle(
    cluster: Arc<Cluster>,
    builds: Arc<Builds>,
    req: Request<Incoming>,
) -> Response<Body> {
    let (req, body) = req.into_parts();
    let path = req.uri.path().to_string();
    let Some(rest) = path.strip_prefix("/git/") else {
        return text(StatusCode::NOT_FOUND, "not a git path");
    };
    let Some((repo, sub)) = rest.split_once(".git") else {
        return text(
            StatusCode::NOT_FOUND,
            "git URLs look like /git/<app>.git (see `zeroku apps:info`)",
        );
    };
    if zeroku_conf::names::app(repo).is_err() {
        return text(
            StatusCode::NOT_FOUND,
            &format!("{repo:?} is not an app name"),
        );
    }
    let Some((token, role, scope)) = basic_token(&cluster, &req) else {
        return text(
            StatusCode::UNAUTHORIZED,
            "zeroku: git needs your token: run `zeroku login`, then `zeroku git:remote -a <app>` in the repository",
        );
    };
    let write = sub.contains("git-receive-pack")
        || req
            .uri
            .query()
            .is_some_and(|q| q.contains("service=git-receive-pack"));
    if !may_git(&cluster, role, scope.as_deref(), repo, write) {
        return text(
            StatusCode::FORBIDDEN,
            &format!(
                "zeroku: this token may not {} {repo} (it needs `{}` on the app: `zeroku access -a {repo}`)",
                if write { "push to" } else { "fetch" },
                if write { "deploy" } else { "view" }
            ),
        );
    }
    match cluster.store().app(repo) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return text(
                StatusCode::NOT_FOUND,
                &format!(
                    "zeroku: no app named {repo:?} (create it with `zeroku apps:create {repo}`)"
                ),
            )
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
    let repos = builds.data.join("repos");
    let dir = repos.join(format!("{repo}.git"));
    let max_input = cluster.cfg.build_max_source_mb << 20;
    if let Err(e) = ensure_repo(&dir, max_input).await {
        tracing::error!(app = %repo, error = %e, "cannot create the git repository");
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("zeroku: cannot create the app's repository: {e}"),
        );
    }
    match cgi(&req, &repos, repo, sub, &token, builds.api_addr, body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(app = %repo, error = %e, "git http-backend");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("zeroku: git failed: {e}"),
            )
        }
    }
}

/// Creates the bare repository and its hook, once.
pub async fn ensure_repo(dir: &Path, max_input: u64) -> std::io::Result<()> {
    let hook = dir.join("hooks/pre-receive");
    let exe = crate::exe::zeroku_exe()?;
    let script = format!(
        "#!/bin/sh\n# Installed by zeroku: builds the pushed commit; a failed build rejects the push.\nexec '{}' hook pre-receive\n",
        exe.display().to_string().replace('\'', "'\\''")
    );
    if tokio::fs::read_to_string(&hook).await.ok().as_deref() == Some(script.as_str()) {
        return Ok(());
    }
    if !dir.join("HEAD").exists() {
        let tmp = dir.with_extension("git.tmp");
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        run_git(
            &["init", "--bare", "--quiet", "--initial-branch=main"],
            &tmp,
            None,
        )
        .await?;
        for (k, v) in [
            ("http.receivepack", "true".to_string()),
            ("receive.denyDeletes", "true".to_string()),
            ("receive.maxInputSize", max_input.to_string()),
        ] {
            run_git(&["config", k, &v], &tmp, Some(&tmp)).await?;
        }
        tokio::fs::rename(&tmp, dir).await?;
    }
    let tmp = hook.with_extension("tmp");
    tokio::fs::write(&tmp, script).await?;
    use std::os::unix::fs::PermissionsExt;
    tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).await?;
    tokio::fs::rename(&tmp, &hook).await
}

async fn run_git(args: &[&str], dir: &Path, cwd: Option<&Path>) -> std::io::Result<()> {
    let mut cmd = tokio::process::Command::new("git");
    cmd.args(args);
    match cwd {
        Some(c) => {
            cmd.current_dir(c);
        }
        None => {
            cmd.arg(dir);
        }
    }
    let o = cmd.output().await?;
    if o.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        ))
    }
}

/// Runs `git http-backend` for the request and streams its answer.
async fn cgi(
    req: &hyper::http::request::Parts,
    root: &Path,
    app: &str,
    sub: &str,
    token: &str,
    api: std::net::SocketAddr,
    body: Incoming,
) -> std::io::Result<Response<Body>> {
    let header = |name: &str| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = tokio::process::Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{app}.git{sub}"))
        .env("REQUEST_METHOD", req.method.as_str())
        .env("QUERY_STRING", req.uri.query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "zeroku")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("ZEROKU_URL", format!("http://{api}"))
        .env("ZEROKU_TOKEN", token)
        .env("ZEROKU_APP", app)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    let cl = header("content-length");
    if !cl.is_empty() {
        cmd.env("CONTENT_LENGTH", cl);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| std::io::Error::other("no stdin"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| std::io::Error::other("no stdout"))?;
    let stderr = child.stderr.take();
    let app_s = app.to_string();
    tokio::spawn(async move {
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Ok(data) = frame.into_data() {
                if stdin.write_all(&data).await.is_err() {
                    break;
                }
            }
        }
        let _ = stdin.shutdown().await;
    });
    if let Some(err) = stderr {
        tokio::spawn(async move {
            let mut lines = BufReader::new(err).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                tracing::debug!(app = %app_s, "git http-backend: {l}");
            }
        });
    }
    let mut out = BufReader::new(stdout);
    let mut resp = Response::builder();
    let mut status = StatusCode::OK;
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).await? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("status") {
            status = v
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            resp = resp.header(k, v);
        }
    }
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let stream = tokio_util::io::ReaderStream::new(out)
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    resp.status(status)
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .map_err(std::io::Error::other)
}

/// The repository directory of an app (for deleting it with the app).
pub fn repo_dir(data: &Path, app: &str) -> PathBuf {
    data.join("repos").join(format!("{app}.git"))
}
