//! What the frontend's metrics cost per request: `Metrics::observe` (the one call a request
//! makes: its app's counters by status and latency bucket) over many requests spread across
//! 100 apps, timed; run it under `valgrind --tool=callgrind --toggle-collect=*observe*` for
//! instructions per call (bench/metrics_cost.sh does both and prints a table).
//!
//! Usage: metrics_cost [CALLS=1000000]

use std::time::{Duration, Instant};
use zeroku_frontend::metrics::Metrics;

fn main() {
    let calls: u64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let m = Metrics::new();
    let apps: Vec<String> = (0..100).map(|i| format!("app{i}")).collect();
    let statuses = [200u16, 200, 200, 301, 404, 500];
    let started = Instant::now();
    for i in 0..calls {
        let app = &apps[(i % 100) as usize];
        let status = statuses[(i % 6) as usize];
        m.observe(app, status, Duration::from_micros(137 * (i % 2000)));
    }
    let took = started.elapsed();
    let ns = took.as_nanos() as f64 / calls as f64;
    // Something read, so the loop is not optimised away.
    let t = m.traffic_since(&mut Default::default());
    let total: u64 = t.apps.iter().map(|a| a.classes.iter().sum::<u64>()).sum();
    println!("calls={calls} ns_per_call={ns:.1} counted={total}");
}
