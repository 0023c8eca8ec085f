//! zeroku-slug: the slug, the artefact every part of zeroku hands around.
//!
//! * [`image`]: the slug format, a reproducible squashfs image content-addressed by its sha256
//!   ([`pack`], [`check`], [`unpack`], [`verify`], [`sha256_file`]), and the safety rules an
//!   image must pass before anyone extracts it (no path out of its root, no device nodes, no
//!   setuid bits);
//! * [`store`]: [`SlugStore`], the content-addressed directory of images that builds write into,
//!   the master serves and workers fill from downloads;
//! * [`cache`]: [`SlugCache`], a node's or frontend's images and their unpacked, read-only trees.
//!
//! This crate knows files, images and sha256s only. It must not speak HTTP or ZeroMQ, run
//! builds, or know about apps, releases or the master's state: whoever calls it fetches the
//! bytes and decides which slugs are still needed.

#![forbid(unsafe_code)]

pub mod cache;
pub mod image;
pub mod store;

pub use cache::SlugCache;
pub use image::{check, is_valid_sha256, pack, sha256_file, unpack, verify, SlugError, SlugInfo};
pub use store::SlugStore;
