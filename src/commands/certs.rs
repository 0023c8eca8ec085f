//! `certs*`: an app's TLS certificates — obtained and renewed by the master over ACME
//! (`certs:auto`), or given as PEM files (`certs:add`) — and what went wrong last.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::json;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use zeroku_client::Method;

use zeroku_conf::time::date as day;

/// The strings of a JSON array.
fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// `certs -a APP`.
pub async fn list(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/certs", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let auto = v["auto"].as_bool().unwrap_or(false);
    let names = strs(&v["names"]);
    println!(
        "=== {app}: automatic certificates {}",
        if auto {
            "on"
        } else {
            "off (zeroku certs:auto)"
        }
    );
    if auto {
        println!("Names: {}", names.join(", "));
    }
    let certs = v["certs"].as_array().cloned().unwrap_or_default();
    if certs.is_empty() {
        println!("No certificate yet.");
    }
    for c in &certs {
        let list = strs(&c["names"]);
        println!(
            "{}  {:<6}  {}  issuer {}  expires {} ({} days)",
            c["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            c["source"].as_str().unwrap_or(""),
            list.join(","),
            c["issuer"].as_str().unwrap_or(""),
            day(c["not_after"].as_u64().unwrap_or(0)),
            c["days_left"].as_i64().unwrap_or(0),
        );
    }
    if let Some(e) = v["last_error"].as_str().filter(|e| !e.is_empty()) {
        println!(
            "Last error ({}): {e}",
            day(v["error_at"].as_u64().unwrap_or(0))
        );
        if let Some(next) = v["next_try"].as_u64().filter(|n| *n > 0) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            println!(
                "Next try in {} s (zeroku certs:auto -a {app} tries at once).",
                next.saturating_sub(now)
            );
        }
    }
    Ok(())
}

/// `certs:auto -a APP [--off]`: the `certs_auto` setting.
pub async fn auto(api: &Api, app: &str, off: bool) -> Result<()> {
    let value = if off { "off" } else { "on" };
    let v: Value = client(api)?
        .send(
            Method::PATCH,
            &format!("/v1/apps/{}/settings", enc(app)),
            &json!({ "certs_auto": value }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else if off {
        println!(
            "{app} gets no more certificates over ACME; those it has are served until they expire."
        );
    } else {
        println!("{app}'s certificate is being ordered; `zeroku certs -a {app}` shows it (and any error). Its names must point at your frontends, and port 80 reach them.");
    }
    Ok(())
}

/// `certs:add -a APP CERT KEY`: PEM files.
pub async fn add(api: &Api, app: &str, cert: &str, key: &str) -> Result<()> {
    let chain_pem = std::fs::read_to_string(cert)
        .with_context(|| format!("cannot read the certificate {cert}"))?;
    let key_pem =
        std::fs::read_to_string(key).with_context(|| format!("cannot read the key {key}"))?;
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/certs", enc(app)),
            &json!({ "chain_pem": chain_pem, "key_pem": key_pem }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        let names = strs(&v["names"]);
        println!(
            "Added {} for {} (expires {}).",
            v["sha256"].as_str().unwrap_or("").get(..12).unwrap_or(""),
            names.join(", "),
            day(v["not_after"].as_u64().unwrap_or(0))
        );
    }
    Ok(())
}

/// `certs:remove -a APP SHA`.
pub async fn remove(api: &Api, app: &str, sha: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/apps/{}/certs/{}", enc(app), enc(sha)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("Removed certificate {sha} of {app}.");
    }
    Ok(())
}
