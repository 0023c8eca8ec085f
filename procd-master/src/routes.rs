//! The route table frontends follow, and the Mongrel2 handler endpoints
//! handler processes are given.
//!
//! Pure functions of the store's rows and the workers' last heartbeats: the
//! cluster decides when to rebuild and publish.

use crate::live::Live;
use crate::store::{App, Frontend, Node, Placement, Release};
use std::collections::{BTreeMap, HashMap};
use zeroku_conf::{AppRoute, Backend, HandlerRoute, InstanceState, PathRoute, SlugRef};

/// The process type routed to Mongrel2-protocol handlers.
pub const HANDLER_TYPE: &str = "handler";
/// The process type proxied to on `$PORT`.
pub const WEB_TYPE: &str = "web";

/// The (PUSH, SUB) ports every frontend binds for app number `seq`.
pub fn handler_ports(handler_port_min: u16, seq: u32) -> Option<(u16, u16)> {
    let offset = u16::try_from(seq.checked_sub(1)?.checked_mul(2)?).ok()?;
    let send = handler_port_min.checked_add(offset)?;
    Some((send, send.checked_add(1)?))
}

/// The environment of a handler process: where to receive requests and
/// send replies, with one endpoint per frontend (space-separated; a
/// handler connects to all of them).
pub fn handler_env(
    handler_port_min: u16,
    seq: u32,
    instance: &str,
    frontends: &[Frontend],
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let Some((send, recv)) = handler_ports(handler_port_min, seq) else {
        return env;
    };
    let specs = |port: u16| {
        frontends
            .iter()
            .map(|f| format!("tcp://{}:{port}", f.handler_host))
            .collect::<Vec<_>>()
            .join(" ")
    };
    env.insert("M2_SEND_SPEC".into(), specs(send));
    env.insert("M2_RECV_SPEC".into(), specs(recv));
    env.insert("M2_SENDER_ID".into(), format!("zeroku-{instance}"));
    env
}

/// Everything the route table is built from.
pub struct Inputs<'a> {
    pub apps: &'a [App],
    pub releases: &'a HashMap<String, Release>,
    pub domains: &'a [(String, String)],
    pub paths: &'a [(String, PathRoute)],
    /// App settings, as (app, key, value).
    pub settings: &'a [(String, String, String)],
    pub placements: &'a [Placement],
    pub nodes: &'a [Node],
    pub live: &'a HashMap<String, Live>,
    pub handler_port_min: u16,
}

/// One route per app that has a release, sorted by app.
pub fn build(i: &Inputs<'_>) -> Vec<AppRoute> {
    let hosts: HashMap<&str, &str> = i
        .nodes
        .iter()
        .filter(|n| n.state == "up")
        .map(|n| (n.name.as_str(), n.host.as_str()))
        .collect();
    let mut web: HashMap<&str, Vec<String>> = HashMap::new();
    for p in i.placements.iter().filter(|p| p.proc_type == WEB_TYPE) {
        let Some(node) = p.node.as_deref() else {
            continue;
        };
        let (Some(host), Some(hb)) = (
            hosts.get(node),
            i.live.get(node).and_then(|l| l.heartbeat.as_ref()),
        ) else {
            continue;
        };
        // The newest release of the instance that is up: during a deploy
        // the old process serves until the new one is up, then drains
        // (still running, no longer routed to) before it is stopped.
        if let Some(st) = hb
            .instances
            .iter()
            .filter(|s| s.id == p.id && s.state == InstanceState::Up)
            .max_by_key(|s| s.release)
        {
            if let Some(port) = st.port {
                web.entry(p.app.as_str())
                    .or_default()
                    .push(format!("{host}:{port}"));
            }
        }
    }
    let mut paths: HashMap<&str, Vec<PathRoute>> = HashMap::new();
    for (app, r) in i.paths {
        paths.entry(app.as_str()).or_default().push(r.clone());
    }
    let mut domains: HashMap<&str, Vec<String>> = HashMap::new();
    for (d, app) in i.domains {
        domains.entry(app.as_str()).or_default().push(d.clone());
    }
    let mut out: Vec<AppRoute> = i
        .apps
        .iter()
        .filter_map(|a| {
            let rel = i.releases.get(&a.name)?;
            let handler = rel
                .process_types
                .contains_key(HANDLER_TYPE)
                .then(|| handler_ports(i.handler_port_min, a.seq))
                .flatten()
                .map(|(send_port, recv_port)| HandlerRoute {
                    send_port,
                    recv_port,
                    protocol: i
                        .settings
                        .iter()
                        .find(|(app, k, _)| *app == a.name && k == "m2_protocol")
                        .map_or_else(|| "json".to_string(), |(_, _, v)| v.clone()),
                });
            let mut w = web.remove(a.name.as_str()).unwrap_or_default();
            w.sort();
            let mut p = paths.remove(a.name.as_str()).unwrap_or_default();
            // Longest prefix first: the first match wins.
            p.sort_by(|x, y| {
                y.prefix
                    .len()
                    .cmp(&x.prefix.len())
                    .then(x.prefix.cmp(&y.prefix))
            });
            let slug = p
                .iter()
                .any(|r| matches!(r.backend, Backend::Dir { .. }))
                .then(|| SlugRef {
                    sha256: rel.slug_sha256.clone(),
                    size: rel.slug_size,
                });
            Some(AppRoute {
                app: a.name.clone(),
                domains: domains.remove(a.name.as_str()).unwrap_or_default(),
                handler,
                web: w,
                paths: p,
                slug,
            })
        })
        .collect();
    out.sort_by(|a, b| a.app.cmp(&b.app));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_per_app() {
        assert_eq!(handler_ports(40000, 1), Some((40000, 40001)));
        assert_eq!(handler_ports(40000, 3), Some((40004, 40005)));
        assert_eq!(handler_ports(65534, 2), None);
        assert_eq!(handler_ports(40000, 0), None);
    }

    #[test]
    fn env_lists_every_frontend() {
        let fe = |n: &str, h: &str| Frontend {
            name: n.into(),
            handler_host: h.into(),
        };
        let env = handler_env(
            40000,
            2,
            "chat.handler.1",
            &[fe("a", "10.0.0.1"), fe("b", "10.0.0.2")],
        );
        assert_eq!(
            env["M2_SEND_SPEC"],
            "tcp://10.0.0.1:40002 tcp://10.0.0.2:40002"
        );
        assert_eq!(
            env["M2_RECV_SPEC"],
            "tcp://10.0.0.1:40003 tcp://10.0.0.2:40003"
        );
        assert_eq!(env["M2_SENDER_ID"], "zeroku-chat.handler.1");
    }
}
