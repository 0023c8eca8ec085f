//! Who is calling, and what they may do: every route of `/v1` is in [`ROUTES`] with what it
//! needs, and [`Caller::allow`] checks it before the route runs. A route missing from the table
//! cannot be reached at all (404), so a new route cannot be added without saying who may use
//! it. `docs/permissions.md` is this table (a test keeps the two the same).

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{Perm, Role};
use hyper::body::Incoming;
use hyper::Request;

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any valid token.
    Anyone,
    /// A user (or admin) token: not a node's, frontend's or join token.
    User,
    /// An admin.
    Admin,
    /// This permission on the app named in the path (admins hold them all).
    App(Perm),
    /// A join token (used up) or an admin.
    Join,
    /// A node token (for its own node; the route checks which) or an admin.
    Node,
    /// A frontend token (for itself) or an admin.
    Frontend,
    /// A frontend token (for itself) only: what only frontends may hold (apps' private keys),
    /// not even an admin through the API.
    FrontendOnly,
    /// A slug download: a node (slugs of apps placed on it), a frontend (slugs its `dir`
    /// routes serve) or an admin.
    Slug,
}

impl Need {
    /// As the docs table says it.
    pub fn describe(self) -> String {
        match self {
            Need::Anyone => "any token".into(),
            Need::User => "a user".into(),
            Need::Admin => "an admin".into(),
            Need::App(p) => format!("`{}` on the app", p.name()),
            Need::Join => "a join token (used up) or an admin".into(),
            Need::Node => "that node's token, or an admin".into(),
            Need::Frontend => "that frontend's token, or an admin".into(),
            Need::FrontendOnly => "that frontend's token only".into(),
            Need::Slug => {
                "a node running the app, a frontend serving its files, or an admin".into()
            }
        }
    }
}

/// One route: method, path (`:name` is one segment, `*` the rest, `a|b` either word) and need.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub need: Need,
}

const fn r(method: &'static str, path: &'static str, need: Need) -> Route {
    Route { method, path, need }
}

use Need::*;
use Perm::*;

/// Every route of the API and what it needs.
pub const ROUTES: &[Route] = &[
    r("GET", "/v1/status", Anyone),
    r("GET", "/v1/whoami", Anyone),
    r("GET", "/v1/apps", User),
    r("GET", "/v1/services", User),
    r("POST", "/v1/apps", User),
    r("GET", "/v1/apps/:app", App(View)),
    r("DELETE", "/v1/apps/:app", App(Manage)),
    r("POST", "/v1/apps/:app/rename", App(Manage)),
    r("POST", "/v1/apps/:app/builds", App(Deploy)),
    r("GET", "/v1/apps/:app/builds/output", App(View)),
    r("POST", "/v1/apps/:app/repo", App(Deploy)),
    r("POST", "/v1/apps/:app/runs", App(Deploy)),
    r("GET", "/v1/apps/:app/runs/:n", App(Deploy)),
    r("GET", "/v1/apps/:app/runs/:n/terminal", App(Deploy)),
    r("POST", "/v1/apps/:app/runs/:n/stop", App(Deploy)),
    r("GET", "/v1/apps/:app/config", App(Deploy)),
    r("PATCH", "/v1/apps/:app/config", App(Deploy)),
    r("GET", "/v1/apps/:app/releases", App(View)),
    r("POST", "/v1/apps/:app/releases", App(Deploy)),
    r("POST", "/v1/apps/:app/rollback", App(Deploy)),
    r("GET", "/v1/apps/:app/formation", App(View)),
    r("PATCH", "/v1/apps/:app/formation", App(Operate)),
    r("POST", "/v1/apps/:app/restart", App(Operate)),
    r("GET", "/v1/apps/:app/ps", App(View)),
    r("GET", "/v1/apps/:app/logs", App(View)),
    r("GET", "/v1/apps/:app/metrics", App(View)),
    r("GET", "/v1/apps/:app/alerts", App(View)),
    r("POST", "/v1/apps/:app/alerts", App(Manage)),
    r("DELETE", "/v1/apps/:app/alerts/:id", App(Manage)),
    r("GET", "/v1/apps/:app/settings", App(View)),
    r("PATCH", "/v1/apps/:app/settings", App(Manage)),
    r("GET", "/v1/apps/:app/routes", App(View)),
    r("POST", "/v1/apps/:app/routes", App(Manage)),
    r("DELETE", "/v1/apps/:app/routes/*", App(Manage)),
    r("GET", "/v1/apps/:app/drains", App(View)),
    r("POST", "/v1/apps/:app/drains", App(Manage)),
    r("DELETE", "/v1/apps/:app/drains", App(Manage)),
    r("GET", "/v1/apps/:app/domains", App(View)),
    r("POST", "/v1/apps/:app/domains", App(Manage)),
    r("DELETE", "/v1/apps/:app/domains/:domain", App(Manage)),
    r("GET", "/v1/apps/:app/certs", App(View)),
    r("POST", "/v1/apps/:app/certs", App(Manage)),
    r("DELETE", "/v1/apps/:app/certs/:sha", App(Manage)),
    r("GET", "/v1/apps/:app/addons", App(View)),
    r("POST", "/v1/apps/:app/addons", App(Manage)),
    r("GET", "/v1/apps/:app/addons/:addon", App(View)),
    r("DELETE", "/v1/apps/:app/addons/:addon", App(Manage)),
    r(
        "POST",
        "/v1/apps/:app/addons/:addon/credentials",
        App(Manage),
    ),
    r("POST", "/v1/apps/:app/addons/:addon/failover", App(Manage)),
    r("PATCH", "/v1/apps/:app/addons/:addon/settings", App(Manage)),
    r("PUT", "/v1/apps/:app/addons/:addon/schedule", App(Manage)),
    r(
        "DELETE",
        "/v1/apps/:app/addons/:addon/schedule",
        App(Manage),
    ),
    r("GET", "/v1/apps/:app/addons/:addon/backups", App(View)),
    r("POST", "/v1/apps/:app/addons/:addon/backups", App(Deploy)),
    r("GET", "/v1/apps/:app/addons/:addon/backups/:id", App(View)),
    r(
        "GET",
        "/v1/apps/:app/addons/:addon/backups/:id/file",
        App(Deploy),
    ),
    r(
        "POST",
        "/v1/apps/:app/addons/:addon/backups/:id/restore",
        App(Manage),
    ),
    r("POST", "/v1/apps/:app/attachments", App(Manage)),
    r("DELETE", "/v1/apps/:app/attachments/:addon", App(Manage)),
    r("GET", "/v1/addons", User),
    r("GET", "/v1/apps/:app/access", App(View)),
    r("PUT", "/v1/apps/:app/access/:user", App(Manage)),
    r("DELETE", "/v1/apps/:app/access/:user", App(Manage)),
    r("GET", "/v1/apps/:app/audit", App(Manage)),
    r("GET", "/v1/audit", Admin),
    r("GET", "/v1/users", Admin),
    r("POST", "/v1/users", Admin),
    r("DELETE", "/v1/users/:user", Admin),
    r("POST", "/v1/users/:user/tokens", Admin),
    r("GET", "/v1/keys", User),
    r("POST", "/v1/keys", User),
    r("DELETE", "/v1/keys/:name", User),
    r("GET", "/v1/nodes", Admin),
    r("POST", "/v1/nodes/join-token", Admin),
    r("POST", "/v1/nodes/register", Join),
    r("POST", "/v1/nodes/:node/hello", Node),
    r("GET", "/v1/nodes/:node/list", Node),
    r("POST", "/v1/nodes/:node/drain|undrain", Admin),
    r("DELETE", "/v1/nodes/:node", Admin),
    r("GET", "/v1/nodes/:node/runs/:id/terminal", Node),
    r("POST", "/v1/frontends/register", Join),
    r("POST", "/v1/frontends/:name/hello", Frontend),
    r("POST", "/v1/frontends/:name/traffic", Frontend),
    r("GET", "/v1/frontends/:name/certs/:sha", FrontendOnly),
    r("GET", "/v1/routes", Frontend),
    r("GET", "/v1/slugs/:sha", Slug),
    r("PUT", "/v1/slugs/:sha", User),
    r("GET", "/v1/stacks", User),
    r("GET", "/v1/stacks/:name", Node),
    r("PUT", "/v1/stacks/:name", Admin),
];

fn matches(pattern: &str, segs: &[&str]) -> bool {
    let pat: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let mut i = 0;
    for p in &pat {
        if *p == "*" {
            return segs.len() > i;
        }
        let Some(s) = segs.get(i) else { return false };
        let ok = if p.starts_with(':') {
            !s.is_empty()
        } else {
            p.split('|').any(|w| w == *s)
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    i == segs.len()
}

/// The route `method` and the path's segments (from `v1`) name.
pub fn find(method: &str, segs: &[&str]) -> Option<&'static Route> {
    ROUTES
        .iter()
        .find(|r| r.method == method && matches(r.path, segs))
}

/// The caller, from its bearer token.
#[derive(Clone)]
pub struct Caller {
    pub role: Role,
    /// The token's scope: a node's, frontend's or user's name.
    pub node: Option<String>,
    /// The bearer token itself (a join token is used up when it registers).
    pub token: String,
    /// Whether it may do everything (an admin token, or an admin user's).
    pub admin: bool,
}

impl Caller {
    /// Who did it, for the audit log.
    pub fn actor(&self) -> String {
        match (self.role, &self.node) {
            (Role::User, Some(u)) => u.clone(),
            (Role::Admin, _) => "admin".into(),
            (Role::Node, Some(n)) => format!("node {n}"),
            (Role::Frontend, Some(f)) => format!("frontend {f}"),
            (r, _) => format!("{r:?}").to_lowercase(),
        }
    }

    /// The user's name, for a user token.
    pub fn user(&self) -> Option<&str> {
        (self.role == Role::User)
            .then_some(self.node.as_deref())
            .flatten()
    }

    /// The caller's permissions on `app` (all four for an admin).
    pub fn perms(&self, c: &Cluster, app: &str) -> Result<Vec<Perm>, ApiError> {
        if self.admin {
            return Ok(Perm::ALL.to_vec());
        }
        match self.user() {
            Some(u) => Ok(c.store().perms(app, u)?),
            None => Ok(Vec::new()),
        }
    }

    /// Whether the caller may use `route` (on `app` when the path names one).
    pub fn allow(&self, c: &Cluster, route: &Route, app: Option<&str>) -> Result<(), ApiError> {
        let ok = match route.need {
            Need::Anyone => true,
            Need::User => self.admin || self.role == Role::User,
            Need::Admin => self.admin,
            Need::Join => self.admin || self.role == Role::Join,
            Need::Node => self.admin || self.role == Role::Node,
            Need::Frontend => self.admin || self.role == Role::Frontend,
            Need::FrontendOnly => self.role == Role::Frontend,
            Need::Slug => {
                self.admin || matches!(self.role, Role::Node | Role::Frontend | Role::User)
            }
            Need::App(p) => {
                let app = app.unwrap_or_default();
                if self.perms(c, app)?.contains(&p) {
                    true
                } else if self.role == Role::User {
                    return Err(ApiError::forbidden(format!(
                        "user {} may not {} app {app:?}: that needs the `{}` permission (`zeroku access -a {app}` shows who has it)",
                        self.actor(),
                        p.name(),
                        p.name()
                    )));
                } else {
                    false
                }
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this token may not do that: {} {} needs {}",
                route.method,
                route.path,
                route.need.describe()
            )))
        }
    }
}

/// The caller of `req`: 401 without a token or with one the master does not know (or one
/// that has expired).
pub fn auth(c: &Cluster, req: &Request<Incoming>) -> Result<Caller, ApiError> {
    let token = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(ApiError::unauthorized)?;
    caller_of(c, token.trim())
}

/// The caller a token is (401 for one the master does not know, or one that has expired).
pub fn caller_of(c: &Cluster, token: &str) -> Result<Caller, ApiError> {
    let Some((role, node)) = c.store().token(token)? else {
        return Err(ApiError::unauthorized());
    };
    let admin = match (role, &node) {
        (Role::Admin, _) => true,
        (Role::User, Some(u)) => c.store().user(u)?.is_some_and(|u| u.admin),
        _ => false,
    };
    Ok(Caller {
        role,
        node,
        token: token.to_string(),
        admin,
    })
}

/// `docs/permissions.md`'s table.
pub fn table_markdown() -> String {
    let mut out = String::from("| method | path | who may call it |\n|---|---|---|\n");
    for r in ROUTES {
        out.push_str(&format!(
            "| {} | `{}` | {} |\n",
            r.method,
            r.path,
            r.need.describe()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<&str> {
        p.trim_matches('/').split('/').collect()
    }

    fn f(m: &str, p: &str) -> Option<&'static str> {
        find(m, &segs(p)).map(|r| r.path)
    }

    #[test]
    fn every_path_finds_its_route_and_no_other() {
        assert_eq!(f("GET", "/v1/apps"), Some("/v1/apps"));
        assert_eq!(f("GET", "/v1/apps/blog"), Some("/v1/apps/:app"));
        assert_eq!(
            f("GET", "/v1/apps/blog/config"),
            Some("/v1/apps/:app/config")
        );
        assert_eq!(
            f("DELETE", "/v1/apps/blog/routes/a/b"),
            Some("/v1/apps/:app/routes/*")
        );
        assert_eq!(f("DELETE", "/v1/apps/blog/routes"), None);
        assert_eq!(
            f("POST", "/v1/nodes/n1/drain"),
            Some("/v1/nodes/:node/drain|undrain")
        );
        assert_eq!(
            f("POST", "/v1/nodes/n1/undrain"),
            Some("/v1/nodes/:node/drain|undrain")
        );
        assert_eq!(f("POST", "/v1/nodes/n1/explode"), None);
        assert_eq!(
            f("POST", "/v1/nodes/join-token"),
            Some("/v1/nodes/join-token")
        );
        assert_eq!(f("GET", "/v1/apps/blog/config/extra"), None);
        assert_eq!(f("PUT", "/v1/apps"), None);
        // Every route's own path (with values for its parameters) finds it.
        for r in ROUTES {
            let p = r
                .path
                .replace(":app", "a")
                .replace(":n", "1")
                .replace("drain|undrain", "drain")
                .replace('*', "x")
                .replace(':', "");
            assert_eq!(f(r.method, &p), Some(r.path), "{} {}", r.method, r.path);
        }
    }

    #[test]
    fn the_docs_table_is_this_table() {
        let docs = include_str!("../../../docs/permissions.md");
        assert!(
            docs.contains(&table_markdown()),
            "docs/permissions.md is out of date: paste in\n{}",
            table_markdown()
        );
    }
}
