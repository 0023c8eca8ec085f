//! Tests of the native runtime and the log tailer with real processes in
//! temporary directories. They must not depend on timing beyond deadline
//! loops, nor leave processes behind (every test kills what it starts).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use zeroku_conf::{InstanceSpec, Limits, SlugRef};
use zeroku_worker::logs::{LogTailer, MAX_LINE, MAX_READ};
use zeroku_worker::native::{read_proc_stat, NativeRuntime};
use zeroku_worker::runtime::{Exit, ProcRecord, Runtime, StartRequest, StopSignal};

const UID_BASE: u32 = 20000;
const DEADLINE: Duration = Duration::from_secs(10);

fn spec(id: &str, app_seq: u32, command: &str) -> InstanceSpec {
    let app = id.split('.').next().unwrap_or(id).to_string();
    InstanceSpec {
        id: id.to_string(),
        app,
        app_seq,
        proc_type: "web".into(),
        index: 1,
        release: 3,
        command: command.to_string(),
        env: BTreeMap::new(),
        slug: SlugRef {
            sha256: "0".repeat(64),
            size: 0,
        },
        limits: Limits::default(),
        stack: None,
        tty: None,
        handler: Vec::new(),
        restart: 0,
        stop_when_lost_ms: None,
        addon: None,
        requires: Vec::new(),
    }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A data dir and a world-readable slug dir with `.profile.d/a.sh`.
struct Fixture {
    data: TempDir,
    slug: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let data = tempfile::tempdir().expect("data dir");
        // Apps running as another uid must reach <data>/tmp/<instance>.
        chmod(data.path(), 0o711);
        let slug = tempfile::tempdir().expect("slug dir");
        chmod(slug.path(), 0o755);
        let profile = slug.path().join(".profile.d");
        std::fs::create_dir(&profile).expect("profile.d");
        chmod(&profile, 0o755);
        std::fs::write(profile.join("a.sh"), "export GREETING=from-profile\n").expect("a.sh");
        std::fs::write(profile.join("b.sh"), "export GREETING=\"$GREETING-b\"\n").expect("b.sh");
        chmod(&profile.join("a.sh"), 0o644);
        chmod(&profile.join("b.sh"), 0o644);
        Fixture { data, slug }
    }

    fn runtime(&self) -> NativeRuntime {
        NativeRuntime::new(self.data.path(), UID_BASE).expect("runtime")
    }

    fn start(&self, rt: &NativeRuntime, spec: &InstanceSpec) -> ProcRecord {
        let mut env = BTreeMap::new();
        env.insert("PORT".to_string(), "5123".to_string());
        env.insert("APP_VAR".to_string(), "v a l".to_string());
        let req = StartRequest {
            spec,
            slug_dir: self.slug.path(),
            port: 5123,
            env,
        };
        rt.start(&req).expect("start")
    }
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_exit(rt: &NativeRuntime, rec: &ProcRecord) -> Exit {
    wait_for("exit", || rt.poll(rec))
}

fn log_text(rec: &ProcRecord) -> String {
    std::fs::read_to_string(&rec.log_path).unwrap_or_default()
}

fn wait_log(rec: &ProcRecord, needle: &str) -> String {
    wait_for(&format!("{needle:?} in the log"), || {
        let text = log_text(rec);
        text.contains(needle).then_some(text)
    })
}

/// Alive: exists and is not a zombie.
fn alive(pid: u32) -> bool {
    read_proc_stat(pid).is_some_and(|st| !st.is_zombie())
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// Kills whatever a failed test left running.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0)])
                .status();
        }
    }
}

#[test]
fn start_logs_env_session_then_readopt_and_stop() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let spec = spec(
        "app.web.1",
        1,
        "echo hello; echo err >&2; \
         echo \"greet=$GREETING port=$PORT var=$APP_VAR home=$HOME tmp=$TMPDIR path=$PATH\"; \
         sleep 30",
    );
    let rec = fx.start(&rt, &spec);
    let _guard = KillOnDrop(rec.pid);
    assert_eq!(rec.instance, "app.web.1");
    assert_eq!(rec.app, "app");
    assert_eq!((rec.release, rec.port), (3, 5123));
    let name = rec
        .log_path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        rec.log_path.parent(),
        Some(fx.data.path().join("logs").as_path())
    );
    assert!(
        name.starts_with("app.web.1.v3.") && name.ends_with(".log"),
        "{name}"
    );

    let text = wait_log(&rec, "greet=");
    assert!(text.contains("hello\n"), "{text}");
    assert!(text.contains("err\n"), "{text}");
    let tmp = fx.data.path().join("tmp/app.web.1.v3");
    let expected = format!(
        "greet=from-profile-b port=5123 var=v a l home={} tmp={} path=/usr/local/bin:/usr/bin:/bin\n",
        fx.slug.path().display(),
        tmp.display()
    );
    assert!(text.contains(&expected), "{text}");
    assert!(tmp.is_dir());

    // A new session whose leader (and process group leader) is the child.
    let st = read_proc_stat(rec.pid).expect("stat");
    assert_eq!(st.session, rec.pid);
    assert_eq!(st.pgrp, rec.pid);
    assert_eq!(st.start_ticks, rec.start_ticks);
    assert_eq!(rt.poll(&rec), None);
    let record_file = fx
        .data
        .path()
        .join(format!("procs/app.web.1.v3.{}.json", rec.pid));
    assert!(record_file.is_file());

    // The worker "restarts".
    drop(rt);
    let rt = fx.runtime();
    let adopted = rt.adopt();
    assert_eq!(adopted.running, vec![rec.clone()]);
    assert!(adopted.exited.is_empty());
    assert_eq!(rt.poll(&rec), None);
    rt.signal(&rec, StopSignal::Term).expect("term");
    let exit = wait_exit(&rt, &rec);
    // Not the new runtime's child: Unknown, unless this (test) process is
    // its parent and it could be reaped with its real status.
    assert!(matches!(exit, Exit::Unknown | Exit::Signal(15)), "{exit:?}");
    assert!(!alive(rec.pid));
    // Signalling a gone process is fine.
    rt.signal(&rec, StopSignal::Kill).expect("kill after exit");

    rt.forget(&rec);
    assert!(!record_file.exists());
    assert!(!tmp.exists());
    assert!(rt.adopt().running.is_empty());
}

#[test]
fn a_start_interrupted_before_its_record_is_found_by_its_start_id() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    // What a worker killed between spawn and writing the record leaves:
    // a pending record, and the process (in its own session) with the id.
    let mut pending = fx.start(&rt, &spec("app.web.9", 1, "sleep 1"));
    let _ = wait_exit(&rt, &pending);
    rt.forget(&pending);
    let mut child = std::process::Command::new("setsid")
        .args(["sh", "-c", "sleep 30; true"])
        .env("ZEROKU_START_ID", "test-start-1")
        .spawn()
        .expect("setsid");
    let _guard = KillOnDrop(child.id());
    pending.pid = 0;
    pending.start_ticks = 0;
    pending.start_id = "test-start-1".into();
    let path = fx
        .data
        .path()
        .join("procs/app.web.9.v3.pending-test-start-1.json");
    std::fs::write(&path, serde_json::to_vec(&pending).unwrap()).unwrap();
    wait_for("the session leader to exist", || {
        read_proc_stat(child.id())
            .filter(|s| s.session == child.id())
            .map(|_| ())
    });
    drop(rt);
    let rt = fx.runtime();
    let found = rt.adopt();
    assert_eq!(found.running.len(), 1, "{found:?}");
    assert_eq!(found.running[0].pid, child.id());
    assert_eq!(found.running[0].instance, "app.web.9");
    assert!(!path.exists());
    rt.signal(&found.running[0], StopSignal::Kill).unwrap();
    let _ = child.wait();
    rt.forget(&found.running[0]);
    // A pending record whose process never ran is simply dropped.
    let never = ProcRecord {
        start_id: "never-ran".into(),
        container: None,
        ..pending
    };
    let path = fx
        .data
        .path()
        .join("procs/app.web.9.v3.pending-never-ran.json");
    std::fs::write(&path, serde_json::to_vec(&never).unwrap()).unwrap();
    let found = rt.adopt();
    assert!(
        found.running.is_empty() && found.exited.is_empty(),
        "{found:?}"
    );
    assert!(!path.exists());
}

#[test]
fn recycled_pid_and_corrupt_records_are_not_adopted() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(&rt, &spec("app.worker.1", 1, "sleep 30"));
    let _guard = KillOnDrop(rec.pid);
    drop(rt);

    let procs = fx.data.path().join("procs");
    let record_file = procs.join(format!("app.worker.1.v3.{}.json", rec.pid));
    let mut recycled = rec.clone();
    recycled.start_ticks += 1;
    std::fs::write(&record_file, serde_json::to_vec(&recycled).expect("json")).expect("edit");
    let corrupt = procs.join("junk.web.1.v1.42.json");
    std::fs::write(&corrupt, "{ not json").expect("corrupt");

    let rt = fx.runtime();
    let found = rt.adopt();
    assert!(found.running.is_empty());
    assert_eq!(
        found.exited,
        vec![recycled.clone()],
        "reported as gone, for its log"
    );
    assert!(!record_file.exists());
    assert!(!corrupt.exists());

    // The recycled record never signals the process that holds its pid.
    rt.signal(&recycled, StopSignal::Kill).expect("no-op");
    std::thread::sleep(Duration::from_millis(100));
    assert!(alive(rec.pid));
    assert_eq!(rt.poll(&recycled), Some(Exit::Unknown));

    rt.signal(&rec, StopSignal::Kill).expect("kill");
    wait_for("the process to die", || (!alive(rec.pid)).then_some(()));
}

#[test]
fn exit_code_of_a_compound_command() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(
        &rt,
        &spec("app.release.1", 1, "true && echo before && exit 3"),
    );
    assert_eq!(wait_exit(&rt, &rec), Exit::Code(3));
    assert!(log_text(&rec).contains("before\n"));
    // Reaped once; polling again still reports an ended process.
    assert!(rt.poll(&rec).is_some());
    rt.forget(&rec);
    assert!(!fx
        .data
        .path()
        .join(format!("procs/app.release.1.v3.{}.json", rec.pid))
        .exists());
}

#[test]
fn simple_command_is_execed() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(&rt, &spec("app.web.2", 1, "sleep 30"));
    let _guard = KillOnDrop(rec.pid);
    let comm = wait_for("exec of sleep", || {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", rec.pid)).ok()?;
        (comm.trim() == "sleep").then_some(comm)
    });
    assert_eq!(comm.trim(), "sleep");
    rt.signal(&rec, StopSignal::Term).expect("term");
    assert_eq!(wait_exit(&rt, &rec), Exit::Signal(15));
    rt.forget(&rec);
}

#[test]
fn term_ignored_then_kill_reaches_the_group() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(
        &rt,
        &spec(
            "app.stubborn.1",
            1,
            "trap '' TERM; sleep 300 & echo \"child=$!\"; sleep 30",
        ),
    );
    let _guard = KillOnDrop(rec.pid);
    let text = wait_log(&rec, "child=");
    let child: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("child="))
        .and_then(|p| p.trim().parse().ok())
        .expect("child pid");
    assert_eq!(read_proc_stat(child).map(|s| s.pgrp), Some(rec.pid));

    rt.signal(&rec, StopSignal::Term).expect("term");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rt.poll(&rec), None, "TERM is ignored");
    assert!(alive(child));

    rt.signal(&rec, StopSignal::Kill).expect("kill");
    assert_eq!(wait_exit(&rt, &rec), Exit::Signal(9));
    wait_for("the background child to die", || {
        (!alive(child)).then_some(())
    });
    rt.forget(&rec);
}

#[test]
fn term_reaches_the_children_of_sh() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(
        &rt,
        &spec("app.group.1", 1, "sleep 300 & echo \"child=$!\"; wait"),
    );
    let _guard = KillOnDrop(rec.pid);
    let text = wait_log(&rec, "child=");
    let child: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("child="))
        .and_then(|p| p.trim().parse().ok())
        .expect("child pid");
    let _child_guard = KillOnDrop(child);
    assert!(alive(child));
    rt.signal(&rec, StopSignal::Term).expect("term");
    assert_eq!(wait_exit(&rt, &rec), Exit::Signal(15));
    wait_for("the background child to die", || {
        (!alive(child)).then_some(())
    });
    rt.forget(&rec);
}

#[test]
fn children_left_behind_by_an_exited_process_are_killed() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(
        &rt,
        &spec("app.orphans.1", 1, "sleep 300 & echo \"child=$!\"; exit 1"),
    );
    let _guard = KillOnDrop(rec.pid);
    let text = wait_log(&rec, "child=");
    let child: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("child="))
        .and_then(|p| p.trim().parse().ok())
        .expect("child pid");
    let _child_guard = KillOnDrop(child);
    assert_eq!(wait_exit(&rt, &rec), Exit::Code(1));
    assert!(alive(child), "the child outlives its shell");
    rt.kill_leftovers(&rec);
    wait_for("the left-behind child to die", || {
        (!alive(child)).then_some(())
    });
    // Nothing left: a second call signals nobody.
    rt.kill_leftovers(&rec);
    rt.forget(&rec);
}

#[test]
fn runs_as_the_app_uid_when_root() {
    if !running_as_root() {
        eprintln!("skipped: not running as root");
        return;
    }
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(
        &rt,
        &spec(
            "other.web.1",
            7,
            "echo written > \"$TMPDIR/probe\" && echo \"read=$(cat \"$TMPDIR/probe\")\"; sleep 30",
        ),
    );
    let _guard = KillOnDrop(rec.pid);
    let text = wait_log(&rec, "read=");
    assert!(text.contains("read=written\n"), "{text}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", rec.pid)).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let uid = (UID_BASE + 7).to_string();
    assert_eq!(field("Uid:"), vec![uid.clone(); 4]);
    assert_eq!(field("Gid:"), vec![uid; 4]);
    assert!(field("Groups:").is_empty(), "{status}");
    use std::os::unix::fs::MetadataExt;
    let log_meta = std::fs::metadata(&rec.log_path).expect("log");
    assert_eq!(
        (log_meta.uid(), log_meta.gid()),
        (UID_BASE + 7, UID_BASE + 7)
    );
    let tmp_meta = std::fs::metadata(fx.data.path().join("tmp/other.web.1.v3")).expect("tmp");
    assert_eq!(tmp_meta.uid(), UID_BASE + 7);
    assert_eq!(tmp_meta.mode() & 0o777, 0o700);
    rt.signal(&rec, StopSignal::Kill).expect("kill");
    assert_eq!(wait_exit(&rt, &rec), Exit::Signal(9));
    rt.forget(&rec);
}

#[test]
fn start_fails_cleanly_for_a_missing_slug() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let spec = spec("app.web.9", 1, "true");
    let missing = fx.slug.path().join("nope");
    let req = StartRequest {
        spec: &spec,
        slug_dir: &missing,
        port: 1,
        env: BTreeMap::new(),
    };
    let err = rt.start(&req).expect_err("no slug");
    let msg = err.to_string();
    assert!(msg.contains("app.web.9") && msg.contains("nope"), "{msg}");
}

#[test]
fn limits_unavailable_names_the_reason() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() && running_as_root() {
        eprintln!("cgroup v2 host: {:?}", rt.limits_unavailable());
        return;
    }
    let why = rt
        .limits_unavailable()
        .expect("limits cannot be enforced here");
    assert!(!why.contains('\n'));
    assert!(why.contains("cgroup") || why.contains("root"), "{why}");
}

// ---- LogTailer ----

fn log_rec(dir: &Path) -> ProcRecord {
    ProcRecord {
        instance: "app.web.1".into(),
        app: "app".into(),
        release: 1,
        pid: 4242,
        start_ticks: 1,
        port: 5000,
        started_at: 0,
        log_path: dir.join("app.web.1.v1.log"),
        start_id: String::new(),
        container: None,
    }
}

fn append(path: &PathBuf, data: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(data).expect("append");
}

#[test]
fn tailer_lines_partials_restart_and_truncation() {
    let dir = tempfile::tempdir().expect("dir");
    let state = dir.path().join("state");
    let rec = log_rec(dir.path());
    let mut t = LogTailer::new(&state);
    assert!(t.read_new(&rec).is_empty(), "no file yet");

    append(&rec.log_path, b"one\r\ntw");
    assert_eq!(t.read_new(&rec), vec!["one"]);
    assert!(t.read_new(&rec).is_empty(), "partial line waits");
    append(&rec.log_path, b"o\nthree\n");
    assert_eq!(t.read_new(&rec), vec!["two", "three"]);

    // A new tailer (worker restart) continues where the old one stopped.
    drop(t);
    let mut t = LogTailer::new(&state);
    append(&rec.log_path, b"four\n\xffbad\n");
    assert_eq!(t.read_new(&rec), vec!["four", "\u{fffd}bad"]);
    assert!(t.read_new(&rec).is_empty());

    // Truncated: start again from the beginning.
    std::fs::write(&rec.log_path, b"new\n").expect("truncate");
    assert_eq!(t.read_new(&rec), vec!["new"]);

    // A final read returns the unterminated last line.
    append(&rec.log_path, b"last words");
    assert!(t.read_new(&rec).is_empty());
    assert_eq!(t.read_final(&rec), vec!["last words"]);
    assert!(t.read_final(&rec).is_empty());

    t.remove(&rec);
    assert!(!rec.log_path.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&state)
        .expect("state")
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn tailer_caps_lines_and_reads() {
    let dir = tempfile::tempdir().expect("dir");
    let rec = log_rec(dir.path());
    let mut t = LogTailer::new(&dir.path().join("state"));

    // A partial line longer than the cap is emitted without its newline.
    append(&rec.log_path, &vec![b'x'; MAX_LINE + 100]);
    let lines = t.read_new(&rec);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].len(), MAX_LINE);
    append(&rec.log_path, b"\n");
    assert_eq!(t.read_new(&rec), vec!["x".repeat(100)]);

    // A large backlog comes in bounded chunks, nothing lost or repeated.
    let line = "y".repeat(99);
    let count = 3 * MAX_READ / 100;
    append(&rec.log_path, format!("{line}\n").repeat(count).as_bytes());
    let mut total = 0;
    let mut calls = 0;
    loop {
        let lines = t.read_new(&rec);
        if lines.is_empty() {
            break;
        }
        assert!(lines.iter().map(|l| l.len() + 1).sum::<usize>() <= MAX_READ);
        assert!(lines.iter().all(|l| *l == line));
        total += lines.len();
        calls += 1;
    }
    assert_eq!(total, count);
    assert!(calls >= 3, "{calls}");
}

#[test]
fn tailer_reads_a_real_process_log() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let rec = fx.start(
        &rt,
        &spec("app.tail.1", 1, "echo a; echo b >&2; printf 'no newline'"),
    );
    let mut t = LogTailer::new(&fx.data.path().join("logstate"));
    assert_eq!(wait_exit(&rt, &rec), Exit::Code(0));
    let mut lines = t.read_new(&rec);
    lines.extend(t.read_final(&rec));
    assert_eq!(lines, vec!["a", "b", "no newline"]);
    t.remove(&rec);
    rt.forget(&rec);
    assert!(!rec.log_path.exists());
}

#[test]
fn connected_sees_the_unix_socket_connections_of_the_process_group() {
    let fx = Fixture::new();
    let rt = fx.runtime();
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("send");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("listen");
    // The app runs under its own uid: let it reach the socket.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
    listener.set_nonblocking(true).expect("nonblocking");
    let other = dir.path().join("other");
    let _other = std::os::unix::net::UnixListener::bind(&other).expect("listen");
    // A child of sh holds the connection (as a handler under a wrapper would).
    let cmd = format!(
        "python3 -c 'import socket, time; s = socket.socket(socket.AF_UNIX); s.connect(\"{}\"); time.sleep(30)'; true",
        path.display()
    );
    let rec = fx.start(&rt, &spec("app.handler.1", 1, &cmd));
    let _guard = KillOnDrop(rec.pid);
    let ep = format!("ipc://{}", path.display());
    let not = format!("ipc://{}", other.display());
    let mut accepted = Vec::new();
    wait_for("the connection", || {
        // The kernel shows a connection once it is accepted (libzmq accepts at once).
        if let Ok((s, _)) = listener.accept() {
            accepted.push(s);
        }
        (rt.connected(&rec, &[&ep]) == Some(true)).then_some(())
    });
    assert_eq!(rt.connected(&rec, &[&ep, &not]), Some(false));
    assert_eq!(rt.connected(&rec, &[]), Some(true));
    rt.signal(&rec, StopSignal::Kill).expect("kill");
    wait_exit(&rt, &rec);
    rt.forget(&rec);
}
