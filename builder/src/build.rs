//! One build: a source tarball in, a slug and its process types out.
//!
//! The steps are Heroku's: unpack the source (refusing entries that leave
//! the build directory, and sources over the size limit), choose the
//! buildpacks (`.buildpacks` in the source, else the `BUILDPACK_URL` config
//! var, else the first built-in whose `bin/detect` passes), run each one's
//! `bin/compile` with the app's cache and an ENV_DIR of its config vars,
//! read `bin/release`, and pack the tree into a slug. The Procfile's types
//! win over the buildpacks' defaults.
//!
//! Every buildpack runs from a private copy in the build's work directory,
//! so its `export` file and anything else it writes belong to this build
//! alone. The caller owns the work directory and removes it afterwards.

use crate::buildpack::{Buildpack, BuildpackError, Limits, Sink};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use zeroku_slug::{self as slug, SlugError, SlugInfo};

/// The Procfile type run once per release, before it goes live.
pub const RELEASE_TYPE: &str = "release";

/// What a build needs.
pub struct Request<'a> {
    /// The source: a tar archive, optionally gzip-compressed.
    pub source: &'a Path,
    /// An empty directory for this build (the caller removes it).
    pub work: &'a Path,
    /// The app's build cache, kept between builds.
    pub cache_dir: &'a Path,
    /// The app's config vars (ENV_DIR; `BUILDPACK_URL` picks buildpacks).
    pub config: &'a BTreeMap<String, String>,
    /// Built-in buildpacks, in detect order.
    pub builtin: &'a [Buildpack],
    pub limits: Limits,
    /// Largest unpacked source, in bytes.
    pub max_source_bytes: u64,
    /// Deepest path in the source, in components.
    pub max_depth: usize,
}

/// What a build made.
#[derive(Debug)]
pub struct Built {
    /// The slug image, inside the work directory.
    pub slug: PathBuf,
    pub info: SlugInfo,
    pub process_types: BTreeMap<String, String>,
    /// Routes the buildpacks declared (prefix → backend), for the app to
    /// use where it has none of its own.
    pub routes: BTreeMap<String, String>,
    /// Names of the buildpacks that ran, in order.
    pub buildpacks: Vec<String>,
    /// `zeroku.toml`: the services the app provides and requires.
    pub manifest: zeroku_conf::manifest::Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the source is not a usable archive: {0}")]
    Source(String),
    #[error("the source is larger than the build limit of {limit_mb} MB (entry {entry:?} takes it over); remove large files from the repository or raise [master] build_max_source_mb")]
    TooLarge { limit_mb: u64, entry: String },
    #[error("no buildpack applies to this app (tried: {}). Add a Procfile, or name a buildpack in .buildpacks or the BUILDPACK_URL config var", tried.join(", "))]
    NoBuildpack { tried: Vec<String> },
    #[error("buildpack {name} does not apply to this app (its bin/detect failed)")]
    NotDetected { name: String },
    #[error("cannot fetch buildpack {url}: {why}")]
    Fetch { url: String, why: String },
    #[error(transparent)]
    Buildpack(#[from] BuildpackError),
    #[error("the app's Procfile is broken: {0}")]
    Procfile(#[from] zeroku_conf::procfile::ProcfileError),
    #[error("the app's {}", .0)]
    Manifest(#[from] zeroku_conf::manifest::ManifestError),
    #[error("the release phase failed: `{command}` exited non-zero; nothing was released")]
    ReleasePhase { command: String },
    #[error("the build has nothing to run: no Procfile, and no buildpack declared process types or routes")]
    NothingToRun,
    #[error("the app's process types cannot be started: {0}")]
    Unstartable(String),
    #[error("cannot pack the slug: {0}")]
    Slug(#[from] SlugError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |source| BuildError::Io { op, path, source }
}

/// Runs the build; `out` receives its output as the user should see it.
pub fn run(req: &Request<'_>, out: Sink) -> Result<Built, BuildError> {
    let app = req.work.join("app");
    let env_dir = req.work.join("env");
    let bp_root = req.work.join("buildpacks");
    for d in [&app, &env_dir, &bp_root] {
        fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    fs::create_dir_all(req.cache_dir).map_err(io("creating", req.cache_dir))?;
    let bytes = unpack_source(req.source, &app, req.max_source_bytes, req.max_depth)?;
    out(&format!(
        "-----> Source received: {} files, {}",
        count_files(&app),
        human(bytes)
    ));
    for (k, v) in req.config {
        let p = env_dir.join(k);
        fs::write(&p, v).map_err(io("writing", &p))?;
    }
    // The build's own directories: its uid's, 0700 (config vars are in env/).
    for d in [req.work, req.cache_dir] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o700)).map_err(io("protecting", d))?;
        if let Some((uid, gid)) = req.limits.user {
            chown_tree(d, uid, gid)?;
        }
    }
    let chosen = choose(req, &app, &bp_root, out)?;
    let mut exports: Vec<PathBuf> = Vec::new();
    let mut names = Vec::new();
    let mut release = crate::buildpack::Release::default();
    for (bp, name) in &chosen {
        out(&format!("-----> {name} app detected"));
        bp.compile(&app, req.cache_dir, &env_dir, &exports, &req.limits, out)?;
        let r = bp.release(&app, &exports, &req.limits, out)?;
        release
            .default_process_types
            .extend(r.default_process_types);
        release.default_routes.extend(r.default_routes);
        let export = bp.export_file();
        if export.exists() {
            exports.push(export);
        }
        names.push(name.clone());
    }
    let mut types = release.default_process_types;
    let procfile = app.join("Procfile");
    if procfile.exists() {
        let text = fs::read_to_string(&procfile).map_err(io("reading", &procfile))?;
        types.extend(zeroku_conf::procfile::parse(&text)?);
    }
    if types.is_empty() && release.default_routes.is_empty() {
        return Err(BuildError::NothingToRun);
    }
    let manifest = read_manifest(&app, &types, out)?;
    // Buildpacks' defaults too must be startable (a Procfile's are checked as it is read).
    zeroku_conf::limits::process_types(types.len()).map_err(BuildError::Unstartable)?;
    for (kind, command) in &types {
        zeroku_conf::limits::command(kind, command).map_err(BuildError::Unstartable)?;
    }
    if !types.is_empty() {
        let list: Vec<&str> = types.keys().map(String::as_str).collect();
        out("-----> Discovering process types");
        out(&format!(
            "       Procfile declares types -> {}",
            list.join(", ")
        ));
    }
    let slug_path = req.work.join("slug.sqfs");
    out(&format!(
        "-----> Compressing slug: {} files, {} to pack",
        count_files(&app),
        human(dir_bytes(&app))
    ));
    let packing = std::time::Instant::now();
    let info = slug::pack(&app, &slug_path)?;
    out(&format!(
        "       {} squashfs (sha256 {}) in {:.1}s",
        human(info.size),
        &info.sha256[..12],
        packing.elapsed().as_secs_f64()
    ));
    // Heroku's release phase: once, before the switch, with the config.
    if let Some(command) = types.remove(RELEASE_TYPE) {
        out(&format!("-----> Running the release phase: {command}"));
        let ok = crate::buildpack::run_command(&app, &command, req.config, &req.limits, out)?;
        if !ok {
            return Err(BuildError::ReleasePhase { command });
        }
    }
    Ok(Built {
        slug: slug_path,
        info,
        process_types: types,
        routes: release.default_routes,
        buildpacks: names,
        manifest,
    })
}

/// `zeroku.toml`, when the app has one: parsed, and each provided service
/// served by a process type the app declares.
fn read_manifest(
    app: &Path,
    types: &BTreeMap<String, String>,
    out: Sink,
) -> Result<zeroku_conf::manifest::Manifest, BuildError> {
    use zeroku_conf::manifest::{self, ManifestError};
    let path = app.join(manifest::FILE);
    if !path.is_file() {
        return Ok(manifest::Manifest::default());
    }
    let text = fs::read_to_string(&path).map_err(io("reading", &path))?;
    let m = manifest::parse(&text)?;
    for (name, p) in &m.provides {
        if !types.contains_key(&p.process) {
            return Err(ManifestError::Invalid(format!(
                "[provides.{name}] process {:?} is not a process type of this app (it has: {})",
                p.process,
                types.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
            .into());
        }
    }
    if !m.is_empty() {
        let list = |k: Vec<&String>| {
            k.into_iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        };
        out(&format!(
            "-----> {}: provides [{}], requires [{}]",
            manifest::FILE,
            list(m.provides.keys().collect()),
            list(m.requires.keys().collect())
        ));
    }
    Ok(m)
}

/// The buildpacks to run, each copied into the build, with its name.
fn choose(
    req: &Request<'_>,
    app: &Path,
    bp_root: &Path,
    out: Sink,
) -> Result<Vec<(Buildpack, String)>, BuildError> {
    let listed = app.join(".buildpacks");
    let explicit: Vec<String> = if listed.exists() {
        let text = fs::read_to_string(&listed).map_err(io("reading", &listed))?;
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    } else if let Some(u) = req.config.get("BUILDPACK_URL") {
        vec![u.trim().to_string()]
    } else {
        Vec::new()
    };
    let limits = &req.limits;
    if !explicit.is_empty() {
        let mut chosen = Vec::new();
        for (i, url) in explicit.iter().enumerate() {
            let bp = fetch(url, req.builtin, &bp_root.join(i.to_string()), out)?;
            if let Some((uid, gid)) = limits.user {
                chown_tree(&bp.dir, uid, gid)?;
            }
            let name =
                bp.detect(app, &[], limits, out)?
                    .ok_or_else(|| BuildError::NotDetected {
                        name: bp.name.clone(),
                    })?;
            chosen.push((bp, name));
        }
        return Ok(chosen);
    }
    let mut tried = Vec::new();
    for b in req.builtin {
        let bp = copy_buildpack(b, &bp_root.join("0"))?;
        if let Some((uid, gid)) = limits.user {
            chown_tree(&bp.dir, uid, gid)?;
        }
        if let Some(name) = bp.detect(app, &[], limits, out)? {
            return Ok(vec![(bp, name)]);
        }
        let _ = fs::remove_dir_all(&bp.dir);
        tried.push(b.name.clone());
    }
    Err(BuildError::NoBuildpack { tried })
}

/// A buildpack named by a built-in name, a local directory, or a git URL
/// (optionally `#ref`), copied or cloned to `dest`.
fn fetch(
    url: &str,
    builtin: &[Buildpack],
    dest: &Path,
    out: Sink,
) -> Result<Buildpack, BuildError> {
    if let Some(b) = builtin.iter().find(|b| b.name == url) {
        return copy_buildpack(b, dest);
    }
    let fail = |why: String| BuildError::Fetch {
        url: url.to_string(),
        why,
    };
    let local = Path::new(url.strip_prefix("file://").unwrap_or(url));
    if local.is_absolute() && local.is_dir() && !url.ends_with(".git") {
        let b = Buildpack {
            name: url.to_string(),
            dir: local.to_path_buf(),
        };
        return copy_buildpack(&b, dest);
    }
    let looks_git = url.contains("://") || url.ends_with(".git") || local.is_absolute();
    if !looks_git {
        return Err(fail(
            "not a built-in buildpack name, an absolute directory, or a git URL".into(),
        ));
    }
    let (repo, reference) = match url.rsplit_once('#') {
        Some((r, f)) if !f.is_empty() => (r, Some(f)),
        _ => (url, None),
    };
    out(&format!("-----> Fetching buildpack {url}"));
    let mut cmd = Command::new("git");
    cmd.args(["clone", "--quiet", "--depth", "1"]);
    if let Some(r) = reference {
        cmd.args(["--branch", r]);
    }
    let o = cmd
        .arg("--")
        .arg(repo)
        .arg(dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("cannot run git: {e}")))?;
    if !o.status.success() {
        return Err(fail(String::from_utf8_lossy(&o.stderr).trim().to_string()));
    }
    if !dest.join("bin/compile").exists() {
        return Err(fail("it has no bin/compile".into()));
    }
    Ok(Buildpack {
        name: url.to_string(),
        dir: dest.to_path_buf(),
    })
}

fn copy_buildpack(b: &Buildpack, dest: &Path) -> Result<Buildpack, BuildError> {
    let _ = fs::remove_dir_all(dest);
    let o = Command::new("cp")
        .arg("-a")
        .arg("--")
        .arg(&b.dir)
        .arg(dest)
        .output()
        .map_err(io("copying", &b.dir))?;
    if !o.status.success() {
        return Err(BuildError::Fetch {
            url: b.dir.display().to_string(),
            why: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        });
    }
    if !dest.join("bin/compile").exists() {
        return Err(BuildError::Fetch {
            url: b.dir.display().to_string(),
            why: "it has no bin/compile".into(),
        });
    }
    Ok(Buildpack {
        name: b.name.clone(),
        dir: dest.to_path_buf(),
    })
}

/// Unpacks a tar (or tar.gz) into `dir`; returns the bytes written.
fn unpack_source(src: &Path, dir: &Path, limit: u64, max_depth: usize) -> Result<u64, BuildError> {
    let bad = |e: std::io::Error| BuildError::Source(e.to_string());
    let mut f = fs::File::open(src).map_err(io("opening", src))?;
    let mut magic = [0u8; 2];
    let gz = f.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let f = fs::File::open(src).map_err(io("opening", src))?;
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut archive = tar::Archive::new(reader);
    let mut total = 0u64;
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        let shown = path.display().to_string();
        if path.components().any(|c| {
            matches!(
                c,
                Component::ParentDir | Component::RootDir | Component::Prefix(_)
            )
        }) {
            return Err(BuildError::Source(format!(
                "entry {shown:?} leaves the source directory (absolute or `..`)"
            )));
        }
        // Refused as it arrives, not after minutes of walking it.
        let depth = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count();
        if depth > max_depth {
            return Err(BuildError::Source(format!(
                "entry {:?}… is {depth} levels deep: a source may nest at most {max_depth} ([master] build_max_depth)",
                shown.chars().take(80).collect::<String>()
            )));
        }
        let kind = entry.header().entry_type();
        use tar::EntryType as E;
        match kind {
            E::Regular | E::Directory | E::Symlink | E::Continuous => {}
            E::XGlobalHeader | E::XHeader | E::GNULongName | E::GNULongLink => continue,
            E::Link => {
                return Err(BuildError::Source(format!(
                    "entry {shown:?} is a hard link, which a source may not contain"
                )))
            }
            _ => {
                return Err(BuildError::Source(format!(
                    "entry {shown:?} is a device, fifo or other special file"
                )))
            }
        }
        total += entry.header().size().unwrap_or(0);
        if total > limit {
            return Err(BuildError::TooLarge {
                limit_mb: limit >> 20,
                entry: shown,
            });
        }
        if !entry.unpack_in(dir).map_err(bad)? {
            return Err(BuildError::Source(format!(
                "entry {shown:?} leaves the source directory"
            )));
        }
    }
    Ok(total)
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid)).map_err(io("chown", dir))?;
    if fs::symlink_metadata(dir)
        .map_err(io("reading", dir))?
        .is_dir()
    {
        for e in fs::read_dir(dir).map_err(io("reading", dir))? {
            let e = e.map_err(io("reading", dir))?;
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn dir_bytes(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += dir_bytes(&e.path()),
                Ok(t) if t.is_file() => n += e.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    n
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => n += count_files(&e.path()),
                _ => n += 1,
            }
        }
    }
    n
}

/// `3.1 MB`, `812 KB`, `120 B`.
pub fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{} KB", bytes.div_ceil(1 << 10))
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with one file at `depth` directories.
    fn deep_tar(path: &Path, depth: usize) {
        let mut t = tar::Builder::new(fs::File::create(path).unwrap());
        let name: String = (0..depth).map(|_| "d/").collect::<String>() + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, &name, &b"x"[..]).unwrap();
        t.finish().unwrap();
    }

    #[test]
    fn a_source_too_deep_is_refused_at_its_first_deep_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (ok, deep) = (dir.join("ok.tar"), dir.join("deep.tar"));
        deep_tar(&ok, 30);
        deep_tar(&deep, 2000);
        for d in ["a", "b"] {
            fs::create_dir(dir.join(d)).unwrap();
        }
        if let Err(e) = unpack_source(&ok, &dir.join("a"), 1 << 20, 100) {
            panic!("{e}");
        }
        let e = unpack_source(&deep, &dir.join("b"), 1 << 20, 100)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2001 levels deep") && e.contains("build_max_depth"),
            "{e}"
        );
        assert!(e.len() < 400, "{e}");
    }
}
