//! Stable local addresses of required services (`ZEROKU_REQUIRE_<NAME>_ADDR`,
//! served by [`crate::forward`]): one per (app, requirement) on the node.
//!
//! With a root worker an app's addresses are on a loopback address of its own,
//! `127.64.0.0/10` by app number, on ports 600-1023: no app (no
//! `CAP_NET_BIND_SERVICE`) can bind one, so none can take another's
//! connections, not even while the worker restarts. A worker that is not root
//! runs every app as its own user anyway: it uses 127.0.0.1 and ports of its
//! range. The ports are kept in `<data>/require/ports.json` (0600) so that the
//! processes a restarted worker re-adopts keep reaching theirs.

use super::Supervisor;
use crate::runtime::Runtime;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Instant;
use zeroku_conf::InstanceSpec;

/// Where the ports are kept, in the requirement directory.
pub(super) const PORTS_FILE: &str = "ports.json";
/// The ports of a root worker's stable addresses: below 1024.
const PORTS: std::ops::RangeInclusive<u16> = 600..=1023;

/// The loopback address of app number `seq`'s stable addresses (root worker).
pub fn app_ip(seq: u32) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        64 | ((seq >> 16) & 63) as u8,
        (seq >> 8) as u8,
        seq as u8,
    )
}

/// The ports an earlier run kept in `dir` (none when there is no file or it is damaged).
pub(super) fn load_ports(dir: &std::path::Path) -> BTreeMap<(String, String), u16> {
    let Ok(bytes) = std::fs::read(dir.join(PORTS_FILE)) else {
        return BTreeMap::new();
    };
    match serde_json::from_slice::<Vec<(String, String, u16)>>(&bytes) {
        Ok(v) => v.into_iter().map(|(a, n, p)| ((a, n), p)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the ports of required services are unreadable: new ones are chosen");
            BTreeMap::new()
        }
    }
}

impl<R: Runtime> Supervisor<R> {
    fn addr_ip(&self, seq: u32) -> Ipv4Addr {
        if crate::native::is_root() {
            app_ip(seq)
        } else {
            Ipv4Addr::LOCALHOST
        }
    }

    /// The stable address of `spec`'s app's requirement `name` on this node: the one it
    /// has, or a new one (kept on disk). `None` when no port is left.
    pub(super) fn local_addr(&mut self, spec: &InstanceSpec, name: &str) -> Option<SocketAddrV4> {
        let ip = self.addr_ip(spec.app_seq);
        let k = (spec.app.clone(), name.to_string());
        if let Some(p) = self.local_ports.get(&k) {
            return Some(SocketAddrV4::new(ip, *p));
        }
        let p = if crate::native::is_root() {
            let taken: HashSet<u16> = self
                .local_ports
                .iter()
                .filter(|((a, _), _)| *a == spec.app)
                .map(|(_, p)| *p)
                .collect();
            PORTS.clone().find(|p| !taken.contains(p))?
        } else {
            self.free_port()?
        };
        self.local_ports.insert(k, p);
        self.save_ports();
        Some(SocketAddrV4::new(ip, p))
    }

    fn save_ports(&self) {
        let Some(root) = &self.require_dir else {
            return;
        };
        let list: Vec<(&str, &str, u16)> = self
            .local_ports
            .iter()
            .map(|((a, n), p)| (a.as_str(), n.as_str(), *p))
            .collect();
        let path = root.join(PORTS_FILE);
        let tmp = root.join(format!("{PORTS_FILE}.new"));
        let res = serde_json::to_vec(&list)
            .map_err(std::io::Error::other)
            .and_then(|b| {
                let _ = std::fs::remove_file(&tmp);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&b)
            })
            .and_then(|_| std::fs::rename(&tmp, &path));
        if let Err(e) = res {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the ports of required services");
        }
    }

    /// What [`crate::forward::Forwards::sync`] should serve: each stable address and the
    /// providers its requirement has now (the newest running release's).
    pub fn forwards(&self) -> HashMap<SocketAddr, Vec<String>> {
        let mut out = HashMap::new();
        for ((app, name), port) in &self.local_ports {
            let newest = self
                .slots
                .values()
                .filter(|s| s.spec.app == *app)
                .filter_map(|s| {
                    let r = s.spec.requires.iter().find(|r| r.name == *name)?;
                    Some(((s.desired, s.spec.release), s.spec.app_seq, &r.addrs))
                })
                .max_by_key(|(k, _, _)| *k);
            if let Some((_, seq, addrs)) = newest {
                let at = SocketAddrV4::new(self.addr_ip(seq), *port);
                out.insert(SocketAddr::V4(at), addrs.clone());
            }
        }
        out
    }

    /// Something else holds the stable address `at`: its requirement gets another, and the
    /// running processes that were given it start again with the new one.
    pub fn forward_failed(&mut self, at: SocketAddr, now: Instant) {
        let lost: Vec<(String, String)> = self
            .local_ports
            .iter()
            .filter(|(_, p)| **p == at.port())
            .map(|(k, _)| k.clone())
            .filter(|(app, _)| {
                self.slots.values().any(|s| {
                    s.spec.app == *app
                        && SocketAddr::V4(SocketAddrV4::new(
                            self.addr_ip(s.spec.app_seq),
                            at.port(),
                        )) == at
                })
            })
            .collect();
        for (app, name) in lost {
            self.local_ports.remove(&(app.clone(), name.clone()));
            let keys: Vec<super::Key> = self
                .slots
                .iter()
                .filter(|(_, s)| {
                    s.spec.app == app
                        && s.proc.is_some()
                        && s.spec.requires.iter().any(|r| r.name == name)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for key in keys {
                let Some(slot) = self.slots.get_mut(&key) else {
                    continue;
                };
                let Some(p) = slot.proc.take() else {
                    continue;
                };
                slot.next_start = now;
                let (app, id, release) = (
                    slot.spec.app.clone(),
                    slot.spec.id.clone(),
                    slot.spec.release,
                );
                self.system(
                    &app,
                    &id,
                    release,
                    format!("The stable address of {name} ({at}) is held by something else: restarting with another"),
                );
                self.stop(p, now);
            }
        }
        self.save_ports();
    }

    /// Forgets the addresses of requirements no slot has any more.
    pub(super) fn gc_local_ports(&mut self) {
        let used: HashSet<(&str, &str)> = self
            .slots
            .values()
            .flat_map(|s| {
                s.spec
                    .requires
                    .iter()
                    .map(|r| (s.spec.app.as_str(), r.name.as_str()))
            })
            .collect();
        let before = self.local_ports.len();
        self.local_ports
            .retain(|(a, n), _| used.contains(&(a.as_str(), n.as_str())));
        if self.local_ports.len() != before {
            self.save_ports();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::app_ip;

    #[test]
    fn every_app_has_a_loopback_address_of_its_own() {
        assert_eq!(app_ip(1).to_string(), "127.64.0.1");
        assert_eq!(app_ip(258).to_string(), "127.64.1.2");
        assert_eq!(app_ip(70_000).to_string(), "127.65.17.112");
        assert!(app_ip(4_000_000).is_loopback());
    }
}
