//! zeroku-worker: the node agent.
//!
//! - [`agent`]: joins the master, fetches this node's list over the API,
//!   then follows it on ZMQ SUB; sends heartbeats and logs on PUSH.
//! - [`supervisor`]: the policy that makes running processes match the list
//!   (start-new-then-stop-old, back-off, crash detection, re-adoption).
//! - [`runtime`]: the trait a process runtime implements; [`native`] runs
//!   Procfile commands from unpacked slugs.
//! - [`logs`]: tails per-instance log files across worker restarts.
//! - [`relay`]: handler processes reach frontends on other nodes through
//!   the worker (`ipc://` to the handler, CURVE over TCP to the frontend).
//!
//! The worker must never decide *where* something runs (that is the
//! master's scheduler), and it must never stop app processes because it is
//! itself stopping: a worker restart leaves them running and re-adopts them.

// Unsafe code is denied everywhere but `native::sys`, which wraps the few
// libc calls std lacks (setsid in pre_exec, kill of a process group, waitpid).
#![deny(unsafe_code)]

pub mod agent;
pub mod bus;
pub mod docker;
pub mod forward;
pub mod logs;
pub mod metrics;
pub mod native;
pub mod ports;
pub mod relay;
pub mod require;
pub mod runtime;
pub mod runtimes;
pub mod supervisor;
pub mod terminal;

pub use agent::{run, WorkerError};
