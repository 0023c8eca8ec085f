//! A day of one app's per-minute metrics in a store on disk: an app with two process types
//! (3 web and 2 worker instances) on two nodes behind two frontends, every minute reported by
//! each. Prints the store's growth per app and day and the time one report takes.

use std::time::Instant;
use zeroku_conf::usage::{AppTraffic, InstanceUsage, LATENCY_BUCKETS};
use zeroku_master::store::{Store, KEEP_MINUTES};

pub fn run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("state.db");
    let mut s = Store::open(&path).expect("store");
    s.create_app("shop").expect("app");
    let size = |s: &Store| {
        s.checkpoint().expect("checkpoint");
        std::fs::metadata(&path).map_or(0, |m| m.len())
    };
    let before = size(&s);
    let usage = |n: u64, ids: &[&str]| -> Vec<InstanceUsage> {
        ids.iter()
            .map(|id| InstanceUsage {
                id: id.to_string(),
                memory_bytes: 50_000_000 + n * 1000,
                cpu_ms: 1200 + n % 100,
                restarts: 0,
            })
            .collect()
    };
    let traffic = |n: u64| {
        vec![AppTraffic {
            app: "shop".into(),
            classes: [0, 6000 + n, 10, 40, n % 3],
            buckets: (0..=LATENCY_BUCKETS.len() as u64)
                .map(|b| 500 * b + n)
                .collect(),
        }]
    };
    let start = 29_000_000u64;
    let mut took = Vec::new();
    for m in 0..KEEP_MINUTES {
        let t = Instant::now();
        s.add_usage_at(
            start + m,
            "n1",
            &usage(m, &["shop.web.1", "shop.web.2", "shop.worker.1"]),
        )
        .expect("usage");
        s.add_usage_at(start + m, "n2", &usage(m, &["shop.web.3", "shop.worker.2"]))
            .expect("usage");
        s.add_traffic_at(start + m, "edge", &traffic(m))
            .expect("traffic");
        s.add_traffic_at(start + m, "edge2", &traffic(m))
            .expect("traffic");
        took.push(t.elapsed() / 4);
    }
    let grown = size(&s).saturating_sub(before);
    took.sort();
    println!();
    println!("### Per-app metrics in the store (one day, {KEEP_MINUTES} minutes)");
    println!();
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| rows per app and day (2 types × 2 nodes + 2 frontends) | {} |",
        KEEP_MINUTES * 6
    );
    println!(
        "| store growth per app and day | {:.1} MB |",
        grown as f64 / 1e6
    );
    println!(
        "| one report written (p50 / p99) | {:.0} µs / {:.0} µs |",
        took[took.len() / 2].as_secs_f64() * 1e6,
        took[took.len() * 99 / 100].as_secs_f64() * 1e6
    );
    // The day after: everything older than a day goes as new minutes come.
    s.add_usage_at(
        start + 2 * KEEP_MINUTES + 1,
        "n1",
        &usage(0, &["shop.web.1"]),
    )
    .expect("usage");
    s.add_traffic_at(start + 2 * KEEP_MINUTES + 1, "edge", &traffic(0))
        .expect("traffic");
    println!(
        "| rows left a day later | {} |",
        s.count_metric_rows().expect("count")
    );
}
