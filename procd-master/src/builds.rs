//! Builds and deploys: `POST /v1/apps/<app>/builds` takes a source archive
//! (from the git hook or `zeroku deploy`), runs the builder over it, makes
//! the release, waits until the new instances are up, and streams all of it
//! back as text, Heroku's build output. The last line is
//! `zeroku:result <json>` so callers can tell success from failure.
//!
//! Builds of one app queue behind each other; at most `builds_at_once` run
//! at a time across apps. A failed build changes nothing. A release whose
//! instances are not up within `deploy_timeout_secs` (or crash) is rolled
//! back to the previous one, and the deploy reports why.

use crate::cluster::Cluster;
use crate::store::{BuildMeta, Release};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;
use zeroku_builder::build::{self, Built};
use zeroku_builder::buildpack::{Buildpack, Limits};
use zeroku_conf::InstanceState;

/// Prefix of the last line of a build's output.
pub use zeroku_client::v1::BUILD_RESULT_PREFIX as RESULT_PREFIX;

/// The master's build service.
pub struct Builds {
    /// The master's data directory.
    pub data: PathBuf,
    root: PathBuf,
    builtin: Vec<Buildpack>,
    /// The API address, handed to git hooks.
    pub api_addr: std::net::SocketAddr,
    at_once: Arc<tokio::sync::Semaphore>,
    per_app: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    next_id: AtomicU64,
}

/// What the caller knows about the source.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub commit: Option<String>,
}

impl Builds {
    /// Sets up `<data>/builds` (work dirs, caches, logs, the built-in
    /// buildpacks) and `<data>/repos`.
    pub fn open(
        data: &Path,
        at_once: usize,
        api_addr: std::net::SocketAddr,
    ) -> std::io::Result<Builds> {
        let root = data.join("builds");
        // Builds run as their app's uid: they pass through builds/, work/ and cache/ to their
        // own directory (0700, theirs); sources, logs and everything else are the master's.
        crate::dirs::passable(&root)?;
        for d in ["work", "cache"] {
            crate::dirs::passable(&root.join(d))?;
        }
        for d in ["logs", "incoming"] {
            crate::dirs::private(&root.join(d))?;
        }
        // Work dirs of builds a crash interrupted, and sources it left.
        for d in ["work", "incoming"] {
            if let Ok(rd) = std::fs::read_dir(root.join(d)) {
                for e in rd.flatten() {
                    let p = e.path();
                    let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                }
            }
        }
        let builtin = zeroku_builder::builtin::install(&root.join("buildpacks"))?;
        Ok(Builds {
            data: data.to_path_buf(),
            root,
            builtin,
            api_addr,
            at_once: Arc::new(tokio::sync::Semaphore::new(at_once.max(1))),
            per_app: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Where incoming sources are written before their build.
    pub fn incoming(&self) -> PathBuf {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("incoming")
            .join(format!("{}-{n}.src", std::process::id()))
    }

    /// The output of the app's last build.
    pub fn last_output(&self, app: &str) -> Option<String> {
        std::fs::read_to_string(self.log_path(app)).ok()
    }

    fn log_path(&self, app: &str) -> PathBuf {
        self.root.join("logs").join(format!("{app}.log"))
    }

    /// Renames the app `old` to `new` with `rename` (the store's change) while
    /// no build of it runs, then moves its build cache, last build's output and
    /// git repository to the new name. Err: a build is running, or what
    /// `rename` said.
    pub fn rename<E: std::fmt::Display>(
        &self,
        old: &str,
        new: &str,
        rename: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), String> {
        let lock = {
            let mut m = self.per_app.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(old.to_string()).or_default().clone()
        };
        let Ok(_guard) = lock.try_lock() else {
            return Err(format!(
                "a build of {old} is running: rename it once the build is done"
            ));
        };
        rename().map_err(|e| e.to_string())?;
        let moves = [
            (
                self.root.join("cache").join(old),
                self.root.join("cache").join(new),
            ),
            (self.log_path(old), self.log_path(new)),
            (
                crate::git::repo_dir(&self.data, old),
                crate::git::repo_dir(&self.data, new),
            ),
        ];
        for (from, to) in moves {
            if from.exists() {
                if let Err(e) = std::fs::rename(&from, &to) {
                    tracing::warn!(app = new, error = %e, "moving {} to {}", from.display(), to.display());
                }
            }
        }
        Ok(())
    }

    /// Forgets an app's cache and log (the app was deleted).
    pub fn forget(&self, app: &str) {
        let _ = std::fs::remove_dir_all(self.root.join("cache").join(app));
        let _ = std::fs::remove_file(self.log_path(app));
    }

    /// Builds `source` (removed afterwards) and deploys it, sending output
    /// lines to `out`; the last one is the result line.
    pub async fn run(
        self: Arc<Self>,
        cluster: Arc<Cluster>,
        app: String,
        source: PathBuf,
        origin: Origin,
        out: UnboundedSender<String>,
    ) {
        let log = Arc::new(Mutex::new(String::new()));
        let say = {
            let (out, log) = (out.clone(), log.clone());
            move |line: &str| {
                let _ = out.send(format!("{line}\n"));
                let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(line);
                l.push('\n');
            }
        };
        let lock = {
            let mut m = self.per_app.lock().unwrap_or_else(|e| e.into_inner());
            m.entry(app.clone()).or_default().clone()
        };
        let _app_guard = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                say("-----> Another build of this app is running; waiting for it");
                lock.lock().await
            }
        };
        let _slot = self.at_once.clone().acquire_owned().await;
        let result = self
            .clone()
            .build_and_release(&cluster, &app, &source, &origin, say.clone())
            .await;
        let _ = std::fs::remove_file(&source);
        let line = match result {
            Ok(v) => serde_json::json!({"ok": true, "version": v}),
            Err(e) => {
                say(&format!(" !     {e}"));
                serde_json::json!({"ok": false, "error": e})
            }
        };
        let text = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let path = self.log_path(&app);
        let tmp = path.with_extension("tmp");
        let _ = zeroku_client::write_private(&tmp, text.as_bytes())
            .and_then(|()| std::fs::rename(&tmp, &path));
        let _ = out.send(format!("{RESULT_PREFIX}{line}\n"));
    }

    async fn build_and_release(
        self: Arc<Self>,
        cluster: &Arc<Cluster>,
        app: &str,
        source: &Path,
        origin: &Origin,
        say: impl Fn(&str) + Clone + Send + 'static,
    ) -> Result<u32, String> {
        let started = Instant::now();
        let (app_row, config, previous) = {
            let s = cluster.store();
            let a = s
                .app(app)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("app {app} was deleted"))?;
            (
                a,
                s.config(app).map_err(|e| e.to_string())?,
                s.current_release(app).map_err(|e| e.to_string())?,
            )
        };
        let cfg = &cluster.cfg;
        let user = is_root().then(|| {
            let id = cfg.build_uid_base + app_row.seq;
            (id, id)
        });
        let limits = Limits {
            deadline: started + Duration::from_secs(cfg.build_timeout_secs),
            memory_mb: cfg.build_memory_mb,
            user,
        };
        let work = self.root.join("work").join(format!(
            "{app}-{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        ));
        let cache = self.root.join("cache").join(app);
        let (me, src, max, depth) = (
            self.clone(),
            source.to_path_buf(),
            cfg.build_max_source_mb << 20,
            cfg.build_max_depth,
        );
        let (w2, say2) = (work.clone(), say.clone());
        let built = tokio::task::spawn_blocking(move || {
            let req = build::Request {
                source: &src,
                work: &w2,
                cache_dir: &cache,
                config: &config,
                builtin: &me.builtin,
                limits,
                max_source_bytes: max,
                max_depth: depth,
            };
            let mut sink = |l: &str| say2(l);
            build::run(&req, &mut sink)
        })
        .await
        .map_err(|e| format!("the build crashed: {e}"))?;
        let result = match built {
            Ok(b) => {
                self.release(cluster, app, b, origin, previous, started, &say)
                    .await
            }
            Err(e) => Err(format!("Build failed: {e}")),
        };
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(work)).await;
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn release(
        &self,
        cluster: &Arc<Cluster>,
        app: &str,
        built: Built,
        origin: &Origin,
        previous: Option<Release>,
        started: Instant,
        say: &(impl Fn(&str) + Clone + Send + 'static),
    ) -> Result<u32, String> {
        let Built {
            slug,
            info,
            process_types,
            routes,
            buildpacks,
            manifest,
        } = built;
        // Requirements that would restart each other for ever are refused before anything
        // is stored.
        if manifest
            .requires
            .values()
            .any(|r| r.on_change == zeroku_conf::manifest::OnChange::Restart)
        {
            let store = cluster.store();
            let mut releases = std::collections::HashMap::new();
            for a in store.apps().map_err(|e| e.to_string())? {
                if let Some(r) = store.current_release(&a.name).map_err(|e| e.to_string())? {
                    releases.insert(a.name, r);
                }
            }
            drop(store);
            if let Some(cycle) = crate::discovery::restart_cycle(app, &manifest, &releases) {
                return Err(format!(
                    "Build failed: zeroku.toml: on_change = \"restart\" requirements form a loop ({}): each restart would change the providers of the next app, for ever. Use signal:, hook: or none for one of them.",
                    cycle.join(" → ")
                ));
            }
        }
        let c = cluster.clone();
        let sha = info.sha256.clone();
        tokio::task::spawn_blocking(move || c.slugs.put_file(&slug, &sha))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot store the slug: {e}"))?;
        let meta = BuildMeta {
            commit: origin.commit.clone(),
            buildpacks: buildpacks.clone(),
            build_ms: started.elapsed().as_millis() as u64,
            manifest,
        };
        let desc = match &origin.commit {
            Some(c) => format!("Deploy {}", &c[..c.len().min(7)]),
            None => "Deploy".to_string(),
        };
        let mem = cluster.cfg.default_memory_mb;
        let c = cluster.clone();
        let (app_s, types) = (app.to_string(), process_types.clone());
        let prev_version = previous.as_ref().map(|p| p.version);
        let timeout = Duration::from_secs(cluster.cfg.deploy_timeout_secs);
        let rel = tokio::task::spawn_blocking(move || {
            let rel = c.change(|s| {
                let rel = s.create_release(
                    &app_s,
                    crate::store::NewRelease {
                        slug_sha256: &info.sha256,
                        slug_size: info.size,
                        process_types: &types,
                        description: &desc,
                        build: &meta,
                    },
                    mem,
                )?;
                // With the release: a master that dies while it comes up
                // resumes the wait when it starts (`resume_deploys`).
                let deadline = crate::store::now() + timeout.as_secs();
                s.begin_deploy(&app_s, rel.version, prev_version, deadline)?;
                // Routes the buildpacks declared, where the app has none.
                let have: Vec<String> = s
                    .routes()?
                    .into_iter()
                    .filter(|(a, _)| *a == app_s)
                    .map(|(_, r)| r.prefix)
                    .collect();
                for (prefix, backend) in &routes {
                    let ok = zeroku_conf::check_prefix(prefix).is_ok();
                    if let (true, Ok(b)) = (ok && !have.contains(prefix), backend.parse()) {
                        s.set_route(&app_s, prefix, &b)?;
                    }
                }
                Ok(rel)
            });
            c.refresh_routes();
            rel
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot create the release: {e}"))?;
        let c = cluster.clone();
        tokio::task::spawn_blocking(move || c.gc_slugs());
        say(&format!("-----> Releasing v{} ...", rel.version));
        let waited = wait_up(cluster, app, rel.version, Instant::now() + timeout, say).await;
        if waited.is_ok() || previous.is_none() {
            end_deploy(cluster, app, rel.version).await;
        }
        match waited {
            Ok(running) => {
                let url = cluster.cfg.app_url.replace("{app}", app);
                say(&format!(
                    "-----> Released v{}: {}",
                    rel.version,
                    if running.is_empty() {
                        "no processes to run".to_string()
                    } else {
                        format!("{running} running")
                    }
                ));
                say(&format!(
                    "       {url} deployed in {:.1}s (build and release, from the source's arrival)",
                    started.elapsed().as_secs_f64()
                ));
                Ok(rel.version)
            }
            Err(why) => {
                let Some(prev) = previous else {
                    return Err(format!("v{} did not start: {why}", rel.version));
                };
                say(&format!(
                    " !     v{} did not start: {why}; rolling back to v{}",
                    rel.version, prev.version
                ));
                let back = roll_back(cluster, app, rel.version, prev.clone()).await?;
                Err(format!(
                    "v{} did not start ({why}); rolled back to v{} as v{}, which keeps serving",
                    rel.version, prev.version, back.version
                ))
            }
        }
    }
}

/// Waits until every instance of the app runs `version` and is up (or
/// `deadline`). Returns `web=2 handler=1`, or why not.
async fn wait_up(
    cluster: &Arc<Cluster>,
    app: &str,
    version: u32,
    deadline: Instant,
    say: &impl Fn(&str),
) -> Result<String, String> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let p = progress(cluster, app, version).map_err(|e| e.to_string())?;
        if let Some(why) = p.failed {
            return Err(why);
        }
        if p.waiting == 0 {
            // Frontends hear of the new instances now, not at the next tick.
            let c = cluster.clone();
            let _ = tokio::task::spawn_blocking(move || c.refresh_routes()).await;
            let text: Vec<String> = p.up.iter().map(|(t, n)| format!("{t}={n}")).collect();
            return Ok(text.join(" "));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{} of its instances were not up after {} s",
                p.waiting,
                started.elapsed().as_secs()
            ));
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            say(&format!(
                "       waiting for {} instance(s) to come up",
                p.waiting
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Makes `prev` current again (as a new release) in place of `version`,
/// which did not come up, and ends its deploy.
async fn roll_back(
    cluster: &Arc<Cluster>,
    app: &str,
    version: u32,
    prev: Release,
) -> Result<Release, String> {
    let c = cluster.clone();
    let a = app.to_string();
    tokio::task::spawn_blocking(move || {
        let r = c.change(|s| {
            let back = s.rollback(&a, &prev)?;
            s.end_deploy(&a, version)?;
            Ok(back)
        });
        c.refresh_routes();
        r
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())
}

async fn end_deploy(cluster: &Arc<Cluster>, app: &str, version: u32) {
    let c = cluster.clone();
    let a = app.to_string();
    let r = tokio::task::spawn_blocking(move || c.change(|s| s.end_deploy(&a, version))).await;
    if let Ok(Err(e)) = r {
        tracing::error!(app, version, error = %e, "cannot record the end of a deploy");
    }
}

/// Deploys a master stopped while their release came up (a crash, a kill):
/// each waits on from where it was — until its deadline, and at least long
/// enough for every worker to report in again — and is rolled back if its
/// release does not come up, as if the master had never stopped. What
/// happens goes to the app's log. A deploy whose app has moved on since (a
/// newer release, a rollback) is only forgotten.
pub fn resume_deploys(cluster: &Arc<Cluster>) {
    let deploys = match cluster.store().deploys() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the deploys in progress");
            return;
        }
    };
    for crate::store::Deploy {
        app,
        version,
        previous,
        deadline,
    } in deploys
    {
        let c = cluster.clone();
        tokio::spawn(async move {
            let current = c.store().current_release(&app).ok().flatten();
            if current.map(|r| r.version) != Some(version) {
                end_deploy(&c, &app, version).await;
                return;
            }
            let say = |line: &str| c.system_log(&app, "", line.trim_start().to_string());
            say(&format!(
                "-----> the master restarted while v{version} was coming up: waiting for it again"
            ));
            let left = Duration::from_secs(deadline.saturating_sub(crate::store::now()));
            // Workers report in within the dead timeout; give them that much.
            let floor = c.dead_after() + Duration::from_secs(2);
            let until = Instant::now() + left.max(floor);
            match wait_up(&c, &app, version, until, &say).await {
                Ok(running) => {
                    end_deploy(&c, &app, version).await;
                    say(&format!("-----> Released v{version}: {running} running"));
                }
                Err(why) => {
                    let prev = previous.and_then(|p| c.store().release(&app, p).ok().flatten());
                    let Some(prev) = prev else {
                        end_deploy(&c, &app, version).await;
                        say(&format!(" !     v{version} did not start: {why}"));
                        return;
                    };
                    match roll_back(&c, &app, version, prev.clone()).await {
                        Ok(back) => say(&format!(
                            " !     v{version} did not start ({why}); rolled back to v{} as v{}",
                            prev.version, back.version
                        )),
                        Err(e) => say(&format!(
                            " !     v{version} did not start ({why}), and the rollback failed: {e}"
                        )),
                    }
                }
            }
        });
    }
}

struct Progress {
    up: BTreeMap<String, u32>,
    waiting: usize,
    failed: Option<String>,
}

/// How far the app's instances are with `version`.
fn progress(c: &Cluster, app: &str, version: u32) -> Result<Progress, crate::store::StoreError> {
    let placements = c.store().placements_of(app)?;
    let live = c.live();
    let mut p = Progress {
        up: BTreeMap::new(),
        waiting: 0,
        failed: None,
    };
    for pl in &placements {
        let st = pl
            .node
            .as_deref()
            .and_then(|n| live.get(n))
            .and_then(|l| l.heartbeat.as_ref())
            .and_then(|hb| {
                hb.instances
                    .iter()
                    .find(|i| i.id == pl.id && i.release == version)
            });
        match st {
            Some(s) if s.state == InstanceState::Up => {
                *p.up.entry(pl.proc_type.clone()).or_default() += 1;
            }
            // Crashed, or exited three times without ever coming up.
            Some(s) if s.state == InstanceState::Crashed || s.restarts >= 3 => {
                p.failed = Some(format!(
                    "{} keeps exiting ({}); see `zeroku logs`",
                    pl.id,
                    s.last_exit.as_deref().unwrap_or("exited")
                ));
            }
            _ => p.waiting += 1,
        }
    }
    Ok(p)
}

/// Whether this process runs as root (`/proc/self` belongs to its euid).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
