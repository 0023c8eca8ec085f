//! `apps`, `apps:create`, `apps:info`, `apps:destroy`.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use zeroku_client::Method;

pub async fn list(api: &Api) -> Result<()> {
    let apps: Value = client(api)?.get("/v1/apps").await.map_err(explain)?;
    if api.json {
        json(&apps);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = each(&apps, |x| vec![cell(&x["name"])]);
    table(&["app"], &rows);
    Ok(())
}

pub async fn create(
    api: &Api,
    name: &str,
    runtime: Option<&str>,
    stack: Option<&str>,
) -> Result<()> {
    let mut settings = serde_json::Map::new();
    if let Some(r) = runtime {
        settings.insert("runtime".into(), json!(r));
    }
    if let Some(s) = stack {
        settings.insert("stack".into(), json!(s));
    }
    let app: Value = client(api)?
        .send(
            Method::POST,
            "/v1/apps",
            &json!({ "name": name, "settings": settings }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&app);
    } else {
        let info: Value = client(api)?
            .get(&format!("/v1/apps/{}", enc(name)))
            .await
            .map_err(explain)?;
        match (runtime, stack) {
            (Some("docker"), Some(s)) => println!("Created app {name} (docker, stack {s})"),
            _ => println!("Created app {name}"),
        }
        println!("Git remote: {}", cell(&info["git_url"]));
        println!("Next, in the app's git repository: zeroku git:remote -a {name} && git push zeroku main");
        println!("      (or without git: zeroku deploy -a {name} <dir>)");
    }
    Ok(())
}

pub async fn info(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    println!("=== {}", cell(&v["name"]));
    match v["release"].as_object() {
        Some(r) => println!(
            "Release:     v{} ({})",
            cell(&r["version"]),
            cell(&r["description"])
        ),
        None => println!("Release:     none yet"),
    }
    let formation: Vec<String> = each(&v["formation"], |x| {
        format!(
            "{}={} ({} MB)",
            cell(&x["proc_type"]),
            cell(&x["quantity"]),
            cell(&x["memory_mb"])
        )
    });
    println!(
        "Formation:   {}",
        if formation.is_empty() {
            "-".into()
        } else {
            formation.join(", ")
        }
    );
    println!(
        "Instances:   {} ({} up)",
        cell(&v["instances"]),
        cell(&v["instances_up"])
    );
    println!("Config vars: {}", cell(&v["config_vars"]));
    println!("Web URL:     {}", cell(&v["web_url"]));
    println!("Git URL:     {}", cell(&v["git_url"]));
    Ok(())
}

pub async fn destroy(api: &Api, app: &str, confirm: &str) -> Result<()> {
    if confirm != app {
        bail!("--confirm {confirm:?} does not match the app name {app:?}; nothing was deleted");
    }
    let v: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/apps/{}", enc(app)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("Destroyed {app}: its instances are being stopped.");
    }
    Ok(())
}

/// `apps:rename NEW -a OLD`; re-points this directory's `zeroku` remote when it was the old
/// name's.
pub async fn rename(api: &Api, app: &str, new: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/rename", enc(app)),
            &json!({ "name": new }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!(
            "Renamed {app} to {new}: {} (its instances restart under the new name)",
            cell(&v["url"])
        );
        if let Some(gone) = v["domains_removed"].as_array().filter(|d| !d.is_empty()) {
            let gone: Vec<String> = gone.iter().map(cell).collect();
            println!("Removed the old name's domains: {}", gone.join(", "));
        }
    }
    if crate::cli::zeroku_remote().is_some_and(|u| u.ends_with(&format!("/{app}.git"))) {
        super::git::remote(api, new, "zeroku").await?;
    }
    Ok(())
}

pub async fn settings(api: &Api, app: &str, pairs: &[String]) -> Result<()> {
    let c = client(api)?;
    let path = format!("/v1/apps/{}/settings", enc(app));
    let v: Value = if pairs.is_empty() {
        c.get(&path).await.map_err(explain)?
    } else {
        let mut changes = serde_json::Map::new();
        for p in pairs {
            let Some((k, v)) = p.split_once('=') else {
                bail!("{p:?} is not KEY=VALUE");
            };
            changes.insert(k.to_string(), json!(v));
        }
        c.send(Method::PATCH, &path, &Value::Object(changes))
            .await
            .map_err(explain)?
    };
    if api.json {
        json(&v);
    } else if pairs.is_empty() {
        if let Some(m) = v.as_object() {
            for (k, v) in m {
                println!("{k}={}", cell(v));
            }
        }
    } else {
        let changed = v["changed"].as_array().map_or(0, Vec::len);
        match v["release"].as_u64() {
            Some(r) => println!(
                "Settings changed: {app} is now at v{r}; its instances are being replaced (new ones up first, as on a deploy)."
            ),
            None if changed == 0 => println!("Nothing changed: {app} already had these settings."),
            None => println!("Settings changed; running instances are not affected."),
        }
    }
    Ok(())
}

/// `maintenance:on|off`: 503 and a page for every request, nothing stopped.
pub async fn maintenance(
    api: &Api,
    app: &str,
    on: bool,
    page: Option<&std::path::Path>,
) -> Result<()> {
    let mut changes = serde_json::Map::new();
    changes.insert("maintenance".into(), json!(if on { "on" } else { "off" }));
    if let Some(p) = page {
        let html = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        changes.insert("maintenance_page".into(), json!(html));
    }
    let v: Value = client(api)?
        .send(
            Method::PATCH,
            &format!("/v1/apps/{}/settings", enc(app)),
            &Value::Object(changes),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else if on {
        println!("{app} is in maintenance: every request gets 503 and the maintenance page; its processes keep running.");
    } else {
        println!("{app} is serving again.");
    }
    Ok(())
}

/// `open`: the app's URL, and a browser on it when one can be started.
pub async fn open(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}", enc(app)))
        .await
        .map_err(explain)?;
    let url = v["web_url"].as_str().unwrap_or_default().to_string();
    println!("{url}");
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::env::var_os("DISPLAY").is_some() {
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(())
}
