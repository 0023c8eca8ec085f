//! Service discovery end to end: apps declare what they provide and require in
//! `zeroku.toml`, are built from it, and requiring instances learn of providers
//! that come up, go away or crash, each as its `on_change` says, on two nodes.

mod common;

use common::*;
use std::io::BufRead;
use std::time::Duration;

const PROVIDER: &[(&str, &str)] = &[
    // Slow to come up (2 s), so that a crashed one is seen down before it is back.
    (
        "Procfile",
        "web: sleep 2; exec python3 -m http.server $PORT\n",
    ),
    ("index.html", "billing\n"),
    (
        "zeroku.toml",
        "[provides.api]\nattributes = { env = \"prod\", region = \"eu\" }\n",
    ),
];

/// Prints its providers at start (`start ...`) and on SIGHUP from its file
/// (`hup ...`): one line each, addresses comma-separated; and its stable local
/// address (`addr ...`).
const REQUIRER_PY: &str = r#"import os, signal, sys, time
def show(tag, addrs):
    print(tag, addrs or "-", flush=True)
def hup(*_):
    with open(os.environ["ZEROKU_REQUIRE_API_FILE"]) as f:
        show("hup", ",".join(f.read().split()))
signal.signal(signal.SIGHUP, hup)
show("start", os.environ.get("ZEROKU_REQUIRE_API", ""))
show("addr", os.environ.get("ZEROKU_REQUIRE_API_ADDR", ""))
while True:
    time.sleep(1)
"#;

fn requirer(on_change: &str, env: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Procfile", "clock: python3 bin/requirer.py\n".to_string()),
        ("bin/requirer.py", REQUIRER_PY.to_string()),
        (
            "zeroku.toml",
            format!(
                "[requires.api]\napp = \"billing\"\nattributes = {{ env = \"{env}\" }}\non_change = \"{on_change}\"\n"
            ),
        ),
    ]
}

fn deploy(c: &TestCluster, app: &str, files: &[(&str, String)]) -> String {
    let src = c.dir.path().join(format!("src-{app}"));
    let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (*p, t.as_str())).collect();
    write_tree(&src, &files);
    let _ = c.cli_ok(&["apps:create", app]);
    c.cli_ok(&["deploy", "-a", app, src.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The app's log lines its processes wrote that start with `tag`.
fn lines(c: &TestCluster, app: &str, tag: &str) -> Vec<String> {
    c.cli_ok(&["logs", "-a", app, "-n", "1000", "--source", "app"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(": ").map(|(_, m)| m.trim().to_string()))
        .filter(|m| m.starts_with(tag))
        .collect()
}

fn providers(c: &TestCluster) -> Vec<String> {
    let v = c.json(&["services"]);
    let p = v["provides"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|p| p["app"] == "billing" && p["service"] == "api")
        })
        .cloned()
        .unwrap_or_default();
    p["addrs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn requiring_apps_follow_their_providers_as_they_come_and_go() {
    let mut c = TestCluster::start();
    c.add_worker("d1", 31800);
    c.add_worker("d2", 31900);
    let out = deploy(
        &c,
        "billing",
        &PROVIDER
            .iter()
            .map(|(p, t)| (*p, t.to_string()))
            .collect::<Vec<_>>(),
    );
    assert!(
        out.contains("zeroku.toml: provides [api], requires []"),
        "{out}"
    );
    c.cli_ok(&["ps:scale", "-a", "billing", "web=2"]).unwrap();
    c.wait_up("billing", 2, Duration::from_secs(30));
    let two = eventually(Duration::from_secs(10), "two providers", || {
        let p = providers(&c);
        if p.len() == 2 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });

    // `shop` re-reads its file on SIGHUP, `cart` is restarted, `spy` asks for other
    // attributes and never matches.
    deploy(&c, "shop", &requirer("signal:HUP", "prod"));
    deploy(&c, "cart", &requirer("restart", "prod"));
    deploy(&c, "spy", &requirer("restart", "dev"));
    for app in ["shop", "cart", "spy"] {
        c.cli_ok(&["ps:scale", "-a", app, "clock=1"]).unwrap();
    }
    let both = two.join(",");
    for app in ["shop", "cart"] {
        eventually(Duration::from_secs(30), "providers at start", || {
            let l = lines(&c, app, "start ");
            l.contains(&format!("start {both}"))
                .then_some(())
                .ok_or(format!("{app}: {l:?}"))
        });
    }
    eventually(Duration::from_secs(30), "spy to start with none", || {
        let l = lines(&c, "spy", "start ");
        (l == ["start -"]).then_some(()).ok_or(format!("{l:?}"))
    });

    // The stable local address reaches a provider.
    let addr = eventually(Duration::from_secs(10), "shop's stable address", || {
        lines(&c, "shop", "addr ")
            .first()
            .map(|l| l.trim_start_matches("addr ").to_string())
            .ok_or("no addr line yet".to_string())
    });
    // Root: the app's own loopback address, on a port no app can bind.
    assert!(addr.starts_with("127.64."), "{addr}");
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port < 1024, "{addr}");
    let via = |what: &str| {
        eventually(Duration::from_secs(10), what, || {
            let (status, _, body) = http_get(&addr, "billing", "/index.html")?;
            (status == 200 && body == "billing\n")
                .then_some(())
                .ok_or(format!("{status} {body:?}"))
        })
    };
    via("billing through the stable address");

    // `zeroku services` shows both sides.
    let v = c.json(&["services"]);
    let api = v["provides"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["app"] == "billing")
        .unwrap()
        .clone();
    let by: Vec<&str> = api["required_by"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(by, ["cart (api)", "shop (api)"], "{v}");
    let text = c.cli_ok(&["services"]).unwrap();
    assert!(text.contains("ZEROKU_REQUIRE_API"), "{text}");
    assert!(text.contains("signal:HUP"), "{text}");

    // A watcher of billing's api sees the changes as they happen.
    let mut watch = std::process::Command::new(bin())
        .args(["services:watch", "api", "-a", "billing"])
        .env("ZEROKU_URL", &c.master.url)
        .env("ZEROKU_TOKEN", &c.master.token)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        first.ends_with(&format!("billing/api: {}", two.join(", "))),
        "{first}"
    );

    // One provider goes: `shop` is signalled and reads the one left from its file; `cart`
    // starts again with it.
    c.cli_ok(&["ps:scale", "-a", "billing", "web=1"]).unwrap();
    let one = eventually(Duration::from_secs(20), "one provider", || {
        let p = providers(&c);
        if p.len() == 1 {
            Ok(p)
        } else {
            Err(format!("{p:?}"))
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(
        line.ends_with(&format!("billing/api: {}", one[0])),
        "{line}"
    );
    eventually(Duration::from_secs(20), "shop told of the change", || {
        let l = lines(&c, "shop", "hup ");
        l.contains(&format!("hup {}", one[0]))
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    eventually(Duration::from_secs(20), "cart restarted with it", || {
        let l = lines(&c, "cart", "start ");
        l.contains(&format!("start {}", one[0]))
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    // The same address now reaches the one left, every time.
    for _ in 0..4 {
        let (status, _, body) = http_get(&addr, "billing", "/index.html").unwrap();
        assert_eq!((status, body.as_str()), (200, "billing\n"));
    }
    // Signalled, not restarted: shop started once.
    assert_eq!(lines(&c, "shop", "start ").len(), 1);
    assert_eq!(lines(&c, "spy", "start ").len(), 1, "spy never matched");

    // The last provider crashes: dropped until it is up again, then back.
    let pid = c.ps("billing")[0]["pid"].as_u64().unwrap();
    assert!(unsafe_free_kill(pid as i32, 9));
    eventually(Duration::from_secs(20), "shop told none is up", || {
        let l = lines(&c, "shop", "hup ");
        l.contains(&"hup -".to_string())
            .then_some(())
            .ok_or(format!("{l:?}"))
    });
    eventually(Duration::from_secs(30), "the provider back", || {
        let l = lines(&c, "shop", "hup ");
        let back = providers(&c);
        (back.len() == 1 && l.last() == Some(&format!("hup {}", back[0])))
            .then_some(())
            .ok_or(format!("{l:?} {back:?}"))
    });
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn a_broken_manifest_fails_the_build_naming_what_is_wrong() {
    let mut c = TestCluster::start();
    c.add_worker("d3", 32100);
    let src = c.dir.path().join("src-typo");
    for (toml, says) in [
        (
            "[requires.api]\napp = \"billing\"\non_chnage = \"restart\"\n",
            "on_chnage",
        ),
        (
            "[provides.api]\nprocess = \"worker\"\n",
            "not a process type",
        ),
        (
            "[requires.api]\napp = \"billing\"\non_change = \"signal:KILL\"\n",
            "HUP, USR1, USR2",
        ),
        // Requiring itself with `restart` would restart it for ever.
        ("[provides.api]\n[requires.api]\napp = \"typo\"\n", "loop"),
    ] {
        write_tree(
            &src,
            &[
                ("Procfile", "web: python3 -m http.server $PORT\n"),
                ("zeroku.toml", toml),
            ],
        );
        let _ = c.cli_ok(&["apps:create", "typo"]);
        let o = c.cli(&["deploy", "-a", "typo", src.to_str().unwrap()]);
        assert!(!o.status.success());
        let err = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(err.contains("zeroku.toml"), "{err}");
        assert!(err.contains(says), "{says}: {err}");
    }
    // Nothing was released.
    let rel = c.json(&["releases", "-a", "typo"]);
    assert_eq!(rel.as_array().map(Vec::len), Some(0), "{rel}");
}
