//! [`SlugCache`]: images fetched from the master, verified against their sha256, and unpacked
//! read-only under `<data>/apps/<sha256>`, for the nodes and frontends that run or serve them.
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
        let images = SlugStore::open(&data.join("slugs")).map_err(|e| e.to_string())?;
        let apps = data.join("apps");
        std::fs::create_dir_all(&apps)
            .map_err(|e| format!("cannot create {}: {e}", apps.display()))?;
        Ok(SlugCache { images, apps })
    }

    /// The unpacked directory of `sha256`, fetching and unpacking it first if needed. `fetch`
    /// writes the image to the path it is given and returns the bytes written (or why not).
    pub async fn ensure<F, Fut>(&self, sha256: &str, fetch: F) -> Result<PathBuf, String>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<u64, String>>,
    {
        let dir = self.apps.join(sha256);
        if dir.is_dir() {
            return Ok(dir);
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

    /// Deletes unpacked slugs and images not in `in_use`, keeping the `keep` most recently
    /// unpacked others.
    pub fn gc(&self, in_use: &HashSet<String>, keep: usize) {
        let Ok(rd) = std::fs::read_dir(&self.apps) else {
            return;
        };
        let mut unused: Vec<(std::time::SystemTime, PathBuf, String)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                (!in_use.contains(&name)).then_some((t, e.path(), name))
            })
            .collect();
        unused.sort_by_key(|u| std::cmp::Reverse(u.0));
        let mut kept: HashSet<String> = in_use.clone();
        for (i, (_, path, name)) in unused.into_iter().enumerate() {
            if i < keep {
                kept.insert(name);
                continue;
            }
            if let Err(e) = remove_read_only_tree(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete unused slug");
            }
        }
        if let Err(e) = self.images.gc(&kept, std::time::Duration::ZERO) {
            tracing::warn!(error = %e, "slug image gc");
        }
    }
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
