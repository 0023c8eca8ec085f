//! zeroku-services: the kinds of add-on (backing services) zeroku runs.
//!
//! It owns what each kind *is*: how its server prepares its data on first start and then runs
//! on a given port under the add-on's own uid (a shell script the worker runs as it runs any
//! instance), the URL apps get, how a backup is taken from it and restored into it, and what a
//! backup file of that kind must look like. One [`Kind`] per kind, in a file of its own, so a
//! third kind is one file and one line in [`KINDS`].
//!
//! It must not start processes, hold add-on state or decide placement: the master owns add-on
//! state (which add-ons exist, where, their credentials and backups) and the worker runs them.
//! Secrets reach a server only through its environment, never its command line.
#![forbid(unsafe_code)]

mod ha;
mod postgres;
mod redis;

pub use ha::{Ha, Lag};
pub use postgres::{db_name as postgres_db_name, Postgres};
pub use redis::Redis;

use std::collections::BTreeMap;
use thiserror::Error;

/// One add-on as its kind needs to know it.
#[derive(Debug, Clone)]
pub struct Addon<'a> {
    /// `pg-blog-1`: also the name of its database and role (`-` as `_`).
    pub name: &'a str,
    /// Where the server listens, on every address of its node.
    pub port: u16,
    /// The apps' password.
    pub password: &'a str,
    /// The server's own administrator's password (PostgreSQL's superuser), never given to apps.
    pub admin_password: &'a str,
    /// The server's memory limit.
    pub memory_mb: u64,
    /// For a standby: the primary it follows (host, port). A server that was a primary and
    /// is started as a standby rejoins the new primary's history first.
    pub follows: Option<(&'a str, u16)>,
}

/// A program the master runs against an add-on (a backup or a restore), with its secrets in
/// `env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// What a kind of add-on is. See the crate documentation.
pub trait Kind: Sync {
    /// `postgres`: what `addons:create` takes.
    fn name(&self) -> &'static str;
    /// `pg`: the start of its add-ons' names (`pg-blog-1`).
    fn prefix(&self) -> &'static str;
    /// `DATABASE`: the config var (`DATABASE_URL`) of a first attachment.
    fn default_alias(&self) -> &'static str;
    /// Debian packages that provide the server and its tools.
    fn packages(&self) -> &'static [&'static str];
    /// The `sh` script the worker runs in the add-on's data directory, as the add-on's uid,
    /// with `$PORT` and [`Kind::start_env`] set: prepares the data on first start, then `exec`s
    /// the server in the foreground on `$PORT`.
    fn start_script(&self) -> String;
    /// The environment [`Kind::start_script`] needs (secrets included).
    fn start_env(&self, a: &Addon) -> BTreeMap<String, String>;
    /// The URL apps connect with, the server on `host`.
    fn url(&self, a: &Addon, host: &str) -> String;
    /// The URL of an add-on with a standby: both servers (`(host, port)`, in a fixed order),
    /// for a client that finds the one taking writes. `None`: the kind has no standbys.
    fn ha_url(&self, _a: &Addon, _servers: [(&str, u16); 2]) -> Option<String> {
        None
    }
    /// How the master runs a standby of this kind (`--ha`); `None`: it has none.
    fn ha(&self) -> Option<&'static dyn Ha> {
        None
    }
    /// Writes a backup of everything the apps stored to its standard output.
    fn backup(&self, a: &Addon, host: &str) -> Result<Tool, Error>;
    /// Restores the backup file at `path` into the add-on. `serve` is an address of the host
    /// that runs the tool where the add-on's node can reach it (and a free port there), for a
    /// kind that restores by having the server pull the data.
    fn restore(&self, a: &Addon, host: &str, path: &str, serve: (&str, u16))
        -> Result<Tool, Error>;
    /// Changes the apps' password to `new_password`: the tool, and what to write to its
    /// standard input (secrets never on a command line). The old password is refused after.
    fn rotate(&self, a: &Addon, host: &str, new_password: &str) -> Result<(Tool, String), Error>;
    /// Whether each server keeps its own password (Redis), so that a rotation is told to a
    /// standby too; `false`: it replicates with the data (PostgreSQL).
    fn password_per_server(&self) -> bool {
        false
    }
    /// Whether the output of [`Kind::rotate`]'s tool says it failed though it exited 0.
    fn rotate_failed(&self, output: &str) -> bool {
        output.contains("ERR")
    }
    /// Asks the server its version and the size of the apps' data: the tool and its input;
    /// [`Kind::parse_stats`] reads its output.
    fn stats(&self, a: &Addon, host: &str) -> Result<(Tool, String), Error>;
    /// (server version, data size in bytes) from [`Kind::stats`]'s output.
    fn parse_stats(&self, output: &str) -> (Option<String>, Option<u64>);
    /// Whether `head` (the first bytes of a backup) is a backup of this kind.
    fn is_backup(&self, head: &[u8]) -> bool;
    /// How a downloaded backup is named: `dump` (`pg_restore`'s custom format), `rdb`.
    fn backup_extension(&self) -> &'static str;
}

/// Every kind, as `addons:create` takes them.
pub static KINDS: &[&dyn Kind] = &[&Postgres, &Redis];

/// What can go wrong in this crate.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Error {
    #[error("no add-on kind {0:?}: zeroku offers {offered}", offered = names())]
    UnknownKind(String),
    #[error("{tool} is not installed on this host (install {package})")]
    Missing { tool: String, package: String },
}

fn names() -> String {
    KINDS
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The kind named `name` (`postgres` or `postgresql`, `redis`).
pub fn kind(name: &str) -> Result<&'static dyn Kind, Error> {
    let name = match name {
        "postgresql" | "heroku-postgresql" | "pg" => "postgres",
        "heroku-redis" => "redis",
        n => n,
    };
    KINDS
        .iter()
        .copied()
        .find(|k| k.name() == name)
        .ok_or_else(|| Error::UnknownKind(name.to_string()))
}

/// The name of a database, role or user for add-on `name` (`pg-blog-1` → `pg_blog_1`).
pub fn ident(name: &str) -> String {
    name.replace('-', "_")
}

/// The first of `candidates` that exists as an executable file.
fn find_tool(candidates: &[String], package: &str) -> Result<String, Error> {
    candidates
        .iter()
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
        .cloned()
        .ok_or_else(|| Error::Missing {
            tool: candidates.first().map_or_else(String::new, |c| {
                c.rsplit('/').next().unwrap_or(c).to_string()
            }),
            package: package.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name_and_alias() {
        assert_eq!(kind("postgres").map(|k| k.name()), Ok("postgres"));
        assert_eq!(kind("postgresql").map(|k| k.name()), Ok("postgres"));
        assert_eq!(kind("redis").map(|k| k.name()), Ok("redis"));
        let e = kind("mysql")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("mysql") && e.contains("postgres, redis"), "{e}");
    }

    #[test]
    fn identifiers_have_no_dashes() {
        assert_eq!(ident("pg-blog-1"), "pg_blog_1");
    }
}
