//! Releases: config changes, rollbacks without repacking, crash loops.

mod common;
use common::*;
use std::time::Duration;

#[test]
fn config_change_and_rollback_reuse_the_slug() {
    let mut c = TestCluster::start();
    c.add_worker("r1", 32000);
    c.deploy("rel", TICKER);
    c.cli_ok(&["ps:scale", "-a", "rel", "clock=1"]).unwrap();
    let v1 = c.wait_up("rel", 1, Duration::from_secs(30));
    let slugs = || {
        std::fs::read_dir(c.master.data.join("slugs"))
            .unwrap()
            .count()
    };
    let n_slugs = slugs();
    c.cli_ok(&["config:set", "-a", "rel", "GREETING=bonjour", "OTHER=1"])
        .unwrap();
    eventually(Duration::from_secs(30), "v2 up", || {
        let ps = c.ps("rel");
        if ps.len() == 1 && ps[0]["release"] == 2 && ps[0]["state"] == "up" {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    // A new process replaced the old one (start new, then stop old).
    assert_ne!(c.ps("rel")[0]["pid"], v1[0]["pid"]);
    eventually(Duration::from_secs(10), "old process gone", || {
        if alive(v1[0]["pid"].as_u64().unwrap() as u32) {
            Err("still alive".into())
        } else {
            Ok(())
        }
    });
    c.cli_ok(&["config:unset", "-a", "rel", "OTHER"]).unwrap();
    c.cli_ok(&["rollback", "-a", "rel", "v1"]).unwrap();
    let rel = c.json(&["releases", "-a", "rel"]);
    let rel = rel.as_array().unwrap();
    assert_eq!(rel.len(), 4);
    assert_eq!(rel[3]["slug_sha256"], rel[0]["slug_sha256"]);
    assert_eq!(rel[3]["env"], serde_json::json!({}));
    assert_eq!(
        slugs(),
        n_slugs,
        "rollback must not repack or store a new slug"
    );
    eventually(Duration::from_secs(30), "v4 up", || {
        let ps = c.ps("rel");
        if ps.len() == 1 && ps[0]["release"] == 4 && ps[0]["state"] == "up" {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
    // The worker did not fetch the slug again either: one image in its cache.
    let cached = std::fs::read_dir(c.workers[0].2.join("slugs"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sqfs")
        })
        .count();
    assert_eq!(cached, 1);
}

#[test]
fn crash_loop_backs_off_is_shown_crashed_and_a_fixed_release_recovers() {
    let mut c = TestCluster::start();
    c.add_worker("k1", 32200);
    c.deploy(
        "crashy",
        &[("Procfile", "worker: sh -c 'echo boom; exit 3'\n")],
    );
    c.cli_ok(&["ps:scale", "-a", "crashy", "worker=1"]).unwrap();
    let ps = eventually(Duration::from_secs(40), "crashed state", || {
        let ps = c.ps("crashy");
        if ps.len() == 1 && ps[0]["state"] == "crashed" {
            Ok(ps)
        } else {
            Err(format!("{ps:?}"))
        }
    });
    assert!(ps[0]["restarts"].as_u64().unwrap() > 5, "{ps:?}");
    assert_eq!(ps[0]["last_exit"], "exited with status 3");
    // Restart delays grow: read them from the platform's log lines.
    let logs = c.cli_ok(&["logs", "-a", "crashy", "-n", "1000"]).unwrap();
    let delays: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.split("restarting in ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse().ok())
        .collect();
    assert!(delays.len() >= 5, "{logs}");
    assert!(
        delays.windows(2).take(4).all(|w| w[1] > w[0]),
        "delays do not grow: {delays:?}"
    );
    assert!(logs.contains("boom"), "{logs}");

    // A fixed release recovers it.
    let src = c.dir.path().join("fixed");
    write_tree(
        &src,
        &[("Procfile", "worker: sh -c 'echo fixed; sleep 1000'\n")],
    );
    c.cli_ok(&["releases:create", "-a", "crashy", src.to_str().unwrap()])
        .unwrap();
    eventually(Duration::from_secs(30), "fixed release up", || {
        let ps = c.ps("crashy");
        if ps.len() == 1 && ps[0]["state"] == "up" && ps[0]["release"] == 2 {
            Ok(())
        } else {
            Err(format!("{ps:?}"))
        }
    });
}

#[test]
fn old_slugs_are_garbage_collected_keeping_the_newest_releases() {
    let mut c = TestCluster::start_with(&TEST_CONFIG.replace(
        "[master]\n",
        "[master]\nkeep_releases = 2\nslug_gc_grace_secs = 0\n",
    ));
    c.add_worker("gc1", 32800);
    let deploy = |n: usize| {
        let src = c.dir.path().join(format!("gc-v{n}"));
        write_tree(
            &src,
            &[(
                "Procfile",
                &format!("clock: sh -c 'echo version {n}; sleep 1000'\n"),
            )],
        );
        c.cli_ok(&["releases:create", "-a", "gc", src.to_str().unwrap()])
            .unwrap();
    };
    c.cli_ok(&["apps:create", "gc"]).unwrap();
    for n in 1..=3 {
        deploy(n);
    }
    let rel = c.json(&["releases", "-a", "gc"]);
    let shas: Vec<String> = rel
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["slug_sha256"].as_str().unwrap().to_string())
        .collect();
    let stored = |sha: &str| {
        c.master
            .data
            .join("slugs")
            .join(format!("{sha}.sqfs"))
            .exists()
    };
    assert!(!stored(&shas[0]), "v1's slug should be collected");
    assert!(stored(&shas[1]) && stored(&shas[2]));
    let o = c.cli(&["rollback", "-a", "gc", "v1"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("garbage-collected"),
        "{e}"
    );
    c.cli_ok(&["rollback", "-a", "gc", "v2"]).unwrap();
}
