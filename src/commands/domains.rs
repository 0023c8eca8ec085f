//! `domains`, `domains:add`, `domains:remove`: custom domains routed to an
//! app by every frontend (besides `<app>.<base domain>`).

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json};
use anyhow::Result;
use serde_json::{json, Value};
use zeroku_master::client::Method;

pub async fn list(api: &Api, app: &str) -> Result<()> {
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

pub async fn add(api: &Api, app: &str, domain: &str) -> Result<()> {
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

pub async fn remove(api: &Api, app: &str, domain: &str) -> Result<()> {
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
