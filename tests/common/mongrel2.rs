//! Test helpers for running the real Mongrel2 1.12 (Debian `mongrel2-core`)
//! beside zeroku, and the capturing handler `tests/m2/capture_handler.py`
//! behind either of them. Standalone: include it with
//! `#[path = "common/mongrel2.rs"] mod mongrel2;`. Uses only std, tempfile
//! and serde_json. See `tests/m2/README.md` for the gotchas it works around.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `send_ident` of the one handler route: the first field ("sender") of
/// every message Mongrel2 sends to the handler.
pub const SENDER_UUID: &str = "34f9ceee-cd52-4b7f-b197-88bf2f0ec378";
/// The Mongrel2 server's own uuid (what `mongrel2 DB UUID` starts).
pub const SERVER_UUID: &str = "f400bf85-4538-4f7a-8908-67e313d515c2";
/// Identity the capture handler's sockets use (`M2_SENDER_ID`).
pub const HANDLER_ID: &str = "0f3e2a52-6bd1-4a3c-9a57-3c0d2b1c5e77";

/// A running real Mongrel2 with one Handler route at `/` on host
/// `localhost` (also the default host, so any Host header reaches it).
pub struct Mongrel2 {
    pub http_port: u16,
    /// Where handlers connect PULL (Mongrel2 binds PUSH), `tcp://127.0.0.1:N`.
    pub send_spec: String,
    /// Where handlers connect PUB (Mongrel2 binds SUB), `tcp://127.0.0.1:N`.
    pub recv_spec: String,
    /// `send_ident` of the handler route (= [`SENDER_UUID`]).
    pub sender_uuid: String,
    pub server_uuid: String,
    /// "json" or "tnetstring".
    pub protocol: String,
    /// `limits.content_length`: bodies above it (and all chunked bodies) go
    /// through upload-start/done temp files. Mongrel2's default is 20480;
    /// values below 4096 are refused (see `start`).
    pub upload_limit: usize,
    /// Directory of the `upload.temp_store` files (`upload.XXXXXX`).
    pub upload_dir: PathBuf,
    /// The working directory (config, db, run/, logs/, tmp/).
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// Checks that `mongrel2` and `m2sh` are on PATH.
pub fn installed() -> Result<(), String> {
    for b in ["mongrel2", "m2sh"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(b).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "`{b}` is not installed (apt-get install mongrel2-core; scripts/deps.sh does it)"
            ));
        }
    }
    Ok(())
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

impl Mongrel2 {
    /// Writes a config and db into a fresh temp dir, starts `mongrel2` in
    /// the foreground as a child and waits (up to 10 s) until its HTTP port
    /// accepts. Retries with new ports if Mongrel2 dies at start (a port
    /// taken in between). Err if Mongrel2 is not installed or won't start,
    /// or if `upload_limit_bytes` < 4096 (Mongrel2 1.12 then corrupts
    /// uploads whose first bytes arrive with the head).
    pub fn start(protocol: &str, upload_limit_bytes: Option<usize>) -> Result<Mongrel2, String> {
        installed()?;
        if protocol != "json" && protocol != "tnetstring" {
            return Err(format!("unknown protocol {protocol:?}"));
        }
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(protocol, upload_limit_bytes) {
                Ok(m) => return Ok(m),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn try_start(protocol: &str, upload_limit_bytes: Option<usize>) -> Result<Mongrel2, String> {
        let tmp = tempfile::Builder::new()
            .prefix("mongrel2-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let dir = tmp.path().to_path_buf();
        // Mongrel2 needs these to exist: the pid file and logs go where the
        // config says, the control socket is ipc://run/control relative to
        // the working directory.
        for d in ["run", "logs", "tmp"] {
            std::fs::create_dir_all(dir.join(d)).map_err(|e| format!("mkdir {d}: {e}"))?;
        }
        let http_port = free_port();
        let (send_port, recv_port) = loop {
            let (a, b) = (free_port(), free_port());
            if a != b && a != http_port && b != http_port {
                break (a, b);
            }
        };
        let send_spec = format!("tcp://127.0.0.1:{send_port}");
        let recv_spec = format!("tcp://127.0.0.1:{recv_port}");
        let upload_limit = upload_limit_bytes.unwrap_or(20480);
        if upload_limit < 4096 {
            // Mongrel2 1.12 bug: Upload_file shrinks the connection's 4 KB
            // read buffer (limits.buffer_size) to limits.content_length and
            // loses body bytes already read with the head, then hangs.
            return Err(format!(
                "upload limit {upload_limit} < 4096 (limits.buffer_size): Mongrel2 1.12 would lose body bytes and hang"
            ));
        }
        let upload_dir = dir.join("tmp");
        let d = dir.display();
        let config = format!(
            r#"handler = Handler(send_spec='{send_spec}',
                    send_ident='{SENDER_UUID}',
                    recv_spec='{recv_spec}',
                    recv_ident='',
                    protocol='{protocol}')

main = Server(
    uuid="{SERVER_UUID}",
    name="zeroku-test",
    chroot="",
    access_log="{d}/logs/access.log",
    error_log="{d}/logs/error.log",
    pid_file="{d}/run/mongrel2.pid",
    control_port="ipc://{d}/run/control",
    default_host="localhost",
    bind_addr="127.0.0.1",
    port={http_port},
    hosts=[Host(name="localhost", routes={{'/': handler}})]
)

settings = {{
    "server.daemonize": 0,
    "upload.temp_store": "{d}/tmp/upload.XXXXXX",
    "limits.content_length": {upload_limit}
}}

servers = [main]
"#
        );
        let conf = dir.join("mongrel2.conf");
        std::fs::write(&conf, config).map_err(|e| format!("write config: {e}"))?;
        let db = dir.join("config.sqlite");
        let out = Command::new("m2sh")
            .arg("load")
            .arg("-config")
            .arg(&conf)
            .arg("-db")
            .arg(&db)
            .current_dir(&dir)
            .env("LOGNAME", "root")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run m2sh: {e}"))?;
        if !out.status.success() || !db.is_file() {
            return Err(format!(
                "m2sh load failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let log = std::fs::File::create(dir.join("mongrel2.out")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("mongrel2")
            .arg(&db)
            .arg(SERVER_UUID)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn mongrel2: {e}"))?;
        let mut m = Mongrel2 {
            http_port,
            send_spec,
            recv_spec,
            sender_uuid: SENDER_UUID.to_string(),
            server_uuid: SERVER_UUID.to_string(),
            protocol: protocol.to_string(),
            upload_limit,
            upload_dir,
            dir,
            child: Some(child),
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let addr: SocketAddr = ([127, 0, 0, 1], http_port).into();
        loop {
            if let Some(c) = m.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    m.child = None;
                    return Err(format!("mongrel2 exited at start ({st}):\n{}", m.logs()));
                }
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(m);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "mongrel2 did not accept on port {http_port} within 10 s:\n{}",
                    m.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The tail of Mongrel2's stdout/stderr and error log, for diagnostics.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["mongrel2.out", "logs/error.log"] {
            let t = std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = t.lines().filter(|l| !l.contains(" MAX ")).collect();
            let from = lines.len().saturating_sub(40);
            s.push_str(&format!("--- {f}\n{}\n", lines[from..].join("\n")));
        }
        s
    }

    /// Files currently in the upload temp store.
    pub fn upload_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.upload_dir)
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Kills Mongrel2 now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mongrel2 {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A python3 that can `import zmq`. The `python3` first on PATH may be a
/// pyenv/venv one without it; Debian's `python3-zmq` is for /usr/bin/python3.
/// `M2_PYTHON` overrides.
pub fn python_with_zmq() -> Result<String, String> {
    let mut cands = Vec::new();
    if let Ok(p) = std::env::var("M2_PYTHON") {
        cands.push(p);
    }
    cands.push("/usr/bin/python3".to_string());
    cands.push("python3".to_string());
    for c in &cands {
        let ok = Command::new(c)
            .args(["-c", "import zmq"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(c.clone());
        }
    }
    Err(format!(
        "no python3 with pyzmq among {cands:?} (apt-get install python3-zmq)"
    ))
}

/// Path of `tests/m2/<name>`.
pub fn m2_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/m2")
        .join(name)
}

/// The capturing handler (`tests/m2/capture_handler.py`) as a child
/// process. Every message it receives becomes one JSON line in `out`.
pub struct CaptureHandler {
    pub out: PathBuf,
    pub stderr_log: PathBuf,
    child: Option<Child>,
}

impl CaptureHandler {
    /// Starts the handler against `send_spec`/`recv_spec` (space-separated
    /// lists allowed) and waits (up to 10 s) until it prints READY, i.e. the
    /// server's SUB socket has subscribed so no reply can be lost.
    pub fn start(send_spec: &str, recv_spec: &str, out: &Path) -> Result<CaptureHandler, String> {
        let py = python_with_zmq()?;
        let stderr_log = out.with_extension("stderr");
        let err = std::fs::File::create(&stderr_log).map_err(|e| e.to_string())?;
        let mut child = Command::new(py)
            .arg(m2_file("capture_handler.py"))
            .arg("--send")
            .arg(send_spec)
            .arg("--recv")
            .arg(recv_spec)
            .arg("--sender-id")
            .arg(HANDLER_ID)
            .arg("--out")
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .map_err(|e| format!("spawn capture_handler.py: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut h = CaptureHandler {
            out: out.to_path_buf(),
            stderr_log,
            child: Some(child),
        };
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) if l.starts_with("READY") => Ok(h),
            other => {
                h.stop();
                Err(format!(
                    "capture handler not ready ({other:?}): {}",
                    std::fs::read_to_string(&h.stderr_log).unwrap_or_default()
                ))
            }
        }
    }

    /// All records captured so far, in order.
    pub fn records(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Polls the records until `pred` holds; Err after `timeout`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.records();
            if pred(&r) {
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "timed out after {timeout:?} waiting for {what}; captured so far:\n{}\nhandler stderr:\n{}",
                    r.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"),
                    std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Records for one connection id (requests and disconnects alike).
    pub fn for_conn(&self, conn_id: &str) -> Vec<Value> {
        self.records()
            .into_iter()
            .filter(|r| r["conn_id"] == conn_id)
            .collect()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for CaptureHandler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Decodes a record's `raw_b64` (the whole message as received).
pub fn raw(rec: &Value) -> Vec<u8> {
    b64decode(rec["raw_b64"].as_str().unwrap_or(""))
}

/// Decodes a record's `body_b64`.
pub fn body(rec: &Value) -> Vec<u8> {
    b64decode(rec["body_b64"].as_str().unwrap_or(""))
}

pub fn b64decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = val(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ------------------------------------------------------------- client side

/// Connects to 127.0.0.1:`port` with 10 s read/write timeouts.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    pub status: u16,
    /// Header (lowercased name, value) pairs, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The exact bytes read for this response.
    pub raw: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let n = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response: head, then a Content-Length body, or (no length and
/// not 101/204/304) until EOF. Uses the stream's read timeout.
pub fn read_response(s: &mut TcpStream) -> Result<HttpResponse, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "EOF before end of response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(_) => buf.push(byte[0]),
            Err(e) => {
                return Err(format!(
                    "reading response head: {e}; got {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
        if buf.len() > 65536 {
            return Err("response head too long".into());
        }
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("").to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut resp = HttpResponse {
        status_line,
        status,
        headers,
        body: Vec::new(),
        raw: buf,
    };
    if let Some(n) = resp.header("content-length") {
        let n: usize = n.parse().map_err(|_| format!("bad content-length {n}"))?;
        let mut body = vec![0u8; n];
        s.read_exact(&mut body)
            .map_err(|e| format!("reading {n} body bytes: {e}"))?;
        resp.body = body;
    } else if !matches!(status, 101 | 204 | 304) {
        s.read_to_end(&mut resp.body)
            .map_err(|e| format!("reading body to EOF: {e}"))?;
    }
    resp.raw.extend_from_slice(&resp.body);
    Ok(resp)
}

/// Sends `req` on a new connection and reads one response.
pub fn http_exchange(port: u16, req: &[u8]) -> Result<(TcpStream, HttpResponse), String> {
    let mut s = connect(port);
    s.write_all(req).map_err(|e| format!("write: {e}"))?;
    let r = read_response(&mut s)?;
    Ok((s, r))
}

/// True once the peer has closed (read returns 0) within `timeout`.
pub fn wait_eof(s: &mut TcpStream, timeout: Duration) -> Result<Vec<u8>, String> {
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut rest = Vec::new();
    match s.read_to_end(&mut rest) {
        Ok(_) => Ok(rest),
        Err(e) => Err(format!("no EOF within {timeout:?}: {e}; got {rest:?}")),
    }
}

/// A client (masked) WebSocket frame with FIN set.
pub fn ws_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let n = payload.len();
    if n < 126 {
        f.push(0x80 | n as u8);
    } else if n < 65536 {
        f.push(0x80 | 126);
        f.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(n as u64).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads one unmasked server frame; returns (first byte, payload).
pub fn ws_read_frame(s: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)
        .map_err(|e| format!("frame head: {e}"))?;
    let mut n = (h[1] & 0x7f) as u64;
    if n == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        n = u16::from_be_bytes(b) as u64;
    } else if n == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).map_err(|e| e.to_string())?;
        n = u64::from_be_bytes(b);
    }
    let mut mask = None;
    if h[1] & 0x80 != 0 {
        let mut m = [0u8; 4];
        s.read_exact(&mut m).map_err(|e| e.to_string())?;
        mask = Some(m);
    }
    let mut p = vec![0u8; n as usize];
    s.read_exact(&mut p)
        .map_err(|e| format!("frame payload: {e}"))?;
    if let Some(m) = mask {
        for (i, b) in p.iter_mut().enumerate() {
            *b ^= m[i % 4];
        }
    }
    Ok((h[0], p))
}

/// The exact request bytes of the differential scenarios, so the real
/// Mongrel2 and zeroku get byte-identical input.
pub mod requests {
    /// GET with a query string, a duplicated header, a mixed-case header and
    /// a client-supplied X-Forwarded-For (which the server overwrites).
    pub const GET: &[u8] = b"GET /hello/world?a=1&b=two%20words HTTP/1.1\r\n\
Host: localhost\r\n\
User-Agent: m2-diff/1\r\n\
X-Dup: one\r\n\
X-Dup: two\r\n\
X-Mixed-Case: Value\r\n\
X-Forwarded-For: 10.9.8.7\r\n\
Accept: */*\r\n\
\r\n";
    /// POST with a small Content-Length body.
    pub const POST: &[u8] = b"POST /submit HTTP/1.1\r\n\
Host: localhost\r\n\
Content-Type: application/x-www-form-urlencoded\r\n\
Content-Length: 24\r\n\
\r\n\
name=zeroku&msg=hi+there";
    pub const POST_BODY: &[u8] = b"name=zeroku&msg=hi+there";
    /// A chunked POST (always goes through upload-start/done).
    pub const CHUNKED: &[u8] = b"POST /chunked HTTP/1.1\r\n\
Host: localhost\r\n\
Transfer-Encoding: chunked\r\n\
Content-Type: text/plain\r\n\
\r\n\
5\r\nhello\r\n\
7\r\n, world\r\n\
0\r\n\r\n";
    /// `Sec-WebSocket-Key` of the RFC 6455 example; accept is
    /// `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
    pub const WS_HANDSHAKE: &[u8] = b"GET /ws/chat HTTP/1.1\r\n\
Host: localhost\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: http://localhost\r\n\
\r\n";
    pub const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
    pub const WS_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// POST of `len` bytes `'x'` (use more than the upload limit).
    pub fn large_post(path: &str, len: usize) -> Vec<u8> {
        let mut r = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
        )
        .into_bytes();
        r.extend((0..len).map(|i| b'a' + (i % 26) as u8));
        r
    }

    /// A GET the capture handler never answers (`/noreply...`).
    pub const NOREPLY: &[u8] = b"GET /noreply/1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    /// A GET the capture handler closes with only an empty reply.
    pub const EMPTY: &[u8] = b"GET /empty/1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    /// A POST whose body stops after 3 of 100 bytes (the client then leaves).
    pub const UNFINISHED: &[u8] =
        b"POST /unfinished/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc";
    /// A GET the capture handler answers after 1 s (`/delay/<ms>/...`).
    pub const DELAYED: &[u8] = b"GET /delay/1000/x HTTP/1.1\r\nHost: localhost\r\n\r\n";
    /// An incomplete request head.
    pub const PARTIAL_HEAD: &[u8] = b"GET /partial-head HTTP/1.1\r\nHost: loc";
}
