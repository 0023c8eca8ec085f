//! `addons…`, `pg:…` and `redis:cli`: add-ons, their attachments, credentials and backups.

use super::{act, client, enc, explain};
use crate::cli::Api;
use crate::output::{cell, each, json, table};
use anyhow::{anyhow, bail, Result};
use serde_json::{json as j, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use zeroku_client::Method;

fn base(app: &str, addon: &str) -> String {
    format!("/v1/apps/{}/addons/{}", enc(app), enc(addon))
}

/// `DATABASE_URL, REPORTING_URL on blog; DATABASE_URL on worker`.
fn attached_as(v: &Value) -> String {
    each(&v["attachments"], |t| {
        format!("{} on {}", cell(&t["as"]), cell(&t["app"]))
    })
    .join(", ")
}

pub async fn list(api: &Api, app: Option<&str>) -> Result<()> {
    let path = match app {
        Some(a) => format!("/v1/apps/{}/addons", enc(a)),
        None => "/v1/addons".into(),
    };
    let v: Value = client(api)?.get(&path).await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = each(&v, |a| {
        vec![
            cell(&a["name"]),
            format!("{} {}", cell(&a["kind"]), cell(&a["version"])),
            cell(&a["node"]),
            cell(&a["state"]),
            a["size"].as_u64().map_or_else(|| "-".into(), size),
            format!("{} MB", cell(&a["memory_mb"])),
            cell(&a["backups"]),
            attached_as(a),
        ]
    });
    if rows.is_empty() {
        println!("No add-ons. Create one with `zeroku addons:create postgres -a APP`.");
    } else {
        table(
            &[
                "name",
                "kind",
                "node",
                "state",
                "size",
                "memory",
                "backups",
                "attached as",
            ],
            &rows,
        );
    }
    Ok(())
}

/// Waits until the add-on's server is up (or `timeout`), saying why if it is not.
async fn wait_up(api: &Api, app: &str, addon: &str, timeout: Duration) -> Result<Value> {
    let c = client(api)?;
    let start = Instant::now();
    loop {
        let v: Value = c.get(&base(app, addon)).await.map_err(explain)?;
        if v["state"] == "up" {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!(
                "{addon} is not up after {} s (state {}, last exit {}): see `zeroku logs -a {app}` and the node's worker log",
                timeout.as_secs(),
                cell(&v["state"]),
                cell(&v["last_exit"])
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How `addons:create` makes the add-on.
pub struct How<'a> {
    pub alias: Option<&'a str>,
    pub wait: bool,
    pub ha: bool,
}

pub async fn create(api: &Api, app: &str, kind: &str, how: How<'_>) -> Result<()> {
    let How { alias, wait, ha } = how;
    let mut body = j!({"kind": kind, "ha": ha});
    if let Some(a) = alias {
        body["as"] = j!(a.trim_end_matches("_URL"));
    }
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("/v1/apps/{}/addons", enc(app)),
            &body,
        )
        .await
        .map_err(explain)?;
    let name = v["addon"]["name"].as_str().unwrap_or("?").to_string();
    if !api.json {
        let rel = match v["release"].as_u64() {
            Some(r) => format!(", release v{r}"),
            None => String::new(),
        };
        eprint!(
            "Creating {name} ({}) on {}: {} set{rel}... ",
            cell(&v["addon"]["kind"]),
            cell(&v["addon"]["node"]),
            cell(&v["as"])
        );
    }
    if wait {
        let up = wait_up(api, app, &name, Duration::from_secs(120)).await?;
        if api.json {
            json(&up);
        } else {
            eprintln!("done");
        }
    } else if api.json {
        json(&v);
    } else {
        eprintln!("started");
    }
    Ok(())
}

pub async fn info(api: &Api, app: &str, addon: &str) -> Result<()> {
    let v: Value = client(api)?.get(&base(app, addon)).await.map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    for (k, f) in [
        ("Name", cell(&v["name"])),
        (
            "Kind",
            format!("{} {}", cell(&v["kind"]), cell(&v["version"])),
        ),
        ("Size", v["size"].as_u64().map_or_else(|| "-".into(), size)),
        ("App", cell(&v["app"])),
        (
            "Node",
            format!("{} (port {})", cell(&v["node"]), cell(&v["port"])),
        ),
        ("State", cell(&v["state"])),
        ("Memory", format!("{} MB", cell(&v["memory_mb"]))),
        ("Backups", cell(&v["backups"])),
        (
            "Schedule",
            match v["schedule"].as_object() {
                Some(s) => format!(
                    "daily at {}, keeping {} daily and {} weekly",
                    cell(&s["at"]),
                    cell(&s["keep_daily"]),
                    cell(&s["keep_weekly"])
                ),
                None => "none".into(),
            },
        ),
        ("Attached as", attached_as(&v)),
    ] {
        println!("{k:<12} {f}");
    }
    let ha = &v["ha"];
    if ha.is_object() {
        let server = |s: &Value| {
            format!(
                "{} (port {}), {}",
                cell(&s["node"]),
                cell(&s["port"]),
                cell(&s["state"])
            )
        };
        println!("{:<12} {}", "Primary", server(&ha["primary"]));
        println!("{:<12} {}", "Standby", server(&ha["standby"]));
        let synchronous = ha["synchronous"].as_bool() == Some(true);
        let sync = match (ha["sync"].as_bool(), ha["in_sync"].as_bool()) {
            (Some(true), Some(true)) if synchronous => "on, in sync: every acknowledged commit is on both nodes; while the standby is away commits wait for it (addons:settings sync=off to write on one node instead)".to_string(),
            (Some(true), Some(true)) => "on, in sync: replication is asynchronous, so a failover loses the writes the replica had not received (about a second at most); while the replica is away writes are refused after 10 s (addons:settings sync=off to write on one node instead)".to_string(),
            (Some(true), _) => "on, not in sync yet: the standby is catching up; no failover until it is".to_string(),
            _ => "off: writes do not count on the standby; no automatic failover".to_string(),
        };
        println!("{:<12} {sync}", "Sync");
        let lag = match (ha["lag"]["bytes"].as_u64(), ha["lag"]["ms"].as_u64()) {
            (Some(b), Some(ms)) => format!("{b} bytes behind, {ms} ms"),
            (Some(b), None) => format!("{b} bytes behind"),
            _ => "the standby does not stream now".into(),
        };
        println!("{:<12} {lag}", "Lag");
        let last = match ha["last_failover_at"].as_u64() {
            Some(t) => format!(
                "{} failover(s), the last {} ({})",
                cell(&ha["failovers"]),
                crate::output::timestamp(t * 1000),
                cell(&ha["last_failover"])
            ),
            None => "none".into(),
        };
        println!("{:<12} {last}", "Failovers");
    }
    Ok(())
}

pub async fn settings(api: &Api, app: &str, addon: &str, kv: &[String]) -> Result<()> {
    let mut body = serde_json::Map::new();
    for s in kv {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("{s:?} is not KEY=VALUE (e.g. sync=off)"))?;
        body.insert(k.to_string(), j!(v));
    }
    let v: Value = client(api)?
        .send(
            Method::PATCH,
            &format!("{}/settings", base(app, addon)),
            &Value::Object(body),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        for line in each(&v["said"], cell) {
            println!("{line}");
        }
    }
    Ok(())
}

pub async fn failover(api: &Api, app: &str, addon: &str) -> Result<()> {
    let v: Value = client(api)?
        .send(
            Method::POST,
            &format!("{}/failover", base(app, addon)),
            &j!({}),
        )
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
    } else {
        println!(
            "{addon}: the primary is on {} now (writes refused for {} ms, no commit lost)",
            cell(&v["addon"]["node"]),
            cell(&v["took_ms"])
        );
    }
    Ok(())
}

pub async fn attach(api: &Api, app: &str, addon: &str, alias: Option<&str>) -> Result<()> {
    let mut body = j!({"addon": addon});
    if let Some(a) = alias {
        body["as"] = j!(a.trim_end_matches("_URL"));
    }
    act(
        api,
        Method::POST,
        &format!("/v1/apps/{}/attachments", enc(app)),
        &body,
        |v| {
            let rel = v["release"]
                .as_u64()
                .map(|r| format!(" (release v{r})"))
                .unwrap_or_default();
            format!("Attached {addon} to {app} as {}{rel}", cell(&v["as"]))
        },
    )
    .await
}

pub async fn detach(api: &Api, app: &str, addon: &str) -> Result<()> {
    let path = format!("/v1/apps/{}/attachments/{}", enc(app), enc(addon));
    act(api, Method::DELETE, &path, &j!({}), |v| {
        let rel = v["release"]
            .as_u64()
            .map(|r| format!(" (release v{r})"))
            .unwrap_or_default();
        format!("Detached {addon} from {app}{rel}")
    })
    .await
}

pub async fn destroy(
    api: &Api,
    app: &str,
    addon: &str,
    confirm: Option<&str>,
    detach: bool,
) -> Result<()> {
    if confirm != Some(addon) {
        bail!(
            "this deletes {addon} and its backups: repeat its name to confirm (--confirm {addon})"
        );
    }
    let path = format!(
        "{}{}",
        base(app, addon),
        if detach { "?detach=true" } else { "" }
    );
    act(api, Method::DELETE, &path, &j!({}), |_| {
        format!("Destroyed {addon}")
    })
    .await
}

pub async fn rotate(api: &Api, app: &str, addon: &str) -> Result<()> {
    let path = format!("{}/credentials", base(app, addon));
    act(api, Method::POST, &path, &j!({}), |v| {
        let rels = each(&v["releases"], |r| format!("v{r}")).join(", ");
        format!("Rotated the credentials of {addon}; apps updated: {rels}")
    })
    .await
}

/// The add-on a command means: the one named (by name or by its config var on `app`), else
/// the one of `kind` attached to `app` as the kind's default (`DATABASE_URL`), else the only
/// one of `kind`. Its name, kind and config var on `app`.
pub async fn pick(
    api: &Api,
    app: &str,
    kind: &str,
    named: Option<&str>,
) -> Result<(String, String, String)> {
    let v: Value = client(api)?
        .get(&format!("/v1/apps/{}/addons", enc(app)))
        .await
        .map_err(explain)?;
    let all: Vec<&Value> = v.as_array().into_iter().flatten().collect();
    let alias_of = |a: &Value| {
        a["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["app"] == app)
            .and_then(|t| t["as"].as_str())
            .unwrap_or("")
            .to_string()
    };
    let default = zeroku_services::kind(kind)
        .map(|k| format!("{}_URL", k.default_alias()))
        .unwrap_or_default();
    let mine: Vec<&&Value> = all.iter().filter(|a| a["kind"] == kind).collect();
    let found: Option<&Value> = match named {
        Some(n) => all
            .iter()
            .find(|a| a["name"] == n || alias_of(a) == n || alias_of(a) == format!("{n}_URL"))
            .copied(),
        None => mine
            .iter()
            .find(|a| alias_of(a) == default)
            .or_else(|| if mine.len() == 1 { mine.first() } else { None })
            .map(|a| **a),
    };
    match (found, named) {
        (Some(a), _) => Ok((cell(&a["name"]), cell(&a["kind"]), alias_of(a))),
        (None, Some(n)) => Err(anyhow!(
            "{app} has no add-on {n:?} (see `zeroku addons -a {app}`)"
        )),
        (None, None) if mine.is_empty() => Err(anyhow!(
            "{app} has no {kind} add-on (zeroku addons:create {kind} -a {app})"
        )),
        (None, None) => Err(anyhow!(
            "which {kind} add-on of {app}? Name one of: {}",
            mine.iter()
                .map(|a| cell(&a["name"]))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

pub async fn backups(api: &Api, app: &str, addon: &str) -> Result<()> {
    let v: Value = client(api)?
        .get(&format!("{}/backups", base(app, addon)))
        .await
        .map_err(explain)?;
    if api.json {
        json(&v);
        return Ok(());
    }
    let rows = each(&v, |b| {
        vec![
            cell(&b["id"]),
            crate::output::timestamp(b["created_at"].as_u64().unwrap_or(0) * 1000),
            if b["state"] == "failed" {
                format!("failed: {}", cell(&b["error"]))
            } else {
                cell(&b["state"])
            },
            size(b["size"].as_u64().unwrap_or(0)),
            cell(&b["sha256"]),
        ]
    });
    if rows.is_empty() {
        println!("No backups of {addon}. Take one with `zeroku pg:backups:capture -a {app}`.");
    } else {
        table(&["id", "taken", "state", "size", "sha256"], &rows);
    }
    Ok(())
}

fn size(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} kB", n as f64 / 1024.0)
    }
}

pub async fn capture(api: &Api, app: &str, addon: &str) -> Result<()> {
    let c = client(api)?;
    let b: Value = c
        .send(
            Method::POST,
            &format!("{}/backups", base(app, addon)),
            &j!({}),
        )
        .await
        .map_err(explain)?;
    let id = cell(&b["id"]);
    if !api.json {
        eprint!("Capturing {id} of {addon}... ");
    }
    let path = format!("{}/backups/{}", base(app, addon), id);
    loop {
        let v: Value = c.get(&path).await.map_err(explain)?;
        match v["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(100)).await,
            Some("ok") => {
                if api.json {
                    json(&v);
                } else {
                    eprintln!("done");
                    println!(
                        "{id}: {}, sha256 {}",
                        size(v["size"].as_u64().unwrap_or(0)),
                        cell(&v["sha256"])
                    );
                }
                return Ok(());
            }
            _ => bail!("backup {id} of {addon} failed: {}", cell(&v["error"])),
        }
    }
}

pub async fn restore(
    api: &Api,
    app: &str,
    addon: &str,
    id: &str,
    confirm: Option<&str>,
    to: Option<&str>,
) -> Result<()> {
    if to.is_none() && confirm != Some(app) {
        bail!("this replaces the data of {addon} (attached to {app}) with {id}: confirm with --confirm {app}");
    }
    if !api.json {
        match to {
            Some(t) => eprintln!(
                "Restoring {id} into a new add-on of {app} as {}_URL...",
                t.trim_end_matches("_URL")
            ),
            None => eprintln!("Restoring {id} into {addon}..."),
        }
    }
    // `ADDON::b001`: another add-on's backup (':' may stand in a path segment).
    let id_path: Vec<String> = id.split("::").map(enc).collect();
    let query = to.map(|t| format!("?to={}", enc(t))).unwrap_or_default();
    let path = format!(
        "{}/backups/{}/restore{query}",
        base(app, addon),
        id_path.join("::")
    );
    act(api, Method::POST, &path, &j!({}), |v| {
        format!("Restored {id} into {}", cell(&v["addon"]))
    })
    .await
}

pub async fn download(api: &Api, app: &str, addon: &str, id: &str, out: &Path) -> Result<()> {
    let path = format!("{}/backups/{}/file", base(app, addon), enc(id));
    // A copy of the data: the user's alone (0600), whatever the file was before.
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(out)
            .and_then(|_| std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600)))
            .map_err(|e| anyhow!("cannot write {}: {e}", out.display()))?;
    }
    let n = client(api)?.download(&path, out).await.map_err(explain)?;
    if !api.json {
        println!("{id} of {addon}: {} written to {}", size(n), out.display());
    }
    Ok(())
}

/// A command line for a one-off that connects with the URL in `$<var>`, its password passed in
/// the environment rather than on the command line (which other users of the node can read).
pub fn client_command(kind: &str, var: &str, extra: &[String]) -> Result<String> {
    let split = format!(
        "u=\"${var}\"; r=\"${{u#*://}}\"; cred=\"${{r%%@*}}\"; hp=\"${{r#*@}}\"; user=\"${{cred%%:*}}\"; pw=\"${{cred#*:}}\"; "
    );
    let args: String = extra
        .iter()
        .map(|a| format!(" {}", super::logs::shell_quote(a)))
        .collect();
    match kind {
        "postgres" => Ok(format!(
            "{split}PGPASSWORD=\"$pw\" exec psql \"postgres://$user@$hp\"{args}"
        )),
        "redis" => Ok(format!(
            "{split}h=\"${{hp%%/*}}\"; REDISCLI_AUTH=\"$pw\" exec redis-cli --no-auth-warning -h \"${{h%:*}}\" -p \"${{h##*:}}\"{args}"
        )),
        k => Err(anyhow!("no client for {k} add-ons")),
    }
}

pub async fn schedule(api: &Api, app: &str, addon: &str, body: Option<Value>) -> Result<()> {
    let path = format!("{}/schedule", base(app, addon));
    let method = if body.is_some() {
        Method::PUT
    } else {
        Method::DELETE
    };
    act(api, method, &path, &body.unwrap_or_else(|| j!({})), |v| {
        cell(&v["said"])
    })
    .await
}
