//! How an instance becomes a process: the [`Runtime`] trait.
//!
//! The supervisor decides *what* runs (reconcile, back-off, replacement); a
//! runtime only knows *how* to start, watch, signal and re-adopt one process.
//! The native runtime ([`crate::native`]) runs Procfile commands from an
//! unpacked slug; a test double lets the supervisor be unit-tested; Docker
//! comes later behind the same trait.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;
use zeroku_conf::InstanceSpec;

/// Everything needed to start one process of an instance.
#[derive(Debug, Clone)]
pub struct StartRequest<'a> {
    pub spec: &'a InstanceSpec,
    /// The unpacked, read-only slug: the working directory.
    pub slug_dir: &'a Path,
    /// `$PORT` for this process.
    pub port: u16,
    /// The complete environment (config vars, `PORT`, `ZEROKU_*`), already
    /// merged by the supervisor. The runtime adds only `HOME`, `TMPDIR`,
    /// `PATH` when missing.
    pub env: BTreeMap<String, String>,
}

/// A started process, as persisted so a restarted worker can re-adopt it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    pub instance: String,
    pub app: String,
    pub release: u32,
    pub pid: u32,
    /// Start time of `pid` in clock ticks since boot (`/proc/PID/stat` field
    /// 22): a recycled PID has another start time and is never adopted.
    pub start_ticks: u64,
    pub port: u16,
    /// Unix seconds when the process started.
    pub started_at: u64,
    /// stdout and stderr of the process, appended to this file.
    pub log_path: PathBuf,
    /// Unique id of this start, also in the process's environment
    /// (`ZEROKU_START_ID`), so a process whose record was not yet written
    /// when the worker died can still be found and adopted.
    #[serde(default)]
    pub start_id: String,
    /// The container, when the Docker runtime runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The terminal of an interactive one-off, for the agent to relay to the
/// master ([`crate::terminal`]).
#[derive(Debug)]
pub enum Terminal {
    /// The master side of the pseudo-terminal the process runs on.
    Pty(std::os::fd::OwnedFd),
    /// A container started with a TTY and an open stdin, to attach to,
    /// and the terminal's size.
    Container { id: String, cols: u16, rows: u16 },
}

/// What [`Runtime::adopt`] found from an earlier run of the worker.
#[derive(Debug, Default)]
pub struct Adopted {
    /// Still the same process: keep supervising it.
    pub running: Vec<ProcRecord>,
    /// Exited while no worker watched: drain its log, then drop it.
    pub exited: Vec<ProcRecord>,
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// An adopted process (not our child) vanished: its status is unknown.
    Unknown,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Unknown => f.write_str("exited (status unknown: adopted process)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Kill,
}

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error("cannot start {instance}: {why}")]
    Start { instance: String, why: String },
    #[error("cannot signal {instance} (pid {pid}): {source}")]
    Signal {
        instance: String,
        pid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

/// Whether something accepts TCP connections on 127.0.0.1:`port` now and,
/// given a health-check path, answers a GET of it with 2xx or 3xx.
pub fn port_accepts(port: u16, health_path: Option<&str>) -> bool {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let t = std::time::Duration::from_millis(300);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, t) else {
        return false;
    };
    let Some(path) = health_path else {
        return true;
    };
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nUser-Agent: zeroku-healthcheck\r\n\r\n");
    let mut head = [0u8; 12];
    s.set_read_timeout(Some(t)).is_ok()
        && s.set_write_timeout(Some(t)).is_ok()
        && s.write_all(req.as_bytes()).is_ok()
        && s.read_exact(&mut head).is_ok()
        && head.starts_with(b"HTTP/1.")
        && matches!(head[9], b'2' | b'3')
}

pub trait Runtime: Send + Sync + 'static {
    /// Starts the process and persists its record. Must not block for long.
    fn start(&self, req: &StartRequest<'_>) -> Result<ProcRecord, RuntimeError>;
    /// `None` while the process runs; how it ended once it has (reaping it
    /// if it is our child). Never blocks.
    fn poll(&self, rec: &ProcRecord) -> Option<Exit>;
    /// Signals the process and everything in its session/process group.
    fn signal(&self, rec: &ProcRecord, sig: StopSignal) -> Result<(), RuntimeError>;
    /// After the process exited: kill whatever it left behind in its
    /// process group (children of `sh` that outlived it), so nothing leaks.
    fn kill_leftovers(&self, rec: &ProcRecord);
    /// Processes started by an earlier run of the worker: those still the
    /// same process (pid and start time match), and those that exited
    /// meanwhile (their records are deleted).
    fn adopt(&self) -> Adopted;
    /// Deletes the persisted record of a process that has exited.
    fn forget(&self, rec: &ProcRecord);
    /// `None` when memory/cpu/pids limits are enforced, else why not.
    fn limits_unavailable(&self) -> Option<String>;
    /// Whether the process accepts TCP connections on its `$PORT` now (a
    /// quick local connect) and, given a health-check path, answers a GET
    /// of it with 2xx or 3xx. Never blocks for long.
    fn accepting(&self, rec: &ProcRecord, health_path: Option<&str>) -> bool;
    /// Whether the process (or one in its group) holds an established TCP
    /// connection to every `tcp://host:port` endpoint; `None` when this
    /// cannot be seen (then readiness falls back to running time).
    fn connected(&self, rec: &ProcRecord, endpoints: &[&str]) -> Option<bool>;
    /// Sends `sig` (`HUP`, `USR1`, `USR2`: a requirement's `on_change`) to
    /// tell the process to re-read what changed: to the process alone when
    /// `leader_only` (it is the app's own program), else to the others of its
    /// group (the app under a `sh` that did not `exec` it, which would die of
    /// the signal).
    fn notify(&self, rec: &ProcRecord, sig: &str, leader_only: bool) -> Result<(), RuntimeError>;
    /// Runs `command` next to the process, as the app, in its directory and
    /// with `env` (a requirement's `on_change = "hook:..."`); does not wait
    /// for it. Its output goes to the instance's log where the runtime can.
    fn hook(
        &self,
        rec: &ProcRecord,
        req: &StartRequest<'_>,
        command: &str,
    ) -> Result<(), RuntimeError>;
    /// Terminals of interactive one-offs started since the last call.
    fn take_terminals(&self) -> Vec<(ProcRecord, Terminal)> {
        Vec::new()
    }
}
