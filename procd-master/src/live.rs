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
        let needed = match cfg.max_heartbeats_per_sec {
            0 => 0,
            max => (nodes as u64).saturating_mul(1000).div_ceil(max),
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

/// The pace in force, and the one before it while nodes may still be keeping that one.
#[derive(Debug)]
pub struct Paces {
    pub now: Pace,
    before: Pace,
    since: Instant,
}

impl Paces {
    pub fn new(p: Pace) -> Paces {
        Paces {
            now: p,
            before: p,
            since: Instant::now(),
        }
    }

    /// Takes `p`; whether it differs from the pace in force.
    pub fn set(&mut self, p: Pace) -> bool {
        if p == self.now {
            return false;
        }
        self.before = self.now;
        self.now = p;
        self.since = Instant::now();
        true
    }

    /// How long a node may be silent now: after a change to a shorter interval, nodes that
    /// have not heard of it yet keep the old one, so the old timeout holds for one more of it.
    pub fn dead_after(&self) -> Duration {
        if self.since.elapsed() < self.before.dead_after {
            self.now.dead_after.max(self.before.dead_after)
        } else {
            self.now.dead_after
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
        assert_eq!(
            Pace::for_nodes(&cfg(1000), 1001).heartbeat,
            Duration::from_millis(1001)
        );
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
        let mut p = Paces::new(small);
        assert!(p.set(big));
        assert_eq!(p.dead_after(), big.dead_after);
    }
}
