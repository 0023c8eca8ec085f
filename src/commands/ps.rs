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
            if p["replaced"] == true {
                format!("{}, replaced", cell(&p["state"]))
            } else {
                cell(&p["state"])
            },
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

/// `ps:stop INSTANCE`: stops a one-off; an instance of the formation is
/// restarted instead (the formation says it runs: `ps:scale` runs fewer).
pub async fn stop(api: &Api, app: &str, instance: &str) -> Result<()> {
    let local = instance
        .strip_prefix(&format!("{app}."))
        .unwrap_or(instance);
    let Some(n) = local
        .strip_prefix("run.")
        .and_then(|n| n.parse::<u32>().ok())
    else {
        if !local.contains('.') {
            bail!("{instance:?} is not an instance: name one as `zeroku ps -a {app}` shows it (e.g. {app}.web.1 or {app}.run.3)");
        }
        if !api.json {
            println!("{app}.{local} is part of the formation: restarting it (to run fewer, use ps:scale)");
        }
        return restart(api, app, Some(local)).await;
    };
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/runs/{n}/stop", enc(app)),
            &json!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else if v["stopped"] == true {
        println!("Stopping {app}.run.{n}");
    } else {
        println!("{app}.run.{n} has already ended ({})", cell(&v["exit"]));
    }
    Ok(())
}

/// `ps:restart [TYPE | INSTANCE]`: a rolling restart, one instance at a time,
/// each new process up before its old one stops; prints the master's
/// progress as it comes. Fails when an instance did not come up again.
pub async fn restart(api: &Api, app: &str, target: Option<&str>) -> Result<()> {
    let body = serde_json::to_vec(&json!({ "target": target }))?;
    let mut result: Option<Value> = None;
    let json_out = api.json;
    client(api)?
        .post_lines(
            &format!("/v1/apps/{}/restart", enc(app)),
            zeroku_client::reader_body(std::io::Cursor::new(body)),
            |line| {
                if let Some(r) = line.strip_prefix(zeroku_client::v1::BUILD_RESULT_PREFIX) {
                    result = serde_json::from_str(r).ok();
                } else if !json_out {
                    println!("{line}");
                }
            },
        )
        .await
        .map_err(explain)?;
    let Some(r) = result else {
        bail!("the master ended the restart without a result (did it restart?); see `zeroku ps -a {app}`");
    };
    if json_out {
        json(&r);
    }
    if r["ok"] != true {
        bail!("the restart of {app} did not finish (see above)");
    }
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
