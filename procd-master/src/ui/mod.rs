//! The web dashboard at `/ui` on the master's API address: server-rendered HTML, a few lines
//! of JavaScript, nothing fetched from elsewhere (everything is in the binary, and the content
//! security policy allows no inline script or style).
//!
//! Log in with a user's token (`users:add` gives one): it is kept in an `HttpOnly`,
//! `SameSite=Strict` cookie for `/ui` only, and every page is what that user may see through
//! the API: the cluster's nodes for admins, the apps they may view, and for each app its
//! processes (state, restarts, unhealthy above 5 restarts a minute, as Mothership counts),
//! releases (its deploy history) and the last build's output, domains, add-ons, the last
//! hour's metrics, its certificates, and its log. A page of an app the user may not view is
//! 403, its live data too. The app page polls `/ui/apps/<app>/live` every 2 s while it is
//! open, so instances show as they change, and follows the log as it is written
//! (`/ui/apps/<app>/logs`, server-sent events).
//!
//! A user with `operate` on an app can scale its process types from its page (a form that
//! carries a value derived from their token, as `ps:scale` does it; in the audit log), and
//! restart it; with `deploy`, roll it back and run a command in a terminal in the page
//! ([`act`]: through the API with their token).
//!
//! It must not offer what the API would refuse the same token, and must escape everything
//! that comes from apps or users.

mod act;
mod html;

use crate::api::auth::{self, Caller};
use crate::cluster::Cluster;
use crate::store::{Perm, Role};
use bytes::Bytes;
use html::{cell, esc, page, sparkline, table};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use zeroku_client::Body;

const COOKIE_NAME: &str = "zeroku_ui";

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(CONTENT_TYPE, v);
    }
    h.insert(
        CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "content-security-policy",
        hyper::header::HeaderValue::from_static(
            "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    r
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "text/html; charset=utf-8", body)
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain", String::new());
    if let Ok(v) = to.parse() {
        r.headers_mut().insert(LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
        r.headers_mut().insert(SET_COOKIE, c);
    }
    r
}

/// The logged-in user (or admin) of `req`, from its cookie.
fn caller(c: &Cluster, req: &Request<Incoming>) -> Option<Caller> {
    let token = req
        .headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(&format!("{COOKIE_NAME}=")))?
        .to_string();
    let who = auth::caller_of(c, &token).ok()?;
    matches!(who.role, Role::User | Role::Admin).then_some(who)
}

/// A request under `/ui`.
pub async fn handle(
    m: &std::sync::Arc<crate::api::Master>,
    req: Request<Incoming>,
) -> Response<Body> {
    let c = m.cluster.as_ref();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let ["ui", "api", "v1", rest @ ..] = &segs[..] {
        let rest = rest.join("/");
        return match caller(c, &req) {
            Some(who) => act::bridge(m, req, &who, &rest).await,
            None => respond(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "log in first\n".into(),
            ),
        };
    }
    match (req.method(), &segs[..]) {
        (&Method::GET, ["ui", "static", "xterm.js"]) => respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            html::XTERM_JS.into(),
        ),
        (&Method::GET, ["ui", "static", "xterm.css"]) => respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            html::XTERM_CSS.into(),
        ),
        (&Method::GET, ["ui", "static", "run.js"]) => respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            html::RUN_SCRIPT.into(),
        ),
        (&Method::GET, ["ui", "apps", app, "logs"]) => {
            // A browser that reconnects says where it was.
            let after = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .or_else(|| {
                    req.uri()
                        .query()
                        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("after=")))
                })
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let shown = match caller(c, &req) {
                Some(who) => act::log_stream(&m.cluster, &who, app, after),
                None => return redirect("/ui/login", None),
            };
            shown.unwrap_or_else(|(status, why)| respond(status, "text/plain", why))
        }
        (&Method::GET, ["ui", "login"]) => html(StatusCode::OK, login_page("")),
        (&Method::GET, ["ui", "static", "style.css"]) => respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            html::STYLE.into(),
        ),
        (&Method::GET, ["ui", "static", "app.js"]) => respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            html::SCRIPT.into(),
        ),
        (&Method::POST, ["ui", "login"]) => login(c, req).await,
        (&Method::POST, ["ui", "apps", app, "scale"]) => {
            let app = app.to_string();
            scale(c, req, &app).await
        }
        (&Method::POST, ["ui", "logout"]) => redirect(
            "/ui/login",
            Some(format!(
                "{COOKIE_NAME}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
            )),
        ),
        (&Method::GET, _) => match caller(c, &req) {
            Some(who) => render(c, Some(&m.builds), &who, &path),
            None => redirect("/ui/login", None),
        },
        _ => html(
            StatusCode::METHOD_NOT_ALLOWED,
            page("Not here", None, "<p>Not a page of the dashboard.</p>"),
        ),
    }
}

/// The page at `path` (under `/ui`) as `who` sees it.
pub fn render(
    c: &Cluster,
    builds: Option<&crate::builds::Builds>,
    who: &Caller,
    path: &str,
) -> Response<Body> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let shown = match &segs[..] {
        ["ui"] => cluster_page(c, who),
        ["ui", "apps", app] => app_page(c, builds, who, app),
        ["ui", "apps", app, "live"] => live(c, who, app),
        ["ui", "apps", app, "run"] => act::run_page(c, who, app),
        _ => Err((StatusCode::NOT_FOUND, "No such page.".into())),
    };
    match shown {
        Ok(r) => r,
        Err((status, why)) => html(
            status,
            page(
                "Not here",
                Some(&who.actor()),
                &format!("<h1>{}</h1><p>{}</p>", status.as_u16(), esc(&why)),
            ),
        ),
    }
}

fn login_page(error: &str) -> String {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"bad\" id=\"error\">{}</p>", esc(error))
    };
    page(
        "Log in",
        None,
        &format!(
            "<h1>Log in</h1>{error}<form method=\"post\" action=\"/ui/login\">\
             <p><label>Your token (from <code>zeroku users:add</code> or <code>users:token</code>)<br>\
             <input type=\"password\" name=\"token\" size=\"60\" autofocus></label></p>\
             <p><button type=\"submit\">Log in</button></p></form>"
        ),
    )
}

/// `token=...` from the form: a user's or the admin's token gets the cookie.
async fn login(c: &Cluster, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return html(
                StatusCode::PAYLOAD_TOO_LARGE,
                login_page("That is not a token."),
            )
        }
    };
    let form = String::from_utf8_lossy(&body);
    let token = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(form_decode)
        .unwrap_or_default();
    let token = token.trim();
    match auth::caller_of(c, token) {
        Ok(who) if matches!(who.role, Role::User | Role::Admin) => {
            // (A token is letters, digits and `-`/`_`: nothing that would break the header.)
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return html(StatusCode::UNAUTHORIZED, login_page("That is not a token."));
            }
            redirect(
                "/ui/",
                Some(format!(
                    "{COOKIE_NAME}={token}; Path=/ui; HttpOnly; SameSite=Strict"
                )),
            )
        }
        Ok(_) => html(
            StatusCode::FORBIDDEN,
            login_page("That is a node's or frontend's token: log in with a user's."),
        ),
        Err(_) => html(
            StatusCode::UNAUTHORIZED,
            login_page("The master does not know that token (or it has expired)."),
        ),
    }
}

/// The fields of a form posted to `req` (at most 4 KB).
async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body = Limited::new(req.into_body(), 4096)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(
        String::from_utf8_lossy(&body)
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (form_decode(k), form_decode(v)))
            .collect(),
    )
}

/// What a form must carry to act as the logged-in user: derived from their token, which
/// another site cannot read (the cookie is `SameSite=Strict` besides).
fn csrf_of(who: &Caller) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("zeroku-ui-form:{}", who.token).as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The scale form: as `ps:scale`, for a user with `operate` on the app.
async fn scale(c: &Cluster, req: Request<Incoming>, app: &str) -> Response<Body> {
    let Some(who) = caller(c, &req) else {
        return redirect("/ui/login", None);
    };
    let fields = form(req).await.unwrap_or_default();
    let field = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let refuse = |status: StatusCode, why: String| {
        html(
            status,
            page(
                "Not done",
                Some(&who.actor()),
                &format!("<h1>{}</h1><p>{}</p>", status.as_u16(), esc(&why)),
            ),
        )
    };
    if field("csrf") != csrf_of(&who) {
        return refuse(
            StatusCode::FORBIDDEN,
            "This form did not come from this dashboard.".into(),
        );
    }
    if let Err((status, why)) = may(c, &who, app, Perm::Operate) {
        return refuse(status, why);
    }
    let Ok(quantity) = field("quantity").parse::<u32>() else {
        return refuse(
            StatusCode::UNPROCESSABLE_ENTITY,
            "The number of instances is a whole number.".into(),
        );
    };
    let kind = field("type").to_string();
    match tokio::task::block_in_place(|| crate::api::scale(c, app, &kind, quantity)) {
        Ok(()) => {
            let _ = c.store().record(
                &who.actor(),
                app,
                "POST /ui/apps/:app/scale",
                &format!("{kind}={quantity}"),
            );
            redirect(&format!("/ui/apps/{app}"), None)
        }
        Err(e) => refuse(e.status, e.message),
    }
}

/// `application/x-www-form-urlencoded` value.
fn form_decode(v: &str) -> String {
    let mut out = Vec::new();
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            x => out.push(x),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Shown = Result<Response<Body>, (StatusCode, String)>;

fn failed(e: impl std::fmt::Display) -> (StatusCode, String) {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

/// The apps `who` may view.
fn visible_apps(c: &Cluster, who: &Caller) -> Result<Vec<String>, (StatusCode, String)> {
    let apps: Vec<String> = c
        .store()
        .apps()
        .map_err(failed)?
        .into_iter()
        .map(|a| a.name)
        .collect();
    if who.admin {
        return Ok(apps);
    }
    let mine = c
        .store()
        .apps_of(who.user().unwrap_or_default())
        .map_err(failed)?;
    Ok(apps.into_iter().filter(|a| mine.contains(a)).collect())
}

fn cluster_page(c: &Cluster, who: &Caller) -> Shown {
    let mut body = String::from("<h1>Cluster</h1>");
    if who.admin {
        let nodes = crate::views::nodes(c).map_err(|e| failed(e.message))?;
        let rows: Vec<Vec<String>> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                vec![
                    cell(&n["name"]),
                    if n["state"] == "up" {
                        "<span class=\"ok\">up</span>".into()
                    } else {
                        format!("<span class=\"bad\">{}</span>", cell(&n["state"]))
                    },
                    format!("{} / {} MB", cell(&n["used_mb"]), cell(&n["capacity_mb"])),
                    cell(&n["running"]),
                    n["runtimes"].as_array().map_or("-".into(), |r| {
                        esc(&r
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                    }),
                ]
            })
            .collect();
        body.push_str("<h2>Nodes</h2>");
        body.push_str(&table(
            &["node", "state", "memory placed", "processes", "runtimes"],
            &rows,
            "nodes",
        ));
    }
    let apps = visible_apps(c, who)?;
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            let ps = crate::views::ps(c, a).unwrap_or_default();
            let all = ps.as_array().map_or(0, Vec::len);
            let up = ps
                .as_array()
                .map_or(0, |p| p.iter().filter(|i| i["state"] == "up").count());
            vec![
                format!("<a href=\"/ui/apps/{0}\">{0}</a>", esc(a)),
                format!("{up} of {all} up"),
            ]
        })
        .collect();
    body.push_str("<h2>Apps</h2>");
    body.push_str(&table(&["app", "processes"], &rows, "apps"));
    Ok(html(
        StatusCode::OK,
        page("Cluster", Some(&who.actor()), &body),
    ))
}

/// 403 unless `who` holds `perm` on `app` (404 when there is none).
fn may(c: &Cluster, who: &Caller, app: &str, perm: Perm) -> Result<(), (StatusCode, String)> {
    // (An app that does not exist is refused the same way: no one learns other apps' names.)
    let exists = c.store().app(app).map_err(failed)?.is_some();
    let perms = who.perms(c, app).map_err(|e| failed(e.message))?;
    if exists && perms.contains(&perm) {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            format!("{} may not {} {app}.", who.actor(), perm.name()),
        ))
    }
}

fn may_view(c: &Cluster, who: &Caller, app: &str) -> Result<(), (StatusCode, String)> {
    may(c, who, app, Perm::View)
}

/// Restarts of each process type in the last minute (from the per-minute metrics).
fn restarts_per_minute(c: &Cluster, app: &str) -> std::collections::BTreeMap<String, u64> {
    c.store()
        .app_minutes(app, 1)
        .unwrap_or_default()
        .last()
        .map(|m| {
            m.types
                .iter()
                .map(|(k, t)| (k.clone(), t.restarts))
                .collect()
        })
        .unwrap_or_default()
}

fn ps_rows(c: &Cluster, app: &str) -> Vec<Vec<String>> {
    let per_minute = restarts_per_minute(c, app);
    let ps = crate::views::ps(c, app).unwrap_or_default();
    ps.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let kind = p["type"].as_str().unwrap_or_default();
            let rpm = per_minute.get(kind).copied().unwrap_or(0);
            let health = if rpm > 5 {
                format!("<span class=\"bad\">unhealthy: {rpm} restarts/min</span>")
            } else {
                format!("{rpm}/min")
            };
            vec![
                cell(&p["id"]),
                cell(&p["node"]),
                if p["state"] == "up" {
                    "<span class=\"ok\">up</span>".into()
                } else {
                    format!("<span class=\"bad\">{}</span>", cell(&p["state"]))
                },
                cell(&p["restarts"]),
                health,
                cell(&p["release"]),
            ]
        })
        .collect()
}

const PS_HEAD: [&str; 6] = [
    "instance",
    "node",
    "state",
    "restarts",
    "restarts/min",
    "release",
];

/// A log line as the page shows it.
fn log_line(l: &zeroku_conf::LogLine) -> String {
    format!(
        "{} {}[{}] {}",
        zeroku_conf::time::rfc3339_millis(l.ts_ms),
        if l.instance.is_empty() {
            "zeroku"
        } else {
            "app"
        },
        l.instance,
        l.line
    )
}

/// The app's last 100 log lines, and the sequence number to stream on from.
fn log_lines(c: &Cluster, app: &str) -> (Vec<String>, u64) {
    let (lines, next) = c.logs.read(app, 0, 100);
    (lines.iter().map(|(_, l)| log_line(l)).collect(), next)
}

fn app_page(c: &Cluster, builds: Option<&crate::builds::Builds>, who: &Caller, app: &str) -> Shown {
    may_view(c, who, app)?;
    let store = c.store();
    let releases = store.releases(app).map_err(failed)?;
    let domains: Vec<String> = store
        .domains()
        .map_err(failed)?
        .into_iter()
        .filter(|(a, _)| a == app)
        .map(|(_, d)| d)
        .collect();
    let addons: Vec<Vec<String>> = store
        .attachments(Some(app), None)
        .map_err(failed)?
        .into_iter()
        .map(|t| vec![esc(&t.addon), esc(&crate::store::url_var(&t.alias))])
        .collect();
    let minutes = store.app_minutes(app, 60).map_err(failed)?;
    let formation = store.formation(app).map_err(failed)?;
    let certs = store.app_certs(app).map_err(failed)?;
    let cert_status = store.cert_status(app).map_err(failed)?;
    drop(store);
    let mut body = format!("<h1>{}</h1>", esc(app));
    let mut actions = String::new();
    if may(c, who, app, Perm::Operate).is_ok() {
        actions.push_str("<button class=\"act\" data-act=\"restart\">Restart all</button> ");
    }
    if may(c, who, app, Perm::Deploy).is_ok() {
        actions.push_str(&format!(
            "<button class=\"act\" data-act=\"rollback\">Roll back</button> <a href=\"/ui/apps/{}/run\">Run a command</a>",
            esc(app)
        ));
    }
    if !actions.is_empty() {
        body.push_str(&format!(
            "<p class=\"actions\">{actions} <span id=\"acted\"></span></p>"
        ));
    }
    body.push_str("<h2>Processes</h2>");
    body.push_str(&table(&PS_HEAD, &ps_rows(c, app), "ps"));
    if may(c, who, app, Perm::Operate).is_ok() {
        for f in &formation {
            body.push_str(&format!(
                "<form class=\"scale\" method=\"post\" action=\"/ui/apps/{app}/scale\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                 <input type=\"hidden\" name=\"type\" value=\"{kind}\">\
                 <label>{kind} <input type=\"number\" name=\"quantity\" min=\"0\" value=\"{n}\" size=\"4\"></label> \
                 <button type=\"submit\">Scale {kind}</button></form>",
                app = esc(app),
                csrf = csrf_of(who),
                kind = esc(&f.proc_type),
                n = f.quantity
            ));
        }
    }
    let rows: Vec<Vec<String>> = releases
        .iter()
        .rev()
        .take(10)
        .map(|r| {
            vec![
                format!("v{}", r.version),
                esc(&r.description),
                zeroku_conf::time::rfc3339_millis(r.created_at * 1000),
                esc(&r.slug_sha256.chars().take(12).collect::<String>()),
            ]
        })
        .collect();
    body.push_str("<h2>Releases</h2>");
    body.push_str(&table(
        &["release", "what", "when", "slug"],
        &rows,
        "releases",
    ));
    body.push_str("<h2>Domains</h2>");
    let rows: Vec<Vec<String>> = domains.iter().map(|d| vec![esc(d)]).collect();
    body.push_str(&table(&["domain"], &rows, "domains"));
    body.push_str("<h2>Certificates</h2>");
    let now = crate::store::now();
    let rows: Vec<Vec<String>> = certs
        .iter()
        .map(|x| {
            vec![
                esc(&x.names.join(", ")),
                esc(&x.source),
                esc(&x.issuer),
                format!(
                    "{} ({} days)",
                    zeroku_conf::time::date(x.not_after),
                    (x.not_after as i64 - now as i64).div_euclid(86_400)
                ),
            ]
        })
        .collect();
    body.push_str(&table(
        &["names", "source", "issuer", "expires"],
        &rows,
        "certs",
    ));
    if !cert_status.last_error.is_empty() {
        body.push_str(&format!(
            "<p class=\"error\">Last error obtaining a certificate: {}</p>",
            esc(&cert_status.last_error)
        ));
    }
    body.push_str("<h2>Add-ons</h2>");
    body.push_str(&table(&["add-on", "as"], &addons, "addons"));
    body.push_str("<h2>The last hour</h2>");
    let requests: Vec<f64> = minutes
        .iter()
        .map(|m| m.classes.iter().sum::<u64>() as f64)
        .collect();
    let p95: Vec<f64> = minutes
        .iter()
        .map(|m| zeroku_conf::usage::quantile_ms(&m.buckets, 0.95).unwrap_or(0.0))
        .collect();
    let memory: Vec<f64> = minutes
        .iter()
        .map(|m| m.types.values().map(|t| t.memory_bytes).sum::<u64>() as f64 / 1_048_576.0)
        .collect();
    body.push_str(&sparkline("requests / minute", &requests));
    body.push_str(&sparkline("p95 latency, ms", &p95));
    body.push_str(&sparkline("memory, MB", &memory));
    if let Some(out) = builds.and_then(|b| b.last_output(app)) {
        body.push_str("<h2>Last build</h2><pre id=\"build\">");
        body.push_str(&esc(&out));
        body.push_str("</pre>");
    }
    let (log, next) = log_lines(c, app);
    body.push_str("<h2>Log</h2><pre id=\"log\">");
    body.push_str(&esc(&log.join("\n")));
    body.push_str("</pre>");
    body.push_str(&format!(
        "<script src=\"/ui/static/app.js\" data-app=\"{}\" data-after=\"{next}\" data-csrf=\"{}\"></script>",
        esc(app),
        csrf_of(who)
    ));
    Ok(html(StatusCode::OK, page(app, Some(&who.actor()), &body)))
}

/// What the app page refreshes: its process table (HTML) and log lines (text).
fn live(c: &Cluster, who: &Caller, app: &str) -> Shown {
    may_view(c, who, app)?;
    let v = json!({
        "ps": table(&PS_HEAD, &ps_rows(c, app), "ps"),
    });
    Ok(respond(StatusCode::OK, "application/json", v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_decode() {
        assert_eq!(form_decode("a%2Bb+c%zz%4"), "a+b c%zz%4");
    }
}
