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
    let (mut placements, current, nodes) = {
        let s = c.store();
        let mut p = s.placements_of(app)?;
        // One-offs that are still running are instances too (`<app>.run.<n>`).
        for o in s.active_oneoffs()?.into_iter().filter(|o| o.app == app) {
            p.push(crate::store::Placement {
                id: o.id,
                app: o.app,
                proc_type: zeroku_conf::RUN_TYPE.to_string(),
                index: o.n,
                node: Some(o.node),
                memory_mb: c.cfg.default_memory_mb,
            });
        }
        (p, s.current_release(app)?, s.nodes()?)
    };
    placements.sort_by(|a, b| (&a.proc_type, a.index).cmp(&(&b.proc_type, b.index)));
    let node_state: HashMap<&str, &str> = nodes
        .iter()
        .map(|n| (n.name.as_str(), n.state.as_str()))
        .collect();
    // Why unplaced instances wait (before taking the live lock: the store's lock is taken
    // first everywhere else).
    let reasons: HashMap<&str, String> = placements
        .iter()
        .filter(|p| p.node.is_none())
        .map(|p| {
            (
                p.id.as_str(),
                pending_reason(c, app, &p.proc_type, p.memory_mb),
            )
        })
        .collect();
    let live = c.live();
    let silent_after = 2 * c.pace().heartbeat;
    let t = now();
    let rows: Vec<Value> = placements
        .iter()
        .flat_map(|p| {
            let status: Option<&InstanceStatus> = p
                .node
                .as_deref()
                .and_then(|n| live.get(n))
                .and_then(|l| l.heartbeat.as_ref())
                .and_then(|hb| hb.instances.iter().filter(|i| i.id == p.id).max_by_key(|i| (i.release, i.restart)));
            let state = match (p.node.as_deref(), status) {
                (None, _) => "pending".to_string(),
                (Some(n), _) if node_state.get(n) == Some(&"dead") => "lost".to_string(),
                // The node has missed heartbeats: what it last said may be stale.
                (Some(n), _) if live.get(n).is_some_and(|l| l.last_seen.elapsed() > silent_after) => "unknown".to_string(),
                (Some(_), Some(s)) => s.state.to_string(),
                (Some(_), None) => "starting".to_string(),
            };
            let reason = reasons.get(p.id.as_str()).cloned();
            let main = json!({
                "id": p.id,
                "type": p.proc_type,
                "reason": reason,
                "index": p.index,
                "node": p.node,
                "state": state,
                "pid": status.and_then(|s| s.pid),
                "container": status.and_then(|s| s.container.clone()),
                "port": status.and_then(|s| s.port),
                "restarts": status.map_or(0, |s| s.restarts),
                "incarnation": status.map_or(0, |s| s.restart),
                "uptime_secs": status.filter(|s| s.pid.is_some()).map(|s| t.saturating_sub(s.started_at)),
                "release": status.map(|s| s.release).or(current.as_ref().map(|r| r.version)),
                "last_exit": status.and_then(|s| s.last_exit.clone()).or(reason),
                "memory_mb": p.memory_mb,
            });
            // Every other process of the instance a node runs (one its successor replaces
            // once up, or one left where the instance was before it moved) is a row too.
            let current = status.map(|s| (p.node.as_deref(), s.release, s.restart));
            let mut rows = vec![main];
            for (node, l) in live.iter() {
                if l.last_seen.elapsed() > silent_after {
                    continue;
                }
                let Some(hb) = l.heartbeat.as_ref() else { continue };
                for i in hb.instances.iter().filter(|i| i.id == p.id) {
                    let running = i.pid.is_some() || i.container.is_some();
                    if !running || current == Some((Some(node.as_str()), i.release, i.restart)) {
                        continue;
                    }
                    rows.push(json!({
                        "id": p.id,
                        "type": p.proc_type,
                        "index": p.index,
                        "node": node,
                        "state": i.state.to_string(),
                        "replaced": true,
                        "pid": i.pid,
                        "container": i.container,
                        "port": i.port,
                        "restarts": i.restarts,
                        "incarnation": i.restart,
                        "uptime_secs": t.saturating_sub(i.started_at),
                        "release": i.release,
                        "last_exit": "replaced: stops once the instance's new process is up",
                        "memory_mb": p.memory_mb,
                    }));
                }
            }
            rows
        })
        .collect();
    Ok(json!(rows))
}

/// The schedulable node with the most memory free for `app`'s `proc_type` instances (its own
/// instances of that type do not count, they are being resized): (node, MiB). `None` when
/// no node can take instances at all.
pub fn most_free(
    c: &Cluster,
    store: &crate::store::Store,
    app: &str,
    proc_type: &str,
) -> Result<Option<(String, u64)>, ApiError> {
    let _ = c;
    let mut used: HashMap<String, u64> = HashMap::new();
    for p in store.placements()? {
        if p.app == app && p.proc_type == proc_type {
            continue;
        }
        if let Some(n) = p.node {
            *used.entry(n).or_default() += p.memory_mb;
        }
    }
    Ok(store
        .nodes()?
        .into_iter()
        .filter(|n| n.state == "up" && !n.draining)
        .map(|n| {
            let free = n
                .capacity_mb
                .saturating_sub(used.get(&n.name).copied().unwrap_or(0));
            (n.name, free)
        })
        .max_by_key(|(_, f)| *f))
}

/// Why an instance of `app` needing `memory_mb` is not placed.
fn pending_reason(c: &Cluster, app: &str, proc_type: &str, memory_mb: u64) -> String {
    let s = c.store();
    let docker = s
        .settings()
        .unwrap_or_default()
        .iter()
        .any(|(a, k, v)| a == app && k == "runtime" && v == "docker");
    if docker && c.docker_nodes().is_empty() {
        return "no node offers docker".into();
    }
    match most_free(c, &s, app, proc_type) {
        Ok(None) => "no node is up to run it (see `zeroku nodes`)".into(),
        Ok(Some((node, free))) if free < memory_mb => {
            format!("no node has {memory_mb} MB free (the most: {free} MB, on {node})")
        }
        Ok(Some(_)) => "the nodes' memory is taken by other instances (see `zeroku nodes`)".into(),
        Err(_) => "not placed yet".into(),
    }
}

pub fn nodes(c: &Cluster) -> Result<Value, ApiError> {
    let (nodes, placements) = {
        let s = c.store();
        (s.nodes()?, s.placements()?)
    };
    // (instances, memory) per node, in one pass.
    let mut usage: HashMap<&str, (usize, u64)> = HashMap::new();
    for p in &placements {
        if let Some(n) = p.node.as_deref() {
            let u = usage.entry(n).or_default();
            u.0 += 1;
            u.1 += p.memory_mb;
        }
    }
    // A short look at the live view: heartbeats wait while it is held.
    // (applied generation, processes running, limits)
    type Seen = (u64, usize, String, Vec<String>);
    let seen: HashMap<String, (u64, Option<Seen>)> = c
        .live()
        .iter()
        .map(|(name, l)| {
            let hb = l.heartbeat.as_ref().map(|h| {
                let limits = match &h.cgroups_unavailable {
                    None => "enforced (cgroup v2)".to_string(),
                    Some(why) => format!("not enforced: {why}"),
                };
                (h.generation, h.instances.len(), limits, h.runtimes.clone())
            });
            (name.clone(), (l.last_seen.elapsed().as_millis() as u64, hb))
        })
        .collect();
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let (instances, used_mb) = usage.get(n.name.as_str()).copied().unwrap_or_default();
            let live = seen.get(&n.name);
            let hb = live.and_then(|l| l.1.as_ref());
            json!({
                "name": n.name,
                "state": n.state,
                "draining": n.draining,
                "capacity_mb": n.capacity_mb,
                "used_mb": used_mb,
                "instances": instances,
                "running": hb.map_or(0, |h| h.1),
                "list_generation": c.generation(&n.name),
                "applied_generation": hb.map(|h| h.0),
                "last_seen_ms": live.map(|l| l.0),
                "limits": hb.map(|h| h.2.clone()),
                "runtimes": hb.map(|h| h.3.clone()),
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
