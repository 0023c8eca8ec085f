//! The master's data directory and what may read it. Nothing in it is readable by anyone but
//! the master: directories are 0700, secret files 0600. Two exceptions are traversable (0711,
//! not listable), because builds run as the app's uid and must reach their own directory
//! below them: the data directory itself and `builds/` (with `work/` and `cache/`), whose
//! entries each belong to one app's build uid, 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Creates `dir` if needed and sets its mode.
pub fn ensure(dir: &Path, mode: u32) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// A directory only the master may enter.
pub fn private(dir: &Path) -> std::io::Result<()> {
    ensure(dir, 0o700)
}

/// A directory others may pass through to an entry they own, but not list.
pub fn passable(dir: &Path) -> std::io::Result<()> {
    ensure(dir, 0o711)
}

/// The SQLite database and its WAL and shared-memory files: 0600. SQLite gives the WAL and
/// shm files the database file's mode, so the database is made 0600 before SQLite opens it.
pub fn private_database(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if !path.exists() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = path.with_file_name(format!(
            "{}{suffix}",
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("master.db")
        ));
        if p.exists() {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}
