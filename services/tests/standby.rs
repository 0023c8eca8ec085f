//! The PostgreSQL start script's standby: a real primary and a real standby from the script the
//! worker runs, streaming, synchronous; the primary killed -9, the standby promoted, and the old
//! primary started again as a standby of the new one: it rewinds onto the new history, follows
//! it, and never takes a write again. (The orchestration, which decides when, is the master's.)

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use zeroku_services::{Addon, Kind, Postgres};

const ADMIN_PASSWORD: &str = "adm1n-Secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A uid no one has: the server must not run as root, and has no name here (the script gives
/// it one with nss_wrapper, as on a node).
fn uid() -> u32 {
    731_000 + std::process::id() % 1000
}

/// Starts the script in `dir` on `port`, a standby of `follows` when given.
fn start(dir: &Path, port: u16, follows: Option<u16>) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    std::os::unix::fs::chown(dir, Some(uid()), Some(uid())).unwrap();
    let a = Addon {
        name: "pg-ha-1",
        port,
        password: "app-Secret",
        admin_password: ADMIN_PASSWORD,
        memory_mb: 128,
        follows: follows.map(|p| ("127.0.0.1", p)),
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.with_extension("log"))
        .unwrap();
    Command::new("/bin/sh")
        .arg("-c")
        .arg(Postgres.start_script())
        .current_dir(dir)
        .env_clear()
        .envs(Postgres.start_env(&a))
        .env("PORT", port.to_string())
        .env("PATH", "/usr/bin:/bin")
        .env("ZEROKU_ADDON_WAL_KEEP_MB", "64")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .uid(uid())
        .gid(uid())
        .process_group(0)
        .spawn()
        .expect("sh")
}

fn kill9(c: &mut Child) {
    // The whole group: postgres and its children.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", c.id())])
        .status();
    let _ = c.wait();
}

fn psql(port: u16, db: &str, sql: &str) -> (bool, String) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-U", "zeroku", "-d", db, "-c", sql])
        .env("PGPASSWORD", ADMIN_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "3")
        .output()
        .expect("psql (postgresql-client)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

fn eventually(what: &str, secs: u64, mut f: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn answers(port: u16, sql: &str, want: &str) -> Result<(), String> {
    match psql(port, "db_ha_1", sql) {
        (true, got) if got == want => Ok(()),
        (_, got) => Err(format!("{sql} on :{port}: {got}")),
    }
}

fn logs(dir: &Path) -> String {
    std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default()
}

#[test]
fn a_standby_follows_takes_over_and_the_old_primary_rejoins_behind_it() {
    if Command::new("psql").arg("--version").output().is_err() {
        panic!("psql is missing: run scripts/deps.sh");
    }
    let tmp = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(uid()), Some(uid())).unwrap();
    let (d1, d2) = (tmp.path().join("one"), tmp.path().join("two"));
    let (p1, p2) = (free_port(), free_port());

    // A primary, and a standby copied from it.
    let mut one = start(&d1, p1, None);
    eventually("the primary up", 60, || answers(p1, "SELECT 1", "1"));
    assert!(psql(p1, "db_ha_1", "CREATE TABLE t (id int PRIMARY KEY)").0);
    let mut two = start(&d2, p2, Some(p1));
    eventually("the standby up", 60, || {
        answers(p2, "SELECT pg_is_in_recovery()", "t")
    });
    // Synchronous: a commit is acknowledged once the standby has it.
    let (ok, out) = psql(
        p1,
        "postgres",
        "ALTER SYSTEM SET synchronous_standby_names = 'ANY 1 (zeroku_standby)'",
    );
    assert!(ok, "{out}");
    assert!(psql(p1, "postgres", "SELECT pg_reload_conf()").0);
    eventually("the standby synchronous", 30, || {
        answers(
            p1,
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'zeroku_standby'",
            "quorum",
        )
    });
    for id in 1..=50 {
        let (ok, out) = psql(p1, "db_ha_1", &format!("INSERT INTO t VALUES ({id})"));
        assert!(ok, "{out}");
    }
    eventually("the standby to have them", 10, || {
        answers(p2, "SELECT count(*) FROM t", "50")
    });
    let (ok, out) = psql(p2, "db_ha_1", "INSERT INTO t VALUES (1000)");
    assert!(
        !ok && out.contains("read-only"),
        "a standby takes no write: {out}"
    );

    // The primary dies; the standby is promoted and takes writes.
    kill9(&mut one);
    let (ok, out) = psql(p2, "postgres", "SELECT pg_promote(true, 30)");
    assert!(ok && out == "t", "{out}");
    for id in 51..=80 {
        let (ok, out) = psql(p2, "db_ha_1", &format!("INSERT INTO t VALUES ({id})"));
        assert!(ok, "{out}");
    }

    // The old primary comes back as a standby of the new one: rewound, following, read-only.
    let mut one = start(&d1, p1, Some(p2));
    eventually("the old primary back as a standby", 90, || {
        answers(p1, "SELECT pg_is_in_recovery()", "t")
    });
    eventually("the old primary to follow", 20, || {
        answers(p1, "SELECT count(*) FROM t", "80")
    });
    let (ok, out) = psql(p1, "db_ha_1", "INSERT INTO t VALUES (2000)");
    assert!(!ok && out.contains("read-only"), "{out}");
    assert!(
        logs(&d1).contains("rewinding onto the primary"),
        "{}",
        logs(&d1)
    );
    // And it is what a synchronous standby of the new primary needs to be.
    eventually("the old primary streaming", 30, || {
        answers(
            p2,
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'zeroku_standby'",
            "1",
        )
    });
    kill9(&mut one);
    kill9(&mut two);
}
