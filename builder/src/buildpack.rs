//! Heroku's buildpack API (v2), run exactly as Heroku runs it:
//!
//! * `bin/detect BUILD_DIR`: exit 0 when the buildpack applies; its stdout is
//!   the name shown to the user;
//! * `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`: turns the source into a
//!   runnable tree in place; non-zero exit fails the build;
//! * `bin/release BUILD_DIR` (optional): YAML whose `default_process_types`
//!   fill in what the Procfile lacks. zeroku also reads `default_routes`
//!   (prefix → `dir:<dir>`/`web`/`handler`), its own extension, which the
//!   static buildpack uses to serve a site without a process;
//! * `export` in the buildpack's directory, written by compile: sourced
//!   before every later buildpack runs (multi-buildpack builds).
//!
//! Every script runs in its own process group with a clean environment (no
//! config vars: those are in ENV_DIR), under the build's [`Limits`]: a wall
//! time after which the whole group is killed, a per-process data size
//! limit (`prlimit --data`), and, when zeroku runs as root, an unprivileged
//! uid. Output (stdout and stderr together) goes line by line to the
//! caller's sink, so `-----> ` and 7-space lines reach the user as written.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where build output goes, one line at a time (no trailing newline).
pub type Sink<'a> = &'a mut dyn FnMut(&str);

/// What a build may use.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall time for the whole build; each script gets what is left.
    pub deadline: Instant,
    /// Data segment limit per process, in MiB (0 = none).
    pub memory_mb: u64,
    /// Run scripts as this uid/gid (when running as root).
    pub user: Option<(u32, u32)>,
}

/// A buildpack directory and the name it is known by.
#[derive(Debug, Clone)]
pub struct Buildpack {
    pub name: String,
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildpackError {
    #[error("buildpack {buildpack}: cannot run {script}: {source}")]
    Spawn {
        buildpack: String,
        script: String,
        #[source]
        source: std::io::Error,
    },
    #[error("buildpack {buildpack}: {script} failed ({status})")]
    Failed {
        buildpack: String,
        script: String,
        status: String,
    },
    #[error("the build ran out of time: {script} of buildpack {buildpack} was killed after the build's time limit")]
    TimedOut { buildpack: String, script: String },
    #[error("the build ran out of memory: {script} of buildpack {buildpack} could not allocate within the limit of {limit_mb} MB per process ([master] build_memory_mb)")]
    OutOfMemory {
        buildpack: String,
        script: String,
        limit_mb: u64,
    },
    #[error("buildpack {buildpack}: bin/release printed YAML zeroku cannot read: {why}")]
    BadRelease { buildpack: String, why: String },
}

/// What `bin/release` declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    pub default_process_types: BTreeMap<String, String>,
    pub default_routes: BTreeMap<String, String>,
}

impl Buildpack {
    /// Runs `bin/detect`: `Some(name)` when it applies.
    pub fn detect(
        &self,
        build_dir: &Path,
        exports: &[PathBuf],
        limits: &Limits,
        out: Sink,
    ) -> Result<Option<String>, BuildpackError> {
        let (status, stdout) = self.run("bin/detect", &[build_dir], exports, limits, out, true)?;
        if !status {
            return Ok(None);
        }
        let name = stdout.trim();
        Ok(Some(if name.is_empty() {
            self.name.clone()
        } else {
            name.lines().next().unwrap_or(name).to_string()
        }))
    }

    /// Runs `bin/compile BUILD_DIR CACHE_DIR ENV_DIR`.
    pub fn compile(
        &self,
        build_dir: &Path,
        cache_dir: &Path,
        env_dir: &Path,
        exports: &[PathBuf],
        limits: &Limits,
        out: Sink,
    ) -> Result<(), BuildpackError> {
        let (ok, _) = self.run(
            "bin/compile",
            &[build_dir, cache_dir, env_dir],
            exports,
            limits,
            out,
            false,
        )?;
        if ok {
            Ok(())
        } else {
            Err(BuildpackError::Failed {
                buildpack: self.name.clone(),
                script: "bin/compile".into(),
                status: "non-zero exit".into(),
            })
        }
    }

    /// Runs `bin/release BUILD_DIR` if the buildpack has one.
    pub fn release(
        &self,
        build_dir: &Path,
        exports: &[PathBuf],
        limits: &Limits,
        out: Sink,
    ) -> Result<Release, BuildpackError> {
        if !self.dir.join("bin/release").exists() {
            return Ok(Release::default());
        }
        let (ok, stdout) = self.run("bin/release", &[build_dir], exports, limits, out, true)?;
        if !ok {
            return Err(BuildpackError::Failed {
                buildpack: self.name.clone(),
                script: "bin/release".into(),
                status: "non-zero exit".into(),
            });
        }
        parse_release(&stdout).map_err(|why| BuildpackError::BadRelease {
            buildpack: self.name.clone(),
            why,
        })
    }

    /// The file a buildpack writes for the ones after it.
    pub fn export_file(&self) -> PathBuf {
        self.dir.join("export")
    }

    /// Runs a script; returns (exit 0, captured stdout when `capture`).
    /// Without `capture`, stdout and stderr both go to `out`.
    fn run(
        &self,
        script: &str,
        args: &[&Path],
        exports: &[PathBuf],
        limits: &Limits,
        out: Sink,
        capture: bool,
    ) -> Result<(bool, String), BuildpackError> {
        let path = self.dir.join(script);
        // Exports of earlier buildpacks are sourced by bash, then the
        // script replaces it (so a group kill reaches everything it runs).
        let mut sh = String::from("set -a; for __f in \"${@:2:$__N}\"; do . \"$__f\"; done; set +a; shift $((__N + 1)); __s=$__SCRIPT; unset __N __SCRIPT __f; exec \"$__s\" \"$@\"");
        sh.push('\n');
        let mut cmd = bash(limits);
        cmd.arg("-c").arg(&sh).arg("zeroku-build");
        cmd.arg(""); // $1: placeholder so exports start at $2
        for e in exports {
            cmd.arg(e);
        }
        cmd.args(args);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("STACK", "zeroku-host")
            .env("HOME", args[0])
            .env("__N", exports.len().to_string())
            .env("__SCRIPT", &path)
            .current_dir(args[0])
            .stdin(Stdio::null())
            .process_group(0);
        supervise(cmd, limits, out, capture, &self.name, script)
    }
}

/// Runs `command` (a Procfile-style shell command) in `dir` as the release
/// phase does: the `.profile.d` scripts sourced first, `env` as its
/// environment, under `limits`. Ok(false) when it exits non-zero.
pub fn run_command(
    dir: &Path,
    command: &str,
    env: &BTreeMap<String, String>,
    limits: &Limits,
    out: Sink,
) -> Result<bool, BuildpackError> {
    let sh = "for f in .profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done; eval \"$1\"";
    let mut cmd = bash(limits);
    cmd.arg("-c").arg(sh).arg("release").arg(command);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .envs(env)
        .env("HOME", dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .process_group(0);
    supervise(cmd, limits, out, false, "release phase", "release").map(|(ok, _)| ok)
}

/// `bash`, under the data size limit when there is one.
fn bash(limits: &Limits) -> Command {
    if limits.memory_mb == 0 {
        return Command::new("bash");
    }
    let mut c = Command::new("prlimit");
    c.arg(format!("--data={}", limits.memory_mb << 20))
        .arg("--")
        .arg("bash");
    c
}

/// Spawns `cmd` (as the build user, in its own process group), streams its
/// output to `out` line by line (stdout too unless `capture`), kills the
/// group at the deadline. Returns (exit 0, captured stdout).
fn supervise(
    mut cmd: Command,
    limits: &Limits,
    out: Sink,
    capture: bool,
    name: &str,
    script: &str,
) -> Result<(bool, String), BuildpackError> {
    let spawn_err = |source| BuildpackError::Spawn {
        buildpack: name.to_string(),
        script: script.to_string(),
        source,
    };
    {
        if let Some((uid, gid)) = limits.user {
            cmd.uid(uid).gid(gid);
        }
        let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
        let mut stdout_text = String::new();
        let mut child;
        let cap_reader;
        if capture {
            cmd.stdout(Stdio::piped())
                .stderr(writer.try_clone().map_err(spawn_err)?);
            child = cmd.spawn().map_err(spawn_err)?;
            cap_reader = child.stdout.take();
        } else {
            cmd.stdout(writer.try_clone().map_err(spawn_err)?)
                .stderr(writer.try_clone().map_err(spawn_err)?);
            child = cmd.spawn().map_err(spawn_err)?;
            cap_reader = None;
        }
        drop(cmd);
        drop(writer);
        // The watchdog kills the group at the deadline.
        let pgid = child.id();
        let done = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        let watchdog = {
            let (done, timed_out, deadline) = (done.clone(), timed_out.clone(), limits.deadline);
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    if Instant::now() >= deadline {
                        timed_out.store(true, Ordering::Relaxed);
                        let _ = Command::new("kill")
                            .args(["-KILL", "--", &format!("-{pgid}")])
                            .stderr(Stdio::null())
                            .status();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        let cap_thread = cap_reader.map(|mut r| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let mut buf = Vec::new();
                let _ = r.read_to_end(&mut buf);
                s.push_str(&String::from_utf8_lossy(&buf));
                s
            })
        });
        let mut saw_oom = false;
        for line in BufReader::new(reader).split(b'\n') {
            let Ok(line) = line else { break };
            let text = String::from_utf8_lossy(&line);
            saw_oom |= looks_like_oom(&text);
            out(text.trim_end_matches('\r'));
        }
        let status = child.wait().map_err(spawn_err)?;
        if let Some(t) = cap_thread {
            stdout_text = t.join().unwrap_or_default();
        }
        done.store(true, Ordering::Relaxed);
        let _ = watchdog.join();
        // Whatever the script left running in its group goes with it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        if timed_out.load(Ordering::Relaxed) {
            return Err(BuildpackError::TimedOut {
                buildpack: name.to_string(),
                script: script.to_string(),
            });
        }
        if let Some(sig) = status.signal() {
            return Err(BuildpackError::Failed {
                buildpack: name.to_string(),
                script: script.to_string(),
                status: format!("killed by signal {sig}"),
            });
        }
        if !status.success() && saw_oom && limits.memory_mb > 0 {
            return Err(BuildpackError::OutOfMemory {
                buildpack: name.to_string(),
                script: script.to_string(),
                limit_mb: limits.memory_mb,
            });
        }
        Ok((status.success(), stdout_text))
    }
}

/// What programs print when an allocation fails.
fn looks_like_oom(line: &str) -> bool {
    [
        "MemoryError",
        "Cannot allocate memory",
        "memory allocation of",
        "out of memory",
    ]
    .iter()
    .any(|m| line.contains(m))
}

/// Reads the YAML `bin/release` prints. Buildpacks print a small, fixed
/// shape: top-level keys, each either a scalar or a one-level mapping of
/// `key: value` lines (values plain or quoted), or `{}`. That shape is
/// parsed in full; other keys (`addons`, `config_vars`) are skipped, and
/// anything this parser cannot read is an error rather than a guess.
pub fn parse_release(text: &str) -> Result<Release, String> {
    let mut rel = Release::default();
    let mut section: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t == "---" || t == "..." {
            continue;
        }
        let indented = line.len() != t.len();
        let Some((k, v)) = split_key(t) else {
            return Err(format!(
                "line {}: expected `key: value`, got {raw:?}",
                n + 1
            ));
        };
        if !indented {
            section = Some(k.clone());
            if !(v.is_empty() || v == "{}" || v == "~" || v == "null") && is_map_key(&k) {
                return Err(format!("line {}: {k} must be a mapping", n + 1));
            }
            continue;
        }
        let target = match section.as_deref() {
            Some("default_process_types") => &mut rel.default_process_types,
            Some("default_routes") => &mut rel.default_routes,
            Some(_) => continue,
            None => return Err(format!("line {}: indented line outside a section", n + 1)),
        };
        if v.is_empty() {
            return Err(format!("line {}: {k} has no value", n + 1));
        }
        target.insert(k, v);
    }
    Ok(rel)
}

fn is_map_key(k: &str) -> bool {
    k == "default_process_types" || k == "default_routes"
}

/// `key: value` with optional quotes on either side.
fn split_key(t: &str) -> Option<(String, String)> {
    let (k, rest) = if let Some(q) = t.strip_prefix('"').or_else(|| t.strip_prefix('\'')) {
        let quote = t.chars().next()?;
        let end = q.find(quote)?;
        (
            q[..end].to_string(),
            q[end + 1..].trim_start().strip_prefix(':')?,
        )
    } else {
        let (k, rest) = t.split_once(':')?;
        (k.trim().to_string(), rest)
    };
    if k.is_empty() {
        return None;
    }
    Some((k, unquote(rest.trim())))
}

fn unquote(v: &str) -> String {
    let b = v.as_bytes();
    if b.len() >= 2 && (b[0] == b'"' && b[b.len() - 1] == b'"') {
        return v[1..v.len() - 1]
            .replace("\\\"", "\"")
            .replace("\\\\", "\\");
    }
    if b.len() >= 2 && (b[0] == b'\'' && b[b.len() - 1] == b'\'') {
        return v[1..v.len() - 1].replace("''", "'");
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_yaml_as_buildpacks_print_it() {
        let r = parse_release(
            "---\naddons: []\nconfig_vars:\n  PATH: /app/bin\ndefault_process_types:\n  web: \"python3 -m http.server $PORT\"\n  worker: ./bin/worker --x 'y'\n",
        )
        .unwrap();
        assert_eq!(
            r.default_process_types["web"],
            "python3 -m http.server $PORT"
        );
        assert_eq!(r.default_process_types["worker"], "./bin/worker --x 'y'");
        assert_eq!(r.default_process_types.len(), 2);
        let r = parse_release("---\ndefault_process_types: {}\ndefault_routes:\n  /: dir:public\n")
            .unwrap();
        assert!(r.default_process_types.is_empty());
        assert_eq!(r.default_routes["/"], "dir:public");
        assert_eq!(parse_release("").unwrap(), Release::default());
    }

    #[test]
    fn release_yaml_it_cannot_read_is_an_error() {
        assert!(parse_release("default_process_types: web\n").is_err());
        assert!(parse_release("  web: x\n").is_err());
        assert!(parse_release("default_process_types:\n  web\n").is_err());
        assert!(parse_release("default_process_types:\n  web:\n").is_err());
    }
}
