//! zeroku-conf: the vocabulary every zeroku part shares.
//!
//! - [`names`]: what an app, process type or node may be called.
//! - [`model`]: the desired-state model (releases, process specs, the node
//!   process list) and what workers report back (heartbeats, log lines).
//! - [`wire`]: the versioned rmp-serde envelope every ZMQ message travels in.
//! - [`config`]: each daemon's TOML config file, with defaults and validation.
//! - [`procfile`]: the Heroku `Procfile` parser.
//! - [`manifest`]: `zeroku.toml`, the services an app provides and requires.
//! - [`limits`]: what a process can be started with (command and environment sizes).
//!
//! This crate is pure data and codecs: it must not open sockets, start
//! threads or touch the process table.
#![forbid(unsafe_code)]

pub mod config;
pub mod limits;
pub mod manifest;
pub mod model;
pub mod names;
pub mod procfile;
pub mod time;
pub mod usage;
pub mod wire;

pub use model::*;
