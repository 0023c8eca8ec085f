//! Fuzzes the daemons' TOML config files: `zeroku_conf::config::parse` into
//! each config type (`ClusterConfig`, `MasterConfig`, `WorkerConfig`,
//! `FrontendConfig`), their `validate()`, and `apply_env` (the
//! `ZEROKU_<SECTION>_<KEY>` overrides). The input is TOML text, optionally
//! followed by a NUL byte and `NAME=VALUE` lines taken as the environment.
//!
//! Must hold: no panic; a parsed config serialises to TOML that parses back
//! to the same config; `apply_env` gives a config or an error, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Serialize};
use zeroku_conf::config::{
    apply_env, parse, ClusterConfig, FrontendConfig, MasterConfig, WorkerConfig,
};

fn round_trip<T>(text: &str, validate: impl Fn(&T) -> Result<(), String>) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let cfg: T = parse(Path::new("fuzz.toml"), text).ok()?;
    let _ = validate(&cfg);
    let again = toml::to_string(&cfg).expect("a parsed config serialises");
    let back: T = parse(Path::new("again.toml"), &again).expect("a serialised config parses");
    assert_eq!(back, cfg);
    Some(cfg)
}

fuzz_target!(|data: &[u8]| {
    let (toml_part, env_part) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(toml_part) else {
        return;
    };
    round_trip::<MasterConfig>(text, MasterConfig::validate);
    round_trip::<WorkerConfig>(text, WorkerConfig::validate);
    round_trip::<FrontendConfig>(text, FrontendConfig::validate);
    let cluster = round_trip::<ClusterConfig>(text, ClusterConfig::validate);
    if let (Some(cluster), Some(env)) = (cluster, env_part) {
        let vars = String::from_utf8_lossy(env)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>();
        if let Ok(c) = apply_env(&cluster, vars) {
            let _ = c.validate();
        }
    }
});
