//! The command line, as clap types. Commands that print data take `--json`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "zeroku",
    version,
    about = "Self-hosted platform-as-a-service: push, and it runs on your fleet"
)]
pub struct Cli {
    #[command(flatten)]
    pub api: Api,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the CLI finds the master. The token is never a flag (every process
/// on the host can read a command line): it comes from ZEROKU_TOKEN, or from
/// the file `zeroku login` wrote.
#[derive(Args, Debug, Clone)]
pub struct Api {
    /// The master's API URL (default: ZEROKU_URL, else the one `zeroku login`
    /// saved, else http://127.0.0.1:7070).
    #[arg(long, env = "ZEROKU_URL", global = true)]
    pub url: Option<String>,
    #[arg(skip)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct AppArg {
    /// The app (default: ZEROKU_APP, else the app of this directory's `zeroku` git remote).
    #[arg(short = 'a', long = "app", env = "ZEROKU_APP")]
    app: Option<String>,
}

/// The URL of the current directory's `zeroku` git remote, if it has one.
pub fn zeroku_remote() -> Option<String> {
    std::process::Command::new("git")
        .args(["remote", "get-url", "zeroku"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

impl AppArg {
    /// The app named with `-a`, or by the `zeroku` git remote of the current directory (the
    /// one `zeroku git:remote` adds: `.../git/<app>.git`).
    pub fn name(&self) -> anyhow::Result<String> {
        if let Some(a) = &self.app {
            return Ok(a.clone());
        }
        zeroku_remote()
            .as_deref()
            .and_then(|u| u.rsplit('/').next())
            .and_then(|last| last.strip_suffix(".git"))
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "which app? Give -a APP (or ZEROKU_APP), or run this in a git repository with a zeroku remote (zeroku git:remote -a APP)"
                )
            })
    }
}

/// Addresses every daemon listens on; each has a config key too.
#[derive(Args, Debug, Clone, Default)]
pub struct MasterFlags {
    /// Operator API address (config: master.api).
    #[arg(long)]
    pub api: Option<String>,
    /// ZMQ PUB endpoint for node lists (config: master.pub_endpoint).
    #[arg(long = "pub")]
    pub pub_endpoint: Option<String>,
    /// ZMQ PULL endpoint for heartbeats and logs (config: master.pull_endpoint).
    #[arg(long = "pull")]
    pub pull_endpoint: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a whole single-node cluster (master + worker) in one process.
    Up {
        /// Data directory (default: $XDG_DATA_HOME/zeroku or ~/.local/share/zeroku).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Config file (default: <data>/zeroku.toml, written on first start).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        master: MasterFlags,
        /// Name of the local node.
        #[arg(long)]
        node: Option<String>,
        /// Public HTTP address of the embedded frontend (config: frontend.http).
        #[arg(long)]
        http: Option<String>,
        /// Metrics address of the embedded frontend, "" = off (config: frontend.admin).
        #[arg(long)]
        admin: Option<String>,
        /// Check the config and exit.
        #[arg(short = 't', long = "check")]
        check: bool,
    },
    /// Run the master (control plane).
    Master {
        /// Data directory: the database, slugs, git repositories, keys.
        #[arg(long)]
        data: PathBuf,
        /// Config file; its [master] section is used.
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: MasterFlags,
        /// Check the config and exit.
        #[arg(short = 't', long = "check")]
        check: bool,
    },
    /// Run a worker (node agent).
    Worker {
        /// Data directory: slugs, instance state, the node's keys.
        #[arg(long)]
        data: PathBuf,
        /// Config file; its [worker] section is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// This node's name (config: worker.node).
        #[arg(long)]
        node: Option<String>,
        /// The master's API URL (config: worker.master).
        #[arg(long)]
        master: Option<String>,
        /// A file holding a join token from `zeroku nodes:join-token` (needed on first start;
        /// or the ZEROKU_JOIN_TOKEN environment variable). Never on the command line, where
        /// every process on the host can read it.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Memory the scheduler may use here, MiB (config: worker.capacity_mb).
        #[arg(long)]
        capacity_mb: Option<u64>,
        /// First $PORT handed out (config: worker.port_min).
        #[arg(long)]
        port_min: Option<u16>,
        /// Last $PORT handed out (config: worker.port_max).
        #[arg(long)]
        port_max: Option<u16>,
        /// Check the config and exit.
        #[arg(short = 't', long = "check")]
        check: bool,
    },
    /// Run a frontend (the HTTP edge) that follows the master's routes.
    Frontend {
        /// Data directory: certificates, handler sockets, the node's keys.
        #[arg(long)]
        data: PathBuf,
        /// Config file; its [frontend] section is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// This frontend's name (config: frontend.name).
        #[arg(long)]
        name: Option<String>,
        /// The master's API URL (config: frontend.master).
        #[arg(long)]
        master: Option<String>,
        /// A file holding a join token from `zeroku nodes:join-token` (needed on first start;
        /// or the ZEROKU_JOIN_TOKEN environment variable). Never on the command line, where
        /// every process on the host can read it.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Public HTTP address (config: frontend.http).
        #[arg(long)]
        http: Option<String>,
        /// Metrics address, "" = off (config: frontend.admin).
        #[arg(long)]
        admin: Option<String>,
        /// Check the config and exit.
        #[arg(short = 't', long = "check")]
        check: bool,
    },
    /// List apps.
    Apps,
    /// Create an app.
    #[command(name = "apps:create")]
    AppsCreate {
        name: String,
        /// native (processes from the slug, the default) or docker (containers).
        #[arg(long)]
        runtime: Option<String>,
        /// The stack (root file system) a docker app runs in; see `zeroku stacks`.
        #[arg(long)]
        stack: Option<String>,
    },
    /// Show an app: release, formation, instances.
    #[command(name = "apps:info")]
    AppsInfo {
        #[command(flatten)]
        app: AppArg,
    },
    /// Delete an app and stop all its instances.
    #[command(name = "apps:destroy")]
    AppsDestroy {
        #[command(flatten)]
        app: AppArg,
        /// Repeat the app name to confirm.
        #[arg(long)]
        confirm: String,
    },
    /// Rename an app. Its config, releases, custom domains, access and data stay; its
    /// instances are replaced by ones under the new name (a short gap while they boot, as with
    /// Dokku), and it answers at the new name's address only. This directory's `zeroku` git
    /// remote is pointed at the new name.
    #[command(name = "apps:rename")]
    AppsRename {
        /// The new name.
        new_name: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Show or change app settings. Changing runtime, stack or cpu rolls out a new release.
    ///
    /// Settings: runtime=native|docker (how instances run); stack=NAME (the base image:
    /// `zeroku stacks`; docker apps need one); cpu=CORES (a limit per instance, e.g. 0.5;
    /// 0 = none);
    /// m2_protocol=json|tnetstring (how handlers get request headers);
    /// maintenance=on|off and maintenance_page=HTML (the 503 page the edge serves while on;
    /// see `maintenance:on`).
    #[command(name = "apps:settings")]
    AppsSettings {
        #[command(flatten)]
        app: AppArg,
        /// KEY=VALUE pairs to set.
        pairs: Vec<String>,
    },
    /// List an app's releases.
    Releases {
        #[command(flatten)]
        app: AppArg,
    },
    /// Pack a directory with a Procfile into a slug and release it.
    #[command(name = "releases:create")]
    ReleasesCreate {
        #[command(flatten)]
        app: AppArg,
        /// Directory with a Procfile at its root.
        dir: PathBuf,
        /// Release description.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// Build a directory or a .tar/.tar.gz archive with buildpacks and release it (as a git push does).
    Deploy {
        #[command(flatten)]
        app: AppArg,
        /// The app's source: a directory (its .git is left out) or an archive.
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Show the output of the app's last build.
    #[command(name = "builds:output")]
    BuildsOutput {
        #[command(flatten)]
        app: AppArg,
    },
    /// Run a one-off command in a new instance of the current release (`-- CMD ARGS...`);
    /// from a terminal, on a remote terminal (raw mode, resize, Ctrl-C reach it).
    Run {
        #[command(flatten)]
        app: AppArg,
        /// Start it and return; its output goes to `zeroku logs`.
        #[arg(long)]
        detach: bool,
        /// No terminal even when run from one (output via the logs, stdin empty).
        #[arg(long)]
        no_tty: bool,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Stacks (root file systems for docker apps) and the nodes that have them.
    Stacks,
    /// Make a root file system tarball a stack (stacks/busybox-rootfs.sh builds a tiny one).
    #[command(name = "stacks:import")]
    StacksImport {
        /// The stack's name, e.g. zk-bookworm.
        name: String,
        /// A tar of the root file system.
        tarball: PathBuf,
    },
    /// SSH keys that may git push (listed).
    Keys,
    /// Allow an SSH public key to git push; prints its authorized_keys line.
    #[command(name = "keys:add")]
    KeysAdd {
        /// The public key file (default: ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub).
        file: Option<PathBuf>,
        /// A name for the key (default: the user part of its comment).
        #[arg(long)]
        name: Option<String>,
        /// Whose key (admins; others add their own): it pushes with that user's permissions.
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove an SSH key.
    #[command(name = "keys:remove")]
    KeysRemove { name: String },
    /// Save a token (read from stdin, never from the command line) and the master's URL in
    /// ~/.config/zeroku/credentials (mode 0600) for later commands and `git push`.
    Login,
    /// Forget the saved token.
    Logout,
    /// Who the token belongs to, and what it may do.
    Whoami,
    /// List users (admins).
    Users,
    /// Add a user; prints their token once (give it to them for `zeroku login`).
    #[command(name = "users:add")]
    UsersAdd {
        name: String,
        /// An admin: every permission on every app, users, nodes.
        #[arg(long)]
        admin: bool,
    },
    /// Remove a user, their tokens, permissions and SSH keys.
    #[command(name = "users:remove")]
    UsersRemove { name: String },
    /// A new token for a user (prints it once).
    #[command(name = "users:token")]
    UsersToken { name: String },
    /// Who may do what on an app.
    Access {
        #[command(flatten)]
        app: AppArg,
    },
    /// Give a user permissions on an app (or change theirs).
    #[command(name = "access:add")]
    AccessAdd {
        user: String,
        #[command(flatten)]
        app: AppArg,
        /// Comma-separated: view, deploy (push, config, run, rollback), operate (scale,
        /// restart, stop), manage (domains, access, settings, destroy). view is always included.
        #[arg(long, default_value = "view,deploy")]
        permissions: String,
    },
    /// Take a user's permissions on an app away.
    #[command(name = "access:remove")]
    AccessRemove {
        user: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// The audit log: who changed what, when (all apps: admins; one app: `manage` on it).
    Audit {
        /// One app's entries.
        #[arg(short = 'a', long = "app")]
        app: Option<String>,
        /// How many entries, newest last.
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        num: u32,
    },
    /// Add the app's git remote to the repository in this directory, pushing with the saved
    /// token through a credential helper (no token in the URL or .git/config).
    #[command(name = "git:remote")]
    GitRemote {
        #[command(flatten)]
        app: AppArg,
        /// The remote's name.
        #[arg(short = 'r', long, default_value = "zeroku")]
        remote: String,
    },
    /// git's credential helper for zeroku remotes (set up by `zeroku git:remote`).
    #[command(name = "git-credential", hide = true)]
    GitCredential {
        /// get, store or erase (git says which).
        operation: String,
    },
    /// The command sshd runs for zeroku's keys (not for users).
    #[command(name = "git-ssh", hide = true)]
    GitSsh {
        /// The file holding the master's git token.
        #[arg(long)]
        token_file: PathBuf,
        /// The SSH key's name.
        #[arg(long)]
        key: String,
    },
    /// Run by the master's git repositories (not for users).
    #[command(hide = true)]
    Hook {
        /// The hook: pre-receive.
        name: String,
    },
    /// Go back to an earlier release (creates a new release with its slug and config).
    Rollback {
        #[command(flatten)]
        app: AppArg,
        /// The release, e.g. v3 (default: the one before the current release).
        version: Option<String>,
    },
    /// Show config vars.
    Config {
        #[command(flatten)]
        app: AppArg,
    },
    /// Print one config var's value (exit status 1 when it is not set).
    #[command(name = "config:get")]
    ConfigGet {
        #[command(flatten)]
        app: AppArg,
        key: String,
    },
    /// Set config vars (KEY=VALUE ...): a new release, instances replaced.
    #[command(name = "config:set")]
    ConfigSet {
        #[command(flatten)]
        app: AppArg,
        /// KEY=VALUE pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
    },
    /// Unset config vars: a new release.
    #[command(name = "config:unset")]
    ConfigUnset {
        #[command(flatten)]
        app: AppArg,
        /// The keys to remove.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// An app's last minutes: requests by status class, latency p50/p95/p99, and per
    /// process type instances, memory, CPU and restarts (kept 24 h by the master).
    Metrics {
        #[command(flatten)]
        app: AppArg,
        /// How many minutes back (1 to 1440).
        #[arg(long, default_value_t = 60)]
        minutes: u64,
    },
    /// An app's alert rules and whether each is firing.
    Alerts {
        #[command(flatten)]
        app: AppArg,
    },
    /// Alert on an app's metrics: a JSON POST to the webhook when RULE starts to hold, and
    /// when it stops (e.g. 'p95 > 500ms for 5m', '5xx_rate > 1%', 'memory > 400MB',
    /// 'restarts > 3').
    #[command(name = "alerts:add")]
    AlertsAdd {
        #[command(flatten)]
        app: AppArg,
        /// METRIC OP VALUE [for Nm]: p50 p95 p99 (ms, s), 5xx_rate (%), 5xx, requests,
        /// memory (MB, GB), cpu (%), restarts.
        rule: String,
        /// Where it is posted: http:// or https://.
        #[arg(long)]
        webhook: String,
    },
    /// Remove an alert rule (its id from `zeroku alerts`).
    #[command(name = "alerts:remove")]
    AlertsRemove {
        #[command(flatten)]
        app: AppArg,
        id: String,
    },
    /// List instances: node, state, pid, restarts, uptime, release.
    Ps {
        #[command(flatten)]
        app: AppArg,
    },
    /// Scale process types: TYPE=N or TYPE=N:MEMORY_MB ...
    #[command(name = "ps:scale")]
    PsScale {
        #[command(flatten)]
        app: AppArg,
        /// TYPE=N (how many instances of a Procfile type) or TYPE=N:MEMORY_MB (and the memory
        /// each gets, from 32 MB to what the largest node has free), e.g. web=3 worker=2:512.
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// Stop a one-off (`<app>.run.<n>`, e.g. from `zeroku run --detach`). An instance of the
    /// formation (`<app>.web.1`) is restarted instead, as Heroku does: `ps:scale` runs fewer.
    #[command(name = "ps:stop")]
    PsStop {
        #[command(flatten)]
        app: AppArg,
        /// The instance, e.g. blog.run.3 (or run.3).
        instance: String,
    },
    /// Restart the app's instances one at a time, each new process up before its old one
    /// stops (no new release). Prints each step; fails if one does not come up again, leaving
    /// its old process serving.
    #[command(name = "ps:restart")]
    PsRestart {
        #[command(flatten)]
        app: AppArg,
        /// A process type (web) or one instance (web.1 or blog.web.1); none: every instance.
        target: Option<String>,
    },
    /// Answer every request with 503 and a maintenance page; no process is stopped.
    #[command(name = "maintenance:on")]
    MaintenanceOn {
        #[command(flatten)]
        app: AppArg,
        /// An HTML file to show instead of zeroku's page (at most 64 KB).
        #[arg(long)]
        page: Option<PathBuf>,
    },
    /// Serve the app again.
    #[command(name = "maintenance:off")]
    MaintenanceOff {
        #[command(flatten)]
        app: AppArg,
    },
    /// Print the app's URL (and open it in a browser when there is one to open it in).
    Open {
        #[command(flatten)]
        app: AppArg,
    },
    /// Show recent log lines of every instance.
    Logs {
        #[command(flatten)]
        app: AppArg,
        /// Keep printing new lines.
        #[arg(short, long)]
        tail: bool,
        /// How many recent lines to show first.
        #[arg(short = 'n', long, default_value_t = 100)]
        num: usize,
        /// Only one process type (web) or instance (web.2).
        #[arg(short = 'p', long = "ps")]
        ps: Option<String>,
        /// Only the app's own output (app) or zeroku's lines about it (zeroku: deploys,
        /// restarts, crashes).
        #[arg(short = 's', long)]
        source: Option<String>,
        /// An add-on of the app (pg-blog-1): its server's log instead.
        #[arg(long)]
        addon: Option<String>,
    },
    /// List an app's path routes.
    Routes {
        #[command(flatten)]
        app: AppArg,
    },
    /// Send a path prefix to a backend: `handler`, `web` or `dir:<dir in the app>`.
    #[command(name = "routes:add")]
    RoutesAdd {
        #[command(flatten)]
        app: AppArg,
        /// `/` or a prefix like `/static` (whole path segments match).
        prefix: String,
        backend: String,
    },
    /// Remove a path route.
    #[command(name = "routes:remove")]
    RoutesRemove {
        #[command(flatten)]
        app: AppArg,
        prefix: String,
    },
    /// Add-ons (PostgreSQL, Redis): those of the apps you may see, or of one app.
    Addons {
        /// Only this app's (default: all).
        #[arg(short = 'a', long = "app", env = "ZEROKU_APP")]
        app: Option<String>,
    },
    /// Create a database for an app: its own server, attached as DATABASE_URL (postgres) or
    /// REDIS_URL (redis) in a new release.
    #[command(name = "addons:create")]
    AddonsCreate {
        /// postgres or redis.
        kind: String,
        #[command(flatten)]
        app: AppArg,
        /// The config var to set (REPORTING for REPORTING_URL); default DATABASE / REDIS.
        #[arg(long = "as", value_name = "NAME")]
        alias: Option<String>,
        /// Return once it is created, without waiting for its server to be up.
        #[arg(long)]
        no_wait: bool,
        /// A standby on another node, synchronous, that takes over when the primary's node
        /// is lost (postgres).
        #[arg(long)]
        ha: bool,
    },
    /// A planned switchover: the standby of an add-on created with --ha takes over, no
    /// commit lost.
    #[command(name = "addons:failover")]
    AddonsFailover {
        addon: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Change an add-on: `ha=on|off` (a standby on another node), `sync=on|off` (commits
    /// wait for the standby).
    #[command(name = "addons:settings")]
    AddonsSettings {
        addon: String,
        /// KEY=VALUE, one or more.
        #[arg(required = true)]
        settings: Vec<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// An add-on: where it runs, its state, the apps it is attached to.
    #[command(name = "addons:info")]
    AddonsInfo {
        addon: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Give another app an add-on's URL (needs manage on the add-on's app too).
    #[command(name = "addons:attach")]
    AddonsAttach {
        addon: String,
        #[command(flatten)]
        app: AppArg,
        /// The config var to set (default DATABASE / REDIS).
        #[arg(long = "as", value_name = "NAME")]
        alias: Option<String>,
    },
    /// Take an add-on's URL away from an app it was attached to.
    #[command(name = "addons:detach")]
    AddonsDetach {
        addon: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// Delete an add-on, its server and its backups (its data directory stays on its node).
    #[command(name = "addons:destroy")]
    AddonsDestroy {
        addon: String,
        #[command(flatten)]
        app: AppArg,
        /// Repeat the add-on's name to confirm.
        #[arg(long)]
        confirm: Option<String>,
        /// Detach it from other apps too (refused while attached elsewhere otherwise).
        #[arg(long)]
        detach: bool,
    },
    /// A new password for an add-on; every attached app gets the new URL in a new release.
    #[command(name = "addons:credentials:rotate")]
    AddonsRotate {
        addon: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// psql on the app's database, from a one-off of the app (as heroku pg:psql).
    #[command(name = "pg:psql")]
    PgPsql {
        /// The add-on or its config var (default: DATABASE_URL's).
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        /// Run this SQL and exit.
        #[arg(short = 'c', long = "command")]
        sql: Option<String>,
    },
    /// redis-cli on the app's Redis, from a one-off of the app.
    #[command(name = "redis:cli")]
    RedisCli {
        /// The add-on or its config var (default: REDIS_URL's).
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Backups of an add-on (PostgreSQL dumps, Redis RDB files).
    #[command(name = "pg:backups")]
    PgBackups {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Back up an add-on now: prints the backup's id, size and sha256.
    #[command(name = "pg:backups:capture")]
    PgBackupsCapture {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Back an add-on up every day at a time (UTC), keeping the newest of the last days and
    /// weeks (backups taken by hand are kept).
    #[command(name = "pg:backups:schedule")]
    PgBackupsSchedule {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        /// 02:00 UTC
        #[arg(long)]
        at: String,
        #[arg(long, default_value_t = 7)]
        keep_daily: u32,
        #[arg(long, default_value_t = 4)]
        keep_weekly: u32,
    },
    /// Stop an add-on's scheduled backups (those taken are kept).
    #[command(name = "pg:backups:unschedule")]
    PgBackupsUnschedule {
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
    },
    /// Replace an add-on's data with a backup (all or nothing).
    #[command(name = "pg:backups:restore")]
    PgBackupsRestore {
        /// b001
        backup: String,
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        /// Repeat the app's name to confirm.
        #[arg(long)]
        confirm: Option<String>,
        /// Into a new add-on attached as this config var instead (a fork; nothing is replaced).
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
    },
    /// Save a backup to a file (pg_restore's custom format, or an RDB file).
    #[command(name = "pg:backups:download")]
    PgBackupsDownload {
        backup: String,
        database: Option<String>,
        #[command(flatten)]
        app: AppArg,
        /// The file to write (default: <backup>.dump / .rdb).
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// List the services apps provide and require (zeroku.toml), with their live providers.
    Services {
        /// Only this app's.
        #[arg(short = 'a', long = "app")]
        app: Option<String>,
    },
    /// Print the providers of a service each time they change (until ctrl-c).
    #[command(name = "services:watch")]
    ServicesWatch {
        /// A service the app provides, or one of its requirements.
        name: String,
        #[command(flatten)]
        app: AppArg,
    },
    /// List where an app's log also goes.
    Drains {
        #[command(flatten)]
        app: AppArg,
    },
    /// Send an app's log to a syslog server or an HTTPS endpoint too (as Heroku's drains).
    #[command(name = "drains:add")]
    DrainsAdd {
        #[command(flatten)]
        app: AppArg,
        /// syslog+tcp://HOST:PORT, or https://HOST[:PORT]/PATH.
        #[arg(value_name = "URL")]
        drain: String,
    },
    /// Stop sending an app's log to a drain.
    #[command(name = "drains:remove")]
    DrainsRemove {
        #[command(flatten)]
        app: AppArg,
        #[arg(value_name = "URL")]
        drain: String,
    },
    /// List an app's custom domains.
    Domains {
        #[command(flatten)]
        app: AppArg,
    },
    /// Route a custom domain to an app.
    #[command(name = "domains:add")]
    DomainsAdd {
        #[command(flatten)]
        app: AppArg,
        domain: String,
    },
    /// Stop routing a custom domain to an app.
    #[command(name = "domains:remove")]
    DomainsRemove {
        #[command(flatten)]
        app: AppArg,
        domain: String,
    },
    /// Remove every custom domain of the app.
    #[command(name = "domains:clear")]
    DomainsClear {
        #[command(flatten)]
        app: AppArg,
    },
    /// Show an app's TLS certificates: names, issuer, expiry, and the last error obtaining one.
    Certs {
        #[command(flatten)]
        app: AppArg,
    },
    /// Obtain and renew certificates for the app's names over ACME (Let's Encrypt by default):
    /// `<app>.<base domain>` and its custom domains, which must point at your frontends.
    #[command(name = "certs:auto")]
    CertsAuto {
        #[command(flatten)]
        app: AppArg,
        /// Stop obtaining them (those it has are served until they expire).
        #[arg(long)]
        off: bool,
    },
    /// Serve a certificate of your own for the app's names: PEM chain and key files.
    #[command(name = "certs:add")]
    CertsAdd {
        #[command(flatten)]
        app: AppArg,
        #[arg(value_name = "CERT_PEM")]
        cert: String,
        #[arg(value_name = "KEY_PEM")]
        key: String,
    },
    /// Stop serving a certificate (by the first digits of its hash, as `certs` shows it).
    #[command(name = "certs:remove")]
    CertsRemove {
        #[command(flatten)]
        app: AppArg,
        #[arg(value_name = "SHA256")]
        sha: String,
    },
    /// List nodes: state, capacity, instances.
    Nodes,
    /// Print a token that lets one new worker or frontend join, once, before it expires.
    #[command(name = "nodes:join-token")]
    NodesJoinToken {
        /// How long it works: seconds, or with a unit (90s, 10m, 1h, 2d; at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Move every instance off a node and place nothing new on it.
    #[command(name = "nodes:drain")]
    NodesDrain {
        node: String,
        /// Move its add-ons too: each by backup and restore, its apps in maintenance meanwhile.
        #[arg(long)]
        move_addons: bool,
    },
    /// Let a drained node take instances again.
    #[command(name = "nodes:undrain")]
    NodesUndrain { node: String },
    /// Forget a node that is gone (dead): its token and bus key stop working, its instances are
    /// placed elsewhere.
    #[command(name = "nodes:remove")]
    NodesRemove { node: String },
}

impl Command {
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Up { .. }
                | Command::Master { .. }
                | Command::Worker { .. }
                | Command::Frontend { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn api_flags_go_before_or_after_the_command() {
        for args in [
            &["zeroku", "--url", "http://m:1", "--json", "apps"][..],
            &["zeroku", "apps", "--url", "http://m:1", "--json"][..],
        ] {
            let cli = Cli::try_parse_from(args).expect("parses");
            assert_eq!(cli.api.url.as_deref(), Some("http://m:1"));
            assert!(cli.api.json);
        }
    }
}
