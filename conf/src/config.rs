//! Daemon config files (TOML).
//!
//! Every field has a default, so an empty file (or none) is a working
//! single-node setup on 127.0.0.1. Unknown keys are errors that name the file,
//! line and key: a typo must never be silently ignored. Precedence is
//! defaults, then the file, then command-line flags (applied by the binary).
//! `conf/zeroku.example.toml` documents every key with its default.

use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The commented example config, with every default. `zeroku up` writes it
/// into a new data directory.
pub const EXAMPLE: &str = include_str!("../zeroku.example.toml");

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The control plane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MasterConfig {
    /// Operator HTTP API (JSON under /v1); workers also fetch slugs here.
    pub api: String,
    /// ZMQ PUB socket: process lists to workers (topic `node/<name>`).
    pub pub_endpoint: String,
    /// ZMQ PULL socket: heartbeats and logs from workers.
    pub pull_endpoint: String,
    /// Endpoints handed to workers when they join, if the bind addresses are
    /// not reachable from other nodes (e.g. bound to 0.0.0.0).
    pub advertise_pub: Option<String>,
    pub advertise_pull: Option<String>,
    /// How often workers send a heartbeat, milliseconds (told to workers).
    pub heartbeat_interval_ms: u64,
    /// A node silent for this long is dead and its instances are moved.
    pub dead_after_ms: u64,
    /// The most heartbeats a second the master takes from all nodes together: on a cluster
    /// larger than this × the interval, the interval (and the dead timeout with it) grows
    /// until it fits, as Nomad's `max_heartbeats_per_second` does. 0: never.
    pub max_heartbeats_per_sec: u64,
    /// This often every node hears the master is there (`Message::Alive`), and the list of a
    /// node whose heartbeat reports an older generation is sent again.
    pub republish_interval_ms: u64,
    /// Slugs of the newest N releases of each app are kept; older ones are
    /// deleted from the store.
    pub keep_releases: u32,
    /// An uploaded slug no release refers to yet is kept at least this long
    /// (seconds), so a deploy's upload is never collected before its release.
    pub slug_gc_grace_secs: u64,
    /// Log lines kept per app in memory for `zeroku logs` (loaded from disk
    /// when the master starts).
    pub log_lines_per_app: usize,
    /// Each app's log on disk (`<data>/logs/<app>`) is cut to this many MiB,
    /// oldest lines first; 0 keeps no log on disk (memory only).
    pub log_retention_mb: u64,
    /// Log lines older than this many hours are deleted from disk.
    pub log_retention_hours: u64,
    /// Memory reserved per instance when a formation says nothing, MiB.
    pub default_memory_mb: u64,
    /// Each app with a `handler` process type gets two ports from here,
    /// bound by every frontend: `handler_port_min + 2 * (n - 1)` (PUSH) and
    /// the next (SUB), `n` being the app's number.
    pub handler_port_min: u16,
    /// Add-on servers (PostgreSQL, Redis) listen on ports from here, one each, on their
    /// node's every address: `addon_port_min` to `addon_port_min + 999`.
    pub addon_port_min: u16,
    /// Memory limit of a new add-on's server, MiB.
    pub addon_memory_mb: u64,
    /// The address users see for an app, `{app}` replaced by its name
    /// (printed after a deploy and in `apps:info`).
    pub app_url: String,
    /// Builds at once across all apps (pushes to one app always queue).
    pub builds_at_once: usize,
    /// A build is killed after this long, seconds.
    pub build_timeout_secs: u64,
    /// Memory (data segment) each build process may use, MiB; 0 = no limit.
    pub build_memory_mb: u64,
    /// Largest source a push or deploy may unpack to, MiB.
    pub build_max_source_mb: u64,
    /// Deepest path a source may hold, in levels (`a/b/c` is 3).
    pub build_max_depth: usize,
    /// When the master runs as root, app N builds as uid/gid
    /// `build_uid_base + N` (the same uid the worker runs it under).
    pub build_uid_base: u32,
    /// A deploy waits this long for the new release's instances to be up;
    /// if they are not, it is rolled back (seconds).
    pub deploy_timeout_secs: u64,
    /// Prometheus `/metrics` (and `/healthz`) of the master on this address; `""` (the
    /// default): none. App and node names are in them: bind it where only your Prometheus
    /// reaches (on a host that runs apps, their processes can reach 127.0.0.1).
    pub metrics: String,
    /// How often alert rules (`zeroku alerts:add`) are checked against the apps' metrics, ms.
    pub alert_check_ms: u64,
    /// Alerts look at a minute once this long has passed since it ended, when every worker
    /// and frontend has reported it (their `report_interval_ms` and a margin), ms.
    pub alert_settle_ms: u64,
    /// The ACME directory certificates are obtained from (`zeroku certs:auto`): Let's
    /// Encrypt's by default.
    pub acme_directory: String,
    /// The contact address given to the CA with the account (expiry warnings); may be empty.
    pub acme_email: String,
    /// A PEM file with the CA certificate the ACME directory's own HTTPS is signed with, for a
    /// test CA such as pebble; `""`: the system's roots.
    pub acme_ca_root: String,
    /// Every app gets certificates unless its `certs_auto` setting is `off` (otherwise only
    /// apps with `zeroku certs:auto`).
    pub acme_auto: bool,
    /// A certificate is renewed when fewer than this many days are left.
    pub acme_renew_days: u64,
    /// How often certificates are checked for renewal, ms (a change of domains or
    /// `certs:auto` checks at once).
    pub acme_check_ms: u64,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            api: "127.0.0.1:7070".into(),
            pub_endpoint: "tcp://127.0.0.1:7071".into(),
            pull_endpoint: "tcp://127.0.0.1:7072".into(),
            advertise_pub: None,
            advertise_pull: None,
            heartbeat_interval_ms: 1000,
            dead_after_ms: 3000,
            max_heartbeats_per_sec: 1000,
            republish_interval_ms: 5000,
            keep_releases: 5,
            slug_gc_grace_secs: 3600,
            log_lines_per_app: 1000,
            log_retention_mb: 64,
            log_retention_hours: 168,
            default_memory_mb: 512,
            // Below Linux's ephemeral range (32768-60999): an outgoing
            // connection never holds a handler port the frontends must bind.
            handler_port_min: 10000,
            // Above the handler ports, below the ephemeral range.
            addon_port_min: 15400,
            addon_memory_mb: 256,
            app_url: "http://{app}.localhost:8080".into(),
            metrics: String::new(),
            alert_check_ms: 15_000,
            alert_settle_ms: 75_000,
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_email: String::new(),
            acme_ca_root: String::new(),
            acme_auto: false,
            acme_renew_days: 30,
            acme_check_ms: 3_600_000,
            builds_at_once: 2,
            build_timeout_secs: 900,
            build_memory_mb: 2048,
            build_max_source_mb: 512,
            build_max_depth: 100,
            build_uid_base: 100_000,
            deploy_timeout_secs: 60,
        }
    }
}

impl MasterConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.addon_port_min == 0 || self.addon_port_min > u16::MAX - 999 {
            return Err(format!(
                "addon_port_min = {} leaves no room for 1000 add-on ports",
                self.addon_port_min
            ));
        }
        if self.addon_memory_mb < 32 {
            return Err("addon_memory_mb must be at least 32".into());
        }
        if self.api.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "api = {:?} is not an address like 127.0.0.1:7070",
                self.api
            ));
        }
        for (key, ep) in [
            ("pub_endpoint", &self.pub_endpoint),
            ("pull_endpoint", &self.pull_endpoint),
        ] {
            if !ep.starts_with("tcp://") && !ep.starts_with("ipc://") {
                return Err(format!(
                    "{key} = {ep:?} is not a ZMQ endpoint like tcp://127.0.0.1:7071"
                ));
            }
        }
        if self.dead_after_ms < 2 * self.heartbeat_interval_ms {
            return Err("dead_after_ms must be at least twice heartbeat_interval_ms".into());
        }
        if self.keep_releases == 0 {
            return Err("keep_releases must be at least 1".into());
        }
        if !self.acme_directory.starts_with("https://") {
            return Err(format!(
                "acme_directory = {:?} is not an https:// URL of an ACME directory",
                self.acme_directory
            ));
        }
        if self.acme_check_ms < 1000 {
            return Err("acme_check_ms must be at least 1000".into());
        }
        Ok(())
    }
}

/// The node agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Name of this node in the cluster (`zeroku nodes`).
    pub node: String,
    /// The master's API URL.
    pub master: String,
    /// Memory the scheduler may place on this node, MiB; 0 = the machine's.
    pub capacity_mb: u64,
    /// `$PORT`s handed to instances are taken from this range.
    pub port_min: u16,
    pub port_max: u16,
    /// SIGTERM, then SIGKILL after this long.
    pub stop_grace_ms: u64,
    /// A new process counts as up once it has run this long (a `web`
    /// process: once it also accepts connections on `$PORT`); only then is
    /// the instance it replaces stopped.
    pub ready_after_ms: u64,
    /// A `web` process that does not accept on `$PORT` within this long is
    /// killed and restarted (Heroku's R10 boot timeout), ms.
    pub boot_timeout_ms: u64,
    /// After its replacement is up, an old process keeps serving this long
    /// before SIGTERM, so frontends route to the new one first, ms.
    pub drain_ms: u64,
    /// First restart delay after a crash; doubles on each crash.
    pub backoff_initial_ms: u64,
    /// The restart delay never grows beyond this.
    pub backoff_max_ms: u64,
    /// After running this long without a crash, the delay starts over.
    pub backoff_reset_ms: u64,
    /// More than this many restarts within a minute marks it crashed.
    pub crash_restarts_per_minute: u32,
    /// When the worker runs as root, an app runs as uid/gid
    /// `app_uid_base + app number`; otherwise as the worker's own user.
    pub app_uid_base: u32,
    /// Unpacked slugs kept on disk that no instance uses.
    pub keep_unused_slugs: usize,
    /// The address frontends use to reach this node's instances on their
    /// `$PORT` (instances listen on all addresses).
    pub advertise_host: String,
    /// Prometheus `/metrics` (and `/healthz`) of this worker on this address; `""` (the
    /// default): none. Every app's instances on the node are in them: not on 127.0.0.1, which
    /// the apps' processes reach, but an address only your Prometheus reaches.
    pub metrics: String,
    /// How often the worker tells the master what each instance used (`zeroku metrics`), ms.
    pub report_interval_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            node: "local".into(),
            master: "http://127.0.0.1:7070".into(),
            capacity_mb: 0,
            port_min: 20000,
            port_max: 29999,
            stop_grace_ms: 30_000,
            ready_after_ms: 1000,
            boot_timeout_ms: 60_000,
            drain_ms: 2000,
            backoff_initial_ms: 250,
            backoff_max_ms: 30_000,
            backoff_reset_ms: 30_000,
            crash_restarts_per_minute: 5,
            app_uid_base: 100_000,
            keep_unused_slugs: 4,
            advertise_host: "127.0.0.1".into(),
            metrics: String::new(),
            report_interval_ms: 60_000,
        }
    }
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), String> {
        crate::names::node(&self.node).map_err(|e| e.to_string())?;
        if !self.master.starts_with("http://") {
            return Err(format!("master = {:?} must be an http:// URL", self.master));
        }
        if self.port_min == 0 || self.port_min > self.port_max {
            return Err("port_min must be > 0 and not above port_max".into());
        }
        if self.backoff_initial_ms == 0 || self.backoff_initial_ms > self.backoff_max_ms {
            return Err("backoff_initial_ms must be > 0 and not above backoff_max_ms".into());
        }
        Ok(())
    }
}

/// The HTTP edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrontendConfig {
    /// This frontend's name (several may run, one per node).
    pub name: String,
    /// The master's API URL.
    pub master: String,
    /// Public HTTP address.
    pub http: String,
    /// Admin address: Prometheus `/metrics` and `/healthz`. Empty = off.
    pub admin: String,
    /// HTTPS address (TLS terminated here with rustls). Empty = off.
    pub https: String,
    /// PEM certificate chain and private key for `https`: served to clients that ask for a
    /// name no app certificate (`zeroku certs:auto`, `certs:add`) covers. Both empty: such
    /// handshakes fail.
    pub tls_cert: String,
    pub tls_key: String,
    /// The port clients reach HTTPS on, where `force_https` sends them (behind a port
    /// forward it differs from `https`'s); 0: the port of `https`.
    pub https_public_port: u16,
    /// Apps answer at `<app>.<base_domain>`.
    pub base_domain: String,
    /// Address the per-app handler sockets are bound on.
    pub handler_bind: String,
    /// Address handlers on other nodes connect to; empty = `handler_bind`.
    pub handler_advertise: String,
    /// The worker node on this frontend's host (its `[worker] node`), if any: handlers there
    /// reach this frontend over `ipc://` sockets in a directory per app that only the app's
    /// uid may enter; handlers on other nodes come through their worker's relay, over TCP with
    /// CURVE. Empty: no worker here.
    pub node: String,
    /// The uid base of the worker on this host (`[worker] app_uid_base`): app N's handler
    /// sockets belong to uid `app_uid_base + N` when the frontend runs as root.
    pub app_uid_base: u32,
    /// A request for an app with no handler connected waits this long for
    /// one (a deploy, a crash) before 503.
    pub hold_ms: u64,
    /// A handler or upstream that has not answered after this long: 504.
    pub timeout_ms: u64,
    /// Largest request body, bytes (413 above).
    pub max_body_bytes: u64,
    /// Largest request head (request line and headers), bytes (431 above).
    pub max_header_bytes: usize,
    /// A client must send its whole request head within this time, ms;
    /// slow clients (slowloris) are disconnected.
    pub header_timeout_ms: u64,
    /// A request body larger than this (or chunked) reaches handlers as a
    /// temp file (`x-mongrel2-upload-start`/`-done`), as in Mongrel2.
    pub upload_threshold_bytes: u64,
    /// Where the access log goes: `""` (with the daemon's log on stderr),
    /// `"off"`, or a file path (appended to).
    pub access_log: String,
    /// How often the frontend tells the master what each app was asked (`zeroku metrics`),
    /// ms.
    pub report_interval_ms: u64,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            name: "edge".into(),
            master: "http://127.0.0.1:7070".into(),
            http: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:9180".into(),
            https: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            https_public_port: 0,
            base_domain: "localhost".into(),
            handler_bind: "127.0.0.1".into(),
            handler_advertise: String::new(),
            node: String::new(),
            app_uid_base: 100_000,
            hold_ms: 10_000,
            timeout_ms: 30_000,
            max_body_bytes: 100 << 20,
            max_header_bytes: 64 << 10,
            header_timeout_ms: 10_000,
            upload_threshold_bytes: 20480,
            access_log: String::new(),
            report_interval_ms: 60_000,
        }
    }
}

impl FrontendConfig {
    pub fn validate(&self) -> Result<(), String> {
        crate::names::node(&self.name).map_err(|e| e.to_string())?;
        if !self.node.is_empty() {
            crate::names::node(&self.node).map_err(|e| format!("node: {e}"))?;
        }
        if self.http.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "http = {:?} is not an address like 127.0.0.1:8080",
                self.http
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(
                "tls_cert and tls_key go together: the PEM certificate chain and its key".into(),
            );
        }
        if self.base_domain.is_empty() || self.base_domain.starts_with('.') {
            return Err(format!(
                "base_domain = {:?} is not a domain",
                self.base_domain
            ));
        }
        Ok(())
    }
}

/// The file `zeroku up` reads: one section per daemon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub master: MasterConfig,
    pub worker: WorkerConfig,
    pub frontend: FrontendConfig,
}

impl ClusterConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.master
            .validate()
            .map_err(|e| format!("[master] {e}"))?;
        self.worker
            .validate()
            .map_err(|e| format!("[worker] {e}"))?;
        self.frontend
            .validate()
            .map_err(|e| format!("[frontend] {e}"))
    }
}

/// Applies `ZEROKU_MASTER_<KEY>` and `ZEROKU_WORKER_<KEY>` variables from
/// `vars` over `cfg` (e.g. `ZEROKU_MASTER_DEAD_AFTER_MS=5000`). Values are
/// read as TOML values when they parse as one (numbers, booleans), else as
/// strings. An unknown key or a wrong type is an error naming the variable.
pub fn apply_env(
    cfg: &ClusterConfig,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<ClusterConfig, ConfigError> {
    let env_err = |message: String| ConfigError::Invalid {
        path: PathBuf::from("(environment)"),
        message,
    };
    let mut table = toml::Table::try_from(cfg).map_err(|e| env_err(e.to_string()))?;
    let mut seen = Vec::new();
    for (name, raw) in vars {
        let sections = [
            ("ZEROKU_MASTER_", "master"),
            ("ZEROKU_WORKER_", "worker"),
            ("ZEROKU_FRONTEND_", "frontend"),
        ];
        let Some((section, key)) = sections
            .iter()
            .find_map(|(prefix, section)| name.strip_prefix(prefix).map(|k| (*section, k)))
        else {
            continue;
        };
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        if let Some(toml::Value::Table(t)) = table.get_mut(section) {
            t.insert(key.to_lowercase(), value);
        }
        seen.push(name);
    }
    if seen.is_empty() {
        return Ok(cfg.clone());
    }
    ClusterConfig::deserialize(toml::Value::Table(table)).map_err(|e| {
        env_err(format!(
            "{e} (from the environment variables {})",
            seen.join(", ")
        ))
    })
}

/// Parses `text` (read from `path`) into a config.
pub fn parse<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// Reads a config file; `None` gives the defaults.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_is_the_defaults() {
        let c: ClusterConfig = parse(Path::new("zeroku.example.toml"), EXAMPLE).unwrap();
        assert_eq!(c, ClusterConfig::default());
        c.validate().unwrap();
    }

    #[test]
    fn typo_names_file_line_and_key() {
        let text = "[master]\napi = \"127.0.0.1:1\"\ndead_afer_ms = 10\n";
        let e = parse::<ClusterConfig>(Path::new("/etc/zk.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/etc/zk.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("dead_afer_ms"), "{e}");
    }

    #[test]
    fn environment_overrides() {
        let base = ClusterConfig::default();
        let vars = [
            ("ZEROKU_MASTER_DEAD_AFTER_MS", "5000"),
            ("ZEROKU_MASTER_API", "127.0.0.1:9000"),
            ("ZEROKU_WORKER_NODE", "edge-1"),
            ("ZEROKU_URL", "ignored"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let c = apply_env(&base, vars).unwrap();
        assert_eq!(c.master.dead_after_ms, 5000);
        assert_eq!(c.master.api, "127.0.0.1:9000");
        assert_eq!(c.worker.node, "edge-1");
        let typo = [("ZEROKU_MASTER_DEAD_AFTR_MS".to_string(), "1".to_string())];
        let e = apply_env(&base, typo).unwrap_err().to_string();
        assert!(
            e.contains("dead_aftr_ms") && e.contains("ZEROKU_MASTER_DEAD_AFTR_MS"),
            "{e}"
        );
    }

    #[test]
    fn wrong_types_and_bad_values() {
        let e = parse::<MasterConfig>(Path::new("m.toml"), "dead_after_ms = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let c: MasterConfig = parse(Path::new("m.toml"), "api = \"nope\"").unwrap();
        assert!(c.validate().unwrap_err().contains("api"));
        let missing = load::<MasterConfig>(Some(Path::new("/nonexistent/zk.toml"))).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/zk.toml"));
    }
}
