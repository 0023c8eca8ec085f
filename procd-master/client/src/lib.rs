//! zeroku-client: how everything that is not the master speaks to the master's API.
//!
//! * [`Client`] (in [`client`]): the HTTP client of `/v1` — bearer token, JSON in and out, streamed
//!   uploads, downloads and line-by-line answers, WebSocket upgrades — used by the CLI, workers
//!   and frontends;
//! * [`v1`]: the request and response types of `/v1` that several parts share (registration of
//!   nodes and frontends, the error body, the build result line), so the master and its callers
//!   cannot drift apart;
//! * [`files`]: writing credentials to disk so that only their owner can read them;
//! * [`join`]: a worker's or frontend's saved credentials, and retrying while the master is
//!   not up yet.
//!
//! This crate must not hold the master's state: no SQLite, no scheduler, no ZeroMQ. A worker or a
//! frontend links it instead of the master.

#![forbid(unsafe_code)]

pub mod client;
pub mod files;
pub mod join;
pub mod v1;

pub use client::{reader_body, Body, Client, ClientError, Method, Socket};
pub use files::write_private;
