//! Helpers for the integration tests: start the real `zeroku` binary as
//! master and workers on loopback with free ports and temp dirs, drive it
//! with the CLI, and wait for conditions with a deadline.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_zeroku")
}

/// A temp dir that app processes (which run under their own uid when the
/// tests run as root) can traverse to reach their slug and $TMPDIR.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    d
}

/// A `handler_port_min` for one test cluster: 40 ports (20 handler apps)
/// that are free now, below the ephemeral range (an outgoing connection
/// can take any ephemeral port as its source port, and bind(0) hands out
/// one parity while connect uses the other: `free_port() + 1` is exactly
/// the kind of port a connection grabs). Distinct for every cluster of this
/// test process; spread over 10000-17999 by process id.
pub fn handler_port_base() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start = std::process::id() % 200;
    loop {
        let slot = (start + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % 200;
        let base = 10_000 + (slot as u16) * 40;
        let free = (base..base + 40).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Retries `f` until it returns `Ok` or `timeout` passes; panics with the
/// last error.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A daemon child process, killed (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(args: &[&str], log: PathBuf) -> Daemon {
        Self::spawn_with_env(args, log, &[])
    }

    pub fn spawn_with_env(args: &[&str], log: PathBuf, env: &[(&str, &str)]) -> Daemon {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("clone");
        let child = Command::new(bin())
            .args(args)
            .envs(env.iter().copied())
            .env("ZEROKU_LOG", "info,zeroku_master=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn zeroku");
        Daemon {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        unsafe_free_kill(c.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `kill(2)` through the `kill` command, so tests need no unsafe code.
pub fn unsafe_free_kill(pid: i32, sig: i32) -> bool {
    Command::new("kill")
        .arg(format!("-{sig}"))
        .arg("--")
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Kills every app process recorded under a worker data dir.
pub fn kill_apps(worker_data: &Path) {
    let Ok(rd) = std::fs::read_dir(worker_data.join("procs")) else {
        return;
    };
    for e in rd.flatten() {
        if let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(e.path()).unwrap_or_default())
        {
            if let Some(pid) = v["pid"].as_i64() {
                unsafe_free_kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// Pids of the running processes whose command line holds `marker`.
pub fn pids_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                })
                .collect()
        })
        .unwrap_or_default()
}

pub struct Master {
    pub daemon: Daemon,
    pub url: String,
    pub token: String,
    pub data: PathBuf,
    pub pull: String,
    pub api: String,
    pub args: Vec<String>,
}

/// A test cluster: a master, workers, and the temp dir holding them.
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub master: Master,
    pub workers: Vec<(String, Daemon, PathBuf)>,
    pub frontends: Vec<Daemon>,
    /// The metrics address of the last frontend added.
    pub frontend_admin: String,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for (_, d, data) in &mut self.workers {
            d.kill9();
            kill_apps(data);
        }
        // ZEROKU_TEST_KEEP=1: a failed test's directory (logs, data) stays for a look.
        if std::thread::panicking() && std::env::var_os("ZEROKU_TEST_KEEP").is_some() {
            if let Ok(spare) = tempfile::tempdir() {
                let kept = std::mem::replace(&mut self.dir, spare).keep();
                eprintln!("kept the test's directory: {}", kept.display());
            }
        }
    }
}

pub const TEST_CONFIG: &str = r#"
[master]
dead_after_ms = 3000
heartbeat_interval_ms = 500
republish_interval_ms = 1000
metrics = ""

[worker]
metrics = ""
ready_after_ms = 300
stop_grace_ms = 3000
backoff_initial_ms = 100
backoff_max_ms = 2000
backoff_reset_ms = 10000
capacity_mb = 8192
"#;

impl TestCluster {
    pub fn start() -> TestCluster {
        Self::start_with(TEST_CONFIG)
    }

    pub fn start_with(config: &str) -> TestCluster {
        Self::start_on(config, "127.0.0.1")
    }

    /// A cluster whose master binds its bus (PUB, PULL) on `bus_host`, e.g. `0.0.0.0` for
    /// peers in a network namespace.
    pub fn start_on(config: &str, bus_host: &str) -> TestCluster {
        Self::start_with_hosts(config, bus_host, "127.0.0.1")
    }

    /// A master whose bus and API are both bound to `host` (reachable from a
    /// worker in another network namespace).
    pub fn start_reachable_at(config: &str, host: &str) -> TestCluster {
        Self::start_with_hosts(config, host, host)
    }

    fn start_with_hosts(config: &str, bus_host: &str, api_host: &str) -> TestCluster {
        let dir = tempdir();
        let cfg = dir.path().join("zeroku.toml");
        // Handler sockets of parallel tests must not collide.
        let config = if config.contains("handler_port_min") {
            config.to_string()
        } else {
            config.replace(
                "[master]\n",
                &format!("[master]\nhandler_port_min = {}\n", handler_port_base()),
            )
        };
        std::fs::write(&cfg, config).expect("write config");
        let data = dir.path().join("master");
        let api = format!("{api_host}:{}", free_port());
        let pub_ep = format!("tcp://{bus_host}:{}", free_port());
        let pull = format!("tcp://{bus_host}:{}", free_port());
        let args: Vec<String> = [
            "master",
            "--data",
            data.to_str().expect("utf8"),
            "--config",
            cfg.to_str().expect("utf8"),
            "--api",
            &api,
            "--pub",
            &pub_ep,
            "--pull",
            &pull,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::spawn(&argv, dir.path().join("master.log"));
        let env_file = data.join("cli.env");
        let token = eventually(Duration::from_secs(20), "master to write cli.env", || {
            let text = std::fs::read_to_string(&env_file).map_err(|e| e.to_string())?;
            text.lines()
                .find_map(|l| l.strip_prefix("export ZEROKU_TOKEN="))
                .map(str::to_string)
                .ok_or_else(|| "no token yet".to_string())
        });
        let url = format!("http://{api}");
        let mut c = TestCluster {
            dir,
            master: Master {
                daemon,
                url,
                token,
                data,
                pull,
                api,
                args,
            },
            workers: Vec::new(),
            frontends: Vec::new(),
            frontend_admin: String::new(),
        };
        eventually(Duration::from_secs(20), "master API", || {
            c.cli_ok(&["apps"]).map(|_| ())
        });
        c.master.daemon.log = c.dir.path().join("master.log");
        c
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("zeroku.toml")
    }

    /// Restarts the master process on the same data and addresses.
    pub fn restart_master(&mut self) {
        self.master.daemon.kill9();
        let argv: Vec<&str> = self.master.args.iter().map(String::as_str).collect();
        self.master.daemon = Daemon::spawn(&argv, self.dir.path().join("master.log"));
        eventually(Duration::from_secs(20), "master API after restart", || {
            self.cli_ok(&["apps"]).map(|_| ())
        });
    }

    /// Starts worker `name` (ports from `port_min`, 100 of them).
    pub fn add_worker(&mut self, name: &str, port_min: u16) {
        let data = self.dir.path().join(format!("worker-{name}"));
        let d = self.spawn_worker(name, &data, port_min);
        self.workers.push((name.to_string(), d, data));
    }

    pub fn spawn_worker(&self, name: &str, data: &Path, port_min: u16) -> Daemon {
        self.spawn_worker_with_env(name, data, port_min, &[])
    }

    /// A worker with extra environment (e.g. `DOCKER_HOST`).
    pub fn spawn_worker_with_env(
        &self,
        name: &str,
        data: &Path,
        port_min: u16,
        env: &[(&str, &str)],
    ) -> Daemon {
        let join = self.cli_ok(&["nodes:join-token"]).expect("join token");
        let cfg = self.config_path();
        let (pmin, pmax) = (port_min.to_string(), (port_min + 99).to_string());
        Daemon::spawn_with_env(
            &[
                "worker",
                "--data",
                data.to_str().expect("utf8"),
                "--config",
                cfg.to_str().expect("utf8"),
                "--node",
                name,
                "--master",
                &self.master.url,
                "--port-min",
                &pmin,
                "--port-max",
                &pmax,
            ],
            self.dir.path().join(format!("worker-{name}.log")),
            &[env, &[("ZEROKU_JOIN_TOKEN", join.trim())]].concat(),
        )
    }

    /// Starts a frontend; returns its HTTP address.
    pub fn add_frontend(&mut self, name: &str) -> String {
        self.add_frontend_with(name, &[])
    }

    /// Starts a frontend with extra environment (e.g. config overrides like
    /// `ZEROKU_FRONTEND_HANDLER_BIND`).
    pub fn add_frontend_with(&mut self, name: &str, env: &[(&str, &str)]) -> String {
        let data = self.dir.path().join(format!("frontend-{name}"));
        let join = self.cli_ok(&["nodes:join-token"]).expect("join token");
        let http = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        self.frontend_admin = admin.clone();
        let cfg = self.config_path();
        let d = Daemon::spawn_with_env(
            &[
                "frontend",
                "--data",
                data.to_str().expect("utf8"),
                "--config",
                cfg.to_str().expect("utf8"),
                "--name",
                name,
                "--master",
                &self.master.url,
                "--http",
                &http,
                "--admin",
                &admin,
            ],
            self.dir.path().join(format!("frontend-{name}.log")),
            &[env, &[("ZEROKU_JOIN_TOKEN", join.trim())]].concat(),
        );
        self.frontends.push(d);
        eventually(Duration::from_secs(15), "frontend listening", || {
            std::net::TcpStream::connect(&http)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        http
    }

    /// The master's PUB endpoint.
    pub fn master_pub(&self) -> String {
        let a = &self.master.args;
        a.iter()
            .position(|x| x == "--pub")
            .and_then(|i| a.get(i + 1))
            .cloned()
            .expect("--pub")
    }

    /// `GET path` on the API with the admin token, as JSON.
    pub fn api_get(&self, path: &str) -> Value {
        let (_, _, body) = http_request(
            &self.master.api,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                self.master.token
            ),
        )
        .expect("API");
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// Frontend `frontend`'s `ipc://` endpoints for app `app`'s handlers, in the app's
    /// directory (the tests run as root and may enter it, as the app's uid may).
    pub fn handler_ipc(&self, frontend: &str, app: &str) -> (String, String) {
        let dir = self
            .dir
            .path()
            .join(format!("frontend-{frontend}/handlers/{app}"));
        (
            format!("ipc://{}/send", dir.display()),
            format!("ipc://{}/recv", dir.display()),
        )
    }

    /// Logs the user whose HOME is `home` (a test repository's) in to this cluster as `zeroku login` and `zeroku git:remote` would:
    /// the token in `$HOME/.config/zeroku/credentials`, and `zeroku git-credential` as git's
    /// credential helper. Remote URLs carry no token.
    pub fn git_login(&self, home: &Path) {
        self.git_login_as(home, &self.master.token)
    }

    /// [`Self::git_login`] with another token.
    pub fn git_login_as(&self, home: &Path, token: &str) {
        let dir = home.join(".config/zeroku");
        std::fs::create_dir_all(&dir).unwrap();
        let creds = serde_json::json!({"url": self.master.url, "token": token});
        std::fs::write(dir.join("credentials"), creds.to_string()).unwrap();
        std::fs::write(
            home.join(".gitconfig"),
            format!("[credential]\n\thelper = \"!'{}' git-credential\"\n", bin()),
        )
        .unwrap();
    }

    /// Worker `name`'s bus key pair (from its saved credentials) and the master's public key.
    pub fn node_bus_keys(&self, name: &str) -> (zeroku_bus::Keys, zeroku_bus::PublicKey) {
        let path = self
            .dir
            .path()
            .join(format!("worker-{name}"))
            .join("node-token.json");
        // Written once the master answered its registration.
        let saved: Value = eventually(Duration::from_secs(10), "node-token.json", || {
            let bytes = std::fs::read(&path).map_err(|e| e.to_string())?;
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())
        });
        let keys = zeroku_bus::Keys::from_z85(
            saved["bus_public"].as_str().unwrap(),
            saved["bus_secret"].as_str().unwrap(),
        )
        .unwrap();
        let text = std::fs::read_to_string(self.master.data.join("bus.key")).expect("bus.key");
        let master = zeroku_bus::keys::decode(text.lines().next().unwrap(), "master").unwrap();
        (keys, master)
    }

    pub fn worker(&mut self, name: &str) -> &mut (String, Daemon, PathBuf) {
        self.workers
            .iter_mut()
            .find(|w| w.0 == name)
            .expect("no such worker")
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .args(args)
            .env("ZEROKU_URL", &self.master.url)
            .env("ZEROKU_TOKEN", &self.master.token)
            .env_remove("ZEROKU_APP")
            .output()
            .expect("run zeroku")
    }

    /// Runs the CLI; stdout on success, stderr on failure.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String, String> {
        let o = self.cli(args);
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(format!(
                "zeroku {args:?} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli_ok(&a).unwrap_or_else(|e| panic!("{e}"));
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("zeroku {args:?} --json printed no JSON ({e}): {out}"))
    }

    /// The app's entry in the master's route table (what frontends follow).
    pub fn app_route(&self, app: &str) -> Result<Value, String> {
        let (_, _, b) = http_request(
            &self.master.api,
            &format!(
                "GET /v1/routes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                self.master.token
            ),
        )?;
        let v: Value = serde_json::from_str(&b).map_err(|e| format!("{e}: {b}"))?;
        v["apps"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["app"] == app).cloned())
            .ok_or_else(|| format!("no route for {app} in {b}"))
    }

    pub fn ps(&self, app: &str) -> Vec<Value> {
        self.json(&["ps", "-a", app])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `ps` shows `n` instances, all `up`, and returns them.
    pub fn wait_up(&self, app: &str, n: usize, timeout: Duration) -> Vec<Value> {
        eventually(timeout, &format!("{n} instances of {app} up"), || {
            let ps = self.ps(app);
            let up = ps.iter().filter(|p| p["state"] == "up").count();
            if ps.len() == n && up == n {
                Ok(ps)
            } else {
                Err(format!("{ps:?}"))
            }
        })
    }

    /// Creates `app` and releases a directory written from `files`.
    pub fn deploy(&self, app: &str, files: &[(&str, &str)]) -> String {
        let src = self.dir.path().join(format!("src-{app}-{}", free_port()));
        write_tree(&src, files);
        let _ = self.cli_ok(&["apps:create", app]);
        self.cli_ok(&["releases:create", "-a", app, src.to_str().expect("utf8")])
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Writes files (paths relative to `root`); files under bin/ are executable.
pub fn write_tree(root: &Path, files: &[(&str, &str)]) {
    use std::os::unix::fs::PermissionsExt;
    for (path, text) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        if path.starts_with("bin/") {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }
}

/// A process type that prints a line every 200 ms, including $GREETING.
pub const TICKER: &[(&str, &str)] = &[(
    "Procfile",
    "clock: sh -c 'while true; do echo \"tick ${GREETING:-none} $ZEROKU_INSTANCE\"; sleep 0.2; done'\n",
)];

/// A minimal HTTP/1.1 client: one request on a new connection, the whole
/// response read until the server closes it. Returns (status, headers, body).
pub fn http_get(addr: &str, host: &str, path: &str) -> Result<(u16, String, String), String> {
    http_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

/// Retries a GET until it answers 200 (or `timeout` passes); returns
/// (status, head, body) of the 200.
pub fn wait_http_ok(
    addr: &str,
    host: &str,
    path: &str,
    timeout: Duration,
) -> (u16, String, String) {
    eventually(timeout, &format!("200 from {host}{path}"), || {
        let r = http_get(addr, host, path)?;
        if r.0 == 200 {
            Ok(r)
        } else {
            Err(format!("{r:?}"))
        }
    })
}

pub fn http_request(addr: &str, raw: &str) -> Result<(u16, String, String), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    s.write_all(raw.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no response head in {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok((status, head.to_string(), body.to_string()))
}

/// Removes the containers of test node `.0` from the engine when dropped,
/// whatever happened.
pub struct DockerCleanup(pub String);

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        let out = Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=zeroku.node={}", self.0),
            ])
            .output();
        if let Ok(o) = out {
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", id]).output();
            }
        }
    }
}

/// Builds the busybox stack (stacks/busybox-rootfs.sh) and imports it as
/// `name` through the CLI.
pub fn import_busybox_stack(c: &TestCluster, name: &str) {
    let tar = c.dir.path().join(format!("{name}.tar"));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/stacks/busybox-rootfs.sh");
    let st = Command::new("bash")
        .arg(script)
        .arg(&tar)
        .status()
        .expect("run stacks/busybox-rootfs.sh");
    assert!(st.success(), "stacks/busybox-rootfs.sh failed");
    c.cli_ok(&["stacks:import", name, tar.to_str().expect("utf8")])
        .unwrap_or_else(|e| panic!("{e}"));
}
