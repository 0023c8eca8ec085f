//! The master's state in embedded SQLite (WAL): apps, config vars, releases,
//! formation, nodes, instance placements, tokens and the generation counter.
//!
//! Every write is one transaction, committed before the API answers, so a
//! `kill -9` of the master loses nothing it acknowledged. This module knows
//! SQL and nothing about HTTP or ZMQ.

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

mod addons;
mod certs;
mod metrics;
mod users;
pub use addons::{url_var, Addon, Attachment, Backup, NewAddon, Refused, Schedule};
pub use certs::{Cert, CertStatus};
pub use metrics::{Alert, Minute, TypeMinute, KEEP_MINUTES};
pub use users::{AuditEntry, Perm, User};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON is corrupt: {0}")]
    Json(#[from] serde_json::Error),
}

type Result<T> = std::result::Result<T, StoreError>;

/// A random 256-bit token, hex: what every API token the store keeps is.
pub fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct App {
    pub name: String,
    pub seq: u32,
    pub created_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub app: String,
    pub version: u32,
    pub slug_sha256: String,
    pub slug_size: u64,
    pub process_types: BTreeMap<String, String>,
    pub env: BTreeMap<String, String>,
    pub description: String,
    pub created_at: u64,
    /// How the slug was built (empty for uploaded slugs).
    #[serde(default)]
    pub build: BuildMeta,
}

/// A one-off instance (`zeroku run`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OneOff {
    pub id: String,
    pub app: String,
    pub n: u32,
    pub command: String,
    pub node: String,
    /// How it ended, once it has.
    pub exit: Option<String>,
    /// The terminal of an interactive one-off.
    pub tty: Option<zeroku_conf::Tty>,
}

fn oneoff_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<OneOff> {
    Ok(OneOff {
        id: r.get(0)?,
        app: r.get(1)?,
        n: r.get(2)?,
        command: r.get(3)?,
        node: r.get(4)?,
        exit: r.get(5)?,
        tty: match (r.get(6)?, r.get(7)?, r.get(8)?) {
            (Some(cols), Some(rows), Some(term)) => Some(zeroku_conf::Tty { cols, rows, term }),
            _ => None,
        },
    })
}

/// What makes a release, besides the app's config.
#[derive(Debug, Clone, Copy)]
pub struct NewRelease<'a> {
    pub slug_sha256: &'a str,
    pub slug_size: u64,
    pub process_types: &'a BTreeMap<String, String>,
    pub description: &'a str,
    pub build: &'a BuildMeta,
}

/// What a build recorded about the release it made.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildMeta {
    /// The git commit pushed, if it came by git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buildpacks: Vec<String>,
    #[serde(default)]
    pub build_ms: u64,
    /// The app's `zeroku.toml`: what it provides and requires.
    #[serde(
        default,
        skip_serializing_if = "zeroku_conf::manifest::Manifest::is_empty"
    )]
    pub manifest: zeroku_conf::manifest::Manifest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Formation {
    pub app: String,
    pub proc_type: String,
    pub quantity: u32,
    pub memory_mb: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Node {
    pub name: String,
    pub capacity_mb: u64,
    /// `up` or `dead`.
    pub state: String,
    pub draining: bool,
    pub joined_at: u64,
    /// Where frontends reach this node's instances.
    pub host: String,
    /// The node's CURVE public key on the bus (z85); empty for a node that joined before the
    /// bus was encrypted and has not come back since.
    #[serde(skip)]
    pub bus_key: String,
}

/// A registered frontend.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Frontend {
    pub name: String,
    /// Where handler relays on other nodes connect to its per-app sockets.
    pub handler_host: String,
    /// Its CURVE public key (z85): on the bus, and as the server key of its handler sockets.
    pub bus_key: String,
    /// The worker node on its host (handlers there use `ipc_dir`), or empty.
    pub node: String,
    /// Where it binds its per-app `ipc://` handler sockets.
    pub ipc_dir: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Placement {
    pub id: String,
    pub app: String,
    pub proc_type: String,
    pub index: u32,
    pub node: Option<String>,
    pub memory_mb: u64,
}

/// Where an app's log also goes (`zeroku drains:add`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drain {
    pub app: String,
    pub url: String,
    /// Sent with each batch (`Logplex-Drain-Token`), so the receiver can
    /// tell drains apart.
    pub token: String,
    pub created_at: u64,
}

/// A deploy waiting for its release to come up ([`Store::begin_deploy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub app: String,
    pub version: u32,
    /// The release to roll back to.
    pub previous: Option<u32>,
    /// Unix seconds.
    pub deadline: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// May only register nodes.
    Join,
    /// A registered worker: its own list, slugs.
    Node,
    /// A registered frontend: the route table.
    Frontend,
    /// A user (the token's scope names them): what their permissions allow,
    /// everything if they are an admin.
    User,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hash_token(token: &str) -> String {
    let d = Sha256::digest(token.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS apps (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS config_vars (app TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (app, key));
CREATE TABLE IF NOT EXISTS releases (app TEXT NOT NULL, version INTEGER NOT NULL, slug_sha256 TEXT NOT NULL, slug_size INTEGER NOT NULL,
  process_types TEXT NOT NULL, env TEXT NOT NULL, description TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (app, version));
CREATE TABLE IF NOT EXISTS formation (app TEXT NOT NULL, proc_type TEXT NOT NULL, quantity INTEGER NOT NULL, memory_mb INTEGER NOT NULL, PRIMARY KEY (app, proc_type));
CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, capacity_mb INTEGER NOT NULL, state TEXT NOT NULL, draining INTEGER NOT NULL, joined_at INTEGER NOT NULL, host TEXT NOT NULL DEFAULT '127.0.0.1');
CREATE TABLE IF NOT EXISTS domains (domain TEXT PRIMARY KEY, app TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_settings (app TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (app, key));
CREATE TABLE IF NOT EXISTS routes (app TEXT NOT NULL, prefix TEXT NOT NULL, backend TEXT NOT NULL, PRIMARY KEY (app, prefix));
CREATE TABLE IF NOT EXISTS frontends (name TEXT PRIMARY KEY, handler_host TEXT NOT NULL, joined_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, app TEXT NOT NULL, proc_type TEXT NOT NULL, idx INTEGER NOT NULL, node TEXT, memory_mb INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, role TEXT NOT NULL, node TEXT, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS oneoffs (id TEXT PRIMARY KEY, app TEXT NOT NULL, n INTEGER NOT NULL, command TEXT NOT NULL, node TEXT NOT NULL,
  created_at INTEGER NOT NULL, exit TEXT);
CREATE TABLE IF NOT EXISTS oneoff_ttys (id TEXT PRIMARY KEY, cols INTEGER NOT NULL, rows INTEGER NOT NULL, term TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ssh_keys (name TEXT PRIMARY KEY, key TEXT NOT NULL, fingerprint TEXT UNIQUE NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, admin INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS app_access (app TEXT NOT NULL, user TEXT NOT NULL, perms TEXT NOT NULL, PRIMARY KEY (app, user));
CREATE TABLE IF NOT EXISTS restarts (id TEXT PRIMARY KEY, app TEXT NOT NULL, n INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS drains (app TEXT NOT NULL, url TEXT NOT NULL, token TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (app, url));
CREATE TABLE IF NOT EXISTS deploys (app TEXT PRIMARY KEY, version INTEGER NOT NULL, previous INTEGER, deadline INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS addons (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, app TEXT NOT NULL,
  node TEXT NOT NULL, port INTEGER NOT NULL, password TEXT NOT NULL, admin_password TEXT NOT NULL, memory_mb INTEGER NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS addon_attachments (addon TEXT NOT NULL, app TEXT NOT NULL, alias TEXT NOT NULL, PRIMARY KEY (addon, app), UNIQUE (app, alias));
CREATE TABLE IF NOT EXISTS backups (addon TEXT NOT NULL, n INTEGER NOT NULL, kind TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
  state TEXT NOT NULL, error TEXT NOT NULL, created_at INTEGER NOT NULL, scheduled INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (addon, n));
CREATE TABLE IF NOT EXISTS backup_schedules (addon TEXT PRIMARY KEY, at_minute INTEGER NOT NULL, keep_daily INTEGER NOT NULL,
  keep_weekly INTEGER NOT NULL, last_day INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL, app TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS app_usage (app TEXT NOT NULL, proc_type TEXT NOT NULL, minute INTEGER NOT NULL, node TEXT NOT NULL,
  instances INTEGER NOT NULL, memory_sum INTEGER NOT NULL, memory_max INTEGER NOT NULL, cpu_ms INTEGER NOT NULL, restarts INTEGER NOT NULL,
  PRIMARY KEY (app, minute, proc_type, node));
CREATE INDEX IF NOT EXISTS app_usage_minute ON app_usage (minute);
CREATE TABLE IF NOT EXISTS app_traffic (app TEXT NOT NULL, minute INTEGER NOT NULL, frontend TEXT NOT NULL, classes TEXT NOT NULL, buckets TEXT NOT NULL,
  PRIMARY KEY (app, minute, frontend));
CREATE INDEX IF NOT EXISTS app_traffic_minute ON app_traffic (minute);
CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, app TEXT NOT NULL, rule TEXT NOT NULL, webhook TEXT NOT NULL,
  firing INTEGER NOT NULL DEFAULT 0, since INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS certs (app TEXT NOT NULL, sha256 TEXT NOT NULL, source TEXT NOT NULL, names TEXT NOT NULL, issuer TEXT NOT NULL,
  not_after INTEGER NOT NULL, chain_pem TEXT NOT NULL, key_pem TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (app, sha256));
CREATE TABLE IF NOT EXISTS cert_status (app TEXT PRIMARY KEY, last_error TEXT NOT NULL, error_at INTEGER NOT NULL, failures INTEGER NOT NULL,
  next_try INTEGER NOT NULL, failed_names TEXT NOT NULL DEFAULT '[]');
CREATE TABLE IF NOT EXISTS acme_accounts (directory TEXT PRIMARY KEY, credentials TEXT NOT NULL, created_at INTEGER NOT NULL);
";

pub struct Store {
    db: Connection,
}

/// Adds `column` to `table` unless a database from an earlier zeroku has it already.
fn add_column(db: &Connection, table: &str, column: &str, decl: &str) -> Result<()> {
    let has = db
        .prepare(&format!(
            "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
        ))?
        .exists([column])?;
    if !has {
        db.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        let db = Connection::open(path)?;
        Self::init(db)
    }

    pub fn open_in_memory() -> Result<Store> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(db: Connection) -> Result<Store> {
        // WAL + NORMAL: a committed transaction survives the process being
        // killed (it is in the WAL, in the OS page cache) without an fsync
        // per commit.
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.execute_batch(SCHEMA)?;
        // Columns added after the first schema.
        for (table, column, decl) in [
            ("releases", "build", "TEXT NOT NULL DEFAULT '{}'"),
            ("nodes", "bus_key", "TEXT NOT NULL DEFAULT ''"),
            ("frontends", "bus_key", "TEXT NOT NULL DEFAULT ''"),
            ("frontends", "node", "TEXT NOT NULL DEFAULT ''"),
            ("frontends", "ipc_dir", "TEXT NOT NULL DEFAULT ''"),
            ("tokens", "expires_at", "INTEGER NOT NULL DEFAULT 0"),
            ("ssh_keys", "user", "TEXT NOT NULL DEFAULT ''"),
            ("addons", "standby_node", "TEXT NOT NULL DEFAULT ''"),
            ("addons", "standby_port", "INTEGER NOT NULL DEFAULT 0"),
            ("addons", "primary_index", "INTEGER NOT NULL DEFAULT 1"),
            ("addons", "sync", "INTEGER NOT NULL DEFAULT 1"),
            ("addons", "in_sync", "INTEGER NOT NULL DEFAULT 0"),
            ("addons", "failovers", "INTEGER NOT NULL DEFAULT 0"),
            ("addons", "last_failover", "TEXT NOT NULL DEFAULT ''"),
            ("addons", "standby_copy", "INTEGER NOT NULL DEFAULT 0"),
            ("cert_status", "failed_names", "TEXT NOT NULL DEFAULT '[]'"),
        ] {
            add_column(&db, table, column, decl)?;
        }
        Ok(Store { db })
    }

    // ---- tokens

    pub fn add_token(&self, token: &str, role: Role, node: Option<&str>) -> Result<()> {
        self.add_expiring_token(token, role, node, 0)
    }

    /// Adds a token that stops working at `expires_at` (unix seconds; 0: never).
    pub fn add_expiring_token(
        &self,
        token: &str,
        role: Role,
        node: Option<&str>,
        expires_at: u64,
    ) -> Result<()> {
        let role = serde_json::to_string(&role)?;
        self.db.execute(
            "INSERT OR REPLACE INTO tokens (hash, role, node, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![hash_token(token), role, node, now(), expires_at],
        )?;
        Ok(())
    }

    /// Uses up a join token: true if it was a valid one (it works no more afterwards).
    pub fn take_join_token(&self, token: &str) -> Result<bool> {
        let role = serde_json::to_string(&Role::Join)?;
        let n = self.db.execute(
            "DELETE FROM tokens WHERE hash = ?1 AND role = ?2 AND (expires_at = 0 OR expires_at > ?3)",
            params![hash_token(token), role, now()],
        )?;
        Ok(n > 0)
    }

    /// Forgets expired tokens.
    pub fn drop_expired_tokens(&self) -> Result<usize> {
        Ok(self.db.execute(
            "DELETE FROM tokens WHERE expires_at != 0 AND expires_at <= ?1",
            [now()],
        )?)
    }

    /// Issues `token` as the only node token of `node` (a worker that
    /// registers again gets a new one; the old one stops working).
    pub fn replace_scoped_token(&mut self, token: &str, role: Role, name: &str) -> Result<()> {
        let role = serde_json::to_string(&role)?;
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM tokens WHERE role = ?1 AND node = ?2",
            params![role, name],
        )?;
        tx.execute(
            "INSERT INTO tokens (hash, role, node, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![hash_token(token), role, name, now()],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn token(&self, token: &str) -> Result<Option<(Role, Option<String>)>> {
        let row: Option<(String, Option<String>)> = self
            .db
            .query_row(
                "SELECT role, node FROM tokens WHERE hash = ?1 AND (expires_at = 0 OR expires_at > ?2)",
                params![hash_token(token), now()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((role, node)) => Ok(Some((serde_json::from_str(&role)?, node))),
        }
    }

    pub fn has_admin(&self) -> Result<bool> {
        let n: i64 = self.db.query_row(
            "SELECT COUNT(*) FROM tokens WHERE role = '\"admin\"'",
            [],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    // ---- apps

    pub fn create_app(&self, name: &str) -> Result<Option<App>> {
        let created_at = now();
        let n = self.db.execute(
            "INSERT OR IGNORE INTO apps (name, created_at)
             SELECT ?1, ?2 WHERE NOT EXISTS (SELECT 1 FROM addons WHERE name = ?1)",
            params![name, created_at],
        )?;
        if n == 0 {
            return Ok(None);
        }
        self.app(name)
    }

    pub fn app(&self, name: &str) -> Result<Option<App>> {
        Ok(self
            .db
            .query_row(
                "SELECT name, seq, created_at FROM apps WHERE name = ?1",
                [name],
                |r| {
                    Ok(App {
                        name: r.get(0)?,
                        seq: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn apps(&self) -> Result<Vec<App>> {
        let mut st = self
            .db
            .prepare("SELECT name, seq, created_at FROM apps ORDER BY name")?;
        let rows = st.query_map([], |r| {
            Ok(App {
                name: r.get(0)?,
                seq: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_app(&mut self, name: &str) -> Result<bool> {
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM oneoff_ttys WHERE id IN (SELECT id FROM oneoffs WHERE app = ?1)",
            [name],
        )?;
        for table in [
            "config_vars",
            "releases",
            "formation",
            "instances",
            "domains",
            "routes",
            "app_settings",
            "oneoffs",
            "app_access",
            "restarts",
            "deploys",
            "drains",
            "addon_attachments",
            "app_usage",
            "app_traffic",
            "alerts",
            "certs",
            "cert_status",
        ] {
            tx.execute(&format!("DELETE FROM {table} WHERE app = ?1"), [name])?;
        }
        let n = tx.execute("DELETE FROM apps WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    // ---- incarnations (zeroku ps:restart)

    /// Each restarted instance's incarnation (instances never restarted are 0).
    pub fn restarts(&self) -> Result<std::collections::HashMap<String, u32>> {
        let mut st = self.db.prepare("SELECT id, n FROM restarts")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Gives the instance `id` of `app` its next incarnation, and returns it.
    pub fn bump_restart(&mut self, app: &str, id: &str) -> Result<u32> {
        Ok(self.db.query_row(
            "INSERT INTO restarts (id, app, n) VALUES (?1, ?2, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1 RETURNING n",
            params![id, app],
            |r| r.get(0),
        )?)
    }

    /// Renames app `old` to `new` everywhere the store names it, instance ids
    /// (`old.web.1` → `new.web.1`) included; the audit log keeps the names
    /// it was written with. `Ok(false)` when `new` is taken.
    pub fn rename_app(&mut self, old: &str, new: &str) -> Result<bool> {
        let tx = self.db.transaction()?;
        let taken: bool = tx
            .prepare(
                "SELECT 1 FROM apps WHERE name = ?1 UNION SELECT 1 FROM addons WHERE name = ?1",
            )?
            .exists([new])?;
        if taken {
            return Ok(false);
        }
        // Ids are `<app>.<rest>`: the new name, then the rest as it was.
        let id = "?2 || substr(id, length(?1) + 1)";
        tx.execute(
            &format!("UPDATE oneoff_ttys SET id = {id} WHERE id IN (SELECT id FROM oneoffs WHERE app = ?1)"),
            params![old, new],
        )?;
        for table in ["instances", "oneoffs", "restarts"] {
            tx.execute(
                &format!("UPDATE {table} SET app = ?2, id = {id} WHERE app = ?1"),
                params![old, new],
            )?;
        }
        for table in [
            "config_vars",
            "releases",
            "formation",
            "domains",
            "routes",
            "app_settings",
            "app_access",
            "deploys",
            "drains",
            "addons",
            "addon_attachments",
            "app_usage",
            "app_traffic",
            "alerts",
            "certs",
            "cert_status",
        ] {
            tx.execute(
                &format!("UPDATE {table} SET app = ?2 WHERE app = ?1"),
                params![old, new],
            )?;
        }
        tx.execute(
            "UPDATE apps SET name = ?2 WHERE name = ?1",
            params![old, new],
        )?;
        tx.commit()?;
        Ok(true)
    }

    // ---- log drains

    /// Adds a drain to `app`'s log; `false` when it has it already.
    pub fn add_drain(&mut self, app: &str, url: &str, token: &str) -> Result<bool> {
        let n = self.db.execute(
            "INSERT OR IGNORE INTO drains (app, url, token, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![app, url, token, now() as i64],
        )?;
        Ok(n > 0)
    }

    /// Removes a drain; `false` when `app` had no such drain.
    pub fn remove_drain(&mut self, app: &str, url: &str) -> Result<bool> {
        let n = self.db.execute(
            "DELETE FROM drains WHERE app = ?1 AND url = ?2",
            params![app, url],
        )?;
        Ok(n > 0)
    }

    /// Every app's drains, by app and URL.
    pub fn drains(&self) -> Result<Vec<Drain>> {
        let mut st = self
            .db
            .prepare("SELECT app, url, token, created_at FROM drains ORDER BY app, url")?;
        let rows = st.query_map([], |r| {
            Ok(Drain {
                app: r.get(0)?,
                url: r.get(1)?,
                token: r.get(2)?,
                created_at: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- deploys waiting for their release to come up

    /// Records that `version` of `app` is being deployed: until
    /// [`Store::end_deploy`], a master that starts again resumes the wait
    /// (until `deadline`, Unix seconds) and rolls back to `previous` if the
    /// release does not come up.
    pub fn begin_deploy(
        &mut self,
        app: &str,
        version: u32,
        previous: Option<u32>,
        deadline: u64,
    ) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO deploys (app, version, previous, deadline) VALUES (?1, ?2, ?3, ?4)",
            params![app, version, previous, deadline as i64],
        )?;
        Ok(())
    }

    /// The deploy of `version` of `app` is over (up, rolled back or superseded).
    pub fn end_deploy(&mut self, app: &str, version: u32) -> Result<()> {
        self.db.execute(
            "DELETE FROM deploys WHERE app = ?1 AND version = ?2",
            params![app, version],
        )?;
        Ok(())
    }

    /// Deploys in progress.
    pub fn deploys(&self) -> Result<Vec<Deploy>> {
        let mut st = self
            .db
            .prepare("SELECT app, version, previous, deadline FROM deploys ORDER BY app")?;
        let rows = st.query_map([], |r| {
            Ok(Deploy {
                app: r.get(0)?,
                version: r.get(1)?,
                previous: r.get(2)?,
                deadline: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    // ---- one-off instances (zeroku run)

    /// Records a one-off `<app>.run.<n>` on `node`; returns it.
    pub fn create_oneoff(
        &mut self,
        app: &str,
        command: &str,
        node: &str,
        tty: Option<zeroku_conf::Tty>,
    ) -> Result<OneOff> {
        let tx = self.db.transaction()?;
        let n: u32 = tx.query_row(
            "SELECT COALESCE(MAX(n), 0) + 1 FROM oneoffs WHERE app = ?1",
            [app],
            |r| r.get(0),
        )?;
        let o = OneOff {
            id: format!("{app}.run.{n}"),
            app: app.to_string(),
            n,
            command: command.to_string(),
            node: node.to_string(),
            exit: None,
            tty,
        };
        tx.execute(
            "INSERT INTO oneoffs (id, app, n, command, node, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![o.id, o.app, o.n, o.command, o.node, now()],
        )?;
        if let Some(t) = &o.tty {
            tx.execute(
                "INSERT OR REPLACE INTO oneoff_ttys (id, cols, rows, term) VALUES (?1, ?2, ?3, ?4)",
                params![o.id, t.cols, t.rows, t.term],
            )?;
        }
        tx.commit()?;
        Ok(o)
    }

    /// One-offs still running (no exit recorded).
    pub fn active_oneoffs(&self) -> Result<Vec<OneOff>> {
        let mut st = self.db.prepare(
            "SELECT o.id, app, n, command, node, exit, t.cols, t.rows, t.term FROM oneoffs o LEFT JOIN oneoff_ttys t ON t.id = o.id WHERE exit IS NULL ORDER BY o.id",
        )?;
        let rows = st.query_map([], oneoff_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn oneoff(&self, app: &str, n: u32) -> Result<Option<OneOff>> {
        Ok(self
            .db
            .query_row(
                "SELECT o.id, app, n, command, node, exit, t.cols, t.rows, t.term FROM oneoffs o LEFT JOIN oneoff_ttys t ON t.id = o.id WHERE app = ?1 AND n = ?2",
                params![app, n],
                oneoff_row,
            )
            .optional()?)
    }

    /// Records how a one-off ended; false if it had already ended.
    pub fn finish_oneoff(&self, id: &str, exit: &str) -> Result<bool> {
        Ok(self.db.execute(
            "UPDATE oneoffs SET exit = ?2 WHERE id = ?1 AND exit IS NULL",
            params![id, exit],
        )? > 0)
    }

    // ---- ssh keys (git push over ssh)

    /// Adds a public key; false if the name or the key is already there.
    /// Adds `user`'s SSH key (`""`: the admins' key from before users).
    pub fn add_key(&self, name: &str, key: &str, fingerprint: &str, user: &str) -> Result<bool> {
        let n = self.db.execute(
            "INSERT OR IGNORE INTO ssh_keys (name, key, fingerprint, created_at, user) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, key, fingerprint, now(), user],
        )?;
        Ok(n > 0)
    }

    /// (name, key, fingerprint), by name.
    pub fn keys(&self) -> Result<Vec<(String, String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT name, key, fingerprint FROM ssh_keys ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// (name, fingerprint, owner), by name.
    pub fn key_list(&self) -> Result<Vec<(String, String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT name, fingerprint, user FROM ssh_keys ORDER BY name")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The user an SSH key belongs to (`Some("")` for an admins' key).
    pub fn key_owner(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .query_row("SELECT user FROM ssh_keys WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?)
    }

    pub fn remove_key(&self, name: &str) -> Result<bool> {
        Ok(self
            .db
            .execute("DELETE FROM ssh_keys WHERE name = ?1", [name])?
            > 0)
    }

    // ---- config vars

    pub fn config(&self, app: &str) -> Result<BTreeMap<String, String>> {
        config_of(&self.db, app)
    }

    /// Applies `changes` (`None` unsets) and, when the app has a release,
    /// creates the next release with the new env — in one transaction.
    pub fn set_config(
        &mut self,
        app: &str,
        changes: &BTreeMap<String, Option<String>>,
        description: &str,
    ) -> Result<Option<Release>> {
        let tx = self.db.transaction()?;
        let release = apply_config(&tx, app, changes, description)?;
        tx.commit()?;
        Ok(release)
    }

    // ---- releases

    pub fn releases(&self, app: &str) -> Result<Vec<Release>> {
        let mut st = self
            .db
            .prepare(&format!("{RELEASE_SELECT} WHERE app = ?1 ORDER BY version"))?;
        let rows = st.query_map([app], release_row)?;
        let raw: Vec<_> = rows.collect::<rusqlite::Result<_>>()?;
        raw.into_iter().map(decode_release).collect()
    }

    pub fn release(&self, app: &str, version: u32) -> Result<Option<Release>> {
        let raw = self
            .db
            .query_row(
                &format!("{RELEASE_SELECT} WHERE app = ?1 AND version = ?2"),
                params![app, version],
                release_row,
            )
            .optional()?;
        raw.map(decode_release).transpose()
    }

    pub fn current_release(&self, app: &str) -> Result<Option<Release>> {
        current_release(&self.db, app)
    }

    /// Creates the next release of `app` from a slug and process types, with
    /// the app's current config vars. New process types get a formation row
    /// (`web` and `handler` start at 1, others at 0).
    pub fn create_release(
        &mut self,
        app: &str,
        new: NewRelease<'_>,
        default_memory_mb: u64,
    ) -> Result<Release> {
        let NewRelease {
            slug_sha256,
            slug_size,
            process_types,
            description,
            build,
        } = new;
        let tx = self.db.transaction()?;
        let version = current_release(&tx, app)?.map_or(1, |r| r.version + 1);
        let env = config_of(&tx, app)?;
        let rel = Release {
            app: app.to_string(),
            version,
            slug_sha256: slug_sha256.to_string(),
            slug_size,
            process_types: process_types.clone(),
            env,
            description: description.to_string(),
            created_at: now(),
            build: build.clone(),
        };
        insert_release(&tx, &rel)?;
        for t in process_types.keys() {
            tx.execute(
                "INSERT OR IGNORE INTO formation (app, proc_type, quantity, memory_mb) VALUES (?1, ?2, ?3, ?4)",
                // What serves requests starts with one instance, as on Heroku.
                params![app, t, u32::from(t == "web" || t == "handler"), default_memory_mb],
            )?;
        }
        tx.commit()?;
        Ok(rel)
    }

    /// Heroku's rollback: a new release with the slug, process types and
    /// env of `target`.
    /// A new release with the current one's slug and config (an app setting changed the way
    /// its instances run): instances are replaced as on a deploy. `None` before any release.
    pub fn rerelease(&mut self, app: &str, description: &str) -> Result<Option<Release>> {
        let tx = self.db.transaction()?;
        let Some(cur) = current_release(&tx, app)? else {
            return Ok(None);
        };
        let next = Release {
            version: cur.version + 1,
            description: description.to_string(),
            created_at: now(),
            ..cur
        };
        insert_release(&tx, &next)?;
        tx.commit()?;
        Ok(Some(next))
    }

    pub fn rollback(&mut self, app: &str, target: &Release) -> Result<Release> {
        let tx = self.db.transaction()?;
        let version = current_release(&tx, app)?.map_or(1, |r| r.version + 1);
        let rel = Release {
            version,
            description: format!("Rollback to v{}", target.version),
            created_at: now(),
            ..target.clone()
        };
        insert_release(&tx, &rel)?;
        tx.execute("DELETE FROM config_vars WHERE app = ?1", [app])?;
        for (k, v) in &rel.env {
            tx.execute(
                "INSERT INTO config_vars (app, key, value) VALUES (?1, ?2, ?3)",
                params![app, k, v],
            )?;
        }
        tx.commit()?;
        Ok(rel)
    }

    // ---- formation

    pub fn formation(&self, app: &str) -> Result<Vec<Formation>> {
        let mut st = self.db.prepare(
            "SELECT app, proc_type, quantity, memory_mb FROM formation WHERE app = ?1 ORDER BY proc_type",
        )?;
        let rows = st.query_map([app], formation_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn all_formation(&self) -> Result<Vec<Formation>> {
        let mut st = self.db.prepare(
            "SELECT app, proc_type, quantity, memory_mb FROM formation ORDER BY app, proc_type",
        )?;
        let rows = st.query_map([], formation_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn set_formation(&mut self, rows: &[Formation]) -> Result<()> {
        let tx = self.db.transaction()?;
        for f in rows {
            tx.execute(
                "INSERT OR REPLACE INTO formation (app, proc_type, quantity, memory_mb) VALUES (?1, ?2, ?3, ?4)",
                params![f.app, f.proc_type, f.quantity, f.memory_mb],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- nodes

    /// Records a node joining or coming back, with its bus key.
    pub fn upsert_node(
        &self,
        name: &str,
        capacity_mb: u64,
        host: &str,
        bus_key: &str,
    ) -> Result<()> {
        self.db.execute(
            "INSERT INTO nodes (name, capacity_mb, state, draining, joined_at, host, bus_key) VALUES (?1, ?2, 'up', 0, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET capacity_mb = excluded.capacity_mb, state = 'up', host = excluded.host, bus_key = excluded.bus_key",
            params![name, capacity_mb, now(), host, bus_key],
        )?;
        Ok(())
    }

    // ---- frontends and domains

    /// Registers a frontend; true when it is new or anything handlers use changed.
    pub fn upsert_frontend(&self, f: &Frontend) -> Result<bool> {
        let n = self.db.execute(
            "INSERT INTO frontends (name, handler_host, joined_at, bus_key, node, ipc_dir) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(name) DO UPDATE SET handler_host = excluded.handler_host, bus_key = excluded.bus_key,
               node = excluded.node, ipc_dir = excluded.ipc_dir
             WHERE frontends.handler_host != excluded.handler_host OR frontends.bus_key != excluded.bus_key
               OR frontends.node != excluded.node OR frontends.ipc_dir != excluded.ipc_dir",
            params![f.name, f.handler_host, now(), f.bus_key, f.node, f.ipc_dir],
        )?;
        Ok(n > 0)
    }

    pub fn frontends(&self) -> Result<Vec<Frontend>> {
        let mut st = self.db.prepare(
            "SELECT name, handler_host, bus_key, node, ipc_dir FROM frontends ORDER BY name",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Frontend {
                name: r.get(0)?,
                handler_host: r.get(1)?,
                bus_key: r.get(2)?,
                node: r.get(3)?,
                ipc_dir: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds a custom domain; `Some(app)` when another app already has it.
    pub fn add_domain(&self, app: &str, domain: &str) -> Result<Option<String>> {
        let owner: Option<String> = self
            .db
            .query_row("SELECT app FROM domains WHERE domain = ?1", [domain], |r| {
                r.get(0)
            })
            .optional()?;
        if let Some(o) = owner.filter(|o| o != app) {
            return Ok(Some(o));
        }
        self.db.execute(
            "INSERT OR REPLACE INTO domains (domain, app) VALUES (?1, ?2)",
            params![domain, app],
        )?;
        Ok(None)
    }

    pub fn remove_domain(&self, app: &str, domain: &str) -> Result<bool> {
        Ok(self.db.execute(
            "DELETE FROM domains WHERE domain = ?1 AND app = ?2",
            params![domain, app],
        )? > 0)
    }

    /// Sets the backend of a path prefix of an app.
    pub fn set_route(&self, app: &str, prefix: &str, backend: &zeroku_conf::Backend) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO routes (app, prefix, backend) VALUES (?1, ?2, ?3)",
            params![app, prefix, serde_json::to_string(backend)?],
        )?;
        Ok(())
    }

    pub fn remove_route(&self, app: &str, prefix: &str) -> Result<bool> {
        Ok(self.db.execute(
            "DELETE FROM routes WHERE app = ?1 AND prefix = ?2",
            params![app, prefix],
        )? > 0)
    }

    /// Every path route, as (app, route).
    pub fn routes(&self) -> Result<Vec<(String, zeroku_conf::PathRoute)>> {
        let mut st = self
            .db
            .prepare("SELECT app, prefix, backend FROM routes ORDER BY app, prefix")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let raw: Vec<_> = rows.collect::<rusqlite::Result<_>>()?;
        raw.into_iter()
            .map(|(app, prefix, b)| {
                Ok((
                    app,
                    zeroku_conf::PathRoute {
                        prefix,
                        backend: serde_json::from_str(&b)?,
                    },
                ))
            })
            .collect()
    }

    pub fn set_setting(&self, app: &str, key: &str, value: &str) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO app_settings (app, key, value) VALUES (?1, ?2, ?3)",
            params![app, key, value],
        )?;
        Ok(())
    }

    /// Every app setting, as (app, key, value).
    pub fn settings(&self) -> Result<Vec<(String, String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT app, key, value FROM app_settings ORDER BY app, key")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every custom domain, as (domain, app).
    pub fn domains(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT domain, app FROM domains ORDER BY domain")?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn nodes(&self) -> Result<Vec<Node>> {
        let mut st = self.db.prepare(&format!("{NODE_SELECT} ORDER BY name"))?;
        let rows = st.query_map([], node_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn node(&self, name: &str) -> Result<Option<Node>> {
        Ok(self
            .db
            .query_row(&format!("{NODE_SELECT} WHERE name = ?1"), [name], node_row)
            .optional()?)
    }

    pub fn set_node_state(&self, name: &str, state: &str) -> Result<bool> {
        Ok(self.db.execute(
            "UPDATE nodes SET state = ?2 WHERE name = ?1",
            params![name, state],
        )? > 0)
    }

    /// Forgets a node: its row, its token, and where its instances were (they are placed
    /// again). False if there is no such node.
    pub fn remove_node(&mut self, name: &str) -> Result<bool> {
        let role = serde_json::to_string(&Role::Node)?;
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM tokens WHERE role = ?1 AND node = ?2",
            params![role, name],
        )?;
        tx.execute("UPDATE instances SET node = NULL WHERE node = ?1", [name])?;
        let n = tx.execute("DELETE FROM nodes WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    pub fn set_node_draining(&self, name: &str, draining: bool) -> Result<bool> {
        Ok(self.db.execute(
            "UPDATE nodes SET draining = ?2 WHERE name = ?1",
            params![name, draining],
        )? > 0)
    }

    // ---- placements

    pub fn placements(&self) -> Result<Vec<Placement>> {
        let mut st = self
            .db
            .prepare(&format!("{PLACEMENT_SELECT} ORDER BY app, proc_type, idx"))?;
        let rows = st.query_map([], placement_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn placements_of(&self, app: &str) -> Result<Vec<Placement>> {
        let mut st = self.db.prepare(&format!(
            "{PLACEMENT_SELECT} WHERE app = ?1 ORDER BY proc_type, idx"
        ))?;
        let rows = st.query_map([app], placement_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Turns the placements `old` (as read) into `new` in one transaction,
    /// touching only the rows that differ.
    pub fn update_placements(&mut self, old: &[Placement], new: &[Placement]) -> Result<()> {
        let before: std::collections::HashMap<&str, &Placement> =
            old.iter().map(|p| (p.id.as_str(), p)).collect();
        let after: std::collections::HashSet<&str> = new.iter().map(|p| p.id.as_str()).collect();
        let tx = self.db.transaction()?;
        {
            let mut del = tx.prepare("DELETE FROM instances WHERE id = ?1")?;
            for p in old.iter().filter(|p| !after.contains(p.id.as_str())) {
                del.execute([&p.id])?;
            }
            let mut put = tx.prepare(
                "INSERT OR REPLACE INTO instances (id, app, proc_type, idx, node, memory_mb) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for p in new.iter().filter(|p| before.get(p.id.as_str()) != Some(p)) {
                put.execute(params![
                    p.id,
                    p.app,
                    p.proc_type,
                    p.index,
                    p.node,
                    p.memory_mb
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Reserves `n` values of the cluster-wide generation counter in one
    /// write and returns the first.
    pub fn next_generations(&self, n: u64) -> Result<u64> {
        let last: u64 = self.db.query_row(
            "INSERT INTO meta (key, value) VALUES ('generation', ?1)
             ON CONFLICT(key) DO UPDATE SET value = value + ?1 RETURNING value",
            [n],
            |r| r.get(0),
        )?;
        Ok(last + 1 - n)
    }
}

/// Applies config `changes` to `app` (`None` unsets) and, when the app has a release, inserts
/// the next release with the new env: for a caller's transaction.
fn apply_config(
    tx: &Connection,
    app: &str,
    changes: &BTreeMap<String, Option<String>>,
    description: &str,
) -> Result<Option<Release>> {
    for (k, v) in changes {
        match v {
            Some(v) => tx.execute(
                "INSERT OR REPLACE INTO config_vars (app, key, value) VALUES (?1, ?2, ?3)",
                params![app, k, v],
            )?,
            None => tx.execute(
                "DELETE FROM config_vars WHERE app = ?1 AND key = ?2",
                params![app, k],
            )?,
        };
    }
    let release = match current_release(tx, app)? {
        None => None,
        Some(cur) => {
            let env = config_of(tx, app)?;
            let next = Release {
                version: cur.version + 1,
                env,
                description: description.to_string(),
                created_at: now(),
                ..cur
            };
            insert_release(tx, &next)?;
            Some(next)
        }
    };
    Ok(release)
}

fn config_of(db: &Connection, app: &str) -> Result<BTreeMap<String, String>> {
    let mut st = db.prepare("SELECT key, value FROM config_vars WHERE app = ?1")?;
    let rows = st.query_map([app], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

const PLACEMENT_SELECT: &str = "SELECT id, app, proc_type, idx, node, memory_mb FROM instances";

fn placement_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Placement> {
    Ok(Placement {
        id: r.get(0)?,
        app: r.get(1)?,
        proc_type: r.get(2)?,
        index: r.get(3)?,
        node: r.get(4)?,
        memory_mb: r.get(5)?,
    })
}

const NODE_SELECT: &str =
    "SELECT name, capacity_mb, state, draining, joined_at, host, bus_key FROM nodes";

fn node_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        name: r.get(0)?,
        capacity_mb: r.get(1)?,
        state: r.get(2)?,
        draining: r.get(3)?,
        joined_at: r.get(4)?,
        host: r.get(5)?,
        bus_key: r.get(6)?,
    })
}

const RELEASE_SELECT: &str =
    "SELECT app, version, slug_sha256, slug_size, process_types, env, description, created_at, build FROM releases";

type RawRelease = (
    String,
    u32,
    String,
    u64,
    String,
    String,
    String,
    u64,
    String,
);

fn release_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRelease> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn decode_release(raw: RawRelease) -> Result<Release> {
    let (app, version, slug_sha256, slug_size, pt, env, description, created_at, build) = raw;
    Ok(Release {
        app,
        version,
        slug_sha256,
        slug_size,
        process_types: serde_json::from_str(&pt)?,
        env: serde_json::from_str(&env)?,
        description,
        created_at,
        build: serde_json::from_str(&build).unwrap_or_default(),
    })
}

fn current_release(db: &Connection, app: &str) -> Result<Option<Release>> {
    let raw = db
        .query_row(
            &format!("{RELEASE_SELECT} WHERE app = ?1 ORDER BY version DESC LIMIT 1"),
            [app],
            release_row,
        )
        .optional()?;
    raw.map(decode_release).transpose()
}

fn insert_release(db: &Connection, r: &Release) -> Result<()> {
    db.execute(
        "INSERT INTO releases (app, version, slug_sha256, slug_size, process_types, env, description, created_at, build)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            r.app,
            r.version,
            r.slug_sha256,
            r.slug_size,
            serde_json::to_string(&r.process_types)?,
            serde_json::to_string(&r.env)?,
            r.description,
            r.created_at,
            serde_json::to_string(&r.build)?
        ],
    )?;
    Ok(())
}

fn formation_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Formation> {
    Ok(Formation {
        app: r.get(0)?,
        proc_type: r.get(1)?,
        quantity: r.get(2)?,
        memory_mb: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_config_and_rollback() {
        let mut s = Store::open_in_memory().unwrap();
        s.create_app("hello").unwrap().unwrap();
        assert!(s.create_app("hello").unwrap().is_none(), "duplicate app");
        let pt: BTreeMap<_, _> = [("web".to_string(), "run".to_string())].into();
        let v1 = s
            .create_release(
                "hello",
                NewRelease {
                    slug_sha256: "aa",
                    slug_size: 1,
                    process_types: &pt,
                    description: "first",
                    build: &BuildMeta::default(),
                },
                256,
            )
            .unwrap();
        assert_eq!(v1.version, 1);
        assert_eq!(s.formation("hello").unwrap()[0].quantity, 1);
        let ch = [("GREETING".to_string(), Some("hi".to_string()))].into();
        let v2 = s.set_config("hello", &ch, "Set GREETING").unwrap().unwrap();
        assert_eq!(v2.version, 2);
        assert_eq!(v2.env["GREETING"], "hi");
        assert_eq!(v2.slug_sha256, "aa");
        let v3 = s.rollback("hello", &v1).unwrap();
        assert_eq!((v3.version, v3.env.len()), (3, 0));
        assert!(s.config("hello").unwrap().is_empty());
        assert_eq!(s.releases("hello").unwrap().len(), 3);
    }

    #[test]
    fn a_renamed_app_keeps_everything_under_its_new_name() {
        let mut s = Store::open_in_memory().unwrap();
        let seq = s.create_app("hello").unwrap().unwrap().seq;
        s.create_app("taken").unwrap().unwrap();
        let pt: BTreeMap<_, _> = [("web".to_string(), "run".to_string())].into();
        let meta = BuildMeta::default();
        let new = || NewRelease {
            slug_sha256: "aa",
            slug_size: 1,
            process_types: &pt,
            description: "first",
            build: &meta,
        };
        s.create_release("hello", new(), 256).unwrap();
        let ch = [("GREETING".to_string(), Some("hi".to_string()))].into();
        s.set_config("hello", &ch, "Set GREETING").unwrap().unwrap();
        s.add_domain("hello", "www.example.test").unwrap();
        let placed = Placement {
            id: "hello.web.1".into(),
            app: "hello".into(),
            proc_type: "web".into(),
            index: 1,
            node: Some("n1".into()),
            memory_mb: 256,
        };
        s.update_placements(&[], std::slice::from_ref(&placed))
            .unwrap();
        s.bump_restart("hello", "hello.web.1").unwrap();

        assert!(!s.rename_app("hello", "taken").unwrap(), "a taken name");
        assert!(s.rename_app("hello", "world").unwrap());
        assert!(s.app("hello").unwrap().is_none());
        assert_eq!(s.app("world").unwrap().unwrap().seq, seq, "same uid");
        assert_eq!(s.config("world").unwrap()["GREETING"], "hi");
        assert_eq!(s.releases("world").unwrap().len(), 2);
        assert_eq!(s.formation("world").unwrap()[0].quantity, 1);
        let ids: Vec<String> = s
            .placements_of("world")
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["world.web.1"]);
        assert_eq!(s.restarts().unwrap().get("world.web.1"), Some(&1));
        s.begin_deploy("world", 3, Some(2), 99).unwrap();
        assert_eq!(
            s.deploys().unwrap(),
            vec![Deploy {
                app: "world".into(),
                version: 3,
                previous: Some(2),
                deadline: 99
            }]
        );
        s.end_deploy("world", 2).unwrap();
        assert_eq!(s.deploys().unwrap().len(), 1, "another version's end");
        s.end_deploy("world", 3).unwrap();
        assert!(s.deploys().unwrap().is_empty());
        assert!(s.placements_of("hello").unwrap().is_empty());
        assert!(s.config("hello").unwrap().is_empty());
    }

    #[test]
    fn tokens_are_stored_hashed() {
        let s = Store::open_in_memory().unwrap();
        s.add_token("secret", Role::Node, Some("n1")).unwrap();
        assert_eq!(
            s.token("secret").unwrap(),
            Some((Role::Node, Some("n1".into())))
        );
        assert_eq!(s.token("other").unwrap(), None);
        let raw: String =
            s.db.query_row("SELECT hash FROM tokens", [], |r| r.get(0))
                .unwrap();
        assert_ne!(raw, "secret");
        assert!(!s.has_admin().unwrap());
    }

    #[test]
    fn generation_is_monotonic() {
        let s = Store::open_in_memory().unwrap();
        let a = s.next_generations(1).unwrap();
        let b = s.next_generations(3).unwrap();
        let c = s.next_generations(1).unwrap();
        assert_eq!((b, c), (a + 1, a + 4));
    }
}
