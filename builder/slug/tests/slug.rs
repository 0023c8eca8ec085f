//! Integration tests for slug packing/unpacking and the slug store: round-trips, reproducibility,
//! every refusal of `pack` and `unpack` (with hand-crafted hostile images), corrupt images and gc.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io::Cursor;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use squashfs_ng::write::{Source, SourceData, Writer};
use zeroku_slug::{self as slug, SlugError, SlugStore};

const S_IFDIR: u16 = 0o040_000;
const S_IFREG: u16 = 0o100_000;
const S_IFLNK: u16 = 0o120_000;
const BIG: usize = 5 * 1024 * 1024;

/// Deterministic, poorly compressible bytes.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write(path: &Path, data: &[u8], mode: u32) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    fs::write(path, data).expect("write");
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

fn link(target: &str, path: &Path) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).expect("mkdir");
    }
    symlink(target, path).expect("symlink");
}

/// The sample app tree. `reverse` creates everything in the opposite order, so that directory
/// iteration order (and inode numbers) differ between two otherwise identical trees.
fn make_tree(root: &Path, reverse: bool) {
    let big = noise(BIG, 7);
    let mut steps: Vec<Box<dyn Fn()>> = vec![
        Box::new(|| write(&root.join("Procfile"), b"web: bin/run\n", 0o644)),
        Box::new(|| {
            write(
                &root.join("bin/run"),
                b"#!/bin/sh\nexec python app.py\n",
                0o755,
            )
        }),
        Box::new(|| write(&root.join("app.py"), b"print('hi')\n", 0o644)),
        Box::new(|| write(&root.join("src/pkg/__init__.py"), b"", 0o644)),
        Box::new(|| {
            write(
                &root.join("src/pkg/mod.py"),
                b"def f():\n    return 1\n",
                0o600,
            )
        }),
        Box::new(|| write(&root.join("data/big.bin"), &big, 0o644)),
        Box::new(|| fs::create_dir_all(root.join("empty/nested")).expect("mkdir")),
        Box::new(|| link("app.py", &root.join("link"))),
        Box::new(|| link("../src/pkg", &root.join("bin/pkg"))),
        Box::new(|| link("missing", &root.join("dangling"))),
    ];
    if reverse {
        steps.reverse();
    }
    fs::create_dir_all(root).expect("mkdir root");
    for step in steps {
        step();
    }
}

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn is_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--help")
        .output()
        .map(|o| o.status.success() || !o.stdout.is_empty())
        .unwrap_or(false)
}

/// Entries of `dir` other than those in `except`, to check unpack leaves nothing behind.
fn leftovers(dir: &Path, except: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !except.contains(&n.as_str()))
        .collect()
}

fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn round_trip() {
    let t = tmpdir();
    let src = t.path().join("src");
    make_tree(&src, false);
    let image = t.path().join("app.sqfs");
    let info = slug::pack(&src, &image).expect("pack");
    assert_eq!(info.size, fs::metadata(&image).expect("stat").len());
    assert_eq!(info.sha256, slug::sha256_file(&image).expect("hash"));
    assert!(info.size < BIG as u64 + 64 * 1024, "size {}", info.size);

    let dest = t.path().join("out");
    slug::unpack(&image, &dest).expect("unpack");
    assert_eq!(
        leftovers(t.path(), &[]).len(),
        3,
        "{:?}",
        leftovers(t.path(), &[])
    );

    assert_eq!(
        fs::read(dest.join("Procfile")).expect("read"),
        b"web: bin/run\n"
    );
    assert_eq!(
        fs::read(dest.join("src/pkg/mod.py")).expect("read"),
        b"def f():\n    return 1\n"
    );
    assert_eq!(
        fs::read(dest.join("src/pkg/__init__.py")).expect("read"),
        b""
    );
    assert_eq!(
        fs::read(dest.join("data/big.bin")).expect("read"),
        noise(BIG, 7)
    );
    // Read-only, exec bits kept.
    assert_eq!(mode_of(&dest.join("bin/run")), 0o555);
    assert_eq!(mode_of(&dest.join("Procfile")), 0o444);
    assert_eq!(mode_of(&dest.join("src/pkg/mod.py")), 0o444);
    for d in ["", "bin", "src", "src/pkg", "empty", "empty/nested", "data"] {
        assert_eq!(mode_of(&dest.join(d)), 0o555, "{d}");
    }
    assert!(fs::read_dir(dest.join("empty/nested"))
        .expect("readdir")
        .next()
        .is_none());
    // Symlinks are symlinks, with their targets.
    assert_eq!(
        fs::read_link(dest.join("link")).expect("readlink"),
        Path::new("app.py")
    );
    assert_eq!(
        fs::read_link(dest.join("bin/pkg")).expect("readlink"),
        Path::new("../src/pkg")
    );
    assert_eq!(
        fs::read_link(dest.join("dangling")).expect("readlink"),
        Path::new("missing")
    );
    assert_eq!(
        fs::read(dest.join("bin/pkg/mod.py"))
            .expect("read via link")
            .len(),
        22
    );
    let mut names: Vec<String> = leftovers(&dest, &[]);
    names.sort();
    assert_eq!(
        names,
        ["Procfile", "app.py", "bin", "dangling", "data", "empty", "link", "src"]
    );

    // The destination must not exist.
    match slug::unpack(&image, &dest) {
        Err(SlugError::DestinationExists(p)) => assert_eq!(p, dest),
        other => panic!("expected DestinationExists, got {other:?}"),
    }
}

#[test]
fn empty_tree_round_trips() {
    let t = tmpdir();
    let src = t.path().join("src");
    fs::create_dir(&src).expect("mkdir");
    let image = t.path().join("e.sqfs");
    slug::pack(&src, &image).expect("pack");
    let dest = t.path().join("out");
    slug::unpack(&image, &dest).expect("unpack");
    assert!(fs::read_dir(&dest).expect("readdir").next().is_none());
}

#[test]
fn reproducible() {
    let t = tmpdir();
    let a = t.path().join("a");
    make_tree(&a, false);
    let first = slug::pack(&a, &t.path().join("1.sqfs")).expect("pack");
    let second = slug::pack(&a, &t.path().join("2.sqfs")).expect("pack");
    assert_eq!(first, second);

    // The superblock timestamp is normalised, so the time of day does not matter.
    let img = fs::read(t.path().join("1.sqfs")).expect("read");
    assert_eq!(&img[8..12], &[0, 0, 0, 0]);

    // New mtimes (past and now) on every file, and a second later.
    std::thread::sleep(Duration::from_millis(1100));
    for (i, p) in [
        "Procfile",
        "bin/run",
        "data/big.bin",
        "src/pkg/mod.py",
        "src",
        "empty",
    ]
    .iter()
    .enumerate()
    {
        let f = fs::File::open(a.join(p)).expect("open");
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 * i as u64);
        f.set_modified(when).expect("set mtime");
    }
    let third = slug::pack(&a, &t.path().join("3.sqfs")).expect("pack");
    assert_eq!(first, third, "mtimes changed the image");

    // Same tree created in a different order, under a different path.
    let b = t.path().join("elsewhere/b");
    make_tree(&b, true);
    let fourth = slug::pack(&b, &t.path().join("4.sqfs")).expect("pack");
    assert_eq!(first, fourth, "creation order changed the image");

    // setuid/setgid/sticky are stripped, so they do not change the image either.
    fs::set_permissions(b.join("bin/run"), fs::Permissions::from_mode(0o4755)).expect("chmod");
    fs::set_permissions(b.join("empty"), fs::Permissions::from_mode(0o1755)).expect("chmod");
    assert_eq!(
        first,
        slug::pack(&b, &t.path().join("5.sqfs")).expect("pack")
    );

    // Ownership does not matter (needs root to chown).
    if is_root() {
        for p in ["Procfile", "bin", "data/big.bin", "link"] {
            std::os::unix::fs::lchown(b.join(p), Some(1234), Some(5678)).expect("chown");
        }
        assert_eq!(
            first,
            slug::pack(&b, &t.path().join("6.sqfs")).expect("pack")
        );
    }

    // ... but content and permission bits do.
    fs::set_permissions(b.join("Procfile"), fs::Permissions::from_mode(0o755)).expect("chmod");
    let changed = slug::pack(&b, &t.path().join("7.sqfs")).expect("pack");
    assert_ne!(first.sha256, changed.sha256);
}

#[test]
fn pack_replaces_output_atomically_and_cleans_up() {
    let t = tmpdir();
    let src = t.path().join("src");
    write(&src.join("f"), b"x", 0o644);
    let out = t.path().join("out.sqfs");
    fs::write(&out, b"old").expect("write");
    slug::pack(&src, &out).expect("pack");
    assert_ne!(fs::read(&out).expect("read"), b"old");
    assert_eq!(
        leftovers(t.path(), &["src", "out.sqfs"]),
        Vec::<String>::new()
    );
}

fn expect_pack_refused(src: &Path, offending: &Path, what: &str) {
    let t = tmpdir();
    let out = t.path().join("out.sqfs");
    let err = slug::pack(src, &out).expect_err("pack must refuse");
    let msg = err.to_string();
    assert!(matches!(err, SlugError::PackRefused { .. }), "{msg}");
    assert!(msg.contains(&format!("{offending:?}")), "{msg}");
    assert!(msg.contains(what), "{msg}");
    assert!(
        leftovers(t.path(), &[]).is_empty(),
        "pack left files behind"
    );
}

#[test]
fn pack_refuses_special_files_and_escaping_symlinks() {
    let t = tmpdir();

    let sock = t.path().join("sock");
    write(&sock.join("ok"), b"", 0o644);
    let _listener = std::os::unix::net::UnixListener::bind(sock.join("s")).expect("bind");
    expect_pack_refused(&sock, &sock.join("s"), "socket");

    let fifo = t.path().join("fifo");
    fs::create_dir_all(fifo.join("d")).expect("mkdir");
    let ok = Command::new("mkfifo")
        .arg(fifo.join("d/p"))
        .status()
        .expect("mkfifo")
        .success();
    assert!(ok);
    expect_pack_refused(&fifo, &fifo.join("d/p"), "fifo");

    if is_root() {
        let dev = t.path().join("dev");
        fs::create_dir_all(&dev).expect("mkdir");
        let ok = Command::new("mknod")
            .arg(dev.join("null"))
            .args(["c", "1", "3"])
            .status()
            .expect("mknod")
            .success();
        assert!(ok);
        expect_pack_refused(&dev, &dev.join("null"), "character device");
    }

    let abs = t.path().join("abs");
    fs::create_dir_all(&abs).expect("mkdir");
    symlink("/etc/passwd", abs.join("l")).expect("symlink");
    expect_pack_refused(&abs, &abs.join("l"), "escapes the slug root");

    let up = t.path().join("up");
    fs::create_dir_all(up.join("a")).expect("mkdir");
    symlink("../../x", up.join("a/l")).expect("symlink");
    expect_pack_refused(&up, &up.join("a/l"), "escapes the slug root");

    let notdir = t.path().join("file");
    fs::write(&notdir, b"x").expect("write");
    expect_pack_refused(&notdir, &notdir, "not a directory");
}

// ---------------------------------------------------------------------------------------------
// Hand-crafted hostile images. `pack` refuses to make these, and tar2sqfs drops `..` names, so
// they are written with squashfs-ng's low-level `Writer`, which stores whatever it is given.

enum Craft {
    File(&'static [u8], u16),
    Dir(Vec<(&'static str, Craft)>, u16),
    Symlink(&'static str),
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

fn craft_add(w: &mut Writer, node: Craft) -> u32 {
    let (data, mode) = match node {
        Craft::File(bytes, mode) => (
            SourceData::File(Box::new(Cursor::new(bytes.to_vec()))),
            S_IFREG | mode,
        ),
        Craft::Dir(children, mode) => {
            let ids: Vec<(OsString, u32)> = children
                .into_iter()
                .map(|(name, child)| (OsString::from(name), craft_add(w, child)))
                .collect();
            (SourceData::Dir(Box::new(ids.into_iter())), S_IFDIR | mode)
        }
        Craft::Symlink(t) => (SourceData::Symlink(PathBuf::from(t)), S_IFLNK | 0o777),
        Craft::CharDev => (SourceData::CharDev(1, 3), 0o020_644),
        Craft::BlockDev => (SourceData::BlockDev(8, 0), 0o060_644),
        Craft::Fifo => (SourceData::Fifo, 0o010_644),
        Craft::Socket => (SourceData::Socket, 0o140_644),
    };
    w.add(Source {
        data,
        uid: 0,
        gid: 0,
        mode,
        modified: 0,
        xattrs: HashMap::new(),
        flags: 0,
    })
    .expect("craft add")
}

fn craft(path: &Path, root: Vec<(&'static str, Craft)>) {
    let mut w = Writer::open(path).expect("craft open");
    craft_add(&mut w, Craft::Dir(root, 0o755));
    w.finish().expect("craft finish");
}

fn ok_file() -> (&'static str, Craft) {
    ("ok.txt", Craft::File(b"fine", 0o644))
}

/// Unpacking `image` must fail with a message containing `needle`, leaving nothing behind.
fn expect_unpack_refused(image: &Path, needle: &str) -> SlugError {
    let parent = image.parent().expect("parent");
    let before = leftovers(parent, &[]);
    let dest = parent.join("dest");
    let err = slug::unpack(image, &dest).expect_err("unpack must refuse");
    let msg = err.to_string();
    assert!(msg.contains(needle), "{msg:?} does not contain {needle:?}");
    assert!(!dest.exists(), "dest exists after refusal");
    assert_eq!(leftovers(parent, &[]), before, "unpack left files behind");
    err
}

#[test]
fn unpack_refuses_escaping_names() {
    let t = tmpdir();
    let img = t.path().join("i.sqfs");

    craft(&img, vec![ok_file(), ("../evil", Craft::File(b"x", 0o644))]);
    let err = expect_unpack_refused(&img, r#"slug entry "../evil" escapes the slug root"#);
    assert!(matches!(err, SlugError::EntryEscapes { .. }));

    craft(
        &img,
        vec![(
            "a",
            Craft::Dir(vec![("../../etc/passwd", Craft::File(b"x", 0o644))], 0o755),
        )],
    );
    expect_unpack_refused(
        &img,
        r#"slug entry "a/../../etc/passwd" escapes the slug root"#,
    );

    craft(&img, vec![("..", Craft::Dir(vec![], 0o755))]);
    expect_unpack_refused(&img, r#"slug entry ".." escapes the slug root"#);

    craft(&img, vec![("/etc/cron.d", Craft::File(b"x", 0o644))]);
    expect_unpack_refused(&img, r#"slug entry "/etc/cron.d" escapes the slug root"#);

    craft(
        &img,
        vec![(
            "a",
            Craft::Dir(vec![("/abs", Craft::File(b"x", 0o644))], 0o755),
        )],
    );
    expect_unpack_refused(&img, r#"slug entry "/abs" escapes the slug root"#);

    craft(&img, vec![("x/y", Craft::File(b"x", 0o644))]);
    expect_unpack_refused(&img, r#"slug entry "x/y" has an invalid name"#);

    craft(
        &img,
        vec![
            ("dup", Craft::File(b"1", 0o644)),
            ("dup", Craft::Symlink("ok.txt")),
            ok_file(),
        ],
    );
    expect_unpack_refused(&img, r#"slug entry "dup" has an invalid name: duplicate"#);
}

#[test]
fn unpack_refuses_escaping_symlinks() {
    let t = tmpdir();
    let img = t.path().join("i.sqfs");

    craft(&img, vec![ok_file(), ("l", Craft::Symlink("/etc/passwd"))]);
    let err = expect_unpack_refused(
        &img,
        r#"slug entry "l" is a symlink to "/etc/passwd", which escapes the slug root"#,
    );
    assert!(matches!(err, SlugError::SymlinkEscapes { .. }));

    craft(
        &img,
        vec![(
            "a",
            Craft::Dir(vec![("l", Craft::Symlink("../../x"))], 0o755),
        )],
    );
    expect_unpack_refused(&img, r#"slug entry "a/l" is a symlink to "../../x""#);

    // Each link stays inside lexically, but "dot" is the root itself, so "dot/.." is outside.
    craft(
        &img,
        vec![
            ("dot", Craft::Symlink(".")),
            ("up", Craft::Symlink("dot/..")),
        ],
    );
    expect_unpack_refused(&img, r#"slug entry "up" is a symlink to "dot/..""#);

    // A chain: "a/c" points at the root (fine), so "a/c/.." (lexically "a") is the root's parent.
    craft(
        &img,
        vec![
            ("a", Craft::Dir(vec![("c", Craft::Symlink(".."))], 0o755)),
            ("b", Craft::Symlink("a/c/..")),
        ],
    );
    expect_unpack_refused(&img, r#"slug entry "b" is a symlink to "a/c/..""#);
}

#[test]
fn unpack_refuses_special_files_and_setid() {
    let t = tmpdir();
    let img = t.path().join("i.sqfs");
    let cases: Vec<(Craft, &str)> = vec![
        (Craft::CharDev, r#"slug entry "d/x" is a character device"#),
        (Craft::BlockDev, r#"slug entry "d/x" is a block device"#),
        (Craft::Fifo, r#"slug entry "d/x" is a fifo"#),
        (Craft::Socket, r#"slug entry "d/x" is a socket"#),
        (
            Craft::File(b"#!/bin/sh\n", 0o4755),
            r#"slug entry "d/x" has setuid/setgid mode 4755"#,
        ),
        (
            Craft::File(b"#!/bin/sh\n", 0o2755),
            r#"slug entry "d/x" has setuid/setgid mode 2755"#,
        ),
        (
            Craft::Dir(vec![], 0o2775),
            r#"slug entry "d/x" has setuid/setgid mode 2775"#,
        ),
    ];
    for (node, needle) in cases {
        craft(
            &img,
            vec![ok_file(), ("d", Craft::Dir(vec![("x", node)], 0o755))],
        );
        expect_unpack_refused(&img, needle);
    }
}

/// The same refusals, with images made the way the brief suggests: python's tarfile + tar2sqfs.
/// (tar2sqfs drops `..` entries and strips leading `/`, hence the `Writer` images above.)
#[test]
fn unpack_refuses_tar2sqfs_images() {
    if !have("tar2sqfs") || !have("python3") {
        eprintln!("skipping: tar2sqfs or python3 missing");
        return;
    }
    let t = tmpdir();
    let script = r#"
import io, sys, tarfile
kind, out = sys.argv[1], sys.argv[2]
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tf:
    def add(name, typ=tarfile.REGTYPE, mode=0o644, link=""):
        ti = tarfile.TarInfo(name); ti.type = typ; ti.mode = mode; ti.linkname = link
        data = b"x" if typ == tarfile.REGTYPE else b""
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    add("ok.txt")
    if kind == "setuid": add("bin/su", mode=0o4755)
    if kind == "abslink": add("l", tarfile.SYMTYPE, 0o777, "/etc/shadow")
    if kind == "uplink": add("l", tarfile.SYMTYPE, 0o777, "../../etc/shadow")
    if kind == "fifo": add("p", tarfile.FIFOTYPE)
    if kind == "chr": add("null", tarfile.CHRTYPE)
"#;
    let cases = [
        (
            "setuid",
            r#"slug entry "bin/su" has setuid/setgid mode 4755"#,
        ),
        ("abslink", r#"slug entry "l" is a symlink to "/etc/shadow""#),
        (
            "uplink",
            r#"slug entry "l" is a symlink to "../../etc/shadow""#,
        ),
        ("fifo", r#"slug entry "p" is a fifo"#),
        ("chr", r#"slug entry "null" is a character device"#),
    ];
    for (kind, needle) in cases {
        let dir = t.path().join(kind);
        fs::create_dir(&dir).expect("mkdir");
        let tar = t.path().join(format!("{kind}.tar"));
        let img = dir.join("i.sqfs");
        let ok = Command::new("python3")
            .args(["-c", script, kind])
            .arg(&tar)
            .status()
            .expect("python3")
            .success();
        assert!(ok, "python3 failed for {kind}");
        let ok = Command::new("tar2sqfs")
            .args(["-q", "-f"])
            .arg(&img)
            .stdin(fs::File::open(&tar).expect("open tar"))
            .status()
            .expect("tar2sqfs")
            .success();
        assert!(ok, "tar2sqfs failed for {kind}");
        expect_unpack_refused(&img, needle);
    }
}

#[test]
fn unpack_accepts_contained_symlinks() {
    let t = tmpdir();
    let img = t.path().join("i.sqfs");
    craft(
        &img,
        vec![
            (
                "a",
                Craft::Dir(
                    vec![(
                        "b",
                        Craft::Dir(vec![("up", Craft::Symlink("../../top"))], 0o755),
                    )],
                    0o755,
                ),
            ),
            ("top", Craft::File(b"t", 0o644)),
            ("self", Craft::Symlink(".")),
            ("loop", Craft::Symlink("loop")),
        ],
    );
    let dest = t.path().join("d");
    slug::unpack(&img, &dest).expect("unpack");
    assert_eq!(fs::read(dest.join("a/b/up")).expect("read"), b"t");
}

#[test]
fn corrupt_images_give_errors() {
    let t = tmpdir();
    let src = t.path().join("src");
    make_tree(&src, false);
    let good = t.path().join("good.sqfs");
    slug::pack(&src, &good).expect("pack");
    let bytes = fs::read(&good).expect("read");

    let work = t.path().join("work");
    fs::create_dir(&work).expect("mkdir");
    let img = work.join("bad.sqfs");

    for cut in [0, 10, 96, bytes.len() / 2, bytes.len() - 5000] {
        fs::write(&img, &bytes[..cut]).expect("write");
        let err = expect_unpack_refused(&img, "is corrupt");
        assert!(matches!(err, SlugError::Corrupt { .. }), "{err}");
    }

    fs::write(&img, noise(1 << 20, 99)).expect("write");
    expect_unpack_refused(&img, "not a squashfs image");

    // Valid superblock, garbage everywhere else: an error, never a panic or a partial tree.
    let mut garbled = bytes.clone();
    let tail = noise(garbled.len() - 96, 5);
    garbled[96..].copy_from_slice(&tail);
    fs::write(&img, &garbled).expect("write");
    expect_unpack_refused(&img, "is corrupt");

    // Flipped bytes in the metadata tables (inode table start .. end of image): an error or, if
    // the flip hit something harmless, a complete tree; never a panic or a partial tree.
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    let (meta_start, used) = (u64_at(64) as usize, u64_at(40) as usize);
    let mut errors = 0;
    for i in 0..16 {
        let mut flipped = bytes.clone();
        let at = meta_start + (used - meta_start) * i / 16;
        for b in &mut flipped[at..(at + 16).min(used)] {
            *b ^= 0x5a;
        }
        fs::write(&img, &flipped).expect("write");
        let dest = work.join("dest");
        match slug::unpack(&img, &dest) {
            Ok(()) => {
                assert!(dest.join("Procfile").exists());
                slug_tree_remove(&dest);
            }
            Err(e) => {
                assert!(matches!(e, SlugError::Corrupt { .. }), "{e}");
                errors += 1;
            }
        }
        assert_eq!(leftovers(&work, &["bad.sqfs"]), Vec::<String>::new());
    }
    assert!(errors > 8, "only {errors} of 16 corruptions detected");

    assert!(matches!(
        slug::unpack(&work.join("missing.sqfs"), &work.join("dest")),
        Err(SlugError::Io { .. })
    ));
}

fn slug_tree_remove(path: &Path) {
    let _ = Command::new("chmod").args(["-R", "u+w"]).arg(path).status();
    fs::remove_dir_all(path).expect("remove");
}

#[test]
fn verify_and_hash() {
    let t = tmpdir();
    let f = t.path().join("x");
    fs::write(&f, b"abc").expect("write");
    let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(slug::sha256_file(&f).expect("hash"), sha);
    slug::verify(&f, sha).expect("verify");
    let wrong = "0".repeat(64);
    let msg = slug::verify(&f, &wrong).expect_err("mismatch").to_string();
    assert_eq!(
        msg,
        format!("slug {f:?} has sha256 {sha}, expected {wrong}")
    );
}

#[test]
fn tools_can_read_our_images() {
    if !have("rdsquashfs") {
        eprintln!("skipping: rdsquashfs missing");
        return;
    }
    let t = tmpdir();
    let src = t.path().join("src");
    make_tree(&src, false);
    let img = t.path().join("app.sqfs");
    slug::pack(&src, &img).expect("pack");
    let out = Command::new("rdsquashfs")
        .args(["-l", "/bin"])
        .arg(&img)
        .output()
        .expect("rdsquashfs");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("-rwxr-xr-x 0/0"), "{listing}");
    assert!(listing.contains("pkg -> ../src/pkg"), "{listing}");
}

#[test]
fn store_put_dedup_and_gc() {
    let t = tmpdir();
    let store = SlugStore::open(&t.path().join("store")).expect("open");
    let a = t.path().join("a");
    make_tree(&a, false);
    let b = t.path().join("b");
    make_tree(&b, true);
    let c = t.path().join("c");
    write(&c.join("only"), b"c", 0o644);

    let ia = store.put_packed(&a).expect("put a");
    let ib = store.put_packed(&b).expect("put b");
    assert_eq!(ia, ib, "same tree, same slug");
    let ic = store.put_packed(&c).expect("put c");
    assert!(store.contains(&ia.sha256).expect("contains"));
    let path = store.path(&ia.sha256).expect("path");
    slug::verify(&path, &ia.sha256).expect("verify");
    assert_eq!(mode_of(&path), 0o444);
    let mut both = vec![ia.sha256.clone(), ic.sha256.clone()];
    both.sort();
    assert_eq!(store.list().expect("list"), both);
    assert_eq!(
        fs::read_dir(store.dir()).expect("readdir").count(),
        2,
        "temp files left"
    );

    // A worker receiving the image as bytes and as a downloaded file.
    let bytes = fs::read(&path).expect("read");
    let other = SlugStore::open(&t.path().join("worker")).expect("open");
    assert_eq!(other.put_bytes(&bytes, &ia.sha256).expect("put bytes"), ia);
    let dl = t.path().join("download.part");
    fs::write(
        &dl,
        fs::read(store.path(&ic.sha256).expect("path")).expect("read"),
    )
    .expect("write");
    assert!(other.put_file(&dl, &ia.sha256).is_err());
    assert_eq!(other.put_file(&dl, &ic.sha256).expect("put file"), ic);
    slug::unpack(
        &other.path(&ia.sha256).expect("path"),
        &t.path().join("run"),
    )
    .expect("unpack");

    let keep: HashSet<String> = [ic.sha256.clone()].into();
    assert_eq!(
        store.gc(&keep, std::time::Duration::ZERO).expect("gc"),
        vec![ia.sha256.clone()]
    );
    assert_eq!(store.list().expect("list"), vec![ic.sha256.clone()]);
    assert!(!store.contains(&ia.sha256).expect("contains"));
    assert!(
        store
            .gc(&HashSet::new(), std::time::Duration::ZERO)
            .expect("gc")
            .len()
            == 1
    );
    assert!(store.list().expect("list").is_empty());
}
