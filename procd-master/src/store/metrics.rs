//! Per-app metrics at one-minute resolution for the last 24 hours (`zeroku metrics`): what
//! workers say each instance used and what frontends say each app was asked, one row per
//! reporter per minute (so reports add up however often they come), dropped after
//! [`KEEP_MINUTES`].
//!
//! Bounded: an app with one process type on one node behind one frontend holds at most
//! 2 × 1,440 rows.

use super::{now, Result, Store};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;
use zeroku_conf::usage::{AppTraffic, InstanceUsage, LATENCY_BUCKETS};

/// Minutes kept.
pub const KEEP_MINUTES: u64 = 24 * 60;

/// What one report may say of one instance, or of one app's answers: far above anything
/// real (a TiB of memory, 1,024 cores busy for a minute, a million restarts or a billion
/// answers), and low enough that a day of reports adds up within SQLite's integers.
const MAX_MEMORY: u64 = 1 << 40;
const MAX_CPU_MS: u64 = 1024 * 60_000;
const MAX_RESTARTS: u32 = 1_000_000;
const MAX_ANSWERS: u64 = 1_000_000_000;

/// One process type of an app in one minute, all its nodes together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeMinute {
    pub instances: u64,
    /// Resident memory of all its instances (their last reports in the minute), bytes.
    pub memory_bytes: u64,
    /// The largest one instance held, bytes.
    pub memory_max: u64,
    pub cpu_ms: u64,
    pub restarts: u64,
}

/// One minute of an app.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Minute {
    /// Unix time of its start, seconds.
    pub at: u64,
    /// Answers by status class (1xx..5xx).
    pub classes: [u64; 5],
    /// Answers per latency bucket (`LATENCY_BUCKETS`, then the rest).
    pub buckets: Vec<u64>,
    pub types: BTreeMap<String, TypeMinute>,
}

/// Adds stored counts (`classes`, `buckets` as JSON) to these.
fn add_stored(classes: &mut [u64; 5], buckets: &mut Vec<u64>, c: &str, b: &str) {
    let c: [u64; 5] = serde_json::from_str(c).unwrap_or_default();
    let b: Vec<u64> = serde_json::from_str(b).unwrap_or_default();
    for (x, y) in classes.iter_mut().zip(c) {
        *x = x.saturating_add(y);
    }
    buckets.resize(LATENCY_BUCKETS.len() + 1, 0);
    for (x, y) in buckets.iter_mut().zip(b) {
        *x = x.saturating_add(y);
    }
}

/// An alert rule of an app (`zeroku alerts:add`) and whether it is firing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Alert {
    pub id: u64,
    pub app: String,
    pub rule: String,
    pub webhook: String,
    pub firing: bool,
    /// When it last started or stopped firing (unix seconds; 0: never fired).
    pub since: u64,
    pub created_at: u64,
}

fn minute_now() -> u64 {
    now() / 60
}

impl Store {
    /// A worker's report, its instances already known to be its own: added to this minute.
    pub fn add_usage(&mut self, node: &str, instances: &[InstanceUsage]) -> Result<()> {
        self.add_usage_at(minute_now(), node, instances)
    }

    /// [`Store::add_usage`] in a given minute (unix minutes): benches fill a day with it.
    pub fn add_usage_at(
        &mut self,
        minute: u64,
        node: &str,
        instances: &[InstanceUsage],
    ) -> Result<()> {
        let mut by: BTreeMap<(&str, &str), TypeMinute> = BTreeMap::new();
        for i in instances {
            let (app, kind) = zeroku_conf::names::split_instance(&i.id);
            let t = by.entry((app, kind)).or_default();
            // (Bounded, so no sum of a day overflows SQLite's integers, whatever a node says.)
            let memory = i.memory_bytes.min(MAX_MEMORY);
            t.instances += 1;
            t.memory_bytes = t.memory_bytes.saturating_add(memory);
            t.memory_max = t.memory_max.max(memory);
            t.cpu_ms = t.cpu_ms.saturating_add(i.cpu_ms.min(MAX_CPU_MS));
            t.restarts += u64::from(i.restarts.min(MAX_RESTARTS));
        }
        let tx = self.db.transaction()?;
        for ((app, kind), t) in by {
            tx.execute(
                "INSERT INTO app_usage (app, proc_type, minute, node, instances, memory_sum, memory_max, cpu_ms, restarts)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (app, minute, proc_type, node) DO UPDATE SET
                   instances = excluded.instances, memory_sum = excluded.memory_sum,
                   memory_max = max(memory_max, excluded.memory_max),
                   cpu_ms = cpu_ms + excluded.cpu_ms, restarts = restarts + excluded.restarts",
                params![
                    app,
                    kind,
                    minute,
                    node,
                    t.instances,
                    t.memory_bytes,
                    t.memory_max,
                    t.cpu_ms,
                    t.restarts
                ],
            )?;
        }
        tx.execute(
            "DELETE FROM app_usage WHERE minute < ?1",
            [minute.saturating_sub(KEEP_MINUTES)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A frontend's report: added to this minute, for apps that exist.
    pub fn add_traffic(&mut self, frontend: &str, apps: &[AppTraffic]) -> Result<()> {
        self.add_traffic_at(minute_now(), frontend, apps)
    }

    /// [`Store::add_traffic`] in a given minute (unix minutes).
    pub fn add_traffic_at(
        &mut self,
        minute: u64,
        frontend: &str,
        apps: &[AppTraffic],
    ) -> Result<()> {
        let tx = self.db.transaction()?;
        for a in apps {
            let known: Option<i64> = tx
                .query_row("SELECT 1 FROM apps WHERE name = ?1", [&a.app], |r| r.get(0))
                .optional()?;
            if known.is_none() {
                continue;
            }
            let before: Option<(String, String)> = tx
                .query_row(
                    "SELECT classes, buckets FROM app_traffic WHERE app = ?1 AND minute = ?2 AND frontend = ?3",
                    params![a.app, minute, frontend],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let mut classes = a.classes.map(|n| n.min(MAX_ANSWERS));
            let mut buckets: Vec<u64> = a
                .buckets
                .iter()
                .take(LATENCY_BUCKETS.len() + 1)
                .map(|n| (*n).min(MAX_ANSWERS))
                .collect();
            if let Some((c, b)) = before {
                add_stored(&mut classes, &mut buckets, &c, &b);
            }
            buckets.resize(LATENCY_BUCKETS.len() + 1, 0);
            tx.execute(
                "INSERT OR REPLACE INTO app_traffic (app, minute, frontend, classes, buckets) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    a.app,
                    minute,
                    frontend,
                    serde_json::to_string(&classes).unwrap_or_default(),
                    serde_json::to_string(&buckets).unwrap_or_default()
                ],
            )?;
        }
        tx.execute(
            "DELETE FROM app_traffic WHERE minute < ?1",
            [minute.saturating_sub(KEEP_MINUTES)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A new alert rule of `app`; its id.
    pub fn add_alert(&mut self, app: &str, rule: &str, webhook: &str) -> Result<u64> {
        self.db.execute(
            "INSERT INTO alerts (app, rule, webhook, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![app, rule, webhook, now()],
        )?;
        Ok(self.db.last_insert_rowid() as u64)
    }

    /// The alert rules of `app`, or of every app.
    pub fn alerts(&self, app: Option<&str>) -> Result<Vec<Alert>> {
        let mut st = self.db.prepare(
            "SELECT id, app, rule, webhook, firing, since, created_at FROM alerts
             WHERE ?1 IS NULL OR app = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([app], |r| {
            Ok(Alert {
                id: r.get(0)?,
                app: r.get(1)?,
                rule: r.get(2)?,
                webhook: r.get(3)?,
                firing: r.get(4)?,
                since: r.get(5)?,
                created_at: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes alert `id` of `app`; whether there was one.
    pub fn remove_alert(&mut self, app: &str, id: u64) -> Result<bool> {
        Ok(self.db.execute(
            "DELETE FROM alerts WHERE app = ?1 AND id = ?2",
            params![app, id],
        )? > 0)
    }

    /// Alert `id` started (`firing`) or stopped firing now.
    pub fn set_alert_firing(&mut self, id: u64, firing: bool) -> Result<()> {
        self.db.execute(
            "UPDATE alerts SET firing = ?2, since = ?3 WHERE id = ?1",
            params![id, firing, now()],
        )?;
        Ok(())
    }

    /// Rows of per-minute metrics, all apps (for benches).
    pub fn count_metric_rows(&self) -> Result<u64> {
        Ok(self.db.query_row(
            "SELECT (SELECT count(*) FROM app_usage) + (SELECT count(*) FROM app_traffic)",
            [],
            |r| r.get(0),
        )?)
    }

    /// Writes the write-ahead log into the database file (for benches measuring its size).
    pub fn checkpoint(&self) -> Result<()> {
        self.db
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// The last `minutes` minutes of `app` that have anything, oldest first.
    pub fn app_minutes(&self, app: &str, minutes: u64) -> Result<Vec<Minute>> {
        let since = minute_now().saturating_sub(minutes.min(KEEP_MINUTES));
        let mut by: BTreeMap<u64, Minute> = BTreeMap::new();
        let mut st = self.db.prepare(
            "SELECT minute, proc_type, sum(instances), sum(memory_sum), max(memory_max), sum(cpu_ms), sum(restarts)
             FROM app_usage WHERE app = ?1 AND minute > ?2 GROUP BY minute, proc_type",
        )?;
        let rows = st.query_map(params![app, since], |r| {
            Ok((
                r.get::<_, u64>(0)?,
                r.get::<_, String>(1)?,
                TypeMinute {
                    instances: r.get(2)?,
                    memory_bytes: r.get(3)?,
                    memory_max: r.get(4)?,
                    cpu_ms: r.get(5)?,
                    restarts: r.get(6)?,
                },
            ))
        })?;
        for row in rows {
            let (m, kind, t) = row?;
            by.entry(m).or_default().types.insert(kind, t);
        }
        let mut st = self.db.prepare(
            "SELECT minute, classes, buckets FROM app_traffic WHERE app = ?1 AND minute > ?2",
        )?;
        let rows = st.query_map(params![app, since], |r| {
            Ok((
                r.get::<_, u64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (m, c, b) = row?;
            let entry = by.entry(m).or_default();
            add_stored(&mut entry.classes, &mut entry.buckets, &c, &b);
        }
        Ok(by
            .into_iter()
            .map(|(m, mut v)| {
                v.at = m * 60;
                v
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_add_up_per_minute_and_unknown_apps_are_dropped() {
        let mut s = Store::open_in_memory().unwrap();
        s.create_app("web1").unwrap();
        let usage = |id: &str, mem, cpu, restarts| InstanceUsage {
            id: id.into(),
            memory_bytes: mem,
            cpu_ms: cpu,
            restarts,
        };
        s.add_usage(
            "n1",
            &[
                usage("web1.web.1", 100, 10, 0),
                usage("web1.web.2", 300, 5, 1),
            ],
        )
        .unwrap();
        // Again in the same minute: memory is the latest, CPU and restarts add up.
        s.add_usage(
            "n1",
            &[
                usage("web1.web.1", 200, 10, 0),
                usage("web1.web.2", 300, 5, 0),
            ],
        )
        .unwrap();
        s.add_usage("n2", &[usage("web1.worker.1", 50, 1, 0)])
            .unwrap();
        let t = |classes, n| AppTraffic {
            app: "web1".into(),
            classes,
            buckets: vec![n; 3],
        };
        s.add_traffic("edge", &[t([0, 5, 0, 0, 1], 2)]).unwrap();
        s.add_traffic("edge", &[t([0, 1, 0, 0, 0], 1)]).unwrap();
        s.add_traffic("edge2", &[t([0, 1, 0, 0, 0], 0)]).unwrap();
        let mut other = t([9; 5], 9);
        other.app = "nosuch".into();
        s.add_traffic("edge", &[other]).unwrap();
        // Absurd figures are bounded, and the sums still add up.
        s.add_usage("n3", &[usage("web1.batch.1", u64::MAX, u64::MAX, u32::MAX)])
            .unwrap();
        s.add_usage("n4", &[usage("web1.batch.2", u64::MAX, u64::MAX, u32::MAX)])
            .unwrap();
        let m = s.app_minutes("web1", 60).unwrap();
        assert_eq!(m.len(), 1, "{m:?}");
        assert_eq!(m[0].types["batch"].memory_max, MAX_MEMORY);
        let web = &m[0].types["web"];
        assert_eq!(
            (
                web.instances,
                web.memory_bytes,
                web.memory_max,
                web.cpu_ms,
                web.restarts
            ),
            (2, 500, 300, 30, 1)
        );
        assert_eq!(m[0].types["worker"].instances, 1);
        assert_eq!(m[0].classes, [0, 7, 0, 0, 1]);
        assert_eq!(&m[0].buckets[..4], &[3, 3, 3, 0]);
        assert!(s.app_minutes("nosuch", 60).unwrap().is_empty());
    }
}
