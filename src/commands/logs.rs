//! `logs [--tail]`: lines from every instance, oldest first, each prefixed
//! with its time and instance.

use super::{client, enc, explain};
use crate::cli::Api;
use crate::output::timestamp;
use anyhow::Result;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

pub async fn show(api: &Api, app: &str, tail: bool, num: usize) -> Result<()> {
    let c = client(api)?;
    let mut after = 0u64;
    let mut limit = num;
    loop {
        let v: Value = c
            .get(&format!(
                "/v1/apps/{}/logs?after={after}&lines={limit}",
                enc(app)
            ))
            .await
            .map_err(explain)?;
        let mut out = std::io::stdout().lock();
        for l in v["lines"].as_array().into_iter().flatten() {
            let r = if api.json {
                writeln!(out, "{l}")
            } else {
                let source = if l["stream"] == "system" {
                    "zeroku"
                } else {
                    "app"
                };
                writeln!(
                    out,
                    "{} {}[{}] v{}: {}",
                    timestamp(l["ts_ms"].as_u64().unwrap_or(0)),
                    source,
                    l["instance"].as_str().unwrap_or("?"),
                    l["release"],
                    l["line"].as_str().unwrap_or("")
                )
            };
            if r.is_err() {
                return Ok(()); // stdout closed (e.g. piped into head)
            }
        }
        let _ = out.flush();
        drop(out);
        after = v["next"].as_u64().unwrap_or(after);
        if !tail {
            return Ok(());
        }
        limit = 1000;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}
