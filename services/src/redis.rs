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

/// A restore: a short-lived server loaded from the RDB file (`$1`) with a password of its own,
/// and the add-on made its replica until it has the whole data set, then a primary again. The
/// add-on replaces its data only once the copy arrived whole; while it syncs, writes to it are
/// refused (READONLY).
const RESTORE: &str = r#"set -eu
umask 077
d=$(mktemp -d)
pw=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
cp "$1" "$d/dump.rdb"
printf 'port %s\nbind %s\nrequirepass %s\nmasterauth %s\ndir %s\ndbfilename dump.rdb\nappendonly no\nsave ""\ndaemonize no\nlogfile ""\n' \
  "$SERVE_PORT" "$SERVE_HOST" "$pw" "$pw" "$d" > "$d/redis.conf"
"$SERVER" "$d/redis.conf" > "$d/log" 2>&1 &
src=$!
trap 'kill $src 2>/dev/null; wait $src 2>/dev/null; rm -rf "$d"' EXIT
n=0
until REDISCLI_AUTH="$pw" redis-cli --no-auth-warning -h "$SERVE_HOST" -p "$SERVE_PORT" PING 2>/dev/null | grep -q PONG; do
  n=$((n + 1))
  if [ $n -gt 100 ]; then cat "$d/log" >&2; echo "the restore's server did not start" >&2; exit 1; fi
  sleep 0.1
done
printf 'CONFIG SET masterauth %s\nREPLICAOF %s %s\n' "$pw" "$SERVE_HOST" "$SERVE_PORT" | $CLI > "$d/out" 2>&1
if grep -q ERR "$d/out"; then cat "$d/out" >&2; exit 1; fi
n=0
while :; do
  info=$($CLI INFO replication 2>&1 || true)
  case "$info" in
    *master_link_status:up*) case "$info" in *master_sync_in_progress:0*) break;; esac;;
  esac
  n=$((n + 1))
  if [ $n -gt 1200 ]; then
    printf 'REPLICAOF NO ONE\n' | $CLI > /dev/null 2>&1
    echo "the add-on did not take the backup within 120 s: $info" >&2
    exit 1
  fi
  sleep 0.1
done
printf 'REPLICAOF NO ONE\nCONFIG SET masterauth ""\n' | $CLI > "$d/out" 2>&1
if grep -q ERR "$d/out"; then cat "$d/out" >&2; exit 1; fi
"#;

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

    fn restore(
        &self,
        a: &Addon,
        host: &str,
        path: &str,
        serve: (&str, u16),
    ) -> Result<Tool, Error> {
        let cli = cli(a, host, &[])?;
        let server = find_tool(&["/usr/bin/redis-server".into()], "redis-server")?;
        Ok(Tool {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                RESTORE.into(),
                "zeroku-redis-restore".into(),
                path.to_string(),
            ],
            env: vec![
                ("REDISCLI_AUTH".into(), a.password.to_string()),
                (
                    "CLI".into(),
                    format!("{} {}", cli.program, cli.args.join(" ")),
                ),
                ("SERVER".into(), server),
                ("SERVE_HOST".into(), serve.0.to_string()),
                ("SERVE_PORT".into(), serve.1.to_string()),
            ],
        })
    }

    fn rotate(&self, a: &Addon, host: &str, new_password: &str) -> Result<(Tool, String), Error> {
        Ok((
            cli(a, host, &[])?,
            format!("CONFIG SET requirepass {new_password}\nCONFIG REWRITE\n"),
        ))
    }

    fn stats(&self, a: &Addon, host: &str) -> Result<(Tool, String), Error> {
        Ok((cli(a, host, &[])?, "INFO server\nINFO memory\n".into()))
    }

    fn parse_stats(&self, output: &str) -> (Option<String>, Option<u64>) {
        let field = |name: &str| {
            output.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(name)?
                    .strip_prefix(':')
                    .map(str::to_string)
            })
        };
        (
            field("redis_version"),
            field("used_memory").and_then(|v| v.parse().ok()),
        )
    }

    fn is_backup(&self, head: &[u8]) -> bool {
        head.starts_with(b"REDIS")
    }

    fn backup_extension(&self) -> &'static str {
        "rdb"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_come_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\n# Memory\r\nused_memory:1043592\r\nused_memory_human:1019.13K\r\n";
        assert_eq!(
            Redis.parse_stats(info),
            (Some("7.0.15".into()), Some(1_043_592))
        );
    }
}
