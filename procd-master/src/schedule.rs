//! Scheduled backups: each add-on with a schedule gets one backup a day at its time (UTC),
//! and its scheduled backups are pruned to the newest of the last `keep_daily` days and of the
//! last `keep_weekly` weeks. Backups taken by hand are never pruned.
//!
//! One task sleeps until the next backup is due (or a schedule changes): nothing runs at rest.
//! A master that was down at a backup's time takes it when it starts, once per day.

use crate::cluster::Cluster;
use crate::store::{Backup, Schedule, StoreError};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

const DAY: u64 = 86_400;

/// `02:00`, `02:00 UTC` → minutes past midnight UTC.
pub fn parse_at(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let t = t.strip_suffix("UTC").map_or(t, str::trim_end);
    let bad = || format!("{s:?} is not a time like 02:00 UTC (hours:minutes, UTC only)");
    let (h, m) = t.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 || t.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// When `s` is next due, in seconds since the epoch, at `now`: now if today's backup is
/// due and not taken.
pub fn next_due(s: &Schedule, now: u64) -> u64 {
    let today = now / DAY;
    let at = u64::from(s.at_minute) * 60;
    if s.last_day >= today {
        (today + 1) * DAY + at
    } else {
        (today * DAY + at).max(now)
    }
}

/// Which of `backups` (one add-on's) the retention rule deletes: scheduled ones that succeeded
/// and are neither the newest of one of the last `daily` days nor of the last `weekly` weeks.
pub fn to_prune(backups: &[Backup], daily: u32, weekly: u32) -> Vec<u32> {
    let mut ok: Vec<&Backup> = backups
        .iter()
        .filter(|b| b.scheduled && b.state == "ok")
        .collect();
    ok.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.n.cmp(&a.n)));
    let mut keep = HashSet::new();
    for (period, count) in [(DAY, daily), (7 * DAY, weekly)] {
        let mut seen = HashSet::new();
        for b in &ok {
            let p = b.created_at / period;
            if seen.len() < count as usize && seen.insert(p) {
                keep.insert(b.n);
            }
        }
    }
    ok.iter()
        .map(|b| b.n)
        .filter(|n| !keep.contains(n))
        .collect()
}

/// Deletes what the retention rule no longer keeps of `addon`'s backups.
pub fn prune(cluster: &Cluster, addon: &str) -> Result<(), StoreError> {
    let Some(s) = cluster
        .store()
        .schedules()?
        .into_iter()
        .find(|s| s.addon == addon)
    else {
        return Ok(());
    };
    let backups = cluster.store().backups(addon)?;
    let gone = to_prune(&backups, s.keep_daily, s.keep_weekly);
    if gone.is_empty() {
        return Ok(());
    }
    let shas = cluster.store().delete_backups(addon, &gone)?;
    crate::backups::remove_files(cluster, &shas)?;
    tracing::info!(addon, pruned = gone.len(), "scheduled backups pruned");
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Takes every due backup, then sleeps until the next one (at most an hour, so a clock that
/// jumps is noticed) or until a schedule changes.
pub async fn run(cluster: Arc<Cluster>) {
    loop {
        let now = unix_now();
        let schedules = cluster.store().schedules().unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot read backup schedules");
            Vec::new()
        });
        let mut next = now + 3600;
        for s in &schedules {
            let due = next_due(s, now);
            if due > now {
                next = next.min(due);
                continue;
            }
            if let Err(e) = take(&cluster, s, now / DAY) {
                tracing::error!(addon = %s.addon, error = %e, "scheduled backup not started");
            }
        }
        let wait = Duration::from_secs(next.saturating_sub(unix_now()).max(1));
        tracing::info!(
            schedules = schedules.len(),
            next_in_s = wait.as_secs(),
            "backup schedules checked"
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cluster.schedules_changed.notified() => {}
        }
    }
}

fn take(cluster: &Arc<Cluster>, s: &Schedule, day: u64) -> Result<(), StoreError> {
    cluster.store().schedule_ran(&s.addon, day)?;
    let Some(a) = cluster.store().addon(&s.addon)? else {
        return Ok(());
    };
    if cluster
        .store()
        .backups(&a.name)?
        .iter()
        .any(|b| b.state == "running")
    {
        return Ok(());
    }
    let app = a.app.clone();
    crate::backups::start_capture(cluster, a, &app, true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(at: u32, last_day: u64) -> Schedule {
        Schedule {
            addon: "pg-a-1".into(),
            at_minute: at,
            keep_daily: 7,
            keep_weekly: 4,
            last_day,
        }
    }

    #[test]
    fn times_are_utc_hours_and_minutes() {
        assert_eq!(parse_at("02:00 UTC"), Ok(120));
        assert_eq!(parse_at("23:59"), Ok(23 * 60 + 59));
        for bad in ["24:00", "2pm", "02:00 CET", "02:60", ""] {
            assert!(parse_at(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_backup_is_due_once_a_day_and_at_once_when_missed() {
        let day = 20_000;
        let t = |h: u64| day * DAY + h * 3600;
        // Before 02:00: at 02:00 today.
        assert_eq!(next_due(&sched(120, day - 1), t(1)), t(2));
        // A master that starts at 05:00 with today's not taken: now.
        assert_eq!(next_due(&sched(120, day - 1), t(5)), t(5));
        // Taken today: tomorrow.
        assert_eq!(next_due(&sched(120, day), t(5)), t(26));
    }

    #[test]
    fn retention_keeps_the_newest_per_day_and_per_week() {
        let b = |n: u32, day: u64, scheduled: bool| Backup {
            addon: "pg-a-1".into(),
            n,
            kind: "postgres".into(),
            sha256: format!("{n:064}"),
            size: 1,
            state: "ok".into(),
            error: String::new(),
            created_at: day * DAY + 7200 + u64::from(n),
            scheduled,
        };
        // 30 days of one scheduled backup a day (n = day), a second one on day 29, and one by
        // hand on day 1.
        let mut all: Vec<Backup> = (1..=30).map(|d| b(d, u64::from(d), true)).collect();
        all.push(b(31, 29, true));
        all.push(b(32, 1, false));
        let gone = to_prune(&all, 7, 4);
        let kept: Vec<u32> = (1..=32).filter(|n| !gone.contains(n)).collect();
        // Days 24-30 (the newest of day 29 is 31), and the newest of each of the last 4 weeks
        // (weeks are days / 7: 30 → week 4, 27 → week 3, 20 → week 2, 13 → week 1).
        assert_eq!(kept, vec![13, 20, 24, 25, 26, 27, 28, 30, 31, 32]);
    }
}
