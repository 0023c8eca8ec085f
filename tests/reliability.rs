//! What a fault-injection run found (issue: "Nothing runs twice, nothing is lost"), each a
//! regression test: sources a master killed mid-upload leaves are gone when it starts again;
//! config vars and commands no process could be started with are refused with the limit named;
//! no CLI table breaks on what the API returns.

mod common;
use common::*;
use std::io::Write;
use std::time::Duration;

#[test]
fn a_source_cut_off_by_a_master_kill_is_removed_when_it_starts_again() {
    let mut c = TestCluster::start();
    c.cli_ok(&["apps:create", "cut"]).unwrap();
    let addr = c.master.url.trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/apps/cut/builds HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        c.master.token,
        50 << 20
    )
    .unwrap();
    s.write_all(&vec![0u8; 4 << 20]).unwrap();
    let incoming = c.master.data.join("builds/incoming");
    eventually(Duration::from_secs(10), "the upload on disk", || {
        let n = std::fs::read_dir(&incoming).map_or(0, |d| d.count());
        if n > 0 {
            Ok(())
        } else {
            Err("nothing yet".into())
        }
    });
    c.restart_master();
    drop(s);
    let left: Vec<_> = std::fs::read_dir(&incoming).unwrap().flatten().collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn what_no_process_can_start_with_is_refused_with_the_limit_named() {
    let c = TestCluster::start();
    c.cli_ok(&["apps:create", "lim"]).unwrap();
    let patch = |body: &serde_json::Value| -> (u16, String) {
        let addr = c.master.url.trim_start_matches("http://");
        let text = body.to_string();
        let raw = format!(
            "PATCH /v1/apps/lim/config HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            c.master.token,
            text.len()
        );
        let (st, _, body) = http_request(addr, &raw).unwrap();
        (st, body)
    };
    let (st, body) = patch(&serde_json::json!({"A": "x\u{0}y"}));
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("NUL"), "{body}");
    let (st, body) = patch(&serde_json::json!({"BIG": "v".repeat(900 << 10)}));
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("MAX_ARG_STRLEN"), "{body}");
    let many: serde_json::Map<String, serde_json::Value> = (0..20_000)
        .map(|i| (format!("K{i}"), serde_json::json!("v")))
        .collect();
    let (st, body) = patch(&serde_json::Value::Object(many));
    assert_eq!(st, 422, "{body}");
    assert!(body.contains("at most 1000"), "{body}");
    assert!(c
        .json(&["releases", "-a", "lim"])
        .as_array()
        .unwrap()
        .is_empty());

    // A Procfile command with a NUL byte, or of 1 MB: refused before any release.
    let dir = c.dir.path().join("lim-src");
    write_tree(&dir, &[("Procfile", "web: echo a\u{0}b\n")]);
    let o = c.cli(&["releases:create", "-a", "lim", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("NUL"), "{err}");
    write_tree(
        &dir,
        &[("Procfile", &format!("web: {}\n", "x".repeat(1 << 20)))],
    );
    let o = c.cli(&["releases:create", "-a", "lim", dir.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("MAX_ARG_STRLEN") && err.len() < 2000,
        "{err}"
    );
    assert!(c
        .json(&["releases", "-a", "lim"])
        .as_array()
        .unwrap()
        .is_empty());

    // 1,000 long names in one change: the release line names ten, and `releases` prints.
    write_tree(&dir, &[("Procfile", "clock: sleep 1000\n")]);
    c.cli_ok(&["releases:create", "-a", "lim", dir.to_str().unwrap()])
        .unwrap();
    let keys: serde_json::Map<String, serde_json::Value> = (0..1000)
        .map(|i| {
            (
                format!("A_RATHER_LONG_CONFIG_VARIABLE_NAME_{i:04}"),
                serde_json::json!("v"),
            )
        })
        .collect();
    let (st, body) = patch(&serde_json::Value::Object(keys));
    assert_eq!(st, 200, "{body}");
    let v = c.json(&["releases", "-a", "lim"]);
    let desc = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == 2)
        .unwrap()["description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(desc.ends_with("_0009 and 990 more"), "{desc}");
    let out = c.cli_ok(&["releases", "-a", "lim"]).unwrap();
    assert!(out.lines().all(|l| l.chars().count() < 400), "{out}");
}
