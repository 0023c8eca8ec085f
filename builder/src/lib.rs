//! zeroku-builder: turns an app's source into a runnable slug.
//!
//! It owns the build and the artefact it produces:
//!
//! * [`build`]: one build, Heroku-style: a source archive in, buildpacks run over it
//!   ([`buildpack`], Heroku's v2 API; [`builtin`], the buildpacks zeroku ships), a slug and
//!   process types out;
//! * [`slug`]: the slug format, a reproducible squashfs image content-addressed by its sha256
//!   ([`slug::pack`], [`slug::unpack`], [`slug::verify`]), and the safety rules an image must
//!   pass before a worker extracts it;
//! * [`store`]: [`store::SlugStore`], the content-addressed directory of images that builds write
//!   into and that workers fill from downloads.
//!
//! The builder never talks to the master's database: it deals in directories, archives, image
//! files and sha256s, and whoever calls it records what it produced. Its only network use is
//! `git clone` of a buildpack that an app names by URL.

#![forbid(unsafe_code)]

pub mod build;
pub mod buildpack;
pub mod builtin;
pub mod slug;
pub mod store;

pub use slug::{SlugError, SlugInfo};
pub use store::SlugStore;
