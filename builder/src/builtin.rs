//! The built-in buildpacks. They are ordinary buildpack directories under
//! `buildpacks/` in the repository (anyone can read or copy them); the
//! binary carries them, and [`install`] writes them out for the master.

use crate::buildpack::Buildpack;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

macro_rules! files {
    ($($p:literal),* $(,)?) => {
        &[$(($p, include_str!(concat!("../../buildpacks/", $p)))),*]
    };
}

/// (path under `buildpacks/`, contents).
const FILES: &[(&str, &str)] = files!(
    "python/bin/detect",
    "python/bin/compile",
    "rust/bin/detect",
    "rust/bin/compile",
    "rust/bin/release",
    "static/bin/detect",
    "static/bin/compile",
    "static/bin/release",
    "procfile/bin/detect",
    "procfile/bin/compile",
);

/// The order `bin/detect` is tried in: languages first, then a plain site,
/// then anything with a Procfile.
pub const ORDER: &[&str] = &["python", "rust", "static", "procfile"];

/// Writes the built-in buildpacks under `dir` (replacing older copies) and
/// returns them in detect order.
pub fn install(dir: &Path) -> io::Result<Vec<Buildpack>> {
    for (rel, text) in FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent)?;
        }
        if fs::read_to_string(&p).ok().as_deref() != Some(*text) {
            let tmp = p.with_extension("tmp");
            fs::write(&tmp, text)?;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
            fs::rename(&tmp, &p)?;
        }
    }
    Ok(ORDER
        .iter()
        .map(|n| Buildpack {
            name: n.to_string(),
            dir: dir.join(n),
        })
        .collect())
}
