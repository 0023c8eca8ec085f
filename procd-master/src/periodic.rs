//! The master's work at rest: what runs on a clock rather than on a request or a message.
//! docs/architecture.md ("Periodic work") lists each task with its interval and cost;
//! `bench/master.sh` measures them with 5,000 nodes heartbeating.

use crate::cluster::Cluster;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often dead nodes are looked for and a route table changed by heartbeats is sent.
pub const LIVENESS: Duration = Duration::from_millis(250);
/// How often log files older than the retention are removed.
pub const PRUNE_LOGS: Duration = Duration::from_secs(60);

/// Runs the periodic tasks until `shutdown`: liveness (and the route table, when heartbeats
/// changed it) every [`LIVENESS`], a republish of what peers are behind on every
/// `republish` (and expired tokens dropped), log pruning every [`PRUNE_LOGS`].
pub async fn run(c: Arc<Cluster>, republish: Duration, shutdown: CancellationToken) {
    let mut live = tokio::time::interval(LIVENESS);
    let mut again = tokio::time::interval(republish.max(Duration::from_millis(100)));
    let mut prune_logs = tokio::time::interval(PRUNE_LOGS);
    for t in [&mut live, &mut again, &mut prune_logs] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = live.tick() => {
                let c2 = c.clone();
                let lost = tokio::task::spawn_blocking(move || {
                    let lost = c2.check_liveness();
                    // Web instances come and go with heartbeats.
                    c2.refresh_routes_if_stale();
                    lost
                })
                .await
                .unwrap_or_default();
                if !lost.is_empty() {
                    crate::failover::on_nodes_lost(&c, &lost);
                }
                let crashed = c.take_crashed();
                if !crashed.is_empty() {
                    crate::failover::on_servers_crashed(&c, &crashed);
                }
            }
            _ = again.tick() => {
                c.republish();
                let _ = c.store().drop_expired_tokens();
            }
            _ = prune_logs.tick() => {
                let c = c.clone();
                let _ = tokio::task::spawn_blocking(move || c.logs.prune()).await;
            }
        }
    }
}
