//! zeroku-builder: turns an app's source into a runnable slug.
//!
//! * [`build`]: one build, Heroku-style: a source archive in, buildpacks run over it
//!   ([`buildpack`], Heroku's v2 API; [`builtin`], the buildpacks zeroku ships), a slug and
//!   process types out.
//!
//! The slug it packs, and the store it puts slugs in, are the `zeroku-slug` crate's: workers and
//! frontends read slugs through that crate without linking the builder.
//!
//! The builder never talks to the master's database: it deals in directories, archives, image
//! files and sha256s, and whoever calls it records what it produced. Its only network use is
//! `git clone` of a buildpack that an app names by URL.

#![forbid(unsafe_code)]

pub mod build;
pub mod buildpack;
pub mod builtin;
