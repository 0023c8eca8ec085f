//! Redis: one server per add-on, a password (`requirepass`), every write in the append-only
//! file before it is acknowledged to the client (so a killed server loses nothing it
//! acknowledged), no eviction: a full add-on refuses writes rather than dropping keys.

use crate::{find_tool, Addon, Error, Kind, Tool};
use std::collections::BTreeMap;

/// The Redis add-on.
#[derive(Debug)]
pub struct Redis;

const SCRIPT: &str = r#"set -eu
umask 077
if ! command -v redis-server > /dev/null; then
  echo "zeroku: Redis is not installed on this node (apt-get install redis-server)" >&2
  exit 1
fi
# Written once: `CONFIG REWRITE` keeps it current (a rotated password) from then on.
[ -s redis.conf ] || cat > redis.conf <<CONF
port $PORT
bind * -::*
protected-mode no
requirepass $ZEROKU_ADDON_PASSWORD
appendonly yes
appendfsync everysec
dir "$PWD"
dbfilename dump.rdb
maxmemory ${ZEROKU_ADDON_MAXMEMORY_MB}mb
maxmemory-policy noeviction
daemonize no
logfile ""
CONF
exec redis-server "$PWD/redis.conf"
"#;

/// `redis-cli` on the add-on with the apps' password (in its environment), then `args`.
fn cli(a: &Addon, host: &str, args: &[&str]) -> Result<Tool, Error> {
    let mut all: Vec<String> = vec![
        "-h".into(),
        host.to_string(),
        "-p".into(),
        a.port.to_string(),
        "--no-auth-warning".into(),
    ];
    all.extend(args.iter().map(|s| s.to_string()));
    Ok(Tool {
        program: find_tool(&["/usr/bin/redis-cli".into()], "redis-tools")?,
        args: all,
        env: vec![("REDISCLI_AUTH".into(), a.password.to_string())],
    })
}

impl Kind for Redis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn prefix(&self) -> &'static str {
        "redis"
    }

    fn default_alias(&self) -> &'static str {
        "REDIS"
    }

    fn packages(&self) -> &'static [&'static str] {
        &["redis-server", "redis-tools"]
    }

    fn start_script(&self) -> String {
        SCRIPT.to_string()
    }

    fn start_env(&self, a: &Addon) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ZEROKU_ADDON_PASSWORD".into(), a.password.to_string()),
            // Room for the server itself and copy-on-write during a save.
            (
                "ZEROKU_ADDON_MAXMEMORY_MB".into(),
                (a.memory_mb * 3 / 4).max(16).to_string(),
            ),
        ])
    }

    fn url(&self, a: &Addon, host: &str) -> String {
        format!("redis://default:{}@{host}:{}", a.password, a.port)
    }

    fn backup(&self, a: &Addon, host: &str) -> Result<Tool, Error> {
        cli(a, host, &["--rdb", "-"])
    }

    fn restore(&self, _: &Addon, _: &str, _: &str) -> Result<Tool, Error> {
        Err(Error::NoRestore("Redis"))
    }

    fn rotate(&self, a: &Addon, host: &str, new_password: &str) -> Result<(Tool, String), Error> {
        Ok((
            cli(a, host, &[])?,
            format!("CONFIG SET requirepass {new_password}\nCONFIG REWRITE\n"),
        ))
    }

    fn is_backup(&self, head: &[u8]) -> bool {
        head.starts_with(b"REDIS")
    }

    fn backup_extension(&self) -> &'static str {
        "rdb"
    }
}
