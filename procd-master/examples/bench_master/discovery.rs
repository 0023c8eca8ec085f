//! `--discovery`: one change of a service's providers reaching every requiring instance.
//!
//! `--nodes` nodes (default 10) each run one `web` instance of `billing`, which provides
//! `api` (zeroku.toml), and `--requirers` instances (default 1,000) of `shop`, which requires
//! it, are spread over them. Every node heartbeats its instances up, then one provider goes
//! down and comes back, three times: each time, the time from the heartbeat that says so to
//! the master having published (the liveness tick's work: routes, providers, re-plan), to
//! every node's subscriber having its new list, and the bytes those lists took on the bus.

use super::{collect, heartbeat, keys_file, median, ms, node_name, timed, Bus, Params, Table};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zeroku_bus::Keys;
use zeroku_conf::wire::Message;
use zeroku_master::store::{BuildMeta, Formation, NewRelease, Store, StoreError};

fn release(store: &mut Store, app: &str, types: &[(&str, &str)], toml: &str) {
    let types: BTreeMap<String, String> = types
        .iter()
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect();
    let build = BuildMeta {
        manifest: zeroku_conf::manifest::parse(toml).expect("manifest"),
        ..BuildMeta::default()
    };
    let sha = format!("{:064x}", app.len() as u128 * 0x1234_5678_9abc_def1);
    let new = NewRelease {
        slug_sha256: &sha,
        slug_size: 1 << 20,
        process_types: &types,
        description: "Deploy",
        build: &build,
    };
    store.create_release(app, new, 64).expect("release");
}

fn populate(store: &mut Store, p: &Params, requirers: u32) -> Vec<(String, Keys)> {
    let mut keys = Vec::new();
    for i in 1..=p.nodes {
        let k = Keys::generate().expect("CURVE keys");
        store
            .upsert_node(&node_name(i), p.node_mb, "127.0.0.1", &k.public_z85())
            .expect("node");
        keys.push((node_name(i), k));
    }
    store.create_app("billing").expect("app");
    release(
        store,
        "billing",
        &[("web", "./api --port $PORT")],
        "[provides.api]\nattributes = { env = \"prod\" }\n",
    );
    store.create_app("shop").expect("app");
    release(
        store,
        "shop",
        &[("worker", "./shop")],
        "[requires.api]\napp = \"billing\"\nattributes = { env = \"prod\" }\non_change = \"signal:HUP\"\n",
    );
    store
        .set_formation(&[
            Formation {
                app: "billing".into(),
                proc_type: "web".into(),
                quantity: p.nodes as u32,
                memory_mb: 64,
            },
            Formation {
                app: "shop".into(),
                proc_type: "worker".into(),
                quantity: requirers,
                memory_mb: 64,
            },
        ])
        .expect("formation");
    keys
}

pub fn run(p: &Params, requirers: u32) {
    println!(
        "bench_master --discovery: {} nodes, each with one provider of billing/api; {requirers} instances of shop requiring it",
        p.nodes
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("master.db")).expect("store");
    let node_keys = populate(&mut store, p, requirers);
    let keys_file = keys_file(dir.path(), &node_keys);
    let bus = Bus::up(dir.path(), store, &node_keys, &keys_file, p);
    let c = bus.cluster.clone();
    c.change(|_| Ok::<_, StoreError>(())).expect("replan");
    collect(&bus.lines, p.nodes, Duration::from_secs(60));
    let names: Vec<String> = (1..=p.nodes).map(node_name).collect();
    let who = |n: &str| {
        node_keys
            .iter()
            .find(|(m, _)| m == n)
            .map(|(_, k)| k.public_z85())
            .expect("node key")
    };
    // Every provider up: the requirers' lists carry all of them.
    for n in &names {
        c.on_message(
            &who(n),
            Message::Heartbeat(heartbeat(&bus.cluster, n, p.node_mb, None)),
        );
    }
    c.refresh_routes_if_stale();
    collect(&bus.lines, p.nodes, Duration::from_secs(60));
    let provider = bus
        .cluster
        .list(&names[0])
        .instances
        .iter()
        .find(|s| s.app == "billing")
        .map(|s| s.id.clone())
        .expect("a provider on the first node");

    let (mut t_master, mut t_all, mut bytes, mut lists) = (vec![], vec![], vec![], vec![]);
    for round in 0..6 {
        let down = (round % 2 == 0).then_some(provider.as_str());
        let hb = heartbeat(&bus.cluster, &names[0], p.node_mb, down);
        let t0 = Instant::now();
        let ((), t) = timed(|| {
            c.on_message(&who(&names[0]), Message::Heartbeat(hb));
            // What the next liveness tick does.
            c.refresh_routes_if_stale();
        });
        let got = collect(&bus.lines, p.nodes, Duration::from_secs(60));
        t_master.push(t);
        t_all.push(got.iter().map(|g| g.at).max().map_or(t, |a| a - t0));
        bytes.push(got.iter().map(|g| g.bytes as u64).sum::<u64>());
        lists.push(got.len());
    }
    bus.down();
    bytes.sort_unstable();
    let total_bytes = bytes[bytes.len() / 2];
    let mut t = Table(Vec::new());
    t.row(
        "shape",
        format!(
            "{} nodes, {} providers, {requirers} requiring instances",
            p.nodes, p.nodes
        ),
    );
    t.row(
        "one provider down or back: heartbeat → master published (median of 6)",
        ms(median(t_master)),
    );
    t.row(
        "  → every node's subscriber has its new list",
        ms(median(t_all)),
    );
    t.row(
        "lists sent (one per node running requirers)",
        format!("{:?}", lists),
    );
    t.row(
        "bytes on the bus for one change (CURVE payloads, all nodes)",
        format!(
            "{} ({} per node, {} per requiring instance)",
            total_bytes,
            total_bytes / p.nodes.max(1) as u64,
            total_bytes / u64::from(requirers.max(1))
        ),
    );
    t.print("discovery: one change, every requiring instance told");
}
