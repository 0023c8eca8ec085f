//! Stack versions: a stack is a root file system tarball under
//! `<data>/stacks/<name>.tar`, and its version is the first 12 hex digits of
//! the tarball's sha256, kept beside it in `<name>.version`. Instances name
//! their image as `<name>:<version>`, so re-importing a stack under the same
//! name reaches every node: a node that has only the old image fetches the
//! new one before it starts anything from it. This module only names
//! versions; the API stores the tarballs and the workers import them.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// `<data>/stacks`, where the tarballs and their versions live.
pub fn dir(data: &Path) -> PathBuf {
    data.join("stacks")
}

/// The image an instance of a `stack` app runs in: `<name>:<version>`, or
/// just `<name>` (its `latest` tag) for a stack imported before versions.
pub fn image(dir: &Path, name: &str) -> String {
    match std::fs::read_to_string(dir.join(format!("{name}.version"))) {
        Ok(v) if is_version(v.trim()) => format!("{name}:{}", v.trim()),
        _ => name.to_string(),
    }
}

fn is_version(v: &str) -> bool {
    v.len() == 12 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hashes the tarball `<name>.tar` and records its version. Blocking: run
/// it off the async threads.
pub fn record(dir: &Path, name: &str) -> std::io::Result<String> {
    let mut f = std::fs::File::open(dir.join(format!("{name}.tar")))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let hex: String = h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tmp = dir.join(format!("{name}.version.tmp"));
    std::fs::write(&tmp, &hex)?;
    std::fs::rename(&tmp, dir.join(format!("{name}.version")))?;
    Ok(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reimported_stack_gets_a_new_image_name() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(image(d.path(), "box"), "box", "no version recorded yet");
        std::fs::write(d.path().join("box.tar"), b"one").unwrap();
        let v1 = record(d.path(), "box").unwrap();
        assert_eq!(image(d.path(), "box"), format!("box:{v1}"));
        std::fs::write(d.path().join("box.tar"), b"two").unwrap();
        let v2 = record(d.path(), "box").unwrap();
        assert_ne!(v1, v2);
        assert_eq!(image(d.path(), "box"), format!("box:{v2}"));
        // The same tarball again keeps its version (nothing to fetch).
        std::fs::write(d.path().join("box.tar"), b"one").unwrap();
        assert_eq!(record(d.path(), "box").unwrap(), v1);
        std::fs::write(d.path().join("box.version"), "garbage").unwrap();
        assert_eq!(image(d.path(), "box"), "box");
    }
}
