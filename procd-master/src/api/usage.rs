//! Per-app metrics by the minute (`zeroku metrics`): frontends report what each app was asked
//! (`POST /v1/frontends/<name>/traffic`, their own name only); `GET /v1/apps/<app>/metrics`
//! gives the last `?minutes=` (60 by default, 1,440 at most) with request counts by status
//! class, latency quantiles, and per process type instances, memory, CPU and restarts.
//! Alert rules on them: `GET`/`POST /v1/apps/<app>/alerts`, `DELETE …/alerts/<id>`.

use super::{body_json, ok, query, Reply};
use crate::api::auth::Caller;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::Role;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::{json, Value};
use zeroku_conf::usage::{quantile_ms, Traffic};

/// A frontend's report.
pub(super) async fn traffic(
    c: &Cluster,
    caller: &Caller,
    name: &str,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    if !(caller.admin || (caller.role == Role::Frontend && caller.node.as_deref() == Some(name))) {
        return Err(ApiError::forbidden(format!(
            "only frontend {name}'s own token may report its traffic"
        )));
    }
    let t: Traffic = body_json(req).await?;
    c.store().add_traffic(name, &t.apps)?;
    ok(json!({"apps": t.apps.len()}))
}

/// `?minutes=N` of `app`, oldest first.
pub(super) fn app(c: &Cluster, app: &str, req: &Request<Incoming>) -> Result<Reply, ApiError> {
    let minutes = match query(req).get("minutes") {
        None => 60,
        Some(m) => m
            .parse::<u64>()
            .ok()
            .filter(|m| (1..=crate::store::KEEP_MINUTES).contains(m))
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "minutes={m:?}: a number of minutes from 1 to {}",
                    crate::store::KEEP_MINUTES
                ))
            })?,
    };
    let rows: Vec<Value> = c
        .store()
        .app_minutes(app, minutes)?
        .into_iter()
        .map(|m| {
            let q = |q| quantile_ms(&m.buckets, q).map(|v| (v * 10.0).round() / 10.0);
            let types: serde_json::Map<String, Value> = m
                .types
                .iter()
                .map(|(k, t)| {
                    (
                        k.clone(),
                        json!({
                            "instances": t.instances,
                            "memory_bytes": t.memory_bytes,
                            "memory_max_bytes": t.memory_max,
                            "cpu_ms": t.cpu_ms,
                            "restarts": t.restarts,
                        }),
                    )
                })
                .collect();
            json!({
                "at": m.at,
                "requests": m.classes.iter().sum::<u64>(),
                "by_class": {"1xx": m.classes[0], "2xx": m.classes[1], "3xx": m.classes[2], "4xx": m.classes[3], "5xx": m.classes[4]},
                "p50_ms": q(0.5),
                "p95_ms": q(0.95),
                "p99_ms": q(0.99),
                "types": types,
            })
        })
        .collect();
    ok(json!({"app": app, "minutes": rows}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAlert {
    rule: String,
    webhook: String,
}

/// `alerts:add`: a rule that parses and an http(s) webhook.
pub(super) async fn add_alert(
    c: &Cluster,
    app: &str,
    req: Request<Incoming>,
) -> Result<Reply, ApiError> {
    let a: NewAlert = body_json(req).await?;
    crate::alerts::Rule::parse(&a.rule).map_err(ApiError::invalid)?;
    match crate::drains::parse(&a.webhook) {
        Ok(crate::drains::Target::Http { .. }) => {}
        _ => {
            return Err(ApiError::invalid(format!(
                "webhook {:?}: an http:// or https:// URL",
                a.webhook
            )))
        }
    }
    if c.store().alerts(Some(app))?.len() >= MAX_ALERTS {
        return Err(ApiError::invalid(format!(
            "{app} has {MAX_ALERTS} alerts already: remove one first (zeroku alerts:remove)"
        )));
    }
    let id = c.store().add_alert(app, a.rule.trim(), &a.webhook)?;
    c.alerts_changed.notify_one();
    ok(json!({"id": id, "rule": a.rule.trim(), "webhook": a.webhook}))
}

/// The app's alerts; a webhook's path and query (often its secret: Slack's, PagerDuty's)
/// only to those who may manage the app.
pub(super) fn list_alerts(c: &Cluster, caller: &Caller, app: &str) -> Result<Reply, ApiError> {
    let manage = caller.perms(c, app)?.contains(&crate::store::Perm::Manage);
    let mut alerts = c.store().alerts(Some(app))?;
    if !manage {
        for a in &mut alerts {
            let (scheme, rest) = a.webhook.split_once("://").unwrap_or(("", &a.webhook));
            let host = rest.split(['/', '?']).next().unwrap_or_default();
            a.webhook = format!("{scheme}://{host}/…");
        }
    }
    ok(json!(alerts))
}

/// At most this many alert rules per app.
const MAX_ALERTS: usize = 20;

pub(super) fn remove_alert(c: &Cluster, app: &str, id: &str) -> Result<Reply, ApiError> {
    let n: u64 = id.parse().map_err(|_| {
        ApiError::invalid(format!("{id:?} is not an alert id (see `zeroku alerts`)"))
    })?;
    if !c.store().remove_alert(app, n)? {
        return Err(ApiError::not_found(format!("{app} has no alert {n}")));
    }
    c.alerts_changed.notify_one();
    ok(json!({"removed": n}))
}
