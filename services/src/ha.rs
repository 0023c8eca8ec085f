//! Standbys (`--ha`): what the master tells a kind's servers, as their administrator, to know
//! whether a standby streams and how far behind it is, to make the primary wait for it, to
//! promote it, and to stop a primary's writes for a planned switchover.
//!
//! Statements and how to read their answers only: the master decides when (`failover.rs`)
//! and runs them with [`Ha::admin`], the statements on the tool's standard input.

use crate::{Addon, Error, Tool};

/// How far a standby is behind its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Bytes of the primary's log the standby has not applied yet.
    pub bytes: u64,
    /// How old what it applied last is (PostgreSQL's replay lag; Redis: since its last
    /// acknowledgement), when the server says.
    pub ms: Option<u64>,
}

/// What a kind with standbys answers to. See the module documentation.
pub trait Ha: Sync {
    /// Whether a write acknowledged to an app is on the standby too (PostgreSQL's synchronous
    /// replication), or may be on the primary alone for a moment (Redis: asynchronous).
    fn synchronous(&self) -> bool;
    /// The administrator's client on the server at `host:port`.
    fn admin(&self, a: &Addon, host: &str, port: u16) -> Result<Tool, Error>;
    /// Whether an answer says the server refused what it was told though the client
    /// exited 0.
    fn refused(&self, _out: &str) -> bool {
        false
    }
    /// Asked of the primary: how its standby streams ([`Ha::parse_lag`]); `copy` names the
    /// standby placed last (a standby from an earlier placement that still streams does not
    /// count, where the kind can tell them apart).
    fn replication(&self, copy: u32) -> String;
    /// The standby's lag from [`Ha::replication`]'s answer; `None`: no standby streams.
    fn parse_lag(&self, out: &str) -> Option<Lag>;
    /// Told to the primary: writes wait for (or are refused without) the standby placed
    /// `copy`-th (`on`), or go on alone.
    fn wait_for_standby(&self, on: bool, copy: u32) -> String;
    /// Told to the standby: you are the primary now.
    fn promote(&self) -> String;
    /// Whether [`Ha::promote`]'s answer says it worked.
    fn promoted(&self, out: &str) -> bool;
    /// Told to the promoted server right after: take writes alone (its standby comes later).
    fn after_promote(&self) -> String;
    /// Told to the primary before a switchover: no more writes, none in flight.
    fn pause_writes(&self, a: &Addon) -> String;
    /// Told to the primary when a switchover is given up: writes again.
    fn resume_writes(&self) -> String;
    /// Asked of the primary (after [`Ha::pause_writes`]): where its log ends.
    fn position(&self) -> String;
    fn parse_position(&self, out: &str) -> Option<String>;
    /// Asked of the standby: what it applied ([`Ha::caught_up`] reads it).
    fn applied(&self, pos: &str) -> String;
    /// Whether the standby's answer to [`Ha::applied`] says it has everything up to `pos`.
    fn caught_up(&self, out: &str, pos: &str) -> bool;
}

/// `key:value` of an `INFO`-like answer.
pub(crate) fn field<'a>(out: &'a str, key: &str) -> Option<&'a str> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
}
