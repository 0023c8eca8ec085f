//! The master's Prometheus `/metrics` (on `[master] metrics`, `127.0.0.1:9181` by default):
//! the cluster as the master sees it, rendered when Prometheus asks (one read of nodes, apps,
//! placements and add-ons, and the heartbeats in memory), so nothing is spent between scrapes.
//!
//! Families (all `zeroku_master_`): `nodes{state}`, `node_capacity_mb{node}`, `apps`,
//! `instances_placed`, `instances{state}` and `instance_restarts{app}` (from the last
//! heartbeat of each live node), `addons{kind}`, `addon_in_sync{addon}` and
//! `addon_failovers_total{addon}` (add-ons with a standby), `heartbeats_total`,
//! `lists_published_total`, `heartbeat_interval_seconds`, `dead_after_seconds`.

use crate::cluster::Cluster;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use zeroku_metrics::{Kind, Text};

/// What the master shows at `/metrics`.
pub struct Metrics(pub Arc<Cluster>);

impl zeroku_metrics::Source for Metrics {
    fn render(&self) -> String {
        let c = &self.0;
        let mut t = Text::new();
        // What the store says; a store that does not answer leaves these out.
        let store = c.store();
        if let Ok(nodes) = store.nodes() {
            let mut by_state: BTreeMap<&str, u32> = BTreeMap::new();
            for n in &nodes {
                *by_state.entry(n.state.as_str()).or_default() += 1;
            }
            let name = "zeroku_master_nodes";
            t.family(name, Kind::Gauge, "Nodes that joined, by state (up, dead).");
            for (state, n) in by_state {
                t.sample(name, &[("state", state)], f64::from(n));
            }
            let name = "zeroku_master_node_capacity_mb";
            t.family(
                name,
                Kind::Gauge,
                "Memory the scheduler may place on each node, MiB.",
            );
            for n in &nodes {
                t.sample(name, &[("node", &n.name)], n.capacity_mb as f64);
            }
        }
        if let Ok(apps) = store.apps() {
            t.single(
                "zeroku_master_apps",
                Kind::Gauge,
                "Apps.",
                apps.len() as f64,
            );
        }
        if let Ok(p) = store.placements() {
            let placed = p.iter().filter(|p| p.node.is_some()).count();
            t.single(
                "zeroku_master_instances_placed",
                Kind::Gauge,
                "Instances the scheduler placed on a node.",
                placed as f64,
            );
        }
        if let Ok(addons) = store.addons() {
            let mut by_kind: BTreeMap<&str, u32> = BTreeMap::new();
            for a in &addons {
                *by_kind.entry(a.kind.as_str()).or_default() += 1;
            }
            let name = "zeroku_master_addons";
            t.family(name, Kind::Gauge, "Add-ons, by kind.");
            for (kind, n) in by_kind {
                t.sample(name, &[("kind", kind)], f64::from(n));
            }
            let ha: Vec<_> = addons.iter().filter(|a| a.ha()).collect();
            let name = "zeroku_master_addon_in_sync";
            t.family(
                name,
                Kind::Gauge,
                "1 when the add-on's standby is in sync (it may take over), 0 otherwise.",
            );
            for a in &ha {
                t.sample(name, &[("addon", &a.name)], f64::from(u8::from(a.in_sync)));
            }
            let name = "zeroku_master_addon_failovers_total";
            t.family(
                name,
                Kind::Counter,
                "Failovers of each add-on with a standby.",
            );
            for a in &ha {
                t.sample(name, &[("addon", &a.name)], f64::from(a.failovers));
            }
        }
        drop(store);
        // What the live nodes last said.
        let (mut states, mut restarts) = (BTreeMap::new(), BTreeMap::new());
        for l in c.live().values().filter(|l| l.up) {
            for i in l.heartbeat.iter().flat_map(|h| &h.instances) {
                *states.entry(i.state.to_string()).or_insert(0u64) += 1;
                let app = zeroku_conf::names::split_instance(&i.id).0.to_string();
                *restarts.entry(app).or_insert(0u64) += u64::from(i.restarts);
            }
        }
        let name = "zeroku_master_instances";
        t.family(
            name,
            Kind::Gauge,
            "Instances the live nodes run, by state (their last heartbeats).",
        );
        for (state, n) in &states {
            t.sample(name, &[("state", state)], *n as f64);
        }
        let name = "zeroku_master_instance_restarts";
        t.family(
            name,
            Kind::Gauge,
            "Restarts of each app's instances since they were created at their release.",
        );
        for (app, n) in &restarts {
            t.sample(name, &[("app", app)], *n as f64);
        }
        t.single(
            "zeroku_master_heartbeats_total",
            Kind::Counter,
            "Heartbeats taken from the bus since the master started.",
            c.counters.heartbeats.load(Relaxed) as f64,
        );
        t.single(
            "zeroku_master_lists_published_total",
            Kind::Counter,
            "Node lists published since the master started (each a new generation).",
            c.counters.lists.load(Relaxed) as f64,
        );
        let pace = c.pace();
        t.single(
            "zeroku_master_heartbeat_interval_seconds",
            Kind::Gauge,
            "How often nodes are asked to heartbeat now.",
            pace.heartbeat.as_secs_f64(),
        );
        t.single(
            "zeroku_master_dead_after_seconds",
            Kind::Gauge,
            "How long a silent node has until it is dead and its instances move.",
            pace.dead_after.as_secs_f64(),
        );
        t.finish()
    }
}
