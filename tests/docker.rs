//! Docker apps end to end against the machine's real Docker Engine: a tiny
//! stack built here from busybox-static and imported through the master,
//! an app switched to runtime=docker, served through the frontend, and a
//! worker killed with -9 that adopts its container on restart.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

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
    let _cleanup = DockerCleanup(node.clone());
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
    import_busybox_stack(&c, "zk-busybox-e2e");
    assert!(c.cli_ok(&["stacks"]).unwrap().contains("zk-busybox-e2e"));

    c.cli_ok(&["apps:create", "box"]).unwrap();
    // First natively: the host's static busybox serves the same slug. The app is README's
    // docker example, copied so that the test can change it.
    let src = dir.path().join("box");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/busybox-web");
    let cp = std::process::Command::new("cp")
        .args(["-r", example, src.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(cp.success());
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
        if r.0 == 200 && running(&node, "box").len() == 1 && c.ps("box")[0]["release"] == 2 {
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
    // The example's CGI script runs in the container, with the instance's environment.
    let (code, _, body) = http_get(&fe, "box.localhost", "/cgi-bin/env").unwrap();
    assert!(
        code == 200 && body.contains("instance: box.web."),
        "{code} {body}"
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

    // The stack re-imported under the same name (here with one more file)
    // reaches the node: the app moves to the new image.
    let v1 = c.json(&["stacks"])[0]["version"].clone();
    let tar = c.dir.path().join("zk-busybox-e2e.tar");
    let extra = tempdir();
    write_tree(extra.path(), &[("etc/zk-stack", "second\n")]);
    let st = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-rf"])
        .arg(&tar)
        .arg("-C")
        .arg(extra.path())
        .arg("./etc/zk-stack")
        .status()
        .unwrap();
    assert!(st.success());
    c.cli_ok(&["stacks:import", "zk-busybox-e2e", tar.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
    let stacks = c.json(&["stacks"]);
    assert!(stacks[0]["version"].is_string(), "{stacks}");
    assert_ne!(stacks[0]["version"], v1, "{stacks}");
    eventually(
        Duration::from_secs(40),
        "a container of the new stack",
        || {
            let now = running(&node, "box");
            if now.len() == 1 && now != ids {
                Ok(())
            } else {
                Err(format!("{now:?}"))
            }
        },
    );
    let out = c
        .cli_ok(&["run", "-a", "box", "--", "cat", "/etc/zk-stack"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.trim(), "second");
    let stacks = c.json(&["stacks"]);
    assert!(stacks.to_string().contains(&node), "{stacks}");

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

#[test]
fn docker_apps_are_limited_restarted_walled_off_and_rescheduled() {
    let mut c = TestCluster::start();
    let pid = std::process::id();
    let (n1, n2) = (format!("da{pid}"), format!("db{pid}"));
    let (_c1, _c2) = (DockerCleanup(n1.clone()), DockerCleanup(n2.clone()));
    c.add_worker(&n1, 39000);
    import_busybox_stack(&c, "zk-busybox-iso");

    // A docker app from the start; without a stack it is refused, and
    // nothing is created.
    let o = c.cli(&["apps:create", "nostack", "--runtime", "docker"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("needs a stack"));
    assert!(!c.cli_ok(&["apps"]).unwrap().contains("nostack"));
    let out = c
        .cli_ok(&[
            "apps:create",
            "hog",
            "--runtime",
            "docker",
            "--stack",
            "zk-busybox-iso",
        ])
        .unwrap();
    assert!(out.contains("docker, stack zk-busybox-iso"), "{out}");
    let o = c.cli(&["apps:settings", "-a", "hog", "cpu=lots"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("cpu is in cores"));
    c.cli_ok(&["apps:settings", "-a", "hog", "cpu=0.5"])
        .unwrap();
    // busybox tail keeps a line in memory until its newline: /dev/zero has none.
    c.deploy(
        "hog",
        &[("Procfile", "worker: echo hungry; exec tail /dev/zero\n")],
    );
    c.cli_ok(&["ps:scale", "-a", "hog", "worker=1:64"]).unwrap();
    // Over 64 MB it is OOM-killed and restarted, as ps shows.
    // (Caught while a restarted container runs.)
    let p = eventually(Duration::from_secs(60), "an OOM kill and a restart", || {
        let ps = c.ps("hog");
        match ps.first() {
            Some(p)
                if p["restarts"].as_u64() >= Some(1)
                    && p["last_exit"].as_str() == Some("killed by signal 9")
                    && p["container"].is_string() =>
            {
                Ok(p.clone())
            }
            _ => Err(format!("{ps:?}")),
        }
    });
    // ps names the container; it has the app's CPU limit.
    let short = p["container"].as_str().unwrap_or_else(|| panic!("{p}"));
    assert_eq!(short.len(), 12, "{p}");
    let text = c.cli_ok(&["ps", "-a", "hog"]).unwrap();
    assert!(text.contains("container "), "{text}");
    // (Each restart is a new container: ask about whichever runs now.)
    eventually(Duration::from_secs(30), "the CPU limit", || {
        let ids = running(&n1, "hog");
        let id = ids.first().ok_or("no container right now")?;
        let nano = std::process::Command::new("docker")
            .args(["inspect", "-f", "{{.HostConfig.NanoCpus}}", id])
            .output()
            .map_err(|e| e.to_string())?;
        match String::from_utf8_lossy(&nano.stdout).trim() {
            "500000000" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    c.cli_ok(&["ps:scale", "-a", "hog", "worker=0"]).unwrap();

    // Another app's slug is not there to read: each container has only its own.
    c.deploy(
        "vault",
        &[
            ("Procfile", "worker: sleep 1000\n"),
            ("secret.txt", "TOPSECRET\n"),
        ],
    );
    c.cli_ok(&["ps:scale", "-a", "vault", "worker=1"]).unwrap();
    c.wait_up("vault", 1, Duration::from_secs(30));
    let data = c.worker(&n1).2.clone();
    let secret = find_file(&data, "secret.txt").expect("vault's slug on the node");
    c.cli_ok(&[
        "apps:create",
        "snoop",
        "--runtime",
        "docker",
        "--stack",
        "zk-busybox-iso",
    ])
    .unwrap();
    c.deploy("snoop", &[("Procfile", "worker: sleep 1000\n")]);
    let o = c.cli(&[
        "run",
        "-a",
        "snoop",
        "--no-tty",
        "--",
        &format!("ls /app; cat {} /app/secret.txt", secret.display()),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Procfile"), "{out}");
    assert!(!out.contains("TOPSECRET"), "{out}");
    assert_ne!(o.status.code(), Some(0), "{out}");

    // The node is lost: its instances move to another node with docker;
    // when it comes back, what no longer belongs there is removed.
    c.cli_ok(&["ps:scale", "-a", "vault", "worker=0"]).unwrap();
    c.deploy("svc", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&[
        "apps:settings",
        "-a",
        "svc",
        "runtime=docker",
        "stack=zk-busybox-iso",
    ])
    .unwrap();
    c.cli_ok(&["ps:scale", "-a", "svc", "worker=1"]).unwrap();
    c.wait_up("svc", 1, Duration::from_secs(30));
    assert_eq!(running(&n1, "svc").len(), 1);
    c.add_worker(&n2, 39200);
    c.worker(&n1).1.kill9();
    eventually(
        Duration::from_secs(60),
        "svc rescheduled on the other node",
        || {
            let ps = c.ps("svc");
            let moved = ps.len() == 1 && ps[0]["node"] == n2.as_str() && ps[0]["state"] == "up";
            if moved && running(&n2, "svc").len() == 1 {
                Ok(())
            } else {
                Err(format!("{ps:?}"))
            }
        },
    );
    let d = c.spawn_worker(&n1, &data, 39000);
    c.worker(&n1).1 = d;
    eventually(
        Duration::from_secs(60),
        "the stale container removed",
        || {
            let left = running(&n1, "svc");
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    );
    assert_eq!(running(&n2, "svc").len(), 1);
}

/// The first file named `name` under `dir`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        }
    }
    None
}

/// The Rust handler example: as `cargo test --workspace --all-targets`
/// left it (`examples/rust_handler-<hash>`), or built here.
fn rust_handler() -> std::path::PathBuf {
    // `examples/rust_handler` is the program; `rust_handler-<hash>` may be
    // the example built as a test harness (`cargo test --all-targets`),
    // which runs no handler at all. Cargo is run every time: a no-op when
    // the program is up to date, and it never runs a stale one.
    let dir = std::path::Path::new(bin())
        .parent()
        .expect("target dir")
        .join("examples");
    let st = std::process::Command::new(env!("CARGO"))
        .args([
            "build",
            "-q",
            "-p",
            "zeroku-frontend",
            "--example",
            "rust_handler",
        ])
        .status()
        .expect("cargo build");
    assert!(st.success(), "cargo build --example rust_handler failed");
    let p = dir.join("rust_handler");
    assert!(p.exists(), "{} was not built", p.display());
    p
}

/// The busybox stack plus `binary` as /usr/local/bin/`as_name` and the
/// libraries it links (from `ldd`), imported as `name`.
fn import_stack_with(c: &TestCluster, name: &str, binary: &std::path::Path, as_name: &str) {
    let tar = c.dir.path().join(format!("{name}.tar"));
    let st = std::process::Command::new("bash")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/stacks/busybox-rootfs.sh"
        ))
        .arg(&tar)
        .status()
        .unwrap();
    assert!(st.success());
    // One tree, tarred again: the engine refuses duplicate paths.
    let stage = c.dir.path().join(format!("{name}-root"));
    std::fs::create_dir_all(&stage).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&stage)
        .status()
        .unwrap();
    assert!(st.success());
    let bin_dir = stage.join("usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(binary, bin_dir.join(as_name)).unwrap();
    let ldd = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = stage.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("{lib}: {e}"));
    }
    let st = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&tar)
        .arg("-C")
        .arg(&stage)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    c.cli_ok(&["stacks:import", name, tar.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn a_handler_app_runs_in_a_container() {
    let mut c = TestCluster::start();
    let node = format!("dh{}", std::process::id());
    let _cleanup = DockerCleanup(node.clone());
    c.add_worker(&node, 39400);
    // Containers reach the frontend's handler sockets through their
    // network's gateway, so they are bound beyond loopback here.
    let fe = c.add_frontend_with(
        "edge",
        &[
            ("ZEROKU_FRONTEND_HANDLER_BIND", "0.0.0.0"),
            ("ZEROKU_FRONTEND_HANDLER_ADVERTISE", "127.0.0.1"),
        ],
    );
    import_stack_with(&c, "zk-handler", &rust_handler(), "rust_handler");
    c.cli_ok(&[
        "apps:create",
        "hello",
        "--runtime",
        "docker",
        "--stack",
        "zk-handler",
    ])
    .unwrap();
    c.deploy("hello", &[("Procfile", "handler: rust_handler\n")]);
    c.wait_up("hello", 1, Duration::from_secs(30));
    let (_, _, body) = wait_http_ok(&fe, "hello.localhost", "/in/a/box", Duration::from_secs(30));
    assert!(
        body.contains("Hello from Rust, you asked for /in/a/box"),
        "{body}"
    );
    assert_eq!(running(&node, "hello").len(), 1);
    let ps = c.ps("hello");
    assert!(ps[0]["container"].is_string(), "{ps:?}");
}

#[test]
fn two_clusters_on_one_engine_with_one_node_name_keep_their_containers() {
    let node = format!("tw{}", std::process::id());
    let _cleanup = DockerCleanup(node.clone());
    let mut clusters = Vec::new();
    for (i, port) in [(0u16, 38700u16), (1, 38800)] {
        let mut c = TestCluster::start();
        c.add_worker(&node, port);
        eventually(Duration::from_secs(15), "docker offered", || {
            let v = c.json(&["nodes"]);
            if v[0]["runtimes"].to_string().contains("docker") {
                Ok(())
            } else {
                Err(v.to_string())
            }
        });
        let stack = format!("zk-busybox-twin{i}");
        import_busybox_stack(&c, &stack);
        c.deploy(
            &format!("twin{i}"),
            &[("Procfile", "worker: sleep 100000\n")],
        );
        c.cli_ok(&[
            "apps:settings",
            "-a",
            &format!("twin{i}"),
            "runtime=docker",
            &format!("stack={stack}"),
        ])
        .unwrap();
        c.cli_ok(&["ps:scale", "-a", &format!("twin{i}"), "worker=1"])
            .unwrap();
        c.wait_up(&format!("twin{i}"), 1, Duration::from_secs(60));
        clusters.push(c);
    }
    let containers = |app: &str| running(&node, app);
    assert_eq!(containers("twin0").len(), 1);
    assert_eq!(containers("twin1").len(), 1);
    let theirs = containers("twin1");
    // Cluster 0's worker restarts (kill -9) and adopts what it finds of its own: cluster 1's
    // container, on a node of the same name, is not its own and is left alone.
    let c0 = &mut clusters[0];
    let (name, data) = (node.clone(), c0.dir.path().join(format!("worker-{node}")));
    c0.worker(&name).1.kill9();
    let d = c0.spawn_worker(&name, &data, 38700);
    c0.worker(&name).1 = d;
    eventually(Duration::from_secs(20), "the worker back", || {
        let log = std::fs::read_to_string(c0.dir.path().join(format!("worker-{node}.log")))
            .unwrap_or_default();
        if log.matches("worker running").count() >= 2 {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        containers("twin1"),
        theirs,
        "cluster 0 touched cluster 1's container"
    );
    assert_eq!(containers("twin0").len(), 1, "cluster 0 kept its own");
}

#[test]
fn a_docker_app_reaches_an_add_on_on_its_node() {
    let config = TEST_CONFIG.replace(
        "[master]\n",
        &format!("[master]\naddon_port_min = {}\n", handler_port_base()),
    );
    let mut c = TestCluster::start_with(&config);
    let node = format!("dd{}", std::process::id());
    let _cleanup = DockerCleanup(node.clone());
    c.add_worker(&node, 39700);
    import_busybox_stack(&c, "zk-busybox-addon");
    c.cli_ok(&[
        "apps:create",
        "boxdb",
        "--runtime",
        "docker",
        "--stack",
        "zk-busybox-addon",
    ])
    .unwrap();
    c.deploy("boxdb", &[("Procfile", "worker: sleep 100000\n")]);
    c.cli_ok(&["addons:create", "redis", "-a", "boxdb"])
        .unwrap();
    // From inside a container: the URL's host is the node, and Redis answers there.
    let script = r#"u="$REDIS_URL"; r="${u#*://}"; cred="${r%%@*}"; hp="${r#*@}"; echo "host ${hp%:*}"; printf 'AUTH %s\r\nPING\r\nQUIT\r\n' "${cred#*:}" | nc "${hp%:*}" "${hp##*:}""#;
    let out = eventually(Duration::from_secs(30), "PONG from the container", || {
        let o = c.cli(&["run", "-a", "boxdb", "--no-tty", "--", script]);
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        if text.contains("+PONG") {
            Ok(text)
        } else {
            Err(format!("{text}{}", String::from_utf8_lossy(&o.stderr)))
        }
    });
    assert!(out.contains("host host.docker.internal"), "{out}");
}
