//! PostgreSQL add-ons with a standby (`addons:create postgres --ha`): the master decides.
//!
//! - **In sync**: once the standby streams from the primary, the primary is told to wait for
//!   it on every commit (`synchronous_standby_names = 'ANY 1 (zeroku_standby)'`, with
//!   `sync=on`): from then on a commit an app saw acknowledged is on both nodes, and the
//!   standby may take over. [`make_sync`] waits for that and records it.
//! - **Failover** ([`on_nodes_lost`]): when the primary's node is lost (the dead timeout) and
//!   its standby is in sync, the standby is promoted (`pg_promote()`). The old primary cannot
//!   acknowledge a commit any more: each one waits for a synchronous standby, and the only one
//!   it had no longer follows it. When its node is back, its worker finds it is to follow the
//!   new primary and starts it again as a standby (`pg_rewind` onto the new history). Apps
//!   keep their URL: it names both servers, and libpq keeps the one that takes writes.
//! - **Switchover** ([`switch_over`], `addons:failover`): no write is lost: the primary stops
//!   taking writes (`default_transaction_read_only`, its sessions ended), the standby replays
//!   everything it has, then is promoted.
//!
//! Nothing here runs at rest: each task polls its servers only while it waits for them.

use crate::addons;
use crate::cluster::Cluster;
use crate::store::Addon;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroku_services::Postgres;

/// The name the standby streams under.
pub const STANDBY_NAME: &str = "zeroku_standby";

/// Runs `sql` as the server's administrator on `host:port`; what it printed.
async fn admin(a: &Addon, host: &str, port: u16, sql: &str) -> Result<String, String> {
    let mut service = addons::service(a);
    service.port = port;
    let mut tool = Postgres::admin_psql(&service, host).map_err(|e| e.to_string())?;
    tool.args
        .extend(["--no-align".into(), "--tuples-only".into()]);
    crate::backups::run_with_input(&tool, &format!("{sql}\n"))
        .await
        .map(|s| s.trim().to_string())
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

/// Waits (up to 10 minutes) until `name`'s standby streams from its primary, then, with
/// `sync=on`, makes the primary wait for it on every commit and records it in sync.
pub async fn make_sync(cluster: Arc<Cluster>, name: String) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let a = match current(&cluster, &name) {
            Ok(a) if a.ha() && a.kind == "postgres" => a,
            _ => return,
        };
        if a.in_sync {
            return;
        }
        let host = host_of(&cluster, &a.node);
        let streaming = admin(
            &a,
            &host,
            a.port,
            &format!(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}' AND state = 'streaming'"
            ),
        )
        .await;
        if streaming.as_deref() == Ok("1") {
            let names = if a.sync {
                format!("ANY 1 ({STANDBY_NAME})")
            } else {
                String::new()
            };
            let set = admin(
                &a,
                &host,
                a.port,
                &format!(
                    "ALTER SYSTEM SET synchronous_standby_names = '{names}'; SELECT pg_reload_conf();"
                ),
            )
            .await;
            match set {
                Ok(_) => {
                    let _ = cluster.store().set_in_sync(&name, a.sync);
                    let line = if a.sync {
                        format!(
                            "{name}: the standby on {} is synchronous: commits are on both nodes",
                            a.standby_node
                        )
                    } else {
                        format!("{name}: the standby on {} streams (sync=off: commits do not wait for it)", a.standby_node)
                    };
                    cluster.system_log(&a.app, &name, line);
                    return;
                }
                Err(e) => {
                    tracing::warn!(addon = %name, error = %e, "making the standby synchronous")
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

/// `sync=on|off`: records it, and with `off` tells the primary at once to stop waiting for
/// its standby; with `on` it waits for the standby to stream again first ([`make_sync`]).
pub async fn set_sync(cluster: &Arc<Cluster>, a: &Addon, on: bool) -> Result<(), String> {
    if !on && a.ha() {
        let host = host_of(cluster, &a.node);
        admin(
            a,
            &host,
            a.port,
            "ALTER SYSTEM SET synchronous_standby_names = ''; SELECT pg_reload_conf();",
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
/// fail over.
pub fn on_nodes_lost(cluster: &Arc<Cluster>, nodes: &[String]) {
    let Ok(all) = cluster.store().addons() else {
        return;
    };
    for a in all {
        if !(a.ha() && nodes.contains(&a.node)) {
            continue;
        }
        if !a.in_sync {
            cluster.system_log(
                &a.app,
                &a.name,
                format!(
                    "{}: the primary's node {} is lost and the standby is not in sync: no failover (it would lose commits); waiting for the node",
                    a.name, a.node
                ),
            );
            continue;
        }
        let (c, name) = (cluster.clone(), a.name.clone());
        let why = format!("node {} lost", a.node);
        tokio::spawn(async move {
            if let Err(e) = promote(&c, &name, &why).await {
                tracing::error!(addon = %name, error = %e, "failover");
            }
        });
    }
}

/// Promotes `name`'s standby and makes it the primary in the store (the lists follow).
async fn promote(cluster: &Arc<Cluster>, name: &str, why: &str) -> Result<(), String> {
    let a = current(cluster, name)?;
    if !a.ha() {
        return Err(format!("{name} has no standby"));
    }
    let host = host_of(cluster, &a.standby_node);
    let out = admin(&a, &host, a.standby_port, "SELECT pg_promote(true, 30);").await?;
    if out != "t" {
        return Err(format!("the standby was not promoted: {out}"));
    }
    // Alone until its new standby streams: commits must not wait for one that is not there.
    // The checkpoint writes the new timeline into its control file, where pg_rewind on the
    // old primary looks for it (until then it would find nothing to rewind).
    admin(
        &a,
        &host,
        a.standby_port,
        "ALTER SYSTEM SET synchronous_standby_names = ''; ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf(); CHECKPOINT;",
    )
    .await?;
    let c = cluster.clone();
    let (n, w) = (name.to_string(), why.to_string());
    tokio::task::spawn_blocking(move || c.change(|s| s.promote_standby(&n, &w)))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
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

/// `addons:failover`: the standby takes over with no write lost; how long writes were refused.
pub async fn switch_over(cluster: &Arc<Cluster>, name: &str) -> Result<Duration, String> {
    let a = current(cluster, name)?;
    if !a.ha() {
        return Err(format!(
            "{name} has no standby (addons:create postgres --ha)"
        ));
    }
    if !a.in_sync {
        return Err(format!(
            "{name}'s standby is not in sync yet (see addons:info): a switchover now could lose commits"
        ));
    }
    let started = Instant::now();
    let (ph, sh) = (host_of(cluster, &a.node), host_of(cluster, &a.standby_node));
    let db = zeroku_services::postgres_db_name(&a.name);
    // No new writes on the primary, and none in flight.
    admin(
        &a,
        &ph,
        a.port,
        &format!(
            "ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf(); \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid();"
        ),
    )
    .await?;
    let lsn = admin(&a, &ph, a.port, "SELECT pg_current_wal_lsn();").await?;
    // Everything it wrote is on the standby before it takes over.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let caught_up = admin(
            &a,
            &sh,
            a.standby_port,
            &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn;"),
        )
        .await?;
        if caught_up == "t" {
            break;
        }
        if Instant::now() > deadline {
            // Writes back on where they were.
            let _ = admin(
                &a,
                &ph,
                a.port,
                "ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();",
            )
            .await;
            return Err("the standby did not catch up within 10 s: nothing changed".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    promote(cluster, name, "switchover (addons:failover)").await?;
    Ok(started.elapsed())
}
