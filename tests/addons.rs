//! Add-ons on real PostgreSQL and Redis servers: created for an app deployed with `git push`,
//! reached through `DATABASE_URL`/`REDIS_URL`, shared by attaching, walled off from each other,
//! backed up and restored, and surviving kills of their worker and of themselves.

mod common;
#[path = "common/git.rs"]
#[allow(dead_code)] // this file uses part of it
mod git;

use common::*;
use git::Repo;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
}

/// A cluster with one worker and one frontend, its add-on ports free now.
fn cluster(port_min: u16) -> (TestCluster, String) {
    let config = TEST_CONFIG.replace(
        "[master]\n",
        &format!(
            "[master]\ndeploy_timeout_secs = 30\naddon_port_min = {}\n",
            handler_port_base()
        ),
    );
    let mut c = TestCluster::start_with(&config);
    c.add_worker("n1", port_min);
    let fe = c.add_frontend("edge");
    (c, fe)
}

/// `notes-app` pushed with git as `app`.
fn push_notes(c: &TestCluster, app: &str) {
    c.cli_ok(&["apps:create", app])
        .unwrap_or_else(|e| panic!("{e}"));
    let url = c.json(&["apps:info", "-a", app])["git_url"]
        .as_str()
        .expect("git_url")
        .to_string();
    let repo = Repo::from_dir(
        &example("notes-app"),
        &c.dir.path().join(format!("repo-{app}")),
    );
    c.git_login(&repo.home);
    let (ok, out) = repo.push(&url, "main");
    assert!(ok, "push failed:\n{out}");
}

fn get(fe: &str, app: &str, path: &str) -> (u16, String) {
    let (code, _, body) = http_get(fe, &format!("{app}.localhost"), path).unwrap_or((
        0,
        String::new(),
        String::new(),
    ));
    (code, body)
}

/// Waits until `GET path` on `app` answers 200 with `want` in its body.
fn wait_body(fe: &str, app: &str, path: &str, want: &str) -> String {
    eventually(
        Duration::from_secs(60),
        &format!("{want:?} from {app}{path}"),
        || {
            let (code, body) = get(fe, app, path);
            if code == 200 && body.contains(want) {
                Ok(body)
            } else {
                Err(format!("{code} {body}"))
            }
        },
    )
}

fn post(fe: &str, app: &str, path: &str, body: &str) -> (u16, String) {
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: {app}.localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (code, _, b) = http_request(fe, &raw).unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (code, b)
}

fn config(c: &TestCluster, app: &str) -> Value {
    c.json(&["config", "-a", app])
}

/// psql as a client of `url` (its password in the environment): (success, output).
fn psql(url: &str, sql: &str) -> (bool, String) {
    let u = url.strip_prefix("postgres://").expect("postgres URL");
    let (cred, rest) = u.split_once('@').expect("credentials");
    let (user, pass) = cred.split_once(':').expect("password");
    let (hostport, db) = rest.split_once('/').expect("database");
    let (host, port) = hostport.rsplit_once(':').expect("port");
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            host,
            "-p",
            port,
            "-U",
            user,
            "-d",
            db,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", pass)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("psql");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// Runs the CLI, which must fail saying `want`; returns what it said.
fn refused(c: &TestCluster, args: &[&str], want: &str) -> String {
    let e = c.cli_ok(args).unwrap_err();
    assert!(e.contains(want), "{args:?}: no {want:?} in {e}");
    e
}

fn psql_ok(url: &str, sql: &str) -> String {
    let (ok, out) = psql(url, sql);
    assert!(ok, "{sql}: {out}");
    out
}

fn addon_of(c: &TestCluster, app: &str, kind: &str) -> Value {
    let all = c.json(&["addons", "-a", app]);
    all.as_array()
        .into_iter()
        .flatten()
        .find(|a| a["kind"] == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} add-on of {app}: {all}"))
}

#[test]
fn an_app_gets_a_database_and_a_redis_shares_them_and_nothing_leaks() {
    let (c, fe) = cluster(39600);
    push_notes(&c, "notes");
    let (code, body) = get(&fe, "notes", "/");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no database attached"), "{body}");

    // One command: a server of its own, DATABASE_URL in a new release, the app on it.
    let out = c.cli(&["addons:create", "postgres", "-a", "notes"]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("Creating pg-notes-1 (postgres) on n1: DATABASE_URL set, release v2"),
        "{said}"
    );
    assert!(said.trim_end().ends_with("done"), "{said}");
    wait_body(&fe, "notes", "/", "notes: 0, visits: None");
    let (code, id) = post(&fe, "notes", "/notes", "buy milk");
    assert_eq!((code, id.trim()), (200, "1"));
    assert!(wait_body(&fe, "notes", "/notes", "buy milk").contains("1 buy milk"));

    // Redis next to it: REDIS_URL, visits counted.
    c.cli_ok(&["addons:create", "redis", "-a", "notes"])
        .unwrap();
    wait_body(&fe, "notes", "/", "visits: 1");
    wait_body(&fe, "notes", "/", "visits: 2");
    let cfg = config(&c, "notes");
    let db_url = cfg["DATABASE_URL"]
        .as_str()
        .expect("DATABASE_URL")
        .to_string();
    assert!(
        cfg["REDIS_URL"]
            .as_str()
            .is_some_and(|u| u.starts_with("redis://default:")),
        "{cfg}"
    );

    // The add-on's server is not root's, and runs from its own 0700 directory.
    let pg = addon_of(&c, "notes", "postgres");
    assert_eq!(pg["state"], "up");
    assert_eq!(pg["attachments"][0]["as"], "DATABASE_URL");
    // What the server says of itself: its version, and the size of the apps' data.
    assert!(
        pg["version"].as_str().is_some_and(|v| v.starts_with("15")),
        "{pg}"
    );
    assert!(pg["size"].as_u64().is_some_and(|s| s > 1_000_000), "{pg}");
    let rd = addon_of(&c, "notes", "redis");
    assert!(
        rd["version"].as_str().is_some_and(|v| v.starts_with('7')),
        "{rd}"
    );
    let table = c.cli_ok(&["addons", "-a", "notes"]).unwrap();
    assert!(
        table.contains("postgres 15") && table.contains(" MB"),
        "{table}"
    );
    let ps = Command::new("ps")
        .args(["-o", "uid=,args=", "-C", "postgres"])
        .output()
        .unwrap();
    let ps = String::from_utf8_lossy(&ps.stdout);
    let line = ps
        .lines()
        .find(|l| l.contains(&format!("-p {}", pg["port"])))
        .unwrap_or_else(|| panic!("{ps}"));
    assert_ne!(line.split_whitespace().next(), Some("0"), "{line}");
    assert!(
        !ps.contains(db_url.split(['@', ':']).nth(2).unwrap_or("?")),
        "a password on a command line: {ps}"
    );

    // A second database for the same app, under another name.
    c.cli_ok(&[
        "addons:create",
        "postgres",
        "-a",
        "notes",
        "--as",
        "REPORTING",
    ])
    .unwrap();
    let report_url = config(&c, "notes")["REPORTING_URL"]
        .as_str()
        .expect("REPORTING_URL")
        .to_string();
    assert_ne!(report_url, db_url);
    // One add-on's role cannot get into another's database, with its own password or not.
    let (user1, pass1) = {
        let cred = db_url
            .trim_start_matches("postgres://")
            .split('@')
            .next()
            .unwrap()
            .to_string();
        let (u, p) = cred.split_once(':').unwrap();
        (u.to_string(), p.to_string())
    };
    let (rest2, db2) = report_url.rsplit_once('/').unwrap();
    let hostport2 = rest2.rsplit_once('@').unwrap().1;
    let crossed = format!("postgres://{user1}:{pass1}@{hostport2}/{db2}");
    let (ok, out) = psql(&crossed, "SELECT 1");
    assert!(!ok, "{out}");
    assert!(
        out.contains("password authentication failed") || out.contains("no pg_hba.conf entry"),
        "{out}"
    );
    // Nor into the server's own databases.
    let (ok, out) = psql(
        &format!("{}/postgres", db_url.rsplit_once('/').unwrap().0),
        "SELECT 1",
    );
    assert!(!ok && out.contains("no pg_hba.conf entry"), "{out}");

    // Another app: no URL until attached; then the same rows.
    push_notes(&c, "reader");
    assert!(config(&c, "reader").get("DATABASE_URL").is_none());
    let (code, body) = get(&fe, "reader", "/");
    assert_eq!(code, 503, "{body}");
    let out = c
        .cli_ok(&["addons:attach", "pg-notes-1", "-a", "reader"])
        .unwrap();
    assert!(
        out.contains("Attached pg-notes-1 to reader as DATABASE_URL"),
        "{out}"
    );
    wait_body(&fe, "reader", "/notes", "1 buy milk");
    assert_eq!(
        attachments(&c, "notes", "pg-notes-1"),
        vec!["DATABASE_URL on notes", "DATABASE_URL on reader"]
    );
    // Attaching twice, or under a name the app uses: refused.
    refused(
        &c,
        &[
            "addons:attach",
            "pg-notes-1",
            "-a",
            "reader",
            "--as",
            "OTHER",
        ],
        "already attached to reader as DATABASE_URL",
    );
    refused(
        &c,
        &["addons:attach", "pg-notes-2", "-a", "reader"],
        "reader already has DATABASE_URL from pg-notes-1",
    );

    // Rotation: the old password is refused, both apps keep working on the new one.
    let out = c
        .cli_ok(&["addons:credentials:rotate", "pg-notes-1", "-a", "notes"])
        .unwrap();
    assert!(
        out.contains("Rotated the credentials of pg-notes-1"),
        "{out}"
    );
    let (ok, out) = psql(&db_url, "SELECT 1");
    assert!(
        !ok && out.contains("password authentication failed"),
        "{out}"
    );
    let new_url = config(&c, "notes")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_url, db_url);
    assert_eq!(
        config(&c, "reader")["DATABASE_URL"].as_str(),
        Some(new_url.as_str())
    );
    assert_eq!(psql_ok(&new_url, "SELECT count(*) FROM notes"), "1");
    // Once the apps' new releases are up (until then the old password is refused).
    eventually(
        Duration::from_secs(60),
        "notes on the new password",
        || match post(&fe, "notes", "/notes", "after rotation") {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        },
    );
    wait_body(&fe, "reader", "/notes", "2 after rotation");
    // Redis too.
    let redis_url = config(&c, "notes")["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string();
    let redis_name = addon_of(&c, "notes", "redis")["name"]
        .as_str()
        .unwrap()
        .to_string();
    c.cli_ok(&["addons:credentials:rotate", &redis_name, "-a", "notes"])
        .unwrap();
    assert!(
        redis(&redis_url, &["PING"]).contains("NOAUTH")
            || redis(&redis_url, &["PING"]).contains("WRONGPASS")
    );
    let redis_new = config(&c, "notes")["REDIS_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(redis(&redis_new, &["PING"]), "PONG");

    // From inside an app (its own uid), the servers' files are out of reach: data, config
    // with the password, append-only file.
    let addons_dir = c.workers[0].2.join("addons");
    let peek = format!(
        "cat {d}/pg-notes-1/data/PG_VERSION {d}/{r}/redis.conf; ls {d}/{r}",
        d = addons_dir.display(),
        r = redis_name
    );
    let o = c.cli(&["run", "-a", "reader", "--no-tty", "--", &peek]);
    let seen = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!o.status.success(), "{seen}");
    assert_eq!(seen.matches("Permission denied").count(), 3, "{seen}");
    assert!(
        !seen.contains("requirepass") && !seen.lines().any(|l| l.trim() == "15"),
        "{seen}"
    );

    // The app's one-offs reach it too: pg:psql, with no password on any command line.
    let out = c
        .cli_ok(&[
            "pg:psql",
            "-a",
            "reader",
            "-c",
            "SELECT 'from psql: ' || count(*) FROM notes",
        ])
        .unwrap();
    assert!(out.contains("from psql: 2"), "{out}");

    // Detach: the URL goes away in a new release; the owner cannot detach its own.
    c.cli_ok(&["addons:detach", "pg-notes-1", "-a", "reader"])
        .unwrap();
    assert!(config(&c, "reader").get("DATABASE_URL").is_none());
    refused(
        &c,
        &["addons:detach", "pg-notes-1", "-a", "notes"],
        "destroy it instead",
    );
    // An app with add-ons is not deleted from under them.
    refused(
        &c,
        &["apps:destroy", "-a", "notes", "--confirm", "notes"],
        "has add-ons with data",
    );
}

fn attachments(c: &TestCluster, app: &str, addon: &str) -> Vec<String> {
    let v = c.json(&["addons:info", addon, "-a", app]);
    v["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{} on {}",
                t["as"].as_str().unwrap_or(""),
                t["app"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// redis-cli against `url` (password in the environment): its output.
fn redis(url: &str, args: &[&str]) -> String {
    let u = url.strip_prefix("redis://default:").expect("redis URL");
    let (pass, hostport) = u.split_once('@').expect("password");
    let (host, port) = hostport.rsplit_once(':').expect("port");
    let out = Command::new("redis-cli")
        .args(["--no-auth-warning", "-h", host, "-p", port])
        .args(args)
        .env("REDISCLI_AUTH", pass)
        .output()
        .expect("redis-cli");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
    .trim()
    .to_string()
}

/// md5 of a table's rows in order, as `COPY … TO STDOUT` writes them.
fn table_md5(url: &str, table: &str) -> String {
    psql_ok(
        url,
        &format!("SELECT count(*) || ' ' || md5(string_agg(t::text, E'\\n' ORDER BY t::text)) FROM {table} t"),
    )
}

#[test]
fn backups_restore_what_was_there_and_bad_input_loses_nothing() {
    let (mut c, _fe) = cluster(39800);
    c.deploy("shop", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&["addons:create", "postgres", "-a", "shop"])
        .unwrap();
    c.cli_ok(&["addons:create", "redis", "-a", "shop"]).unwrap();
    let cfg = config(&c, "shop");
    let db = cfg["DATABASE_URL"].as_str().unwrap().to_string();
    let rd = cfg["REDIS_URL"].as_str().unwrap().to_string();
    psql_ok(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, item text, at timestamptz DEFAULT now());
         INSERT INTO orders (id, item) SELECT g, 'item ' || g FROM generate_series(1, 5000) g;",
    );
    let before = table_md5(&db, "orders");
    assert!(before.starts_with("5000 "), "{before}");

    // Capture: an id, a size and a sha256; listed as good.
    let out = c.cli_ok(&["pg:backups:capture", "-a", "shop"]).unwrap();
    assert!(
        out.starts_with("b001: ") && out.contains("sha256 "),
        "{out}"
    );
    let list = c.json(&["pg:backups", "-a", "shop"]);
    assert_eq!(list[0]["state"], "ok", "{list}");
    let sha = list[0]["sha256"].as_str().unwrap().to_string();
    // Downloaded, it is what pg_restore reads, byte for byte what was stored.
    let file = c.dir.path().join("shop.dump");
    c.cli_ok(&[
        "pg:backups:download",
        "b001",
        "-a",
        "shop",
        "-o",
        file.to_str().unwrap(),
    ])
    .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"PGDMP"));
    // A copy of the data, the user's alone.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let got = Command::new("sha256sum").arg(&file).output().unwrap();
    assert!(String::from_utf8_lossy(&got.stdout).starts_with(&sha));
    let toc = Command::new("pg_restore")
        .arg("--list")
        .arg(&file)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&toc.stdout).contains("TABLE public orders"));

    // Drop the table, restore: the same rows.
    psql_ok(&db, "DROP TABLE orders");
    refused(
        &c,
        &["pg:backups:restore", "b001", "-a", "shop"],
        "--confirm shop",
    );
    c.cli_ok(&[
        "pg:backups:restore",
        "b001",
        "-a",
        "shop",
        "--confirm",
        "shop",
    ])
    .unwrap();
    assert_eq!(table_md5(&db, "orders"), before);

    // --to: into a new add-on (a fork), the original untouched.
    psql_ok(
        &db,
        "INSERT INTO orders (id, item) VALUES (7777, 'only in the original')",
    );
    let out = c
        .cli_ok(&["pg:backups:restore", "b001", "-a", "shop", "--to", "FORK"])
        .unwrap();
    assert!(out.contains("Restored b001 into pg-shop-2"), "{out}");
    let fork = config(&c, "shop")["FORK_URL"].as_str().unwrap().to_string();
    assert_eq!(table_md5(&fork, "orders"), before);
    assert!(table_md5(&db, "orders").starts_with("5001 "));
    psql_ok(&db, "DELETE FROM orders WHERE id = 7777");

    // Redis: keys in, an RDB backup, keys changed and gone, restored.
    for i in 0..300 {
        assert_eq!(
            redis(&rd, &["SET", &format!("k{i}"), &format!("v{i}")]),
            "OK"
        );
    }
    assert_eq!(redis(&rd, &["RPUSH", "list", "a", "b", "c"]), "3");
    let redis_name = addon_of(&c, "shop", "redis")["name"]
        .as_str()
        .unwrap()
        .to_string();
    let out = c
        .cli_ok(&["pg:backups:capture", &redis_name, "-a", "shop"])
        .unwrap();
    assert!(out.starts_with("b001: "), "{out}");
    redis(&rd, &["FLUSHALL"]);
    redis(&rd, &["SET", "k1", "changed"]);
    c.cli_ok(&[
        "pg:backups:restore",
        "b001",
        &redis_name,
        "-a",
        "shop",
        "--confirm",
        "shop",
    ])
    .unwrap();
    assert_eq!(redis(&rd, &["DBSIZE"]), "301");
    assert_eq!(redis(&rd, &["GET", "k1"]), "v1");
    assert_eq!(redis(&rd, &["LRANGE", "list", "0", "-1"]), "a\nb\nc");
    // A primary again: it takes writes.
    assert_eq!(redis(&rd, &["SET", "after", "restore"]), "OK");
    let rdb = c.dir.path().join("shop.rdb");
    c.cli_ok(&[
        "pg:backups:download",
        "b001",
        &redis_name,
        "-a",
        "shop",
        "-o",
        rdb.to_str().unwrap(),
    ])
    .unwrap();
    assert!(std::fs::read(&rdb).unwrap().starts_with(b"REDIS"));

    // Bad input, each a clear error, nothing lost.
    refused(
        &c,
        &["addons:create", "mysql", "-a", "shop"],
        "no add-on kind \"mysql\": zeroku offers postgres, redis",
    );
    refused(
        &c,
        &["addons:create", "postgres", "-a", "shop"],
        "shop already has DATABASE_URL from pg-shop-1: choose another name with --as",
    );
    refused(
        &c,
        &[
            "addons:create",
            "postgres",
            "-a",
            "shop",
            "--as",
            "bad-name",
        ],
        "is not a config var name",
    );
    refused(
        &c,
        &[
            "pg:backups:restore",
            "b009",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
        "no backup b009 of pg-shop-1",
    );
    // Another add-on's backup restores too (as `heroku pg:backups:restore ADDON::b001`), but
    // not one of another kind.
    let pg_name = addon_of(&c, "shop", "postgres")["name"]
        .as_str()
        .unwrap()
        .to_string();
    refused(
        &c,
        &[
            "pg:backups:restore",
            &format!("{redis_name}::b001"),
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
        &format!("is a redis backup; {pg_name} is a postgres add-on"),
    );
    refused(
        &c,
        &[
            "pg:backups:restore",
            "pg-nowhere-1::b001",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
        "no add-on \"pg-nowhere-1\"",
    );
    // A damaged backup file: refused before anything touches the database.
    let stored = c.master.data.join("backups").join(&sha);
    let mut damaged = std::fs::read(&stored).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0xff;
    std::fs::write(&stored, &damaged).unwrap();
    psql_ok(
        &db,
        "INSERT INTO orders (id, item) VALUES (9999, 'after the backup')",
    );
    let e = refused(
        &c,
        &[
            "pg:backups:restore",
            "b001",
            "-a",
            "shop",
            "--confirm",
            "shop",
        ],
        "b001's file is damaged",
    );
    assert!(e.contains("nothing changed"), "{e}");
    assert!(table_md5(&db, "orders").starts_with("5001 "));
    // A schedule whose time has passed today takes today's backup at once, and only one: a
    // master that starts again does not take it twice.
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let minute = (secs % 86_400) / 60;
    let at = format!(
        "{:02}:{:02} UTC",
        minute.saturating_sub(1) / 60,
        minute.saturating_sub(1) % 60
    );
    refused(
        &c,
        &["pg:backups:schedule", "-a", "shop", "--at", "25:00"],
        "not a time like 02:00 UTC",
    );
    let out = c
        .cli_ok(&[
            "pg:backups:schedule",
            "-a",
            "shop",
            "--at",
            &at,
            "--keep-daily",
            "3",
        ])
        .unwrap();
    assert!(
        out.contains("scheduled daily at") && out.contains("keeping 3 daily and 4 weekly"),
        "{out}"
    );
    eventually(
        Duration::from_secs(30),
        "today's scheduled backup",
        || match scheduled(&c).as_slice() {
            [b] if b["state"] == "ok" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let checks = |c: &TestCluster| {
        c.master
            .daemon
            .log_text()
            .matches("backup schedules checked")
            .count()
    };
    let before = checks(&c);
    c.restart_master();
    eventually(
        Duration::from_secs(20),
        "the restarted master to look at its schedules",
        || {
            if checks(&c) > before {
                Ok(())
            } else {
                Err("not yet".into())
            }
        },
    );
    assert_eq!(scheduled(&c).len(), 1);
    assert!(c
        .cli_ok(&["addons:info", &pg_name, "-a", "shop"])
        .unwrap()
        .contains("keeping 3 daily and 4 weekly"));

    // Destroying: confirmed by name, refused while another app uses it.
    c.deploy("other", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&["addons:attach", &pg_name, "-a", "other"])
        .unwrap();
    refused(
        &c,
        &["addons:destroy", &pg_name, "-a", "shop"],
        &format!("--confirm {pg_name}"),
    );
    refused(
        &c,
        &[
            "addons:destroy",
            &pg_name,
            "-a",
            "shop",
            "--confirm",
            &pg_name,
        ],
        "attached to other too",
    );
    assert_eq!(psql_ok(&db, "SELECT count(*) FROM orders"), "5001");
    c.cli_ok(&[
        "addons:destroy",
        &pg_name,
        "-a",
        "shop",
        "--confirm",
        &pg_name,
        "--detach",
    ])
    .unwrap();
    assert!(config(&c, "shop").get("DATABASE_URL").is_none());
    assert!(config(&c, "other").get("DATABASE_URL").is_none());
    assert!(!stored.exists(), "its backups go with it");
    // Its server stops.
    eventually(
        Duration::from_secs(30),
        "the destroyed add-on's server to stop",
        || match psql(&db, "SELECT 1") {
            (false, out) if out.contains("refused") || out.contains("shutting down") => Ok(()),
            (ok, out) => Err(format!("{ok} {out}")),
        },
    );
}

/// Writes ids 1, 2, … one per request until `stop`, each by a new client; returns the ids
/// whose write was acknowledged.
fn writer(
    write: impl Fn(u32) -> bool + Send + 'static,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        let mut acked = Vec::new();
        let mut id = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            id += 1;
            if write(id) {
                acked.push(id);
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        acked
    })
}

#[test]
fn add_on_servers_outlive_their_worker_and_lose_nothing_acknowledged_when_killed() {
    let (mut c, _fe) = cluster(39500);
    c.deploy("ledger", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&["addons:create", "postgres", "-a", "ledger"])
        .unwrap();
    c.cli_ok(&["addons:create", "redis", "-a", "ledger"])
        .unwrap();
    let cfg = config(&c, "ledger");
    let db = cfg["DATABASE_URL"].as_str().unwrap().to_string();
    let rd = cfg["REDIS_URL"].as_str().unwrap().to_string();
    psql_ok(&db, "CREATE TABLE ids (id int PRIMARY KEY)");
    let pg_port = addon_of(&c, "ledger", "postgres")["port"].to_string();
    let rd_port = addon_of(&c, "ledger", "redis")["port"].to_string();
    // (A backend just forked has the server's command line for a moment too: the server is
    // the one whose parent is not one of them.)
    let pg_pid = || {
        let all = pids_with(&format!("bin/postgres\0-D\0data\0-p\0{pg_port}\0"));
        let parent = |pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
        };
        all.iter()
            .filter(|p| parent(p).is_none_or(|pp: u32| !all.contains(&pp)))
            .copied()
            .collect::<Vec<u32>>()
    };
    let rd_pid = || pids_with(&format!("*:{rd_port}"));
    let (pg1, rd1) = (pg_pid(), rd_pid());
    assert_eq!((pg1.len(), rd1.len()), (1, 1), "{pg1:?} {rd1:?}");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (db2, rd2) = (db.clone(), rd.clone());
    let pg_writer = writer(
        move |id| psql(&db2, &format!("INSERT INTO ids VALUES ({id})")).0,
        stop.clone(),
    );
    // RPUSH answers the list's length once the write is acknowledged.
    let rd_writer = writer(
        move |id| {
            redis(&rd2, &["RPUSH", "ids", &id.to_string()])
                .parse::<u64>()
                .is_ok()
        },
        stop.clone(),
    );
    // Both stores take writes, counted as they stand now and 10 more.
    let (db3, rd3) = (db.clone(), rd.clone());
    let writes_go_on = move || {
        let count = || -> Option<(u64, u64)> {
            let (ok, n) = psql(&db3, "SELECT count(*) FROM ids");
            let m = redis(&rd3, &["LLEN", "ids"]).parse().ok()?;
            ok.then(|| n.parse().ok()).flatten().map(|n| (n, m))
        };
        let (p0, r0) = eventually(Duration::from_secs(30), "both stores answering", || {
            count().ok_or_else(|| "not yet".to_string())
        });
        eventually(
            Duration::from_secs(30),
            "10 more writes in each store",
            || match count() {
                Some((p, r)) if p >= p0 + 10 && r >= r0 + 10 => Ok(()),
                other => Err(format!("{other:?} from {p0} {r0}")),
            },
        );
    };
    writes_go_on();

    // kill -9 the worker: the servers run on, taking writes; a new worker adopts the same
    // processes.
    c.worker("n1").1.kill9();
    writes_go_on();
    assert_eq!((pg_pid(), rd_pid()), (pg1.clone(), rd1.clone()));
    let data = c.worker("n1").2.clone();
    let d = c.spawn_worker("n1", &data, 39500);
    c.worker("n1").1 = d;
    eventually(
        Duration::from_secs(20),
        "the new worker adopts both servers",
        || {
            let log = c.worker("n1").1.log_text();
            if log.matches("re-adopted").count() >= 2 {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
    assert_eq!((pg_pid(), rd_pid()), (pg1.clone(), rd1.clone()));
    writes_go_on();

    // kill -9 each server: restarted by the worker, with everything it acknowledged.
    for pid in pg1.iter().chain(&rd1) {
        assert!(unsafe_free_kill(*pid as i32, 9));
    }
    eventually(Duration::from_secs(30), "both servers back", || {
        let (p, r) = (pg_pid(), rd_pid());
        if p.len() == 1 && r.len() == 1 && p != pg1 && r != rd1 && psql(&db, "SELECT 1").0 {
            Ok(())
        } else {
            Err(format!("{p:?} {r:?}"))
        }
    });
    writes_go_on();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (pg_acked, rd_acked) = (pg_writer.join().unwrap(), rd_writer.join().unwrap());
    assert!(
        pg_acked.len() > 20 && rd_acked.len() > 20,
        "{} {}",
        pg_acked.len(),
        rd_acked.len()
    );

    let stored: std::collections::HashSet<u32> = psql_ok(&db, "SELECT id FROM ids")
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let lost: Vec<&u32> = pg_acked.iter().filter(|i| !stored.contains(i)).collect();
    assert!(lost.is_empty(), "PostgreSQL lost acknowledged ids {lost:?}");
    let stored: std::collections::HashSet<u32> = redis(&rd, &["LRANGE", "ids", "0", "-1"])
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    let lost: Vec<&u32> = rd_acked.iter().filter(|i| !stored.contains(i)).collect();
    assert!(lost.is_empty(), "Redis lost acknowledged ids {lost:?}");
    // The crash and the restart are in the add-on's log, as any instance's (its last lines
    // reach the master a moment after the server wrote them).
    let logs = eventually(Duration::from_secs(15), "the recovery in the log", || {
        let logs = c
            .cli_ok(&[
                "logs",
                "-a",
                "ledger",
                "--addon",
                "pg-ledger-1",
                "-n",
                "1000",
            ])
            .unwrap_or_default();
        logs.contains("database system is ready to accept connections")
            .then(|| logs.clone())
            .filter(|l| l.contains("automatic recovery in progress"))
            .ok_or(logs)
    });
    assert!(
        logs.contains("Process exited") && logs.contains("restarting in"),
        "{logs}"
    );
    assert_eq!(addon_of(&c, "ledger", "postgres")["state"], "up");
}

/// The backups of the shop's database that its schedule took.
fn scheduled(c: &TestCluster) -> Vec<Value> {
    c.json(&["pg:backups", "-a", "shop"])
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["scheduled"] == true)
        .cloned()
        .collect()
}

#[test]
fn draining_a_node_moves_its_add_ons_only_when_asked_and_keeps_their_data() {
    let (mut c, fe) = cluster(39900);
    push_notes(&c, "moving");
    c.cli_ok(&["addons:create", "postgres", "-a", "moving"])
        .unwrap();
    assert_eq!(addon_of(&c, "moving", "postgres")["node"], "n1");
    wait_body(&fe, "moving", "/", "notes: 0");
    for note in ["one", "two", "three"] {
        assert_eq!(post(&fe, "moving", "/notes", note).0, 200);
    }
    c.add_worker("n2", 39300);
    eventually(Duration::from_secs(20), "n2 up", || {
        let n = c.json(&["nodes"]);
        if n.to_string().matches("\"up\"").count() >= 2 {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    // A plain drain leaves the database where its data is, and says so.
    let out = c.cli_ok(&["nodes:drain", "n1"]).unwrap();
    assert!(
        out.contains("pg-moving-1 stays on n1: its data is there"),
        "{out}"
    );
    assert_eq!(addon_of(&c, "moving", "postgres")["node"], "n1");
    c.cli_ok(&["nodes:undrain", "n1"]).unwrap();
    // --move-addons: backup, a server on n2, restore, the app repointed.
    let out = c.cli_ok(&["nodes:drain", "n1", "--move-addons"]).unwrap();
    assert!(out.contains("Moved pg-moving-1 from n1 to n2"), "{out}");
    let pg = addon_of(&c, "moving", "postgres");
    assert_eq!(
        (pg["node"].as_str(), pg["state"].as_str()),
        (Some("n2"), Some("up"))
    );
    let url = config(&c, "moving")["DATABASE_URL"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        psql_ok(&url, "SELECT string_agg(body, ',' ORDER BY id) FROM notes"),
        "one,two,three"
    );
    // The app, moved off n1 too, writes to it again once out of maintenance.
    eventually(
        Duration::from_secs(60),
        "the app on the moved database",
        || match post(&fe, "moving", "/notes", "four") {
            (200, _) => Ok(()),
            (code, body) => Err(format!("{code} {body}")),
        },
    );
    wait_body(&fe, "moving", "/notes", "four");
    let logs = c
        .cli_ok(&["logs", "-a", "moving", "--source", "zeroku", "-n", "1000"])
        .unwrap();
    assert!(logs.contains("Moved pg-moving-1 from n1 to n2"), "{logs}");
}
