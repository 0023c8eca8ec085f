//! `--dashboard`: the server time of the dashboard's pages (`/ui`) on a cluster of 100 apps
//! and 1,000 instances on 10 nodes, every instance up (heartbeats through the real bus
//! handler): the cluster page an admin sees, one app's page, and the live data the app page
//! polls. Median and slowest of 20 renders each.

use super::{collect, heartbeat, keys_file, median, ms, node_name, Bus, Params, Table};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use zeroku_bus::Keys;
use zeroku_conf::wire::Message;
use zeroku_master::api::auth::Caller;
use zeroku_master::store::{BuildMeta, Formation, NewRelease, Role, Store, StoreError};

const APPS: usize = 100;
const PER_APP: u32 = 10;

fn populate(store: &mut Store, p: &Params) -> Vec<(String, Keys)> {
    let mut keys = Vec::new();
    for i in 1..=p.nodes {
        let k = Keys::generate().expect("CURVE keys");
        store
            .upsert_node(&node_name(i), p.node_mb, "127.0.0.1", &k.public_z85())
            .expect("node");
        keys.push((node_name(i), k));
    }
    let types = BTreeMap::from([("web".to_string(), "./server".to_string())]);
    let build = BuildMeta::default();
    let mut formation = Vec::new();
    for a in 1..=APPS {
        let app = format!("app{a:03}");
        store.create_app(&app).expect("app");
        let sha = format!("{a:064x}");
        for v in 0..5 {
            let new = NewRelease {
                slug_sha256: &sha,
                slug_size: 1 << 20,
                process_types: &types,
                description: if v == 0 { "Deploy" } else { "Set config" },
                build: &build,
            };
            store.create_release(&app, new, 64).expect("release");
        }
        formation.push(Formation {
            app,
            proc_type: "web".into(),
            quantity: PER_APP,
            memory_mb: 64,
        });
    }
    store.set_formation(&formation).expect("formation");
    keys
}

pub fn run(p: &Params) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::open(&dir.path().join("master.db")).expect("store");
    let node_keys = populate(&mut store, p);
    let keys_file = keys_file(dir.path(), &node_keys);
    let bus = Bus::up(dir.path(), store, &node_keys, &keys_file, p);
    let c = bus.cluster.clone();
    c.change(|_| Ok::<_, StoreError>(())).expect("replan");
    collect(&bus.lines, p.nodes, Duration::from_secs(60));
    for (n, k) in &node_keys {
        c.on_message(
            &k.public_z85(),
            Message::Heartbeat(heartbeat(&c, n, p.node_mb, None)),
        );
    }
    let admin = Caller {
        role: Role::Admin,
        node: None,
        token: String::new(),
        admin: true,
    };
    let time = |path: &str| {
        let mut took = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let r = zeroku_master::ui::render(&c, None, &admin, path);
            took.push(t.elapsed());
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
        let max = took.iter().max().copied().unwrap_or_default();
        format!("{} (slowest {})", ms(median(took)), ms(max))
    };
    let mut t = Table(Vec::new());
    t.row(
        "shape",
        format!(
            "{APPS} apps × {PER_APP} web instances = {} on {} nodes, all up",
            APPS * PER_APP as usize,
            p.nodes
        ),
    );
    t.row("cluster page (/ui/, as an admin)", time("/ui"));
    t.row("an app's page (/ui/apps/app001)", time("/ui/apps/app001"));
    t.row(
        "its live data (/ui/apps/app001/live)",
        time("/ui/apps/app001/live"),
    );
    bus.down();
    t.print("Dashboard, server time per page (median of 20)");
}
