//! Bad input gets a clear error and breaks nothing: names, Procfiles,
//! process types, config files, API bodies, garbage on the ZMQ sockets.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

fn stderr_of(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn invalid_names_procfiles_and_types_are_refused_clearly() {
    let mut c = TestCluster::start();
    c.add_worker("b1", 32400);
    for bad in ["Hello", "my_app", "9lives", "a.b", "../etc"] {
        let o = c.cli(&["apps:create", bad]);
        let e = stderr_of(&o);
        assert!(!o.status.success(), "{bad} accepted");
        assert!(e.contains("invalid app name"), "{bad}: {e}");
        assert!(!e.contains("panicked"));
    }
    let o = c.cli(&["apps:create", "dup"]);
    assert!(o.status.success());
    let o = c.cli(&["apps:create", "dup"]);
    assert!(
        stderr_of(&o).contains("already exists"),
        "{}",
        stderr_of(&o)
    );

    // A Procfile with garbage lines names the line.
    let src = c.dir.path().join("garbage");
    write_tree(&src, &[("Procfile", "web: ok\nthis line is garbage\n")]);
    let o = c.cli(&["releases:create", "-a", "dup", src.to_str().unwrap()]);
    let e = stderr_of(&o);
    assert!(!o.status.success() && e.contains("Procfile line 2"), "{e}");
    let src = c.dir.path().join("noprocfile");
    write_tree(&src, &[("README", "nothing")]);
    let e = stderr_of(&c.cli(&["releases:create", "-a", "dup", src.to_str().unwrap()]));
    assert!(e.contains("Procfile"), "{e}");
    assert!(
        c.json(&["releases", "-a", "dup"])
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was released"
    );

    // Scaling before any release, an unknown type, a bad quantity.
    let e = stderr_of(&c.cli(&["ps:scale", "-a", "dup", "web=1"]));
    assert!(e.contains("no release yet"), "{e}");
    c.deploy("dup", TICKER);
    let e = stderr_of(&c.cli(&["ps:scale", "-a", "dup", "wbe=2"]));
    assert!(
        e.contains("unknown process type \"wbe\"") && e.contains("clock"),
        "{e}"
    );
    let e = stderr_of(&c.cli(&["ps:scale", "-a", "dup", "clock=lots"]));
    assert!(e.contains("not a number"), "{e}");
    let e = stderr_of(&c.cli(&["config:set", "-a", "dup", "PORT=1"]));
    assert!(e.contains("set by zeroku"), "{e}");
    let e = stderr_of(&c.cli(&["rollback", "-a", "dup", "v9"]));
    assert!(e.contains("no release v9"), "{e}");
    let e = stderr_of(&c.cli(&["ps", "-a", "missing"]));
    assert!(e.contains("no app named"), "{e}");
}

/// Sends a raw HTTP request and returns (status line, body).
fn raw_http(addr: &str, request: &str) -> (String, String) {
    raw_http_bytes(addr, request.as_bytes())
}

fn raw_http_bytes(addr: &str, request: &[u8]) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.lines().next().unwrap_or("").to_string();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn api_answers_garbage_with_json_errors() {
    let c = TestCluster::start();
    let auth = format!("Authorization: Bearer {}\r\n", c.master.token);
    let (st, body) = raw_http(
        &c.master.api,
        &format!("POST /v1/apps HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 9\r\nConnection: close\r\n\r\n{{not json"),
    );
    assert!(st.contains("400"), "{st}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "bad_request");
    let (st, _) = raw_http(
        &c.master.api,
        "GET /v1/apps HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(st.contains("401"), "{st}");
    let (st, _) = raw_http(
        &c.master.api,
        &format!("GET /v1/nope HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
    );
    assert!(st.contains("404"), "{st}");
    let (st, _) = raw_http(&c.master.api, "THIS IS NOT HTTP\r\n\r\n");
    assert!(st.is_empty() || st.contains("400"), "{st}");
    // A slug upload whose bytes do not match the sha256 in the URL.
    let sha = "ab".repeat(32);
    let (st, body) = raw_http(
        &c.master.api,
        &format!("PUT /v1/slugs/{sha} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\nConnection: close\r\n\r\nhello"),
    );
    assert!(st.contains("422") && body.contains("sha256"), "{st} {body}");
    // The master is still fine.
    assert!(c.cli_ok(&["apps"]).is_ok());
}

#[test]
fn garbage_on_the_masters_pull_socket_is_dropped() {
    let mut c = TestCluster::start();
    c.add_worker("g1", 32600);
    eventually(Duration::from_secs(15), "node up", || {
        let n = c.json(&["nodes"]);
        if n[0]["last_seen_ms"].is_number() {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });
    let status = |c: &TestCluster| -> serde_json::Value {
        let (_, body) = raw_http(
            &c.master.api,
            &format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", c.master.token),
        );
        serde_json::from_str(&body).unwrap_or_default()
    };
    let ctx = zmq::Context::new();
    // A stranger (no CURVE) never gets a connection: counted, nothing delivered.
    let stranger = ctx.socket(zmq::PUSH).unwrap();
    stranger.set_linger(0).unwrap();
    stranger.connect(&c.master.pull).unwrap();
    let _ = stranger.send(&b"\x00\xffgarbage"[..], zmq::DONTWAIT);
    eventually(Duration::from_secs(10), "the stranger refused", || {
        let s = status(&c);
        if s["refused_peers"].as_u64() >= Some(1) {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    // Garbage from a registered node (its own key, from its data dir) is
    // dropped and counted.
    let push = ctx.socket(zmq::PUSH).unwrap();
    push.set_linger(0).unwrap();
    let (keys, master) = c.node_bus_keys("g1");
    zeroku_bus::curve::client(&push, &keys, &master).unwrap();
    push.connect(&c.master.pull).unwrap();
    push.send(&b"\x00\xffgarbage"[..], 0).unwrap();
    push.send(&b""[..], 0).unwrap();
    push.send_multipart([&b"two"[..], &b"frames"[..]], 0)
        .unwrap();
    // A message from a newer zeroku: version 99.
    push.send(&[0x92, 99, 0xc0][..], 0).unwrap();
    eventually(Duration::from_secs(10), "4 dropped messages", || {
        let s = status(&c);
        if s["dropped_messages"] == 4 {
            Ok(())
        } else {
            Err(s.to_string())
        }
    });
    // (Daemons flush their log every 50 ms.)
    eventually(Duration::from_secs(5), "the drops logged", || {
        let log = c.master.daemon.log_text();
        if log.contains("dropped message") {
            Ok(())
        } else {
            Err(log)
        }
    });
    // Heartbeats still arrive: the node stays up past the dead timeout.
    std::thread::sleep(Duration::from_millis(3500));
    let n = c.json(&["nodes"]);
    assert_eq!(n[0]["state"], "up", "{n}");
}

#[test]
fn config_files_with_typos_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(
        &cfg,
        "[master]\napi = \"127.0.0.1:1\"\nheartbeat_intervall_ms = 5\n",
    )
    .unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "master",
            "--data",
            dir.path().join("d").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let e = stderr_of(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("bad.toml") && e.contains("line 3") && e.contains("heartbeat_intervall_ms"),
        "{e}"
    );
    // `-t` checks a config and exits.
    std::fs::write(&cfg, "[worker]\nnode = \"Bad Name\"\n").unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "up",
            "--data",
            dir.path().join("d").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "-t",
        ])
        .output()
        .unwrap();
    let e = stderr_of(&o);
    assert!(
        !o.status.success() && e.contains("invalid node name"),
        "{e}"
    );
    std::fs::write(&cfg, "").unwrap();
    let o = std::process::Command::new(bin())
        .args([
            "up",
            "--data",
            dir.path().join("d").to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "-t",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    // A busy port is a clear error, not a panic.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let o = std::process::Command::new(bin())
        .args([
            "master",
            "--data",
            dir.path().join("d2").to_str().unwrap(),
            "--api",
            &addr,
        ])
        .output()
        .unwrap();
    let e = stderr_of(&o);
    assert!(
        !o.status.success() && e.contains("cannot listen") && e.contains(&addr),
        "{e}"
    );
}

/// A squashfs image with an entry named `../evil`: `pack` never makes one,
/// so it is written with squashfs-ng's low-level writer.
fn hostile_image(path: &std::path::Path) {
    use squashfs_ng::write::{Source, SourceData, Writer};
    use std::collections::HashMap;
    let mut w = Writer::open(path).unwrap();
    let src = |data, mode| Source {
        data,
        uid: 0,
        gid: 0,
        mode,
        modified: 0,
        xattrs: HashMap::new(),
        flags: 0,
    };
    let evil = w
        .add(src(
            SourceData::File(Box::new(std::io::Cursor::new(b"pwned".to_vec()))),
            0o100644,
        ))
        .unwrap();
    let procfile = w
        .add(src(
            SourceData::File(Box::new(std::io::Cursor::new(b"web: cat ../evil".to_vec()))),
            0o100644,
        ))
        .unwrap();
    let children = vec![
        (std::ffi::OsString::from("../evil"), evil),
        (std::ffi::OsString::from("Procfile"), procfile),
    ];
    w.add(src(
        SourceData::Dir(Box::new(children.into_iter())),
        0o040755,
    ))
    .unwrap();
    w.finish().unwrap();
}

#[test]
fn a_slug_with_escaping_paths_is_refused_at_upload() {
    use sha2::Digest;
    let c = TestCluster::start();
    let image = c.dir.path().join("evil.sqfs");
    hostile_image(&image);
    let bytes = std::fs::read(&image).unwrap();
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut req = format!(
        "PUT /v1/slugs/{sha} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        c.master.token,
        bytes.len()
    )
    .into_bytes();
    req.extend_from_slice(&bytes);
    let (st, body) = raw_http_bytes(&c.master.api, &req);
    assert!(st.contains("422"), "{st} {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("../evil") && msg.contains("escapes"), "{msg}");
    // Nothing was stored, so nothing can be released from it.
    assert_eq!(
        std::fs::read_dir(c.master.data.join("slugs"))
            .unwrap()
            .count(),
        0
    );
    c.cli_ok(&["apps:create", "evil"]).unwrap();
    let json = format!(r#"{{"slug_sha256":"{sha}","process_types":{{"web":"x"}}}}"#);
    let req = format!(
        "POST /v1/apps/evil/releases HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        c.master.token,
        json.len()
    );
    let (st, body) = raw_http(&c.master.api, &req);
    assert!(
        st.contains("422") && body.contains("upload it first"),
        "{st} {body}"
    );
}
