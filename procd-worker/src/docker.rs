//! The Docker runtime: an instance as a container of the machine's Docker
//! Engine (through bollard), from the app's stack image, with the slug
//! mounted read-only at `/app`.
//!
//! Each container runs as the app's uid with its memory and pids limits,
//! no new privileges, every capability dropped, a read-only root file
//! system and a private `/tmp`, on the app's own network (`zeroku-<app>`);
//! a `web` container publishes `$PORT` on the node. Containers carry labels
//! (`zeroku.node`, `.app`, `.instance`, `.release`, `.start-id`), so a
//! restarted worker adopts its own by listing them and never touches
//! containers it did not create. Output is copied from the Docker API into
//! the instance's log file, where the agent tails it like a native one.
//!
//! The supervisor is synchronous; bollard is async. One thread owns a small
//! tokio runtime and the connection: calls go to it over a channel, and a
//! task there refreshes every container's state twice a second, so `poll`
//! never waits for the engine.

use crate::runtime::{
    Adopted, Exit, ProcRecord, Runtime, RuntimeError, StartRequest, StopSignal, Terminal,
};
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, EventsOptions, InspectContainerOptions, KillContainerOptions,
    ListContainersOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
};
use bollard::Docker;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the engine last said about a container.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Running,
    Exited(Exit),
}

type States = Arc<Mutex<HashMap<String, State>>>;
type Job = Box<
    dyn FnOnce(Docker) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send,
>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct DockerRuntime {
    /// This node of this cluster: the only containers it lists, adopts or stops.
    owner: Owner,
    data: PathBuf,
    /// Image names the engine has (refreshed with the states).
    images: Arc<Mutex<Vec<String>>>,
    /// Stacks being fetched from the master.
    fetching: Arc<Mutex<std::collections::HashSet<String>>>,
    logs: PathBuf,
    uid_base: u32,
    as_root: bool,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    states: States,
    /// TTY containers started since the agent last took them.
    terminals: Mutex<Vec<(ProcRecord, Terminal)>>,
    /// `Docker Engine <version>`, for `zeroku nodes`.
    pub version: String,
}

const LABEL_NODE: &str = "zeroku.node";
/// The cluster a container belongs to: two clusters on one engine whose workers share a node
/// name (`zeroku up`'s default `local`, say) never touch each other's containers.
const LABEL_CLUSTER: &str = "zeroku.cluster";

impl DockerRuntime {
    /// Connects to the local engine (`DOCKER_HOST` or the default socket);
    /// `Err` says why there is none.
    pub fn connect(
        node: &str,
        cluster: &str,
        data: &Path,
        uid_base: u32,
    ) -> Result<DockerRuntime, String> {
        let logs = data.join("logs");
        std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(Docker, String), String>>();
        let (jobs, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        let states: States = Arc::default();
        let images: Arc<Mutex<Vec<String>>> = Arc::default();
        let (st, im) = (states.clone(), images.clone());
        let owner = Owner {
            node: node.to_string(),
            cluster: cluster.to_string(),
        };
        let owner_s = owner.clone();
        std::thread::Builder::new()
            .name("docker".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let docker = match connect().await {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let version = docker
                        .version()
                        .await
                        .ok()
                        .and_then(|v| v.version)
                        .unwrap_or_default();
                    let _ = ready_tx.send(Ok((docker.clone(), version)));
                    tokio::spawn(refresh(docker.clone(), owner_s, st, im));
                    while let Some(job) = rx.recv().await {
                        tokio::spawn(job(docker.clone()));
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let (_, version) = ready_rx
            .recv()
            .map_err(|_| "the docker thread stopped".to_string())??;
        Ok(DockerRuntime {
            owner,
            data: data.to_path_buf(),
            images,
            fetching: Arc::default(),
            logs,
            uid_base,
            as_root: is_root(),
            jobs,
            states,
            terminals: Mutex::default(),
            version: format!("Docker Engine {version}"),
        })
    }

    /// Runs `f` on the docker thread and waits for its answer.
    fn call<T: Send + 'static, F>(
        &self,
        f: impl FnOnce(Docker) -> F + Send + 'static,
    ) -> Result<T, String>
    where
        F: std::future::Future<Output = Result<T, String>> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Box::new(move |d| {
            Box::pin(async move {
                let _ = tx.send(f(d).await);
            })
        });
        self.jobs
            .send(job)
            .map_err(|_| "the docker thread stopped".to_string())?;
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|_| "the Docker Engine did not answer within 60 s".to_string())?
    }

    /// The stacks (image names) the engine has, as last seen.
    pub fn stacks(&self) -> Vec<String> {
        lock(&self.images).clone()
    }

    /// Starts fetching `stack` from the master and importing it, unless
    /// that is under way; returns at once.
    pub fn fetch_stack(&self, master: &str, token: &str, stack: &str) {
        if !lock(&self.fetching).insert(stack.to_string()) {
            return;
        }
        let (master, token, stack) = (master.to_string(), token.to_string(), stack.to_string());
        let (fetching, images, dir) = (
            self.fetching.clone(),
            self.images.clone(),
            self.data.join("stacks"),
        );
        let _ = self.jobs.send(Box::new(move |d| {
            Box::pin(async move {
                let r = fetch_and_import(&d, &master, &token, &stack, &dir).await;
                match r {
                    Ok(()) => {
                        tracing::info!(stack = %stack, "stack imported");
                        lock(&images).push(stack.clone());
                    }
                    Err(e) => tracing::warn!(stack = %stack, error = %e, "cannot fetch the stack"),
                }
                lock(&fetching).remove(&stack);
            })
        }));
    }

    /// Whether the engine has the image `stack`.
    pub fn has_stack(&self, stack: &str) -> bool {
        let s = stack.to_string();
        self.call(move |d| async move { Ok(d.inspect_image(&s).await.is_ok()) })
            .unwrap_or(false)
    }

    /// Imports a root file system tarball as the image `stack` (what
    /// `docker import` does; the engine has no registry to pull from).
    pub fn import_stack(&self, stack: &str, tarball: &Path) -> Result<(), String> {
        let bytes = std::fs::read(tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
        let s = stack.to_string();
        self.call(move |d| async move {
            let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
                .from_src("-")
                .repo(&s)
                .tag("latest")
                .build();
            let mut st = d.create_image(Some(opts), Some(bollard::body_full(bytes.into())), None);
            while let Some(r) = st.next().await {
                r.map_err(|e| format!("importing stack {s}: {e}"))?;
            }
            Ok(())
        })
    }
}

async fn fetch_and_import(
    d: &Docker,
    master: &str,
    token: &str,
    stack: &str,
    dir: &Path,
) -> Result<(), String> {
    // `<name>:<version>` (the master's current version when it placed the
    // instance) or a bare `<name>`: the tarball is the stack's, the tag the
    // version asked for.
    let (stack, tag) = stack.split_once(':').unwrap_or((stack, "latest"));
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!("{stack}.tar.part"));
    let client = zeroku_client::Client::new(master, token).map_err(|e| e.to_string())?;
    client
        .download(&format!("/v1/stacks/{stack}"), &tmp)
        .await
        .map_err(|e| e.to_string())?;
    let file = tokio::fs::File::open(&tmp)
        .await
        .map_err(|e| e.to_string())?;
    let body = tokio_util::io::ReaderStream::new(file).filter_map(|r| async move { r.ok() });
    let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(stack)
        .tag(tag)
        .build();
    let mut st = d.create_image(Some(opts), Some(bollard::body_stream(body)), None);
    let mut result = Ok(());
    while let Some(r) = st.next().await {
        if let Err(e) = r {
            result = Err(format!("importing stack {stack}: {e}"));
        }
    }
    let _ = std::fs::remove_file(&tmp);
    result
}

async fn connect() -> Result<Docker, String> {
    let d = Docker::connect_with_local_defaults().map_err(|e| format!("no Docker Engine: {e}"))?;
    let d = d
        .negotiate_version()
        .await
        .map_err(|e| format!("no Docker Engine answers: {e}"))?;
    d.ping()
        .await
        .map_err(|e| format!("the Docker Engine does not answer: {e}"))?;
    Ok(d)
}

/// Whose containers these are: this node of this cluster.
#[derive(Clone)]
struct Owner {
    node: String,
    cluster: String,
}

impl Owner {
    /// A filter for this owner's containers (both labels must match).
    fn filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![
                format!("{LABEL_NODE}={}", self.node),
                format!("{LABEL_CLUSTER}={}", self.cluster),
            ],
        )])
    }

    fn labels(&self) -> [(String, String); 2] {
        [
            (LABEL_NODE.to_string(), self.node.clone()),
            (LABEL_CLUSTER.to_string(), self.cluster.clone()),
        ]
    }
}

/// How often the container and image lists are read again even without an event (an event
/// stream cut off unnoticed, an image loaded by hand).
const RESYNC: Duration = Duration::from_secs(30);

/// Keeps `states` in step with the engine (every container of this node), and `images` (the
/// image names it has): a full read, then again whenever the engine reports an event of one
/// of this node's containers, and every [`RESYNC`]. Nothing is asked of the engine at rest.
async fn refresh(docker: Docker, owner: Owner, states: States, images: Arc<Mutex<Vec<String>>>) {
    loop {
        // Events from a little before the read on, so none falls between the two (a remote
        // engine's clock may be a few seconds off ours; a replayed event costs one more read).
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs().saturating_sub(5));
        sync_images(&docker, &images).await;
        sync_containers(&docker, &owner, &states).await;
        let mut filters = owner.filter();
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            ["start", "die", "destroy", "oom"]
                .map(String::from)
                .to_vec(),
        );
        let mut events = docker.events(Some(EventsOptions {
            since: Some(since.to_string()),
            filters: Some(filters),
            ..Default::default()
        }));
        let resync = tokio::time::sleep(RESYNC);
        tokio::pin!(resync);
        loop {
            tokio::select! {
                _ = &mut resync => break,
                e = events.next() => match e {
                    Some(Ok(ev)) => {
                        // The engine tells of a death before its container list does: the
                        // event's own exit code is the one to keep.
                        if ev.action.as_deref() == Some("die") {
                            if let Some((id, code)) = died(&ev) {
                                let exit = exit_from(code, oom_killed(&docker, &id).await);
                                lock(&states).insert(id, State::Exited(exit));
                            }
                        }
                        sync_containers(&docker, &owner, &states).await
                    }
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "docker events; reading the lists again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                    None => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        break;
                    }
                },
            }
        }
    }
}

async fn sync_images(docker: &Docker, images: &Mutex<Vec<String>>) {
    if let Ok(list) = docker
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
    {
        // As instances name them: `<stack>:<version>`, and a bare
        // `<stack>` for `latest`.
        let names: Vec<String> = list
            .iter()
            .flat_map(|i| i.repo_tags.iter())
            .filter(|t| t.as_str() != "<none>:<none>")
            .map(|t| t.strip_suffix(":latest").unwrap_or(t).to_string())
            .collect();
        *lock(images) = names;
    }
}

/// Reads this node's containers and records which run and which have exited (and how).
async fn sync_containers(docker: &Docker, owner: &Owner, states: &States) {
    let opts = ListContainersOptions {
        all: true,
        filters: Some(owner.filter()),
        ..Default::default()
    };
    if let Ok(list) = docker.list_containers(Some(opts)).await {
        for c in list {
            let Some(id) = c.id else { continue };
            // Only a container that has run and stopped is exited; one
            // being created or started counts as running.
            let state = c.state.map(|s| s.to_string()).unwrap_or_default();
            let ended = matches!(state.as_str(), "exited" | "dead");
            if matches!(lock(states).get(&id), Some(State::Exited(_))) {
                // Our containers never start again (no restart policy): an exit is final,
                // whatever a list that lags behind the engine's events says.
                continue;
            }
            if !ended {
                lock(states).insert(id, State::Running);
            } else {
                let exit = exit_of(docker, &id).await;
                lock(states).insert(id, State::Exited(exit));
            }
        }
    }
}

async fn exit_of(docker: &Docker, id: &str) -> Exit {
    match docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
    {
        Ok(i) => {
            let st = i.state.unwrap_or_default();
            exit_from(st.exit_code, st.oom_killed == Some(true))
        }
        Err(_) => Exit::Unknown,
    }
}

/// How a container ended, from its exit code (a shell's: 128 + N for signal N) and whether the
/// kernel's OOM killer ended it.
fn exit_from(code: Option<i64>, oom: bool) -> Exit {
    if oom {
        return Exit::Signal(9);
    }
    match code {
        Some(c) if c > 128 => Exit::Signal((c - 128) as i32),
        Some(c) => Exit::Code(c as i32),
        None => Exit::Unknown,
    }
}

/// The container and exit code of a `die` event.
fn died(ev: &bollard::models::EventMessage) -> Option<(String, Option<i64>)> {
    let actor = ev.actor.as_ref()?;
    let code = actor
        .attributes
        .as_ref()
        .and_then(|a| a.get("exitCode"))
        .and_then(|c| c.parse().ok());
    Some((actor.id.clone()?, code))
}

async fn oom_killed(docker: &Docker, id: &str) -> bool {
    docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|i| i.state)
        .and_then(|s| s.oom_killed)
        .unwrap_or(false)
}

/// The directories of the `ipc://` handler endpoints in `M2_SEND_SPEC` and
/// `M2_RECV_SPEC`, bind-mounted into a handler's container at the same
/// paths: it reaches its frontends (or this node's relays) through them, as
/// a native handler does; each directory belongs to the app's uid alone.
fn ipc_binds(env: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut dirs: Vec<String> = ["M2_SEND_SPEC", "M2_RECV_SPEC"]
        .iter()
        .filter_map(|k| env.get(*k))
        .flat_map(|v| v.split_whitespace())
        .filter_map(|ep| ep.strip_prefix("ipc://"))
        .filter_map(|p| std::path::Path::new(p).parent())
        .map(|d| d.display().to_string())
        .collect();
    dirs.sort();
    dirs.dedup();
    let mut binds: Vec<String> = dirs.into_iter().map(|d| format!("{d}:{d}")).collect();
    // The files of its requirements, where the host has them, read-only.
    if let Some(d) = env.get(crate::require::DIR_VAR) {
        binds.push(format!("{d}:{d}:ro"));
    }
    binds
}

/// Removes a terminal's container that could not be started or used; it
/// ends as far as the supervisor is concerned.
async fn remove(d: &Docker, id: &str, states: &States) {
    let opts = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    let _ = d.remove_container(id, Some(opts)).await;
    lock(states).insert(id.to_string(), State::Exited(Exit::Unknown));
}

async fn resize(d: &Docker, id: &str, cols: u16, rows: u16) {
    let opts = bollard::query_parameters::ResizeContainerTTYOptions {
        w: i32::from(cols),
        h: i32::from(rows),
    };
    if let Err(e) = d.resize_container_tty(id, opts).await {
        tracing::debug!(container = id, error = %e, "cannot resize the terminal");
    }
}

impl DockerRuntime {
    /// Relays a TTY container's terminal to the master, on the docker
    /// thread: attaches (with what it printed so far), then moves bytes
    /// until it ends or the client hangs up (which closes its stdin).
    pub fn relay_terminal(
        &self,
        client: zeroku_client::Client,
        node: String,
        instance: String,
        id: String,
        (cols, rows): (u16, u16),
    ) {
        let states = self.states.clone();
        let _ = self.jobs.send(Box::new(move |d| {
            Box::pin(async move {
                let Some(ws) = crate::terminal::connect(&client, &node, &instance).await else {
                    // Nobody to run it for: it never starts.
                    remove(&d, &id, &states).await;
                    return;
                };
                let opts = bollard::query_parameters::AttachContainerOptions {
                    stdin: true,
                    stdout: true,
                    stderr: true,
                    stream: true,
                    logs: true,
                    ..Default::default()
                };
                let attached = match d.attach_container(&id, Some(opts)).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(instance, error = %e, "cannot attach to the container");
                        remove(&d, &id, &states).await;
                        return;
                    }
                };
                if let Err(e) = d.start_container(&id, None::<StartContainerOptions>).await {
                    tracing::warn!(instance, error = %e, "cannot start the container");
                    remove(&d, &id, &states).await;
                    return;
                }
                let output = attached
                    .output
                    .take_while(|r| std::future::ready(r.is_ok()))
                    .filter_map(|r| std::future::ready(r.ok().map(|o| o.into_bytes())));
                // The terminal gets its size once started, as with `docker
                // run -it`: the change from 0x0 makes a shell draw its prompt.
                resize(&d, &id, cols, rows).await;
                let dr = d.clone();
                crate::terminal::relay(
                    &instance,
                    ws,
                    Box::pin(output),
                    attached.input,
                    move |c, r| {
                        let (dr, id) = (dr.clone(), id.clone());
                        async move { resize(&dr, &id, c, r).await }
                    },
                )
                .await;
            })
        }));
    }
}

/// Copies a container's output into its log file from `since` (unix s).
async fn follow_logs(docker: Docker, id: String, path: PathBuf, since: i32) {
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        since,
        ..Default::default()
    };
    let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return;
    };
    let mut st = docker.logs(&id, Some(opts));
    while let Some(Ok(chunk)) = st.next().await {
        let _ = file.write_all(&chunk.into_bytes());
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Runtime for DockerRuntime {
    fn start(&self, req: &StartRequest<'_>) -> Result<ProcRecord, RuntimeError> {
        let spec = req.spec;
        let err = |why: String| RuntimeError::Start {
            instance: spec.id.clone(),
            why,
        };
        let stack = spec
            .stack
            .clone()
            .ok_or_else(|| err("the instance names no stack".into()))?;
        let start_id = format!("{:x}{:x}", now(), rand_u32());
        let name = format!("zk-{}-v{}-{}", spec.id, spec.release, &start_id);
        let log_path = self.logs.join(format!("{}.v{}.log", spec.id, spec.release));
        let uid = self.uid_base + spec.app_seq;
        let mut env: Vec<String> = req
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", in_container(k, v)))
            .collect();
        for (k, v) in [("HOME", "/app"), ("TMPDIR", "/tmp")] {
            if !req.env.contains_key(k) {
                env.push(format!("{k}={v}"));
            }
        }
        env.push(format!("ZEROKU_START_ID={start_id}"));
        let tty = spec.tty.clone();
        if let Some(t) = &tty {
            env.push(format!("TERM={}", t.term));
        }
        let mut labels = HashMap::from([
            ("zeroku.app".to_string(), spec.app.clone()),
            ("zeroku.instance".to_string(), spec.id.clone()),
            ("zeroku.release".to_string(), spec.release.to_string()),
            ("zeroku.port".to_string(), req.port.to_string()),
            ("zeroku.start-id".to_string(), start_id.clone()),
        ]);
        labels.extend(self.owner.labels());
        let port_key = format!("{}/tcp", req.port);
        let web = spec.proc_type == "web";
        let network = format!("zeroku-{}", spec.app);
        let mem = (spec.limits.memory_mb > 0).then_some((spec.limits.memory_mb as i64) << 20);
        let host = HostConfig {
            binds: Some(
                [format!("{}:/app:ro", req.slug_dir.display())]
                    .into_iter()
                    .chain(ipc_binds(&req.env))
                    .collect(),
            ),
            memory: mem,
            memory_swap: mem,
            nano_cpus: (spec.limits.cpu_millis > 0)
                .then(|| i64::from(spec.limits.cpu_millis) * 1_000_000),
            pids_limit: Some(if spec.limits.pids > 0 {
                i64::from(spec.limits.pids)
            } else {
                512
            }),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([(
                "/tmp".to_string(),
                "rw,nosuid,size=256m".to_string(),
            )])),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            network_mode: Some(network.clone()),
            // The node itself, as its add-ons' URLs say it from inside a container.
            extra_hosts: Some(vec![format!("{NODE_HOST}:host-gateway")]),
            init: Some(true),
            port_bindings: web.then(|| {
                HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some(req.port.to_string()),
                    }]),
                )])
            }),
            ..Default::default()
        };
        let script = crate::native::script(&spec.command);
        let body = ContainerCreateBody {
            image: Some(stack.clone()),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), script]),
            env: Some(env),
            working_dir: Some("/app".into()),
            user: self.as_root.then(|| format!("{uid}:{uid}")),
            labels: Some(labels),
            exposed_ports: web.then(|| HashMap::from([(port_key.clone(), HashMap::new())])),
            host_config: Some(host),
            // An interactive one-off: a terminal, and stdin until the
            // relay detaches.
            tty: Some(tty.is_some()),
            open_stdin: Some(tty.is_some()),
            stdin_once: Some(tty.is_some()),
            attach_stdin: Some(tty.is_some()),
            attach_stdout: Some(tty.is_some()),
            attach_stderr: Some(tty.is_some()),
            ..Default::default()
        };
        let (owner, app) = (self.owner.clone(), spec.app.clone());
        let cname = name.clone();
        let interactive = tty.is_some();
        let id = self
            .call(move |d| async move {
                if d.inspect_image(&stack).await.is_err() {
                    return Err(format!(
                        "stack {stack:?} is not on this node (zeroku stacks:import)"
                    ));
                }
                let req = NetworkCreateRequest {
                    name: network.clone(),
                    labels: Some(
                        owner
                            .labels()
                            .into_iter()
                            .chain([("zeroku.app".to_string(), app)])
                            .collect(),
                    ),
                    ..Default::default()
                };
                let inspect = || {
                    d.inspect_network(
                        &network,
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    )
                };
                let net = match inspect().await {
                    Ok(n) => Some(n),
                    Err(_) => {
                        let _ = d.create_network(req).await;
                        inspect().await.ok()
                    }
                };
                if net.is_none() {
                    tracing::warn!(%network, "cannot create the app's network");
                }
                let opts = CreateContainerOptions {
                    name: Some(cname),
                    ..Default::default()
                };
                let c = d
                    .create_container(Some(opts), body)
                    .await
                    .map_err(|e| format!("creating the container: {e}"))?;
                // A terminal's container starts once its relay is attached
                // (like `docker run -it`), so no output is missed.
                if !interactive {
                    d.start_container(&c.id, None::<StartContainerOptions>)
                        .await
                        .map_err(|e| format!("starting the container: {e}"))?;
                }
                Ok(c.id)
            })
            .map_err(err)?;
        // (A `die` handled first, for a container that ended at once, stays.)
        lock(&self.states)
            .entry(id.clone())
            .or_insert(State::Running);
        if tty.is_none() {
            // (A terminal's output goes to the terminal, not the log.)
            let (lp, cid) = (log_path.clone(), id.clone());
            let since = now() as i32;
            let _ = self
                .jobs
                .send(Box::new(move |d| Box::pin(follow_logs(d, cid, lp, since))));
        }
        let rec = ProcRecord {
            instance: spec.id.clone(),
            app: spec.app.clone(),
            release: spec.release,
            pid: 0,
            start_ticks: 0,
            port: req.port,
            started_at: now(),
            log_path,
            start_id,
            container: Some(id.clone()),
        };
        if let Some(t) = &tty {
            let (cols, rows) = (t.cols, t.rows);
            lock(&self.terminals).push((rec.clone(), Terminal::Container { id, cols, rows }));
        }
        Ok(rec)
    }

    fn take_terminals(&self) -> Vec<(ProcRecord, Terminal)> {
        std::mem::take(&mut *lock(&self.terminals))
    }

    fn poll(&self, rec: &ProcRecord) -> Option<Exit> {
        let id = rec.container.as_deref()?;
        match lock(&self.states).get(id) {
            Some(State::Exited(e)) => Some(e.clone()),
            Some(State::Running) => None,
            None => Some(Exit::Unknown),
        }
    }

    fn signal(&self, rec: &ProcRecord, sig: StopSignal) -> Result<(), RuntimeError> {
        let Some(id) = rec.container.clone() else {
            return Ok(());
        };
        let signal = match sig {
            StopSignal::Term => "SIGTERM",
            StopSignal::Kill => "SIGKILL",
        };
        let _ = self.jobs.send(Box::new(move |d| {
            Box::pin(async move {
                let _ = d
                    .kill_container(
                        &id,
                        Some(KillContainerOptions {
                            signal: signal.into(),
                        }),
                    )
                    .await;
            })
        }));
        Ok(())
    }

    fn notify(&self, rec: &ProcRecord, sig: &str, _leader_only: bool) -> Result<(), RuntimeError> {
        // To the container's init, which passes it on to the app.
        let Some(id) = rec.container.clone() else {
            return Ok(());
        };
        let signal = format!("SIG{sig}");
        let _ = self.jobs.send(Box::new(move |d| {
            Box::pin(async move {
                let _ = d
                    .kill_container(&id, Some(KillContainerOptions { signal }))
                    .await;
            })
        }));
        Ok(())
    }

    fn hook(
        &self,
        rec: &ProcRecord,
        req: &StartRequest<'_>,
        command: &str,
    ) -> Result<(), RuntimeError> {
        let Some(id) = rec.container.clone() else {
            return Ok(());
        };
        let env: Vec<String> = req
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", in_container(k, v)))
            .collect();
        let cmd = vec![
            "/bin/sh".to_string(),
            "-c".to_string(),
            crate::native::script(command),
        ];
        let instance = rec.instance.clone();
        // Runs as the container's user, in its directory; detached (its output is not kept).
        let _ = self.jobs.send(Box::new(move |d| {
            Box::pin(async move {
                let opts = bollard::exec::CreateExecOptions {
                    cmd: Some(cmd),
                    env: Some(env),
                    working_dir: Some("/app".to_string()),
                    ..Default::default()
                };
                let started = match d.create_exec(&id, opts).await {
                    Ok(e) => {
                        let o = bollard::exec::StartExecOptions {
                            detach: true,
                            tty: false,
                            output_capacity: None,
                        };
                        d.start_exec(&e.id, Some(o)).await.map(|_| ())
                    }
                    Err(e) => Err(e),
                };
                if let Err(e) = started {
                    tracing::warn!(instance.id = %instance, error = %e, "on_change hook did not start");
                }
            })
        }));
        Ok(())
    }

    fn kill_leftovers(&self, _rec: &ProcRecord) {}

    fn adopt(&self) -> Adopted {
        let owner = self.owner.clone();
        let found = self
            .call(move |d| async move {
                let opts = ListContainersOptions {
                    all: true,
                    filters: Some(owner.filter()),
                    ..Default::default()
                };
                let list = d
                    .list_containers(Some(opts))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for c in list {
                    let (Some(id), Some(l)) = (c.id, c.labels) else {
                        continue;
                    };
                    let state = c.state.map(|s| s.to_string()).unwrap_or_default();
                    let running = !matches!(state.as_str(), "exited" | "dead");
                    out.push((id, l, running));
                }
                Ok(out)
            })
            .unwrap_or_default();
        let mut adopted = Adopted::default();
        for (id, l, running) in found {
            let get = |k: &str| l.get(k).cloned().unwrap_or_default();
            let (instance, release) = (
                get("zeroku.instance"),
                get("zeroku.release").parse().unwrap_or(0),
            );
            let rec = ProcRecord {
                log_path: self.logs.join(format!("{instance}.v{release}.log")),
                instance,
                app: get("zeroku.app"),
                release,
                pid: 0,
                start_ticks: 0,
                port: get("zeroku.port").parse().unwrap_or(0),
                started_at: 0,
                start_id: get("zeroku.start-id"),
                container: Some(id.clone()),
            };
            if running {
                lock(&self.states)
                    .entry(id.clone())
                    .or_insert(State::Running);
                let since = std::fs::metadata(&rec.log_path)
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i32 + 1);
                let (lp, cid) = (rec.log_path.clone(), id);
                let _ = self
                    .jobs
                    .send(Box::new(move |d| Box::pin(follow_logs(d, cid, lp, since))));
                adopted.running.push(rec);
            } else {
                adopted.exited.push(rec);
            }
        }
        adopted
    }

    fn forget(&self, rec: &ProcRecord) {
        let Some(id) = rec.container.clone() else {
            return;
        };
        lock(&self.states).remove(&id);
        let _ = self.call(move |d| async move {
            let opts = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            d.remove_container(&id, Some(opts))
                .await
                .map_err(|e| e.to_string())
        });
    }

    fn limits_unavailable(&self) -> Option<String> {
        None
    }

    fn accepting(&self, rec: &ProcRecord, health_path: Option<&str>) -> bool {
        crate::runtime::port_accepts(rec.port, health_path)
    }

    fn connected(&self, _rec: &ProcRecord, _endpoints: &[&str]) -> Option<bool> {
        None
    }
}

/// A little randomness for start ids, from the kernel.
fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::ipc_binds;

    #[test]
    fn handler_socket_directories_are_mounted_where_they_are() {
        let env = [
            (
                "M2_SEND_SPEC",
                "ipc:///d/frontend/handlers/chat/send ipc:///d/worker/relay/chat.handler.1.v3/edge2.send",
            ),
            (
                "M2_RECV_SPEC",
                "ipc:///d/frontend/handlers/chat/recv ipc:///d/worker/relay/chat.handler.1.v3/edge2.recv",
            ),
            ("PORT", "5000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            ipc_binds(&env),
            vec![
                "/d/frontend/handlers/chat:/d/frontend/handlers/chat",
                "/d/worker/relay/chat.handler.1.v3:/d/worker/relay/chat.handler.1.v3",
            ]
        );
        assert!(ipc_binds(&Default::default()).is_empty());
    }
}

/// How a container names the node it runs on (the Docker bridge's gateway).
const NODE_HOST: &str = "host.docker.internal";

/// A config var as a container must see it: in a container, 127.0.0.1 is the container, so a
/// URL (`*_URL`, an add-on's) that points at this node's loopback points at [`NODE_HOST`]
/// instead. Add-on servers listen on every address of their node.
fn in_container(key: &str, value: &str) -> String {
    if crate::require::is_addrs_var(key) {
        return value
            .split(',')
            .map(|a| {
                ["127.0.0.1:", "localhost:"]
                    .iter()
                    .find_map(|l| a.strip_prefix(l))
                    .map_or_else(|| a.to_string(), |port| format!("{NODE_HOST}:{port}"))
            })
            .collect::<Vec<_>>()
            .join(",");
    }
    if key.ends_with("_URL") {
        for local in ["@127.0.0.1:", "@localhost:", "@[::1]:"] {
            if value.contains(local) {
                return value.replacen(local, &format!("@{NODE_HOST}:"), 1);
            }
        }
    }
    value.to_string()
}

#[cfg(test)]
mod node_urls {
    use super::in_container;

    #[test]
    fn loopback_urls_point_at_the_node_from_a_container() {
        assert_eq!(
            in_container("DATABASE_URL", "postgres://u:p@127.0.0.1:15400/db"),
            "postgres://u:p@host.docker.internal:15400/db"
        );
        assert_eq!(
            in_container("DATABASE_URL", "postgres://u:p@10.0.0.7:15400/db"),
            "postgres://u:p@10.0.0.7:15400/db"
        );
        assert_eq!(in_container("GREETING", "a@127.0.0.1:1"), "a@127.0.0.1:1");
    }
}
