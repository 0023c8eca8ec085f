//! Read models for the API: `ps`, `nodes` and `apps:info`, merging what the
//! store says should run with what workers last reported.

use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{now, App};
use serde_json::{json, Value};
use std::collections::HashMap;
use zeroku_conf::InstanceStatus;

/// Every instance of `app`: placement plus the newest status its node sent.
pub fn ps(c: &Cluster, app: &str) -> Result<Value, ApiError> {
    let (placements, current, nodes) = {
        let s = c.store();
        let p = s.placements_of(app)?;
        (p, s.current_release(app)?, s.nodes()?)
    };
    let node_state: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state.as_str()))
        .collect();
    let live = c.live();
    let silent_after = std::time::Duration::from_millis(2 * c.cfg.heartbeat_interval_ms);
    let t = now();
    let rows: Vec<Value> = placements
        .iter()
        .map(|p| {
            let status: Option<&InstanceStatus> = p
                .node
                .as_deref()
                .and_then(|n| live.get(n))
                .and_then(|l| l.heartbeat.as_ref())
                .and_then(|hb| hb.instances.iter().filter(|i| i.id == p.id).max_by_key(|i| i.release));
            let state = match (p.node.as_deref(), status) {
                (None, _) => "pending".to_string(),
                (Some(n), _) if node_state.get(n) == Some(&"dead") => "lost".to_string(),
                // The node has missed heartbeats: what it last said may be stale.
                (Some(n), _) if live.get(n).is_some_and(|l| l.last_seen.elapsed() > silent_after) => "unknown".to_string(),
                (Some(_), Some(s)) => s.state.to_string(),
                (Some(_), None) => "starting".to_string(),
            };
            json!({
                "id": p.id,
                "type": p.proc_type,
                "index": p.index,
                "node": p.node,
                "state": state,
                "pid": status.and_then(|s| s.pid),
                "port": status.and_then(|s| s.port),
                "restarts": status.map_or(0, |s| s.restarts),
                "uptime_secs": status.filter(|s| s.pid.is_some()).map(|s| t.saturating_sub(s.started_at)),
                "release": status.map(|s| s.release).or(current.as_ref().map(|r| r.version)),
                "last_exit": status.and_then(|s| s.last_exit.clone()),
                "memory_mb": p.memory_mb,
            })
        })
        .collect();
    Ok(json!(rows))
}

pub fn nodes(c: &Cluster) -> Result<Value, ApiError> {
    let (nodes, placements) = {
        let s = c.store();
        (s.nodes()?, s.placements()?)
    };
    let live = c.live();
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let mine: Vec<_> = placements
                .iter()
                .filter(|p| p.node.as_deref() == Some(&n.name))
                .collect();
            let l = live.get(&n.name);
            let hb = l.and_then(|l| l.heartbeat.as_ref());
            json!({
                "name": n.name,
                "state": n.state,
                "draining": n.draining,
                "capacity_mb": n.capacity_mb,
                "used_mb": mine.iter().map(|p| p.memory_mb).sum::<u64>(),
                "instances": mine.len(),
                "running": hb.map_or(0, |h| h.instances.len()),
                "list_generation": c.generation(&n.name),
                "applied_generation": hb.map(|h| h.generation),
                "last_seen_ms": l.map(|l| l.last_seen.elapsed().as_millis() as u64),
                "limits": match hb {
                    None => Value::Null,
                    Some(h) => match &h.cgroups_unavailable {
                        None => json!("enforced (cgroup v2)"),
                        Some(why) => json!(format!("not enforced: {why}")),
                    },
                },
            })
        })
        .collect();
    Ok(json!(rows))
}

pub fn app_info(c: &Cluster, app: &App) -> Result<Value, ApiError> {
    let (rel, formation, config) = {
        let s = c.store();
        (
            s.current_release(&app.name)?,
            s.formation(&app.name)?,
            s.config(&app.name)?,
        )
    };
    let ps = ps(c, &app.name)?;
    let up = ps
        .as_array()
        .map_or(0, |a| a.iter().filter(|p| p["state"] == "up").count());
    Ok(json!({
        "name": app.name,
        "created_at": app.created_at,
        "release": rel.as_ref().map(|r| json!({"version": r.version, "description": r.description, "slug_sha256": r.slug_sha256, "slug_size": r.slug_size, "process_types": r.process_types})),
        "formation": formation,
        "config_vars": config.len(),
        "instances": ps.as_array().map_or(0, Vec::len),
        "instances_up": up,
    }))
}
