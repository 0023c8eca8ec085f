//! PostgreSQL: one server per add-on, one role and one database in it for the apps, a
//! superuser (`zeroku`) only the master uses. Passwords only (SCRAM), checksums on, no Unix
//! socket, and nobody but the role may connect to its database.

use crate::{find_tool, ident, Addon, Error, Ha, Kind, Lag, Tool};

/// The role and database of add-on `name` (`pg-blog-1` → `db_blog_1`: names starting with
/// `pg_` are PostgreSQL's own).
pub fn db_name(name: &str) -> String {
    format!("db_{}", ident(name.strip_prefix("pg-").unwrap_or(name)))
}
use std::collections::BTreeMap;

/// The PostgreSQL add-on.
#[derive(Debug)]
pub struct Postgres;

/// The server's administrator: never in an app's URL.
const ADMIN: &str = "zeroku";

/// `tool` from the newest PostgreSQL installed.
fn pg_tool(tool: &str) -> Result<String, Error> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    let mut candidates: Vec<String> = versions
        .iter()
        .map(|v| format!("/usr/lib/postgresql/{v}/bin/{tool}"))
        .collect();
    candidates.push(format!("/usr/bin/{tool}"));
    find_tool(&candidates, "postgresql-client")
}

const SCRIPT: &str = r#"set -eu
umask 077
PGBIN=
for d in /usr/lib/postgresql/*/bin; do [ -x "$d/postgres" ] && PGBIN=$d; done
if [ -z "$PGBIN" ]; then
  echo "zeroku: PostgreSQL is not installed on this node (apt-get install postgresql)" >&2
  exit 1
fi
# initdb and postgres want a user name for their uid: the add-on's uid has none on the host,
# so it gets one of its own (nss_wrapper, as the official PostgreSQL images do).
if ! id -un > /dev/null 2>&1; then
  NSSW=
  for l in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do [ -e "$l" ] && NSSW=$l; done
  if [ -z "$NSSW" ]; then
    echo "zeroku: uid $(id -u) has no name here and libnss-wrapper is not installed (apt-get install libnss-wrapper)" >&2
    exit 1
  fi
  printf 'postgres:x:%s:%s:PostgreSQL:%s:/bin/false\n' "$(id -u)" "$(id -g)" "$PWD" > passwd
  printf 'postgres:x:%s:\n' "$(id -g)" > group
  export LD_PRELOAD="$NSSW" NSS_WRAPPER_PASSWD="$PWD/passwd" NSS_WRAPPER_GROUP="$PWD/group"
fi
DB="$ZEROKU_ADDON_DB"
if [ -n "${ZEROKU_ADDON_PRIMARY_HOST:-}" ]; then
  # A standby of the primary at ZEROKU_ADDON_PRIMARY_HOST:PORT, as the superuser (its password
  # in a 0600 file, never on a command line or in the server's settings).
  printf '*:*:*:zeroku:%s\n' "$ZEROKU_ADDON_ADMIN_PASSWORD" > pgpass
  export PGPASSFILE="$PWD/pgpass" PGCONNECT_TIMEOUT=10
  SRC="host=$ZEROKU_ADDON_PRIMARY_HOST port=$ZEROKU_ADDON_PRIMARY_PORT user=zeroku dbname=postgres"
  # A standby's copy from an earlier placement here (it was moved away and back meanwhile):
  # the primary's log it would resume from may be gone. A fresh copy instead.
  if [ -e data/standby.signal ] && [ -e standby.copy ] \
    && [ "$(cat standby.copy)" != "${ZEROKU_ADDON_STANDBY_COPY:-}" ]; then
    echo "zeroku: this standby's data is an older copy: copying the primary's data again"
    rm -rf data
  fi
  if [ -s data/PG_VERSION ] && [ ! -e data/standby.signal ]; then
    # It was a primary: back onto the new primary's history, or a fresh copy of it.
    echo "zeroku: rewinding onto the primary at $ZEROKU_ADDON_PRIMARY_HOST:$ZEROKU_ADDON_PRIMARY_PORT"
    # (A primary promoted moments ago has its new timeline in its control file only after a
    # checkpoint: without one pg_rewind would find nothing to do.)
    "$PGBIN/psql" -X -q -d "$SRC" -c CHECKPOINT > /dev/null 2>&1 || true
    if ! "$PGBIN/pg_rewind" --target-pgdata=data --source-server="$SRC" > rewind.out 2>&1; then
      cat rewind.out >&2
      echo "zeroku: pg_rewind failed: copying the primary's data instead" >&2
      rm -rf data.rewind-failed
      mv data data.rewind-failed
    fi
    rm -f rewind.out
  fi
  if [ ! -s data/PG_VERSION ]; then
    echo "zeroku: copying the primary's data from $ZEROKU_ADDON_PRIMARY_HOST:$ZEROKU_ADDON_PRIMARY_PORT"
    rm -rf init
    "$PGBIN/pg_basebackup" -d "$SRC" -D init -X stream -c fast --no-password
    mv init data
    rm -rf data.rewind-failed
  fi
  touch data/standby.signal
  printf '%s' "${ZEROKU_ADDON_STANDBY_COPY:-}" > standby.copy
  grep -v '^primary_conninfo' data/postgresql.auto.conf > data/auto.conf.new 2>/dev/null || true
  NAME=zeroku_standby
  [ "${ZEROKU_ADDON_STANDBY_COPY:-0}" = 0 ] || NAME="zeroku_standby_$ZEROKU_ADDON_STANDBY_COPY"
  printf "primary_conninfo = '%s passfile=%s application_name=%s'\n" "$SRC" "$PGPASSFILE" "$NAME" \
    >> data/auto.conf.new
  mv data/auto.conf.new data/postgresql.auto.conf
elif [ -s data/PG_VERSION ]; then
  # A primary: never one that still says it is a standby.
  rm -f data/standby.signal
fi
if [ ! -s data/PG_VERSION ]; then
  echo "zeroku: creating the database cluster"
  rm -rf init
  printf '%s\n' "$ZEROKU_ADDON_ADMIN_PASSWORD" > .pw
  "$PGBIN/initdb" -D init -U zeroku --pwfile=.pw --auth=scram-sha-256 --data-checksums \
    -E UTF8 --locale=C.UTF-8 --no-instructions > /dev/null
  rm -f .pw
  "$PGBIN/postgres" --single -D init postgres > init.out 2>&1 <<SQL
CREATE ROLE "$DB" LOGIN PASSWORD '$ZEROKU_ADDON_PASSWORD';
CREATE DATABASE "$DB" OWNER "$DB";
REVOKE CONNECT, TEMPORARY ON DATABASE "$DB" FROM PUBLIC;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
SQL
  if grep -q ERROR init.out; then
    grep -v STATEMENT init.out >&2  # the statements hold the passwords
    echo "zeroku: preparing the database failed" >&2
    exit 1
  fi
  rm -f init.out
  printf 'host "%s" "%s" all scram-sha-256\nhost all zeroku all scram-sha-256\n' "$DB" "$DB" \
    > init/pg_hba.conf
  mv init data
fi
# Standbys stream as the superuser (servers made before standbys lack the line).
grep -q '^host replication zeroku ' data/pg_hba.conf \
  || printf 'host replication zeroku all scram-sha-256\n' >> data/pg_hba.conf
exec "$PGBIN/postgres" -D data -p "$PORT" -c listen_addresses='*' \
  -c unix_socket_directories='' -c shared_buffers="${ZEROKU_ADDON_SHARED_BUFFERS_MB}MB" \
  -c logging_collector=off -c log_line_prefix='' -c password_encryption=scram-sha-256 \
  -c wal_keep_size="${ZEROKU_ADDON_WAL_KEEP_MB:-0}MB"
"#;

impl Kind for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn prefix(&self) -> &'static str {
        "pg"
    }

    fn default_alias(&self) -> &'static str {
        "DATABASE"
    }

    fn packages(&self) -> &'static [&'static str] {
        &["postgresql", "postgresql-client", "libnss-wrapper"]
    }

    fn start_script(&self) -> String {
        SCRIPT.to_string()
    }

    fn start_env(&self, a: &Addon) -> BTreeMap<String, String> {
        let mut env = BTreeMap::from([
            ("ZEROKU_ADDON_DB".into(), db_name(a.name)),
            ("ZEROKU_ADDON_PASSWORD".into(), a.password.to_string()),
            (
                "ZEROKU_ADDON_ADMIN_PASSWORD".into(),
                a.admin_password.to_string(),
            ),
            // A quarter of the memory limit, as the PostgreSQL docs advise.
            (
                "ZEROKU_ADDON_SHARED_BUFFERS_MB".into(),
                (a.memory_mb / 4).max(16).to_string(),
            ),
        ]);
        if let Some((host, port)) = a.follows {
            env.insert("ZEROKU_ADDON_PRIMARY_HOST".into(), host.to_string());
            env.insert("ZEROKU_ADDON_PRIMARY_PORT".into(), port.to_string());
        }
        env
    }

    fn url(&self, a: &Addon, host: &str) -> String {
        let db = db_name(a.name);
        format!("postgres://{db}:{}@{host}:{}/{db}", a.password, a.port)
    }

    fn ha(&self) -> Option<&'static dyn Ha> {
        Some(&Postgres)
    }

    fn ha_url(&self, a: &Addon, servers: [(&str, u16); 2]) -> Option<String> {
        // libpq tries each host and keeps the one that takes writes.
        let db = db_name(a.name);
        let [(h1, p1), (h2, p2)] = servers;
        Some(format!(
            "postgres://{db}:{}@{h1}:{p1},{h2}:{p2}/{db}?target_session_attrs=read-write",
            a.password
        ))
    }

    fn backup(&self, a: &Addon, host: &str) -> Result<Tool, Error> {
        let db = db_name(a.name);
        Ok(Tool {
            program: pg_tool("pg_dump")?,
            args: vec![
                "--format=custom".into(),
                format!("--host={host}"),
                format!("--port={}", a.port),
                format!("--username={db}"),
                format!("--dbname={db}"),
                "--no-password".into(),
            ],
            env: vec![
                ("PGPASSWORD".into(), a.password.to_string()),
                ("PGCONNECT_TIMEOUT".into(), "10".into()),
            ],
        })
    }

    fn restore(&self, a: &Addon, host: &str, path: &str, _: (&str, u16)) -> Result<Tool, Error> {
        let db = db_name(a.name);
        Ok(Tool {
            program: pg_tool("pg_restore")?,
            args: vec![
                "--clean".into(),
                "--if-exists".into(),
                "--no-owner".into(),
                "--no-acl".into(),
                // All or nothing: a restore that fails leaves the database as it was.
                "--single-transaction".into(),
                "--exit-on-error".into(),
                format!("--host={host}"),
                format!("--port={}", a.port),
                format!("--username={db}"),
                format!("--dbname={db}"),
                "--no-password".into(),
                path.to_string(),
            ],
            env: vec![
                ("PGPASSWORD".into(), a.password.to_string()),
                ("PGCONNECT_TIMEOUT".into(), "10".into()),
            ],
        })
    }

    fn rotate(&self, a: &Addon, host: &str, new_password: &str) -> Result<(Tool, String), Error> {
        let db = db_name(a.name);
        let sql = format!(
            "ALTER ROLE \"{db}\" PASSWORD '{}';\n",
            new_password.replace('\'', "''")
        );
        Ok((Postgres::admin_psql(a, host)?, sql))
    }

    fn stats(&self, a: &Addon, host: &str) -> Result<(Tool, String), Error> {
        let mut tool = Postgres::admin_psql(a, host)?;
        tool.args
            .extend(["--no-align".into(), "--tuples-only".into()]);
        let sql = format!(
            "SELECT current_setting('server_version') || ' ' || pg_database_size('{}');\n",
            db_name(a.name)
        );
        Ok((tool, sql))
    }

    fn parse_stats(&self, output: &str) -> (Option<String>, Option<u64>) {
        let line = output.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
        let mut words = line.split_whitespace();
        let version = words.next().map(str::to_string);
        let size = words.last().and_then(|s| s.parse().ok());
        (version, size)
    }

    fn is_backup(&self, head: &[u8]) -> bool {
        head.starts_with(b"PGDMP")
    }

    fn backup_extension(&self) -> &'static str {
        "dump"
    }
}

impl Postgres {
    /// The administrator's connection, for what only a superuser may do (rotating the apps'
    /// password): `psql` with the statement on its standard input.
    pub fn admin_psql(a: &Addon, host: &str) -> Result<Tool, Error> {
        Ok(Tool {
            program: pg_tool("psql")?,
            args: vec![
                format!("--host={host}"),
                format!("--port={}", a.port),
                format!("--username={ADMIN}"),
                "--dbname=postgres".into(),
                "--no-password".into(),
                "--quiet".into(),
                "--set=ON_ERROR_STOP=1".into(),
            ],
            env: vec![
                ("PGPASSWORD".into(), a.admin_password.to_string()),
                ("PGCONNECT_TIMEOUT".into(), "10".into()),
            ],
        })
    }
}

/// The name the standby of placement `copy` streams under (`application_name`): so that a
/// standby from an earlier placement that still streams (its node was only cut off from the
/// master) neither counts as in sync nor lets a commit through. (0: add-ons from before
/// placements were counted.)
pub fn standby_name(copy: u32) -> String {
    match copy {
        0 => "zeroku_standby".into(),
        n => format!("zeroku_standby_{n}"),
    }
}

/// Synchronous streaming replication: a commit waits until the standby has it
/// (`synchronous_standby_names`).
impl Ha for Postgres {
    fn synchronous(&self) -> bool {
        true
    }

    fn admin(&self, a: &Addon, host: &str, port: u16) -> Result<Tool, Error> {
        let mut a = a.clone();
        a.port = port;
        let mut tool = Postgres::admin_psql(&a, host)?;
        tool.args
            .extend(["--no-align".into(), "--tuples-only".into()]);
        Ok(tool)
    }

    fn replication(&self, copy: u32) -> String {
        let name = standby_name(copy);
        format!(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint, \
             COALESCE((EXTRACT(epoch FROM replay_lag) * 1000)::bigint, 0) \
             FROM pg_stat_replication WHERE application_name = '{name}' AND state = 'streaming';"
        )
    }

    fn parse_lag(&self, out: &str) -> Option<Lag> {
        let (bytes, ms) = out.lines().next()?.trim().split_once('|')?;
        Some(Lag {
            bytes: bytes.parse::<i64>().ok()?.max(0) as u64,
            ms: ms.parse::<i64>().ok().map(|m| m.max(0) as u64),
        })
    }

    fn wait_for_standby(&self, on: bool, copy: u32) -> String {
        let names = if on {
            format!("ANY 1 ({})", standby_name(copy))
        } else {
            String::new()
        };
        format!("ALTER SYSTEM SET synchronous_standby_names = '{names}'; SELECT pg_reload_conf();")
    }

    fn promote(&self) -> String {
        "SELECT pg_promote(true, 30);".into()
    }

    fn promoted(&self, out: &str) -> bool {
        out.trim() == "t"
    }

    fn after_promote(&self) -> String {
        // The checkpoint writes the new timeline into its control file, where pg_rewind on
        // the old primary looks for it (until then it would find nothing to rewind).
        "ALTER SYSTEM SET synchronous_standby_names = ''; \
         ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf(); CHECKPOINT;"
            .into()
    }

    fn pause_writes(&self, a: &Addon) -> String {
        format!(
            "ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf(); \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid();",
            db_name(a.name)
        )
    }

    fn resume_writes(&self) -> String {
        "ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf();".into()
    }

    fn position(&self) -> String {
        "SELECT pg_current_wal_lsn();".into()
    }

    fn parse_position(&self, out: &str) -> Option<String> {
        let lsn = out.trim();
        (!lsn.is_empty() && lsn.chars().all(|c| c.is_ascii_hexdigit() || c == '/'))
            .then(|| lsn.to_string())
    }

    fn applied(&self, pos: &str) -> String {
        format!("SELECT pg_last_wal_replay_lsn() >= '{pos}'::pg_lsn;")
    }

    fn caught_up(&self, out: &str, _pos: &str) -> bool {
        out.trim() == "t"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addon() -> Addon<'static> {
        Addon {
            name: "pg-blog-1",
            port: 15432,
            password: "s3cret",
            admin_password: "adm1n",
            memory_mb: 512,
            follows: None,
        }
    }

    #[test]
    fn the_url_names_the_role_and_database() {
        assert_eq!(
            Postgres.url(&addon(), "10.0.0.5"),
            "postgres://db_blog_1:s3cret@10.0.0.5:15432/db_blog_1"
        );
    }

    #[test]
    fn secrets_are_in_the_environment_not_the_arguments() {
        let env = Postgres.start_env(&addon());
        assert_eq!(env["ZEROKU_ADDON_SHARED_BUFFERS_MB"], "128");
        assert!(!Postgres.start_script().contains("s3cret"));
        if let Ok(t) = Postgres.backup(&addon(), "h") {
            assert!(t.args.iter().all(|a| !a.contains("s3cret")), "{t:?}");
            assert!(t.env.contains(&("PGPASSWORD".into(), "s3cret".into())));
        }
    }

    #[test]
    fn stats_are_the_version_and_the_database_size() {
        assert_eq!(
            Postgres.parse_stats("15.18 (Debian 15.18-0+deb12u1) 7680483\n"),
            (Some("15.18".into()), Some(7_680_483))
        );
    }

    #[test]
    fn lag_is_read_from_pg_stat_replication() {
        assert_eq!(
            Postgres.parse_lag("8192|12\n"),
            Some(Lag {
                bytes: 8192,
                ms: Some(12)
            })
        );
        assert_eq!(Postgres.parse_lag(""), None);
        assert_eq!(
            Postgres.parse_position("0/3000148\n").as_deref(),
            Some("0/3000148")
        );
        assert_eq!(Postgres.parse_position("ERROR: x';--"), None);
    }

    #[test]
    fn custom_format_dumps_are_recognised() {
        assert!(Postgres.is_backup(b"PGDMP\x01\x0e"));
        assert!(!Postgres.is_backup(b"REDIS0010"));
    }
}
