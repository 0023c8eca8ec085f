//! `login`, `logout`, `whoami`, `users*`, `access*`, `audit`: who may use the cluster.

use super::{client, credentials, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table, timestamp};
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use zeroku_client::Method;

/// What `zeroku login` keeps: `$XDG_CONFIG_HOME/zeroku/credentials` (or
/// `~/.config/zeroku/credentials`), mode 0600 in a 0700 directory.
#[derive(Serialize, Deserialize)]
pub struct Saved {
    pub url: String,
    pub token: String,
}

fn saved_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("zeroku").join("credentials"))
}

impl Saved {
    pub fn load() -> Option<Saved> {
        serde_json::from_slice(&std::fs::read(saved_path()?).ok()?).ok()
    }
}

/// Reads a token from stdin: prompted without echo on a terminal, else the first line.
fn read_token() -> Result<String> {
    let tty = std::io::stdin().is_terminal();
    if tty {
        eprint!("Token (from `zeroku users:add`, or ZEROKU_TOKEN in <data>/cli.env): ");
        let _ = std::process::Command::new("stty")
            .arg("-echo")
            .stdin(std::process::Stdio::inherit())
            .status();
    }
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    if tty {
        let _ = std::process::Command::new("stty")
            .arg("echo")
            .stdin(std::process::Stdio::inherit())
            .status();
        eprintln!();
    }
    read.context("cannot read the token from stdin")?;
    let t = line.trim().to_string();
    if t.is_empty() {
        bail!("no token given (zeroku login reads it from stdin)");
    }
    Ok(t)
}

pub async fn login(api: &Api) -> Result<()> {
    let token = read_token()?;
    let (url, _) = credentials(api);
    let me: Value = zeroku_client::Client::new(&url, &token)
        .context("ZEROKU_URL")?
        .get("/v1/whoami")
        .await
        .map_err(explain)?;
    let path = saved_path().ok_or_else(|| anyhow!("no HOME to keep the token in"))?;
    let dir = path.parent().unwrap_or(&path);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let bytes = serde_json::to_vec(&Saved {
        url: url.clone(),
        token,
    })?;
    let tmp = path.with_extension("tmp");
    zeroku_client::write_private(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "Logged in to {url} as {} (token saved in {}, readable by you only)",
        cell(&me["name"]),
        path.display()
    );
    Ok(())
}

pub fn logout() -> Result<()> {
    match saved_path() {
        Some(p) if p.exists() => {
            std::fs::remove_file(&p).with_context(|| format!("cannot remove {}", p.display()))?;
            println!("Logged out (removed {})", p.display());
        }
        _ => println!("Not logged in"),
    }
    Ok(())
}

pub async fn whoami(api: &Api) -> Result<()> {
    let v: Value = client(api)?.get("/v1/whoami").await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let admin = if v["admin"] == true { " (admin)" } else { "" };
    println!("{}{admin}", cell(&v["name"]));
    if let Some(apps) = v["apps"].as_object() {
        for (app, perms) in apps {
            println!("  {app}: {}", cell(perms));
        }
    }
    Ok(())
}

pub async fn users(api: &Api) -> Result<()> {
    let v: Value = client(api)?.get("/v1/users").await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = each(&v, |u| {
        vec![
            cell(&u["name"]),
            if u["admin"] == true { "admin" } else { "user" }.to_string(),
            timestamp(u["created_at"].as_u64().unwrap_or(0) * 1000),
        ]
    });
    table(&["name", "role", "created"], &rows);
    Ok(())
}

fn show_token(v: &Value, what: &str) {
    println!("{what}. Their token (shown once; the master keeps only its hash):");
    println!("{}", cell(&v["token"]));
    eprintln!("They run `zeroku login --url <master URL>` and paste it.");
}

pub async fn add_user(api: &Api, name: &str, admin: bool) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::POST,
            "/v1/users",
            &json!({"name": name, "admin": admin}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        let role = if admin { "admin" } else { "user" };
        show_token(&v, &format!("Added {role} {name}"));
    }
    Ok(())
}

pub async fn user_token(api: &Api, name: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/users/{}/tokens", enc(name)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        show_token(&v, &format!("A new token for {name}"));
    }
    Ok(())
}

pub async fn remove_user(api: &Api, name: &str) -> Result<()> {
    let _: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/users/{}", enc(name)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    println!("Removed user {name}, their tokens, permissions and SSH keys");
    Ok(())
}

pub async fn access(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/access", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = each(&v, |a| vec![cell(&a["user"]), cell(&a["permissions"])]);
    table(&["user", "permissions"], &rows);
    Ok(())
}

pub async fn add_access(api: &Api, app: &str, user: &str, permissions: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::PUT,
            &format!("/v1/apps/{}/access/{}", enc(app), enc(user)),
            &json!({"permissions": permissions}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("{user} may now {} on {app}", cell(&v["permissions"]));
    }
    Ok(())
}

pub async fn remove_access(api: &Api, app: &str, user: &str) -> Result<()> {
    let _: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/apps/{}/access/{}", enc(app), enc(user)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    println!("{user} has no more access to {app}");
    Ok(())
}

pub async fn audit(api: &Api, app: Option<&str>, num: u32) -> Result<()> {
    let path = match app {
        Some(a) => format!("/v1/apps/{}/audit?lines={num}", enc(a)),
        None => format!("/v1/audit?lines={num}"),
    };
    let v: Value = client(api)?.get(&path).await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = each(&v, |e| {
        vec![
            timestamp(e["at"].as_u64().unwrap_or(0) * 1000),
            cell(&e["actor"]),
            cell(&e["app"]),
            cell(&e["action"]),
            cell(&e["detail"]),
        ]
    });
    table(&["when", "who", "app", "what", "detail"], &rows);
    Ok(())
}
