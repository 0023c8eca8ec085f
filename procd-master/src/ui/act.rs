//! What the dashboard does beyond showing: the app's log streamed as it is written
//! (server-sent events), a terminal for `zeroku run` in the browser (xterm.js), and restart
//! and rollback buttons.
//!
//! Actions go through the API itself: `/ui/api/v1/<path>` is the API's `/v1/<path>` called
//! with the logged-in user's token (from the cookie), for a short list of routes only
//! (`ALLOWED`), so the API's own permission checks and audit log apply, and the terminal is
//! the same WebSocket the CLI uses. A request from another site cannot act: the cookie is
//! `SameSite=Strict`, a POST must carry the user's form value (`x-zeroku-csrf`), and a
//! WebSocket's `Origin` must be this host.

use super::{csrf_of, esc, html, may, may_view, page, respond, Shown};
use crate::api::auth::Caller;
use crate::api::Master;
use crate::cluster::Cluster;
use crate::store::Perm;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use zeroku_client::Body;

/// The API routes the dashboard may call for its user (below `/v1/`).
const ALLOWED: &[(&str, &str)] = &[
    ("POST", "apps/:app/restart"),
    ("POST", "apps/:app/rollback"),
    ("POST", "apps/:app/runs"),
    ("GET", "apps/:app/runs/:n/terminal"),
];

fn allowed(method: &Method, rest: &str) -> bool {
    let segs: Vec<&str> = rest.split('/').collect();
    ALLOWED.iter().any(|(m, pat)| {
        let pat: Vec<&str> = pat.split('/').collect();
        *m == method.as_str()
            && pat.len() == segs.len()
            && pat.iter().zip(&segs).all(|(p, s)| {
                if p.starts_with(':') {
                    !s.is_empty()
                } else {
                    p == s
                }
            })
    })
}

/// Whether `req` comes from a page of this host (a browser always sends `Origin` on a
/// WebSocket and on a `fetch` POST).
fn same_origin(req: &Request<Incoming>) -> bool {
    let h = req.headers();
    let (Some(origin), Some(host)) = (
        h.get(hyper::header::ORIGIN).and_then(|v| v.to_str().ok()),
        h.get(hyper::header::HOST).and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    origin == format!("http://{host}") || origin == format!("https://{host}")
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{why}\n"))
}

/// `/ui/api/v1/<rest>` as the API's `/v1/<rest>`, with `who`'s token.
pub(super) async fn bridge(
    m: &Arc<Master>,
    mut req: Request<Incoming>,
    who: &Caller,
    rest: &str,
) -> Response<Body> {
    if !allowed(req.method(), rest) {
        return refuse(StatusCode::NOT_FOUND, "not something the dashboard does");
    }
    if !same_origin(&req) {
        return refuse(StatusCode::FORBIDDEN, "only from the dashboard's own pages");
    }
    if req.method() != Method::GET {
        let csrf = req
            .headers()
            .get("x-zeroku-csrf")
            .and_then(|v| v.to_str().ok());
        if csrf != Some(csrf_of(who).as_str()) {
            return refuse(
                StatusCode::FORBIDDEN,
                "the form value is missing or wrong: reload the page",
            );
        }
    }
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let Ok(uri) = format!("/v1/{rest}{query}").parse() else {
        return refuse(StatusCode::BAD_REQUEST, "not a path");
    };
    *req.uri_mut() = uri;
    let h = req.headers_mut();
    h.remove(hyper::header::COOKIE);
    match format!("Bearer {}", who.token).parse() {
        Ok(v) => {
            h.insert(hyper::header::AUTHORIZATION, v);
        }
        Err(_) => return refuse(StatusCode::UNAUTHORIZED, "log in again"),
    }
    crate::api::handle_v1(m.clone(), req).await
}

/// Log streams open per user token at most.
const MAX_STREAMS: usize = 8;

/// Open log streams per token.
fn streams() -> &'static std::sync::Mutex<std::collections::HashMap<String, usize>> {
    static S: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, usize>>> =
        std::sync::OnceLock::new();
    S.get_or_init(Default::default)
}

/// One open stream, counted while it lives.
struct Counted(String);

impl Drop for Counted {
    fn drop(&mut self) {
        let mut s = streams().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = s.get_mut(&self.0) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(&self.0);
            }
        }
    }
}

/// The app's log from line `after` on (or the browser's `Last-Event-ID` when it reconnects),
/// as server-sent events (`id:` its number, `data:` a JSON line), woken by new lines; a
/// comment every 15 s keeps proxies from closing it, and the user's permission is checked
/// again then. At most `MAX_STREAMS` per user. Ends when the browser goes.
pub(super) fn log_stream(c: &Arc<Cluster>, who: &Caller, app: &str, after: u64) -> Shown {
    may_view(c, who, app)?;
    let counted = {
        let mut s = streams().lock().unwrap_or_else(|e| e.into_inner());
        let n = s.entry(who.token.clone()).or_default();
        if *n >= MAX_STREAMS {
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                format!("{MAX_STREAMS} log streams are open for you already: close some pages"),
            ));
        }
        *n += 1;
        Counted(who.token.clone())
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let (c, app, who) = (c.clone(), app.to_string(), who.clone());
    tokio::spawn(async move {
        let _counted = counted;
        let mut after = after;
        let mut checked = std::time::Instant::now();
        loop {
            // Still allowed? (The token may have been revoked, the access taken away.)
            if checked.elapsed() >= Duration::from_secs(15) {
                checked = std::time::Instant::now();
                let still = crate::api::auth::caller_of(&c, &who.token)
                    .is_ok_and(|now| may_view(&c, &now, &app).is_ok());
                if !still {
                    return;
                }
            }
            let woken = c.logs.changed.notified();
            if c.logs.app_last(&app) > after {
                let (lines, next) = c.logs.read(&app, after, 500);
                after = after.max(next);
                let mut out = String::new();
                for (seq, l) in lines {
                    let v = serde_json::json!({"seq": seq, "line": super::log_line(&l)});
                    out.push_str(&format!("id: {seq}\ndata: {v}\n\n"));
                }
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    return;
                }
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_secs(15)) => {
                    if tx.send(Bytes::from_static(b": still here\n\n")).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let mut r = respond(StatusCode::OK, "text/event-stream", String::new());
    *r.body_mut() = BodyExt::boxed(StreamBody::new(stream));
    Ok(r)
}

/// The terminal page: a command (a shell by default) run as `zeroku run` would, on a
/// terminal in the page. `deploy` on the app, as `run` needs.
pub(super) fn run_page(c: &Cluster, who: &Caller, app: &str) -> Shown {
    may_view(c, who, app)?;
    may(c, who, app, Perm::Deploy)?;
    let body = format!(
        "<link rel=\"stylesheet\" href=\"/ui/static/xterm.css\">\
         <h1><a href=\"/ui/apps/{app}\">{app}</a>: run</h1>\
         <form id=\"run\" class=\"run\"><input id=\"command\" name=\"command\" value=\"sh\" size=\"40\"> \
         <button type=\"submit\">Run</button> <span id=\"state\"></span></form>\
         <div id=\"term\"></div>\
         <script src=\"/ui/static/xterm.js\"></script>\
         <script src=\"/ui/static/run.js\" data-app=\"{app}\" data-csrf=\"{csrf}\"></script>",
        app = esc(app),
        csrf = csrf_of(who),
    );
    Ok(html(
        StatusCode::OK,
        page(&format!("{app}: run"), Some(&who.actor()), &body),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_routes_are_bridged() {
        assert!(allowed(&Method::POST, "apps/shop/restart"));
        assert!(allowed(&Method::GET, "apps/shop/runs/3/terminal"));
        assert!(!allowed(&Method::GET, "apps/shop/config"));
        assert!(!allowed(&Method::POST, "users"));
        assert!(!allowed(&Method::DELETE, "apps/shop"));
        assert!(!allowed(&Method::POST, "apps/shop/restart/x"));
        assert!(!allowed(&Method::POST, "apps//restart"));
    }
}
