//! The worker's Prometheus `/metrics` (on `[worker] metrics`, `127.0.0.1:9182` by default):
//! its instances as its last heartbeat said, and what each native process uses now.
//!
//! The agent keeps a copy of each heartbeat it sends ([`Snapshot`]); memory and CPU are read
//! from `/proc` when Prometheus asks (every process of an instance is in the session its
//! first process leads), so a worker nobody scrapes spends nothing on them. Instances in
//! containers report their state and restarts only.
//!
//! Families (all `zeroku_worker_`): `list_generation`, `instances{state}`,
//! `instance_restarts{app,type,instance}`, `instance_memory_bytes{app,type,instance}` (resident
//! set of its processes), `instance_cpu_seconds_total{app,type,instance}` (user and system).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroku_conf::names::split_instance;
use zeroku_conf::InstanceStatus;
use zeroku_metrics::{Kind, Text};

/// Linux's page size and clock ticks on the machines zeroku runs on (x86_64, aarch64).
const PAGE_BYTES: u64 = 4096;
const TICKS_PER_SEC: f64 = 100.0;

/// The last heartbeat's generation and instances.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub generation: u64,
    pub instances: Vec<InstanceStatus>,
}

/// What the worker shows at `/metrics`; the agent updates the snapshot.
#[derive(Debug, Default, Clone)]
pub struct Metrics(pub Arc<Mutex<Snapshot>>);

impl Metrics {
    pub fn set(&self, generation: u64, instances: &[InstanceStatus]) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.generation = generation;
        s.instances.clear();
        s.instances.extend_from_slice(instances);
    }
}

/// Resident bytes and CPU ticks of every process, by the session it is in.
fn sessions() -> HashMap<u32, (u64, u64)> {
    let mut by = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return by;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((session, rss, ticks)) = parse_stat(&stat) {
            let s = by.entry(session).or_insert((0, 0));
            s.0 += rss * PAGE_BYTES;
            s.1 += ticks;
        }
    }
    by
}

/// (session, resident pages, user + system ticks) from a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<(u32, u64, u64)> {
    // The command may hold spaces and parentheses: the fields start after the last `)`.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // Field 3 (state) is f[0]: session is field 6, utime 14, stime 15, rss 24.
    let session = f.get(3)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let rss = f.get(21)?.parse().ok()?;
    Some((session, rss, ticks))
}

/// What each instance used since the last report (`last`: its CPU ticks and restarts then),
/// for the master's per-minute metrics: read from `/proc` once per report.
pub fn usage(
    node: &str,
    instances: &[InstanceStatus],
    last: &mut HashMap<String, (u64, u32)>,
) -> zeroku_conf::usage::Usage {
    let used = sessions();
    let mut out = zeroku_conf::usage::Usage {
        node: node.to_string(),
        instances: Vec::new(),
    };
    let mut seen = HashMap::new();
    for i in instances {
        let (rss, ticks) = match (i.container.is_none(), i.pid) {
            (true, Some(pid)) => used.get(&pid).copied().unwrap_or((0, 0)),
            _ => (0, 0),
        };
        // An instance first seen (or a worker just started): what it has is its baseline.
        let (t0, r0) = last.get(&i.id).copied().unwrap_or((ticks, i.restarts));
        out.instances.push(zeroku_conf::usage::InstanceUsage {
            id: i.id.clone(),
            memory_bytes: rss,
            cpu_ms: (ticks.saturating_sub(t0) as f64 * 1000.0 / TICKS_PER_SEC) as u64,
            restarts: i.restarts.saturating_sub(r0),
        });
        seen.insert(i.id.clone(), (ticks, i.restarts));
    }
    *last = seen;
    out
}

impl zeroku_metrics::Source for Metrics {
    fn render(&self) -> String {
        let snap = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut t = Text::new();
        t.single(
            "zeroku_worker_list_generation",
            Kind::Gauge,
            "The generation of the newest list from the master this worker applied.",
            snap.generation as f64,
        );
        let mut states: std::collections::BTreeMap<String, u32> = Default::default();
        for i in &snap.instances {
            *states.entry(i.state.to_string()).or_default() += 1;
        }
        let name = "zeroku_worker_instances";
        t.family(name, Kind::Gauge, "Instances on this node, by state.");
        for (state, n) in &states {
            t.sample(name, &[("state", state)], f64::from(*n));
        }
        let labels = |i: &InstanceStatus| {
            let (app, kind) = split_instance(&i.id);
            [app.to_string(), kind.to_string(), i.id.clone()]
        };
        let name = "zeroku_worker_instance_restarts";
        t.family(
            name,
            Kind::Gauge,
            "Restarts of each instance since it was created at its release.",
        );
        for i in &snap.instances {
            let [a, k, id] = labels(i);
            t.sample(
                name,
                &[("app", &a), ("type", &k), ("instance", &id)],
                f64::from(i.restarts),
            );
        }
        let used = sessions();
        let native: Vec<(&InstanceStatus, (u64, u64))> = snap
            .instances
            .iter()
            .filter(|i| i.container.is_none())
            .filter_map(|i| Some((i, *used.get(&i.pid?)?)))
            .collect();
        let name = "zeroku_worker_instance_memory_bytes";
        t.family(
            name,
            Kind::Gauge,
            "Resident memory of each native instance's processes.",
        );
        for (i, (rss, _)) in &native {
            let [a, k, id] = labels(i);
            t.sample(
                name,
                &[("app", &a), ("type", &k), ("instance", &id)],
                *rss as f64,
            );
        }
        let name = "zeroku_worker_instance_cpu_seconds_total";
        t.family(
            name,
            Kind::Counter,
            "CPU time (user and system) of each native instance's processes.",
        );
        for (i, (_, ticks)) in &native {
            let [a, k, id] = labels(i);
            t.sample(
                name,
                &[("app", &a), ("type", &k), ("instance", &id)],
                *ticks as f64 / TICKS_PER_SEC,
            );
        }
        t.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_commands_parse() {
        let line = "4242 (py (x) y) S 1 4242 4242 0 -1 4194560 1 0 0 0 30 12 0 0 20 0 1 0 99 1000 250 18446744073709551615";
        assert_eq!(parse_stat(line), Some((4242, 250, 42)));
        assert_eq!(parse_stat("garbage"), None);
        // This process: in some session, with some memory.
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat(&me).is_some_and(|(_, rss, _)| rss > 0));
    }
}
