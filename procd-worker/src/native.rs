//! The native runtime: runs a Procfile command from an unpacked slug as a
//! plain process (its own session, its own uid when the worker is root,
//! cgroup v2 limits when the host has them), persists a [`ProcRecord`] per
//! process so a restarted worker re-adopts what still runs, and signals or
//! forgets processes on request.
//!
//! Owns `<data>/procs/` (records), `<data>/logs/` (the log file each process
//! appends to; [`crate::logs`] reads them), `<data>/tmp/` (per-instance
//! `$TMPDIR`) and `/sys/fs/cgroup/zeroku/`.
//!
//! It must not decide *what* should run, restart anything, or apply back-off:
//! that is the supervisor's job. Processes never depend on the worker being
//! alive (no pipes to it), so a worker restart leaves them running.

mod cgroup;
mod procfs;
mod sys;
mod unixdiag;

pub use procfs::{parse_proc_stat, read_proc_stat, ProcStat};

use crate::runtime::{
    Adopted, Exit, ProcRecord, Runtime, RuntimeError, StartRequest, StopSignal, Terminal,
};
use cgroup::Cgroups;
use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The environment variable carrying [`ProcRecord::start_id`].
pub const START_ID_VAR: &str = "ZEROKU_START_ID";

/// A start id no other start of this worker shares.
fn new_start_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{nanos:x}-{n}")
}

/// `PATH` when the environment has none (Heroku's default).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs processes natively. See the module documentation.
#[derive(Debug)]
pub struct NativeRuntime {
    procs_dir: PathBuf,
    logs_dir: PathBuf,
    tmp_dir: PathBuf,
    app_uid_base: u32,
    as_root: bool,
    cgroups: Result<Cgroups, String>,
    /// Processes this worker started: pid → (child, start ticks).
    children: Mutex<HashMap<u32, (Child, u64)>>,
    /// Terminals of one-offs started on one, until the agent takes them.
    terminals: Mutex<Vec<(ProcRecord, Terminal)>>,
}

impl NativeRuntime {
    /// Prepares `<data>/{procs,logs,tmp}` and detects cgroup v2 support.
    ///
    /// When the worker runs as root, apps run as uid/gid
    /// `app_uid_base + spec.app_seq`.
    pub fn new(data_dir: &Path, app_uid_base: u32) -> Result<Self, RuntimeError> {
        let as_root = sys::geteuid() == 0;
        let procs_dir = data_dir.join("procs");
        let logs_dir = data_dir.join("logs");
        let tmp_dir = data_dir.join("tmp");
        for (dir, mode) in [(&procs_dir, 0o700), (&logs_dir, 0o700), (&tmp_dir, 0o711)] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|e| io_err(format!("cannot create {}", dir.display()), e))?;
        }
        // The app (another uid) must reach its $TMPDIR below <data>/tmp.
        std::fs::set_permissions(&tmp_dir, std::fs::Permissions::from_mode(0o711)).map_err(
            |e| {
                io_err(
                    format!("cannot set permissions of {}", tmp_dir.display()),
                    e,
                )
            },
        )?;
        if as_root {
            warn_untraversable(&tmp_dir);
        }
        let cgroups = Cgroups::detect(as_root);
        if let Err(why) = &cgroups {
            tracing::info!(reason = %why, "resource limits are not enforced");
        }
        Ok(NativeRuntime {
            procs_dir,
            logs_dir,
            tmp_dir,
            app_uid_base,
            as_root,
            cgroups,
            children: Mutex::new(HashMap::new()),
            terminals: Mutex::default(),
        })
    }

    /// A new log file for one process of `instance` at `release`. Each
    /// process gets its own (named by start time), so a process that is
    /// still stopping never shares a file with its successor, and removing
    /// one's log never takes the other's.
    pub fn new_log_path(&self, instance: &str, release: u32) -> PathBuf {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        self.logs_dir
            .join(format!("{}.{nanos}.log", key(instance, release)))
    }

    /// The `$TMPDIR` of `instance` at `release`.
    pub fn tmp_path(&self, instance: &str, release: u32) -> PathBuf {
        self.tmp_dir.join(key(instance, release))
    }

    /// Where the record of one process is persisted.
    pub fn record_path(&self, rec: &ProcRecord) -> PathBuf {
        self.procs_dir.join(format!(
            "{}.{}.json",
            key(&rec.instance, rec.release),
            rec.pid
        ))
    }

    fn children(&self) -> MutexGuard<'_, HashMap<u32, (Child, u64)>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_record(&self, rec: &ProcRecord) -> Result<(), RuntimeError> {
        self.write_json(rec, &self.record_path(rec))
    }

    /// Where the record of a start whose pid is not known yet is kept.
    fn pending_path(&self, rec: &ProcRecord) -> PathBuf {
        self.procs_dir.join(format!(
            "{}.pending-{}.json",
            key(&rec.instance, rec.release),
            rec.start_id
        ))
    }

    /// Finds the process of a pending record (the session leader whose
    /// environment has its start id) and completes the record.
    fn complete_pending(&self, pending: &ProcRecord) -> Option<ProcRecord> {
        let needle = format!("{START_ID_VAR}={}\0", pending.start_id);
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Some(stat) = read_proc_stat(pid) else {
                continue;
            };
            if stat.session != pid || stat.is_zombie() {
                continue;
            }
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                let rec = ProcRecord {
                    pid,
                    start_ticks: stat.start_ticks,
                    ..pending.clone()
                };
                return self.write_record(&rec).ok().map(|()| rec);
            }
        }
        None
    }

    fn write_json(&self, rec: &ProcRecord, path: &Path) -> Result<(), RuntimeError> {
        let path = path.to_path_buf();
        let ctx = |what: &str| {
            format!(
                "cannot {what} record of {} at {}",
                rec.instance,
                path.display()
            )
        };
        let json = serde_json::to_vec_pretty(rec)
            .map_err(|e| io_err(ctx("serialize"), io::Error::other(e)))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.procs_dir.join(format!(".{file_name}.tmp"));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(io_err(ctx("write"), e));
        }
        Ok(())
    }

    /// Whether any record other than `rec`'s names the same instance and
    /// release (a replacement sharing its tmp dir and cgroup).
    fn key_in_use_by_other(&self, rec: &ProcRecord) -> bool {
        let prefix = format!("{}.", key(&rec.instance, rec.release));
        let Ok(entries) = std::fs::read_dir(&self.procs_dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".json"))
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| pid != rec.pid)
        })
    }

    /// Removes the per-instance tmp dir and cgroup of `rec` unless another
    /// process of the same instance and release still has a record.
    fn cleanup_instance_dirs(&self, rec: &ProcRecord) {
        if !valid_instance(&rec.instance) || self.key_in_use_by_other(rec) {
            return;
        }
        let tmp = self.tmp_path(&rec.instance, rec.release);
        if let Err(e) = std::fs::remove_dir_all(&tmp) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(instance = %rec.instance, path = %tmp.display(), error = %e, "cannot remove tmp dir");
            }
        }
        if let Ok(cg) = &self.cgroups {
            cg.remove(&key(&rec.instance, rec.release));
        }
    }

    /// Kills and reaps a child whose start could not be completed.
    fn abort_child(child: &mut Child) {
        let _ = sys::kill_group(child.id(), libc::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The uid/gid an app runs under when the worker is root.
    fn app_uid(&self, req: &StartRequest<'_>) -> Result<u32, RuntimeError> {
        let spec = req.spec;
        match self.app_uid_base.checked_add(spec.app_seq) {
            Some(0) | None => Err(RuntimeError::Start {
                instance: spec.id.clone(),
                why: format!(
                    "app uid {} + {} is not a valid unprivileged uid",
                    self.app_uid_base, spec.app_seq
                ),
            }),
            Some(uid) => Ok(uid),
        }
    }
}

/// Sends `signo` to the process group of `rec`, unless its pid was recycled.
fn signal_group(rec: &ProcRecord, signo: i32) -> Result<(), RuntimeError> {
    // Never signal a recycled pid: the start time must still match. (A
    // zombie leader with matching ticks still holds its pid, and its
    // group may have live members, so it is signalled.)
    match read_proc_stat(rec.pid) {
        Some(st) if st.start_ticks == rec.start_ticks => {}
        _ => return Ok(()),
    }
    match sys::kill_group(rec.pid, signo) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(source) => Err(RuntimeError::Signal {
            instance: rec.instance.clone(),
            pid: rec.pid,
            source,
        }),
    }
}

/// How long an `on_change` hook may run before it is killed.
const HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Runtime for NativeRuntime {
    fn start(&self, req: &StartRequest<'_>) -> Result<ProcRecord, RuntimeError> {
        let spec = req.spec;
        let instance = spec.id.as_str();
        let start_err = |why: String| RuntimeError::Start {
            instance: instance.to_string(),
            why,
        };
        if !valid_instance(instance) {
            return Err(start_err(format!("invalid instance id {instance:?}")));
        }
        let slug_dir = std::path::absolute(req.slug_dir)
            .map_err(|e| start_err(format!("bad slug dir {}: {e}", req.slug_dir.display())))?;
        let uid = if self.as_root {
            Some(self.app_uid(req)?)
        } else {
            None
        };
        if spec.addon.is_some() {
            // An add-on's data directory: its server's alone, kept across starts.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&slug_dir)
                .map_err(|e| {
                    io_err(
                        format!("{instance}: cannot create {}", slug_dir.display()),
                        e,
                    )
                })?;
            if let Some(uid) = uid {
                std::os::unix::fs::chown(&slug_dir, Some(uid), Some(uid)).map_err(|e| {
                    io_err(
                        format!("{instance}: cannot chown {}", slug_dir.display()),
                        e,
                    )
                })?;
            }
        }
        if !slug_dir.is_dir() {
            return Err(start_err(format!(
                "slug dir {} is not a directory",
                slug_dir.display()
            )));
        }

        // $TMPDIR, private to the app.
        let tmp = self.tmp_path(instance, spec.release);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| {
                io_err(
                    format!("{instance}: cannot create tmp dir {}", tmp.display()),
                    e,
                )
            })?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(uid)).map_err(|e| {
                io_err(
                    format!("{instance}: cannot chown tmp dir {}", tmp.display()),
                    e,
                )
            })?;
        }

        // The log file: stdout and stderr, appended.
        let log_path = self.new_log_path(instance, spec.release);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&log_path)
            .map_err(|e| {
                io_err(
                    format!("{instance}: cannot open log file {}", log_path.display()),
                    e,
                )
            })?;
        if let Some(uid) = uid {
            std::os::unix::fs::fchown(&log, Some(uid), Some(uid)).map_err(|e| {
                io_err(
                    format!("{instance}: cannot chown log file {}", log_path.display()),
                    e,
                )
            })?;
        }
        let log_err = log.try_clone().map_err(|e| {
            io_err(
                format!(
                    "{instance}: cannot duplicate log file {}",
                    log_path.display()
                ),
                e,
            )
        })?;

        // The cgroup, with its limits, before anything runs.
        let cgroup_dir = match &self.cgroups {
            Ok(cg) => Some(
                cg.create(&key(instance, spec.release), &spec.limits)
                    .map_err(start_err)?,
            ),
            Err(_) => None,
        };

        // A pending record before anything runs: if the worker dies between
        // spawn and the real record, the next one finds the process by its
        // start id and adopts it instead of starting a second copy.
        let start_id = new_start_id();
        let pending = ProcRecord {
            instance: instance.to_string(),
            app: spec.app.clone(),
            release: spec.release,
            pid: 0,
            start_ticks: 0,
            port: req.port,
            started_at: unix_now(),
            log_path: log_path.clone(),
            start_id: start_id.clone(),
            container: None,
        };
        let pending_path = self.pending_path(&pending);
        self.write_json(&pending, &pending_path)?;

        // An interactive one-off runs on a terminal instead of the log.
        let pty = match &spec.tty {
            Some(t) => {
                let (master, slave) = sys::openpty(t.cols, t.rows)
                    .map_err(|e| start_err(format!("cannot open a terminal: {e}")))?;
                if let Some(uid) = uid {
                    std::os::unix::fs::fchown(&slave, Some(uid), None)
                        .map_err(|e| start_err(format!("cannot hand the terminal over: {e}")))?;
                }
                Some((master, slave))
            }
            None => None,
        };
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script(&spec.command))
            .current_dir(&slug_dir)
            .env_clear()
            .envs(&req.env);
        match &pty {
            Some((_, slave)) => {
                let io = |fd: &std::os::fd::OwnedFd| {
                    fd.try_clone()
                        .map(Stdio::from)
                        .map_err(|e| start_err(format!("cannot duplicate the terminal: {e}")))
                };
                cmd.stdin(io(slave)?).stdout(io(slave)?).stderr(io(slave)?);
                if let Some(t) = &spec.tty {
                    cmd.env("TERM", &t.term);
                }
            }
            None => {
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::from(log))
                    .stderr(Stdio::from(log_err));
            }
        }
        if !req.env.contains_key("PORT") {
            cmd.env("PORT", req.port.to_string());
        }
        if !req.env.contains_key("HOME") {
            cmd.env("HOME", &slug_dir);
        }
        if !req.env.contains_key("TMPDIR") {
            cmd.env("TMPDIR", &tmp);
        }
        if !req.env.contains_key("PATH") {
            cmd.env("PATH", DEFAULT_PATH);
        }
        cmd.env(START_ID_VAR, &start_id);
        if let Some(uid) = uid {
            // std drops supplementary groups when it changes uid as root.
            cmd.uid(uid).gid(uid);
        }
        sys::new_session_on_spawn(&mut cmd);
        if pty.is_some() {
            sys::controlling_tty_on_spawn(&mut cmd);
        }

        let spawned = cmd.spawn();
        // The child has its copies of the terminal: ours would keep it
        // open after the child is gone.
        drop(cmd);
        let pty = pty.map(|(master, _slave)| master);
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                remove_logged(&pending_path);
                return Err(start_err(format!(
                    "cannot run /bin/sh in {}: {e}",
                    slug_dir.display()
                )));
            }
        };
        let pid = child.id();

        if let (Ok(cg), Some(dir)) = (&self.cgroups, &cgroup_dir) {
            if let Err(why) = cg.add(dir, pid) {
                Self::abort_child(&mut child);
                return Err(start_err(why));
            }
        }
        let Some(stat) = read_proc_stat(pid) else {
            Self::abort_child(&mut child);
            remove_logged(&pending_path);
            return Err(start_err(format!(
                "cannot read /proc/{pid}/stat right after start"
            )));
        };
        let rec = ProcRecord {
            instance: instance.to_string(),
            app: spec.app.clone(),
            release: spec.release,
            pid,
            start_ticks: stat.start_ticks,
            port: req.port,
            started_at: unix_now(),
            log_path,
            start_id,
            container: None,
        };
        if let Err(e) = self.write_record(&rec) {
            // Unrecorded, it could never be re-adopted: do not leave it running.
            Self::abort_child(&mut child);
            remove_logged(&pending_path);
            return Err(e);
        }
        remove_logged(&pending_path);
        self.children().insert(pid, (child, stat.start_ticks));
        if let Some(master) = pty {
            self.terminals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((rec.clone(), Terminal::Pty(master)));
        }
        tracing::debug!(instance, pid, "started");
        Ok(rec)
    }

    fn poll(&self, rec: &ProcRecord) -> Option<Exit> {
        {
            let mut children = self.children();
            if let Some((child, ticks)) = children.get_mut(&rec.pid) {
                if *ticks != rec.start_ticks {
                    // The record names an older process that had this pid.
                    return Some(Exit::Unknown);
                }
                let exit = match child.try_wait() {
                    Ok(None) => return None,
                    Ok(Some(status)) => match (status.code(), status.signal()) {
                        (Some(code), _) => Exit::Code(code),
                        (None, Some(sig)) => Exit::Signal(sig),
                        (None, None) => Exit::Unknown,
                    },
                    Err(e) => {
                        tracing::warn!(instance = %rec.instance, pid = rec.pid, error = %e, "cannot wait for process");
                        Exit::Unknown
                    }
                };
                children.remove(&rec.pid);
                return Some(exit);
            }
        }
        // Adopted: not a child we hold.
        match read_proc_stat(rec.pid) {
            Some(st) if st.start_ticks == rec.start_ticks => {
                if !st.is_zombie() {
                    return None;
                }
                // A zombie: if it happens to be our child (e.g. the worker
                // re-executed itself), reap it and learn how it ended.
                match sys::waitpid_nohang(rec.pid) {
                    Ok(Some(exit)) => Some(exit),
                    _ => Some(Exit::Unknown),
                }
            }
            _ => Some(Exit::Unknown),
        }
    }

    fn signal(&self, rec: &ProcRecord, sig: StopSignal) -> Result<(), RuntimeError> {
        let signo = match sig {
            StopSignal::Term => libc::SIGTERM,
            StopSignal::Kill => libc::SIGKILL,
        };
        signal_group(rec, signo)
    }

    fn notify(&self, rec: &ProcRecord, sig: &str, leader_only: bool) -> Result<(), RuntimeError> {
        let err = |source: std::io::Error| RuntimeError::Signal {
            instance: rec.instance.clone(),
            pid: rec.pid,
            source,
        };
        let signo = match sig {
            "HUP" => libc::SIGHUP,
            "USR1" => libc::SIGUSR1,
            "USR2" => libc::SIGUSR2,
            other => {
                return Err(err(std::io::Error::other(format!(
                    "{other} is not a signal zeroku sends"
                ))))
            }
        };
        // Never a recycled pid.
        match read_proc_stat(rec.pid) {
            Some(st) if st.start_ticks == rec.start_ticks => {}
            _ => return Ok(()),
        }
        let targets = if leader_only {
            vec![rec.pid]
        } else {
            procfs::group_members(rec.pid)
                .into_iter()
                .filter(|p| *p != rec.pid)
                .collect()
        };
        for pid in targets {
            match sys::kill_pid(pid, signo) {
                Err(e) if e.raw_os_error() != Some(libc::ESRCH) => return Err(err(e)),
                _ => {}
            }
        }
        Ok(())
    }

    fn hook(
        &self,
        rec: &ProcRecord,
        req: &StartRequest<'_>,
        command: &str,
    ) -> Result<(), RuntimeError> {
        let spec = req.spec;
        let err = |why: String| RuntimeError::Start {
            instance: rec.instance.clone(),
            why: format!("on_change hook: {why}"),
        };
        // Output to the instance's log, which is the app's file already.
        let log = OpenOptions::new()
            .append(true)
            .open(&rec.log_path)
            .map_err(|e| err(format!("cannot open {}: {e}", rec.log_path.display())))?;
        let log_err = log.try_clone().map_err(|e| err(e.to_string()))?;
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(script(command))
            .current_dir(req.slug_dir)
            .env_clear()
            .envs(&req.env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err));
        for (k, v) in [
            ("HOME", req.slug_dir.as_os_str()),
            (
                "TMPDIR",
                self.tmp_path(&rec.instance, spec.release).as_os_str(),
            ),
            ("PATH", std::ffi::OsStr::new(DEFAULT_PATH)),
        ] {
            if !req.env.contains_key(k) {
                cmd.env(k, v);
            }
        }
        if self.as_root {
            let uid = self.app_uid(req)?;
            cmd.uid(uid).gid(uid);
        }
        sys::new_session_on_spawn(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| err(format!("cannot run /bin/sh: {e}")))?;
        // In the instance's cgroup: its limits hold for the hook too.
        if let Ok(cg) = &self.cgroups {
            let dir = cg.dir(&key(&rec.instance, rec.release));
            if dir.is_dir() {
                if let Err(why) = cg.add(&dir, child.id()) {
                    Self::abort_child(&mut child);
                    return Err(err(why));
                }
            }
        }
        // Reaped by a thread of its own; a hook still running after a minute is killed.
        let instance = rec.instance.clone();
        std::thread::Builder::new()
            .name("on-change-hook".into())
            .spawn(move || {
                let deadline = std::time::Instant::now() + HOOK_TIMEOUT;
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => {
                            tracing::info!(instance.id = %instance, %status, "on_change hook ended");
                            return;
                        }
                        Ok(None) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        _ => {
                            tracing::warn!(instance.id = %instance, "on_change hook ran over a minute: killed");
                            let _ = sys::kill_group(child.id(), libc::SIGKILL);
                            let _ = child.wait();
                            return;
                        }
                    }
                }
            })
            .map_err(|e| err(format!("cannot start a thread: {e}")))?;
        Ok(())
    }

    fn kill_leftovers(&self, rec: &ProcRecord) {
        // The leader is gone. Its pid cannot be reused while its process
        // group still has members, so if no other process has that pid, a
        // group that answers signal 0 is still ours: kill what is left.
        if read_proc_stat(rec.pid).is_some_and(|st| st.start_ticks != rec.start_ticks) {
            return;
        }
        if sys::kill_group(rec.pid, 0).is_ok() {
            tracing::info!(instance.id = %rec.instance, proc.pid = rec.pid, "killing processes left in the group of an exited process");
            let _ = sys::kill_group(rec.pid, libc::SIGKILL);
        }
    }

    fn adopt(&self) -> Adopted {
        let entries = match std::fs::read_dir(&self.procs_dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %self.procs_dir.display(), error = %e, "cannot list process records");
                return Adopted::default();
            }
        };
        let mut adopted = Vec::new();
        let mut dead = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                // A temp file of an interrupted write, once it is stale.
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > Duration::from_secs(60));
                if stale && name.ends_with(".tmp") {
                    remove_logged(&path);
                }
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let rec: ProcRecord = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(rec) => rec,
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "deleting unreadable process record");
                    remove_logged(&path);
                    continue;
                }
            };
            if rec.pid == 0 && path == self.pending_path(&rec) {
                // The worker died while starting it.
                remove_logged(&path);
                match self.complete_pending(&rec) {
                    Some(found) => {
                        tracing::info!(instance = %found.instance, pid = found.pid, "found the process of an interrupted start");
                        adopted.push(found);
                    }
                    None => dead.push(rec),
                }
                continue;
            }
            let alive = read_proc_stat(rec.pid)
                .is_some_and(|st| st.start_ticks == rec.start_ticks && !st.is_zombie());
            if alive && path == self.record_path(&rec) {
                adopted.push(rec);
            } else {
                tracing::info!(instance = %rec.instance, pid = rec.pid, "process of record is gone");
                remove_logged(&path);
                dead.push(rec);
            }
        }
        for rec in &dead {
            self.cleanup_instance_dirs(rec);
        }
        adopted
            .sort_by(|a, b| (&a.instance, a.release, a.pid).cmp(&(&b.instance, b.release, b.pid)));
        Adopted {
            running: adopted,
            // A start that never ran has nothing to report.
            exited: dead.into_iter().filter(|r| r.pid != 0).collect(),
        }
    }

    fn forget(&self, rec: &ProcRecord) {
        {
            let mut children = self.children();
            if let Some((child, ticks)) = children.get_mut(&rec.pid) {
                // Only this record's process (not a newer one with its pid);
                // reap it if it has exited, so no zombie is left behind.
                if *ticks == rec.start_ticks {
                    let _ = child.try_wait();
                    children.remove(&rec.pid);
                }
            }
        }
        if valid_instance(&rec.instance) {
            remove_logged(&self.record_path(rec));
        }
        self.cleanup_instance_dirs(rec);
    }

    fn limits_unavailable(&self) -> Option<String> {
        self.cgroups.as_ref().err().cloned()
    }

    fn connected(&self, rec: &ProcRecord, endpoints: &[&str]) -> Option<bool> {
        // Handlers reach frontends (or this node's relays) over ipc://: ask
        // the kernel which socket paths the process group's own sockets are
        // connected to, nothing about the host's other sockets.
        let paths = unixdiag::connected_paths(&procfs::group_members(rec.pid)).ok()?;
        Some(endpoints.iter().all(|ep| match ep.strip_prefix("ipc://") {
            Some(path) => paths.contains(std::path::Path::new(path)),
            None => true, // not ipc: nothing to look for
        }))
    }

    fn take_terminals(&self) -> Vec<(ProcRecord, Terminal)> {
        std::mem::take(&mut *self.terminals.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn accepting(&self, rec: &ProcRecord, health_path: Option<&str>) -> bool {
        crate::runtime::port_accepts(rec.port, health_path)
    }
}

/// Whether the worker runs as root (and so runs apps under their own uids).
pub fn is_root() -> bool {
    sys::geteuid() == 0
}

/// `<instance>.v<release>`: names the log file, tmp dir and cgroup.
/// Sets the window size of a terminal (for [`crate::terminal`]).
pub fn set_winsize(fd: &impl std::os::fd::AsRawFd, cols: u16, rows: u16) -> io::Result<()> {
    sys::set_winsize(fd, cols, rows)
}

/// A terminal's master side, non-blocking and registered with tokio (for
/// [`crate::terminal`]).
pub fn async_terminal(
    master: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::fs::File>> {
    sys::set_nonblocking(&master)?;
    sys::async_fd(std::fs::File::from(master))
}

fn key(instance: &str, release: u32) -> String {
    format!("{instance}.v{release}")
}

/// Instance ids become file names: no separators, no leading dot.
fn valid_instance(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The `sh -c` script: source the slug's `.profile.d/*.sh` (sorted by the
/// shell's globbing, skipping unreadable ones, as Heroku does), then run the
/// Procfile command — through `exec` when that cannot change its meaning, so
/// the recorded pid is the app itself. The Docker runtime runs the same
/// script in `/app`.
pub(crate) fn script(command: &str) -> String {
    let run = if exec_safe(command) {
        format!("exec {}", command.trim_start())
    } else {
        command.to_string()
    };
    format!(
        "for __zeroku_f in .profile.d/*.sh; do \
         if [ -r \"$__zeroku_f\" ]; then . \"./$__zeroku_f\"; fi; \
         done; unset __zeroku_f\n{run}\n"
    )
}

/// Whether `exec COMMAND` runs the same thing as `COMMAND`: a single simple
/// command (no lists, pipes, groups, redirections or newlines), not starting
/// with an assignment, a reserved word or a builtin that has no executable.
pub(crate) fn exec_safe(command: &str) -> bool {
    const NOT_EXECUTABLE: &[&str] = &[
        "!", "{", "}", "[[", "case", "do", "done", "elif", "else", "esac", "fi", "for", "function",
        "if", "in", "select", "then", "time", "until", "while", "coproc", ".", ":", "source",
        "alias", "break", "cd", "continue", "eval", "exec", "exit", "export", "local", "read",
        "readonly", "return", "set", "shift", "trap", "ulimit", "umask", "unset", "wait",
    ];
    let cmd = command.trim();
    if cmd.is_empty()
        || cmd.contains(|c| {
            matches!(
                c,
                ';' | '&' | '|' | '\n' | '\r' | '(' | ')' | '{' | '}' | '<' | '>' | '`'
            )
        })
    {
        return false;
    }
    let Some(first) = cmd.split_ascii_whitespace().next() else {
        return false;
    };
    !first.contains('=') && !first.starts_with('#') && !NOT_EXECUTABLE.contains(&first)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn io_err(context: String, source: io::Error) -> RuntimeError {
    RuntimeError::Io { context, source }
}

fn remove_logged(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete file");
        }
    }
}

/// Apps run as another uid and must traverse every ancestor of their tmp dir.
fn warn_untraversable(dir: &Path) {
    let Ok(abs) = std::path::absolute(dir) else {
        return;
    };
    for ancestor in abs.ancestors().skip(1) {
        if let Ok(meta) = std::fs::metadata(ancestor) {
            if meta.permissions().mode() & 0o001 == 0 {
                tracing::warn!(
                    dir = %ancestor.display(),
                    "directory is not searchable by other users: apps cannot reach their $TMPDIR below it"
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_only_for_simple_commands() {
        assert!(exec_safe("bundle exec puma -p $PORT"));
        assert!(exec_safe("  ./bin/web --port \"$PORT\""));
        assert!(exec_safe("sleep 30"));
        assert!(!exec_safe("a && b"));
        assert!(!exec_safe("echo hello; sleep 30"));
        assert!(!exec_safe("a | b"));
        assert!(!exec_safe("a > log"));
        assert!(!exec_safe("(a)"));
        assert!(!exec_safe("FOO=1 bar"));
        assert!(!exec_safe("cd sub"));
        assert!(!exec_safe("if true"));
        assert!(!exec_safe("a\nb"));
        assert!(!exec_safe("   "));
    }

    #[test]
    fn script_sources_profile_then_runs_command() {
        let s = script("a && b");
        assert!(s.contains(".profile.d/*.sh"));
        assert!(s.ends_with("\na && b\n"));
        assert!(script("web --x").ends_with("\nexec web --x\n"));
    }

    #[test]
    fn instance_ids_are_file_names() {
        assert!(valid_instance("app.web.1"));
        assert!(valid_instance("my-app.worker_x.12"));
        assert!(!valid_instance(""));
        assert!(!valid_instance(".."));
        assert!(!valid_instance("a/b"));
        assert!(!valid_instance("a b"));
    }
}
