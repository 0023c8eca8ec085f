//! Rolling restarts (`zeroku ps:restart [TYPE | INSTANCE]`): one instance at
//! a time, each by a new incarnation that its worker starts next to the
//! running process; the next instance is restarted once the last one's new
//! process is up, and the old process stops after the drain time, as in a
//! deploy. A new process that does not come up within `deploy_timeout_secs`
//! ends the restart there: its old process keeps serving. No release is
//! made. What happens is written to the app's log (`--source zeroku`) and
//! to the caller, line by line, ending with a result line as a build's.
//!
//! This module decides and waits; it never starts or stops a process itself.

use crate::cluster::Cluster;
use crate::store::Placement;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use zeroku_client::v1::BUILD_RESULT_PREFIX as RESULT_PREFIX;
use zeroku_conf::InstanceState;

/// The instances of `app` that `target` names, in order: all of them
/// (`None`), a process type (`web`) or one instance (`web.1`, or
/// `<app>.web.1`). One-offs are not restarted.
pub fn targets(
    placements: &[Placement],
    app: &str,
    target: Option<&str>,
) -> Result<Vec<String>, String> {
    let formation = || placements.iter().filter(|p| p.app == app);
    let ids: Vec<String> = match target.map(|t| t.strip_prefix(&format!("{app}.")).unwrap_or(t)) {
        None => formation().map(|p| p.id.clone()).collect(),
        Some(t) if t.contains('.') => formation()
            .filter(|p| format!("{}.{}", p.proc_type, p.index) == t)
            .map(|p| p.id.clone())
            .collect(),
        Some(t) => formation()
            .filter(|p| p.proc_type == t)
            .map(|p| p.id.clone())
            .collect(),
    };
    if ids.is_empty() {
        return Err(match target {
            None => format!("{app} runs no instances (see `zeroku ps:scale`)"),
            Some(t) => {
                format!("{app} has no instance or process type {t:?} (see `zeroku ps -a {app}`)")
            }
        });
    }
    Ok(ids)
}

/// Restarts `ids` one at a time (see the module's doc), telling `to` (the
/// caller, while it listens) as it goes. Runs until done.
pub async fn roll(
    c: Arc<Cluster>,
    app: String,
    ids: Vec<String>,
    actor: String,
    to: UnboundedSender<String>,
) {
    let ok = roll_each(&c, &app, &ids, &actor, &to).await;
    let _ = to.send(format!(
        "{RESULT_PREFIX}{}\n",
        serde_json::json!({"ok": ok, "instances": ids})
    ));
}

async fn roll_each(
    c: &Arc<Cluster>,
    app: &str,
    ids: &[String],
    actor: &str,
    to: &UnboundedSender<String>,
) -> bool {
    let say = |id: &str, line: String| {
        let _ = to.send(format!("{line}\n"));
        log(c, app, id, line);
    };
    let total = ids.len();
    let timeout = Duration::from_secs(c.cfg.deploy_timeout_secs);
    for (i, id) in ids.iter().enumerate() {
        let bumped = tokio::task::block_in_place(|| c.change(|s| s.bump_restart(app, id)));
        let n = match bumped {
            Ok(n) => n,
            Err(e) => {
                say(id, format!("Restart of {id} failed: {e}"));
                return false;
            }
        };
        c.refresh_routes();
        say(
            id,
            format!("Restarting {id} ({} of {total}), by {actor}", i + 1),
        );
        let started = Instant::now();
        loop {
            match incarnation_up(c, app, id, n) {
                Some(true) => {
                    say(
                        id,
                        format!(
                            "{id} is up again after {:.1} s; its old process stops after the drain time",
                            started.elapsed().as_secs_f64()
                        ),
                    );
                    break;
                }
                // Scaled away (or the app destroyed) meanwhile: nothing to wait for.
                None => break,
                Some(false) if started.elapsed() >= timeout => {
                    say(
                        id,
                        format!(
                            "Restart stopped: the new process of {id} was not up within {} s; its old process keeps serving (see `zeroku logs -a {app} --ps {id}`)",
                            timeout.as_secs()
                        ),
                    );
                    return false;
                }
                Some(false) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    true
}

/// Whether incarnation `n` of `id` is up on its node; `None` when the
/// instance is no longer placed.
fn incarnation_up(c: &Cluster, app: &str, id: &str, n: u32) -> Option<bool> {
    let node = {
        let store = c.store();
        let placed = store.placements_of(app).ok()?;
        placed.into_iter().find(|p| p.id == id)?.node
    };
    let Some(node) = node else {
        return Some(false);
    };
    let live = c.live();
    Some(
        live.get(&node)
            .and_then(|l| l.heartbeat.as_ref())
            .is_some_and(|hb| {
                hb.instances
                    .iter()
                    .any(|s| s.id == id && s.restart == n && s.state == InstanceState::Up)
            }),
    )
}

/// A line in the app's log from zeroku itself.
fn log(c: &Cluster, app: &str, id: &str, line: String) {
    c.system_log(app, id, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(app: &str, t: &str, i: u32) -> Placement {
        Placement {
            id: format!("{app}.{t}.{i}"),
            app: app.into(),
            proc_type: t.into(),
            index: i,
            node: Some("n1".into()),
            memory_mb: 256,
        }
    }

    #[test]
    fn targets_are_types_instances_or_all() {
        let ps = [
            p("a", "web", 1),
            p("a", "web", 2),
            p("a", "clock", 1),
            p("b", "web", 1),
        ];
        assert_eq!(targets(&ps, "a", None).unwrap().len(), 3);
        assert_eq!(
            targets(&ps, "a", Some("web")).unwrap(),
            ["a.web.1", "a.web.2"]
        );
        assert_eq!(targets(&ps, "a", Some("web.2")).unwrap(), ["a.web.2"]);
        assert_eq!(targets(&ps, "a", Some("a.clock.1")).unwrap(), ["a.clock.1"]);
        let e = targets(&ps, "a", Some("web.9")).unwrap_err();
        assert!(e.contains("no instance or process type \"web.9\""), "{e}");
        assert!(targets(&ps, "a", Some("b.web.1")).is_err(), "another app's");
        assert!(targets(&[], "a", None).unwrap_err().contains("ps:scale"));
    }
}
