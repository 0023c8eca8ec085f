//! `metrics`: an app's last minutes as the master keeps them.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::{json, table};
use anyhow::Result;
use serde_json::Value;

pub async fn show(api: &Api, app: &str, minutes: u64) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/metrics?minutes={minutes}", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = v["minutes"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("Nothing measured for {app} in the last {minutes} minutes yet (workers and frontends report once a minute).");
        return Ok(());
    }
    let ms = |x: &Value| x.as_f64().map_or("-".into(), |v| format!("{v:.1}"));
    let mut types: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            r["types"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.keys().cloned())
        })
        .collect();
    types.sort();
    types.dedup();
    let mut head = vec![
        "minute".to_string(),
        "requests".into(),
        "2xx".into(),
        "4xx".into(),
        "5xx".into(),
        "p50 ms".into(),
        "p95 ms".into(),
        "p99 ms".into(),
    ];
    for t in &types {
        head.push(format!("{t}: n"));
        head.push(format!("{t}: MB"));
        head.push(format!("{t}: CPU %"));
        head.push(format!("{t}: restarts"));
    }
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let at = r["at"].as_u64().unwrap_or(0);
            let mut row = vec![
                crate::output::timestamp(at * 1000),
                r["requests"].to_string(),
                r["by_class"]["2xx"].to_string(),
                r["by_class"]["4xx"].to_string(),
                r["by_class"]["5xx"].to_string(),
                ms(&r["p50_ms"]),
                ms(&r["p95_ms"]),
                ms(&r["p99_ms"]),
            ];
            for t in &types {
                let x = &r["types"][t];
                if x.is_null() {
                    row.extend(["-".into(), "-".into(), "-".into(), "-".into()]);
                    continue;
                }
                let mb = x["memory_bytes"].as_f64().unwrap_or(0.0) / 1048576.0;
                let cpu = x["cpu_ms"].as_f64().unwrap_or(0.0) / 600.0;
                row.extend([
                    x["instances"].to_string(),
                    format!("{mb:.1}"),
                    format!("{cpu:.1}"),
                    x["restarts"].to_string(),
                ]);
            }
            row
        })
        .collect();
    let head: Vec<&str> = head.iter().map(String::as_str).collect();
    table(&head, &table_rows);
    Ok(())
}

pub async fn alerts(api: &Api, app: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/alerts", enc(app)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = crate::output::each(&v, |a| {
        vec![
            crate::output::cell(&a["id"]),
            crate::output::cell(&a["rule"]),
            if a["firing"] == true {
                "FIRING".into()
            } else {
                "ok".into()
            },
            crate::output::cell(&a["webhook"]),
        ]
    });
    if rows.is_empty() {
        println!("{app} has no alerts. Add one: zeroku alerts:add -a {app} 'p95 > 500ms for 5m' --webhook URL");
        return Ok(());
    }
    table(&["id", "rule", "state", "webhook"], &rows);
    Ok(())
}

pub async fn add_alert(api: &Api, app: &str, rule: &str, webhook: &str) -> Result<()> {
    let path = format!("/v1/apps/{}/alerts", enc(app));
    let body = serde_json::json!({"rule": rule, "webhook": webhook});
    super::act(api, zeroku_client::Method::POST, &path, &body, |v| {
        format!(
            "Alert {} on {app}: '{}' posts to {} when it starts and stops holding.",
            crate::output::cell(&v["id"]),
            crate::output::cell(&v["rule"]),
            crate::output::cell(&v["webhook"])
        )
    })
    .await
}

pub async fn remove_alert(api: &Api, app: &str, id: &str) -> Result<()> {
    let path = format!("/v1/apps/{}/alerts/{}", enc(app), enc(id));
    super::act(
        api,
        zeroku_client::Method::DELETE,
        &path,
        &serde_json::json!({}),
        |_| format!("Alert {id} of {app} removed."),
    )
    .await
}
