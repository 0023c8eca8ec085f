//! Fuzzes the slug reader on arbitrary image files: `zeroku_slug::check`
//! (what the master runs on every uploaded slug) and `zeroku_slug::unpack`
//! (what workers and frontends run before using one). The input is written to
//! a temp file and both are called on it.
//!
//! Must hold:
//! - no panic escapes either call (the squashfs-ng reader panics on some
//!   inconsistent data; `image.rs` catches that and returns `Corrupt`, which
//!   is what it is for, so those caught panics are not failures here);
//! - `unpack` succeeds only if `check` does, and when `check` accepts an
//!   image, `unpack` fails only on corrupt file data (which `check` does not
//!   read) or on the harness's file size cap;
//! - nothing is written outside the destination: after `unpack` the sandbox
//!   around it holds the destination (on success) and nothing else;
//! - an unpacked tree holds only directories, regular files and symlinks, no
//!   set-id bits, is read-only, and no symlink in it resolves outside it.
//!
//! File sizes are capped with RLIMIT_FSIZE (64 MiB) so an image that declares
//! a huge sparse file fails with EFBIG instead of filling the disk.
//!
//! libsquashfs (C) sizes some allocations from inode fields before it reads
//! them (a symlink's target length: up to 4 GiB): untouched address space,
//! freed when the read runs out of image a moment later. `scripts/fuzz.sh`
//! runs this target as malloc behaves in production (one allocation over
//! 16 GiB fails, a smaller one goes through: `ASAN_OPTIONS=
//! allocator_may_return_null=1:max_allocation_size_mb=16384`,
//! `-malloc_limit_mb=32768`); `-rss_limit_mb=2048` still catches memory that
//! is really used. `FUZZ_VERBOSE=1` prints what check and unpack returned.
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use zeroku_slug::SlugError;

const FSIZE_LIMIT: u64 = 64 << 20;

thread_local! {
    /// The message of the last panic, printed if one escapes `check`/`unpack`.
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
    /// True while `check`/`unpack` run: panics there are kept quiet.
    static IN_SLUG: Cell<bool> = const { Cell::new(false) };
}

struct Dirs {
    /// Holds only `image.sqfs`.
    image_dir: PathBuf,
    /// `sandbox/a/b` is the destination's parent: a `..` from the destination
    /// lands in a directory checked here.
    sandbox: PathBuf,
}

fn dirs() -> &'static Dirs {
    static DIRS: OnceLock<Dirs> = OnceLock::new();
    DIRS.get_or_init(|| {
        let base = std::env::temp_dir().join(format!("zeroku-fuzz-slug-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let image_dir = base.join("image");
        let sandbox = base.join("sandbox");
        fs::create_dir_all(&image_dir).unwrap();
        fs::create_dir_all(sandbox.join("a/b")).unwrap();
        // Caught panics are part of the contract (see above): keep them quiet,
        // remember the message in case one escapes.
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
            if !IN_SLUG.with(Cell::get) {
                eprintln!("{info}");
            } else if verbose() {
                eprintln!("panic inside zeroku-slug (caught there?): {info}");
            }
        }));
        // SAFETY: plain libc calls with valid arguments.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: FSIZE_LIMIT,
                rlim_max: FSIZE_LIMIT,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
        }
        Dirs { image_dir, sandbox }
    })
}

/// `FUZZ_VERBOSE=1`: print caught panics and what check/unpack returned
/// (for replaying one input).
fn verbose() -> bool {
    static V: OnceLock<bool> = OnceLock::new();
    *V.get_or_init(|| std::env::var_os("FUZZ_VERBOSE").is_some())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn remove_tree(path: &Path) {
    fn writable(path: &Path) {
        let Ok(meta) = fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_dir() {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
            for e in fs::read_dir(path).into_iter().flatten().flatten() {
                writable(&e.path());
            }
        }
    }
    writable(path);
    let _ = fs::remove_dir_all(path);
}

/// Resolves the symlink at `rel` (relative to `root`) the way the kernel
/// does, on the real extracted tree: true if it leaves `root`. A component
/// that does not exist is taken lexically.
fn escapes(root: &Path, rel: &Path) -> bool {
    /// Queues the components of `target` in front; false if it is absolute
    /// or empty (which escapes).
    fn push(target: &Path, queue: &mut VecDeque<OsString>) -> bool {
        if target.is_absolute() || target.as_os_str().is_empty() {
            return false;
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => queue.push_front(n.to_owned()),
                Component::ParentDir => queue.push_front("..".into()),
                Component::CurDir => {}
                _ => return false,
            }
        }
        true
    }
    let mut cur: Vec<OsString> = rel
        .parent()
        .into_iter()
        .flat_map(|p| p.components())
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut queue = VecDeque::new();
    if !push(&fs::read_link(root.join(rel)).unwrap(), &mut queue) {
        return true;
    }
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            if cur.pop().is_none() {
                return true;
            }
            continue;
        }
        cur.push(c);
        if let Ok(t) = fs::read_link(root.join(cur.iter().collect::<PathBuf>())) {
            hops += 1;
            if hops > 40 {
                return false; // ELOOP for the kernel too: nothing is reached
            }
            cur.pop();
            if !push(&t, &mut queue) {
                return true;
            }
        }
    }
    false
}

fn check_tree(root: &Path, rel: &Path) {
    let meta = fs::symlink_metadata(root.join(rel)).unwrap();
    let ft = meta.file_type();
    let mode = meta.permissions().mode();
    if ft.is_symlink() {
        assert!(!escapes(root, rel), "symlink {rel:?} escapes the slug");
        return;
    }
    assert!(ft.is_dir() || ft.is_file(), "{rel:?} is {ft:?}");
    assert_eq!(mode & 0o7222, 0, "{rel:?} has mode {mode:o}");
    if ft.is_dir() {
        for e in fs::read_dir(root.join(rel)).unwrap() {
            check_tree(root, &rel.join(e.unwrap().file_name()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let d = dirs();
    let image = d.image_dir.join("image.sqfs");
    fs::write(&image, data).unwrap();
    let parent = d.sandbox.join("a/b");
    let dest = parent.join("out");

    IN_SLUG.with(|f| f.set(true));
    let run = std::panic::catch_unwind(|| {
        let checked = zeroku_slug::check(&image);
        let unpacked = zeroku_slug::unpack(&image, &dest);
        (checked, unpacked)
    });
    IN_SLUG.with(|f| f.set(false));
    let (checked, unpacked) = match run {
        Ok(r) => r,
        Err(_) => {
            let msg = LAST_PANIC.with(|p| p.borrow().clone());
            eprintln!("a panic escaped zeroku_slug::check/unpack: {msg}");
            std::process::abort();
        }
    };

    if verbose() {
        eprintln!("check: {checked:?}\nunpack: {unpacked:?}");
    }
    assert_eq!(
        names(&d.image_dir),
        ["image.sqfs"],
        "unpack wrote beside the image"
    );
    assert_eq!(
        names(&d.sandbox),
        ["a"],
        "unpack wrote outside the destination"
    );
    assert_eq!(
        names(&d.sandbox.join("a")),
        ["b"],
        "unpack wrote outside the destination"
    );
    match &unpacked {
        Ok(()) => {
            assert!(
                checked.is_ok(),
                "unpack accepted what check refused: {checked:?}"
            );
            assert_eq!(
                names(&parent),
                ["out"],
                "unpack wrote outside the destination"
            );
            check_tree(&dest, Path::new(""));
        }
        Err(e) => {
            assert_eq!(
                names(&parent),
                Vec::<String>::new(),
                "a failed unpack left files"
            );
            // check reads no file data, so a data block may still be corrupt; and the file size
            // cap is this harness's doing. Any other refusal is one that check missed.
            let capped = matches!(e, SlugError::Io { source, .. } if source.raw_os_error() == Some(libc::EFBIG));
            assert!(
                checked.is_err() || matches!(e, SlugError::Corrupt { .. }) || capped,
                "check accepted an image that unpack refuses: {e}"
            );
        }
    }
    remove_tree(&dest);
});
