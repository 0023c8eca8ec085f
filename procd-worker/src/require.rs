//! What an instance is told about the services it requires (`zeroku.toml`):
//! `ZEROKU_REQUIRE_<NAME>=host:port,...` at start, and a file per requirement
//! that is rewritten when the providers change (`ZEROKU_REQUIRE_<NAME>_FILE`,
//! one `host:port` per line), for processes that re-read it on a signal or
//! from a hook.
//!
//! The files live in `<data>/require/<instance>.v<release>/` (processes of
//! one release share them: they require the same),
//! a directory of the worker's user with the app's group, 0750, files 0640:
//! the app reads them, and can neither replace nor link anything there, so
//! nothing the worker (root) writes can be redirected by the app; no other
//! app can read them. A file is written whole under another name, then
//! renamed over the old one: a reader never sees half of one.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroku_conf::manifest::env_name;
use zeroku_conf::InstanceSpec;

/// The variable naming the instance's requirement directory.
pub const DIR_VAR: &str = "ZEROKU_REQUIRE_DIR";

/// Whether `key` is a requirement's address list (`ZEROKU_REQUIRE_API`).
pub fn is_addrs_var(key: &str) -> bool {
    key.starts_with("ZEROKU_REQUIRE_")
        && key != DIR_VAR
        && !key.ends_with("_FILE")
        && !key.ends_with("_ADDR")
}

/// The directory of `spec`'s files under `root`.
pub fn dir_of(root: &Path, spec: &InstanceSpec) -> PathBuf {
    root.join(format!("{}.v{}", spec.id, spec.release))
}

/// The variables an instance of `spec` starts with (`dir`: where its files
/// are, when it has them).
pub fn env(spec: &InstanceSpec, dir: Option<&Path>) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for r in &spec.requires {
        let name = env_name(&r.name);
        if let Some(d) = dir {
            v.push((
                format!("{name}_FILE"),
                d.join(&r.name).display().to_string(),
            ));
        }
        v.push((name, r.addrs.join(",")));
    }
    if let (Some(d), false) = (dir, spec.requires.is_empty()) {
        v.push((DIR_VAR.to_string(), d.display().to_string()));
    }
    v
}

/// Writes every requirement file of `spec` under `root` (group `gid`, when
/// the worker is root) and returns the directory.
pub fn write(root: &Path, spec: &InstanceSpec, gid: Option<u32>) -> std::io::Result<PathBuf> {
    let dir = dir_of(root, spec);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750))?;
    if let Some(g) = gid {
        std::os::unix::fs::chown(&dir, Some(0), Some(g))?;
    }
    for r in &spec.requires {
        let tmp = dir.join(format!(".{}.new", r.name));
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        if let Some(g) = gid {
            std::os::unix::fs::fchown(&f, Some(0), Some(g))?;
        }
        let mut text = r.addrs.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        f.write_all(text.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, dir.join(&r.name))?;
    }
    Ok(dir)
}

/// Removes the directories under `root` that are not in `keep`.
pub fn gc(root: &Path, keep: &HashSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if !keep.contains(&p) {
            if let Err(e) = std::fs::remove_dir_all(&p) {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove a requirement directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroku_conf::manifest::OnChange;
    use zeroku_conf::Required;

    fn spec(addrs: &[&str]) -> InstanceSpec {
        InstanceSpec {
            id: "shop.web.1".into(),
            app: "shop".into(),
            app_seq: 1,
            proc_type: "web".into(),
            index: 1,
            release: 3,
            command: "run".into(),
            env: Default::default(),
            slug: zeroku_conf::SlugRef {
                sha256: "x".into(),
                size: 1,
            },
            limits: Default::default(),
            stack: None,
            tty: None,
            handler: Vec::new(),
            restart: 0,
            stop_when_lost_ms: None,
            addon: None,
            requires: vec![Required {
                name: "api".into(),
                on_change: OnChange::None,
                addrs: addrs.iter().map(|a| a.to_string()).collect(),
            }],
        }
    }

    #[test]
    fn files_are_rewritten_whole_and_named_in_the_environment() {
        let root = tempfile::tempdir().unwrap();
        let s = spec(&["10.0.0.1:31000", "10.0.0.2:31000"]);
        let dir = write(root.path(), &s, None).unwrap();
        let file = dir.join("api");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "10.0.0.1:31000\n10.0.0.2:31000\n"
        );
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
        let env: std::collections::BTreeMap<_, _> = env(&s, Some(&dir)).into_iter().collect();
        assert_eq!(env["ZEROKU_REQUIRE_API"], "10.0.0.1:31000,10.0.0.2:31000");
        assert_eq!(env["ZEROKU_REQUIRE_API_FILE"], file.display().to_string());
        assert!(is_addrs_var("ZEROKU_REQUIRE_API"));
        assert!(!is_addrs_var("ZEROKU_REQUIRE_API_FILE"));
        write(root.path(), &spec(&[]), None).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "");
        gc(root.path(), &HashSet::new());
        assert!(!dir.exists());
    }
}
