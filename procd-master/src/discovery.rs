//! Service discovery (`zeroku.toml`, disco's provide/require): which instances
//! provide each app's services now, and what each requiring instance is given.
//!
//! Pure functions of the current releases, the placements and the last
//! heartbeats, as the route table is: a provider counts from when it is up by
//! the same readiness the router uses, and stops counting when it stops,
//! crashes, drains for its replacement or its node is lost. The cluster
//! decides when to recompute ([`crate::cluster::Cluster::refresh_services`])
//! and carries the result to requiring instances in their node's list.

use crate::live::Live;
use crate::routes;
use crate::store::{Node, Placement, Release};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use zeroku_conf::manifest;
use zeroku_conf::Required;

/// One service of one app, and its live providers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provided {
    pub app: String,
    pub service: String,
    pub process: String,
    pub attributes: BTreeMap<String, String>,
    /// Apps that may discover it; empty: any app.
    pub consumers: Vec<String>,
    /// `host:port` of each instance that is up, sorted.
    pub addrs: Vec<String>,
}

/// Every provided service, by (app, service).
pub type Providers = BTreeMap<(String, String), Provided>;

/// The services the current `releases` provide, with the instances up now.
pub fn providers(
    releases: &HashMap<String, Release>,
    placements: &[Placement],
    nodes: &[Node],
    live: &HashMap<String, Live>,
) -> Providers {
    let mut out = Providers::new();
    for (app, rel) in releases {
        for (name, p) in &rel.build.manifest.provides {
            out.insert(
                (app.clone(), name.clone()),
                Provided {
                    app: app.clone(),
                    service: name.clone(),
                    process: p.process.clone(),
                    attributes: p.attributes.clone(),
                    consumers: p.consumers.clone(),
                    addrs: Vec::new(),
                },
            );
        }
    }
    if out.is_empty() {
        return out;
    }
    let hosts = routes::up_hosts(nodes);
    for pl in placements {
        let Some(rel) = releases.get(&pl.app) else {
            continue;
        };
        for (name, p) in &rel.build.manifest.provides {
            if p.process != pl.proc_type {
                continue;
            }
            if let (Some(addr), Some(entry)) = (
                routes::up_addr(pl, &hosts, live),
                out.get_mut(&(pl.app.clone(), name.clone())),
            ) {
                entry.addrs.push(addr);
            }
        }
    }
    for v in out.values_mut() {
        v.addrs.sort();
    }
    out
}

/// The provider a requirement `name` of `app` resolves to, if one matches: the
/// app and service exist, the attributes match, and the provider lets `app`
/// discover it.
pub fn resolve<'a>(
    app: &str,
    name: &str,
    r: &manifest::Require,
    providers: &'a Providers,
) -> Option<&'a Provided> {
    providers
        .get(&(r.app.clone(), r.service(name).to_string()))
        .filter(|p| manifest::matches(&r.attributes, &p.attributes))
        .filter(|p| p.consumers.is_empty() || p.consumers.iter().any(|c| c == app))
}

/// What an instance of `app` at `rel` is given for each of its requirements.
pub fn required(app: &str, rel: &Release, providers: &Providers) -> Vec<Required> {
    rel.build
        .manifest
        .requires
        .iter()
        .map(|(name, r)| Required {
            name: name.clone(),
            on_change: r.on_change.clone(),
            addrs: resolve(app, name, r, providers)
                .map(|p| p.addrs.clone())
                .unwrap_or_default(),
        })
        .collect()
}

/// The cycle of `restart` requirements that `app`, at a release with `manifest`, would
/// close with the other apps' current `releases` (`[shop, billing, shop]`), if any: each
/// restart would change the providers of the next app, for ever.
pub fn restart_cycle(
    app: &str,
    manifest: &manifest::Manifest,
    releases: &HashMap<String, Release>,
) -> Option<Vec<String>> {
    let edges = |a: &str| -> Vec<String> {
        let m = if a == app {
            Some(manifest)
        } else {
            releases.get(a).map(|r| &r.build.manifest)
        };
        m.map(|m| {
            m.requires
                .values()
                .filter(|r| r.on_change == manifest::OnChange::Restart)
                .map(|r| r.app.clone())
                .collect()
        })
        .unwrap_or_default()
    };
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![vec![app.to_string()]];
    while let Some(path) = stack.pop() {
        let last = path.last().cloned().unwrap_or_default();
        for b in edges(&last) {
            let mut p = path.clone();
            p.push(b.clone());
            if b == app {
                return Some(p);
            }
            if seen.insert(b) {
                stack.push(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BuildMeta;
    use zeroku_conf::{Heartbeat, InstanceState, InstanceStatus};

    fn release(app: &str, toml: &str) -> Release {
        Release {
            app: app.into(),
            version: 1,
            slug_sha256: String::new(),
            slug_size: 0,
            process_types: BTreeMap::from([("web".into(), "x".into())]),
            env: BTreeMap::new(),
            description: String::new(),
            created_at: 0,
            build: BuildMeta {
                manifest: manifest::parse(toml).unwrap(),
                ..BuildMeta::default()
            },
        }
    }

    fn placed(app: &str, index: u32, node: &str) -> Placement {
        Placement {
            id: format!("{app}.web.{index}"),
            app: app.into(),
            proc_type: "web".into(),
            index,
            node: Some(node.into()),
            memory_mb: 64,
        }
    }

    fn node(name: &str, host: &str, state: &str) -> Node {
        Node {
            name: name.into(),
            host: host.into(),
            state: state.into(),
            capacity_mb: 1024,
            draining: false,
            joined_at: 0,
            bus_key: String::new(),
        }
    }

    fn live(node: &str, up: &[(&str, u16, InstanceState)]) -> (String, Live) {
        let hb = Heartbeat {
            node: node.into(),
            instances: up
                .iter()
                .map(|(id, port, state)| InstanceStatus {
                    id: id.to_string(),
                    release: 1,
                    state: *state,
                    pid: Some(1),
                    port: Some(*port),
                    restarts: 0,
                    started_at: 0,
                    last_exit: None,
                    container: None,
                    restart: 0,
                })
                .collect(),
            generation: 1,
            capacity_mb: 1024,
            cgroups_unavailable: None,
            runtimes: Vec::new(),
            stacks: Vec::new(),
        };
        let l = Live {
            last_seen: std::time::Instant::now(),
            heartbeat: Some(hb),
            up: true,
        };
        (node.into(), l)
    }

    #[test]
    fn requirers_get_the_providers_that_are_up_and_match() {
        let releases = HashMap::from([
            (
                "billing".to_string(),
                release("billing", "[provides.api]\nattributes = { env = \"prod\" }\n"),
            ),
            (
                "shop".to_string(),
                release(
                    "shop",
                    "[requires.api]\napp = \"billing\"\nattributes = { env = \"prod\" }\n\
                     [requires.dev]\napp = \"billing\"\nservice = \"api\"\nattributes = { env = \"dev\" }\n\
                     [requires.gone]\napp = \"nobody\"\n",
                ),
            ),
        ]);
        let placements = [
            placed("billing", 1, "n1"),
            placed("billing", 2, "n2"),
            placed("billing", 3, "n3"),
        ];
        let nodes = [
            node("n1", "10.0.0.1", "up"),
            node("n2", "10.0.0.2", "up"),
            node("n3", "10.0.0.3", "dead"),
        ];
        let live = HashMap::from([
            live(
                "n1",
                &[
                    ("billing.web.1", 31000, InstanceState::Up),
                    ("shop.web.1", 31001, InstanceState::Up),
                ],
            ),
            live("n2", &[("billing.web.2", 31000, InstanceState::Starting)]),
            live("n3", &[("billing.web.3", 31000, InstanceState::Up)]),
        ]);
        let p = providers(&releases, &placements, &nodes, &live);
        // Starting, or on a dead node: not a provider.
        assert_eq!(
            p[&("billing".into(), "api".into())].addrs,
            ["10.0.0.1:31000"]
        );
        let r = required("shop", &releases["shop"], &p);
        let by: BTreeMap<_, _> = r.iter().map(|r| (r.name.as_str(), &r.addrs)).collect();
        assert_eq!(by["api"], &["10.0.0.1:31000".to_string()]);
        assert!(by["dev"].is_empty(), "attributes do not match");
        assert!(by["gone"].is_empty(), "no such provider");
    }

    #[test]
    fn restart_cycles_are_found_before_they_start() {
        let req = |app: &str, mode: &str| {
            format!("[requires.x{app}]\napp = \"{app}\"\non_change = \"{mode}\"\n")
        };
        let releases = HashMap::from([
            (
                "billing".to_string(),
                release("billing", &req("ledger", "restart")),
            ),
            (
                "ledger".to_string(),
                release("ledger", &req("shop", "restart")),
            ),
            (
                "audit".to_string(),
                release("audit", &req("shop", "signal:HUP")),
            ),
        ]);
        let m = |t: &str| manifest::parse(t).unwrap();
        assert_eq!(
            restart_cycle("shop", &m(&req("billing", "restart")), &releases),
            Some(vec![
                "shop".into(),
                "billing".into(),
                "ledger".into(),
                "shop".into()
            ])
        );
        assert_eq!(
            restart_cycle("shop", &m(&req("shop", "restart")), &releases),
            Some(vec!["shop".into(), "shop".into()])
        );
        // A signal breaks the loop; so does not requiring anything that leads back.
        assert_eq!(
            restart_cycle("shop", &m(&req("audit", "restart")), &releases),
            None
        );
        assert_eq!(
            restart_cycle("shop", &m(&req("shop", "none")), &releases),
            None
        );
    }

    #[test]
    fn consumers_limit_who_may_discover_a_service() {
        let releases = HashMap::from([(
            "billing".to_string(),
            release("billing", "[provides.api]\nconsumers = [\"shop\"]\n"),
        )]);
        let p = providers(&releases, &[], &[], &HashMap::new());
        let want: manifest::Require = manifest::parse("[requires.api]\napp = \"billing\"\n")
            .unwrap()
            .requires["api"]
            .clone();
        assert!(resolve("shop", "api", &want, &p).is_some());
        assert!(resolve("other", "api", &want, &p).is_none());
    }
}
