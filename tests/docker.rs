//! Docker apps end to end against the machine's real Docker Engine: a tiny
//! stack built here from busybox-static and imported through the master,
//! an app switched to runtime=docker, served through the frontend, and a
//! worker killed with -9 that adopts its container on restart.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

/// Removes what the test's node left in the engine, whatever happens.
struct Containers(String);

impl Drop for Containers {
    fn drop(&mut self) {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=zeroku.node={}", self.0),
            ])
            .output();
        if let Ok(o) = out {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

fn running(node: &str, app: &str) -> Vec<String> {
    let o = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=zeroku.node={node}"),
            "--filter",
            &format!("label=zeroku.app={app}"),
        ])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn a_docker_app_runs_in_a_container_from_an_imported_stack() {
    let mut c = TestCluster::start();
    let node = format!("dk{}", std::process::id());
    let _cleanup = Containers(node.clone());
    c.add_worker(&node, 38200);
    let fe = c.add_frontend("edge");
    let dir = tempdir();

    // The node offers docker next to native.
    let nodes = eventually(Duration::from_secs(15), "runtimes reported", || {
        let v = c.json(&["nodes"]);
        let rt = v[0]["runtimes"].to_string();
        if rt.contains("docker") {
            Ok(v)
        } else {
            Err(v.to_string())
        }
    });
    assert!(nodes[0]["runtimes"][0] == "native", "{nodes}");
    // A second node whose engine cannot be reached: native only.
    let nodk = format!("nd{}", std::process::id());
    let nodk_data = c.dir.path().join("worker-nodk");
    let d = c.spawn_worker_with_env(
        &nodk,
        &nodk_data,
        38300,
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    c.workers.push((nodk.clone(), d, nodk_data));
    eventually(Duration::from_secs(15), "the native-only node", || {
        let v = c.json(&["nodes"]);
        let n = v
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == nodk.as_str()).cloned())
            .ok_or("not joined")?;
        if n["runtimes"] == serde_json::json!(["native"]) {
            Ok(())
        } else {
            Err(n.to_string())
        }
    });

    // A stack from a root file system tarball.
    let tar = dir.path().join("rootfs.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/stacks/busybox-rootfs.sh");
    let st = std::process::Command::new("bash")
        .arg(script)
        .arg(&tar)
        .status()
        .unwrap();
    assert!(st.success());
    c.cli_ok(&["stacks:import", "zk-busybox-e2e", tar.to_str().unwrap()])
        .unwrap();
    assert!(c.cli_ok(&["stacks"]).unwrap().contains("zk-busybox-e2e"));

    c.cli_ok(&["apps:create", "box"]).unwrap();
    // First natively: the host's static busybox serves the same slug.
    let src = dir.path().join("box");
    write_tree(
        &src,
        &[
            ("Procfile", "web: busybox httpd -f -p $PORT -h public\n"),
            ("public/index.html", "hello from busybox\n"),
        ],
    );
    c.cli_ok(&["deploy", "-a", "box", src.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
    let native = wait_http_ok(&fe, "box.localhost", "/", Duration::from_secs(30));
    assert!(running(&node, "box").is_empty(), "native: no container");
    // runtime=docker alone is refused: it needs a stack.
    let o = c.cli(&["apps:settings", "-a", "box", "runtime=docker"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a stack"));
    let o = c.cli(&["apps:settings", "-a", "box", "stack=Not/Valid"]);
    assert!(!o.status.success());
    c.cli_ok(&[
        "apps:settings",
        "-a",
        "box",
        "runtime=docker",
        "stack=zk-busybox-e2e",
    ])
    .unwrap();

    // The same release now runs in a container, and answers the same.
    eventually(Duration::from_secs(30), "the container", || {
        let ids = running(&node, "box");
        if ids.len() == 1 {
            Ok(ids)
        } else {
            Err(format!("{ids:?}"))
        }
    });
    c.wait_up("box", 1, Duration::from_secs(30));
    let in_docker = eventually(Duration::from_secs(15), "served from docker", || {
        let r = http_get(&fe, "box.localhost", "/")?;
        // The old native process drains first; then only the container answers.
        if r.0 == 200 && running(&node, "box").len() == 1 && c.ps("box")[0]["release"] == 1 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    });
    assert_eq!((in_docker.0, &in_docker.2), (native.0, &native.2));
    assert!(
        in_docker.2.contains("hello from busybox"),
        "{}",
        in_docker.2
    );
    // A new release of a docker app runs in docker too.
    std::fs::write(
        src.join("public/index.html"),
        "hello from busybox in docker\n",
    )
    .unwrap();
    let out = c
        .cli_ok(&["deploy", "-a", "box", src.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("web=1 running"), "{out}");
    let (_, _, body) = wait_http_ok(&fe, "box.localhost", "/", Duration::from_secs(30));
    assert!(body.contains("hello from busybox in docker"), "{body}");
    // Scaled out, docker instances only go to the node with docker.
    c.cli_ok(&["ps:scale", "-a", "box", "web=3"]).unwrap();
    let ps = c.wait_up("box", 3, Duration::from_secs(30));
    assert!(ps.iter().all(|p| p["node"] == node.as_str()), "{ps:?}");
    c.cli_ok(&["ps:scale", "-a", "box", "web=1"]).unwrap();
    c.wait_up("box", 1, Duration::from_secs(30));
    let ids = eventually(Duration::from_secs(15), "one container", || {
        let ids = running(&node, "box");
        if ids.len() == 1 {
            Ok(ids)
        } else {
            Err(format!("{ids:?}"))
        }
    });
    // The node now has the stack.
    let stacks: Value = c.json(&["stacks"]);
    assert!(stacks.to_string().contains(&node), "{stacks}");

    // kill -9 the worker: the container keeps serving, and the next worker
    // adopts it instead of starting another.
    let data = c.worker(&node).2.clone();
    c.worker(&node).1.kill9();
    assert!(http_get(&fe, "box.localhost", "/").is_ok_and(|r| r.0 == 200));
    let d = c.spawn_worker(&node, &data, 38200);
    c.worker(&node).1 = d;
    std::thread::sleep(Duration::from_secs(3));
    c.wait_up("box", 1, Duration::from_secs(20));
    assert_eq!(
        running(&node, "box"),
        ids,
        "the same container, and only it"
    );
    assert!(
        wait_http_ok(&fe, "box.localhost", "/", Duration::from_secs(10))
            .2
            .contains("busybox")
    );

    // Scaled to zero, the container is stopped and removed.
    c.cli_ok(&["ps:scale", "-a", "box", "web=0"]).unwrap();
    eventually(Duration::from_secs(40), "container removed", || {
        let left = running(&node, "box");
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    });
}
