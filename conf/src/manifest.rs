//! The app manifest, `zeroku.toml` next to the Procfile: the services an app
//! provides to other apps and the ones it requires from them, as in disco's
//! provide/require (see `docs/architecture.md`, "Discovery").
//!
//! ```toml
//! [provides.api]            # instances of `web` (the default) provide `api`
//! attributes = { env = "prod" }
//!
//! [requires.billing]        # ZEROKU_REQUIRE_BILLING=host:port,host:port
//! app = "billing"
//! service = "api"           # default: the requirement's name
//! attributes = { env = "prod" }
//! on_change = "signal:HUP"  # restart (default) | signal:SIG | hook:CMD | none
//! ```
//!
//! TOML rather than the seed's YAML: Debian and crates.io keep a TOML parser
//! (`toml`) the project already uses for its config; `serde_yaml` is no longer
//! maintained. A typo is an error naming the key, never ignored.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use thiserror::Error;

/// The file the builder reads, at the root of the app.
pub const FILE: &str = "zeroku.toml";

/// Most services one app may provide, and most requirements.
pub const MAX_ENTRIES: usize = 32;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("{FILE} is not valid: {0}")]
    Syntax(String),
    #[error("{FILE}: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provides: BTreeMap<String, Provide>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requires: BTreeMap<String, Require>,
}

/// A service this app's instances offer on their `$PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provide {
    /// The process type whose instances provide it.
    #[serde(default = "web")]
    pub process: String,
    /// The variable naming the port they listen on; only `PORT` (the one
    /// port each instance is given) for now.
    #[serde(default = "port")]
    pub port_env: String,
    /// What requirers filter on (`env = "prod"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The apps that may discover it; absent or empty: any app of the
    /// cluster (an address is not a credential: the service's own
    /// authentication is what keeps others out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<String>,
}

/// A service this app's instances use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Require {
    /// The app providing it.
    pub app: String,
    /// Its name there; the requirement's own name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only providers with all of these attributes match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// What a running instance gets when the providers change.
    #[serde(default)]
    pub on_change: OnChange,
}

/// What happens to a running instance when the providers of one of its
/// requirements change (Nomad's template `change_mode`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum OnChange {
    /// It is restarted with the new `ZEROKU_REQUIRE_*` variables.
    #[default]
    Restart,
    /// The file `ZEROKU_REQUIRE_<NAME>_FILE` is rewritten, then the process
    /// gets this signal (`HUP`, `USR1`, `USR2`).
    Signal(String),
    /// The file is rewritten, then this command runs next to the process,
    /// as the app, with the new variables.
    Hook(String),
    /// Only the file changes.
    None,
}

/// The signals `on_change = "signal:..."` may send.
pub const SIGNALS: &[&str] = &["HUP", "USR1", "USR2"];

impl TryFrom<String> for OnChange {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "restart" => return Ok(OnChange::Restart),
            "none" => return Ok(OnChange::None),
            _ => {}
        }
        if let Some(sig) = s.strip_prefix("signal:") {
            let sig = sig.trim().trim_start_matches("SIG").to_ascii_uppercase();
            if SIGNALS.contains(&sig.as_str()) {
                return Ok(OnChange::Signal(sig));
            }
            return Err(format!(
                "on_change {s:?}: the signal must be one of {}",
                SIGNALS.join(", ")
            ));
        }
        if let Some(cmd) = s.strip_prefix("hook:") {
            let cmd = cmd.trim();
            if cmd.is_empty() || cmd.len() > 4096 || cmd.contains('\0') {
                return Err(format!(
                    "on_change {s:?}: the hook needs a command (at most 4 KiB)"
                ));
            }
            return Ok(OnChange::Hook(cmd.to_string()));
        }
        Err(format!(
            "on_change {s:?} is not one of restart, signal:HUP, hook:COMMAND, none"
        ))
    }
}

impl From<OnChange> for String {
    fn from(c: OnChange) -> String {
        match c {
            OnChange::Restart => "restart".into(),
            OnChange::Signal(s) => format!("signal:{s}"),
            OnChange::Hook(c) => format!("hook:{c}"),
            OnChange::None => "none".into(),
        }
    }
}

impl std::fmt::Display for OnChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from(self.clone()))
    }
}

fn web() -> String {
    "web".into()
}

fn port() -> String {
    "PORT".into()
}

impl Require {
    /// The provider's service name.
    pub fn service<'a>(&'a self, name: &'a str) -> &'a str {
        self.service.as_deref().unwrap_or(name)
    }
}

impl Manifest {
    pub fn is_empty(&self) -> bool {
        self.provides.is_empty() && self.requires.is_empty()
    }
}

/// The variable holding a requirement's providers: `api` → `ZEROKU_REQUIRE_API`.
pub fn env_name(requirement: &str) -> String {
    format!("ZEROKU_REQUIRE_{}", requirement.to_ascii_uppercase())
}

/// Parses and checks `zeroku.toml`.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let m: Manifest = toml::from_str(text).map_err(|e| ManifestError::Syntax(e.to_string()))?;
    let bad = |s: String| Err(ManifestError::Invalid(s));
    if m.provides.len() > MAX_ENTRIES || m.requires.len() > MAX_ENTRIES {
        return bad(format!(
            "at most {MAX_ENTRIES} services provided and {MAX_ENTRIES} required"
        ));
    }
    for (name, p) in &m.provides {
        if let Err(e) = crate::names::service(name) {
            return bad(format!("[provides.{name}]: {e}"));
        }
        if let Err(e) = crate::names::process_type(&p.process) {
            return bad(format!("[provides.{name}] process: {e}"));
        }
        if p.port_env != "PORT" {
            return bad(format!(
                "[provides.{name}] port_env = {:?}: only PORT, the port each instance is given, can be provided",
                p.port_env
            ));
        }
        attributes(&format!("provides.{name}"), &p.attributes)?;
        if p.consumers.len() > 1000 {
            return bad(format!("[provides.{name}] consumers: at most 1000 apps"));
        }
        if let Some(e) = p.consumers.iter().find_map(|c| crate::names::app(c).err()) {
            return bad(format!("[provides.{name}] consumers: {e}"));
        }
    }
    for (name, r) in &m.requires {
        if let Err(e) = crate::names::service(name) {
            return bad(format!("[requires.{name}]: {e}"));
        }
        if name == "dir" {
            return bad(format!(
                "[requires.{name}]: `dir` is taken (ZEROKU_REQUIRE_DIR names the requirement files' directory)"
            ));
        }
        if let Err(e) = crate::names::app(&r.app) {
            return bad(format!("[requires.{name}] app: {e}"));
        }
        if let Err(e) = crate::names::service(r.service(name)) {
            return bad(format!("[requires.{name}] service: {e}"));
        }
        attributes(&format!("requires.{name}"), &r.attributes)?;
    }
    Ok(m)
}

fn attributes(at: &str, a: &BTreeMap<String, String>) -> Result<(), ManifestError> {
    if a.len() > MAX_ENTRIES {
        return Err(ManifestError::Invalid(format!(
            "[{at}]: at most {MAX_ENTRIES} attributes"
        )));
    }
    match a
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() > 64 || v.len() > 256)
    {
        Some((k, _)) => Err(ManifestError::Invalid(format!(
            "[{at}] attribute {k:?}: names are 1-64 bytes, values at most 256"
        ))),
        None => Ok(()),
    }
}

/// Whether a provider with `has` matches a requirement asking for `wants`.
pub fn matches(wants: &BTreeMap<String, String>, has: &BTreeMap<String, String>) -> bool {
    wants.iter().all(|(k, v)| has.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_provides_and_requires_with_defaults() {
        let m = parse(
            "[provides.api]\nattributes = { env = \"prod\" }\n\
             [requires.billing]\napp = \"billing\"\nservice = \"api\"\non_change = \"signal:HUP\"\n\
             [requires.cache]\napp = \"cache-app\"\n",
        )
        .unwrap();
        let p = &m.provides["api"];
        assert_eq!((p.process.as_str(), p.port_env.as_str()), ("web", "PORT"));
        assert_eq!(p.attributes["env"], "prod");
        let b = &m.requires["billing"];
        assert_eq!(b.service("billing"), "api");
        assert_eq!(b.on_change, OnChange::Signal("HUP".into()));
        let c = &m.requires["cache"];
        assert_eq!(c.service("cache"), "cache");
        assert_eq!(c.on_change, OnChange::Restart);
        assert_eq!(env_name("billing"), "ZEROKU_REQUIRE_BILLING");
    }

    #[test]
    fn on_change_forms_round_trip() {
        for s in ["restart", "none", "signal:USR1", "hook:./bin/reload --all"] {
            let c = OnChange::try_from(s.to_string()).unwrap();
            assert_eq!(String::from(c), s);
        }
        assert_eq!(
            OnChange::try_from("signal:SIGhup".to_string()),
            Ok(OnChange::Signal("HUP".into()))
        );
        for bad in ["restart ", "signal:KILL", "signal:", "hook:", "reload"] {
            assert!(OnChange::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn typos_and_bad_values_are_errors_naming_them() {
        let e = parse("[provides.api]\nproces = \"web\"\n").unwrap_err();
        assert!(e.to_string().contains("proces"), "{e}");
        let e = parse("[requires.api]\napp = \"billing\"\non_change = \"reboot\"\n").unwrap_err();
        assert!(e.to_string().contains("reboot"), "{e}");
        let e = parse("[requires.api]\nservice = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("app"), "{e}");
        let e = parse("[requires.API]\napp = \"billing\"\n").unwrap_err();
        assert!(e.to_string().contains("requires.API"), "{e}");
        let e = parse("[provides.api]\nport_env = \"METRICS_PORT\"\n").unwrap_err();
        assert!(e.to_string().contains("only PORT"), "{e}");
        let e = parse("[requires.dir]\napp = \"billing\"\n").unwrap_err();
        assert!(e.to_string().contains("taken"), "{e}");
        let e = parse("[requires.api]\napp = \"../x\"\n").unwrap_err();
        assert!(e.to_string().contains("app"), "{e}");
        assert!(parse("provides = 3\n").is_err());
        assert_eq!(parse("").unwrap(), Manifest::default());
    }

    #[test]
    fn attributes_filter_providers() {
        let has = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        assert!(matches(&BTreeMap::new(), &has));
        assert!(matches(&has, &has));
        let other = BTreeMap::from([("env".to_string(), "dev".to_string())]);
        assert!(!matches(&other, &has));
        assert!(!matches(&has, &BTreeMap::new()));
    }
}
