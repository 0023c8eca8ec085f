//! [`PortClaims`]: `$PORT`s no other worker on this host hands out. Each worker takes a lock
//! on `<dir>/<port>` (an advisory file lock, released when it lets go or dies) for every port
//! an instance of its holds, so two workers on one host never give two instances one port,
//! whatever their port ranges. The directory is 0700 and the files 0600: an app's process
//! could otherwise open a claim file and lock it, taking ports from every worker.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where every worker of this host claims its ports: the same directory for all of them.
pub fn host_dir() -> PathBuf {
    if crate::native::is_root() {
        PathBuf::from("/run/zeroku/ports")
    } else {
        std::env::temp_dir().join(format!("zeroku-ports-{}", uid()))
    }
}

fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

#[derive(Debug, Default)]
pub struct PortClaims {
    dir: Option<PathBuf>,
    held: HashMap<u16, File>,
}

impl PortClaims {
    /// Claims in `dir` (created); without a directory every claim succeeds (unit tests).
    pub fn new(dir: Option<&Path>) -> PortClaims {
        let dir = dir.and_then(|d| {
            std::fs::create_dir_all(d)
                .and_then(|()| std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)))
                .map_err(|e| tracing::warn!(dir = %d.display(), error = %e, "cannot keep port claims: ports are not coordinated with other workers"))
                .ok()
                .map(|()| d.to_path_buf())
        });
        PortClaims {
            dir,
            held: HashMap::new(),
        }
    }

    /// Claims `port` for this worker: false if another worker of this host holds it.
    pub fn claim(&mut self, port: u16) -> bool {
        if self.held.contains_key(&port) {
            return true;
        }
        let Some(dir) = &self.dir else {
            return true;
        };
        let file = match std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join(port.to_string()))
        {
            Ok(f) => f,
            Err(_) => return false,
        };
        match file.try_lock() {
            Ok(()) => {
                self.held.insert(port, file);
                true
            }
            Err(_) => false,
        }
    }

    /// Lets go of every claim but those in `in_use`.
    pub fn keep_only(&mut self, in_use: &std::collections::HashSet<u16>) {
        self.held.retain(|p, _| in_use.contains(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_never_hold_one_port() {
        let d = tempfile::tempdir().unwrap();
        let (mut a, mut b) = (
            PortClaims::new(Some(d.path())),
            PortClaims::new(Some(d.path())),
        );
        assert!(a.claim(20000));
        assert!(a.claim(20000), "its own claim again");
        // Only the workers' user may enter the directory or open a claim.
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(d.path()), 0o700);
        assert_eq!(mode(&d.path().join("20000")), 0o600);
        assert!(!b.claim(20000), "held by the other");
        assert!(b.claim(20001));
        a.keep_only(&Default::default());
        assert!(b.claim(20000), "released");
        assert!(PortClaims::new(None).claim(1));
    }
}
