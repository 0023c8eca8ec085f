//! `logs [--tail]`: lines from every instance, oldest first, each prefixed
//! with its time and instance.

use super::{act, client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, timestamp};
use anyhow::Result;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;
use zeroku_client::Method;

/// Which lines `logs` shows.
pub struct Filter {
    /// A process type (`web`) or instance (`web.2`).
    pub ps: Option<String>,
    /// `app` or `zeroku`.
    pub source: Option<String>,
    /// An add-on of the app: its server's log instead.
    pub addon: Option<String>,
}

pub async fn show(api: &Api, app: &str, tail: bool, num: usize, filter: &Filter) -> Result<()> {
    let c = client(api)?;
    let mut after = 0u64;
    let mut limit = num;
    let mut query = String::new();
    if let Some(p) = &filter.ps {
        query.push_str(&format!("&ps={}", enc(p)));
    }
    if let Some(s) = &filter.source {
        query.push_str(&format!("&source={}", enc(s)));
    }
    if let Some(a) = &filter.addon {
        query.push_str(&format!("&addon={}", enc(a)));
    }
    loop {
        let v: Value = c
            .get(&format!(
                "/v1/apps/{}/logs?after={after}&lines={limit}{query}",
                enc(app)
            ))
            .await
            .map_err(explain)?;
        let mut out = std::io::stdout().lock();
        for l in v["lines"].as_array().into_iter().flatten() {
            let r = if api.json {
                writeln!(out, "{l}")
            } else {
                let source = if l["stream"] == "system" {
                    "zeroku"
                } else {
                    "app"
                };
                writeln!(
                    out,
                    "{} {}[{}] v{}: {}",
                    timestamp(l["ts_ms"].as_u64().unwrap_or(0)),
                    source,
                    l["instance"].as_str().unwrap_or("?"),
                    l["release"],
                    l["line"].as_str().unwrap_or("")
                )
            };
            if r.is_err() {
                return Ok(()); // stdout closed (e.g. piped into head)
            }
        }
        let _ = out.flush();
        drop(out);
        after = v["next"].as_u64().unwrap_or(after);
        if !tail {
            return Ok(());
        }
        limit = 1000;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

/// The shell command line for `run`: one argument is taken as a command
/// line already (`zeroku run -- "make && make test"`); several are quoted
/// for `sh` one by one, so they arrive as given.
fn command_line(args: &[String]) -> String {
    if let [one] = args {
        return one.clone();
    }
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `a` as one `sh` word.
pub fn shell_quote(a: &str) -> String {
    let plain = !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// `zeroku run -a APP [--detach] -- CMD...`: a one-off instance of the
/// current release. Without `--detach`, its output (stdout and stderr
/// together, as the logs keep it) is printed as it comes and the exit code
/// of the command becomes this program's. No terminal is attached: the
/// command's stdin is empty.
pub async fn run(
    api: &Api,
    app: &str,
    command: &[String],
    detach: bool,
    no_tty: bool,
) -> Result<()> {
    let c = client(api)?;
    let line = command_line(command);
    // Like `heroku run`: a terminal when ours is one.
    let tty = (!detach && !no_tty && !api.json && super::terminal::interactive()).then(|| {
        let (cols, rows) = super::terminal::size();
        let term = std::env::var("TERM")
            .ok()
            .filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_graphic()))
            .unwrap_or_else(|| "xterm".into());
        serde_json::json!({ "cols": cols, "rows": rows, "term": term })
    });
    let o: Value = c
        .send(
            zeroku_client::Method::POST,
            &format!("/v1/apps/{}/runs", enc(app)),
            &serde_json::json!({ "command": line, "tty": tty }),
        )
        .await
        .map_err(explain)?;
    let id = o["id"].as_str().unwrap_or("?").to_string();
    let n = o["n"].as_u64().unwrap_or(0);
    if tty.is_some() {
        let code = super::terminal::attach(&c, app, n, &id).await?;
        std::process::exit(code);
    }
    if detach {
        if api.json {
            crate::output::json(&o);
        } else {
            println!(
                "Running `{line}` as {id} on node {}: its output is in `zeroku logs -a {app}`",
                o["node"].as_str().unwrap_or("?")
            );
        }
        return Ok(());
    }
    let mut after = 0u64;
    let mut done_at: Option<std::time::Instant> = None;
    loop {
        let v: Value = c
            .get(&format!(
                "/v1/apps/{}/logs?after={after}&lines=1000",
                enc(app)
            ))
            .await
            .map_err(explain)?;
        for l in v["lines"].as_array().into_iter().flatten() {
            if l["instance"].as_str() != Some(id.as_str()) {
                continue;
            }
            let text = l["line"].as_str().unwrap_or("");
            match l["stream"].as_str() {
                Some("out") => println!("{text}"),
                Some("err") => eprintln!("{text}"),
                _ => {}
            }
        }
        let _ = std::io::stdout().flush();
        after = v["next"].as_u64().unwrap_or(after);
        let st: Value = c
            .get(&format!("/v1/apps/{}/runs/{n}", enc(app)))
            .await
            .map_err(explain)?;
        if st["state"] == "done" {
            // Lines shipped just before the exit may still be on the way.
            let at = *done_at.get_or_insert_with(std::time::Instant::now);
            if at.elapsed() >= Duration::from_millis(1500) {
                let code = st["exit_code"].as_i64().unwrap_or(1) as i32;
                std::process::exit(code);
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("zeroku: detached from {id}; it keeps running (zeroku logs -a {app})");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// `drains`: where the app's log also goes.
pub async fn drains(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/drains", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else if v.as_array().is_none_or(|a| a.is_empty()) {
        println!("{app} has no log drains. Add one with: zeroku drains:add -a {app} URL");
    } else {
        for d in each(&v, |d| {
            format!("{}  ({})", cell(&d["url"]), cell(&d["token"]))
        }) {
            println!("{d}");
        }
    }
    Ok(())
}

pub async fn add_drain(api: &Api, app: &str, url: &str) -> Result<()> {
    let path = format!("/v1/apps/{}/drains", enc(app));
    act(api, Method::POST, &path, &json!({ "url": url }), |v| {
        format!(
            "{app}'s log now also goes to {} (drain token {}).",
            cell(&v["url"]),
            cell(&v["token"])
        )
    })
    .await
}

pub async fn remove_drain(api: &Api, app: &str, url: &str) -> Result<()> {
    let path = format!("/v1/apps/{}/drains", enc(app));
    act(api, Method::DELETE, &path, &json!({ "url": url }), |_| {
        format!("{app}'s log no longer goes to {url}.")
    })
    .await
}
