//! Alerts (`zeroku alerts:add -a APP 'p95 > 500ms for 5m' --webhook URL`): a rule on an app's
//! per-minute metrics ([`crate::store::Minute`]), checked every `alert_check_ms`; when it
//! starts to hold it fires once, when it stops it is resolved once, each a JSON POST to its
//! webhook, tried again with back-off (1 s doubling, 5 tries) and said in the app's log.
//!
//! A rule is `METRIC OP VALUE[UNIT] [for Nm]`: `p50`/`p95`/`p99` (ms or s), `5xx_rate` (% of
//! requests), `5xx` and `requests` (per minute), `memory` (the largest instance, MB or GB),
//! `cpu` (% of one core, all the app's instances), `restarts` (per minute), `cert_days` (days
//! left on the certificate served for the app's soonest-expiring name: `cert_days < 14` warns
//! when renewal fails); OP one of
//! `> >= < <=`; it holds when each of the last N complete minutes (1 by default) says so. A
//! minute is complete once every worker and frontend has reported it (`alert_settle_ms` after
//! its end): a minute still filling up would make rules flap. A minute with no answers has
//! no latency or 5xx rate: such a rule does not hold then.
//!
//! Nothing runs while no app has an alert (the task waits to be told of one).

use crate::cluster::Cluster;
use crate::store::{Alert, Minute};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use zeroku_conf::usage::quantile_ms;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Metric {
    P50,
    P95,
    P99,
    ErrorRate,
    Errors,
    Requests,
    Memory,
    Cpu,
    Restarts,
    CertDays,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    metric: Metric,
    op: Op,
    /// In the metric's own unit: ms, %, MB, per minute.
    value: f64,
    minutes: u64,
}

const HELP: &str = "a rule is METRIC OP VALUE [for Nm], e.g. 'p95 > 500ms for 5m', '5xx_rate > 1% for 5m', 'memory > 400MB', 'restarts > 3', 'cert_days < 14'; metrics: p50 p95 p99 5xx_rate 5xx requests memory cpu restarts cert_days";

impl Rule {
    pub fn parse(text: &str) -> Result<Rule, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let bad = |why: &str| format!("{text:?}: {why} ({HELP})");
        let (metric, op, value, rest) = match words.as_slice() {
            [m, o, v, rest @ ..] => (*m, *o, *v, rest),
            _ => return Err(bad("too short")),
        };
        let metric = match metric.to_ascii_lowercase().as_str() {
            "p50" => Metric::P50,
            "p95" => Metric::P95,
            "p99" => Metric::P99,
            "5xx_rate" => Metric::ErrorRate,
            "5xx" => Metric::Errors,
            "requests" => Metric::Requests,
            "memory" => Metric::Memory,
            "cpu" => Metric::Cpu,
            "restarts" => Metric::Restarts,
            "cert_days" => Metric::CertDays,
            m => return Err(bad(&format!("no metric {m:?}"))),
        };
        let op = match op {
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "<" => Op::Lt,
            "<=" => Op::Le,
            o => return Err(bad(&format!("no comparison {o:?}"))),
        };
        let lower = value.to_ascii_lowercase();
        let split = lower
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(lower.len());
        let (number, unit) = lower.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| bad(&format!("{value:?} is not a number")))?;
        let scale = match (metric, unit) {
            (Metric::P50 | Metric::P95 | Metric::P99, "ms" | "") => 1.0,
            (Metric::P50 | Metric::P95 | Metric::P99, "s") => 1000.0,
            (Metric::ErrorRate | Metric::Cpu, "%" | "") => 1.0,
            (Metric::Memory, "mb" | "") => 1.0,
            (Metric::Memory, "gb") => 1024.0,
            (Metric::Errors | Metric::Requests | Metric::Restarts, "" | "/m" | "/min") => 1.0,
            (Metric::CertDays, "" | "d" | "days") => 1.0,
            (_, u) => return Err(bad(&format!("{u:?} is not a unit of this metric"))),
        };
        let minutes = match rest {
            [] => 1,
            ["for", n] => n
                .trim_end_matches('m')
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=60).contains(n))
                .ok_or_else(|| bad(&format!("for {n:?}: from 1m to 60m")))?,
            _ => return Err(bad("after the value only 'for Nm'")),
        };
        Ok(Rule {
            metric,
            op,
            value: number * scale,
            minutes,
        })
    }

    /// The metric in one minute (`None`: it has none then).
    fn measure(&self, m: Option<&Minute>) -> Option<f64> {
        let requests = m.map_or(0, |m| m.classes.iter().sum::<u64>());
        let types = || m.into_iter().flat_map(|m| m.types.values());
        match self.metric {
            Metric::P50 => quantile_ms(&m?.buckets, 0.5),
            Metric::P95 => quantile_ms(&m?.buckets, 0.95),
            Metric::P99 => quantile_ms(&m?.buckets, 0.99),
            Metric::ErrorRate => (requests > 0)
                .then(|| m.map_or(0, |m| m.classes[4]) as f64 * 100.0 / requests as f64),
            Metric::Errors => Some(m.map_or(0, |m| m.classes[4]) as f64),
            Metric::Requests => Some(requests as f64),
            Metric::Memory => types()
                .map(|t| t.memory_max)
                .max()
                .map(|b| b as f64 / 1_048_576.0),
            Metric::Cpu => Some(types().map(|t| t.cpu_ms).sum::<u64>() as f64 / 600.0),
            Metric::Restarts => Some(types().map(|t| t.restarts).sum::<u64>() as f64),
            // Not a per-minute metric: `check` measures it.
            Metric::CertDays => None,
        }
    }

    fn true_of(&self, v: f64) -> bool {
        match self.op {
            Op::Gt => v > self.value,
            Op::Ge => v >= self.value,
            Op::Lt => v < self.value,
            Op::Le => v <= self.value,
        }
    }

    /// Whether it holds in each of its last minutes up to `now_minute` (unix minutes, the last
    /// complete one), and the value in that one.
    pub fn holds(&self, minutes: &[Minute], now_minute: u64) -> (bool, Option<f64>) {
        let by: HashMap<u64, &Minute> = minutes.iter().map(|m| (m.at / 60, m)).collect();
        let last = self.measure(by.get(&now_minute).copied());
        let all = (0..self.minutes).all(|back| {
            let m = by.get(&now_minute.saturating_sub(back)).copied();
            self.measure(m).is_some_and(|v| self.true_of(v))
        });
        (all, last)
    }
}

/// Checks every alert every `every` until `shutdown`; waits for `c.alerts_changed` while
/// there are none.
pub async fn run(c: Arc<Cluster>, every: Duration, settle: Duration, shutdown: CancellationToken) {
    loop {
        let alerts = c.store().alerts(None).unwrap_or_default();
        if alerts.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = c.alerts_changed.notified() => continue,
            }
        }
        for a in alerts {
            check(&c, a, settle);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = c.alerts_changed.notified() => {}
        }
    }
}

fn check(c: &Arc<Cluster>, a: Alert, settle: Duration) {
    let Ok(rule) = Rule::parse(&a.rule) else {
        return;
    };
    let (holds, value) = if rule.metric == Metric::CertDays {
        let days = cert_days(c, &a.app);
        (days.is_some_and(|d| rule.true_of(d)), days)
    } else {
        minute_rule(c, &a, &rule, settle)
    };
    if holds == a.firing {
        return;
    }
    fire(c, a, holds, value);
}

/// Days left on the certificates the frontends serve for `app`'s names: per name the newest
/// that covers it, the soonest of those; a name without one counts 0 when the app gets
/// certificates automatically and its order failed, and not at all otherwise.
fn cert_days(c: &Cluster, app: &str) -> Option<f64> {
    let names = crate::acme::wanted_names(c, app).ok()?;
    let (certs, settings) = {
        let s = c.store();
        (s.app_certs(app).ok()?, s.settings().ok()?)
    };
    // A name without one counts only once its order has failed (not while the first runs).
    let failing = crate::acme::auto_on(c, app, &settings)
        && c.store().cert_status(app).is_ok_and(|s| s.failures > 0);
    let now = crate::store::now() as f64;
    names
        .iter()
        .filter_map(|n| {
            let newest = certs
                .iter()
                .filter(|x| x.names.iter().any(|cn| crate::certs::covers(cn, n)))
                .map(|x| x.not_after)
                .max();
            match newest {
                Some(t) => Some((t as f64 - now) / 86_400.0),
                None if failing => Some(0.0),
                None => None,
            }
        })
        .min_by(|a, b| a.total_cmp(b))
}

/// Whether a per-minute rule holds over its last complete minutes, and the last value.
fn minute_rule(c: &Cluster, a: &Alert, rule: &Rule, settle: Duration) -> (bool, Option<f64>) {
    // The last minute every reporter has reported.
    let last = (crate::store::now().saturating_sub(settle.as_secs()) / 60).saturating_sub(1);
    let back = crate::store::now() / 60 - last + rule.minutes;
    match c.store().app_minutes(&a.app, back) {
        Ok(minutes) => rule.holds(&minutes, last),
        // Unreadable: nothing changes.
        Err(_) => (a.firing, None),
    }
}

/// Fires (`holds`) or resolves alert `a`: said in the app's log and posted to its webhook.
fn fire(c: &Arc<Cluster>, a: Alert, holds: bool, value: Option<f64>) {
    if c.store().set_alert_firing(a.id, holds).is_err() {
        return;
    }
    let state = if holds { "firing" } else { "resolved" };
    let shown = value.map_or("no data".to_string(), |v| format!("{v:.1}"));
    let text = format!(
        "{}: alert {} '{}' is {state} (now {shown})",
        a.app, a.id, a.rule
    );
    c.system_log(&a.app, "", text.clone());
    let body = serde_json::json!({
        "app": a.app,
        "alert": a.id,
        "rule": a.rule,
        "state": state,
        "value": value,
        "at": crate::store::now(),
        "text": text,
    });
    tokio::spawn(deliver(c.clone(), a, body));
}

/// POSTs `body` to the alert's webhook: 5 tries, 1 s doubling between them.
async fn deliver(c: Arc<Cluster>, a: Alert, body: serde_json::Value) {
    let target = match crate::drains::parse(&a.webhook) {
        Ok(t) => t,
        Err(e) => return c.system_log(&a.app, "", format!("alert {}: webhook: {e}", a.id)),
    };
    let bytes = body.to_string().into_bytes();
    let mut wait = Duration::from_secs(1);
    let mut last = String::new();
    for attempt in 1..=5 {
        let sent = crate::drains::http::send(&target, "application/json", &[], bytes.clone());
        match tokio::time::timeout(Duration::from_secs(10), sent).await {
            Ok(Ok(())) => return,
            Ok(Err(e)) => last = e,
            Err(_) => last = "no answer within 10 s".into(),
        }
        if attempt < 5 {
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
    c.system_log(
        &a.app,
        "",
        format!(
            "alert {}: the webhook did not take it after 5 tries: {last}",
            a.id
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TypeMinute;

    fn minute(at_minute: u64, classes: [u64; 5], slow: u64) -> Minute {
        let mut buckets = vec![0; 14];
        buckets[2] = classes.iter().sum::<u64>() - slow;
        buckets[9] = slow; // 0.5 s .. 1 s
        Minute {
            at: at_minute * 60,
            classes,
            buckets,
            types: [(
                "web".to_string(),
                TypeMinute {
                    instances: 2,
                    memory_bytes: 300 << 20,
                    memory_max: 200 << 20,
                    cpu_ms: 30_000,
                    restarts: 4,
                },
            )]
            .into(),
        }
    }

    #[test]
    fn rules_parse_with_units_and_bad_ones_say_why() {
        let r = Rule::parse("p95 > 500ms for 5m").unwrap();
        assert_eq!((r.value, r.minutes), (500.0, 5));
        assert_eq!(Rule::parse("p99 >= 1.5s").unwrap().value, 1500.0);
        assert_eq!(Rule::parse("memory > 1GB for 2m").unwrap().value, 1024.0);
        assert_eq!(
            Rule::parse("cert_days < 14d").unwrap().metric,
            Metric::CertDays
        );
        assert!(Rule::parse("cert_days < 14ms").is_err());
        for bad in [
            "",
            "p95 > ",
            "p96 > 5ms",
            "p95 => 5ms",
            "p95 > 5MB",
            "p95 > fast",
            "cpu > 90% for 0m",
            "cpu > 90% for 61m",
            "cpu > 90% during 5m",
        ] {
            let e = Rule::parse(bad).unwrap_err();
            assert!(e.contains("METRIC OP VALUE"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_rule_holds_only_when_each_of_its_minutes_says_so() {
        let now = 1000;
        let slow = [
            minute(998, [0, 100, 0, 0, 0], 10),
            minute(999, [0, 100, 0, 0, 0], 10),
            minute(1000, [0, 100, 0, 0, 5], 10),
        ];
        let r = Rule::parse("p95 > 400ms for 3m").unwrap();
        assert!(r.holds(&slow, now).0);
        assert!(!r.holds(&slow[1..], now).0, "a minute without data");
        assert!(
            !Rule::parse("p95 > 400ms for 4m")
                .unwrap()
                .holds(&slow, now)
                .0
        );
        let (holds, v) = Rule::parse("5xx_rate > 4%").unwrap().holds(&slow, now);
        assert!(holds && (v.unwrap() - 4.76).abs() < 0.01, "{v:?}");
        assert!(Rule::parse("memory > 150MB").unwrap().holds(&slow, now).0);
        assert!(Rule::parse("cpu >= 50").unwrap().holds(&slow, now).0);
        assert!(
            Rule::parse("restarts > 3 for 2m")
                .unwrap()
                .holds(&slow, now)
                .0
        );
        // No requests at all in a minute: `requests < 1` holds, a latency rule does not.
        assert!(Rule::parse("requests < 1").unwrap().holds(&[], now).0);
        assert!(!Rule::parse("p50 < 1000ms").unwrap().holds(&[], now).0);
    }
}
