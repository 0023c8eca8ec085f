//! zeroku-builder: turns an app's source into a runnable slug.
//!
//! The builder will eventually receive `git push`es and run buildpacks over the pushed tree. For
//! now it owns the artefact those builds produce:
//!
//! * [`slug`]: the slug format, a reproducible squashfs image content-addressed by its sha256
//!   ([`slug::pack`], [`slug::unpack`], [`slug::verify`]), and the safety rules an image must
//!   pass before a worker extracts it;
//! * [`store`]: [`store::SlugStore`], the content-addressed directory of images that builds write
//!   into and that workers fill from downloads.
//!
//! The builder never talks to the master's database: it deals in directories, image files and
//! sha256s, and whoever calls it records what it produced.

#![forbid(unsafe_code)]

pub mod slug;
pub mod store;

pub use slug::{SlugError, SlugInfo};
pub use store::SlugStore;
