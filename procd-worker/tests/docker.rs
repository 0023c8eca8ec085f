//! The Docker runtime against the machine's real Docker Engine, with a tiny
//! stack built here from busybox-static (no registry is reachable).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use zeroku_conf::{InstanceSpec, Limits, SlugRef};
use zeroku_worker::docker::DockerRuntime;
use zeroku_worker::runtime::{Exit, ProcRecord, Runtime, StartRequest, StopSignal};

const STACK: &str = "zeroku-test-busybox";

fn stack(rt: &DockerRuntime, dir: &Path) {
    if rt.has_stack(STACK) {
        return;
    }
    let tar = dir.join("rootfs.tar");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../stacks/busybox-rootfs.sh");
    let st = std::process::Command::new("bash")
        .arg(script)
        .arg(&tar)
        .status()
        .expect("bash");
    assert!(
        st.success(),
        "building the busybox rootfs (needs busybox-static)"
    );
    rt.import_stack(STACK, &tar).expect("import the stack");
    assert!(rt.has_stack(STACK));
}

fn spec(id: &str, proc_type: &str, command: &str) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        app: id.split('.').next().unwrap().into(),
        app_seq: 7,
        proc_type: proc_type.into(),
        index: 1,
        release: 2,
        command: command.into(),
        env: BTreeMap::new(),
        slug: SlugRef {
            sha256: "0".repeat(64),
            size: 0,
        },
        limits: Limits {
            memory_mb: 64,
            ..Limits::default()
        },
        stack: Some(STACK.into()),
        tty: None,
        handler: Vec::new(),
        restart: 0,
        stop_when_lost_ms: None,
        addon: None,
        requires: Vec::new(),
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn start(rt: &DockerRuntime, spec: &InstanceSpec, slug: &Path, port: u16) -> ProcRecord {
    let mut env = BTreeMap::new();
    env.insert("PORT".to_string(), port.to_string());
    env.insert("GREETING".to_string(), "hello from a container".to_string());
    rt.start(&StartRequest {
        spec,
        slug_dir: slug,
        port,
        env,
    })
    .expect("start")
}

/// Removes the containers of a test's node, whatever happens.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label=zeroku.node={}", self.0);
        if let Ok(o) = std::process::Command::new("docker")
            .args(["ps", "-aq", "--filter", &filter])
            .output()
        {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = std::process::Command::new("docker")
                    .args(["rm", "-f", id])
                    .output();
            }
        }
    }
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[test]
fn containers_run_serve_log_are_adopted_and_stop() {
    let data = tempfile::tempdir().unwrap();
    let node = format!("test-{}", std::process::id());
    let rt = match DockerRuntime::connect(&node, "test-cluster", data.path(), 100_000) {
        Ok(rt) => rt,
        Err(e) => panic!("this test needs the machine's Docker Engine: {e}"),
    };
    let _cleanup = Cleanup(node.clone());
    assert!(rt.version.starts_with("Docker Engine"));
    stack(&rt, data.path());
    let slug = tempfile::tempdir().unwrap();
    std::fs::create_dir(slug.path().join("public")).unwrap();
    std::fs::write(
        slug.path().join("public/index.html"),
        "served from the slug\n",
    )
    .unwrap();
    std::fs::create_dir(slug.path().join(".profile.d")).unwrap();
    std::fs::write(
        slug.path().join(".profile.d/a.sh"),
        "export FROM_PROFILE=yes\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [
        slug.path().to_path_buf(),
        slug.path().join("public"),
        slug.path().join(".profile.d"),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    // A web container: busybox httpd on $PORT, published on the node.
    let port = free_port();
    let web = spec("dk.web.1", "web", "httpd -f -p $PORT -h /app/public");
    let web_rec = start(&rt, &web, slug.path(), port);
    assert!(web_rec.container.is_some());
    let page = wait_for("the container to answer", || {
        get(port).filter(|p| p.contains("served from the slug"))
    });
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(rt.accepting(&web_rec, None));

    // A worker container: its output reaches the log file; it runs as the
    // app's uid, read-only, with .profile.d sourced.
    let worker = spec(
        "dk.worker.1",
        "worker",
        "sh -c 'echo \"uid=$(id -u) $GREETING profile=$FROM_PROFILE\"; touch /x 2>/dev/null || echo root-read-only; touch /app/y 2>/dev/null || echo slug-read-only; while true; do echo tick; sleep 0.2; done'",
    );
    let rec = start(&rt, &worker, slug.path(), free_port());
    let log = wait_for("log lines", || {
        let t = std::fs::read_to_string(&rec.log_path).ok()?;
        t.contains("tick").then_some(t)
    });
    assert!(log.contains("hello from a container profile=yes"), "{log}");
    assert!(
        log.contains("root-read-only") && log.contains("slug-read-only"),
        "{log}"
    );
    if running_as_root() {
        assert!(log.contains("uid=100007"), "runs as the app's uid: {log}");
    }
    assert_eq!(rt.poll(&rec), None);

    // A new runtime (the worker restarted) adopts both, by label.
    drop(rt);
    let rt = DockerRuntime::connect(&node, "test-cluster", data.path(), 100_000).unwrap();
    let found = rt.adopt();
    assert!(found.exited.is_empty(), "{:?}", found.exited);
    let ids: Vec<_> = found.running.iter().map(|r| r.container.clone()).collect();
    assert_eq!(found.running.len(), 2, "{found:?}");
    assert!(ids.contains(&web_rec.container) && ids.contains(&rec.container));
    let again = found
        .running
        .iter()
        .find(|r| r.instance == "dk.web.1")
        .unwrap();
    assert_eq!(again.port, port);
    assert_eq!(again.release, 2);
    assert!(get(port).is_some_and(|p| p.contains("served from the slug")));

    // They stop on a signal; forget removes them.
    for r in &found.running {
        rt.signal(r, StopSignal::Kill).unwrap();
    }
    for r in &found.running {
        let exit = wait_for("the exit", || rt.poll(r));
        assert_ne!(exit, Exit::Code(0));
        rt.forget(r);
    }
    let left = rt.adopt();
    assert!(
        left.running.is_empty() && left.exited.is_empty(),
        "{left:?}"
    );
}

#[test]
fn containers_are_walled_off_and_limited() {
    let data = tempfile::tempdir().unwrap();
    let node = format!("wall-{}", std::process::id());
    let rt = DockerRuntime::connect(&node, "test-cluster", data.path(), 100_000)
        .unwrap_or_else(|e| panic!("this test needs the machine's Docker Engine: {e}"));
    let _cleanup = Cleanup(node.clone());
    stack(&rt, data.path());
    let slug = tempfile::tempdir().unwrap();
    std::fs::create_dir(slug.path().join("public")).unwrap();
    std::fs::write(slug.path().join("public/index.html"), "app a\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for p in [slug.path().to_path_buf(), slug.path().join("public")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // App a serves on its own network.
    let port = free_port();
    let a = start(
        &rt,
        &spec("wa.web.1", "web", "httpd -f -p $PORT -h /app/public"),
        slug.path(),
        port,
    );
    wait_for("app a", || get(port).filter(|p| p.contains("app a")));
    let id = a.container.clone().unwrap();
    let ip = String::from_utf8(
        std::process::Command::new("docker")
            .args([
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                &id,
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(!ip.is_empty());
    // App b, on its network, cannot reach a's container.
    let probe = format!(
        "sh -c 'wget -q -T 3 -O - http://{ip}:{port}/ && echo REACHED || echo UNREACHABLE; sleep 30'"
    );
    let b = start(
        &rt,
        &spec("wb.worker.1", "worker", &probe),
        slug.path(),
        free_port(),
    );
    let log = wait_for("the probe", || {
        let t = std::fs::read_to_string(&b.log_path).ok()?;
        t.contains("REACH").then_some(t)
    });
    assert!(log.contains("UNREACHABLE"), "{log}");
    // Over its memory limit (64 MB), a process is OOM-killed.
    let hog = start(
        &rt,
        &spec(
            "wc.worker.1",
            "worker",
            "dd if=/dev/zero of=/dev/null bs=300M count=1",
        ),
        slug.path(),
        free_port(),
    );
    let exit = wait_for("the OOM kill", || rt.poll(&hog));
    assert_eq!(exit, Exit::Signal(9), "killed, not exited");
    for r in [&a, &b, &hog] {
        rt.signal(r, StopSignal::Kill).unwrap();
        rt.forget(r);
    }
}
