//! Backups of add-ons: taken from the add-on's server over the network by the kind's tool into
//! `<data>/backups/<sha256>` (0600, one file per distinct backup), checked and restored from
//! there. It must not hold a backup in memory: dumps stream from the tool's stdout through a
//! hasher into a file.

use crate::addons::{host, kind_of, service};
use crate::cluster::Cluster;
use crate::store::{Addon, Backup, StoreError};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `<data>/backups`, 0700.
pub fn backups_dir(data: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = data.join("backups");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    Ok(dir)
}

/// The file of a backup that succeeded.
pub fn backup_path(data: &Path, b: &Backup) -> Option<PathBuf> {
    (b.state == "ok" && b.sha256.len() == 64 && b.sha256.bytes().all(|c| c.is_ascii_hexdigit()))
        .then(|| data.join("backups").join(&b.sha256))
}

/// Runs the kind's backup tool against the add-on and streams its output into the backup
/// store: `(sha256, size)`, or why it failed (the tool's own words). An empty dump, or one
/// that is not of the add-on's kind, is a failure.
pub async fn capture(data: &Path, a: &Addon, host: &str) -> Result<(String, u64), String> {
    let kind = kind_of(a)?;
    let tool = kind.backup(&service(a), host).map_err(|e| e.to_string())?;
    let dir = backups_dir(data).map_err(|e| format!("cannot create the backup store: {e}"))?;
    let tmp = dir.join(format!(".capture-{}-{}", a.name, std::process::id()));
    let out = run_into(&tool, &tmp).await;
    let (sha, size, head) = match out {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if size == 0 || !kind.is_backup(&head) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "the backup tool wrote {size} bytes that are not a {} backup",
            kind.name()
        ));
    }
    let dest = dir.join(&sha);
    std::fs::rename(&tmp, &dest).map_err(|e| format!("cannot store the backup: {e}"))?;
    Ok((sha, size))
}

/// Runs `tool`, its stdout into `path` (0600) through a sha256: (sha256, size, first bytes).
async fn run_into(
    tool: &zeroku_services::Tool,
    path: &Path,
) -> Result<(String, u64, Vec<u8>), String> {
    let mut child = command(tool, Stdio::null())?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let errors = tokio::spawn(async move {
        let mut s = String::new();
        let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut s).await;
        s
    });
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = stdout
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the backup: {e}"))?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if head.len() < 16 {
            head.extend_from_slice(&chunk[..chunk.len().min(16 - head.len())]);
        }
        hasher.update(chunk);
        size += n as u64;
        file.write_all(chunk)
            .await
            .map_err(|e| format!("writing the backup: {e}"))?;
    }
    file.sync_all()
        .await
        .map_err(|e| format!("writing the backup: {e}"))?;
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for {}: {e}", tool.program))?;
    let errors = errors.await.unwrap_or_default();
    if !status.success() {
        return Err(tool_failed(tool, status, &errors));
    }
    let sha = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((sha, size, head))
}

/// `tool` started with its secrets in its environment, `stdin` as given, its output piped; it
/// dies with its handle.
fn command(tool: &zeroku_services::Tool, stdin: Stdio) -> Result<tokio::process::Child, String> {
    tokio::process::Command::new(&tool.program)
        .args(&tool.args)
        .envs(tool.env.iter().map(|(k, v)| (k, v)))
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", tool.program))
}

fn tool_failed(
    tool: &zeroku_services::Tool,
    status: std::process::ExitStatus,
    errors: &str,
) -> String {
    let name = tool.program.rsplit('/').next().unwrap_or(&tool.program);
    let said = errors.trim();
    if said.is_empty() {
        format!("{name} failed ({status})")
    } else {
        format!("{name} failed ({status}): {said}")
    }
}

/// Checks that backup `b`'s file is whole (its sha256) and of `a`'s kind.
pub fn verify(data: &Path, a: &Addon, b: &Backup) -> Result<PathBuf, String> {
    let kind = kind_of(a)?;
    if b.kind != a.kind {
        return Err(format!(
            "{} is a {} backup; {} is a {} add-on",
            b.id(),
            b.kind,
            a.name,
            a.kind
        ));
    }
    let path = backup_path(data, b)
        .ok_or_else(|| format!("{} did not succeed: it cannot be restored", b.id()))?;
    let mut f = std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", b.id()))?;
    let mut hasher = Sha256::new();
    let mut head = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        use std::io::Read;
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", b.id()))?;
        if n == 0 {
            break;
        }
        if head.is_empty() {
            head.extend_from_slice(&buf[..n.min(16)]);
        }
        hasher.update(&buf[..n]);
    }
    let sha: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if sha != b.sha256 || !kind.is_backup(&head) {
        return Err(format!(
            "{}'s file is damaged (sha256 {sha}, recorded {}): not restored, nothing changed",
            b.id(),
            b.sha256
        ));
    }
    Ok(path)
}

/// Restores the verified backup file at `path` into `a`.
pub async fn restore(a: &Addon, host: &str, path: &Path, api: &str) -> Result<(), String> {
    let kind = kind_of(a)?;
    let path = path.to_str().ok_or("the backup's path is not UTF-8")?;
    // Where the add-on's node can reach this host: the API's address, or the node's own
    // address when the API listens on every address.
    let serve_host = match api.parse::<std::net::SocketAddr>() {
        Ok(sa) if !sa.ip().is_unspecified() => sa.ip().to_string(),
        _ => host.to_string(),
    };
    let serve_port = std::net::TcpListener::bind((serve_host.as_str(), 0))
        .and_then(|l| l.local_addr())
        .map(|sa| sa.port())
        .map_err(|e| format!("no free port on {serve_host} to restore from: {e}"))?;
    let tool = kind
        .restore(&service(a), host, path, (&serve_host, serve_port))
        .map_err(|e| e.to_string())?;
    run_with_input(&tool, "").await.map(drop)
}

/// Runs `tool` with `input` on its standard input: what it printed (stdout and stderr), or
/// why it failed.
pub async fn run_with_input(tool: &zeroku_services::Tool, input: &str) -> Result<String, String> {
    let mut child = command(tool, Stdio::piped())?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| format!("writing to {}: {e}", tool.program))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for {}: {e}", tool.program))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(tool_failed(tool, out.status, &said));
    }
    Ok(said)
}

/// Starts a backup of `a` (for `app`'s log) that runs on in a task of its own; a scheduled one
/// prunes the add-on's scheduled backups by its retention rule once it succeeded.
pub fn start_capture(
    cluster: &Arc<Cluster>,
    a: Addon,
    app: &str,
    scheduled: bool,
) -> Result<Backup, StoreError> {
    let b = cluster.store().start_backup(&a.name, &a.kind, scheduled)?;
    let host = host(&cluster.store(), &a)?;
    let (cluster, n, app) = (cluster.clone(), b.n, app.to_string());
    tokio::spawn(async move {
        let out = capture(&cluster.data, &a, &host).await;
        let line = match &out {
            Ok((sha, size)) => {
                format!(
                    "Backup b{n:03} of {} captured: {size} bytes, sha256 {sha}",
                    a.name
                )
            }
            Err(e) => format!("Backup b{n:03} of {} failed: {e}", a.name),
        };
        let outcome = out
            .as_ref()
            .map(|(s, z)| (s.as_str(), *z))
            .map_err(String::as_str);
        if let Err(e) = cluster.store().finish_backup(&a.name, n, outcome) {
            tracing::error!(addon = %a.name, error = %e, "cannot record a backup's end");
        }
        cluster.system_log(&app, &a.name, line);
        if scheduled && out.is_ok() {
            if let Err(e) = crate::schedule::prune(&cluster, &a.name) {
                tracing::error!(addon = %a.name, error = %e, "cannot prune backups");
            }
        }
    });
    Ok(b)
}

/// Deletes the backup files `shas` that no backup row holds any more.
pub fn remove_files(cluster: &Cluster, shas: &[String]) -> Result<(), StoreError> {
    let dir = cluster.data.join("backups");
    for sha in shas {
        if !cluster.store().backup_file_used(sha)? {
            let _ = std::fs::remove_file(dir.join(sha));
        }
    }
    Ok(())
}

/// Waits until `a`'s server is up on its node (its heartbeat says so), two minutes at most.
pub async fn wait_up(cluster: &Cluster, a: &Addon) -> Result<(), String> {
    let id = crate::addons::instance_id(a);
    let start = std::time::Instant::now();
    loop {
        let up = cluster
            .live()
            .get(&a.node)
            .and_then(|l| l.heartbeat.as_ref())
            .is_some_and(|h| {
                h.instances
                    .iter()
                    .any(|i| i.id == id && i.state == zeroku_conf::InstanceState::Up)
            });
        if up {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            return Err(format!(
                "{}'s server on {} was not up within 120 s",
                a.name, a.node
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
