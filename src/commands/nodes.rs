//! `nodes`, `nodes:join-token`, `nodes:drain`, `nodes:undrain`.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table};
use anyhow::Result;
use serde_json::{json, Value};
use zeroku_client::Method;

pub async fn list(api: &Api) -> Result<()> {
    let v: Value = client(api)?.get("/v1/nodes").await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = each(&v, |n| {
        let state = if n["draining"] == true {
            format!("{} (draining)", cell(&n["state"]))
        } else {
            cell(&n["state"])
        };
        vec![
            cell(&n["name"]),
            state,
            cell(&n["instances"]),
            format!("{}/{} MB", cell(&n["used_mb"]), cell(&n["capacity_mb"])),
            n["last_seen_ms"]
                .as_u64()
                .map_or("-".into(), |ms| format!("{:.1}s ago", ms as f64 / 1000.0)),
            each(&n["runtimes"], cell).join(", "),
            cell(&n["limits"]),
        ]
    });
    table(
        &[
            "node",
            "state",
            "instances",
            "memory",
            "heartbeat",
            "runtimes",
            "limits",
        ],
        &rows,
    );
    Ok(())
}

pub async fn join_token(api: &Api, ttl: &str) -> Result<()> {
    let ttl_secs = parse_duration(ttl)?;
    let v: Value = client(api)?
        .send(
            Method::POST,
            "/v1/nodes/join-token",
            &json!({ "ttl_secs": ttl_secs }),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("{}", cell(&v["token"]));
        eprintln!(
            "It lets one worker or frontend join, once, within {ttl}. Give it to the daemon in a file (--token-file) or ZEROKU_JOIN_TOKEN, never on its command line."
        );
    }
    Ok(())
}

/// `90`, `90s`, `10m`, `1h`, `2d` in seconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a duration like 90s, 10m, 1h or 2d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("{s:?} is not a duration like 90s, 10m, 1h or 2d"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow::anyhow!("{s:?} is too long"))
}

pub async fn drain(api: &Api, node: &str, draining: bool, move_addons: bool) -> Result<()> {
    let verb = if draining { "drain" } else { "undrain" };
    let query = if move_addons { "?move_addons=true" } else { "" };
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/nodes/{}/{verb}{query}", enc(node)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else if draining {
        println!("Draining {node}: its instances are moving to other nodes.");
        for line in v["addons"].as_array().into_iter().flatten() {
            println!("{}", line.as_str().unwrap_or(""));
        }
    } else {
        println!("{node} takes new instances again.");
    }
    Ok(())
}

/// `nodes:remove`: forgets a node that is gone.
pub async fn remove(api: &Api, node: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::DELETE,
            &format!("/v1/nodes/{}", enc(node)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("Removed node {node}: its token and bus key no longer work; its instances are placed on other nodes.");
    }
    Ok(())
}

/// `zeroku stacks`: the stacks the master holds, and the nodes that have them.
pub async fn stacks(api: &Api) -> Result<()> {
    let v: Value = client(api)?.get("/v1/stacks").await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = each(&v, |s| {
        let nodes = each(&s["nodes"], cell);
        vec![
            cell(&s["name"]),
            cell(&s["version"]),
            format!(
                "{:.1} MB",
                s["size"].as_u64().unwrap_or(0) as f64 / 1048576.0
            ),
            if nodes.is_empty() {
                "- (fetched by a node when it first needs it)".into()
            } else {
                nodes.join(", ")
            },
        ]
    });
    table(
        &["stack", "version", "size", "on nodes (this version)"],
        &rows,
    );
    Ok(())
}

/// `zeroku stacks:import NAME ROOTFS.tar`: a root file system tarball
/// becomes a stack; nodes import it into their Docker Engine when an app
/// needs it (there is no registry to pull from).
pub async fn stacks_import(api: &Api, name: &str, tarball: &std::path::Path) -> Result<()> {
    let v: Value = client(api)?
        .put_file(&format!("/v1/stacks/{}", enc(name)), tarball)
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!(
            "Imported stack {name} version {} ({:.1} MB); apps on it move to this version. Use it: zeroku apps:settings -a APP runtime=docker stack={name}",
            v["version"].as_str().unwrap_or("?"),
            v["size"].as_u64().unwrap_or(0) as f64 / 1048576.0
        );
    }
    Ok(())
}
