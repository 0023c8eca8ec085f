//! zeroku-worker (being written)
pub mod logs;
pub mod native;
pub mod runtime;
