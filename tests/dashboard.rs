//! The web dashboard (`/ui`) in a real browser: headless Chromium from Debian, driven over
//! the DevTools protocol. A user logs in with their token, sees the cluster and an app, sees
//! a new instance appear after `ps:scale` and a new log line arrive without reloading, and
//! with `operate` scales and restarts it from its page (a forged form is refused), with
//! `deploy` runs a shell in the browser's terminal and types in it; a user without `view`
//! on the app gets 403 for its page and its live data; a node's token cannot log in. Screenshots of each page go to the test's temp dir.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_tungstenite::tungstenite::{self, Message};

/// Headless Chromium and one page of it.
struct Browser {
    child: std::process::Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    next: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // `chromium` is a script that starts the browser, which starts its helpers: all of
        // them are in the process group it leads.
        unsafe_free_kill(-(self.child.id() as i32), 9);
        let _ = self.child.wait();
    }
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        use std::os::unix::process::CommandExt;
        let child = std::process::Command::new("chromium")
            .process_group(0)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("chromium (apt-get install chromium)");
        let port_file = profile.path().join("DevToolsActivePort");
        let port: u16 = eventually(Duration::from_secs(30), "chromium's DevTools port", || {
            std::fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next()?.parse().ok())
                .ok_or("not yet".into())
        });
        let list: Value = eventually(Duration::from_secs(10), "chromium's page", || {
            let body = devtools_get(port, "/json/list")?;
            let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
            v.as_array()
                .is_some_and(|a| a.iter().any(|t| t["type"] == "page"))
                .then_some(v)
                .ok_or(body)
        });
        let url = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_string();
        let (ws, _) = tungstenite::connect(url).expect("DevTools websocket");
        let mut b = Browser {
            child,
            ws,
            next: 0,
            _profile: profile,
        };
        b.call("Page.enable", json!({}));
        b
    }

    /// Sends a DevTools command and waits for its answer (events in between are skipped).
    /// Types `line` and Enter, key by key, into what has the focus.
    fn type_line(&mut self, line: &str) {
        for ch in line.chars() {
            let k = ch.to_string();
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": "keyDown", "key": k, "text": k}),
            );
            self.call("Input.dispatchKeyEvent", json!({"type": "keyUp", "key": k}));
        }
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyDown", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
        );
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13}),
        );
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::Text(msg.into())).unwrap();
        loop {
            let m = self.ws.read().expect("DevTools message");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    assert!(v["error"].is_null(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Runs `js` (which leaves the page: a form submitted) and waits for the next page to
    /// have loaded: the old page is marked first, so its own `complete` is not taken for it.
    fn leave_by(&mut self, js: &str) {
        self.eval(&format!("window.zerokuOld = true; {js}; true"));
        self.wait_new_page();
    }

    fn wait_new_page(&mut self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.eval("!window.zerokuOld && document.readyState === 'complete'") != true {
            assert!(
                std::time::Instant::now() < deadline,
                "the page did not load"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn go(&mut self, url: &str) {
        self.eval("window.zerokuOld = true");
        self.call("Page.navigate", json!({"url": url}));
        self.wait_new_page();
    }

    fn text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Waits until the page's text contains `what`.
    fn wait_for(&mut self, what: &str, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let t = self.text();
            if t.contains(what) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what:?} never showed; the page says:\n{t}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn screenshot(&mut self, path: &Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(r["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }

    fn log_in(&mut self, base: &str, token: &str) {
        self.go(&format!("{base}/ui/"));
        assert!(self.text().contains("Log in"), "{}", self.text());
        self.leave_by(&format!(
            "document.querySelector('input[name=token]').value = {}; document.forms[0].submit()",
            json!(token)
        ));
    }
}

/// A GET of DevTools' HTTP endpoint, which keeps the connection open: the body by its
/// `Content-Length`.
fn devtools_get(port: u16, path: &str) -> Result<String, String> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut len = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| *c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, c)| n | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

fn token_of(c: &TestCluster, user: &str) -> String {
    c.json(&["users:add", user])["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A GET under `/ui` with a user's cookie: status and body.
fn ui_get(c: &TestCluster, token: &str, path: &str) -> (u16, String) {
    let (st, _, body) = http_request(
        &c.master.api,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nCookie: zeroku_ui={token}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    (st, body)
}

/// A form posted under `/ui` with a user's cookie: status and body.
fn ui_post(c: &TestCluster, token: &str, path: &str, form: &str) -> (u16, String) {
    let (st, _, body) = http_request(
        &c.master.api,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nCookie: zeroku_ui={token}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .unwrap();
    (st, body)
}

#[test]
fn the_dashboard_shows_what_a_user_may_see_and_changes_as_the_cluster_does() {
    let mut c = TestCluster::start();
    c.add_worker("n1", 34500);
    let fe = c.add_frontend_with("edge", &[]);
    // Built with buildpacks, as a push is: the dashboard shows the build's output.
    let src = c.dir.path().join("shop-src");
    write_tree(
        &src,
        &[
            ("Procfile", "web: python3 -m http.server $PORT\n"),
            ("index.html", "<h1>shop</h1>\n"),
        ],
    );
    c.cli_ok(&["apps:create", "shop"]).unwrap();
    c.cli_ok(&["deploy", "-a", "shop", src.to_str().unwrap()])
        .unwrap();
    c.cli_ok(&["ps:scale", "-a", "shop", "web=1"]).unwrap();
    c.wait_up("shop", 1, Duration::from_secs(30));
    let ann = token_of(&c, "ann");
    c.cli_ok(&["access:add", "ann", "-a", "shop", "--permissions", "view"])
        .unwrap();
    let bob = token_of(&c, "bob");
    // (ZEROKU_SCREENSHOTS=DIR keeps them after the test.)
    let shots: PathBuf = std::env::var_os("ZEROKU_SCREENSHOTS")
        .map_or_else(|| c.dir.path().join("screenshots"), PathBuf::from);
    std::fs::create_dir_all(&shots).unwrap();
    let base = format!("http://{}", c.master.api);

    let mut b = Browser::start();
    // A wrong token is refused, on the log-in page.
    b.log_in(&base, "not-a-token");
    assert!(
        b.text().contains("does not know that token"),
        "{}",
        b.text()
    );
    b.log_in(&base, &ann);
    b.wait_for("Apps", 10);
    let t = b.text();
    assert!(t.contains("shop") && t.contains("ann"), "{t}");
    assert!(!t.contains("Nodes"), "only admins see the nodes: {t}");
    b.screenshot(&shots.join("cluster.png"));

    b.go(&format!("{base}/ui/apps/shop"));
    b.wait_for("shop.web.1", 10);
    // The deploy history: the release and the last build's output.
    let t = b.text();
    assert!(
        t.contains("Releases") && t.contains("v1") && t.contains("Last build"),
        "{t}"
    );
    b.screenshot(&shots.join("app.png"));
    // The cluster changes; the open page follows.
    c.cli_ok(&["ps:scale", "-a", "shop", "web=2"]).unwrap();
    b.wait_for("shop.web.2", 30);
    wait_http_ok(&fe, "shop.localhost", "/", Duration::from_secs(30));
    let _ = http_get(&fe, "shop.localhost", "/hello-from-the-dashboard-test");
    b.wait_for("hello-from-the-dashboard-test", 30);
    b.screenshot(&shots.join("app-scaled.png"));
    assert!(
        std::fs::metadata(shots.join("app-scaled.png"))
            .unwrap()
            .len()
            > 1000
    );
    // Ann may view but not operate shop: no scale form, and a forged one is refused.
    assert_eq!(b.eval("document.querySelectorAll('form.scale').length"), 0);
    let (st, _) = ui_post(
        &c,
        &ann,
        "/ui/apps/shop/scale",
        "type=web&quantity=5&csrf=x",
    );
    assert_eq!(st, 403);

    // Olga may operate it: she scales from the page, and the page follows.
    let olga = token_of(&c, "olga");
    c.cli_ok(&[
        "access:add",
        "olga",
        "-a",
        "shop",
        "--permissions",
        "view,operate",
    ])
    .unwrap();
    b.leave_by("document.querySelector('form[action=\"/ui/logout\"]').submit()");
    b.log_in(&base, &olga);
    b.go(&format!("{base}/ui/apps/shop"));
    b.wait_for("shop.web.2", 10);
    b.leave_by(
        "const f = document.querySelector('form.scale'); f.querySelector('input[name=quantity]').value = 3; f.submit()",
    );
    b.wait_for("shop.web.3", 30);
    assert_eq!(c.json(&["ps", "-a", "shop"]).as_array().unwrap().len(), 3);
    let audit = c.cli_ok(&["audit", "-a", "shop"]).unwrap_or_default();
    assert!(audit.contains("web=3"), "{audit}");
    // Without the form's value (another site's form): refused, nothing changes.
    let (st, _) = ui_post(
        &c,
        &olga,
        "/ui/apps/shop/scale",
        "type=web&quantity=9&csrf=x",
    );
    assert_eq!(st, 403);
    assert_eq!(c.json(&["ps", "-a", "shop"]).as_array().unwrap().len(), 3);
    // Restart from the page (through the API as Olga: in the audit log).
    b.eval("document.querySelector('button[data-act=restart]').click(); true");
    b.wait_for("restart: done", 15);
    let audit = c.cli_ok(&["audit", "-a", "shop"]).unwrap_or_default();
    assert!(audit.contains("restart"), "{audit}");
    // Olga may not deploy: no terminal for her.
    assert_eq!(ui_get(&c, &olga, "/ui/apps/shop/run").0, 403);

    // Dan may deploy: a shell in the browser, over the CLI's terminal WebSocket.
    let dan = token_of(&c, "dan");
    c.cli_ok(&[
        "access:add",
        "dan",
        "-a",
        "shop",
        "--permissions",
        "view,deploy",
    ])
    .unwrap();
    b.leave_by("document.querySelector('form[action=\"/ui/logout\"]').submit()");
    b.log_in(&base, &dan);
    b.go(&format!("{base}/ui/apps/shop/run"));
    b.wait_for("Run", 10);
    b.eval("document.querySelector('#run button').click(); true");
    b.wait_for("connected", 60);
    // Typed as keys into xterm.js (its text area has the focus).
    b.type_line("echo hi-$((6*7))");
    let screen = "(() => { const b = window.zerokuTerm._core.buffer; let s = ''; \
                  for (let i = 0; i < b.lines.length; i++) s += b.translateBufferLineToString(i, true) + '\\n'; \
                  return s; })()";
    let mut shown = String::new();
    for _ in 0..100 {
        shown = b.eval(screen).as_str().unwrap_or("").to_string();
        if shown.contains("hi-42") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(shown.contains("hi-42"), "the terminal shows: {shown}");
    b.screenshot(&shots.join("terminal.png"));
    b.type_line("exit");
    b.wait_for("ended", 30);
    // The terminal's WebSocket: another site's page may not open it, nor a user without
    // deploy (here with view only).
    let ws = |token: &str, origin: &str| -> Result<u16, String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&c.master.api).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "GET /ui/api/v1/apps/shop/runs/1/terminal HTTP/1.1\r\nHost: {h}\r\nOrigin: {origin}\r\n\
             Cookie: zeroku_ui={token}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            h = c.master.api
        )
        .map_err(|e| e.to_string())?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).map_err(|e| e.to_string())?;
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        head.split_whitespace()
            .nth(1)
            .and_then(|x| x.parse().ok())
            .ok_or(head)
    };
    assert_eq!(ws(&dan, "http://evil.example"), Ok(403));
    assert_eq!(ws(&ann, &format!("http://{}", c.master.api)), Ok(403));
    assert_eq!(ws(&bob, &format!("http://{}", c.master.api)), Ok(403));
    assert_eq!(ui_get(&c, &ann, "/ui/apps/shop/run").0, 403);

    // Bob may not view shop: 403 for the page and its live data, in the browser too.
    assert_eq!(ui_get(&c, &bob, "/ui/apps/shop").0, 403);
    assert_eq!(ui_get(&c, &bob, "/ui/apps/shop/live").0, 403);
    assert_eq!(ui_get(&c, &bob, "/ui/apps/shop/logs").0, 403);
    assert_eq!(ui_get(&c, &bob, "/ui/apps/shop/run").0, 403);
    assert_eq!(ui_get(&c, &ann, "/ui/apps/shop/live").0, 200);
    // An app that does not exist looks like one that may not be viewed.
    assert_eq!(ui_get(&c, &ann, "/ui/apps/nosuch").0, 403);
    // No inline script may run on these pages.
    let (_, head, _) = http_request(
        &c.master.api,
        &format!("GET /ui/apps/shop HTTP/1.1\r\nHost: x\r\nCookie: zeroku_ui={ann}\r\nConnection: close\r\n\r\n"),
    )
    .unwrap();
    let head = head.to_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'self'")
            && !head.contains("unsafe-inline"),
        "{head}"
    );
    b.leave_by("document.querySelector('form[action=\"/ui/logout\"]').submit()");
    b.log_in(&base, &bob);
    b.wait_for("Apps", 10);
    assert!(!b.text().contains("shop"), "{}", b.text());
    b.go(&format!("{base}/ui/apps/shop"));
    b.wait_for("may not view shop", 10);
    b.screenshot(&shots.join("forbidden.png"));

    // Without a cookie: the log-in page. A node's token does not log in.
    let (st, _, _) = http_get(&c.master.api, "x", "/ui/apps/shop").unwrap();
    assert_eq!(st, 303);
    let node_token = std::fs::read_to_string(c.dir.path().join("worker-n1/node-token.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<Value>(&s).ok())
        .and_then(|v| v["token"].as_str().map(String::from))
        .unwrap();
    let form = format!("token={node_token}");
    let (st, _, body) = http_request(
        &c.master.api,
        &format!(
            "POST /ui/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{form}",
            form.len()
        ),
    )
    .unwrap();
    assert_eq!(st, 403, "{body}");
}
