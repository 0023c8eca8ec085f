//! Fuzzes the reader of what a buildpack's `bin/release` prints (a small YAML
//! subset): `zeroku_builder::buildpack::parse_release`. Buildpacks can be any
//! git URL an app names, so this is outside input.
//!
//! Must hold: no panic; every key and value it returns is non-empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_builder::buildpack::parse_release;

fuzz_target!(|data: &[u8]| {
    // The builder reads the script's stdout lossily.
    let text = String::from_utf8_lossy(data);
    let Ok(rel) = parse_release(&text) else {
        return;
    };
    for (k, v) in rel.default_process_types.iter().chain(&rel.default_routes) {
        assert!(!k.is_empty() && !v.is_empty(), "{k:?}: {v:?}");
    }
});
