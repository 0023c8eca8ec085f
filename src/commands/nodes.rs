//! `nodes`, `nodes:join-token`, `nodes:drain`, `nodes:undrain`.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table};
use anyhow::Result;
use serde_json::{json, Value};
use zeroku_master::client::Method;

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
            "limits",
        ],
        &rows,
    );
    Ok(())
}

pub async fn join_token(api: &Api) -> Result<()> {
    let v: Value = client(api)?
        .send(Method::POST, "/v1/nodes/join-token", &json!({}))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!("{}", cell(&v["token"]));
    }
    Ok(())
}

pub async fn drain(api: &Api, node: &str, draining: bool) -> Result<()> {
    let verb = if draining { "drain" } else { "undrain" };
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/nodes/{}/{verb}", enc(node)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else if draining {
        println!("Draining {node}: its instances are moving to other nodes.");
    } else {
        println!("{node} takes new instances again.");
    }
    Ok(())
}
