//! cgroup v2 limits for native processes: one cgroup per instance and release
//! under `/sys/fs/cgroup/zeroku/`.
//!
//! Owns only the cgroup files; it must not start, signal or judge processes
//! (except `cgroup.kill` on a cgroup that is being removed).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use zeroku_conf::Limits;

const CGROUP_FS: &str = "/sys/fs/cgroup";
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];
/// The CPU period written to `cpu.max`, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// A usable `/sys/fs/cgroup/zeroku` with memory, pids and cpu delegated.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
}

impl Cgroups {
    /// Checks that limits can be enforced and prepares the parent cgroup;
    /// `Err` is a one-line reason for the heartbeat.
    pub fn detect(as_root: bool) -> Result<Cgroups, String> {
        let fs = Path::new(CGROUP_FS);
        let controllers_file = fs.join("cgroup.controllers");
        let available = match std::fs::read_to_string(&controllers_file) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let v1 = fs.join("memory").is_dir() || fs.join("unified").is_dir();
                return Err(if v1 {
                    format!("cgroup v2 is not mounted at {CGROUP_FS} (this host uses cgroup v1)")
                } else {
                    format!("cgroup v2 is not mounted at {CGROUP_FS}")
                });
            }
            Err(e) => return Err(format!("cannot read {}: {e}", controllers_file.display())),
        };
        let missing = missing_controllers(&available);
        if !missing.is_empty() {
            return Err(format!(
                "cgroup v2 controllers not available at {CGROUP_FS}: {}",
                missing.join(", ")
            ));
        }
        if !as_root {
            return Err("the worker does not run as root, so it cannot create cgroups".into());
        }
        enable_controllers(fs)?;
        let root = fs.join("zeroku");
        match std::fs::create_dir(&root) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", root.display())),
        }
        enable_controllers(&root)?;
        Ok(Cgroups { root })
    }

    /// The cgroup directory of one instance at one release.
    pub fn dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// Creates (or reuses) the cgroup of `key` and writes its limits.
    pub fn create(&self, key: &str, limits: &Limits) -> Result<PathBuf, String> {
        let dir = self.dir(key);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create cgroup {}: {e}", dir.display())),
        }
        for (file, value) in limit_values(limits) {
            write_file(&dir.join(file), &value)?;
        }
        Ok(dir)
    }

    /// Moves `pid` into the cgroup `dir`.
    pub fn add(&self, dir: &Path, pid: u32) -> Result<(), String> {
        write_file(&dir.join("cgroup.procs"), &pid.to_string())
    }

    /// Removes the cgroup of `key`, killing whatever is still inside it (the
    /// process it was made for has already exited). Logs failures.
    pub fn remove(&self, key: &str) {
        let dir = self.dir(key);
        for attempt in 0..20 {
            match std::fs::remove_dir(&dir) {
                Ok(()) => return,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return,
                Err(e) if attempt == 19 => {
                    tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove cgroup");
                    return;
                }
                Err(_) => {
                    if attempt == 0 {
                        // Leftovers (daemonized grandchildren): kernel >= 5.14.
                        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// Which of the required controllers are absent from a `cgroup.controllers`
/// (or `cgroup.subtree_control`) line.
fn missing_controllers(listed: &str) -> Vec<&'static str> {
    let have: Vec<&str> = listed.split_ascii_whitespace().collect();
    CONTROLLERS
        .into_iter()
        .filter(|c| !have.contains(c))
        .collect()
}

/// Enables the required controllers for the children of `dir`.
fn enable_controllers(dir: &Path) -> Result<(), String> {
    let file = dir.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let missing = missing_controllers(&enabled);
    if missing.is_empty() {
        return Ok(());
    }
    let line: Vec<String> = missing.iter().map(|c| format!("+{c}")).collect();
    write_file(&file, &line.join(" "))
}

/// The `(file, value)` pairs that enforce `limits`; zero means no limit.
fn limit_values(limits: &Limits) -> [(&'static str, String); 3] {
    let memory = match limits.memory_mb {
        0 => "max".to_string(),
        mb => mb.saturating_mul(1024 * 1024).to_string(),
    };
    let pids = match limits.pids {
        0 => "max".to_string(),
        n => n.to_string(),
    };
    let cpu = match limits.cpu_millis {
        0 => format!("max {CPU_PERIOD_US}"),
        m => {
            let quota = (u64::from(m) * CPU_PERIOD_US / 1000).max(CPU_MIN_QUOTA_US);
            format!("{quota} {CPU_PERIOD_US}")
        }
    };
    [("memory.max", memory), ("pids.max", pids), ("cpu.max", cpu)]
}

fn write_file(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value)
        .map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_values_follow_the_spec() {
        let l = Limits {
            memory_mb: 512,
            cpu_millis: 1500,
            pids: 100,
        };
        let v = limit_values(&l);
        assert_eq!(v[0], ("memory.max", "536870912".to_string()));
        assert_eq!(v[1], ("pids.max", "100".to_string()));
        assert_eq!(v[2], ("cpu.max", "150000 100000".to_string()));

        let none = Limits {
            memory_mb: 0,
            cpu_millis: 0,
            pids: 0,
        };
        let v = limit_values(&none);
        assert_eq!(v[0].1, "max");
        assert_eq!(v[1].1, "max");
        assert_eq!(v[2].1, "max 100000");

        let tiny = Limits {
            memory_mb: 1,
            cpu_millis: 5,
            pids: 1,
        };
        assert_eq!(limit_values(&tiny)[2].1, "1000 100000");
    }

    #[test]
    fn missing_controllers_are_named() {
        assert!(missing_controllers("cpuset cpu io memory hugetlb pids rdma").is_empty());
        assert_eq!(missing_controllers("cpuset io memory"), vec!["pids", "cpu"]);
        assert_eq!(missing_controllers(""), vec!["memory", "pids", "cpu"]);
    }
}
