//! Add-ons with a standby (`addons:create postgres|redis --ha`): the master decides.
//!
//! - **In sync** ([`make_sync`]): once the standby streams from the primary, the primary is
//!   told to count on it (`sync=on`): PostgreSQL waits for it on every commit, so a commit an
//!   app saw acknowledged is on both nodes; Redis refuses writes once its replica has been
//!   silent 10 s (its replication stays asynchronous). From then on the standby may take over.
//! - **Failover** ([`on_nodes_lost`], [`on_servers_crashed`]): when the primary's node is lost
//!   (the dead timeout), or its server was restarted too often (the worker says `crashed`),
//!   and its standby is in sync, the standby is promoted. The old primary cannot acknowledge a
//!   PostgreSQL commit any more (each waits for a synchronous standby, and the only one it had
//!   no longer follows it). When its node is back, its worker finds it is to follow the new
//!   primary and starts it again as a standby (`pg_rewind`; a Redis replica resyncs).
//!   PostgreSQL apps keep their URL (it names both servers, and libpq keeps the one that takes
//!   writes); Redis URLs name the primary, so its apps get a new release with the new one.
//! - **A new standby** ([`replace_standby`]): when the standby's node is lost, it is built on
//!   another node that is up, if there is one (until it streams, PostgreSQL commits wait and
//!   Redis refuses writes after 10 s, unless `sync=off`).
//! - **Switchover** ([`switch_over`], `addons:failover`): no write is lost: the primary stops
//!   taking writes, the standby applies everything it has, then is promoted.
//!
//! What is said to each kind's servers is `zeroku_services::Ha`'s. Nothing here runs at rest:
//! each task polls its servers only while it waits for them.

use crate::addons;
use crate::cluster::Cluster;
use crate::store::Addon;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroku_services::{Ha, Lag};

/// How its kind runs standbys.
fn ha_of(a: &Addon) -> Result<&'static dyn Ha, String> {
    addons::kind_of(a)?
        .ha()
        .ok_or_else(|| format!("{} add-ons have no standbys", a.kind))
}

/// Tells the server on `host:port` `input` as its administrator; what it answered.
async fn ask(a: &Addon, host: &str, port: u16, input: &str) -> Result<String, String> {
    let ha = ha_of(a)?;
    let tool = ha
        .admin(&addons::service(a), host, port)
        .map_err(|e| e.to_string())?;
    let out = crate::backups::run_with_input(&tool, &format!("{input}\n")).await?;
    if ha.refused(&out) {
        return Err(out.trim().to_string());
    }
    Ok(out.trim().to_string())
}

fn host_of(cluster: &Cluster, node: &str) -> String {
    cluster
        .store()
        .nodes()
        .ok()
        .and_then(|n| n.into_iter().find(|n| n.name == node))
        .map_or_else(|| "127.0.0.1".to_string(), |n| n.host)
}

fn current(cluster: &Cluster, name: &str) -> Result<Addon, String> {
    cluster
        .store()
        .addon(name)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no add-on {name}"))
}

/// Add-ons a failover, a new standby or a change of their standby is under way for: one at
/// a time each.
static BUSY: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Holds an add-on in [`BUSY`] while alive.
pub struct Busy(String);

impl Busy {
    fn take(name: &str) -> Option<Busy> {
        let mut busy = BUSY.lock().unwrap_or_else(|p| p.into_inner());
        busy.insert(name.to_string())
            .then(|| Busy(name.to_string()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// Waits until nothing else is under way for `name`, and holds it: what then follows must
/// read the add-on again (it may have changed meanwhile).
pub async fn exclusive(name: &str) -> Busy {
    loop {
        if let Some(b) = Busy::take(name) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How far `a`'s standby is behind (asked of its primary, 5 s at most); `None` when it does
/// not stream or the primary does not answer.
pub async fn lag(cluster: &Cluster, a: &Addon) -> Option<Lag> {
    let ha = ha_of(a).ok()?;
    let host = host_of(cluster, &a.node);
    let question = ha.replication(a.standby_copy);
    let asked = ask(a, &host, a.port, &question);
    let out = tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .ok()?
        .ok()?;
    ha.parse_lag(&out)
}

/// Waits (up to 10 minutes) until `name`'s standby streams from its primary, then, with
/// `sync=on`, makes the primary count on it and records it in sync.
pub async fn make_sync(cluster: Arc<Cluster>, name: String) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let a = match current(&cluster, &name) {
            Ok(a) if a.ha() => a,
            _ => return,
        };
        if a.in_sync {
            return;
        }
        let Ok(ha) = ha_of(&a) else { return };
        if lag(&cluster, &a).await.is_some() {
            let host = host_of(&cluster, &a.node);
            match ask(
                &a,
                &host,
                a.port,
                &ha.wait_for_standby(a.sync, a.standby_copy),
            )
            .await
            {
                Ok(_) => {
                    let _ = cluster.store().set_in_sync(&name, a.sync);
                    let line = match (a.sync, ha.synchronous()) {
                        (true, true) => format!(
                            "{name}: the standby on {} is synchronous: commits are on both nodes",
                            a.standby_node
                        ),
                        (true, false) => format!(
                            "{name}: the replica on {} is in sync (asynchronous: a write may be on the primary alone for a moment)",
                            a.standby_node
                        ),
                        (false, _) => format!(
                            "{name}: the standby on {} streams (sync=off: writes do not count on it)",
                            a.standby_node
                        ),
                    };
                    cluster.system_log(&a.app, &name, line);
                    return;
                }
                Err(e) => {
                    tracing::warn!(addon = %name, error = %e, "making the standby count")
                }
            }
        }
        if Instant::now() > deadline {
            tracing::warn!(addon = %name, "the standby did not stream within 10 minutes");
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `sync=on|off`: records it, and with `off` tells the primary at once to stop counting on
/// its standby; with `on` it waits for the standby to stream again first ([`make_sync`]).
pub async fn set_sync(cluster: &Arc<Cluster>, a: &Addon, on: bool) -> Result<(), String> {
    if !on && a.ha() {
        let host = host_of(cluster, &a.node);
        ask(
            a,
            &host,
            a.port,
            &ha_of(a)?.wait_for_standby(false, a.standby_copy),
        )
        .await
        .map_err(|e| format!("the primary did not take it: {e}"))?;
    }
    cluster
        .store()
        .set_addon_sync(&a.name, on)
        .map_err(|e| e.to_string())?;
    if on && a.ha() {
        tokio::spawn(make_sync(cluster.clone(), a.name.clone()));
    }
    Ok(())
}

/// Nodes were found dead: the add-ons whose primary was there and whose standby is in sync
/// fail over; those whose standby was there get a new one elsewhere.
pub fn on_nodes_lost(cluster: &Arc<Cluster>, nodes: &[String]) {
    let Ok(all) = cluster.store().addons() else {
        return;
    };
    for a in all.into_iter().filter(Addon::ha) {
        if nodes.contains(&a.node) {
            if !a.in_sync {
                cluster.system_log(
                    &a.app,
                    &a.name,
                    format!(
                        "{}: the primary's node {} is lost and the standby is not in sync: no failover (it would lose writes); waiting for the node",
                        a.name, a.node
                    ),
                );
                continue;
            }
            let (why, lost) = (format!("node {} lost", a.node), a.node.clone());
            spawn_failover(cluster, a.name, why, move |now| now.node == lost);
        } else if nodes.contains(&a.standby_node) {
            let (c, name, gone) = (cluster.clone(), a.name.clone(), a.standby_node.clone());
            tokio::spawn(async move {
                if let Err(e) = replace_standby(&c, &name, &gone).await {
                    tracing::error!(addon = %name, error = %e, "a new standby");
                }
            });
        }
    }
}

/// Servers were restarted too often on their nodes (node, instance, last exit): an add-on
/// whose primary is one of them, and whose standby is in sync, fails over.
pub fn on_servers_crashed(cluster: &Arc<Cluster>, crashed: &[(String, String, String)]) {
    let Ok(all) = cluster.store().addons() else {
        return;
    };
    for a in all.into_iter().filter(|a| a.ha() && a.in_sync) {
        let id = addons::instance_id(&a);
        if let Some((node, _, exit)) = crashed.iter().find(|(n, i, _)| *i == id && *n == a.node) {
            let why = format!("its server on {node} cannot start: {exit}");
            spawn_failover(cluster, a.name, why, move |now| {
                addons::instance_id(now) == id && now.in_sync
            });
        }
    }
}

/// Fails `name` over once nothing else is under way for it, if `still` says the reason holds
/// of the add-on as it is then (a switchover may have moved its primary meanwhile).
fn spawn_failover(
    cluster: &Arc<Cluster>,
    name: String,
    why: String,
    still: impl Fn(&Addon) -> bool + Send + 'static,
) {
    let c = cluster.clone();
    tokio::spawn(async move {
        let busy = exclusive(&name).await;
        match current(&c, &name) {
            Ok(a) if a.ha() && a.in_sync && still(&a) => {}
            _ => return,
        }
        if let Err(e) = promote(&c, &name, &why).await {
            tracing::error!(addon = %name, error = %e, "failover");
            return;
        }
        drop(busy);
        // The old primary's node may stay away: its standby then goes elsewhere.
        let Ok(a) = current(&c, &name) else { return };
        let lost = c
            .store()
            .node(&a.standby_node)
            .ok()
            .flatten()
            .is_some_and(|n| n.state != "up");
        if lost {
            if let Err(e) = replace_standby(&c, &name, &a.standby_node).await {
                tracing::error!(addon = %name, error = %e, "a new standby");
            }
        }
    });
}

/// Promotes `name`'s standby and makes it the primary in the store (the lists follow; where
/// the apps' URL names the primary alone, they get a new release with the new one).
async fn promote(cluster: &Arc<Cluster>, name: &str, why: &str) -> Result<(), String> {
    let a = current(cluster, name)?;
    if !a.ha() {
        return Err(format!("{name} has no standby"));
    }
    let ha = ha_of(&a)?;
    let host = host_of(cluster, &a.standby_node);
    let out = ask(&a, &host, a.standby_port, &ha.promote()).await?;
    if !ha.promoted(&out) {
        return Err(format!("the standby was not promoted: {out}"));
    }
    // It takes writes from now on: the store says so first, whatever follows fails.
    let c = cluster.clone();
    let (n, w) = (name.to_string(), why.to_string());
    tokio::task::spawn_blocking(move || {
        c.change(|s| {
            s.promote_standby(&n, &w)?;
            repoint_apps(s, &n)
        })
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    // Alone until its new standby streams: writes must not wait for one that is not there.
    if let Err(e) = ask(&a, &host, a.standby_port, &ha.after_promote()).await {
        tracing::error!(addon = %name, error = %e, "the promoted server did not take its settings (it waits for its new standby)");
    }
    cluster.system_log(
        &a.app,
        name,
        format!(
            "{name}: failed over ({why}): the primary is on {} now; {} rejoins as its standby",
            a.standby_node, a.node
        ),
    );
    tokio::spawn(make_sync(cluster.clone(), name.to_string()));
    Ok(())
}

/// Writes the add-on's URL as it is now into every attached app's config (a new release for
/// those where it changed).
fn repoint_apps(s: &mut crate::store::Store, name: &str) -> Result<(), crate::store::StoreError> {
    if let Some(now) = s.addon(name)? {
        if let Ok(url) = addons::url_of(s, &now) {
            s.set_addon_password(name, &now.password, &url)?;
        }
    }
    Ok(())
}

/// The standby's node (`gone`) is lost: a new standby on another node that is up (the one
/// with the fewest add-on servers), copied from the primary, which from then on counts on
/// that one only. None free: said, and it waits.
pub async fn replace_standby(cluster: &Arc<Cluster>, name: &str, gone: &str) -> Result<(), String> {
    let _busy = exclusive(name).await;
    let a = current(cluster, name)?;
    if !a.ha() || a.standby_node != gone {
        return Ok(());
    }
    let c = cluster.clone();
    let n = name.to_string();
    let moved = tokio::task::spawn_blocking(move || {
        let mut store = c.store();
        let node = addons::standby_node(&store, &a)?;
        let Some(node) = node else {
            return Ok(None);
        };
        store.move_standby(&n, &node)?;
        repoint_apps(&mut store, &n)?;
        c.replan(&mut store)?;
        Ok::<_, crate::store::StoreError>(Some(node))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let a = current(cluster, name)?;
    let ha = ha_of(&a)?;
    if moved.is_some() && a.sync {
        // The old standby may still stream (its node only cut off from the master): from
        // now on commits wait for the new one.
        let host = host_of(cluster, &a.node);
        if let Err(e) = ask(
            &a,
            &host,
            a.port,
            &ha.wait_for_standby(true, a.standby_copy),
        )
        .await
        {
            tracing::warn!(addon = %name, error = %e, "telling the primary of its new standby");
        }
    }
    let line = match &moved {
        Some(node) => format!(
            "{name}: the standby's node {gone} is lost: a new standby on {node}, copied from the primary"
        ),
        None => {
            let cost = if !a.sync {
                "writes go on, on the primary alone"
            } else if ha.synchronous() {
                "commits wait for it (or `addons:settings sync=off` to go on alone)"
            } else {
                "writes are refused after 10 s without it (or `addons:settings sync=off` to go on alone)"
            };
            format!("{name}: the standby's node {gone} is lost and no other node is free: waiting for it; {cost}")
        }
    };
    cluster.system_log(&a.app, name, line);
    if moved.is_some() {
        tokio::spawn(make_sync(cluster.clone(), name.to_string()));
    }
    Ok(())
}

/// `addons:failover`: the standby takes over with no write lost; how long writes were refused.
pub async fn switch_over(cluster: &Arc<Cluster>, name: &str) -> Result<Duration, String> {
    let a = current(cluster, name)?;
    if !a.ha() {
        return Err(format!("{name} has no standby (addons:create --ha)"));
    }
    if !a.in_sync {
        return Err(format!(
            "{name}'s standby is not in sync yet (see addons:info): a switchover now could lose writes"
        ));
    }
    let Some(_busy) = Busy::take(name) else {
        return Err(format!("{name} is failing over already"));
    };
    let ha = ha_of(&a)?;
    let started = Instant::now();
    let (ph, sh) = (host_of(cluster, &a.node), host_of(cluster, &a.standby_node));
    // No new writes on the primary, and none in flight.
    ask(&a, &ph, a.port, &ha.pause_writes(&addons::service(&a))).await?;
    let done = async {
        let pos = ask(&a, &ph, a.port, &ha.position()).await?;
        let pos = ha
            .parse_position(&pos)
            .ok_or_else(|| format!("the primary's position: {pos}"))?;
        // Everything it wrote is on the standby before it takes over.
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            let out = ask(&a, &sh, a.standby_port, &ha.applied(&pos)).await;
            if out.as_deref().is_ok_and(|o| ha.caught_up(o, &pos)) {
                break;
            }
            if Instant::now() > deadline {
                return Err("the standby did not catch up within 8 s: nothing changed".to_string());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        promote(cluster, name, "switchover (addons:failover)").await
    }
    .await;
    if let Err(e) = done {
        // Writes back on where they were, unless the standby took over after all.
        if current(cluster, name).is_ok_and(|now| now.node == a.node) {
            let _ = ask(&a, &ph, a.port, &ha.resume_writes()).await;
        }
        return Err(e);
    }
    Ok(started.elapsed())
}
