//! Fuzzes the app manifest parser, `zeroku_conf::manifest::parse`, on any text (a
//! `zeroku.toml` comes with the user's pushed source).
//!
//! Must hold: no panic; every name it accepts is a valid service (or app) name, no requirement
//! is named `dir`, and every `on_change` it accepts reads back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zeroku_conf::{manifest, names};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = manifest::parse(text) else {
        return;
    };
    for (name, p) in &m.provides {
        assert!(names::service(name).is_ok(), "{name:?}");
        assert!(names::process_type(&p.process).is_ok(), "{:?}", p.process);
        assert_eq!(p.port_env, "PORT");
    }
    for (name, r) in &m.requires {
        assert!(names::service(name).is_ok() && name != "dir", "{name:?}");
        assert!(names::app(&r.app).is_ok(), "{:?}", r.app);
        let again = manifest::OnChange::try_from(String::from(r.on_change.clone()));
        assert_eq!(again.as_ref(), Ok(&r.on_change));
    }
});
