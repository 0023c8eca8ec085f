//! zeroku-builder (being written): slugs.
pub mod slug;
