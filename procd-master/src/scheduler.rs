//! Placement: which node runs each instance `<app>.<type>.<n>`.
//!
//! Pure function of (nodes, formation, current placements). Placement is
//! sticky: an instance stays on its node while that node is schedulable, so a
//! deploy or a scale-up never shuffles running instances. New or orphaned
//! instances go to the schedulable node with the fewest instances of the same
//! app and type, then the least memory used, that still has room for the
//! instance's memory limit. An instance that fits nowhere stays unplaced
//! (`ps` shows it as pending) until capacity appears.

use crate::store::{Formation, Placement};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use zeroku_conf::names::instance_id;

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeSlot {
    pub name: String,
    pub capacity_mb: u64,
    /// Up and not draining.
    pub schedulable: bool,
}

/// A node in one (app, type)'s heap: fewest instances of that type first,
/// then least memory used, then name.
type Candidate<'a> = Reverse<(u32, u64, &'a str)>;

pub fn place(nodes: &[NodeSlot], formation: &[Formation], current: &[Placement]) -> Vec<Placement> {
    place_with(nodes, formation, current, &Containers::default())
}

/// Which apps run in containers, and which nodes can run them.
#[derive(Debug, Default)]
pub struct Containers {
    pub apps: HashSet<String>,
    pub nodes: HashSet<String>,
}

impl Containers {
    /// Whether `app`'s instances may be on `node`.
    fn allows(&self, app: &str, node: &str) -> bool {
        !self.apps.contains(app) || self.nodes.contains(node)
    }
}

/// [`place`], keeping the instances of docker apps on nodes that have a
/// Docker Engine (those on other nodes are moved; with none, they wait).
pub fn place_with(
    nodes: &[NodeSlot],
    formation: &[Formation],
    current: &[Placement],
    containers: &Containers,
) -> Vec<Placement> {
    let schedulable: HashMap<&str, &NodeSlot> = nodes
        .iter()
        .filter(|n| n.schedulable)
        .map(|n| (n.name.as_str(), n))
        .collect();
    let wanted: HashMap<(&str, &str), &Formation> = formation
        .iter()
        .map(|f| ((f.app.as_str(), f.proc_type.as_str()), f))
        .collect();

    // Keep what still should run where it runs.
    let mut used: HashMap<&str, u64> = HashMap::new();
    let mut kept: BTreeMap<(String, String, u32), Placement> = BTreeMap::new();
    for p in current {
        let Some(f) = wanted.get(&(p.app.as_str(), p.proc_type.as_str())) else {
            continue;
        };
        if p.index == 0 || p.index > f.quantity {
            continue;
        }
        let node = p
            .node
            .as_deref()
            .and_then(|n| schedulable.get(n))
            .filter(|n| containers.allows(&p.app, &n.name))
            .map(|n| n.name.as_str());
        if let Some(n) = node {
            *used.entry(n).or_default() += f.memory_mb;
        }
        kept.insert(
            (p.app.clone(), p.proc_type.clone(), p.index),
            Placement {
                node: node.map(str::to_string),
                memory_mb: f.memory_mb,
                ..p.clone()
            },
        );
    }

    let mut out = Vec::with_capacity(kept.len());
    for f in formation {
        // Per (app, type): a heap of nodes ordered by (same-type count, used
        // memory, name), so placing N instances costs N log(nodes).
        let mut count: HashMap<&str, u32> = HashMap::new();
        for i in 1..=f.quantity {
            if let Some(n) = kept
                .get(&(f.app.clone(), f.proc_type.clone(), i))
                .and_then(|p| p.node.as_deref())
            {
                *count.entry(schedulable[n].name.as_str()).or_default() += 1;
            }
        }
        let mut heap: Option<BinaryHeap<Candidate>> = None;
        for i in 1..=f.quantity {
            let key = (f.app.clone(), f.proc_type.clone(), i);
            if let Some(p) = kept.remove(&key) {
                if p.node.is_some() {
                    out.push(p);
                    continue;
                }
            }
            let heap = heap.get_or_insert_with(|| {
                schedulable
                    .values()
                    .filter(|n| containers.allows(&f.app, &n.name))
                    .map(|n| {
                        let name = n.name.as_str();
                        Reverse((
                            count.get(name).copied().unwrap_or(0),
                            used.get(name).copied().unwrap_or(0),
                            name,
                        ))
                    })
                    .collect()
            });
            let mut chosen = None;
            let mut full = Vec::new();
            while let Some(Reverse((c, u, name))) = heap.pop() {
                // `used` may have grown since this entry was pushed (other
                // types placed in between are not in this heap), so re-read.
                let real = used.get(name).copied().unwrap_or(0);
                if real != u {
                    heap.push(Reverse((c, real, name)));
                    continue;
                }
                if real + f.memory_mb <= schedulable[name].capacity_mb {
                    chosen = Some((c, name));
                    break;
                }
                full.push(Reverse((c, u, name)));
            }
            // Nodes too full for this type stay out of its heap.
            drop(full);
            let node = chosen.map(|(c, name)| {
                let u = used.entry(name).or_default();
                *u += f.memory_mb;
                heap.push(Reverse((c + 1, *u, name)));
                name.to_string()
            });
            out.push(Placement {
                id: instance_id(&f.app, &f.proc_type, i),
                app: f.app.clone(),
                proc_type: f.proc_type.clone(),
                index: i,
                node,
                memory_mb: f.memory_mb,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_apps_stay_on_nodes_with_docker() {
        let nodes: Vec<NodeSlot> = ["a", "b", "c"]
            .iter()
            .map(|n| NodeSlot {
                name: n.to_string(),
                capacity_mb: 4096,
                schedulable: true,
            })
            .collect();
        let f = |app: &str| Formation {
            app: app.into(),
            proc_type: "web".into(),
            quantity: 4,
            memory_mb: 256,
        };
        let c = Containers {
            apps: ["box".to_string()].into(),
            nodes: ["b".to_string()].into(),
        };
        let placed = place_with(&nodes, &[f("box"), f("plain")], &[], &c);
        for p in &placed {
            if p.app == "box" {
                assert_eq!(p.node.as_deref(), Some("b"), "{p:?}");
            }
        }
        assert!(placed
            .iter()
            .any(|p| p.app == "plain" && p.node.as_deref() == Some("a")));
        // Placed elsewhere before (the app just switched): moved.
        let moved = place_with(&nodes, &[f("box")], &place(&nodes, &[f("box")], &[]), &c);
        assert!(
            moved.iter().all(|p| p.node.as_deref() == Some("b")),
            "{moved:?}"
        );
        // No node with docker: they wait.
        let none = Containers {
            apps: c.apps.clone(),
            nodes: Default::default(),
        };
        assert!(place_with(&nodes, &[f("box")], &[], &none)
            .iter()
            .all(|p| p.node.is_none()));
    }

    fn nodes(spec: &[(&str, u64, bool)]) -> Vec<NodeSlot> {
        spec.iter()
            .map(|(n, c, s)| NodeSlot {
                name: n.to_string(),
                capacity_mb: *c,
                schedulable: *s,
            })
            .collect()
    }

    fn form(app: &str, t: &str, q: u32, mem: u64) -> Formation {
        Formation {
            app: app.into(),
            proc_type: t.into(),
            quantity: q,
            memory_mb: mem,
        }
    }

    fn per_node(p: &[Placement]) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for x in p {
            *m.entry(x.node.clone().unwrap_or_else(|| "-".into()))
                .or_default() += 1;
        }
        m
    }

    #[test]
    fn spreads_across_nodes() {
        let n = nodes(&[("n1", 4096, true), ("n2", 4096, true)]);
        let p = place(&n, &[form("a", "web", 4, 256)], &[]);
        assert_eq!(per_node(&p), [("n1".into(), 2), ("n2".into(), 2)].into());
        assert_eq!(p[0].id, "a.web.1");
    }

    #[test]
    fn sticky_and_scale_down() {
        let n = nodes(&[("n1", 4096, true), ("n2", 4096, true)]);
        let p = place(&n, &[form("a", "web", 4, 256)], &[]);
        let again = place(&n, &[form("a", "web", 4, 256)], &p);
        assert_eq!(p, again);
        let down = place(&n, &[form("a", "web", 1, 256)], &p);
        assert_eq!(down.len(), 1);
        assert_eq!(down[0], p[0]);
    }

    #[test]
    fn never_on_dead_or_draining_and_moves_orphans() {
        let n = nodes(&[("n1", 4096, true), ("n2", 4096, true)]);
        let p = place(&n, &[form("a", "web", 4, 256)], &[]);
        let n2_gone = nodes(&[("n1", 4096, true), ("n2", 4096, false)]);
        let moved = place(&n2_gone, &[form("a", "web", 4, 256)], &p);
        assert_eq!(per_node(&moved), [("n1".into(), 4)].into());
        // instances that were on n1 did not move
        for (a, b) in p.iter().zip(&moved) {
            if a.node.as_deref() == Some("n1") {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn respects_memory_capacity() {
        let n = nodes(&[("n1", 1000, true), ("n2", 600, true)]);
        let p = place(&n, &[form("a", "web", 4, 400)], &[]);
        assert_eq!(
            per_node(&p),
            [("n1".into(), 2), ("n2".into(), 1), ("-".into(), 1)].into()
        );
        let none = place(&[], &[form("a", "web", 2, 1)], &[]);
        assert!(none.iter().all(|p| p.node.is_none()));
    }

    #[test]
    fn other_apps_usage_counts() {
        let n = nodes(&[("n1", 1024, true), ("n2", 1024, true)]);
        let f = [form("a", "web", 1, 1024), form("b", "web", 1, 1024)];
        let p = place(&n, &f, &[]);
        assert_ne!(p[0].node, p[1].node);
        assert!(p.iter().all(|x| x.node.is_some()));
    }
}
