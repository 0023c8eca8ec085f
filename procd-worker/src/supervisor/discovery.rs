//! The supervisor's side of discovery: a running instance whose required
//! services' providers changed is told as its requirement says
//! (`on_change`): restarted (decided in [`Supervisor::apply`]), signalled,
//! a hook run next to it, or only its files rewritten ([`crate::require`]).

use super::{slug_key, Key, Supervisor};
use crate::runtime::{Runtime, StartRequest};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use zeroku_conf::manifest::OnChange;
use zeroku_conf::{InstanceSpec, Required};

/// The requirements of `new` whose providers differ from `old`'s.
pub(super) fn changed(old: &InstanceSpec, new: &InstanceSpec) -> Vec<Required> {
    new.requires
        .iter()
        .filter(|r| {
            old.requires
                .iter()
                .find(|o| o.name == r.name)
                .is_none_or(|o| o.addrs != r.addrs)
        })
        .cloned()
        .collect()
}

impl<R: Runtime> Supervisor<R> {
    /// The group an app's files are given when the worker is root.
    fn app_gid(&self, spec: &InstanceSpec) -> Option<u32> {
        crate::native::is_root().then(|| self.cfg.app_uid_base.saturating_add(spec.app_seq))
    }

    /// Writes `spec`'s requirement files; their directory (none without requirements, or
    /// when they cannot be written: the variables still say the providers).
    fn require_files(&self, spec: &InstanceSpec) -> Option<PathBuf> {
        if spec.requires.is_empty() {
            return None;
        }
        let root = self.require_dir.as_ref()?;
        match crate::require::write(root, spec, self.app_gid(spec)) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(instance.id = %spec.id, error = %e, "cannot write requirement files");
                None
            }
        }
    }

    /// The environment a process of `spec` runs with on `port`: its config vars, `PORT`,
    /// `ZEROKU_*`, a handler's endpoints and its requirements (whose files this writes).
    pub(super) fn env_of(&mut self, spec: &InstanceSpec, port: u16) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = spec.env.clone();
        env.insert("PORT".into(), port.to_string());
        env.insert("ZEROKU_APP".into(), spec.app.clone());
        env.insert("ZEROKU_INSTANCE".into(), spec.id.clone());
        env.insert("ZEROKU_PROCESS_TYPE".into(), spec.proc_type.clone());
        env.insert("ZEROKU_RELEASE".into(), format!("v{}", spec.release));
        env.insert("ZEROKU_NODE".into(), self.node.clone());
        env.insert("DYNO".into(), format!("{}.{}", spec.proc_type, spec.index));
        if !spec.handler.is_empty() {
            let (send, recv) = crate::relay::handler_specs(self.relay_dir.as_deref(), spec);
            env.insert("M2_SEND_SPEC".into(), send);
            env.insert("M2_RECV_SPEC".into(), recv);
        }
        let dir = self.require_files(spec);
        env.extend(crate::require::env(spec, dir.as_deref()));
        // A stable local address per requirement, for native processes (a container's
        // loopback is its own).
        if spec.stack.is_none() && self.require_dir.is_some() {
            for r in &spec.requires {
                if let Some(a) = self.local_addr(spec, &r.name) {
                    env.insert(
                        format!("{}_ADDR", zeroku_conf::manifest::env_name(&r.name)),
                        a.to_string(),
                    );
                }
            }
        }
        env
    }

    /// The providers of `providers` (requirements of the slot `key`, none of them
    /// `restart`) changed: rewrite the files, then (`tell`) signal or run the hooks.
    pub(super) fn providers_changed(&mut self, key: &Key, providers: &[Required], tell: bool) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let spec = slot.spec.clone();
        let Some(rec) = slot.proc.as_ref().map(|p| p.rec.clone()) else {
            // Not running: its next start has the new providers.
            return;
        };
        let port = slot.port;
        let env = self.env_of(&spec, port);
        if !tell {
            return;
        }
        // The app's own program, or the processes under the `sh` that runs it.
        let leader_only = crate::native::exec_safe(&spec.command);
        let mut lines = Vec::new();
        for r in providers {
            let list = if r.addrs.is_empty() {
                "none".to_string()
            } else {
                r.addrs.join(", ")
            };
            let done = match &r.on_change {
                OnChange::Signal(sig) => match self.rt.notify(&rec, sig, leader_only) {
                    Ok(()) => format!("sent SIG{sig}"),
                    Err(e) => format!("could not send SIG{sig}: {e}"),
                },
                OnChange::Hook(cmd) => {
                    let dir = self.slugs.get(&slug_key(&spec)).cloned();
                    let req = StartRequest {
                        spec: &spec,
                        slug_dir: dir.as_deref().unwrap_or(std::path::Path::new("/")),
                        port,
                        env: env.clone(),
                    };
                    match self.rt.hook(&rec, &req, cmd) {
                        Ok(()) => format!("running `{cmd}`"),
                        Err(e) => format!("could not run the hook: {e}"),
                    }
                }
                OnChange::None | OnChange::Restart => "file rewritten".to_string(),
            };
            lines.push(format!("Providers of {} changed: {list} ({done})", r.name));
        }
        for line in lines {
            self.system(&spec.app, &spec.id, spec.release, line);
        }
    }

    /// Removes the requirement directories and local addresses no slot uses any more.
    pub(super) fn gc_require_dirs(&mut self) {
        let Some(root) = self.require_dir.clone() else {
            return;
        };
        self.gc_local_ports();
        let mut keep: HashSet<PathBuf> = self
            .slots
            .values()
            .filter(|s| !s.spec.requires.is_empty())
            .map(|s| crate::require::dir_of(&root, &s.spec))
            .collect();
        keep.insert(root.join(super::addrs::PORTS_FILE));
        crate::require::gc(&root, &keep);
    }
}
