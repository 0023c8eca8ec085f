//! Benchmark helper for `bench/slug.sh`: packs a directory into a slug, unpacks it again, and
//! prints `key value` lines (input bytes, image bytes, seconds, sha256) for the script to tabulate.
//!
//! Usage: `cargo run --release -p zeroku-slug --example slugbench -- DIR [WORKDIR]`

use std::path::{Path, PathBuf};
use std::time::Instant;

use zeroku_slug as slug;

fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if meta.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let src = PathBuf::from(args.next().ok_or("usage: slugbench DIR [WORKDIR]")?);
    let work = match args.next() {
        Some(w) => PathBuf::from(w),
        None => std::env::temp_dir().join(format!("slugbench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work)?;
    let image = work.join("bench.sqfs");
    let dest = work.join("unpacked");

    let input = tree_bytes(&src)?;
    let t = Instant::now();
    let info = slug::pack(&src, &image)?;
    let pack_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    slug::unpack(&image, &dest)?;
    let unpack_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    slug::verify(&image, &info.sha256)?;
    let verify_secs = t.elapsed().as_secs_f64();

    println!("input_bytes {input}");
    println!("image_bytes {}", info.size);
    println!("pack_secs {pack_secs:.3}");
    println!("unpack_secs {unpack_secs:.3}");
    println!("verify_secs {verify_secs:.3}");
    println!("sha256 {}", info.sha256);
    println!("unpacked_dir {}", dest.display());
    Ok(())
}
