//! The slug store: a content-addressed directory of slug images, `<dir>/<sha256>.sqfs`.
//!
//! This module owns the on-disk layout of the store and the rules for getting an image into it:
//! an image only ever appears under its final name complete and with the right hash (it is
//! written or moved to a temporary file inside the store, hashed, and then hard-linked to
//! `<sha256>.sqfs`, which never replaces an existing image). Stored images are made read-only.
//! Every sha256 taken from a caller must be 64 lowercase hex characters, so a hash can never be
//! a path trick. Deciding which slugs are still needed is the caller's business: [`SlugStore::gc`]
//! just deletes what it is not told to keep.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::image::{self as slug, io_err, is_valid_sha256, SlugError, SlugInfo, TempFile};

/// Temporary files in the store older than this are removed by [`SlugStore::gc`].
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
const SUFFIX: &str = ".sqfs";

/// A content-addressed directory of slug images.
#[derive(Debug, Clone)]
pub struct SlugStore {
    dir: PathBuf,
}

fn check_sha(sha256: &str) -> Result<(), SlugError> {
    if is_valid_sha256(sha256) {
        Ok(())
    } else {
        Err(SlugError::InvalidSha(sha256.to_string()))
    }
}

/// A fresh temporary name in `dir` for a file being received (a download, an upload) before
/// [`SlugStore::put_file`] takes it in; [`SlugStore::gc`] removes such names left behind by a
/// crash once they are an hour old.
pub fn upload_path(dir: &Path) -> PathBuf {
    dir.join(format!(".upload.tmp-{}", slug::unique_suffix()))
}

impl SlugStore {
    /// Opens the store at `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> Result<Self, SlugError> {
        fs::create_dir_all(dir).map_err(io_err("creating directory", dir))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image with this sha256 lives (whether or not it is there).
    pub fn path(&self, sha256: &str) -> Result<PathBuf, SlugError> {
        check_sha(sha256)?;
        Ok(self.dir.join(format!("{sha256}{SUFFIX}")))
    }

    /// Whether the image with this sha256 is in the store.
    pub fn contains(&self, sha256: &str) -> Result<bool, SlugError> {
        let path = self.path(sha256)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("reading metadata of", &path)(e)),
        }
    }

    /// Packs `src_dir` (see [`slug::pack`]) straight into the store.
    pub fn put_packed(&self, src_dir: &Path) -> Result<SlugInfo, SlugError> {
        let (tmp, file) = TempFile::create_in(&self.dir, "pack")?;
        drop(file);
        let info = slug::pack(src_dir, tmp.path())?;
        self.commit(tmp, &info.sha256)?;
        Ok(info)
    }

    /// Stores `bytes` (e.g. a downloaded image) after checking they hash to `expected_sha256`.
    pub fn put_bytes(&self, bytes: &[u8], expected_sha256: &str) -> Result<SlugInfo, SlugError> {
        check_sha(expected_sha256)?;
        let actual = slug::sha256_bytes(bytes);
        if actual != expected_sha256 {
            return Err(SlugError::HashMismatch {
                path: PathBuf::from("<downloaded bytes>"),
                actual,
                expected: expected_sha256.to_string(),
            });
        }
        let info = SlugInfo {
            sha256: actual,
            size: bytes.len() as u64,
        };
        if self.contains(&info.sha256)? {
            return Ok(info);
        }
        let (tmp, mut file) = TempFile::create_in(&self.dir, "put")?;
        file.write_all(bytes)
            .map_err(io_err("writing", tmp.path()))?;
        file.sync_all().map_err(io_err("syncing", tmp.path()))?;
        drop(file);
        // Hash what is on disk, not what we meant to write.
        slug::verify(tmp.path(), &info.sha256)?;
        self.commit(tmp, &info.sha256)?;
        Ok(info)
    }

    /// Moves the file at `path` (e.g. a finished download) into the store after checking it
    /// hashes to `expected_sha256`. On success `path` is gone; on a hash mismatch it is left
    /// where it was.
    pub fn put_file(&self, path: &Path, expected_sha256: &str) -> Result<SlugInfo, SlugError> {
        check_sha(expected_sha256)?;
        // Move the file into the store first and hash it there, so that nobody can change it
        // between the check and the commit.
        let (tmp, file) = TempFile::create_in(&self.dir, "put")?;
        drop(file);
        match fs::rename(path, tmp.path()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                fs::copy(path, tmp.path()).map_err(io_err("copying", path))?;
                OpenOptions::new()
                    .write(true)
                    .open(tmp.path())
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("syncing", tmp.path()))?;
                fs::remove_file(path).map_err(io_err("removing", path))?;
            }
            Err(e) => return Err(io_err("moving into the slug store", path)(e)),
        }
        let actual = slug::sha256_file(tmp.path())?;
        if actual != expected_sha256 {
            // Give the caller its file back.
            let _ = fs::rename(tmp.path(), path);
            return Err(SlugError::HashMismatch {
                path: path.to_path_buf(),
                actual,
                expected: expected_sha256.to_string(),
            });
        }
        let size = fs::metadata(tmp.path())
            .map_err(io_err("reading metadata of", tmp.path()))?
            .len();
        self.commit(tmp, &actual)?;
        Ok(SlugInfo {
            sha256: actual,
            size,
        })
    }

    /// Makes the verified temporary image `tmp` the image for `sha256`, keeping an existing one.
    fn commit(&self, tmp: TempFile, sha256: &str) -> Result<(), SlugError> {
        let dest = self.path(sha256)?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o444))
            .map_err(io_err("setting permissions of", tmp.path()))?;
        // link(2) never replaces an existing file, unlike rename(2).
        match fs::hard_link(tmp.path(), &dest) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                tracing::debug!(sha256, "slug already in store, keeping the existing image");
                // Stored again: it counts as new for gc's grace period.
                if let Err(e) = File::open(&dest).and_then(|f| f.set_modified(SystemTime::now())) {
                    tracing::debug!(error = %e, "cannot refresh the mtime of {}", dest.display());
                }
            }
            Err(_) if !dest.exists() => {
                // Filesystem without hard links: fall back to rename.
                fs::rename(tmp.path(), &dest).map_err(io_err("renaming into", &dest))?;
                tmp.disarm();
                return Ok(());
            }
            Err(e) => return Err(io_err("linking into", &dest)(e)),
        }
        drop(tmp); // removes the temporary name
        Ok(())
    }

    /// The sha256 of every image in the store, sorted.
    pub fn list(&self) -> Result<Vec<String>, SlugError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("reading directory", &self.dir))? {
            let entry = entry.map_err(io_err("reading directory", &self.dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(sha) = name.strip_suffix(SUFFIX) {
                if is_valid_sha256(sha) {
                    out.push(sha.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes every image whose sha256 is not in `keep` and that was stored (or stored again)
    /// at least `min_age` ago, and returns the deleted sha256s, sorted. The age spares an image
    /// that was just uploaded and is about to be referenced.
    ///
    /// Also removes temporary files left in the store by crashed writers (older than an hour).
    pub fn gc(&self, keep: &HashSet<String>, min_age: Duration) -> Result<Vec<String>, SlugError> {
        let mut deleted = Vec::new();
        let now = SystemTime::now();
        for sha in self.list()? {
            if keep.contains(&sha) {
                continue;
            }
            let path = self.path(&sha)?;
            let young = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age < min_age);
            if young && !min_age.is_zero() {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => deleted.push(sha),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &path)(e)),
            }
        }
        self.remove_stale_temps();
        if !deleted.is_empty() {
            tracing::info!(count = deleted.len(), "slug store gc deleted images");
        }
        Ok(deleted)
    }

    fn remove_stale_temps(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in rd.flatten() {
            let name = entry.file_name();
            let is_temp = name
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.contains(".tmp-"));
            if !is_temp {
                continue;
            }
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TEMP_AGE);
            if old {
                let path = entry.path();
                if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    slug::remove_tree(&path);
                } else {
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SlugStore::open(&dir.path().join("store")).expect("open");
        for bad in [
            "",
            "../../etc/passwd",
            &"A".repeat(64),
            &"a".repeat(65),
            &format!("{}/", "a".repeat(63)),
        ] {
            assert!(
                matches!(store.path(bad), Err(SlugError::InvalidSha(_))),
                "{bad}"
            );
            assert!(store.contains(bad).is_err());
            assert!(store.put_bytes(b"x", bad).is_err());
        }
    }

    #[test]
    fn put_bytes_verifies_and_dedups() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SlugStore::open(dir.path()).expect("open");
        let sha = slug::sha256_bytes(b"hello");
        let wrong = slug::sha256_bytes(b"other");
        let err = store.put_bytes(b"hello", &wrong).expect_err("mismatch");
        assert!(err.to_string().contains(&wrong), "{err}");
        assert!(store.list().expect("list").is_empty());

        let info = store.put_bytes(b"hello", &sha).expect("put");
        assert_eq!(info.size, 5);
        assert!(store.contains(&sha).expect("contains"));
        store.put_bytes(b"hello", &sha).expect("put again");
        assert_eq!(store.list().expect("list"), vec![sha.clone()]);
        assert_eq!(
            fs::read(store.path(&sha).expect("path")).expect("read"),
            b"hello"
        );
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).expect("readdir").count(), 1);
    }

    #[test]
    fn put_file_moves_or_returns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SlugStore::open(&dir.path().join("s")).expect("open");
        let src = dir.path().join("download");
        fs::write(&src, b"image").expect("write");
        let bad = slug::sha256_bytes(b"nope");
        assert!(matches!(
            store.put_file(&src, &bad),
            Err(SlugError::HashMismatch { .. })
        ));
        assert!(src.exists(), "file is given back on mismatch");
        let sha = slug::sha256_bytes(b"image");
        store.put_file(&src, &sha).expect("put");
        assert!(!src.exists());
        assert!(store.contains(&sha).expect("contains"));
        assert_eq!(store.list().expect("list"), vec![sha]);
    }

    #[test]
    fn gc_deletes_unkept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SlugStore::open(dir.path()).expect("open");
        let shas: Vec<String> = (0..3)
            .map(|i| {
                let b = format!("slug {i}");
                store
                    .put_bytes(b.as_bytes(), &slug::sha256_bytes(b.as_bytes()))
                    .expect("put")
                    .sha256
            })
            .collect();
        fs::write(dir.path().join("unrelated.txt"), b"x").expect("write");
        let keep: HashSet<String> = [shas[1].clone()].into();
        let mut expect = vec![shas[0].clone(), shas[2].clone()];
        expect.sort();
        assert_eq!(store.gc(&keep, Duration::ZERO).expect("gc"), expect);
        assert_eq!(store.list().expect("list"), vec![shas[1].clone()]);
        assert!(dir.path().join("unrelated.txt").exists());
        assert!(store.gc(&keep, Duration::ZERO).expect("gc").is_empty());
    }
}
