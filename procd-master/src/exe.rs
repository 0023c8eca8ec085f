//! This program's own path, for the git hooks and SSH forced commands that
//! run it again.

use std::path::PathBuf;

/// This program's path. When the binary was replaced while running (an
/// upgrade), Linux reports the old one as `<path> (deleted)`: the new file
/// at `<path>` is the one wanted.
pub fn zeroku_exe() -> std::io::Result<PathBuf> {
    let p = std::env::current_exe()?;
    let s = p.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(live) => PathBuf::from(live),
        None => p,
    })
}
