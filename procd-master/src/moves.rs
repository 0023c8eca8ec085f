//! Moving an add-on off a node (`nodes:drain --move-addons`): its data goes by backup and
//! restore, with every app it is attached to in maintenance meanwhile (so nothing is written
//! to the old server after the backup), then their URLs point at the new node in a release
//! each. The old node's data directory is left where it was.

use crate::addons::{host, url};
use crate::cluster::Cluster;
use crate::store::Addon;
use std::sync::Arc;

/// Moves every add-on on `node` to another node; what happened to each, in words.
pub async fn move_off(cluster: &Arc<Cluster>, node: &str) -> Result<Vec<String>, String> {
    let addons: Vec<Addon> = cluster
        .store()
        .addons()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|a| a.node == node)
        .collect();
    let mut said = Vec::new();
    for a in addons {
        let line = match move_one(cluster, &a).await {
            Ok(to) => format!("Moved {} from {node} to {to}", a.name),
            Err(e) => format!(
                "Moving {} off {node} failed: {e}; it stays on {node}",
                a.name
            ),
        };
        cluster.system_log(&a.app, &a.name, line.clone());
        said.push(line);
    }
    Ok(said)
}

/// Every attached app's `maintenance` setting as it was, for putting back.
fn maintenance_of(cluster: &Cluster, apps: &[String]) -> Result<Vec<(String, String)>, String> {
    let settings = cluster.store().settings().map_err(|e| e.to_string())?;
    Ok(apps
        .iter()
        .map(|app| {
            let v = settings
                .iter()
                .find(|(a, k, _)| a == app && k == "maintenance")
                .map_or("off".to_string(), |(_, _, v)| v.clone());
            (app.clone(), v)
        })
        .collect())
}

fn set_maintenance(cluster: &Cluster, values: &[(String, String)]) -> Result<(), String> {
    for (app, v) in values {
        cluster
            .store()
            .set_setting(app, "maintenance", v)
            .map_err(|e| e.to_string())?;
    }
    cluster.refresh_routes();
    Ok(())
}

async fn move_one(cluster: &Arc<Cluster>, a: &Addon) -> Result<String, String> {
    let target = {
        let store = cluster.store();
        let count = |n: &str| {
            store
                .addons()
                .map(|v| v.iter().filter(|x| x.node == n).count())
        };
        let mut best: Option<(usize, String)> = None;
        for n in store.nodes().map_err(|e| e.to_string())? {
            if n.name == a.node || n.state != "up" || n.draining {
                continue;
            }
            let k = count(&n.name).map_err(|e| e.to_string())?;
            if best.as_ref().is_none_or(|(b, _)| k < *b) {
                best = Some((k, n.name));
            }
        }
        best.map(|(_, n)| n)
            .ok_or("no other node is up and not draining")?
    };
    let apps: Vec<String> = cluster
        .store()
        .attachments(None, Some(&a.name))
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|t| t.app)
        .collect();
    let before = maintenance_of(cluster, &apps)?;
    let on: Vec<(String, String)> = apps.iter().map(|x| (x.clone(), "on".into())).collect();
    set_maintenance(cluster, &on)?;
    let out = copy_to(cluster, a, &target).await;
    set_maintenance(cluster, &before)?;
    out.map(|()| target)
}

/// Backs `a` up, places it on `target` (a fresh server there, on a port of its own), restores,
/// repoints the apps.
async fn copy_to(cluster: &Arc<Cluster>, a: &Addon, target: &str) -> Result<(), String> {
    let old_host = host(&cluster.store(), a).map_err(|e| e.to_string())?;
    let (sha, _) = crate::backups::capture(&cluster.data, a, &old_host).await?;
    let min = cluster.cfg.addon_port_min;
    let port = cluster
        .change(|s| s.set_addon_node(&a.name, target, min..=min.saturating_add(999)))
        .map_err(|e| e.to_string())?
        .ok_or("every add-on port is in use (1000 from addon_port_min)")?;
    let mut moved = a.clone();
    moved.node = target.to_string();
    moved.port = port;
    crate::backups::wait_up(cluster, &moved).await?;
    let new_host = host(&cluster.store(), &moved).map_err(|e| e.to_string())?;
    let path = cluster.data.join("backups").join(&sha);
    crate::backups::restore(&moved, &new_host, &path, &cluster.cfg.api).await?;
    let new_url = url(&moved, &new_host)?;
    cluster
        .change(|s| s.set_addon_password(&a.name, &a.password, &new_url))
        .map_err(|e| e.to_string())?;
    // The copy was for the move only.
    if !cluster
        .store()
        .backup_file_used(&sha)
        .map_err(|e| e.to_string())?
    {
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}
