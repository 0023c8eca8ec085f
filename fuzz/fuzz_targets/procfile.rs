//! Fuzzes the Procfile parser, `zeroku_conf::procfile::parse`, on any text
//! (a Procfile comes with the user's pushed source).
//!
//! Must hold: no panic; every process type it accepts is a valid process type
//! name, and every command is non-empty, trimmed and on one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_conf::{names, procfile};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(types) = procfile::parse(text) else {
        return;
    };
    assert!(!types.is_empty());
    for (name, command) in &types {
        assert!(names::process_type(name).is_ok(), "{name:?}");
        assert!(
            !command.is_empty() && command.trim() == command,
            "{command:?}"
        );
        assert!(!command.contains('\n'), "{command:?}");
    }
});
