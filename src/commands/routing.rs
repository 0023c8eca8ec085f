//! `domains*` (custom domains routed to an app besides `<app>.<base
//! domain>`) and `routes*` (path prefixes sent to the app's handlers, its
//! web instances, or a directory of its slug).

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json};
use anyhow::Result;
use serde_json::{json, Value};
use zeroku_client::Method;

pub async fn domains(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/domains", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        for d in each(&v, cell) {
            println!("{d}");
        }
    }
    Ok(())
}

pub async fn add_domain(api: &Api, app: &str, domain: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/domains", enc(app)),
            &json!({ "domain": domain }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!(
            "{} now routes to {app}: point its DNS at your frontends.",
            cell(&v["domain"])
        );
    }
    Ok(())
}

pub async fn remove_domain(api: &Api, app: &str, domain: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/apps/{}/domains/{}", enc(app), enc(domain)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("{domain} no longer routes to {app}.");
    }
    Ok(())
}

/// `domains:clear`: every custom domain off the app.
pub async fn clear_domains(api: &Api, app: &str) -> Result<()> {
    let c = client(api)?;
    let v: Value = c
        .get(&format!("/v1/apps/{}/domains", enc(app)))
        .await
        .map_err(explain)?;
    let domains: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for d in &domains {
        let _: Value = c
            .send(
                Method::DELETE,
                &format!("/v1/apps/{}/domains/{}", enc(app), enc(d)),
                &json!({}),
            )
            .await
            .map_err(explain)?;
    }
    if api.json {
        json(&json!({"removed": domains}));
    } else if domains.is_empty() {
        println!("{app} has no custom domains.");
    } else {
        println!("Removed {} from {app}.", domains.join(", "));
    }
    Ok(())
}

pub async fn routes(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/routes", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = each(&v, |r| {
        let b = &r["backend"];
        let backend = match b["kind"].as_str() {
            Some("dir") => format!("dir:{}", cell(&b["dir"])),
            other => other.unwrap_or("?").to_string(),
        };
        vec![cell(&r["prefix"]), backend]
    });
    if rows.is_empty() {
        println!("No path routes: everything goes to the handlers if the app has a handler process type, else to its web instances.");
    } else {
        crate::output::table(&["prefix", "backend"], &rows);
    }
    Ok(())
}

pub async fn add_route(api: &Api, app: &str, prefix: &str, backend: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/routes", enc(app)),
            &json!({ "prefix": prefix, "backend": backend }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("{prefix} of {app} now goes to {backend}.");
    }
    Ok(())
}

pub async fn remove_route(api: &Api, app: &str, prefix: &str) -> Result<()> {
    let path = prefix.trim_start_matches('/');
    let v: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/apps/{}/routes/{path}", enc(app)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("{prefix} of {app} is no longer routed on its own.");
    }
    Ok(())
}
