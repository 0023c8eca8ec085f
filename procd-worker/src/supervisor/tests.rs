//! Supervisor policy against a test double of the runtime, with fake time.

use super::*;
use crate::runtime::{Adopted, Exit, RuntimeError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use zeroku_conf::{Limits, SlugRef};

#[derive(Default)]
struct FakeState {
    next_pid: u32,
    running: HashMap<u32, Option<Exit>>,
    /// Pids that exit as soon as they are polled.
    crash_release: HashSet<u32>,
    signals: Vec<(u32, StopSignal)>,
    /// `notify` and `hook` calls: (pid, signal or `hook:` command, env).
    notified: Vec<(u32, String, BTreeMap<String, String>)>,
    persisted: Vec<ProcRecord>,
    started: Vec<(String, u32)>,
    /// `accepting` answers false until `poll` was called this many times.
    bind_after: Option<u32>,
    polls: u32,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Runtime for Fake {
    fn start(&self, req: &StartRequest<'_>) -> Result<ProcRecord, RuntimeError> {
        let mut s = self.0.lock().unwrap();
        s.next_pid += 1;
        let pid = 1000 + s.next_pid;
        let crash = s.crash_release.contains(&req.spec.release);
        s.running.insert(pid, crash.then_some(Exit::Code(1)));
        s.started.push((req.spec.id.clone(), req.spec.release));
        let rec = ProcRecord {
            instance: req.spec.id.clone(),
            app: req.spec.app.clone(),
            release: req.spec.release,
            pid,
            start_ticks: pid as u64,
            port: req.port,
            started_at: 0,
            log_path: PathBuf::from("/dev/null"),
            start_id: String::new(),
            container: None,
        };
        s.persisted.push(rec.clone());
        Ok(rec)
    }
    fn poll(&self, rec: &ProcRecord) -> Option<Exit> {
        let mut s = self.0.lock().unwrap();
        s.polls += 1;
        s.running
            .get(&rec.pid)
            .cloned()
            .unwrap_or(Some(Exit::Unknown))
    }
    fn signal(&self, rec: &ProcRecord, sig: StopSignal) -> Result<(), RuntimeError> {
        let mut s = self.0.lock().unwrap();
        s.signals.push((rec.pid, sig));
        // This double's processes ignore SIGTERM unless release is even.
        if sig == StopSignal::Kill || rec.release.is_multiple_of(2) {
            s.running.insert(
                rec.pid,
                Some(Exit::Signal(if sig == StopSignal::Kill { 9 } else { 15 })),
            );
        }
        Ok(())
    }
    fn notify(&self, rec: &ProcRecord, sig: &str, _leader_only: bool) -> Result<(), RuntimeError> {
        let mut s = self.0.lock().unwrap();
        s.notified.push((rec.pid, sig.to_string(), BTreeMap::new()));
        Ok(())
    }
    fn hook(
        &self,
        rec: &ProcRecord,
        req: &StartRequest<'_>,
        command: &str,
    ) -> Result<(), RuntimeError> {
        let mut s = self.0.lock().unwrap();
        s.notified
            .push((rec.pid, format!("hook:{command}"), req.env.clone()));
        Ok(())
    }
    fn adopt(&self) -> Adopted {
        let mut s = self.0.lock().unwrap();
        let (running, exited): (Vec<_>, Vec<_>) = s
            .persisted
            .iter()
            .cloned()
            .partition(|r| matches!(s.running.get(&r.pid), Some(None)));
        s.persisted.retain(|r| !exited.contains(r));
        Adopted { running, exited }
    }
    fn kill_leftovers(&self, _rec: &ProcRecord) {}
    fn forget(&self, rec: &ProcRecord) {
        self.0
            .lock()
            .unwrap()
            .persisted
            .retain(|r| r.pid != rec.pid);
    }
    fn limits_unavailable(&self) -> Option<String> {
        Some("test double".into())
    }
    fn connected(&self, _rec: &ProcRecord, _endpoints: &[&str]) -> Option<bool> {
        None
    }
    fn accepting(&self, rec: &ProcRecord, _health_path: Option<&str>) -> bool {
        // Processes of release 7 and later never bind their port.
        rec.release < 7 && {
            let s = self.0.lock().unwrap();
            s.bind_after.is_none_or(|n| s.polls >= n)
        }
    }
}

impl Fake {
    fn started(&self) -> Vec<(String, u32)> {
        self.0.lock().unwrap().started.clone()
    }
    fn alive(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .running
            .values()
            .filter(|v| v.is_none())
            .count()
    }
}

fn cfg() -> WorkerConfig {
    WorkerConfig {
        node: "n1".into(),
        ready_after_ms: 1000,
        stop_grace_ms: 5000,
        backoff_initial_ms: 100,
        backoff_max_ms: 1600,
        backoff_reset_ms: 10_000,
        port_min: 41000,
        port_max: 41999,
        drain_ms: 0,
        boot_timeout_ms: 3000,
        ..WorkerConfig::default()
    }
}

fn spec(id: &str, release: u32) -> InstanceSpec {
    InstanceSpec {
        id: id.into(),
        app: "a".into(),
        app_seq: 1,
        proc_type: "worker".into(),
        index: 1,
        release,
        command: "run".into(),
        env: BTreeMap::new(),
        slug: SlugRef {
            sha256: format!("slug{release}"),
            size: 1,
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

fn list(generation: u64, specs: Vec<InstanceSpec>) -> NodeList {
    NodeList {
        node: "n1".into(),
        generation,
        instances: specs,
    }
}

/// Ticks every 50 ms for `ms`, providing slugs when asked.
/// Returns the other events.
fn run(s: &mut Supervisor<Fake>, t: &mut Instant, ms: u64) -> Vec<Event> {
    let mut other = Vec::new();
    for _ in 0..ms / 50 {
        *t += Duration::from_millis(50);
        s.tick(*t);
        for e in s.take_events() {
            match e {
                Event::NeedSlug(sha) => s.slug_ready(&sha, std::env::temp_dir()),
                e => other.push(e),
            }
        }
    }
    other
}

fn state_of(s: &Supervisor<Fake>, id: &str, release: u32) -> Option<InstanceState> {
    s.statuses()
        .into_iter()
        .find(|x| x.id == id && x.release == release)
        .map(|x| x.state)
}

#[test]
fn starts_then_up_after_ready_period() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1), spec("a.web.2", 1)]), t);
    run(&mut s, &mut t, 200);
    assert_eq!(fake.started().len(), 2);
    assert_eq!(state_of(&s, "a.web.1", 1), Some(InstanceState::Starting));
    run(&mut s, &mut t, 1000);
    assert_eq!(state_of(&s, "a.web.1", 1), Some(InstanceState::Up));
    let ports: HashSet<_> = s.statuses().iter().map(|x| x.port).collect();
    assert_eq!(ports.len(), 2, "each instance gets its own PORT");
}

#[test]
fn older_generations_are_ignored_and_same_list_is_idempotent() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    assert!(s.apply(list(5, vec![spec("a.web.1", 1)]), t));
    run(&mut s, &mut t, 200);
    assert!(!s.apply(list(4, vec![]), t));
    assert!(!s.apply(list(5, vec![spec("a.web.1", 1)]), t));
    run(&mut s, &mut t, 200);
    assert_eq!(fake.started().len(), 1);
    assert_eq!(fake.alive(), 1);
    let mut other = list(7, vec![]);
    other.node = "n2".into();
    assert!(!s.apply(other, t));
}

#[test]
fn new_release_starts_before_old_stops() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    s.apply(list(2, vec![spec("a.web.1", 4)]), t);
    run(&mut s, &mut t, 500);
    // the new one is starting, the old one still runs
    assert_eq!(fake.alive(), 2);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
    run(&mut s, &mut t, 1000);
    assert_eq!(fake.alive(), 1);
    assert_eq!(state_of(&s, "a.web.1", 4), Some(InstanceState::Up));
    assert_eq!(state_of(&s, "a.web.1", 2), None);
}

#[test]
fn removed_instance_gets_term_then_kill_after_grace() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    // odd release: the double ignores SIGTERM
    s.apply(list(1, vec![spec("a.web.1", 1)]), t);
    run(&mut s, &mut t, 1200);
    s.apply(list(2, vec![]), t);
    run(&mut s, &mut t, 1000);
    assert_eq!(state_of(&s, "a.web.1", 1), Some(InstanceState::Stopping));
    assert_eq!(fake.alive(), 1);
    run(&mut s, &mut t, 4500);
    assert_eq!(fake.alive(), 0);
    let sigs: Vec<_> = fake.0.lock().unwrap().signals.iter().map(|x| x.1).collect();
    assert_eq!(sigs, vec![StopSignal::Term, StopSignal::Kill]);
    assert!(s.statuses().is_empty());
}

#[test]
fn crash_loop_backs_off_and_is_marked_crashed_then_fixed_release_recovers() {
    let fake = Fake::default();
    fake.0.lock().unwrap().crash_release.insert(1);
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1)]), t);
    let mut starts_at = Vec::new();
    let t0 = t;
    for _ in 0..400 {
        let before = fake.started().len();
        run(&mut s, &mut t, 50);
        if fake.started().len() > before {
            starts_at.push(t.duration_since(t0).as_millis() as u64);
        }
    }
    let gaps: Vec<u64> = starts_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 6, "{starts_at:?}");
    // delays grow (100, 200, 400, 800, 1600, then capped)
    assert!(
        gaps[0] < gaps[1] && gaps[1] < gaps[2] && gaps[2] < gaps[3],
        "{gaps:?}"
    );
    assert!(gaps.iter().all(|g| *g <= 1600 + 100), "{gaps:?}");
    assert_eq!(state_of(&s, "a.web.1", 1), Some(InstanceState::Crashed));
    let st = s.statuses();
    assert!(st[0].restarts >= 6);
    assert_eq!(st[0].last_exit.as_deref(), Some("exited with status 1"));
    // a fixed release replaces it
    s.apply(list(2, vec![spec("a.web.1", 2)]), t);
    run(&mut s, &mut t, 1500);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
    assert_eq!(state_of(&s, "a.web.1", 1), None);
}

#[test]
fn restart_readopts_running_processes_and_starts_nothing_twice() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1), spec("a.web.2", 1)]), t);
    run(&mut s, &mut t, 1200);
    let pids: HashSet<_> = s.statuses().iter().map(|x| x.pid).collect();
    drop(s);
    // "worker restarted": a new supervisor over the same runtime state
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1), spec("a.web.2", 1)]), t);
    run(&mut s, &mut t, 500);
    assert_eq!(fake.started().len(), 2, "nothing started twice");
    let again: HashSet<_> = s.statuses().iter().map(|x| x.pid).collect();
    assert_eq!(pids, again);
    assert!(s.statuses().iter().all(|x| x.state == InstanceState::Up));
}

#[test]
fn adopted_processes_not_in_the_list_are_stopped() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    drop(s);
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(3, vec![]), t);
    run(&mut s, &mut t, 200);
    assert_eq!(fake.alive(), 0);
}

#[test]
fn slugs_are_requested_once() {
    let fake = Fake::default();
    let t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1), spec("a.web.2", 1)]), t);
    s.tick(t);
    s.tick(t);
    let needs: Vec<_> = s
        .take_events()
        .into_iter()
        .filter(|e| matches!(e, Event::NeedSlug(_)))
        .collect();
    assert_eq!(needs, vec![Event::NeedSlug("a/slug1".into())]);
    assert_eq!(fake.started().len(), 0);
}

#[test]
fn a_new_incarnation_starts_before_the_old_process_stops() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    let restarted = InstanceSpec {
        restart: 1,
        ..spec("a.web.1", 2)
    };
    s.apply(list(2, vec![restarted.clone()]), t);
    run(&mut s, &mut t, 500);
    assert_eq!(
        fake.alive(),
        2,
        "the old process stopped before the new was up"
    );
    let st = s.statuses();
    assert!(
        st.iter()
            .any(|x| x.restart == 0 && x.state == InstanceState::Up),
        "{st:?}"
    );
    run(&mut s, &mut t, 1000);
    assert_eq!(fake.alive(), 1);
    let st = s.statuses();
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!((st[0].restart, st[0].state), (1, InstanceState::Up));
    assert_eq!(fake.started().len(), 2);
    // The same list again changes nothing; a worker restarted now adopts the
    // new process and starts nothing.
    s.apply(list(2, vec![restarted.clone()]), t);
    drop(s);
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(3, vec![restarted]), t);
    run(&mut s, &mut t, 1500);
    assert_eq!((fake.alive(), fake.started().len()), (1, 2));
}

#[test]
fn a_worker_restarted_mid_restart_keeps_one_process_of_the_instance() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    let restarted = InstanceSpec {
        restart: 1,
        ..spec("a.web.1", 2)
    };
    s.apply(list(2, vec![restarted.clone()]), t);
    run(&mut s, &mut t, 200);
    assert_eq!(fake.alive(), 2);
    drop(s);
    // Both processes are adopted: one takes the slot, the other drains.
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(3, vec![restarted]), t);
    run(&mut s, &mut t, 1500);
    assert_eq!(fake.alive(), 1);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
}

#[test]
fn restart_mid_rollout_keeps_the_old_release_until_the_new_one_is_up() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    drop(s);
    // The worker comes back to a list that wants release 4 already.
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(2, vec![spec("a.web.1", 4)]), t);
    run(&mut s, &mut t, 500);
    assert_eq!(
        fake.alive(),
        2,
        "old release stopped before the new one was up"
    );
    run(&mut s, &mut t, 1000);
    assert_eq!(fake.alive(), 1);
    assert_eq!(state_of(&s, "a.web.1", 4), Some(InstanceState::Up));
}

#[test]
fn a_collected_slug_dir_is_fetched_again() {
    let fake = Fake::default();
    let t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.slug_ready("a/slug1", PathBuf::from("/nonexistent/zeroku-slug"));
    s.apply(list(1, vec![spec("a.web.1", 1)]), t);
    s.tick(t);
    assert!(s.take_events().contains(&Event::NeedSlug("a/slug1".into())));
    assert_eq!(fake.started().len(), 0);
}

#[test]
fn a_slug_that_cannot_be_fetched_is_shown_and_retried_with_back_off() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1)]), t);
    s.tick(t);
    assert_eq!(s.take_events(), vec![Event::NeedSlug("a/slug1".into())]);
    s.slug_failed("a/slug1", "404 no slug", t);
    let st = s.statuses();
    assert_eq!(
        st[0].last_exit.as_deref(),
        Some("cannot fetch slug: 404 no slug")
    );
    assert_eq!(st[0].state, InstanceState::Restarting);
    s.tick(t + Duration::from_millis(50));
    assert!(s.take_events().is_empty(), "retried before the back-off");
    t += Duration::from_millis(150);
    s.tick(t);
    assert_eq!(s.take_events(), vec![Event::NeedSlug("a/slug1".into())]);
}

#[test]
fn processes_that_exited_while_the_worker_was_away_are_reported_and_drained() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.web.1", 1)]), t);
    run(&mut s, &mut t, 1200);
    let pid = s.statuses()[0].pid.unwrap();
    drop(s);
    fake.0
        .lock()
        .unwrap()
        .running
        .insert(pid, Some(Exit::Code(1)));
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    let ev = s.take_events();
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Gone(r) if r.pid == pid)),
        "{ev:?}"
    );
    assert!(ev.iter().any(|e| matches!(e, Event::System { line, .. } if line.contains("while the worker was not running"))));
    // and the list starts it again
    s.apply(list(1, vec![spec("a.web.1", 1)]), t);
    run(&mut s, &mut t, 200);
    assert_eq!(fake.alive(), 1);
}

#[test]
fn a_changed_environment_restarts_the_instance() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![spec("a.handler.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    let mut changed = spec("a.handler.1", 2);
    changed
        .env
        .insert("M2_SEND_SPEC".into(), "tcp://a tcp://b".into());
    s.apply(list(2, vec![changed]), t);
    run(&mut s, &mut t, 1200);
    assert_eq!(fake.started().len(), 2);
    assert_eq!(fake.alive(), 1);
    assert_eq!(state_of(&s, "a.handler.1", 2), Some(InstanceState::Up));
}

fn web(id: &str, release: u32) -> InstanceSpec {
    InstanceSpec {
        proc_type: "web".into(),
        ..spec(id, release)
    }
}

#[test]
fn a_web_process_is_up_once_it_accepts_on_its_port() {
    let fake = Fake::default();
    fake.0.lock().unwrap().bind_after = Some(8);
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![web("a.web.1", 2)]), t);
    run(&mut s, &mut t, 100);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Starting));
    // Accepting after a few polls: up well before ready_after_ms (1 s).
    run(&mut s, &mut t, 400);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
}

#[test]
fn a_web_process_that_never_binds_is_killed_at_the_boot_timeout_and_the_old_one_keeps_serving() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![web("a.web.1", 2)]), t);
    run(&mut s, &mut t, 200);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
    // Release 7 never binds $PORT.
    s.apply(list(2, vec![web("a.web.1", 7)]), t);
    run(&mut s, &mut t, 2000);
    assert_eq!(state_of(&s, "a.web.1", 7), Some(InstanceState::Starting));
    let events = run(&mut s, &mut t, 1500);
    let kills = fake
        .0
        .lock()
        .unwrap()
        .signals
        .iter()
        .filter(|x| x.1 == StopSignal::Kill)
        .count();
    assert_eq!(kills, 1, "boot timeout kills the process once");
    let logged = events
        .into_iter()
        .any(|e| matches!(e, Event::System { line, .. } if line.contains("R10")));
    assert!(logged, "the R10 error is logged");
    run(&mut s, &mut t, 5000);
    assert!(
        fake.started().iter().filter(|x| x.1 == 7).count() >= 2,
        "restarted after the kill"
    );
    // The old release was never stopped: it still serves.
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
    assert!(!fake.0.lock().unwrap().signals.iter().any(|x| x.0 == 1001));
}

#[test]
fn the_old_release_drains_after_its_replacement_is_up() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let cfg = WorkerConfig {
        drain_ms: 1000,
        ..cfg()
    };
    let mut s = Supervisor::new(fake.clone(), cfg, t);
    s.apply(list(1, vec![web("a.web.1", 2)]), t);
    run(&mut s, &mut t, 200);
    s.apply(list(2, vec![web("a.web.1", 4)]), t);
    run(&mut s, &mut t, 200);
    assert_eq!(state_of(&s, "a.web.1", 4), Some(InstanceState::Up));
    // Both serve during the drain...
    run(&mut s, &mut t, 600);
    assert_eq!(fake.alive(), 2);
    // ...then the old one is stopped.
    run(&mut s, &mut t, 600);
    assert_eq!(fake.alive(), 1);
    assert_eq!(state_of(&s, "a.web.1", 2), None);
}

#[test]
fn quick_releases_that_never_come_up_leave_one_old_process_serving() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    s.apply(list(1, vec![web("a.web.1", 2)]), t);
    run(&mut s, &mut t, 500);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
    // Three releases in quick succession, none of which ever binds its port.
    for (g, rel) in [(2, 7), (3, 8), (4, 9)] {
        s.apply(list(g, vec![web("a.web.1", rel)]), t);
        run(&mut s, &mut t, 300);
    }
    // (past the stop grace time: a replaced process that ignores SIGTERM is killed)
    run(&mut s, &mut t, 6000);
    // v2 still serves, v9 keeps trying (killed at the boot timeout, restarted); v7 and v8
    // are gone.
    let releases: Vec<u32> = s.statuses().iter().map(|x| x.release).collect();
    assert_eq!(releases, [2, 9], "{:?}", s.statuses());
    assert!(fake.alive() <= 2);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
    assert!(state_of(&s, "a.web.1", 9).is_some());
    assert_eq!(state_of(&s, "a.web.1", 7), None);
    assert_eq!(state_of(&s, "a.web.1", 8), None);
}

#[test]
fn a_one_off_runs_once_and_is_reported_done() {
    let fake = Fake::default();
    fake.0.lock().unwrap().crash_release.insert(5);
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    let one_off = InstanceSpec {
        proc_type: zeroku_conf::RUN_TYPE.into(),
        ..spec("a.run.1", 5)
    };
    s.apply(list(1, vec![one_off]), t);
    run(&mut s, &mut t, 3000);
    assert_eq!(fake.started().len(), 1, "never restarted");
    let st = s.statuses();
    assert_eq!(st[0].state, InstanceState::Done);
    assert_eq!(st[0].last_exit.as_deref(), Some("exited with status 1"));
    // The master drops it from the list: it is forgotten.
    s.apply(list(2, vec![]), t);
    run(&mut s, &mut t, 200);
    assert!(s.statuses().is_empty());
}

#[test]
fn instances_that_ask_stop_when_the_master_is_silent_too_long() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    let careful = InstanceSpec {
        stop_when_lost_ms: Some(3000),
        ..spec("a.web.1", 2)
    };
    s.apply(list(1, vec![careful.clone(), spec("b.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    assert_eq!(fake.alive(), 2);
    s.master_silent(Duration::from_millis(2900));
    run(&mut s, &mut t, 500);
    assert_eq!(fake.alive(), 2, "not yet");
    s.master_silent(Duration::from_millis(3000));
    run(&mut s, &mut t, 500);
    assert_eq!(state_of(&s, "a.web.1", 2), None);
    assert_eq!(state_of(&s, "b.web.1", 2), Some(InstanceState::Up));
    assert_eq!(fake.alive(), 1, "the other app runs on");
    // Word again, and the list from before the silence (held in the network meanwhile):
    // nothing starts yet, and a newer list without it decides.
    s.heard(t);
    s.apply(list(1, vec![careful.clone(), spec("b.web.1", 2)]), t);
    let started = fake.started().len();
    run(&mut s, &mut t, 1200);
    assert_eq!(fake.started().len(), started, "not started yet");
    // An instance newly placed here (not one the silence stopped) does not wait.
    let newcomer = InstanceSpec {
        stop_when_lost_ms: Some(3000),
        ..spec("c.web.1", 2)
    };
    s.apply(
        list(2, vec![careful.clone(), spec("b.web.1", 2), newcomer]),
        t,
    );
    run(&mut s, &mut t, 1200);
    assert_eq!(state_of(&s, "c.web.1", 2), Some(InstanceState::Up));
    let started = fake.started().len();
    s.apply(list(3, vec![spec("b.web.1", 2)]), t);
    run(&mut s, &mut t, 2500);
    assert_eq!(state_of(&s, "a.web.1", 2), None);
    assert_eq!(fake.started().len(), started, "never started again");
    // Once that long has passed, a list that still wants it here starts it.
    s.apply(list(4, vec![careful, spec("b.web.1", 2)]), t);
    run(&mut s, &mut t, 1200);
    assert_eq!(state_of(&s, "a.web.1", 2), Some(InstanceState::Up));
}

fn requiring(id: &str, on_change: &str, addrs: &[&str]) -> InstanceSpec {
    InstanceSpec {
        requires: vec![zeroku_conf::Required {
            name: "api".into(),
            on_change: OnChange::try_from(on_change.to_string()).unwrap(),
            addrs: addrs.iter().map(|a| a.to_string()).collect(),
        }],
        ..spec(id, 2)
    }
}

#[test]
fn new_providers_reach_each_instance_as_its_requirement_says() {
    let fake = Fake::default();
    let mut t = Instant::now();
    let mut s = Supervisor::new(fake.clone(), cfg(), t);
    let files = tempfile::tempdir().unwrap();
    s.set_require_dir(files.path().to_path_buf());
    let modes = ["restart", "signal:HUP", "hook:./reload", "none"];
    let specs = |addrs: &[&str]| {
        modes
            .iter()
            .enumerate()
            .map(|(i, m)| requiring(&format!("a.worker.{}", i + 1), m, addrs))
            .collect::<Vec<_>>()
    };
    s.apply(list(1, specs(&["10.0.0.1:31000"])), t);
    run(&mut s, &mut t, 1500);
    assert_eq!(fake.started().len(), 4);
    let pid_of = |id: &str| {
        s.records()
            .iter()
            .find(|r| r.instance == id)
            .map(|r| r.pid)
            .unwrap()
    };
    let (signalled, hooked) = (pid_of("a.worker.2"), pid_of("a.worker.3"));

    // The same providers again: nothing happens.
    s.apply(list(2, specs(&["10.0.0.1:31000"])), t);
    run(&mut s, &mut t, 500);
    assert_eq!(fake.started().len(), 4);
    assert!(fake.0.lock().unwrap().notified.is_empty());

    // A second provider: `restart` restarts, `signal` signals, `hook` runs its command with
    // the new list, `none` only has its file rewritten.
    s.apply(list(3, specs(&["10.0.0.1:31000", "10.0.0.2:31000"])), t);
    run(&mut s, &mut t, 1500);
    let started = fake.started();
    assert_eq!(started.len(), 5, "{started:?}");
    assert_eq!(started[4].0, "a.worker.1");
    let notified = fake.0.lock().unwrap().notified.clone();
    assert_eq!(notified.len(), 2, "{notified:?}");
    assert_eq!((notified[0].0, notified[0].1.as_str()), (signalled, "HUP"));
    assert_eq!(
        (notified[1].0, notified[1].1.as_str()),
        (hooked, "hook:./reload")
    );
    assert_eq!(
        notified[1].2["ZEROKU_REQUIRE_API"],
        "10.0.0.1:31000,10.0.0.2:31000"
    );
    // Every instance's file has the new list, `none`'s too, and the variables name it.
    let file = files.path().join("a.worker.4.v2").join("api");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "10.0.0.1:31000\n10.0.0.2:31000\n"
    );
    assert_eq!(
        notified[1].2["ZEROKU_REQUIRE_API_FILE"],
        files
            .path()
            .join("a.worker.3.v2")
            .join("api")
            .display()
            .to_string()
    );
    assert!(notified[1].2.contains_key("ZEROKU_REQUIRE_API_ADDR"));

    // All providers gone: `restart` does not restart for none, the file says none.
    s.apply(list(4, specs(&[])), t);
    run(&mut s, &mut t, 1500);
    assert_eq!(fake.started().len(), 5);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "");

    // Instances that go take their files with them.
    s.apply(list(5, Vec::new()), t);
    run(&mut s, &mut t, 500);
    assert!(!file.exists());
}
