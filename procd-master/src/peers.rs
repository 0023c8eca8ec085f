//! [`Peers`]: who may speak on the bus. Every node and frontend registers a CURVE public key
//! when it joins; the ZAP handler lets in only those keys, and the bus checks each message and
//! subscription against the peer behind its key at the moment it arrives, so a node removed or
//! re-keyed is cut off at once.

use crate::store::{Frontend, Node};
use std::collections::HashMap;
use std::sync::RwLock;
use zeroku_conf::wire::{node_topic, ALIVE_TOPIC, ROUTES_TOPIC};

/// What a registered key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    Node(String),
    Frontend(String),
}

#[derive(Default)]
struct Inner {
    /// z85 public key → its peer.
    by_key: HashMap<String, Peer>,
    /// Node name → the id of its key (for its topic).
    node_key_ids: HashMap<String, String>,
}

#[derive(Default)]
pub struct Peers {
    inner: RwLock<Inner>,
}

fn key_id(z85: &str) -> Option<String> {
    zeroku_bus::keys::decode(z85, "key")
        .ok()
        .map(|k| zeroku_bus::key_id(&k))
}

impl Peers {
    /// The keys of every registered node and frontend.
    pub fn load(nodes: &[Node], frontends: &[Frontend]) -> Peers {
        let p = Peers::default();
        for n in nodes {
            p.set_node(&n.name, &n.bus_key);
        }
        for f in frontends {
            p.set_frontend(&f.name, &f.bus_key);
        }
        p
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// `key` is now node `name`'s only key (an empty key: none).
    pub fn set_node(&self, name: &str, key: &str) {
        let mut i = self.write();
        let peer = Peer::Node(name.to_string());
        i.by_key.retain(|_, p| *p != peer);
        i.node_key_ids.remove(name);
        if let Some(id) = key_id(key) {
            i.by_key.insert(key.to_string(), peer);
            i.node_key_ids.insert(name.to_string(), id);
        }
    }

    /// `key` is now frontend `name`'s only key.
    pub fn set_frontend(&self, name: &str, key: &str) {
        let mut i = self.write();
        let peer = Peer::Frontend(name.to_string());
        i.by_key.retain(|_, p| *p != peer);
        if key_id(key).is_some() {
            i.by_key.insert(key.to_string(), peer);
        }
    }

    /// The peer whose key is `key` (z85), if it is registered.
    pub fn get(&self, key: &str) -> Option<Peer> {
        self.read().by_key.get(key).cloned()
    }

    /// Whether `key` (raw) is registered: what the ZAP handler asks.
    pub fn knows(&self, key: &zeroku_bus::PublicKey) -> Option<String> {
        let z = zeroku_bus::keys::z85(key);
        self.read().by_key.contains_key(&z).then_some(z)
    }

    /// The topic of node `name`'s list, if it has a key.
    pub fn node_topic(&self, name: &str) -> Option<String> {
        self.read()
            .node_key_ids
            .get(name)
            .map(|id| node_topic(name, id))
    }

    /// Whether the peer with key `key` may subscribe to `topic`: a node to its own list's
    /// topic, a frontend to the route table; nobody to anything else.
    pub fn may_subscribe(&self, key: &str, topic: &[u8]) -> bool {
        match self.get(key) {
            Some(Peer::Node(name)) => {
                topic == ALIVE_TOPIC.as_bytes()
                    || self
                        .node_topic(&name)
                        .is_some_and(|t| t.as_bytes() == topic)
            }
            Some(Peer::Frontend(_)) => topic == ROUTES_TOPIC.as_bytes(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, key: &str) -> Node {
        Node {
            name: name.into(),
            capacity_mb: 1,
            state: "up".into(),
            draining: false,
            joined_at: 0,
            host: "127.0.0.1".into(),
            bus_key: key.into(),
        }
    }

    #[test]
    fn a_key_may_have_only_its_own_topics_and_a_new_key_cuts_the_old_one_off() {
        let (k1, k2, kf) = (
            zeroku_bus::Keys::generate().unwrap(),
            zeroku_bus::Keys::generate().unwrap(),
            zeroku_bus::Keys::generate().unwrap(),
        );
        let f = Frontend {
            name: "f1".into(),
            handler_host: "127.0.0.1".into(),
            bus_key: kf.public_z85(),
            node: String::new(),
            ipc_dir: String::new(),
        };
        let p = Peers::load(&[node("n1", &k1.public_z85()), node("old", "")], &[f]);
        let t1 = p.node_topic("n1").unwrap();
        assert_eq!(t1, format!("node/n1/{}", k1.id()));
        assert!(p.may_subscribe(&k1.public_z85(), t1.as_bytes()));
        assert!(!p.may_subscribe(&k1.public_z85(), b""));
        assert!(!p.may_subscribe(&k1.public_z85(), b"node/"));
        assert!(!p.may_subscribe(&k1.public_z85(), b"routes"));
        assert!(p.may_subscribe(&kf.public_z85(), b"routes"));
        assert!(!p.may_subscribe(&kf.public_z85(), t1.as_bytes()));
        assert!(!p.may_subscribe(&k2.public_z85(), t1.as_bytes()));
        assert_eq!(p.node_topic("old"), None);
        // n1 joins again with another key: the old key is nobody.
        p.set_node("n1", &k2.public_z85());
        assert_eq!(p.get(&k1.public_z85()), None);
        assert!(!p.may_subscribe(&k1.public_z85(), t1.as_bytes()));
        let t2 = p.node_topic("n1").unwrap();
        assert_ne!(t1, t2);
        assert!(p.may_subscribe(&k2.public_z85(), t2.as_bytes()));
        assert_eq!(p.knows(&k2.public), Some(k2.public_z85()));
        assert_eq!(p.knows(&k1.public), None);
    }
}
