//! [`Live`]: what the master last heard from a node, kept in memory only
//! (a restarted master hears every node again within a heartbeat).

use std::time::Instant;
use zeroku_conf::Heartbeat;

/// What the master last heard from a node.
pub struct Live {
    pub last_seen: Instant,
    pub heartbeat: Option<Heartbeat>,
}
