//! Slugs: reproducible, content-addressed squashfs images of a built app.
//!
//! This module owns the slug *format* and the only code that reads or writes it:
//!
//! * [`pack`] turns a directory tree into a squashfs image (zstd, 128 KiB blocks) using the
//!   `squashfs-ng` writer. The image is reproducible: the same tree gives byte-identical output
//!   whatever the file mtimes, uid/gid, directory iteration order or time of day. Every inode gets
//!   mtime 0 and uid/gid 0, permission bits are kept minus setuid/setgid/sticky, directory entries
//!   are added in byte order, no xattrs are stored, and the wall-clock timestamp that
//!   `squashfs-ng` writes into the superblock is overwritten with 0 after the image is finished.
//! * [`unpack`] extracts an image into a new read-only directory, refusing images that could
//!   escape their root or that the platform would refuse to run (see [`unpack`]).
//! * [`sha256_file`] and [`verify`] compute and check the content address (sha256 of the image).
//!
//! Only regular files, directories and symlinks that stay inside the slug are allowed, at both
//! ends: `pack` refuses to produce an image that `unpack` would refuse.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use squashfs_ng::read::{Archive, Data, Node};
use squashfs_ng::write::{Source, SourceData, Writer};
use squashfs_ng::SquashfsError;

/// What [`pack`] produced: the image's content address and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlugInfo {
    /// sha256 of the image file, 64 lowercase hex characters.
    pub sha256: String,
    /// Size of the image file in bytes.
    pub size: u64,
}

/// Everything that can go wrong packing, unpacking, hashing or storing a slug.
#[derive(Debug, thiserror::Error)]
pub enum SlugError {
    /// An I/O operation on `path` failed; `op` says which ("reading", "creating", ...).
    #[error("{op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The squashfs library failed while working on `path`.
    #[error("squashfs error {op} {path:?}: {source}")]
    Squashfs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: SquashfsError,
    },
    /// The input tree of [`pack`] contains something a slug may not contain.
    #[error("cannot pack {path:?}: {reason}")]
    PackRefused { path: PathBuf, reason: String },
    /// An entry of the image has a name that is `..`, absolute, or otherwise leaves its directory.
    #[error("slug entry {path:?} escapes the slug root")]
    EntryEscapes { path: String },
    /// A symlink in the image is absolute or resolves outside the slug root.
    #[error("slug entry {path:?} is a symlink to {target:?}, which escapes the slug root")]
    SymlinkEscapes { path: String, target: String },
    /// The image contains a device node, fifo or socket.
    #[error("slug entry {path:?} is a {kind}, which is not allowed in a slug")]
    ForbiddenType { path: String, kind: &'static str },
    /// The image contains a setuid or setgid entry.
    #[error("slug entry {path:?} has setuid/setgid mode {mode:o}, which is not allowed in a slug")]
    SetId { path: String, mode: u32 },
    /// The image contains an entry name that is not usable (empty, contains '/' or a NUL byte,
    /// duplicate).
    #[error("slug entry {path:?} has an invalid name: {reason}")]
    InvalidName { path: String, reason: String },
    /// A symlink's target has a NUL byte: no file system can store it.
    #[error("slug entry {path:?} is a symlink to {target:?}, which contains a NUL byte")]
    InvalidSymlink { path: String, target: String },
    /// The image is not a readable squashfs image (truncated, random bytes, inconsistent).
    #[error("slug {path:?} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// The image's sha256 is not the expected one.
    #[error("slug {path:?} has sha256 {actual}, expected {expected}")]
    HashMismatch {
        path: PathBuf,
        actual: String,
        expected: String,
    },
    /// A sha256 given by a caller is not 64 lowercase hex characters.
    #[error("invalid slug sha256 {0:?}: expected 64 lowercase hex characters")]
    InvalidSha(String),
    /// The unpack destination already exists.
    #[error("unpack destination {0:?} already exists")]
    DestinationExists(PathBuf),
}

type Result<T> = std::result::Result<T, SlugError>;

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SlugError {
    let path = path.to_path_buf();
    move |source| SlugError::Io { op, path, source }
}

fn sq_err(op: &'static str, path: &Path) -> impl FnOnce(SquashfsError) -> SlugError {
    let path = path.to_path_buf();
    move |source| SlugError::Squashfs { op, path, source }
}

/// Deepest directory nesting `pack` and `unpack` accept.
const MAX_DEPTH: usize = 1024;
/// Most symlinks followed while resolving one symlink (Linux's MAXSYMLINKS).
const MAX_SYMLINK_HOPS: u32 = 40;
/// Offset and length of the superblock fields we touch (see `sqfs/super.h`).
const SUPERBLOCK_LEN: usize = 96;
const SUPERBLOCK_MTIME_OFFSET: u64 = 8;
const SQUASHFS_MAGIC: u32 = 0x7371_7368; // "hsqs"
const NO_TABLE: u64 = u64::MAX;

const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

// ---------------------------------------------------------------------------------------------
// Hashing

/// Hex sha256 of the file at `path`, read in a streaming fashion.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("reading", path)(e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex sha256 of an in-memory buffer.
pub(crate) fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Checks that the file at `path` has sha256 `sha256` (lowercase hex).
pub fn verify(path: &Path, sha256: &str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual == sha256 {
        Ok(())
    } else {
        Err(SlugError::HashMismatch {
            path: path.to_path_buf(),
            actual,
            expected: sha256.to_string(),
        })
    }
}

/// True if `s` is a well-formed content address: 64 lowercase hex characters.
pub fn is_valid_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Temporary names

/// A name that no other call in this or another process will pick: pid, time and a counter.
pub(crate) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:x}{:08x}{:x}", std::process::id(), nanos, n)
}

fn parent_or_dot(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Removes a temporary file when dropped unless disarmed.
pub(crate) struct TempFile {
    path: Option<PathBuf>,
}

impl TempFile {
    /// Creates a fresh empty file `<dir>/.<stem>.tmp-<unique>`.
    pub(crate) fn create_in(dir: &Path, stem: &str) -> Result<(Self, File)> {
        loop {
            let path = dir.join(format!(".{stem}.tmp-{}", unique_suffix()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(f) => return Ok((Self { path: Some(path) }, f)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("creating", &path)(e)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Stops the drop from deleting the file (it has been renamed away or should stay).
    pub(crate) fn disarm(mut self) {
        self.path = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Symlink containment

/// The kind of an entry, as far as symlink resolution cares.
enum TreeKind {
    Dir,
    File,
    Symlink(String),
}

/// Map from a slug-relative path ("a/b/c", root is "") to what it is.
type TreeMap = HashMap<String, TreeKind>;

fn split_target(target: &str) -> impl DoubleEndedIterator<Item = &str> {
    target.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Does the symlink at slug-relative `link` with target `target` resolve outside the slug root?
///
/// Resolution follows the kernel: components are walked from the link's directory, symlinks met
/// on the way (including the last component) are expanded in place, `..` is applied to the
/// already-resolved prefix. A component that does not exist (a dangling link) is kept lexically,
/// which is conservative. More than [`MAX_SYMLINK_HOPS`] expansions would make the kernel fail
/// with ELOOP, so resolution stops there without escaping.
fn symlink_escapes(tree: &TreeMap, link: &str, target: &str) -> bool {
    if target.is_empty() || target.starts_with('/') {
        return true;
    }
    let mut cur: Vec<String> = split_target(link).map(str::to_string).collect();
    cur.pop();
    let mut queue: VecDeque<String> = split_target(target).map(str::to_string).collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            if cur.pop().is_none() {
                return true;
            }
            continue;
        }
        cur.push(c);
        if let Some(TreeKind::Symlink(t)) = tree.get(&cur.join("/")) {
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return false;
            }
            if t.is_empty() || t.starts_with('/') {
                return true;
            }
            cur.pop();
            for comp in split_target(t).rev() {
                queue.push_front(comp.to_string());
            }
        }
    }
    false
}

/// First symlink (in path order) of `tree` that escapes the root, as (path, target).
fn first_escaping_symlink(tree: &TreeMap) -> Option<(String, String)> {
    let mut links: Vec<(&String, &String)> = tree
        .iter()
        .filter_map(|(p, k)| match k {
            TreeKind::Symlink(t) => Some((p, t)),
            _ => None,
        })
        .collect();
    links.sort();
    links
        .into_iter()
        .find(|(p, t)| symlink_escapes(tree, p, t))
        .map(|(p, t)| (p.clone(), t.clone()))
}

// ---------------------------------------------------------------------------------------------
// Pack

enum ScanKind {
    /// Children as (name, index into the scan list).
    Dir(Vec<(OsString, usize)>),
    File,
    Symlink(PathBuf),
}

struct ScanNode {
    abs: PathBuf,
    mode: u16,
    kind: ScanKind,
}

fn refuse(path: &Path, reason: impl Into<String>) -> SlugError {
    SlugError::PackRefused {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Walks `abs` (slug path `rel`) and appends its subtree to `out` in post-order, children in
/// byte order of their names, so that inode numbers do not depend on readdir order.
fn scan(
    abs: &Path,
    rel: &str,
    meta: &fs::Metadata,
    depth: usize,
    out: &mut Vec<ScanNode>,
    tree: &mut TreeMap,
) -> Result<usize> {
    let ft = meta.file_type();
    let perm = meta.permissions().mode() & 0o777;
    let (kind, type_bits) = if ft.is_dir() {
        if depth > MAX_DEPTH {
            return Err(refuse(
                abs,
                format!("directories nested deeper than {MAX_DEPTH}"),
            ));
        }
        let mut names: Vec<OsString> = Vec::new();
        for entry in fs::read_dir(abs).map_err(io_err("reading directory", abs))? {
            let entry = entry.map_err(io_err("reading directory", abs))?;
            names.push(entry.file_name());
        }
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child_abs = abs.join(&name);
            let Some(name_str) = name.to_str() else {
                return Err(refuse(&child_abs, "file name is not valid utf-8"));
            };
            let child_rel = if rel.is_empty() {
                name_str.to_string()
            } else {
                format!("{rel}/{name_str}")
            };
            let child_meta = fs::symlink_metadata(&child_abs)
                .map_err(io_err("reading metadata of", &child_abs))?;
            let idx = scan(&child_abs, &child_rel, &child_meta, depth + 1, out, tree)?;
            children.push((name, idx));
        }
        tree.insert(rel.to_string(), TreeKind::Dir);
        (ScanKind::Dir(children), S_IFDIR)
    } else if ft.is_file() {
        tree.insert(rel.to_string(), TreeKind::File);
        (ScanKind::File, S_IFREG)
    } else if ft.is_symlink() {
        let target = fs::read_link(abs).map_err(io_err("reading symlink", abs))?;
        let Some(t) = target.to_str() else {
            return Err(refuse(abs, "symlink target is not valid utf-8"));
        };
        tree.insert(rel.to_string(), TreeKind::Symlink(t.to_string()));
        (ScanKind::Symlink(target), S_IFLNK)
    } else {
        let kind = if ft.is_block_device() {
            "a block device"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_fifo() {
            "a fifo"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "of an unknown file type"
        };
        return Err(refuse(
            abs,
            format!("it is {kind}, which is not allowed in a slug"),
        ));
    };
    // Permission bits are kept; setuid/setgid/sticky are dropped. Symlink modes are always 0777.
    let perm = if ft.is_symlink() { 0o777 } else { perm };
    out.push(ScanNode {
        abs: abs.to_path_buf(),
        mode: (type_bits | perm) as u16,
        kind,
    });
    Ok(out.len() - 1)
}

fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io_err("opening", path))?;
    let meta = file
        .metadata()
        .map_err(io_err("reading metadata of", path))?;
    if !meta.is_file() {
        return Err(refuse(
            path,
            "it stopped being a regular file while packing",
        ));
    }
    Ok(file)
}

fn write_image(nodes: Vec<ScanNode>, image: &Path) -> Result<()> {
    let mut writer = Writer::open(image).map_err(sq_err("creating", image))?;
    let mut ids: Vec<u32> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let data = match node.kind {
            ScanKind::Dir(children) => {
                let entries: Vec<(OsString, u32)> = children
                    .into_iter()
                    .map(|(name, idx)| (name, ids[idx]))
                    .collect();
                SourceData::Dir(Box::new(entries.into_iter()))
            }
            ScanKind::File => {
                let file = open_regular(&node.abs)?;
                SourceData::File(Box::new(BufReader::with_capacity(128 * 1024, file)))
            }
            ScanKind::Symlink(target) => SourceData::Symlink(target),
        };
        let source = Source {
            data,
            uid: 0,
            gid: 0,
            mode: node.mode,
            modified: 0,
            xattrs: HashMap::new(),
            flags: 0,
        };
        let id = writer.add(source).map_err(|source| SlugError::Squashfs {
            op: "adding",
            path: node.abs.clone(),
            source,
        })?;
        ids.push(id);
    }
    writer.finish().map_err(sq_err("finishing", image))?;
    Ok(())
}

/// Packs the tree at `src_dir` into a squashfs image at `out` (replaced atomically if it exists).
///
/// The output is reproducible (see the module docs). Compression is zstd at the level
/// squashfs-ng's `Writer` hard-codes (libsquashfs' default, 15): small images, slow packing. Refuses device nodes, fifos, sockets,
/// non-utf-8 names and symlinks that are absolute or resolve outside `src_dir`; symlinks are
/// stored as symlinks, never followed. The image is written to a temporary file beside `out`
/// and renamed into place.
pub fn pack(src_dir: &Path, out: &Path) -> Result<SlugInfo> {
    let meta = fs::metadata(src_dir).map_err(io_err("reading metadata of", src_dir))?;
    if !meta.is_dir() {
        return Err(refuse(src_dir, "it is not a directory"));
    }
    let mut nodes = Vec::new();
    let mut tree = TreeMap::new();
    scan(src_dir, "", &meta, 0, &mut nodes, &mut tree)?;
    if let Some((link, target)) = first_escaping_symlink(&tree) {
        return Err(refuse(
            &src_dir.join(link),
            format!("symlink target {target:?} escapes the slug root"),
        ));
    }
    drop(tree);

    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "slug".to_string());
    let (tmp, file) = TempFile::create_in(parent_or_dot(out), &stem)?;
    drop(file);
    write_image(nodes, tmp.path())?;

    // squashfs-ng stamps the superblock with the current time and offers no way to change it:
    // overwrite it with 0 (the superblock carries no checksum, so this is all it takes).
    let file = OpenOptions::new()
        .write(true)
        .open(tmp.path())
        .map_err(io_err("opening", tmp.path()))?;
    file.write_all_at(&0u32.to_le_bytes(), SUPERBLOCK_MTIME_OFFSET)
        .map_err(io_err("writing", tmp.path()))?;
    file.sync_all().map_err(io_err("syncing", tmp.path()))?;
    let size = file
        .metadata()
        .map_err(io_err("reading metadata of", tmp.path()))?
        .len();
    drop(file);
    let sha256 = sha256_file(tmp.path())?;

    fs::rename(tmp.path(), out).map_err(io_err("renaming into", out))?;
    tmp.disarm();
    tracing::debug!(src = %src_dir.display(), out = %out.display(), %sha256, size, "packed slug");
    Ok(SlugInfo { sha256, size })
}

// ---------------------------------------------------------------------------------------------
// Unpack

/// Errors from the squashfs reader while unpacking mean the image is not what it should be.
fn sq_corrupt(op: &'static str, image: &Path) -> impl FnOnce(SquashfsError) -> SlugError {
    let image = image.to_path_buf();
    move |e| SlugError::Corrupt {
        path: image,
        reason: format!("{op}: {e}"),
    }
}

fn corrupt(path: &Path, reason: impl Into<String>) -> SlugError {
    SlugError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Cheap sanity checks of the superblock before handing the file to the C library, so that
/// truncated images and random bytes are rejected with a clear message.
fn check_superblock(image: &Path) -> Result<()> {
    let mut file = File::open(image).map_err(io_err("opening", image))?;
    let len = file
        .metadata()
        .map_err(io_err("reading metadata of", image))?
        .len();
    let mut sb = [0u8; SUPERBLOCK_LEN];
    if len < SUPERBLOCK_LEN as u64 {
        return Err(corrupt(
            image,
            format!("file is {len} bytes, too short for a superblock"),
        ));
    }
    file.read_exact(&mut sb).map_err(io_err("reading", image))?;
    let u16_at = |o: usize| u16::from_le_bytes([sb[o], sb[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    let u64_at = |o: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&sb[o..o + 8]);
        u64::from_le_bytes(b)
    };
    if u32_at(0) != SQUASHFS_MAGIC {
        return Err(corrupt(image, "not a squashfs image (bad magic)"));
    }
    let (major, minor) = (u16_at(28), u16_at(30));
    if (major, minor) != (4, 0) {
        return Err(corrupt(
            image,
            format!("unsupported squashfs version {major}.{minor}"),
        ));
    }
    let block_size = u32_at(12);
    if !(4096..=1 << 20).contains(&block_size) || !block_size.is_power_of_two() {
        return Err(corrupt(image, format!("invalid block size {block_size}")));
    }
    let bytes_used = u64_at(40);
    if bytes_used > len {
        return Err(corrupt(
            image,
            format!("truncated: superblock says {bytes_used} bytes, file has {len}"),
        ));
    }
    let tables = [
        ("id", u64_at(48)),
        ("xattr", u64_at(56)),
        ("inode", u64_at(64)),
        ("directory", u64_at(72)),
        ("fragment", u64_at(80)),
        ("export", u64_at(88)),
    ];
    for (name, start) in tables {
        let optional = matches!(name, "xattr" | "fragment" | "export");
        if (start != NO_TABLE || !optional) && start >= bytes_used {
            return Err(corrupt(
                image,
                format!("{name} table starts past the end of the image"),
            ));
        }
    }
    if u64_at(64) > u64_at(72) {
        return Err(corrupt(
            image,
            "inode table starts after the directory table",
        ));
    }
    // libsquashfs allocates the whole fragment table (16 bytes an entry) from this count before
    // reading it: a forged count would make it ask for up to 64 GiB. Every fragment is a block
    // of at least one byte in the image, so a real image never declares more than it has bytes.
    let fragments = u32_at(16);
    if u64::from(fragments) > bytes_used {
        return Err(corrupt(
            image,
            format!(
                "superblock declares {fragments} fragments, more than a {bytes_used}-byte image \
                 can hold"
            ),
        ));
    }
    Ok(())
}

/// Runs `f`, turning a panic inside the squashfs reader (it `unwrap`s in a few places) into a
/// corrupt-image error instead of taking the process down.
fn guard_panics<T>(image: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(corrupt(
            image,
            "the squashfs reader failed on inconsistent data",
        )),
    }
}

enum EntryKind {
    Dir,
    File,
    Symlink(String),
}

/// One validated entry of an image, in an order where parents come before children.
struct Entry<'a> {
    rel: String,
    kind: EntryKind,
    executable: bool,
    node: Node<'a>,
}

/// Walks the whole image without touching the disk and checks every rule of [`unpack`].
fn scan_image<'a>(archive: &'a Archive, image: &Path) -> Result<Vec<Entry<'a>>> {
    // Starting from "" (not "/") makes the reader build child paths as `"".join(name)`, so a
    // child whose raw name is absolute or contains separators or `..` stays visible as such.
    let root = archive
        .get_exists("")
        .map_err(sq_corrupt("reading the root directory", image))?;
    if root.path() != Some(Path::new("")) {
        return Err(corrupt(
            image,
            "unexpected root path from the squashfs reader",
        ));
    }
    if !matches!(
        root.data()
            .map_err(sq_corrupt("reading the root directory", image))?,
        Data::Dir(_)
    ) {
        return Err(corrupt(image, "root is not a directory"));
    }
    check_mode("/", u32::from(root.mode()))?;

    let mut entries: Vec<Entry<'a>> = Vec::new();
    let mut tree = TreeMap::new();
    tree.insert(String::new(), TreeKind::Dir);
    let mut seen_dirs: HashSet<u32> = HashSet::from([root.id()]);
    let mut stack: Vec<(Node<'a>, PathBuf, usize)> = vec![(root, PathBuf::new(), 0)];

    while let Some((dir, dir_path, depth)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err(corrupt(
                image,
                format!("directories nested deeper than {MAX_DEPTH}"),
            ));
        }
        let mut names: HashSet<OsString> = HashSet::new();
        let children = dir
            .into_owned_dir()
            .map_err(sq_corrupt("reading a directory", image))?;
        for child in children {
            let child = child.map_err(sq_corrupt("reading a directory", image))?;
            let child_path = child
                .path()
                .ok_or_else(|| corrupt(image, "directory entry without a path"))?
                .to_path_buf();
            let shown = child_path.to_string_lossy().into_owned();
            let name = entry_name(&dir_path, &child_path, &shown)?;
            if !names.insert(name.clone()) {
                return Err(SlugError::InvalidName {
                    path: shown,
                    reason: "duplicate directory entry".to_string(),
                });
            }
            let mode = u32::from(child.mode());
            check_mode(&shown, mode)?;
            let data = child
                .data()
                .map_err(sq_corrupt("reading an inode", image))?;
            let kind = match data {
                Data::Dir(_) => EntryKind::Dir,
                Data::File(_) => EntryKind::File,
                Data::Symlink(target) => {
                    let text = target.to_string_lossy().into_owned();
                    // The kernel would refuse it at extraction: refuse it here, where `check`
                    // sees it too.
                    if target.as_os_str().as_bytes().contains(&0) {
                        return Err(SlugError::InvalidSymlink {
                            path: shown,
                            target: text,
                        });
                    }
                    EntryKind::Symlink(text)
                }
                Data::BlockDev(..) => return Err(forbidden(shown, "block device")),
                Data::CharDev(..) => return Err(forbidden(shown, "character device")),
                Data::Fifo => return Err(forbidden(shown, "fifo")),
                Data::Socket => return Err(forbidden(shown, "socket")),
            };
            tree.insert(
                shown.clone(),
                match &kind {
                    EntryKind::Dir => TreeKind::Dir,
                    EntryKind::File => TreeKind::File,
                    EntryKind::Symlink(t) => TreeKind::Symlink(t.clone()),
                },
            );
            if let EntryKind::Dir = kind {
                if !seen_dirs.insert(child.id()) {
                    return Err(corrupt(image, format!("directory loop at {shown:?}")));
                }
                stack.push((child.clone(), child_path.clone(), depth + 1));
            }
            entries.push(Entry {
                rel: shown,
                kind,
                executable: mode & 0o111 != 0,
                node: child,
            });
        }
    }
    if let Some((path, target)) = first_escaping_symlink(&tree) {
        return Err(SlugError::SymlinkEscapes { path, target });
    }
    Ok(entries)
}

fn forbidden(path: String, kind: &'static str) -> SlugError {
    SlugError::ForbiddenType { path, kind }
}

fn check_mode(path: &str, mode: u32) -> Result<()> {
    if mode & 0o6000 != 0 {
        return Err(SlugError::SetId {
            path: path.to_string(),
            mode: mode & !S_IFMT,
        });
    }
    Ok(())
}

/// The single, plain name `child` adds to `dir`, or an error if its raw name is `..`, absolute,
/// `.`, empty, or has several components.
fn entry_name(dir: &Path, child: &Path, shown: &str) -> Result<OsString> {
    let escapes = || SlugError::EntryEscapes {
        path: shown.to_string(),
    };
    let invalid = |reason: &str| SlugError::InvalidName {
        path: shown.to_string(),
        reason: reason.to_string(),
    };
    if child.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    }) {
        return Err(escapes());
    }
    let rest = child.strip_prefix(dir).map_err(|_| escapes())?;
    let mut comps = rest.components();
    let name = match (comps.next(), comps.next()) {
        (Some(Component::Normal(name)), None) => name.to_os_string(),
        (None, _) => return Err(invalid("empty name")),
        _ => return Err(invalid("name is \".\" or contains '/'")),
    };
    // No file system takes a NUL in a name: refused here, so `check` refuses what `unpack` would
    // fail to create.
    if name.as_bytes().contains(&0) {
        return Err(invalid("name contains a NUL byte"));
    }
    // The reader built `child` as `dir.join(raw_name)`; anything but an exact match means the raw
    // name had extra separators or "." components.
    let expected = if dir.as_os_str().is_empty() {
        PathBuf::from(&name)
    } else {
        dir.join(&name)
    };
    if expected.as_os_str() != child.as_os_str() {
        return Err(invalid("name is \".\" or contains '/'"));
    }
    Ok(name)
}

fn extract_file(node: &Node<'_>, target: &Path, image: &Path) -> Result<()> {
    let mut src = node
        .as_file()
        .map_err(sq_corrupt("reading a file", image))?;
    let expected = src.size();
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(target)
        .map_err(io_err("creating", target))?;
    // One squashfs block per read so each call decompresses at most one block.
    let mut buf = vec![0u8; 128 * 1024];
    let mut written: u64 = 0;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(image, format!("reading {:?}: {e}", node.path()))),
        };
        out.write_all(&buf[..n])
            .map_err(io_err("writing", target))?;
        written += n as u64;
    }
    if written != expected {
        return Err(corrupt(
            image,
            format!("{:?}: read {written} of {expected} bytes", node.path()),
        ));
    }
    Ok(())
}

fn extract(entries: &[Entry<'_>], tmp: &Path, image: &Path) -> Result<()> {
    for e in entries {
        let target = tmp.join(&e.rel);
        match &e.kind {
            EntryKind::Dir => {
                fs::create_dir(&target).map_err(io_err("creating directory", &target))?;
            }
            EntryKind::File => extract_file(&e.node, &target, image)?,
            EntryKind::Symlink(_) => {}
        }
    }
    // Symlinks last, so that no later write can go through one.
    for e in entries {
        if let EntryKind::Symlink(t) = &e.kind {
            let target = tmp.join(&e.rel);
            std::os::unix::fs::symlink(t, &target).map_err(io_err("creating symlink", &target))?;
        }
    }
    // Read-only: files 0444/0555, directories 0555, deepest first, the root last.
    for e in entries.iter().rev() {
        let mode = match e.kind {
            EntryKind::Symlink(_) => continue,
            EntryKind::Dir => 0o555,
            EntryKind::File if e.executable => 0o555,
            EntryKind::File => 0o444,
        };
        let target = tmp.join(&e.rel);
        fs::set_permissions(&target, fs::Permissions::from_mode(mode))
            .map_err(io_err("setting permissions of", &target))?;
    }
    fs::set_permissions(tmp, fs::Permissions::from_mode(0o555))
        .map_err(io_err("setting permissions of", tmp))?;
    Ok(())
}

/// Removes a tree that may contain read-only directories.
pub(crate) fn remove_tree(path: &Path) {
    fn make_writable(path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if !meta.is_dir() {
            return;
        }
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(path) {
            for entry in rd.flatten() {
                make_writable(&entry.path());
            }
        }
    }
    make_writable(path);
    let _ = fs::remove_dir_all(path);
}

/// Checks an image without extracting it: the same rules as [`unpack`] (no
/// escaping names or symlinks, no device nodes, fifos, sockets or set-id
/// bits, a readable superblock and directory tree). The master runs this on
/// every uploaded slug so a bad one is refused before any worker sees it.
pub fn check(image: &Path) -> Result<()> {
    check_superblock(image)?;
    let archive = guard_panics(image, || {
        Archive::open(image).map_err(sq_corrupt("opening", image))
    })?;
    guard_panics(image, || scan_image(&archive, image)).map(|_| ())
}

/// Extracts the image at `image` into the new directory `dest`, which must not exist.
///
/// The whole image is validated before anything is written. It is refused, leaving nothing at
/// `dest`, if it contains an entry whose name is `..`, absolute or contains `/` or a NUL byte, a
/// symlink that is absolute, resolves outside the root or has a NUL byte in its target, a device
/// node, fifo or socket, or a setuid/setgid entry; errors name the offending path inside the slug. Extraction goes to `dest.tmp-XXXX` beside
/// `dest`, which is then made read-only (directories 0555, files 0444, or 0555 if any x bit was
/// set) and renamed to `dest`.
///
/// If another process creates an *empty* directory at `dest` while this runs, the rename replaces
/// it (rename(2) semantics); anything else at `dest` makes the rename fail.
///
/// Squashfs has no checksums over file data, so a flipped bit in a stored (uncompressed) block
/// goes unnoticed here: check the image's sha256 ([`verify`], or put it through the
/// [`SlugStore`](crate::store::SlugStore), which verifies on the way in) before unpacking an
/// image that came over the network. A corrupt image gives [`SlugError::Corrupt`]; a few
/// inconsistencies make the squashfs-ng reader panic internally, which is caught and turned into
/// that error (the panic message still reaches stderr through the panic hook). There is no limit
/// on the unpacked size.
pub fn unpack(image: &Path, dest: &Path) -> Result<()> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(SlugError::DestinationExists(dest.to_path_buf()));
    }
    check_superblock(image)?;
    let archive = guard_panics(image, || {
        Archive::open(image).map_err(sq_corrupt("opening", image))
    })?;
    let entries = guard_panics(image, || scan_image(&archive, image))?;

    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "slug".to_string());
    let parent = parent_or_dot(dest);
    let tmp = loop {
        let tmp = parent.join(format!("{dest_name}.tmp-{}", unique_suffix()));
        match fs::create_dir(&tmp) {
            Ok(()) => break tmp,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating directory", &tmp)(e)),
        }
    };
    let result = guard_panics(image, || extract(&entries, &tmp, image)).and_then(|()| {
        if fs::symlink_metadata(dest).is_ok() {
            return Err(SlugError::DestinationExists(dest.to_path_buf()));
        }
        fs::rename(&tmp, dest).map_err(io_err("renaming into", dest))
    });
    if result.is_err() {
        remove_tree(&tmp);
    } else {
        tracing::debug!(image = %image.display(), dest = %dest.display(), entries = entries.len(), "unpacked slug");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, Option<&str>)]) -> TreeMap {
        let mut t = TreeMap::new();
        t.insert(String::new(), TreeKind::Dir);
        for (p, link) in entries {
            let kind = match link {
                Some(l) => TreeKind::Symlink(l.to_string()),
                None if p.ends_with('/') => TreeKind::Dir,
                None => TreeKind::File,
            };
            t.insert(p.trim_end_matches('/').to_string(), kind);
        }
        t
    }

    #[test]
    fn symlink_resolution() {
        let t = tree(&[
            ("a/", None),
            ("a/b/", None),
            ("a/f", None),
            ("dot", Some(".")),
            ("deep", Some("a/b")),
            ("loop1", Some("loop2")),
            ("loop2", Some("loop1")),
        ]);
        // Inside.
        assert!(!symlink_escapes(&t, "a/l", "f"));
        assert!(!symlink_escapes(&t, "a/b/l", "../f"));
        assert!(!symlink_escapes(&t, "a/b/l", "../../a/f"));
        assert!(!symlink_escapes(&t, "l", "deep/../f"));
        assert!(!symlink_escapes(&t, "l", "missing/x/../y"));
        assert!(!symlink_escapes(&t, "l", "loop1"));
        // Outside.
        assert!(symlink_escapes(&t, "l", "/etc/passwd"));
        assert!(symlink_escapes(&t, "l", ""));
        assert!(symlink_escapes(&t, "l", ".."));
        assert!(symlink_escapes(&t, "a/b/l", "../../../x"));
        assert!(symlink_escapes(&t, "l", "a/../../x"));
        // Lexically inside, but "dot" is the root itself, so "dot/.." is its parent.
        assert!(symlink_escapes(&t, "l", "dot/.."));
    }

    #[test]
    fn sha_validation() {
        assert!(is_valid_sha256(&"a".repeat(64)));
        assert!(!is_valid_sha256(&"A".repeat(64)));
        assert!(!is_valid_sha256(&"a".repeat(63)));
        assert!(!is_valid_sha256(&format!("../{}", "a".repeat(61))));
        assert_eq!(
            sha256_bytes(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn entry_names() {
        let ok = |d: &str, c: &str| entry_name(Path::new(d), Path::new(c), c);
        assert_eq!(ok("", "x").ok(), Some(OsString::from("x")));
        assert_eq!(ok("a", "a/x").ok(), Some(OsString::from("x")));
        assert!(matches!(ok("", ".."), Err(SlugError::EntryEscapes { .. })));
        assert!(matches!(
            ok("a", "a/../../x"),
            Err(SlugError::EntryEscapes { .. })
        ));
        assert!(matches!(
            ok("", "/etc"),
            Err(SlugError::EntryEscapes { .. })
        ));
        assert!(matches!(
            ok("a", "/etc"),
            Err(SlugError::EntryEscapes { .. })
        ));
        assert!(matches!(ok("", "x/y"), Err(SlugError::InvalidName { .. })));
        assert!(matches!(ok("a", "a/"), Err(SlugError::InvalidName { .. })));
        assert!(matches!(
            ok("a", "a/./x"),
            Err(SlugError::InvalidName { .. })
        ));
        assert!(matches!(ok("", "x/"), Err(SlugError::InvalidName { .. })));
        assert!(matches!(ok("", "."), Err(SlugError::InvalidName { .. })));
    }

    #[test]
    fn superblock_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.sqfs");
        fs::write(&p, b"hsqs").expect("write");
        assert!(matches!(
            check_superblock(&p),
            Err(SlugError::Corrupt { .. })
        ));
        fs::write(&p, vec![0u8; 4096]).expect("write");
        let e = check_superblock(&p).expect_err("zeros");
        assert!(e.to_string().contains("bad magic"), "{e}");
    }

    /// Writes the image given as hex lines (inputs `scripts/fuzz.sh` found) to `dir`.
    fn image_from_hex(dir: &Path, lines: &[&str]) -> PathBuf {
        let hex = lines.concat();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let image = dir.join("found.sqfs");
        fs::write(&image, bytes).expect("write");
        image
    }

    /// Found by `scripts/fuzz.sh` (target slug_image): a 608-byte slug whose superblock declares
    /// 0x20000001 fragments (one flipped bit), which made libsquashfs malloc 8 GiB for the
    /// fragment table when the first file was read. Refused up front now, by check and unpack.
    #[test]
    fn forged_fragment_count_is_refused_before_allocating() {
        const IMAGE: [&str; 19] = [
            "687371730c0000f400000000000002000100002006001100e002010004000000",
            "640100000000000060020000000000005802000000000000ffffffffffffffff",
            "d400000000000000710100000000000014020000000000004a02000000000000",
            "28b52ffd20815d03001287181970cf03a82f9b42221a6b2c8d1b56b4c43fd20e",
            "2c89a8ff3d160d890e0fe948f4a3650cb565c3fefc87308efeb4d5cd2748a503",
            "81a00d8363964471c2ede8d1b792a2fda667c2fd9ced4eb854dadaa6e76bbf4a",
            "b25df5d5da7041dfef55d970ba0a0100938484289b0028b52ffd6084008d0400",
            "62071621a0ab398fabaaaa515567281dd5519624e1bb2fad29dfc9741fbbbe7d",
            "ff5f4a9902ff52127dd4467ad3e490614847213af504c5c66046c3c1b88ea5f2",
            "26c9b91fbe0e55db11a70856815f00d6198fb44ff6077be2ba3c591828e04c02",
            "a91e100605143405790c0ac2027cb3ff0d5020779bd70f08c3216cf82cf71818",
            "caaa18a12ed9242dc0ec8beea809e15bb48f0028b52ffd20c335040072ca1d1e",
            "904d63ff9fbaebfe6f2955dbe65e8e90bfe5b191d7ed78bfbf85ffb74c01557b",
            "2a3d18f858269216b4cd85776393aece6b3a381eec61123abe033bdd54e67c16",
            "8eefc864492acab4e67fff7fc1ba6aa5709384c98de3bb02a5d1f1fdc3bf98db",
            "3bf00e521a29539574e2f87ffff0629b763cfecb0f1c040096422e2645723040",
            "068410806000000000000000740000000000000002020000000000002c0028b5",
            "2ffd20601d0100a00020406080a0c0e50501254564010000000000000ba810f0",
            "0ee01d10241fddb45e1a1c020000000000000480000000005202000000080000",
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let image = image_from_hex(dir.path(), &IMAGE);
        let e = check(&image).expect_err("check");
        assert!(e.to_string().contains("536870913 fragments"), "{e}");
        let dest = dir.path().join("out");
        let e = unpack(&image, &dest).expect_err("unpack");
        assert!(matches!(e, SlugError::Corrupt { .. }), "{e}");
        assert!(!dest.exists());
    }

    /// Found by `scripts/fuzz.sh` (target slug_image): the one-file slug of its seeds with the
    /// file's name made "\0". check accepted it (the master would store it) and every unpack
    /// failed with an I/O error ("file name contained an unexpected NUL byte").
    #[test]
    fn nul_in_a_name_is_refused_by_check() {
        const IMAGE: [&str; 8] = [
            "68737173022c000000000000000002000100000006001100e802010004000000",
            "2000000000000000f600000000000000ee00000000000000ffffffffffffffff",
            "69000000000000009600000000000000c600000000000000e000000000000000",
            "7765623a202e2f780a2b0028b52ffd204015010042c2050de0690c0033000016",
            "e5707bcb14ff79fce1ea2e771402031000d991d8d5021c800000000000000000",
            "010000000000cc010000000000006f6366696c65108060000000000000000900",
            "000100000000b400000000000000108000000000000000002000000000000000",
            "ce00000000000000048000000000e800000000000000",
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let image = image_from_hex(dir.path(), &IMAGE);
        let e = check(&image).expect_err("check");
        assert!(matches!(e, SlugError::InvalidName { .. }), "{e}");
        assert!(e.to_string().contains("NUL"), "{e}");
        let e = unpack(&image, &dir.path().join("out")).expect_err("unpack");
        assert!(matches!(e, SlugError::InvalidName { .. }), "{e}");
    }

    /// Found by `scripts/fuzz.sh` (target slug_image): a slug (made by `mksquashfs -noI`) whose
    /// symlink `start` has a NUL byte in its target. check accepted it; unpack failed creating
    /// the symlink, after extracting everything else.
    #[test]
    fn nul_in_a_symlink_target_is_refused_by_check() {
        const IMAGE: [&str; 27] = [
            "687371730b00000000000000000002000100000006001100cb03010004000000",
            "44010000000000004f030000000000004703000000000000ffffffffffffffff",
            "aa000000000000001002000000000000d7020000000000003903000000000000",
            "7765623a20707974686f6e33206170702e70790a7072696e742827686927290a",
            "23212f62696e2f73680a6578656320707974686f6e33206170702e70790a3c68",
            "313e6891c3d097313e0a64810200a4010000000000000000010000000009fd00",
            "0000000000000000140000000200a40100000000000000000200000000000000",
            "00000000140000000c0000000200ed0100000000000000000400000000000000",
            "00000000200000001e0000000100ed0100000000000000000300000000000000",
            "020000001a0000000b0000000200a40100000000000000000500000020000000",
            "ffffffff00000000000000000300ff0100000000000000000800000001000000",
            "0d0000002e2f2e696e6465782e68746d6c0100ed010000000000000000070000",
            "00000000000200000019001700060000000200a401007b000000000000090000",
            "0000000000000000003e0000000c0000000100ed010000000000000000060000",
            "0000000000030000002c002d000b0000000300ff0100000000000000000a0000",
            "00010000002700000062696e2f722f6e0100ed0100000000000000000b000000",
            "00000000040000006000560031000000b3800000000000000000040000004000",
            "00000200020072756e000000000000000008000000a000000003000100757001",
            "0000000000000007000000c500000001000200637373e500020002000900696e",
            "6465782e68746d6c050000000000000001000000000000000229070050726f63",
            "66696c6520000100020005006170702e7079600002000100020062696e800004",
            "0002000400656d70747905010500010005007075626c69632501090003000400",
            "7374617274108060000000000000004a00000100000000c50200000000000058",
            "8000000000000000002000000000000000600000000000000040000000000000",
            "0080000000000000000501000000000000c500000000000000a0000000000000",
            "00e500000000000000250100000000000044010000000000000d000000000000",
            "000480000000004103000000000000",
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let image = image_from_hex(dir.path(), &IMAGE);
        let e = check(&image).expect_err("check");
        assert!(
            matches!(&e, SlugError::InvalidSymlink { path, .. } if path == "start"),
            "{e}"
        );
        let e = unpack(&image, &dir.path().join("out")).expect_err("unpack");
        assert!(matches!(e, SlugError::InvalidSymlink { .. }), "{e}");
    }
}
