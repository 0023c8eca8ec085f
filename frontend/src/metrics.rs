//! Prometheus-style metrics of the edge: requests by app and status code, a
//! latency histogram per app, and the handler queue depth per app, rendered
//! in the text exposition format (0.0.4) by the admin server of
//! `zeroku_metrics` ([`serve_admin`]: `GET /metrics`, `GET /healthz`).
//!
//! It owns the counters and their rendering only. It must not block the
//! request path (recording is a read lock, a map lookup and a few relaxed
//! atomic adds), must not let label cardinality grow without bound (at most
//! [`MAX_APPS`] apps, the rest counted under `app="_other"`; status codes
//! outside the registered set are counted by class, e.g. `code="5xx"`), and
//! must not serve anything but metrics and health on the admin port.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Apps tracked by name; requests of any further app count as `_other`.
pub const MAX_APPS: usize = 1000;

/// The label value under which apps beyond [`MAX_APPS`] are aggregated.
pub const OTHER_APP: &str = "_other";

/// Upper bounds of the latency buckets, in seconds (1 ms .. 10 s); `+Inf`
/// is implicit. The master's quantiles (`zeroku metrics`) read the same.
pub use zeroku_conf::usage::LATENCY_BUCKETS as BUCKETS;
const BUCKET_LABELS: [&str; 13] = [
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
    "10",
];

/// Status codes counted individually (the IANA-registered ones); any other
/// code is counted under its class label (`"1xx"`..`"5xx"`, or `"other"`).
const CODES: [u16; 62] = [
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];
const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];
const CODE_SLOTS: usize = CODES.len() + CLASSES.len();

fn code_slot(status: u16) -> usize {
    match CODES.binary_search(&status) {
        Ok(i) => i,
        Err(_) => {
            CODES.len()
                + match status {
                    100..=599 => usize::from(status / 100 - 1),
                    _ => CLASSES.len() - 1,
                }
        }
    }
}

fn slot_label(slot: usize) -> String {
    match CODES.get(slot) {
        Some(c) => c.to_string(),
        None => CLASSES[slot - CODES.len()].to_string(),
    }
}

/// The series of one app.
struct AppMetrics {
    codes: [AtomicU64; CODE_SLOTS],
    /// Per bucket, not cumulative; the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
    queue_depth: AtomicU64,
    has_queue: AtomicBool,
}

impl AppMetrics {
    fn new() -> AppMetrics {
        AppMetrics {
            codes: std::array::from_fn(|_| AtomicU64::new(0)),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            has_queue: AtomicBool::new(false),
        }
    }

    fn observe(&self, status: u16, elapsed: Duration) {
        self.codes[code_slot(status)].fetch_add(1, Relaxed);
        let secs = elapsed.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        self.buckets[b].fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
}

/// The frontend's metrics; share it in an `Arc`.
pub struct Metrics {
    apps: RwLock<HashMap<String, Arc<AppMetrics>>>,
    other: Arc<AppMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            apps: RwLock::new(HashMap::new()),
            other: Arc::new(AppMetrics::new()),
        }
    }

    /// The series of `app`, created if there is room, else `_other`'s.
    fn app(&self, app: &str) -> Arc<AppMetrics> {
        if app == OTHER_APP {
            return self.other.clone();
        }
        if let Some(m) = self.apps.read().unwrap_or_else(|e| e.into_inner()).get(app) {
            return m.clone();
        }
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = apps.get(app) {
            return m.clone();
        }
        if apps.len() >= MAX_APPS {
            return self.other.clone();
        }
        let m = Arc::new(AppMetrics::new());
        apps.insert(app.to_string(), m.clone());
        m
    }

    /// Records one answered request: its status code and how long it took.
    pub fn observe(&self, app: &str, status: u16, elapsed: Duration) {
        self.app(app).observe(status, elapsed);
    }

    /// What each app was asked since the last call (`last` holds what that call saw), for the
    /// master's per-minute metrics. Apps with nothing new, `_other` and unrouted requests are
    /// left out.
    pub fn traffic_since(
        &self,
        last: &mut HashMap<String, zeroku_conf::usage::AppTraffic>,
    ) -> zeroku_conf::usage::Traffic {
        use zeroku_conf::usage::AppTraffic;
        let apps: Vec<(String, Arc<AppMetrics>)> = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(k, _)| k.as_str() != "-")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut out = zeroku_conf::usage::Traffic::default();
        for (app, m) in apps {
            let mut now = AppTraffic {
                app: app.clone(),
                classes: [0; 5],
                buckets: m.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            };
            for (slot, c) in m.codes.iter().enumerate() {
                let class = match CODES.get(slot) {
                    Some(code) => usize::from(code / 100) - 1,
                    None => slot - CODES.len(),
                };
                if let Some(n) = now.classes.get_mut(class) {
                    *n += c.load(Relaxed);
                }
            }
            let before = last.get(&app);
            let mut delta = now.clone();
            if let Some(b) = before {
                for (d, p) in delta.classes.iter_mut().zip(b.classes) {
                    *d = d.saturating_sub(p);
                }
                for (d, p) in delta.buckets.iter_mut().zip(&b.buckets) {
                    *d = d.saturating_sub(*p);
                }
            }
            if delta.classes.iter().any(|n| *n > 0) {
                out.apps.push(delta);
            }
            last.insert(app, now);
        }
        out
    }

    /// Sets the number of requests waiting for (or being served by) `app`'s
    /// handlers. Ignored for apps past the cap: a gauge of several apps set
    /// one after another would mean nothing.
    pub fn set_queue_depth(&self, app: &str, n: u64) {
        let m = self.app(app);
        if Arc::ptr_eq(&m, &self.other) {
            return;
        }
        m.queue_depth.store(n, Relaxed);
        m.has_queue.store(true, Relaxed);
    }

    /// The metrics in the Prometheus text exposition format (0.0.4), apps in
    /// name order and `_other` last.
    pub fn render(&self) -> String {
        let mut apps: Vec<(String, Arc<AppMetrics>)> = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (escape_label(k), v.clone()))
            .collect();
        apps.sort_by(|a, b| a.0.cmp(&b.0));
        if self.other.count.load(Relaxed) > 0 {
            apps.push((OTHER_APP.to_string(), self.other.clone()));
        }
        let mut out = String::with_capacity(256 + apps.len() * 1024);
        let o = &mut out;

        let name = "zeroku_frontend_requests_total";
        let _ = writeln!(
            o,
            "# HELP {name} HTTP requests answered by the frontend, by app and status code."
        );
        let _ = writeln!(o, "# TYPE {name} counter");
        for (app, m) in &apps {
            for (slot, c) in m.codes.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let code = slot_label(slot);
                    let _ = writeln!(o, "{name}{{app=\"{app}\",code=\"{code}\"}} {n}");
                }
            }
        }

        let name = "zeroku_frontend_request_duration_seconds";
        let _ = writeln!(o, "# HELP {name} Time to answer a request, by app.");
        let _ = writeln!(o, "# TYPE {name} histogram");
        for (app, m) in &apps {
            // `_count` is the `+Inf` bucket, so the two always agree.
            let mut cumulative = 0;
            for (i, b) in m.buckets.iter().enumerate() {
                cumulative += b.load(Relaxed);
                let le = BUCKET_LABELS.get(i).copied().unwrap_or("+Inf");
                let _ = writeln!(o, "{name}_bucket{{app=\"{app}\",le=\"{le}\"}} {cumulative}");
            }
            let sum = m.sum_nanos.load(Relaxed) as f64 / 1e9;
            let _ = writeln!(o, "{name}_sum{{app=\"{app}\"}} {sum}");
            let _ = writeln!(o, "{name}_count{{app=\"{app}\"}} {cumulative}");
        }

        let name = "zeroku_frontend_handler_queue_depth";
        let _ = writeln!(
            o,
            "# HELP {name} Requests waiting for or being served by the app's handlers."
        );
        let _ = writeln!(o, "# TYPE {name} gauge");
        for (app, m) in &apps {
            if m.has_queue.load(Relaxed) {
                let n = m.queue_depth.load(Relaxed);
                let _ = writeln!(o, "{name}{{app=\"{app}\"}} {n}");
            }
        }

        let name = "zeroku_frontend_tracked_apps";
        let _ = writeln!(o, "# HELP {name} Apps with their own series (at most {MAX_APPS}; the rest are app=\"{OTHER_APP}\").");
        let _ = writeln!(o, "# TYPE {name} gauge");
        let tracked = apps.len() - usize::from(apps.last().is_some_and(|a| a.0 == OTHER_APP));
        let _ = writeln!(o, "{name} {tracked}");
        out
    }
}

pub use zeroku_metrics::{escape_label, CONTENT_TYPE};

impl zeroku_metrics::Source for Metrics {
    fn render(&self) -> String {
        Metrics::render(self)
    }
}

/// Serves `GET /metrics` and `GET /healthz` on `listener` until `shutdown`,
/// then lets open requests finish (up to 5 s): [`zeroku_metrics::serve_admin`].
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    zeroku_metrics::serve_admin(listener, metrics, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_slots() {
        assert!(
            CODES.windows(2).all(|w| w[0] < w[1]),
            "CODES must be sorted"
        );
        assert_eq!(slot_label(code_slot(200)), "200");
        assert_eq!(slot_label(code_slot(418)), "418");
        assert_eq!(slot_label(code_slot(299)), "2xx");
        assert_eq!(slot_label(code_slot(599)), "5xx");
        assert_eq!(slot_label(code_slot(100)), "100");
        assert_eq!(slot_label(code_slot(199)), "1xx");
        assert_eq!(slot_label(code_slot(999)), "other");
        assert_eq!(slot_label(code_slot(0)), "other");
    }

    #[test]
    fn traffic_is_what_happened_since_the_last_report() {
        let m = Metrics::new();
        let mut last = HashMap::new();
        m.observe("a", 200, Duration::from_millis(3));
        m.observe("a", 503, Duration::from_millis(30));
        m.observe("-", 400, Duration::from_millis(1));
        let t = m.traffic_since(&mut last);
        assert_eq!(t.apps.len(), 1);
        assert_eq!(t.apps[0].classes, [0, 1, 0, 0, 1]);
        assert_eq!(t.apps[0].buckets.iter().sum::<u64>(), 2);
        assert!(m.traffic_since(&mut last).apps.is_empty(), "nothing new");
        m.observe("a", 404, Duration::from_millis(3));
        let t = m.traffic_since(&mut last);
        assert_eq!(t.apps[0].classes, [0, 0, 0, 1, 0]);
        assert_eq!(t.apps[0].buckets.iter().sum::<u64>(), 1);
    }

    #[test]
    fn bucket_edges() {
        let m = AppMetrics::new();
        m.observe(200, Duration::from_millis(1)); // le=0.001 inclusive
        m.observe(200, Duration::from_micros(1001));
        m.observe(200, Duration::from_secs(11));
        assert_eq!(m.buckets[0].load(Relaxed), 1);
        assert_eq!(m.buckets[1].load(Relaxed), 1);
        assert_eq!(m.buckets[BUCKETS.len()].load(Relaxed), 1);
        assert_eq!(BUCKETS.len(), BUCKET_LABELS.len());
        for (b, l) in BUCKETS.iter().zip(BUCKET_LABELS) {
            assert_eq!(*b, l.parse::<f64>().unwrap());
        }
    }
}
