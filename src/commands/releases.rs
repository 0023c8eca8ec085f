//! `releases`, `releases:create`, `rollback`, `config`, `config:set`,
//! `config:unset`: everything that makes a new release.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table, timestamp};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use zeroku_client::Method;

pub async fn list(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/releases", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = each(&v, |r| {
        let b = &r["build"];
        let build_ms = b["build_ms"].as_u64().unwrap_or(0);
        let buildpacks: Vec<String> = each(&b["buildpacks"], cell);
        vec![
            format!("v{}", cell(&r["version"])),
            cell(&r["description"]),
            b["commit"]
                .as_str()
                .map_or("-".into(), |c| c.chars().take(7).collect()),
            if buildpacks.is_empty() {
                "-".into()
            } else {
                buildpacks.join("+")
            },
            zeroku_builder::build::human(r["slug_size"].as_u64().unwrap_or(0)),
            if build_ms == 0 {
                "-".into()
            } else {
                format!("{:.1}s", build_ms as f64 / 1000.0)
            },
            timestamp(r["created_at"].as_u64().unwrap_or(0) * 1000),
        ]
    });
    rows.reverse();
    table(
        &[
            "version",
            "description",
            "commit",
            "buildpack",
            "slug",
            "build",
            "created",
        ],
        &rows,
    );
    Ok(())
}

/// Packs `dir` into a slug (squashfs, content-addressed), uploads it unless
/// the master has it, and creates a release with the Procfile's types.
pub async fn create(api: &Api, app: &str, dir: &Path, message: Option<String>) -> Result<()> {
    let c = client(api)?;
    let procfile_path = dir.join("Procfile");
    let text = std::fs::read_to_string(&procfile_path).with_context(|| {
        format!(
            "cannot read {} (a release needs a Procfile at the root of the directory)",
            procfile_path.display()
        )
    })?;
    let types = zeroku_conf::procfile::parse(&text)
        .with_context(|| format!("in {}", procfile_path.display()))?;
    let tmp = tempfile_in_tmp()?;
    let (src, out) = (dir.to_path_buf(), tmp.clone());
    let info = tokio::task::spawn_blocking(move || zeroku_slug::pack(&src, &out))
        .await?
        .with_context(|| format!("cannot pack {}", dir.display()))?;
    let uploaded: Result<Value, _> = c
        .put_file(&format!("/v1/slugs/{}", info.sha256), &tmp)
        .await;
    let _ = std::fs::remove_file(&tmp);
    uploaded.map_err(explain)?;
    let body = json!({
        "slug_sha256": info.sha256,
        "process_types": types,
        "description": message.unwrap_or_else(|| format!("Deploy {}", &info.sha256[..12])),
    });
    let rel: Value = c
        .send(
            Method::POST,
            &format!("/v1/apps/{}/releases", enc(app)),
            &body,
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&rel);
    } else {
        println!(
            "Released {app} v{} (slug {}, {} KB; process types: {})",
            cell(&rel["version"]),
            &info.sha256[..12],
            info.size.div_ceil(1024),
            types.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

fn tempfile_in_tmp() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir();
    let name = format!(
        "zeroku-slug-{}-{}.sqfs",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    Ok(dir.join(name))
}

pub async fn rollback(api: &Api, app: &str, version: Option<&str>) -> Result<()> {
    let n = match version {
        Some(version) => {
            let Some(n) = version.trim_start_matches('v').parse::<u32>().ok() else {
                bail!("{version:?} is not a release version like v3");
            };
            n
        }
        // Heroku's `rollback` alone: the release before the current one.
        None => {
            let rels: Value = client(api)?
                .get(&format!("/v1/apps/{}/releases", enc(app)))
                .await
                .map_err(explain)?;
            let mut versions: Vec<u64> = rels
                .as_array()
                .map(|a| a.iter().filter_map(|r| r["version"].as_u64()).collect())
                .unwrap_or_default();
            versions.sort_unstable();
            match versions.as_slice() {
                [.., before, _current] => *before as u32,
                _ => bail!("{app} has no release before its current one to roll back to"),
            }
        }
    };
    let rel: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/rollback", enc(app)),
            &json!({ "version": n }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&rel);
    } else {
        println!(
            "Rolled back {app} to v{n}: now at v{}",
            cell(&rel["version"])
        );
    }
    Ok(())
}

/// `config:get KEY`: the value alone (for scripts); exit status 1 when it is not set.
pub async fn config_get(api: &Api, app: &str, key: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/config", enc(app)))
        .await
        .map_err(explain)?;
    match v.get(key).and_then(Value::as_str) {
        Some(val) => {
            println!("{val}");
            Ok(())
        }
        None => bail!("{key} is not set on {app} (zeroku config -a {app} lists what is)"),
    }
}

pub async fn config(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/config", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    if let Some(m) = v.as_object() {
        for (k, val) in m {
            println!("{k}={}", cell(val));
        }
    }
    Ok(())
}

async fn patch_config(
    api: &Api,
    app: &str,
    changes: BTreeMap<String, Option<String>>,
) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::PATCH,
            &format!("/v1/apps/{}/config", enc(app)),
            &changes,
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let not_set: Vec<String> = v["not_set"]
        .as_array()
        .map(|a| a.iter().map(cell).collect())
        .unwrap_or_default();
    if !not_set.is_empty() {
        println!(
            "{} {} not set on {app}.",
            not_set.join(", "),
            if not_set.len() == 1 { "was" } else { "were" }
        );
    }
    match (v["release"].as_u64(), v["unchanged"] == true) {
        (_, true) => println!("Nothing changed: no new release."),
        (Some(r), _) => {
            println!("Config updated: {app} is now at v{r}; instances are being replaced.")
        }
        (None, _) => println!("Config updated; it takes effect with the first release."),
    }
    Ok(())
}

pub async fn config_set(api: &Api, app: &str, pairs: &[String]) -> Result<()> {
    let mut changes = BTreeMap::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            bail!("{p:?} is not KEY=VALUE");
        };
        changes.insert(k.to_string(), Some(v.to_string()));
    }
    patch_config(api, app, changes).await
}

pub async fn config_unset(api: &Api, app: &str, keys: &[String]) -> Result<()> {
    patch_config(api, app, keys.iter().map(|k| (k.clone(), None)).collect()).await
}
