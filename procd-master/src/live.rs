//! [`Live`]: what the master last heard from a node, kept in memory only
//! (a restarted master hears every node again within a heartbeat); [`Pace`]: how often it
//! wants to hear, for the cluster's size.

use std::time::{Duration, Instant};
use zeroku_conf::config::MasterConfig;
use zeroku_conf::Heartbeat;

/// What the master last heard from a node.
pub struct Live {
    pub last_seen: Instant,
    pub heartbeat: Option<Heartbeat>,
    /// The store has the node up as of this heartbeat (false until its first one, and once
    /// it is marked dead): a heartbeat equal to the last is then only a sign of life.
    pub up: bool,
}

/// How often the master wants heartbeats and how long a node may be silent before it is dead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub heartbeat: Duration,
    pub dead_after: Duration,
}

impl Pace {
    /// The pace for a cluster of `nodes`: the configured interval, or, where `nodes` at that
    /// interval would send more than `max_heartbeats_per_sec`, the interval that does not; the
    /// dead timeout keeps its ratio to the interval (3 s for 1 s, 15 s for 5 s).
    pub fn for_nodes(cfg: &MasterConfig, nodes: usize) -> Pace {
        let base = cfg.heartbeat_interval_ms.max(1);
        // In whole seconds, so that a node joining or leaving moves the pace only at a
        // boundary (every 1,000 nodes at the defaults), not by a millisecond each time.
        let needed = match cfg.max_heartbeats_per_sec {
            0 => 0,
            max => (nodes as u64)
                .saturating_mul(1000)
                .div_ceil(max)
                .div_ceil(1000)
                .saturating_mul(1000),
        };
        let every = base.max(needed);
        Pace {
            heartbeat: Duration::from_millis(every),
            dead_after: Duration::from_millis(
                (u128::from(cfg.dead_after_ms) * u128::from(every) / u128::from(base)) as u64,
            ),
        }
    }
}

/// The pace in force, and the longest dead timeout of an earlier pace that nodes may still be
/// keeping, with when it stops counting.
#[derive(Debug)]
pub struct Paces {
    pub now: Pace,
    grace: Option<(Duration, Instant)>,
}

impl Paces {
    pub fn new(p: Pace) -> Paces {
        Paces {
            now: p,
            grace: None,
        }
    }

    /// Takes `p`; whether it differs from the pace in force.
    pub fn set(&mut self, p: Pace) -> bool {
        if p == self.now {
            return false;
        }
        // Nodes that have not heard yet keep the outgoing interval: its timeout holds for one
        // more of it, and a longer one still in its grace keeps its own.
        let now = Instant::now();
        let old = (self.now.dead_after, now + self.now.dead_after);
        self.grace = match self.grace.filter(|(_, until)| *until > now) {
            Some((d, until)) if d >= old.0 => Some((d, until.max(old.1))),
            _ => Some(old),
        };
        self.now = p;
        true
    }

    /// How long a node may be silent now.
    pub fn dead_after(&self) -> Duration {
        match self.grace {
            Some((d, until)) if until > Instant::now() => self.now.dead_after.max(d),
            _ => self.now.dead_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(max: u64) -> MasterConfig {
        MasterConfig {
            heartbeat_interval_ms: 1000,
            dead_after_ms: 3000,
            max_heartbeats_per_sec: max,
            ..MasterConfig::default()
        }
    }

    #[test]
    fn the_interval_grows_only_past_the_heartbeat_budget() {
        let s = Duration::from_secs;
        assert_eq!(Pace::for_nodes(&cfg(1000), 0).heartbeat, s(1));
        assert_eq!(Pace::for_nodes(&cfg(1000), 1000).heartbeat, s(1));
        assert_eq!(Pace::for_nodes(&cfg(1000), 1001).heartbeat, s(2));
        assert_eq!(Pace::for_nodes(&cfg(1000), 2000).heartbeat, s(2));
        let p = Pace::for_nodes(&cfg(1000), 5000);
        assert_eq!((p.heartbeat, p.dead_after), (s(5), s(15)));
        assert_eq!(Pace::for_nodes(&cfg(0), 100_000).heartbeat, s(1));
    }

    #[test]
    fn a_shorter_timeout_waits_for_nodes_on_the_old_pace() {
        let big = Pace::for_nodes(&cfg(1000), 5000);
        let small = Pace::for_nodes(&cfg(1000), 10);
        let mut p = Paces::new(big);
        assert!(!p.set(big));
        assert!(p.set(small));
        assert_eq!(p.now, small);
        assert_eq!(p.dead_after(), big.dead_after);
        // A small change right after a big one keeps the big one's grace.
        let mid = Pace::for_nodes(&cfg(1000), 3000);
        assert!(p.set(mid));
        assert_eq!(p.dead_after(), big.dead_after);
        let mut p = Paces::new(small);
        assert!(p.set(big));
        assert_eq!(p.dead_after(), big.dead_after);
    }
}
