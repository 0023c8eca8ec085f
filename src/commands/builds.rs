//! `deploy`, `builds:output`, and `hook pre-receive` (what the master's git
//! repositories run on push): everything that sends source to a build.

use super::{client, enc, explain};
use crate::cli::Api;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, ReadBuf};
use zeroku_client::v1::BUILD_RESULT_PREFIX as RESULT_PREFIX;

/// Sends a source archive (a tar, streamed) to the build and prints its
/// output as it comes. Fails when the build or release failed.
async fn build(
    api: &Api,
    app: &str,
    archive: zeroku_client::Body,
    commit: Option<&str>,
) -> Result<u32> {
    let mut path = format!("/v1/apps/{}/builds", enc(app));
    if let Some(c) = commit {
        path.push_str(&format!("?commit={}", enc(c)));
    }
    let mut result: Option<Value> = None;
    let mut stdout = std::io::stdout();
    client(api)?
        .post_lines(&path, archive, |line| {
            if let Some(r) = line.strip_prefix(RESULT_PREFIX) {
                result = serde_json::from_str(r).ok();
            } else {
                let _ = writeln!(stdout, "{line}");
                let _ = stdout.flush();
            }
        })
        .await
        .map_err(explain)?;
    match result {
        Some(r) if r["ok"] == Value::Bool(true) => Ok(r["version"].as_u64().unwrap_or(0) as u32),
        // The reason is the output's last line already.
        Some(_) => bail!("the deploy of {app} failed (see above)"),
        None => bail!("the master ended the build without a result (did it restart?); see `zeroku builds:output -a {app}`"),
    }
}

/// `zeroku deploy -a APP [PATH]`: a directory (archived here, without
/// `.git`) or a .tar/.tar.gz archive, through the same build as a push.
pub async fn deploy(api: &Api, app: &str, path: &Path) -> Result<()> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (archive, temp) = if meta.is_dir() {
        let tmp = std::env::temp_dir().join(format!("zeroku-deploy-{}.tar", std::process::id()));
        let (src, dst) = (path.to_path_buf(), tmp.clone());
        tokio::task::spawn_blocking(move || archive_dir(&src, &dst))
            .await?
            .with_context(|| format!("cannot archive {}", path.display()))?;
        (tmp, true)
    } else {
        (path.to_path_buf(), false)
    };
    let file = tokio::fs::File::open(&archive)
        .await
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let total = file.metadata().await.map_or(0, |m| m.len());
    println!("-----> Uploading {} ({})", mb(total), path.display());
    let body = Progress::new(file, total, std::io::stderr().is_terminal());
    let r = build(api, app, zeroku_client::reader_body(body), None).await;
    if temp {
        let _ = std::fs::remove_file(&archive);
    }
    r.map(|_| ())
}

/// `12.3 MB`.
fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1048576.0)
}

/// The source on its way to the master: counts what is sent, shows it on a
/// terminal twice a second, and says when all of it is sent.
struct Progress<R> {
    inner: R,
    sent: u64,
    total: u64,
    started: Instant,
    shown: Instant,
    tty: bool,
    done: bool,
}

impl<R> Progress<R> {
    fn new(inner: R, total: u64, tty: bool) -> Progress<R> {
        let now = Instant::now();
        Progress {
            inner,
            sent: 0,
            total,
            started: now,
            shown: now,
            tty,
            done: false,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let n = (buf.filled().len() - before) as u64;
            self.sent += n;
            if n == 0 && !self.done {
                self.done = true;
                if self.tty {
                    eprint!("\r\x1b[K");
                }
                println!(
                    "       {} sent in {:.1}s; building",
                    mb(self.sent),
                    self.started.elapsed().as_secs_f64()
                );
            } else if self.tty && self.shown.elapsed() >= Duration::from_millis(500) {
                self.shown = Instant::now();
                let pct = (self.sent * 100).checked_div(self.total).unwrap_or(100);
                eprint!("\r       {} of {} ({pct}%)", mb(self.sent), mb(self.total));
            }
        }
        r
    }
}

/// A tar of `dir` (regular files, directories and symlinks; not `.git`).
fn archive_dir(dir: &Path, out: &Path) -> Result<()> {
    let f = std::fs::File::create(out)?;
    let mut t = tar::Builder::new(std::io::BufWriter::new(f));
    t.follow_symlinks(false);
    t.mode(tar::HeaderMode::Deterministic);
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries: Vec<_> =
            std::fs::read_dir(dir.join(&rel))?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let name = rel.join(e.file_name());
            if rel.as_os_str().is_empty() && e.file_name() == ".git" {
                continue;
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                t.append_dir(&name, e.path())?;
                stack.push(name);
            } else if ft.is_file() || ft.is_symlink() {
                t.append_path_with_name(e.path(), &name)?;
            }
        }
    }
    t.into_inner()?.flush()?;
    Ok(())
}

pub async fn output(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/builds/output", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        crate::output::json(&v);
    } else {
        print!("{}", v["output"].as_str().unwrap_or(""));
    }
    Ok(())
}

const ZERO: &str = "0000000000000000000000000000000000000000";

/// The `pre-receive` hook of an app's repository: `git` runs it in the bare
/// repository with the pushed refs on stdin, before it updates them. The
/// master put `ZEROKU_URL`, `ZEROKU_TOKEN` and `ZEROKU_APP` in its
/// environment. Output goes to the pusher as `remote:` lines.
pub async fn pre_receive(api: &Api) -> Result<()> {
    let app = std::env::var("ZEROKU_APP").map_err(|_| {
        anyhow!("ZEROKU_APP is not set: this hook is run by the zeroku master's git endpoint")
    })?;
    let mut target: Option<(String, String)> = None;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [_old, new, refname] = parts[..] else {
            continue;
        };
        let branch = refname.strip_prefix("refs/heads/").unwrap_or(refname);
        if branch != "main" && branch != "master" {
            bail!(
                "zeroku deploys only the main or master branch, not {branch:?}.\nPush it as main with: git push zeroku {branch}:main"
            );
        }
        if new == ZERO {
            bail!(
                "zeroku does not delete the {branch} branch: an app always has a deployed branch"
            );
        }
        target = Some((branch.to_string(), new.to_string()));
    }
    let Some((branch, commit)) = target else {
        return Ok(());
    };
    println!(
        "-----> Building {app} from {branch} ({})",
        &commit[..commit.len().min(7)]
    );
    // The tree goes to the build as `git archive` writes it: nothing on
    // disk, nothing whole in memory, whatever its size.
    let mut git = tokio::process::Command::new("git")
        .args(["archive", "--format=tar"])
        .arg(&commit)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot run git archive")?;
    let out = git
        .stdout
        .take()
        .ok_or_else(|| anyhow!("git archive has no output"))?;
    let r = build(api, &app, zeroku_client::reader_body(out), Some(&commit)).await;
    let _ = git.kill().await;
    r.map(|_| ())
}
