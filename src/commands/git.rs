//! `git:remote` and `git-credential`: `git push` to zeroku with the saved token, never a
//! token in a remote URL (git keeps those in `.git/config`, readable by anyone who can read the
//! repository).

use super::{client, credentials, enc, explain};
use crate::cli::Api;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::io::BufRead;
use std::process::Command;

fn git(args: &[&str]) -> Result<std::process::Output> {
    Command::new("git")
        .args(args)
        .output()
        .with_context(|| format!("cannot run git {}", args.join(" ")))
}

/// `zeroku git:remote -a APP`: adds (or points) the remote at the app's repository, and makes
/// `zeroku git-credential` the credential helper for that URL only.
pub async fn remote(api: &Api, app: &str, name: &str) -> Result<()> {
    let info: Value = client(api)?
        .get(&format!("/v1/apps/{}", enc(app)))
        .await
        .map_err(explain)?;
    let url = info["git_url"]
        .as_str()
        .ok_or_else(|| anyhow!("the master gave no git URL for {app}"))?
        .to_string();
    let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() {
        bail!("this directory is not a git repository (git init, or cd into the app's repository first)");
    }
    let exists = git(&["remote", "get-url", name])?.status.success();
    let set = if exists {
        git(&["remote", "set-url", name, &url])?
    } else {
        git(&["remote", "add", name, &url])?
    };
    if !set.status.success() {
        bail!(
            "git could not set remote {name}: {}",
            String::from_utf8_lossy(&set.stderr).trim()
        );
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let helper = format!(
        "!'{}' git-credential",
        exe.display().to_string().replace('\'', "'\\''")
    );
    let key = format!("credential.{url}.helper");
    // Replace, not add to, any helper set for this URL before.
    let _ = git(&["config", "--unset-all", &key]);
    let cfg = git(&["config", &key, &helper])?;
    if !cfg.status.success() {
        bail!(
            "git could not set its credential helper: {}",
            String::from_utf8_lossy(&cfg.stderr).trim()
        );
    }
    println!("Remote {name} is {url}; git asks `zeroku git-credential` for the token (yours, from `zeroku login` or ZEROKU_TOKEN).");
    println!("Deploy with: git push {name} main");
    Ok(())
}

/// git's credential helper protocol: on `get`, reads `key=value` lines and answers the token for
/// the master it asks about; `store` and `erase` keep nothing (the token lives in zeroku's own
/// file).
pub fn credential(operation: &str) -> Result<()> {
    let mut asked = std::collections::HashMap::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.context("reading git's request")?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once('=') {
            asked.insert(k.to_string(), v.to_string());
        }
    }
    if operation != "get" {
        return Ok(());
    }
    let api = Api {
        url: None,
        token: None,
        json: false,
    };
    let (url, token) = credentials(&api);
    let Some(token) = token else {
        return Ok(()); // git then asks the user, who learns to run `zeroku login`
    };
    // Only for the master the token belongs to.
    let host = url
        .strip_prefix("http://")
        .unwrap_or(&url)
        .trim_end_matches('/');
    if asked.get("host").is_some_and(|h| h != host) {
        return Ok(());
    }
    println!("username=zeroku");
    println!("password={token}");
    Ok(())
}
