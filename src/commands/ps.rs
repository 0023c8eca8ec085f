//! `ps` and `ps:scale`.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, duration, each, json, table};
use anyhow::{bail, Result};
use serde_json::{json, Value};
use zeroku_client::Method;

pub async fn list(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/ps", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = each(&v, |p| {
        vec![
            cell(&p["id"]),
            cell(&p["node"]),
            cell(&p["state"]),
            match p["container"].as_str() {
                Some(c) => format!("container {c}"),
                None => cell(&p["pid"]),
            },
            cell(&p["restarts"]),
            p["uptime_secs"].as_u64().map_or("-".into(), duration),
            p["release"]
                .as_u64()
                .map_or("-".into(), |r| format!("v{r}")),
            cell(&p["last_exit"]),
        ]
    });
    if rows.is_empty() {
        println!("No instances. Scale up with: zeroku ps:scale -a {app} TYPE=N");
        return Ok(());
    }
    table(
        &[
            "instance",
            "node",
            "state",
            "pid / container",
            "restarts",
            "uptime",
            "release",
            "last exit",
        ],
        &rows,
    );
    Ok(())
}

/// `web=3`, `worker=2:256` (quantity, optional memory MiB).
fn parse_change(s: &str) -> Result<Value> {
    let Some((t, rest)) = s.split_once('=') else {
        bail!("{s:?} is not TYPE=N (or TYPE=N:MEMORY_MB)");
    };
    let (q, mem) = match rest.split_once(':') {
        Some((q, m)) => (q, Some(m)),
        None => (rest, None),
    };
    let Ok(q) = q.parse::<u32>() else {
        bail!("{s:?}: {q:?} is not a number of instances");
    };
    let mem = match mem {
        None => None,
        Some(m) => match m
            .trim_end_matches("MB")
            .trim_end_matches('M')
            .parse::<u64>()
        {
            Ok(m) => Some(m),
            Err(_) => bail!("{s:?}: {m:?} is not a memory size in MiB"),
        },
    };
    Ok(json!({"type": t, "quantity": q, "memory_mb": mem}))
}

pub async fn scale(api: &Api, app: &str, changes: &[String]) -> Result<()> {
    let body: Vec<Value> = changes
        .iter()
        .map(|c| parse_change(c))
        .collect::<Result<_>>()?;
    let v: Value = client(api)?
        .send(
            Method::PATCH,
            &format!("/v1/apps/{}/formation", enc(app)),
            &body,
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let now: Vec<String> = each(&v, |f| {
        format!("{}={}", cell(&f["proc_type"]), cell(&f["quantity"]))
    });
    println!("Scaled {app}: {}", now.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_syntax() {
        assert_eq!(parse_change("web=3").unwrap()["quantity"], 3);
        assert_eq!(parse_change("web=3:256").unwrap()["memory_mb"], 256);
        assert!(parse_change("web").is_err());
        assert!(parse_change("web=x").is_err());
        assert!(parse_change("web=1:lots").is_err());
    }
}
