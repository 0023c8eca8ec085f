//! `services` (what apps provide and require, with the providers up now) and
//! `services:watch` (print a service's providers each time they change).

use super::{client, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table};
use anyhow::{anyhow, Result};
use serde_json::Value;

fn attrs(v: &Value) -> String {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", cell(v)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into())
}

fn addrs(v: &Value) -> String {
    let a = each(v, cell);
    if a.is_empty() {
        "none up".into()
    } else {
        a.join(", ")
    }
}

pub async fn list(api: &Api, app: Option<&str>) -> Result<()> {
    let v: Value = client(api)?.get("/v1/services").await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let mine = |x: &Value| app.is_none_or(|a| x["app"] == a);
    let provides: Vec<Vec<String>> = each(&v["provides"], |p| {
        mine(p).then(|| {
            vec![
                cell(&p["app"]),
                cell(&p["service"]),
                cell(&p["process"]),
                attrs(&p["attributes"]),
                addrs(&p["addrs"]),
                each(&p["required_by"], cell).join(", "),
            ]
        })
    })
    .into_iter()
    .flatten()
    .collect();
    let requires: Vec<Vec<String>> = each(&v["requires"], |r| {
        mine(r).then(|| {
            vec![
                cell(&r["app"]),
                cell(&r["env"]),
                format!(
                    "{}/{}",
                    cell(&r["provider"]["app"]),
                    cell(&r["provider"]["service"])
                ),
                attrs(&r["attributes"]),
                cell(&r["on_change"]),
                if r["resolved"] == true {
                    addrs(&r["addrs"])
                } else {
                    "no such provider".into()
                },
            ]
        })
    })
    .into_iter()
    .flatten()
    .collect();
    if provides.is_empty() && requires.is_empty() {
        println!("No app provides or requires a service (declare them in zeroku.toml).");
        return Ok(());
    }
    println!("=== Provided");
    table(
        &[
            "app",
            "service",
            "process",
            "attributes",
            "providers",
            "required by",
        ],
        &provides,
    );
    println!("\n=== Required");
    table(
        &[
            "app",
            "variable",
            "from",
            "attributes",
            "on change",
            "providers",
        ],
        &requires,
    );
    Ok(())
}

/// The providers of `name` (a service `app` provides, or one of its requirements) in `v`.
fn providers_of(v: &Value, app: &str, name: &str) -> Option<(String, Vec<String>)> {
    for p in v["provides"].as_array().into_iter().flatten() {
        if p["app"] == app && p["service"] == name {
            return Some((format!("{app}/{name}"), each(&p["addrs"], cell)));
        }
    }
    for r in v["requires"].as_array().into_iter().flatten() {
        if r["app"] == app && r["name"] == name {
            return Some((cell(&r["env"]), each(&r["addrs"], cell)));
        }
    }
    None
}

pub async fn watch(api: &Api, app: &str, name: &str) -> Result<()> {
    let c = client(api)?;
    let mut generation: Option<u64> = None;
    let mut last: Option<Vec<String>> = None;
    loop {
        let path = match generation {
            Some(g) => format!("/v1/services?wait={g}"),
            None => "/v1/services".to_string(),
        };
        let v: Value = c.get(&path).await.map_err(explain)?;
        generation = v["generation"].as_u64();
        let Some((label, now)) = providers_of(&v, app, name) else {
            return Err(anyhow!(
                "{app} neither provides nor requires a service named {name:?} (see zeroku services)"
            ));
        };
        if last.as_ref() != Some(&now) {
            let at = crate::output::timestamp(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64),
            );
            let list = if now.is_empty() {
                "none up".to_string()
            } else {
                now.join(", ")
            };
            if api.json {
                println!(
                    "{}",
                    serde_json::json!({"at": at, "service": label, "addrs": now})
                );
            } else {
                println!("{at}  {label}: {list}");
            }
            last = Some(now);
        }
    }
}
