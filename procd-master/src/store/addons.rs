//! Add-ons (PostgreSQL, Redis servers), the apps they are attached to, and their backups.
//!
//! An add-on is created for an app (its owner) and attached to it at once; attaching is a config
//! var (`<ALIAS>_URL`) of a new release of the app, written in the same transaction. An add-on
//! stays on the node it was placed on (its data is there). Its server runs under uid
//! `app_uid_base + ADDON_SEQ_BASE + seq`, a range no app's uid reaches.

use super::{apply_config, now, Release, Result, Store};
use rusqlite::{params, OptionalExtension, Row};
use serde::Serialize;
use std::collections::BTreeMap;

/// Add-ons' uids start here above `app_uid_base` (apps count up from 1).
pub const ADDON_SEQ_BASE: u32 = 500_000;

/// One add-on. Its passwords are never serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Addon {
    pub name: String,
    pub kind: String,
    /// The app it was created for.
    pub app: String,
    /// Its uid above `app_uid_base` ([`ADDON_SEQ_BASE`] + its row number).
    pub seq: u32,
    pub node: String,
    pub port: u16,
    #[serde(skip)]
    pub password: String,
    #[serde(skip)]
    pub admin_password: String,
    pub memory_mb: u64,
    pub created_at: u64,
    /// High availability: the node of its standby server (empty: none) and its port. `node`
    /// and `port` are always the primary's.
    pub standby_node: String,
    pub standby_port: u16,
    /// The instance number (1 or 2) of the server that is primary now; the standby's is the
    /// other. A failover swaps them, so each server keeps its instance (and process).
    pub primary_index: u32,
    /// Commits wait for the standby (`sync=on`, the default).
    pub sync: bool,
    /// The primary has its standby as synchronous now: every acknowledged commit is on both,
    /// and the standby may take over.
    pub in_sync: bool,
    pub failovers: u32,
    /// When and why the last failover happened (`<unix seconds> <reason>`).
    pub last_failover: String,
    /// Counts the standby's placements: a standby placed anew (on another node, or back on one
    /// that holds an older copy) copies the primary again rather than resume from that copy.
    pub standby_copy: u32,
}

impl Addon {
    /// Whether it has a standby.
    pub fn ha(&self) -> bool {
        !self.standby_node.is_empty()
    }

    /// The standby's instance number.
    pub fn standby_index(&self) -> u32 {
        3 - self.primary_index.clamp(1, 2)
    }
}

/// An app's use of an add-on: its `<alias>_URL` config var.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub addon: String,
    pub app: String,
    pub alias: String,
}

/// One backup of an add-on: `b001` is `n` 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    pub addon: String,
    pub n: u32,
    pub kind: String,
    pub sha256: String,
    pub size: u64,
    /// `running`, `ok` or `failed`.
    pub state: String,
    pub error: String,
    pub created_at: u64,
    /// Taken by the schedule (pruned by its retention rule), not by hand.
    pub scheduled: bool,
}

/// An add-on's daily backup: at `at_minute` past midnight UTC, the newest of the last
/// `keep_daily` days and of the last `keep_weekly` weeks kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub addon: String,
    pub at_minute: u32,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    /// The last day (days since the epoch, UTC) it ran on.
    pub last_day: u64,
}

impl Backup {
    /// `b001`.
    pub fn id(&self) -> String {
        format!("b{:03}", self.n)
    }
}

/// What [`Store::create_addon`] needs; the name and port are chosen in its transaction.
#[derive(Clone)]
pub struct NewAddon<'a> {
    pub kind: &'a str,
    pub prefix: &'a str,
    pub app: &'a str,
    pub alias: &'a str,
    pub node: &'a str,
    pub ports: std::ops::RangeInclusive<u16>,
    pub password: &'a str,
    pub admin_password: &'a str,
    pub memory_mb: u64,
    /// The URL apps get, from the add-on as created (its name and port filled in).
    pub url: &'a dyn Fn(&Addon) -> String,
}

/// Why an add-on could not be created or attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The app already has a config var for this alias from another add-on.
    AliasTaken {
        alias: String,
        addon: String,
    },
    /// Already attached to this app.
    Attached {
        alias: String,
    },
    NoPort,
}

const ADDON_SELECT: &str = "SELECT name, kind, app, seq, node, port, password, admin_password, memory_mb, created_at, standby_node, standby_port, primary_index, sync, in_sync, failovers, last_failover, standby_copy FROM addons";

fn addon_row(r: &Row) -> rusqlite::Result<Addon> {
    Ok(Addon {
        name: r.get(0)?,
        kind: r.get(1)?,
        app: r.get(2)?,
        seq: ADDON_SEQ_BASE + r.get::<_, u32>(3)?,
        node: r.get(4)?,
        port: r.get(5)?,
        password: r.get(6)?,
        admin_password: r.get(7)?,
        memory_mb: r.get(8)?,
        created_at: r.get(9)?,
        standby_node: r.get(10)?,
        standby_port: r.get(11)?,
        primary_index: r.get(12)?,
        sync: r.get(13)?,
        in_sync: r.get(14)?,
        failovers: r.get(15)?,
        last_failover: r.get(16)?,
        standby_copy: r.get(17)?,
    })
}

const BACKUP_SELECT: &str =
    "SELECT addon, n, kind, sha256, size, state, error, created_at, scheduled FROM backups";

fn backup_row(r: &Row) -> rusqlite::Result<Backup> {
    Ok(Backup {
        addon: r.get(0)?,
        n: r.get(1)?,
        kind: r.get(2)?,
        sha256: r.get(3)?,
        size: r.get(4)?,
        state: r.get(5)?,
        error: r.get(6)?,
        created_at: r.get(7)?,
        scheduled: r.get(8)?,
    })
}

/// `<ALIAS>_URL`.
pub fn url_var(alias: &str) -> String {
    format!("{alias}_URL")
}

impl Store {
    pub fn addons(&self) -> Result<Vec<Addon>> {
        let mut st = self.db.prepare(&format!("{ADDON_SELECT} ORDER BY name"))?;
        let rows = st.query_map([], addon_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn addon(&self, name: &str) -> Result<Option<Addon>> {
        Ok(self
            .db
            .query_row(
                &format!("{ADDON_SELECT} WHERE name = ?1"),
                [name],
                addon_row,
            )
            .optional()?)
    }

    /// Every attachment, or those of one app / one add-on.
    pub fn attachments(&self, app: Option<&str>, addon: Option<&str>) -> Result<Vec<Attachment>> {
        let mut st = self.db.prepare(
            "SELECT addon, app, alias FROM addon_attachments
             WHERE (?1 IS NULL OR app = ?1) AND (?2 IS NULL OR addon = ?2) ORDER BY addon, app",
        )?;
        let rows = st.query_map(params![app, addon], |r| {
            Ok(Attachment {
                addon: r.get(0)?,
                app: r.get(1)?,
                alias: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Creates an add-on for `new.app`, attached to it as `new.alias`, and the app's next
    /// release with `<ALIAS>_URL` (when it has a release), in one transaction. The name is
    /// `<prefix>-<app>-<n>` (no app or add-on has it), the port the lowest of `new.ports` no
    /// add-on uses.
    pub fn create_addon(
        &mut self,
        new: &NewAddon<'_>,
    ) -> Result<std::result::Result<(Addon, Option<Release>), Refused>> {
        let tx = self.db.transaction()?;
        if let Some(taken) = alias_owner(&tx, new.app, new.alias)? {
            return Ok(Err(Refused::AliasTaken {
                alias: new.alias.to_string(),
                addon: taken,
            }));
        }
        let mut n = 1u32;
        let name = loop {
            let name = format!("{}-{}-{n}", new.prefix, new.app);
            let used: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM addons WHERE name = ?1) OR EXISTS (SELECT 1 FROM apps WHERE name = ?1)",
                [&name],
                |r| r.get(0),
            )?;
            if !used {
                break name;
            }
            n += 1;
        };
        let used: std::collections::HashSet<u16> = {
            let mut st =
                tx.prepare("SELECT port FROM addons UNION SELECT standby_port FROM addons")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let Some(port) = new.ports.clone().find(|p| !used.contains(p)) else {
            return Ok(Err(Refused::NoPort));
        };
        tx.execute(
            "INSERT INTO addons (name, kind, app, node, port, password, admin_password, memory_mb, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                name,
                new.kind,
                new.app,
                new.node,
                port,
                new.password,
                new.admin_password,
                new.memory_mb,
                now()
            ],
        )?;
        let addon = tx.query_row(
            &format!("{ADDON_SELECT} WHERE name = ?1"),
            [&name],
            addon_row,
        )?;
        tx.execute(
            "INSERT INTO addon_attachments (addon, app, alias) VALUES (?1, ?2, ?3)",
            params![name, new.app, new.alias],
        )?;
        let changes = BTreeMap::from([(url_var(new.alias), Some((new.url)(&addon)))]);
        let desc = format!("Attach {name} as {}", url_var(new.alias));
        let rel = apply_config(&tx, new.app, &changes, &desc)?;
        tx.commit()?;
        Ok(Ok((addon, rel)))
    }

    /// Attaches `addon` to `app` as `alias` (`url` is its URL): the app's next release has
    /// `<ALIAS>_URL`.
    pub fn attach(
        &mut self,
        addon: &str,
        app: &str,
        alias: &str,
        url: &str,
    ) -> Result<std::result::Result<Option<Release>, Refused>> {
        let tx = self.db.transaction()?;
        let already: Option<String> = tx
            .query_row(
                "SELECT alias FROM addon_attachments WHERE addon = ?1 AND app = ?2",
                params![addon, app],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(alias) = already {
            return Ok(Err(Refused::Attached { alias }));
        }
        if let Some(taken) = alias_owner(&tx, app, alias)? {
            return Ok(Err(Refused::AliasTaken {
                alias: alias.to_string(),
                addon: taken,
            }));
        }
        tx.execute(
            "INSERT INTO addon_attachments (addon, app, alias) VALUES (?1, ?2, ?3)",
            params![addon, app, alias],
        )?;
        let changes = BTreeMap::from([(url_var(alias), Some(url.to_string()))]);
        let rel = apply_config(
            &tx,
            app,
            &changes,
            &format!("Attach {addon} as {}", url_var(alias)),
        )?;
        tx.commit()?;
        Ok(Ok(rel))
    }

    /// Detaches `addon` from `app`: its `<ALIAS>_URL` is unset in a new release. `None` when it
    /// was not attached.
    pub fn detach(&mut self, addon: &str, app: &str) -> Result<Option<Option<Release>>> {
        let tx = self.db.transaction()?;
        let alias: Option<String> = tx
            .query_row(
                "SELECT alias FROM addon_attachments WHERE addon = ?1 AND app = ?2",
                params![addon, app],
                |r| r.get(0),
            )
            .optional()?;
        let Some(alias) = alias else {
            return Ok(None);
        };
        tx.execute(
            "DELETE FROM addon_attachments WHERE addon = ?1 AND app = ?2",
            params![addon, app],
        )?;
        let changes = BTreeMap::from([(url_var(&alias), None)]);
        let rel = apply_config(
            &tx,
            app,
            &changes,
            &format!("Detach {addon} ({})", url_var(&alias)),
        )?;
        tx.commit()?;
        Ok(Some(rel))
    }

    /// Deletes `addon`, detaching it from every app (each gets a release without its URL), and
    /// its backups' rows; returns the backups' hashes (the caller deletes unused files).
    pub fn destroy_addon(&mut self, addon: &str) -> Result<Vec<String>> {
        let tx = self.db.transaction()?;
        let attached: Vec<(String, String)> = {
            let mut st = tx.prepare("SELECT app, alias FROM addon_attachments WHERE addon = ?1")?;
            let rows = st.query_map([addon], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (app, alias) in attached {
            let changes = BTreeMap::from([(url_var(&alias), None)]);
            apply_config(
                &tx,
                &app,
                &changes,
                &format!("Detach {addon} ({})", url_var(&alias)),
            )?;
        }
        let shas: Vec<String> = {
            let mut st =
                tx.prepare("SELECT sha256 FROM backups WHERE addon = ?1 AND sha256 != ''")?;
            let rows = st.query_map([addon], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        tx.execute("DELETE FROM addon_attachments WHERE addon = ?1", [addon])?;
        tx.execute("DELETE FROM backups WHERE addon = ?1", [addon])?;
        tx.execute("DELETE FROM backup_schedules WHERE addon = ?1", [addon])?;
        tx.execute("DELETE FROM addons WHERE name = ?1", [addon])?;
        tx.commit()?;
        Ok(shas)
    }

    /// The add-on's new password, and every attached app's next release with the URL that
    /// has it (`url`), in one transaction: the versions of those releases.
    pub fn set_addon_password(
        &mut self,
        addon: &str,
        password: &str,
        url: &str,
    ) -> Result<Vec<u32>> {
        let tx = self.db.transaction()?;
        tx.execute(
            "UPDATE addons SET password = ?2 WHERE name = ?1",
            params![addon, password],
        )?;
        let attached: Vec<(String, String)> = {
            let mut st = tx.prepare("SELECT app, alias FROM addon_attachments WHERE addon = ?1")?;
            let rows = st.query_map([addon], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut versions = Vec::new();
        for (app, alias) in attached {
            let changes = BTreeMap::from([(url_var(&alias), Some(url.to_string()))]);
            let desc = format!("Rotate {addon}'s credentials ({})", url_var(&alias));
            if let Some(r) = apply_config(&tx, &app, &changes, &desc)? {
                versions.push(r.version);
            }
        }
        tx.commit()?;
        Ok(versions)
    }

    /// Gives `addon` a standby on `node`, on a port from `ports` no add-on uses (none left:
    /// `None`); `None` for `node` removes its standby.
    pub fn set_standby(
        &mut self,
        addon: &str,
        node: Option<&str>,
        ports: std::ops::RangeInclusive<u16>,
    ) -> Result<Option<u16>> {
        let tx = self.db.transaction()?;
        let Some(node) = node else {
            tx.execute(
                "UPDATE addons SET standby_node = '', standby_port = 0, in_sync = 0 WHERE name = ?1",
                [addon],
            )?;
            tx.commit()?;
            return Ok(Some(0));
        };
        let port = {
            let mut st = tx.prepare("SELECT port, standby_port FROM addons")?;
            let rows = st.query_map([], |r| Ok([r.get::<_, u16>(0)?, r.get::<_, u16>(1)?]))?;
            let used: std::collections::HashSet<u16> = rows
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect();
            ports.into_iter().find(|p| !used.contains(p))
        };
        let Some(port) = port else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE addons SET standby_node = ?2, standby_port = ?3, in_sync = 0,
               standby_copy = standby_copy + 1 WHERE name = ?1",
            params![addon, node, port],
        )?;
        tx.commit()?;
        Ok(Some(port))
    }

    /// The standby of `addon` is the primary from now on, and the old primary its standby
    /// (it rejoins when its node is back). Not in sync until the new standby streams again.
    pub fn promote_standby(&mut self, addon: &str, why: &str) -> Result<()> {
        self.db.execute(
            "UPDATE addons SET node = standby_node, port = standby_port, standby_node = node,
               standby_port = port, primary_index = 3 - primary_index, in_sync = 0,
               failovers = failovers + 1, last_failover = ?2
             WHERE name = ?1 AND standby_node != ''",
            params![addon, format!("{} {why}", now())],
        )?;
        Ok(())
    }

    /// Records whether the primary has its standby as synchronous now.
    pub fn set_in_sync(&mut self, addon: &str, in_sync: bool) -> Result<()> {
        self.db.execute(
            "UPDATE addons SET in_sync = ?2 WHERE name = ?1",
            params![addon, in_sync],
        )?;
        Ok(())
    }

    /// `sync=on|off`: whether commits wait for the standby.
    pub fn set_addon_sync(&mut self, addon: &str, sync: bool) -> Result<()> {
        self.db.execute(
            "UPDATE addons SET sync = ?2, in_sync = 0 WHERE name = ?1",
            params![addon, sync],
        )?;
        Ok(())
    }

    /// Its standby is to be on `node` now (on the same port), built from the primary's data.
    pub fn move_standby(&mut self, addon: &str, node: &str) -> Result<()> {
        self.db.execute(
            "UPDATE addons SET standby_node = ?2, in_sync = 0, standby_copy = standby_copy + 1
             WHERE name = ?1 AND standby_node != ''",
            params![addon, node],
        )?;
        Ok(())
    }

    /// Places `addon` on `node`, on a port of `ports` no add-on has (not its own old one
    /// either: both servers may share a host while the old one stops, and a check that the
    /// new one accepts must not be answered by the old). The new port; `None` if none is free.
    pub fn set_addon_node(
        &mut self,
        addon: &str,
        node: &str,
        ports: std::ops::RangeInclusive<u16>,
    ) -> Result<Option<u16>> {
        let tx = self.db.transaction()?;
        let used: std::collections::HashSet<u16> = {
            let mut st =
                tx.prepare("SELECT port FROM addons UNION SELECT standby_port FROM addons")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let Some(port) = ports.into_iter().find(|p| !used.contains(p)) else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE addons SET node = ?2, port = ?3 WHERE name = ?1",
            params![addon, node, port],
        )?;
        tx.commit()?;
        Ok(Some(port))
    }

    /// Whether any backup row (of any add-on) holds this file.
    pub fn backup_file_used(&self, sha256: &str) -> Result<bool> {
        Ok(self
            .db
            .prepare("SELECT 1 FROM backups WHERE sha256 = ?1")?
            .exists([sha256])?)
    }

    /// A new backup of `addon`, `running`, numbered after the last one.
    pub fn start_backup(&mut self, addon: &str, kind: &str, scheduled: bool) -> Result<Backup> {
        let tx = self.db.transaction()?;
        let n: u32 = tx.query_row(
            "SELECT COALESCE(MAX(n), 0) + 1 FROM backups WHERE addon = ?1",
            [addon],
            |r| r.get(0),
        )?;
        tx.execute(
            "INSERT INTO backups (addon, n, kind, sha256, size, state, error, created_at, scheduled)
             VALUES (?1, ?2, ?3, '', 0, 'running', '', ?4, ?5)",
            params![addon, n, kind, now(), scheduled],
        )?;
        let b = tx.query_row(
            &format!("{BACKUP_SELECT} WHERE addon = ?1 AND n = ?2"),
            params![addon, n],
            backup_row,
        )?;
        tx.commit()?;
        Ok(b)
    }

    /// Records how backup `n` of `addon` ended: its file, or why it failed.
    pub fn finish_backup(
        &self,
        addon: &str,
        n: u32,
        outcome: std::result::Result<(&str, u64), &str>,
    ) -> Result<()> {
        let (state, sha, size, error) = match outcome {
            Ok((sha, size)) => ("ok", sha, size, ""),
            Err(e) => ("failed", "", 0, e),
        };
        self.db.execute(
            "UPDATE backups SET state = ?3, sha256 = ?4, size = ?5, error = ?6 WHERE addon = ?1 AND n = ?2",
            params![addon, n, state, sha, size, error],
        )?;
        Ok(())
    }

    /// Backups left `running` by a master that stopped: failed, with the reason.
    pub fn fail_running_backups(&self, why: &str) -> Result<usize> {
        Ok(self.db.execute(
            "UPDATE backups SET state = 'failed', error = ?1 WHERE state = 'running'",
            [why],
        )?)
    }

    /// Sets (or with `None` removes) `addon`'s backup schedule; a new time runs today if it
    /// has not passed.
    pub fn set_schedule(&self, addon: &str, s: Option<(u32, u32, u32)>) -> Result<()> {
        match s {
            Some((at, daily, weekly)) => self.db.execute(
                "INSERT INTO backup_schedules (addon, at_minute, keep_daily, keep_weekly, last_day)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (addon) DO UPDATE SET at_minute = ?2, keep_daily = ?3, keep_weekly = ?4",
                params![addon, at, daily, weekly, now() / 86_400 - 1],
            )?,
            None => self
                .db
                .execute("DELETE FROM backup_schedules WHERE addon = ?1", [addon])?,
        };
        Ok(())
    }

    pub fn schedules(&self) -> Result<Vec<Schedule>> {
        let mut st = self.db.prepare(
            "SELECT addon, at_minute, keep_daily, keep_weekly, last_day FROM backup_schedules ORDER BY addon",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Schedule {
                addon: r.get(0)?,
                at_minute: r.get(1)?,
                keep_daily: r.get(2)?,
                keep_weekly: r.get(3)?,
                last_day: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records that `addon`'s scheduled backup of `day` has started.
    pub fn schedule_ran(&self, addon: &str, day: u64) -> Result<()> {
        self.db.execute(
            "UPDATE backup_schedules SET last_day = ?2 WHERE addon = ?1",
            params![addon, day],
        )?;
        Ok(())
    }

    /// Deletes backups `ns` of `addon`; returns their files' hashes.
    pub fn delete_backups(&self, addon: &str, ns: &[u32]) -> Result<Vec<String>> {
        let mut shas = Vec::new();
        for n in ns {
            if let Some(b) = self.backup(addon, *n)? {
                self.db.execute(
                    "DELETE FROM backups WHERE addon = ?1 AND n = ?2",
                    params![addon, n],
                )?;
                if !b.sha256.is_empty() {
                    shas.push(b.sha256);
                }
            }
        }
        Ok(shas)
    }

    pub fn backups(&self, addon: &str) -> Result<Vec<Backup>> {
        let mut st = self
            .db
            .prepare(&format!("{BACKUP_SELECT} WHERE addon = ?1 ORDER BY n"))?;
        let rows = st.query_map([addon], backup_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn backup(&self, addon: &str, n: u32) -> Result<Option<Backup>> {
        Ok(self
            .db
            .query_row(
                &format!("{BACKUP_SELECT} WHERE addon = ?1 AND n = ?2"),
                params![addon, n],
                backup_row,
            )
            .optional()?)
    }
}

/// The add-on whose URL `app` has as `<alias>_URL`, if any.
fn alias_owner(db: &rusqlite::Connection, app: &str, alias: &str) -> Result<Option<String>> {
    Ok(db
        .query_row(
            "SELECT addon FROM addon_attachments WHERE app = ?1 AND alias = ?2",
            params![app, alias],
            |r| r.get(0),
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new<'a>(app: &'a str, alias: &'a str, url: &'a dyn Fn(&Addon) -> String) -> NewAddon<'a> {
        NewAddon {
            kind: "postgres",
            prefix: "pg",
            app,
            alias,
            node: "n1",
            ports: 15000..=15001,
            password: "pw",
            admin_password: "apw",
            memory_mb: 256,
            url,
        }
    }

    #[test]
    fn create_attach_detach_destroy() {
        let mut s = Store::open_in_memory().unwrap();
        s.create_app("blog").unwrap();
        s.create_app("pg-blog-1").unwrap();
        let url = |a: &Addon| format!("postgres://{}:{}", a.name, a.port);
        let (a, rel) = s
            .create_addon(&new("blog", "DATABASE", &url))
            .unwrap()
            .unwrap();
        // The name no app has; the first port; a uid above every app's.
        assert_eq!((a.name.as_str(), a.port), ("pg-blog-2", 15000));
        assert!(a.seq > ADDON_SEQ_BASE);
        assert_eq!(rel, None, "no release yet");
        assert_eq!(
            s.config("blog").unwrap()["DATABASE_URL"],
            "postgres://pg-blog-2:15000"
        );
        // The same alias twice is refused; another alias gets the next port.
        assert!(matches!(
            s.create_addon(&new("blog", "DATABASE", &url)).unwrap(),
            Err(Refused::AliasTaken { .. })
        ));
        let (b, _) = s
            .create_addon(&new("blog", "REPORTING", &url))
            .unwrap()
            .unwrap();
        assert_eq!(b.port, 15001);
        assert_eq!(
            s.create_addon(&new("blog", "THIRD", &url)).unwrap(),
            Err(Refused::NoPort)
        );
        s.create_app("worker").unwrap();
        s.attach(&a.name, "worker", "DATABASE", "u")
            .unwrap()
            .unwrap();
        assert!(matches!(
            s.attach(&a.name, "worker", "OTHER", "u").unwrap(),
            Err(Refused::Attached { .. })
        ));
        assert_eq!(s.attachments(None, Some(&a.name)).unwrap().len(), 2);
        assert_eq!(s.detach(&a.name, "worker").unwrap(), Some(None));
        assert!(!s.config("worker").unwrap().contains_key("DATABASE_URL"));
        assert_eq!(s.detach(&a.name, "worker").unwrap(), None);
        let bk = s.start_backup(&a.name, "postgres", false).unwrap();
        assert_eq!(bk.id(), "b001");
        s.finish_backup(&a.name, 1, Ok(("abc", 3))).unwrap();
        assert_eq!(s.destroy_addon(&a.name).unwrap(), vec!["abc".to_string()]);
        assert!(!s.config("blog").unwrap().contains_key("DATABASE_URL"));
        assert!(s.addon(&a.name).unwrap().is_none());
    }
}
