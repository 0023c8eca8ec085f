//! The desired-state model and what workers report back.
//!
//! The master turns apps, releases and formations into one [`NodeList`] per
//! node; a worker turns the newest list it has seen into running processes and
//! answers with [`Heartbeat`]s (the full state of that node) and [`LogLine`]s.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Resource limits of one instance. Zero means "no limit".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory in MiB; also what the scheduler reserves on the node.
    pub memory_mb: u64,
    /// CPU in thousandths of a core (1000 = one core).
    pub cpu_millis: u32,
    /// Maximum number of tasks (processes and threads).
    pub pids: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 512,
            cpu_millis: 0,
            pids: 512,
        }
    }
}

/// A content-addressed slug: the sha256 (hex) of its squashfs image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlugRef {
    pub sha256: String,
    pub size: u64,
}

/// One instance a node must run: `<app>.<type>.<n>` at a given release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    pub id: String,
    pub app: String,
    /// Stable number of the app, unique in the cluster: a worker running as
    /// root runs the app under uid `app_uid_base + app_seq`.
    pub app_seq: u32,
    pub proc_type: String,
    pub index: u32,
    /// Release version (`v3` is 3).
    pub release: u32,
    /// The Procfile command, run with `sh -c` in the slug directory.
    pub command: String,
    /// Config vars of the release; the worker adds `PORT` and `ZEROKU_*`.
    pub env: BTreeMap<String, String>,
    pub slug: SlugRef,
    pub limits: Limits,
    /// The image a `docker` app runs in (its stack); `None` runs the
    /// instance as a native process.
    #[serde(default)]
    pub stack: Option<String>,
    /// For an interactive one-off (`zeroku run` from a terminal): the
    /// terminal it runs on, which the worker relays to the master.
    #[serde(default)]
    pub tty: Option<Tty>,
    /// For a `handler` process: where every frontend takes its requests and
    /// replies. The worker turns them into `M2_SEND_SPEC`/`M2_RECV_SPEC`.
    #[serde(default)]
    pub handler: Vec<HandlerEndpoint>,
    /// The instance's incarnation (`zeroku ps:restart`): a new number is a new
    /// process next to the running one, which stops once the new one is up,
    /// as for a new release.
    #[serde(default)]
    pub restart: u32,
    /// The app's `stop_when_lost_ms`: a worker that has heard nothing from
    /// the master for this long stops the instance (the master has moved it
    /// by then, Nomad's stop-on-client-disconnect). `None`: it runs on.
    #[serde(default)]
    pub stop_when_lost_ms: Option<u64>,
    /// For an add-on's server: it runs `command` (from no slug) in its data directory on this
    /// node, which is kept across restarts, on a fixed port.
    #[serde(default)]
    pub addon: Option<AddonRun>,
    /// The services it requires (`zeroku.toml`) and their live providers
    /// now: the worker sets `ZEROKU_REQUIRE_<NAME>` and acts on a change as
    /// each says. (Last, and left out when empty: lists stay as they were
    /// for apps that require nothing.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<Required>,
}

/// One requirement of an instance, resolved: see [`InstanceSpec::requires`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Required {
    /// The requirement's name in the manifest (`api`).
    pub name: String,
    pub on_change: crate::manifest::OnChange,
    /// `host:port` of each provider instance that is up, sorted.
    pub addrs: Vec<String>,
}

/// How an add-on's server runs: see [`InstanceSpec::addon`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddonRun {
    /// `postgres`, `redis`.
    pub kind: String,
    /// Its `$PORT`, the same on every start: apps have it in their URL.
    pub port: u16,
}

/// Where one frontend exchanges a handler instance's requests and replies.
/// A frontend on the instance's own node gives `ipc://` paths in a
/// directory only the app's uid may enter, used as they are; any other gives
/// `tcp://` endpoints and its CURVE key, and the worker relays between them
/// and `ipc://` sockets of its own (handlers never see a key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerEndpoint {
    /// The frontend's name.
    pub frontend: String,
    /// Requests: the frontend's PUSH (handlers connect PULL).
    pub send: String,
    /// Replies: the frontend's SUB (handlers connect PUB).
    pub recv: String,
    /// For `tcp://` endpoints, the frontend's CURVE public key (z85).
    #[serde(default)]
    pub key: Option<String>,
}

/// A terminal for an interactive one-off: its size and `$TERM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tty {
    pub cols: u16,
    pub rows: u16,
    pub term: String,
}

/// The full desired process list of one node. Lists are idempotent: a worker
/// applies the highest `generation` it has seen and ignores older ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    pub node: String,
    pub generation: u64,
    pub instances: Vec<InstanceSpec>,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    /// Slug being fetched, or the process started but not yet up.
    Starting,
    /// Running and past its start-up period.
    Up,
    /// Exited and waiting to be restarted (back-off).
    Restarting,
    /// Restarted too often: more than the limit within a minute.
    Crashed,
    /// Being stopped (SIGTERM sent, waiting for exit or the grace period).
    Stopping,
    /// A one-off (`zeroku run`) that has exited; `last_exit` says how.
    Done,
}

impl std::fmt::Display for InstanceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            InstanceState::Starting => "starting",
            InstanceState::Up => "up",
            InstanceState::Restarting => "restarting",
            InstanceState::Crashed => "crashed",
            InstanceState::Stopping => "stopping",
            InstanceState::Done => "done",
        })
    }
}

/// The process type of one-off instances (`zeroku run`): started once,
/// never restarted, never routed to.
pub const RUN_TYPE: &str = "run";

/// What a worker knows about one of its processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub id: String,
    pub release: u32,
    pub state: InstanceState,
    pub pid: Option<u32>,
    /// `$PORT` given to the process.
    pub port: Option<u16>,
    /// Restarts since the instance was created at this release.
    pub restarts: u32,
    /// When the current process started (unix seconds).
    pub started_at: u64,
    /// The last exit (`exited with status 1`, `killed by signal 9`), if any.
    pub last_exit: Option<String>,
    /// The container's id (12 hex digits) when the Docker runtime runs it.
    #[serde(default)]
    pub container: Option<String>,
    /// The incarnation ([`InstanceSpec::restart`]) this process runs; 0 for
    /// a process being stopped.
    #[serde(default)]
    pub restart: u32,
}

/// Sent by every worker each interval (and at once after a change): the whole
/// state of the node, so a lost heartbeat never loses information.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: String,
    /// The newest list generation the worker has applied.
    pub generation: u64,
    /// Memory the scheduler may hand out on this node, MiB.
    pub capacity_mb: u64,
    /// `None` when cgroup limits are enforced, else why they are not.
    pub cgroups_unavailable: Option<String>,
    pub instances: Vec<InstanceStatus>,
    /// What can run here: `native`, and `docker <version>` when the node
    /// has a Docker Engine.
    #[serde(default)]
    pub runtimes: Vec<String>,
    /// Stacks (images) the node's engine has.
    #[serde(default)]
    pub stacks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Out,
    Err,
    /// Lines the platform itself writes about an instance (start, exit).
    System,
}

/// One line an instance wrote (or the worker wrote about it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub app: String,
    pub instance: String,
    pub release: u32,
    /// Milliseconds since the unix epoch.
    pub ts_ms: u64,
    pub stream: Stream,
    pub line: String,
}

/// What frontends need to route requests, published by the master on topic
/// `routes` whenever it changes (and fetched by a frontend at start).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    /// Increases with every change; a frontend ignores older tables.
    pub generation: u64,
    pub apps: Vec<AppRoute>,
    /// ACME HTTP-01 challenges under way: a frontend answers
    /// `/.well-known/acme-challenge/<token>` with the key authorization, for any host.
    #[serde(default)]
    pub acme: Vec<AcmeChallenge>,
    /// The master's ACME account key thumbprint (RFC 7638), once it has an account: any other
    /// well-formed token is answered `<token>.<thumbprint>` (RFC 8555 §8.1), so a challenge
    /// the table has not brought yet is answered all the same. Only orders of that account
    /// can use the answer.
    #[serde(default)]
    pub acme_thumbprint: String,
}

/// One HTTP-01 challenge (RFC 8555 §8.3). Neither value is secret: the CA fetches it over
/// plain HTTP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeChallenge {
    pub token: String,
    pub key_authorization: String,
}

/// A certificate of an app that frontends serve for `names` (by SNI); its chain and key are
/// fetched from the master by `sha256` (`GET /v1/frontends/<name>/certs/<sha256>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRef {
    /// SHA-256 of the certificate chain's PEM, hex.
    pub sha256: String,
    /// The DNS names it covers (`*.example.com` for a wildcard).
    pub names: Vec<String>,
    /// Unix time it expires; the newest wins where two cover a name.
    pub not_after: u64,
}

/// How to reach one app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRoute {
    pub app: String,
    /// Custom domains (`zeroku domains:add`); `<app>.<base domain>` always
    /// routes too.
    pub domains: Vec<String>,
    /// Set when the current release has a `handler` process type.
    pub handler: Option<HandlerRoute>,
    /// `host:port` of every `web` instance that is up.
    pub web: Vec<String>,
    /// Path routes (`zeroku routes:add`), longest prefix first. Without
    /// them, everything goes to the handlers if there is a `handler`
    /// process type, else to the `web` instances.
    #[serde(default)]
    pub paths: Vec<PathRoute>,
    /// The current release's slug, when a `dir` route serves files from it.
    #[serde(default)]
    pub slug: Option<SlugRef>,
    /// In maintenance (`zeroku maintenance:on`): the frontend answers 503 with this page (the
    /// app's own, or zeroku's when empty) and stops nothing.
    #[serde(default)]
    pub maintenance: Option<String>,
    /// Certificates the frontends serve for this app's names.
    #[serde(default)]
    pub certs: Vec<CertRef>,
    /// Plain HTTP requests are redirected to HTTPS (`apps:settings force_https=on`).
    #[serde(default)]
    pub force_https: bool,
    /// `Strict-Transport-Security: max-age=<this>` on HTTPS answers (`apps:settings hsts=on`).
    #[serde(default)]
    pub hsts: Option<u64>,
}

/// Requests whose path is `prefix` or below it (whole segments) go to
/// `backend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRoute {
    pub prefix: String,
    pub backend: Backend,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Backend {
    /// The app's Mongrel2-protocol handlers.
    Handler,
    /// The app's `web` instances on `$PORT`.
    Web,
    /// Static files from a directory of the slug.
    Dir { dir: String },
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Handler => f.write_str("handler"),
            Backend::Web => f.write_str("web"),
            Backend::Dir { dir } => write!(f, "dir:{dir}"),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    /// `handler`, `web` or `dir:<path in the slug>`.
    fn from_str(s: &str) -> Result<Backend, String> {
        match s {
            "handler" => Ok(Backend::Handler),
            "web" => Ok(Backend::Web),
            _ => match s.strip_prefix("dir:") {
                Some(d) if !d.is_empty() && !d.starts_with('/') && !d.split('/').any(|p| p == "..") => {
                    Ok(Backend::Dir { dir: d.trim_end_matches('/').to_string() })
                }
                _ => Err(format!(
                    "{s:?} is not a backend: use handler, web, or dir:<directory in the app> (relative, no ..)"
                )),
            },
        }
    }
}

/// A route prefix: `/` or `/a/b` (no trailing slash, no `..`, no `//`).
pub fn check_prefix(p: &str) -> Result<(), String> {
    let ok = p == "/"
        || (p.starts_with('/')
            && !p.ends_with('/')
            && p[1..]
                .split('/')
                .all(|seg| !seg.is_empty() && seg != ".." && seg != "."));
    if ok {
        Ok(())
    } else {
        Err(format!("{p:?} is not a route prefix like / or /static"))
    }
}

/// The Mongrel2-protocol socket pair every frontend binds for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandlerRoute {
    /// Frontends bind PUSH here (TCP, CURVE) for relays of handlers on other
    /// nodes; handlers on the frontend's node use `ipc://<dir>/<app>/send`.
    pub send_port: u16,
    /// Frontends bind SUB here (TCP, CURVE); locally `ipc://<dir>/<app>/recv`.
    pub recv_port: u16,
    /// Header encoding: `json` (default) or `tnetstring`.
    pub protocol: String,
    /// The app's number: its handler sockets belong to its uid.
    #[serde(default)]
    pub seq: u32,
    /// Bus keys (z85) of the nodes that run the app's handlers: the only
    /// peers a frontend lets relay for it over TCP.
    #[serde(default)]
    pub relay_keys: Vec<String>,
}
