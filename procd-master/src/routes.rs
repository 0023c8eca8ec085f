//! The route table frontends follow, and the Mongrel2 handler endpoints
//! handler processes are given.
//!
//! Pure functions of the store's rows and the workers' last heartbeats: the
//! cluster decides when to rebuild and publish.

use crate::live::Live;
use crate::store::{App, Cert, Frontend, Node, Placement, Release};
use std::collections::HashMap;
use zeroku_conf::{
    AppRoute, Backend, CertRef, HandlerEndpoint, HandlerRoute, InstanceState, PathRoute, SlugRef,
};

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

/// Where a handler instance of app `app` (number `seq`) on `node` reaches
/// each frontend: a frontend on the same node over `ipc://` in its per-app
/// directory; any other over TCP with its CURVE key, through the node's relay.
pub fn handler_endpoints(
    handler_port_min: u16,
    app: &str,
    seq: u32,
    node: &str,
    frontends: &[Frontend],
) -> Vec<HandlerEndpoint> {
    let Some((send, recv)) = handler_ports(handler_port_min, seq) else {
        return Vec::new();
    };
    frontends
        .iter()
        .map(|f| {
            if !f.node.is_empty() && f.node == node && !f.ipc_dir.is_empty() {
                let dir = format!("{}/{app}", f.ipc_dir.trim_end_matches('/'));
                HandlerEndpoint {
                    frontend: f.name.clone(),
                    send: format!("ipc://{dir}/send"),
                    recv: format!("ipc://{dir}/recv"),
                    key: None,
                }
            } else {
                HandlerEndpoint {
                    frontend: f.name.clone(),
                    send: format!("tcp://{}:{send}", f.handler_host),
                    recv: format!("tcp://{}:{recv}", f.handler_host),
                    key: Some(f.bus_key.clone()),
                }
            }
        })
        .collect()
}

/// Everything the route table is built from.
pub struct Inputs<'a> {
    pub apps: &'a [App],
    pub releases: &'a HashMap<String, Release>,
    pub domains: &'a [(String, String)],
    pub paths: &'a [(String, PathRoute)],
    /// App settings, as (app, key, value).
    pub settings: &'a [(String, String, String)],
    /// Every app's certificates (frontends get their hashes and names).
    pub certs: &'a [Cert],
    pub placements: &'a [Placement],
    pub nodes: &'a [Node],
    pub live: &'a HashMap<String, Live>,
    pub handler_port_min: u16,
}

/// The address of each node that is up.
pub fn up_hosts(nodes: &[Node]) -> HashMap<&str, &str> {
    nodes
        .iter()
        .filter(|n| n.state == "up")
        .map(|n| (n.name.as_str(), n.host.as_str()))
        .collect()
}

/// `host:port` of a placed instance whose node is up and whose last
/// heartbeat has it up with a port. During a deploy or a restart the old
/// process serves until the new one is up, then drains (still running, no
/// longer given out) before it is stopped: the newest release and
/// incarnation that is up counts.
pub fn up_addr(
    p: &Placement,
    hosts: &HashMap<&str, &str>,
    live: &HashMap<String, Live>,
) -> Option<String> {
    let node = p.node.as_deref()?;
    let host = hosts.get(node)?;
    let hb = live.get(node)?.heartbeat.as_ref()?;
    let st = hb
        .instances
        .iter()
        .filter(|s| s.id == p.id && s.state == InstanceState::Up)
        .max_by_key(|s| (s.release, s.restart))?;
    Some(format!("{host}:{}", st.port?))
}

/// One route per app that has a release, sorted by app.
pub fn build(i: &Inputs<'_>) -> Vec<AppRoute> {
    let hosts = up_hosts(i.nodes);
    let mut web: HashMap<&str, Vec<String>> = HashMap::new();
    for p in i.placements.iter().filter(|p| p.proc_type == WEB_TYPE) {
        if let Some(addr) = up_addr(p, &hosts, i.live) {
            web.entry(p.app.as_str()).or_default().push(addr);
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
    // The bus keys of the nodes that run each app's handlers: the only ones a
    // frontend lets relay for it.
    let keys: HashMap<&str, &str> = i
        .nodes
        .iter()
        .filter(|n| !n.bus_key.is_empty())
        .map(|n| (n.name.as_str(), n.bus_key.as_str()))
        .collect();
    let mut relays: HashMap<&str, Vec<String>> = HashMap::new();
    for p in i.placements.iter().filter(|p| p.proc_type == HANDLER_TYPE) {
        if let Some(k) = p.node.as_deref().and_then(|n| keys.get(n)) {
            let v = relays.entry(p.app.as_str()).or_default();
            if !v.iter().any(|x| x == k) {
                v.push(k.to_string());
            }
        }
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
                    seq: a.seq,
                    relay_keys: {
                        let mut k = relays.remove(a.name.as_str()).unwrap_or_default();
                        k.sort();
                        k
                    },
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
            let setting = |key: &str| {
                i.settings
                    .iter()
                    .find(|(app, k, _)| *app == a.name && k == key)
                    .map(|(_, _, v)| v.clone())
            };
            let maintenance = (setting("maintenance").as_deref() == Some("on"))
                .then(|| setting("maintenance_page").unwrap_or_default());
            let slug = p
                .iter()
                .any(|r| matches!(r.backend, Backend::Dir { .. }))
                .then(|| SlugRef {
                    sha256: rel.slug_sha256.clone(),
                    size: rel.slug_size,
                });
            let certs = i
                .certs
                .iter()
                .filter(|c| c.app == a.name)
                .map(|c| CertRef {
                    sha256: c.sha256.clone(),
                    names: c.names.clone(),
                    not_after: c.not_after,
                })
                .collect();
            Some(AppRoute {
                app: a.name.clone(),
                domains: domains.remove(a.name.as_str()).unwrap_or_default(),
                handler,
                web: w,
                paths: p,
                slug,
                maintenance,
                certs,
                force_https: setting("force_https").as_deref() == Some("on"),
                hsts: setting("hsts")
                    .and_then(|v| crate::settings::hsts_max_age(&v))
                    .flatten(),
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
    fn a_handler_reaches_a_frontend_on_its_node_over_ipc_and_others_over_tcp() {
        let fe = |n: &str, h: &str, node: &str| Frontend {
            name: n.into(),
            handler_host: h.into(),
            bus_key: format!("key-of-{n}"),
            node: node.into(),
            ipc_dir: format!("/data/{n}/handlers"),
        };
        let eps = handler_endpoints(
            40000,
            "chat",
            2,
            "n1",
            &[fe("a", "10.0.0.1", "n1"), fe("b", "10.0.0.2", "n2")],
        );
        assert_eq!(eps.len(), 2);
        assert_eq!(eps[0].send, "ipc:///data/a/handlers/chat/send");
        assert_eq!(eps[0].recv, "ipc:///data/a/handlers/chat/recv");
        assert_eq!(eps[0].key, None);
        assert_eq!(eps[1].send, "tcp://10.0.0.2:40002");
        assert_eq!(eps[1].recv, "tcp://10.0.0.2:40003");
        assert_eq!(eps[1].key.as_deref(), Some("key-of-b"));
        assert!(handler_endpoints(65534, "chat", 2, "n1", &[fe("a", "x", "n1")]).is_empty());
    }
}
