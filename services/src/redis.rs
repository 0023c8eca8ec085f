//! Redis: one server per add-on, a password (`requirepass`), every write in the append-only
//! file before it is acknowledged to the client (so a killed server loses nothing it
//! acknowledged), no eviction: a full add-on refuses writes rather than dropping keys.
//!
//! With a standby (`--ha`): a replica (`replicaof`), which authenticates as the server's
//! administrator (`zeroku`, an ACL user apps never get). Replication is asynchronous: a write
//! acknowledged by the primary may not have reached the replica when the primary's node dies
//! (Redis's own figure: up to about a second of writes). With `sync=on` the primary refuses
//! writes (`NOREPLICAS`) once its replica has not acknowledged for 10 s, which bounds what a
//! primary cut off from the cluster can take.

use crate::ha::field;
use crate::{find_tool, Addon, Error, Ha, Kind, Lag, Tool};
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
# Its role this start: a primary, or the replica of the one at ZEROKU_ADDON_PRIMARY_HOST:PORT.
# (The administrator's password too: the master uses it, replicas authenticate with it.)
grep -v -E '^(replicaof|slaveof|masteruser|masterauth|user zeroku) ' redis.conf > redis.conf.new || true
printf 'user zeroku on >%s ~* &* +@all\n' "$ZEROKU_ADDON_ADMIN_PASSWORD" >> redis.conf.new
if [ -n "${ZEROKU_ADDON_PRIMARY_HOST:-}" ]; then
  echo "zeroku: a replica of the primary at $ZEROKU_ADDON_PRIMARY_HOST:$ZEROKU_ADDON_PRIMARY_PORT"
  printf 'replicaof %s %s\nmasteruser zeroku\nmasterauth %s\n' "$ZEROKU_ADDON_PRIMARY_HOST" \
    "$ZEROKU_ADDON_PRIMARY_PORT" "$ZEROKU_ADDON_ADMIN_PASSWORD" >> redis.conf.new
fi
mv redis.conf.new redis.conf
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
        let mut env = BTreeMap::from([
            ("ZEROKU_ADDON_PASSWORD".into(), a.password.to_string()),
            (
                "ZEROKU_ADDON_ADMIN_PASSWORD".into(),
                a.admin_password.to_string(),
            ),
            // Room for the server itself and copy-on-write during a save.
            (
                "ZEROKU_ADDON_MAXMEMORY_MB".into(),
                (a.memory_mb * 3 / 4).max(16).to_string(),
            ),
        ]);
        if let Some((host, port)) = a.follows {
            env.insert("ZEROKU_ADDON_PRIMARY_HOST".into(), host.to_string());
            env.insert("ZEROKU_ADDON_PRIMARY_PORT".into(), port.to_string());
        }
        env
    }

    fn ha(&self) -> Option<&'static dyn Ha> {
        Some(&Redis)
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

    fn password_per_server(&self) -> bool {
        true
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

/// Asynchronous replication; `min-replicas-to-write` is the fence (see the module
/// documentation).
impl Ha for Redis {
    fn synchronous(&self) -> bool {
        false
    }

    fn admin(&self, a: &Addon, host: &str, port: u16) -> Result<Tool, Error> {
        Ok(Tool {
            program: find_tool(&["/usr/bin/redis-cli".into()], "redis-tools")?,
            args: [
                "-h",
                host,
                "-p",
                &port.to_string(),
                "--user",
                "zeroku",
                "--no-auth-warning",
            ]
            .map(String::from)
            .to_vec(),
            env: vec![("REDISCLI_AUTH".into(), a.admin_password.to_string())],
        })
    }

    fn refused(&self, out: &str) -> bool {
        out.lines().any(|l| {
            ["ERR", "NOAUTH", "WRONGPASS", "NOPERM", "READONLY"]
                .iter()
                .any(|e| l.starts_with(e))
        })
    }

    fn replication(&self, _copy: u32) -> String {
        "INFO replication\n".into()
    }

    fn parse_lag(&self, out: &str) -> Option<Lag> {
        // slave0:ip=10.0.0.2,port=6380,state=online,offset=1234,lag=0
        let replica = field(out, "slave0")?;
        let get = |k: &str| {
            replica
                .split(',')
                .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        };
        if get("state") != Some("online") {
            return None;
        }
        let at: u64 = field(out, "master_repl_offset")?.parse().ok()?;
        let applied: u64 = get("offset")?.parse().ok()?;
        Some(Lag {
            bytes: at.saturating_sub(applied),
            ms: get("lag")
                .and_then(|s| s.parse::<u64>().ok())
                .map(|s| s * 1000),
        })
    }

    fn wait_for_standby(&self, on: bool, _copy: u32) -> String {
        format!(
            "CONFIG SET min-replicas-to-write {}\nCONFIG SET min-replicas-max-lag 10\nCONFIG REWRITE\n",
            u8::from(on)
        )
    }

    fn promote(&self) -> String {
        "REPLICAOF NO ONE\n".into()
    }

    fn promoted(&self, out: &str) -> bool {
        out.trim() == "OK"
    }

    fn after_promote(&self) -> String {
        // The rewrite drops `replicaof` from its file: started again, it is still the primary.
        "CONFIG SET min-replicas-to-write 0\nCLIENT UNPAUSE\nCONFIG REWRITE\n".into()
    }

    fn pause_writes(&self, _a: &Addon) -> String {
        // Writes wait (up to 30 s) rather than fail, until the restart as a replica ends them
        // (longer than the switchover may wait for the replica to catch up).
        "CLIENT PAUSE 30000 WRITE\n".into()
    }

    fn resume_writes(&self) -> String {
        "CLIENT UNPAUSE\n".into()
    }

    fn position(&self) -> String {
        "INFO replication\n".into()
    }

    fn parse_position(&self, out: &str) -> Option<String> {
        field(out, "master_repl_offset")
            .filter(|o| o.parse::<u64>().is_ok())
            .map(str::to_string)
    }

    fn applied(&self, _pos: &str) -> String {
        "INFO replication\n".into()
    }

    fn caught_up(&self, out: &str, pos: &str) -> bool {
        let (Some(applied), Ok(pos)) = (
            field(out, "slave_repl_offset").and_then(|o| o.parse::<u64>().ok()),
            pos.parse::<u64>(),
        ) else {
            return false;
        };
        field(out, "master_link_status") == Some("up") && applied >= pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_and_offsets_come_from_info_replication() {
        let primary = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=6380,state=online,offset=1000,lag=1\r\nmaster_repl_offset:1200\r\n";
        assert_eq!(
            Redis.parse_lag(primary),
            Some(Lag {
                bytes: 200,
                ms: Some(1000)
            })
        );
        assert_eq!(
            Redis.parse_lag(&primary.replace("online", "wait_bgsave")),
            None
        );
        assert_eq!(Redis.parse_position(primary).as_deref(), Some("1200"));
        let replica = "role:slave\r\nmaster_link_status:up\r\nslave_repl_offset:1200\r\n";
        assert!(Redis.caught_up(replica, "1200"));
        assert!(!Redis.caught_up(replica, "1201"));
        assert!(!Redis.caught_up(&replica.replace(":up", ":down"), "1"));
    }

    #[test]
    fn the_administrator_password_is_not_in_the_script() {
        let a = Addon {
            name: "redis-x-1",
            port: 1,
            password: "apps",
            admin_password: "adm1n",
            memory_mb: 64,
            follows: Some(("10.0.0.1", 7000)),
        };
        let env = Redis.start_env(&a);
        assert_eq!(env["ZEROKU_ADDON_PRIMARY_PORT"], "7000");
        assert!(!Redis.start_script().contains("adm1n"));
        if let Ok(t) = Redis.admin(&a, "h", 2) {
            assert!(t.args.iter().all(|x| !x.contains("adm1n")));
        }
    }

    #[test]
    fn stats_come_from_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\n# Memory\r\nused_memory:1043592\r\nused_memory_human:1019.13K\r\n";
        assert_eq!(
            Redis.parse_stats(info),
            (Some("7.0.15".into()), Some(1_043_592))
        );
    }
}
