//! [`SlugCache`]: images fetched from the master, verified against their sha256, and unpacked
//! read-only, for the nodes and frontends that run or serve them. A node unpacks each app's
//! copy under `<data>/apps/<app>/<sha256>`, in a directory only that app's uid may enter (an
//! app cannot read another's code, even when both run the same image); a frontend, which
//! serves files itself, under `<data>/apps/<sha256>`. Images stay in `<data>/slugs`, which
//! only the daemon may read.
//! How an image is fetched is the caller's business (a closure that writes it to a path), so
//! this crate needs no HTTP client. Unused ones are deleted, keeping a few for quick rollbacks.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};

use crate::image;
use crate::store::{upload_path, SlugStore};

pub struct SlugCache {
    images: SlugStore,
    apps: PathBuf,
}

impl SlugCache {
    /// Opens the cache in `data` (`<data>/slugs` for images, `<data>/apps` for unpacked trees).
    pub fn open(data: &Path) -> Result<SlugCache, String> {
        use std::os::unix::fs::PermissionsExt;
        let images = SlugStore::open(&data.join("slugs")).map_err(|e| e.to_string())?;
        let apps = data.join("apps");
        let mode = |p: &Path, m: u32| {
            std::fs::create_dir_all(p)
                .and_then(|()| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)))
                .map_err(|e| format!("cannot set up {}: {e}", p.display()))
        };
        mode(images.dir(), 0o700)?;
        // Traversable (apps reach their own directory below), not listable.
        mode(&apps, 0o711)?;
        Ok(SlugCache { images, apps })
    }

    /// The unpacked directory of slug `key` — `<app>/<sha256>` for an app's own copy (its
    /// directory given to `uid`, when set), or a bare `<sha256>` — fetching and unpacking it
    /// first if needed. `fetch` writes the image to the path it is given and returns the bytes
    /// written (or why not).
    pub async fn ensure<F, Fut>(
        &self,
        key: &str,
        uid: Option<u32>,
        fetch: F,
    ) -> Result<PathBuf, String>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        let (app, sha256) = match key.split_once('/') {
            Some((app, sha)) if valid_app_dir(app) => (Some(app), sha),
            Some(_) => return Err(format!("{key:?} is not a slug key")),
            None => (None, key),
        };
        if !crate::is_valid_sha256(sha256) {
            return Err(format!("{sha256:?} is not a sha256"));
        }
        let dir = self.apps.join(key);
        if dir.is_dir() {
            return Ok(dir);
        }
        if let Some(app) = app {
            self.app_dir(app, uid)?;
        }
        if !self.images.contains(sha256).map_err(|e| e.to_string())? {
            let tmp = upload_path(self.images.dir());
            let n = match fetch(tmp.clone()).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(format!("cannot download slug {sha256}: {e}"));
                }
            };
            let (store, sha, t) = (self.images.clone(), sha256.to_string(), tmp.clone());
            let res = tokio::task::spawn_blocking(move || store.put_file(&t, &sha))
                .await
                .map_err(|e| e.to_string())?;
            let _ = std::fs::remove_file(&tmp);
            res.map_err(|e| format!("downloaded slug refused: {e}"))?;
            tracing::info!(slug = sha256, bytes = n, "slug downloaded and verified");
        }
        let image = self.images.path(sha256).map_err(|e| e.to_string())?;
        let d = dir.clone();
        tokio::task::spawn_blocking(move || image::unpack(&image, &d))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot unpack slug {sha256}: {e}"))?;
        Ok(dir)
    }

    /// `<apps>/<app>`: 0700, the app's uid's.
    fn app_dir(&self, app: &str, uid: Option<u32>) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        let d = self.apps.join(app);
        std::fs::create_dir_all(&d)
            .and_then(|()| std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)))
            .map_err(|e| format!("cannot set up {}: {e}", d.display()))?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&d, Some(uid), Some(uid))
                .map_err(|e| format!("cannot give {} to uid {uid}: {e}", d.display()))?;
        }
        Ok(())
    }

    /// Every unpacked slug: (key, path, when unpacked).
    fn unpacked(&self) -> Vec<(String, PathBuf, std::time::SystemTime)> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.apps) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let t = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            if crate::is_valid_sha256(&name) {
                if let Some(t) = t(&e.path()) {
                    out.push((name, e.path(), t));
                }
                continue;
            }
            for s in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
                let sha = s.file_name().to_string_lossy().into_owned();
                if let Some(t) = t(&s.path()) {
                    out.push((format!("{name}/{sha}"), s.path(), t));
                }
            }
        }
        out
    }

    /// Deletes unpacked slugs (keys, as [`SlugCache::ensure`] takes them) and images not in
    /// `in_use`, keeping the `keep` most recently unpacked others.
    pub fn gc(&self, in_use: &HashSet<String>, keep: usize) {
        let mut unused: Vec<(String, PathBuf, std::time::SystemTime)> = self
            .unpacked()
            .into_iter()
            .filter(|(k, _, _)| !in_use.contains(k))
            .collect();
        unused.sort_by_key(|u| std::cmp::Reverse(u.2));
        let mut kept: HashSet<String> = in_use.clone();
        for (i, (key, path, _)) in unused.into_iter().enumerate() {
            if i < keep {
                kept.insert(key);
                continue;
            }
            if let Err(e) = remove_read_only_tree(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete unused slug");
            }
        }
        // Images of the kept trees stay.
        let shas: HashSet<String> = kept
            .iter()
            .map(|k| k.rsplit('/').next().unwrap_or(k).to_string())
            .collect();
        if let Err(e) = self.images.gc(&shas, std::time::Duration::ZERO) {
            tracing::warn!(error = %e, "slug image gc");
        }
        // App directories left empty.
        if let Ok(rd) = std::fs::read_dir(&self.apps) {
            for e in rd.flatten() {
                let _ = std::fs::remove_dir(e.path());
            }
        }
    }
}

/// An app's name as a directory: what zeroku's app names are (lowercase, digits, `-`).
fn valid_app_dir(app: &str) -> bool {
    !app.is_empty()
        && app.len() <= 64
        && app
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Unpacked slugs are read-only: give write permission back to directories before removing
/// them.
fn remove_read_only_tree(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fn walk(p: &Path) -> std::io::Result<()> {
        let m = std::fs::symlink_metadata(p)?;
        if m.is_dir() {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))?;
            for e in std::fs::read_dir(p)? {
                walk(&e?.path())?;
            }
        }
        Ok(())
    }
    walk(path)?;
    std::fs::remove_dir_all(path)
}
