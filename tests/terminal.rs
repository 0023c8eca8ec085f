//! `zeroku run` from a terminal: the CLI runs on a real pseudo-terminal
//! (tests/common/pty_driver.py plays the user's terminal), the one-off gets
//! its own on the node, and the master splices them over WebSockets.
//! Typing, window resize, Ctrl-C and the exit status go through; the
//! WebSocket is refused without the right token.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A CLI running on a pseudo-terminal.
struct Terminal {
    child: Child,
    input: ChildStdin,
    screen: Arc<Mutex<String>>,
    status: Arc<Mutex<String>>,
}

impl Terminal {
    fn start(c: &TestCluster, args: &[&str]) -> Terminal {
        let driver = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/pty_driver.py");
        let mut child = Command::new("python3")
            .arg(driver)
            .args(["80", "24", "--", bin()])
            .args(args)
            .env("ZEROKU_URL", &c.master.url)
            .env("ZEROKU_TOKEN", &c.master.token)
            .env("TERM", "xterm-zk")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run the pty driver");
        let input = child.stdin.take().expect("stdin");
        let screen = Arc::new(Mutex::new(String::new()));
        let status = Arc::new(Mutex::new(String::new()));
        for (mut from, to) in [
            (
                Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
                screen.clone(),
            ),
            (
                Box::new(child.stderr.take().expect("stderr")) as Box<dyn Read + Send>,
                status.clone(),
            ),
        ] {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut s = to.lock().unwrap();
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Terminal {
            child,
            input,
            screen,
            status,
        }
    }

    fn type_keys(&mut self, keys: &str) {
        let hex: String = keys.bytes().map(|b| format!("{b:02x}")).collect();
        writeln!(self.input, "send {hex}").expect("drive the terminal");
    }

    fn resize(&mut self, cols: u16, rows: u16) {
        writeln!(self.input, "resize {cols} {rows}").expect("drive the terminal");
    }

    fn screen(&self) -> String {
        self.screen.lock().unwrap().clone()
    }

    /// Waits until the screen shows `text` after byte `from`.
    fn wait_for(&self, text: &str, from: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.get(from..).is_some_and(|t| t.contains(text)) {
                return;
            }
            if start.elapsed() > timeout {
                panic!(
                    "the terminal never showed {text:?}; it shows:\n{s}\n{s:?}\n(driver: {})",
                    self.status.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The CLI's exit status.
    fn exit(mut self, timeout: Duration) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(code) = self
                .status
                .lock()
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("EXIT "))
                .and_then(|c| c.trim().parse().ok())
            {
                let _ = self.child.wait();
                return code;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "zeroku run did not end; the terminal shows:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Types `line` and waits for `expect` to show after what was there.
fn run_line(t: &mut Terminal, line: &str, expect: &str) {
    let from = t.screen().len();
    t.type_keys(&format!("{line}\r"));
    t.wait_for(expect, from, Duration::from_secs(15));
}

/// Keys typed before the remote terminal exists are not lost.
fn typed_before_the_start(c: &TestCluster, app: &str) {
    let mut t = Terminal::start(c, &["run", "-a", app, "--", "read x; echo got-$x"]);
    t.type_keys("early\r");
    t.wait_for("got-early", 0, Duration::from_secs(60));
    assert_eq!(t.exit(Duration::from_secs(30)), 0);
}

fn interactive_session(c: &TestCluster, app: &str) {
    let mut t = Terminal::start(c, &["run", "-a", app, "sh"]);
    t.wait_for("$ ", 0, Duration::from_secs(60));
    // What is typed runs remotely; the expected text only appears as output.
    run_line(&mut t, "echo calc-$((6 * 7))", "calc-42");
    run_line(&mut t, "tty; echo term=$TERM", "term=xterm-zk");
    assert!(t.screen().contains("/dev/pts/"), "{}", t.screen());
    run_line(&mut t, "stty size", "24 80");
    // A resize of the local terminal reaches the remote one.
    t.resize(100, 30);
    let start = Instant::now();
    loop {
        let from = t.screen().len();
        t.type_keys("stty size\r");
        std::thread::sleep(Duration::from_millis(300));
        if t.screen()[from..].contains("30 100") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "resize never arrived: {}",
            t.screen()
        );
    }
    // Ctrl-C interrupts the remote foreground command, not the session.
    run_line(&mut t, "echo about-to-sleep", "about-to-sleep");
    t.type_keys("sleep 1000; echo not-interrupted\r");
    std::thread::sleep(Duration::from_millis(700));
    t.type_keys("\x03");
    run_line(&mut t, "echo still-$((1 + 1))", "still-2");
    // (Typed, it shows after `echo `; printed, it would start a line.)
    assert!(!t.screen().contains("\nnot-interrupted"), "{}", t.screen());
    // The remote exit status is zeroku run's.
    t.type_keys("exit 7\r");
    assert_eq!(t.exit(Duration::from_secs(30)), 7);
}

#[test]
fn run_on_a_terminal_types_resizes_interrupts_and_returns_the_exit_status() {
    let mut c = TestCluster::start();
    c.add_worker("t1", 38700);
    c.deploy("shell", &[("Procfile", "worker: sleep 1000\n")]);
    interactive_session(&c, "shell");
    typed_before_the_start(&c, "shell");
    // The one-off is gone afterwards.
    assert!(c.ps("shell").iter().all(|p| p["type"] != "run"));

    // A command that fails at once: its status, and what it printed.
    let t = Terminal::start(&c, &["run", "-a", "shell", "--", "echo gone-now; exit 3"]);
    t.wait_for("gone-now", 0, Duration::from_secs(60));
    assert_eq!(t.exit(Duration::from_secs(30)), 3);
}

#[test]
fn run_on_a_terminal_in_a_docker_container() {
    let mut c = TestCluster::start();
    let node = format!("tt{}", std::process::id());
    let _cleanup = DockerCleanup(node.clone());
    c.add_worker(&node, 38900);
    import_busybox_stack(&c, "zk-busybox-tty");
    c.deploy("boxsh", &[("Procfile", "worker: sleep 1000\n")]);
    c.cli_ok(&[
        "apps:settings",
        "-a",
        "boxsh",
        "runtime=docker",
        "stack=zk-busybox-tty",
    ])
    .unwrap();
    interactive_session(&c, "boxsh");
    typed_before_the_start(&c, "boxsh");
    // It ran in a container of the stack: busybox's sh, as the app's uid.
    let mut t = Terminal::start(
        &c,
        &["run", "-a", "boxsh", "--", "id -u; ls -la /app; echo rc=$?"],
    );
    t.wait_for("Procfile", 0, Duration::from_secs(60));
    assert!(!t.screen().contains("\n0\r"), "{}", t.screen());
    assert_eq!(t.exit(Duration::from_secs(30)), 0);
    t = Terminal::start(
        &c,
        &[
            "run",
            "-a",
            "boxsh",
            "--",
            "ls /bin/busybox /usr/bin/python3",
        ],
    );
    t.wait_for("python3", 0, Duration::from_secs(60));
    assert_ne!(
        t.exit(Duration::from_secs(30)),
        0,
        "the host's files are not there"
    );
}

/// A raw WebSocket upgrade of `path` on the master, with `token` if any;
/// returns the status line.
fn upgrade(c: &TestCluster, path: &str, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{auth}\r\n"
    );
    let mut s = std::net::TcpStream::connect(&c.master.api).expect("connect to the master");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn the_terminal_websocket_is_refused_without_the_right_token() {
    let mut c = TestCluster::start();
    c.add_worker("t2", 38800);
    c.deploy("guarded", &[("Procfile", "worker: sleep 1000\n")]);
    // A one-off with a terminal that nobody attaches to yet.
    let o: serde_json::Value = serde_json::from_str(
        &c.cli_ok(&[
            "run", "-a", "guarded", "--detach", "--json", "--", "sleep 30",
        ])
        .unwrap(),
    )
    .unwrap();
    let n = o["n"].as_u64().unwrap();
    let path = format!("/v1/apps/guarded/runs/{n}/terminal");
    assert!(upgrade(&c, &path, None).contains(" 401 "));
    assert!(upgrade(&c, &path, Some("not-a-token")).contains(" 401 "));
    // A token of another kind (a node's join token) may not attach.
    let join = c.cli_ok(&["nodes:join-token"]).unwrap();
    assert!(upgrade(&c, &path, Some(join.trim())).contains(" 403 "));
    // Nor does the node side open for a node the one-off is not on.
    let id = o["id"].as_str().unwrap();
    let other = format!("/v1/nodes/elsewhere/runs/{id}/terminal");
    assert!(upgrade(&c, &other, Some(&c.master.token)).contains(" 404 "));
    // --detach runs without a terminal: there is none to attach to.
    assert!(upgrade(&c, &path, Some(&c.master.token)).contains(" 422 "));
    // Another app's run number is not this app's one-off.
    c.deploy("other", &[("Procfile", "worker: sleep 1000\n")]);
    let elsewhere = format!("/v1/apps/other/runs/{n}/terminal");
    assert!(upgrade(&c, &elsewhere, Some(&c.master.token)).contains(" 404 "));
}
