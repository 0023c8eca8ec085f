//! Per-app metrics by the minute (`zeroku metrics`): frontends report what each app was asked
//! (`POST /v1/frontends/<name>/traffic`, their own name only); `GET /v1/apps/<app>/metrics`
//! gives the last `?minutes=` (60 by default, 1,440 at most) with request counts by status
//! class, latency quantiles, and per process type instances, memory, CPU and restarts.

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
