//! What the master keeps per app and minute (`zeroku metrics`), and how it gets it: workers
//! say what each instance used ([`Usage`], on the bus), frontends what each app was asked
//! ([`Traffic`], `POST /v1/frontends/<name>/traffic`), each every `report_interval_ms`
//! (a minute by default) and only what happened since their last report.

use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in seconds (1 ms .. 10 s); a last bucket holds the
/// rest. The frontend's histogram and the master's quantiles use these.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Worker → master: each instance's use since the last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub node: String,
    pub instances: Vec<InstanceUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceUsage {
    pub id: String,
    /// Resident memory of its processes now (0: not known, e.g. a container).
    pub memory_bytes: u64,
    /// CPU time its processes used since the last report, ms.
    pub cpu_ms: u64,
    /// Restarts since the last report.
    pub restarts: u32,
}

/// Frontend → master: what each app was asked since the last report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Traffic {
    pub apps: Vec<AppTraffic>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AppTraffic {
    pub app: String,
    /// Answers by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub classes: [u64; 5],
    /// Answers per latency bucket ([`LATENCY_BUCKETS`], then the rest): not cumulative.
    pub buckets: Vec<u64>,
}

/// The `q` quantile (0..1) of the latencies in `buckets`, in ms, interpolated within its
/// bucket; `None` without answers.
pub fn quantile_ms(buckets: &[u64], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let want = (q * total as f64).max(1.0);
    let mut seen = 0u64;
    for (i, n) in buckets.iter().enumerate() {
        if *n == 0 {
            continue;
        }
        if (seen + n) as f64 >= want {
            let lo = if i == 0 { 0.0 } else { LATENCY_BUCKETS[i - 1] };
            let hi = LATENCY_BUCKETS.get(i).copied().unwrap_or(lo);
            let within = (want - seen as f64) / *n as f64;
            return Some((lo + (hi - lo) * within) * 1000.0);
        }
        seen += n;
    }
    LATENCY_BUCKETS.last().map(|s| s * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut b = vec![0u64; LATENCY_BUCKETS.len() + 1];
        assert_eq!(quantile_ms(&b, 0.5), None);
        // 100 answers between 5 and 10 ms: the median is halfway.
        b[3] = 100;
        assert_eq!(quantile_ms(&b, 0.5), Some(7.5));
        // One slow one past 10 s counts as 10 s.
        b[13] = 1;
        assert_eq!(quantile_ms(&b, 1.0), Some(10_000.0));
        assert!(quantile_ms(&b, 0.99).unwrap() <= 10.0);
    }
}
