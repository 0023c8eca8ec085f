//! What the API checks before it changes anything: app settings, stack and host names,
//! domains, scales and config var names, and how a config change is described.

use super::Scale;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::Formation;
use std::collections::BTreeMap;

/// A stack name: an image name without a registry (`zk-bookworm`).
/// Validates app settings; `app` is `None` for an app being created.
pub(super) fn check_settings(
    c: &Cluster,
    app: Option<&str>,
    changes: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (k, v) in changes {
        match (k.as_str(), v.as_str()) {
            ("m2_protocol", "json" | "tnetstring") => {}
            ("runtime", "native" | "docker") => {}
            ("runtime", other) => {
                return Err(ApiError::invalid(format!(
                    "runtime must be native or docker, not {other:?}"
                )))
            }
            ("stack", s) => check_stack(s)?,
            ("cpu", v) => {
                crate::settings::cpu_millis(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "cpu is in cores, from 0.01 to 256 (e.g. cpu=0.5), or 0 for no limit; not {v:?}"
                    ))
                })?;
            }
            ("m2_protocol", other) => {
                return Err(ApiError::invalid(format!(
                    "m2_protocol must be json or tnetstring, not {other:?}"
                )))
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown app setting {other:?} (known: m2_protocol, runtime, stack, cpu)"
                )))
            }
        }
    }
    let docker = changes.get("runtime").map(String::as_str) == Some("docker");
    let has_stack = changes.contains_key("stack")
        || app.is_some_and(|app| {
            c.store()
                .settings()
                .unwrap_or_default()
                .iter()
                .any(|(a, k, _)| a == app && k == "stack")
        });
    if docker && !has_stack {
        return Err(ApiError::invalid(
            "runtime=docker needs a stack too: stack=<name> (see `zeroku stacks`)",
        ));
    }
    Ok(())
}

pub(super) fn check_stack(s: &str) -> Result<(), ApiError> {
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{s:?} is not a stack name (lowercase letters, digits, -, _ and .)"
        )))
    }
}

pub(crate) fn check_host(h: &str) -> Result<(), ApiError> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{h:?} is not a host name or IP address"
        )))
    }
}

pub(super) fn check_domain(d: &str) -> Result<(), ApiError> {
    let labels_ok = d.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    if d.len() <= 253 && d.contains('.') && labels_ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{d:?} is not a domain name like www.example.com"
        )))
    }
}

/// Largest quantity of one process type: a typo like `web=1000000` must not
/// take the cluster down.
const MAX_QUANTITY: u32 = 10_000;

pub(super) fn check_scale(
    c: &Cluster,
    app: &str,
    ups: Vec<Scale>,
) -> Result<Vec<Formation>, ApiError> {
    let store = c.store();
    let rel = store.current_release(app)?.ok_or_else(|| {
        ApiError::invalid(format!(
            "app {app} has no release yet: create one before scaling"
        ))
    })?;
    let current = store.formation(app)?;
    let known: Vec<&str> = rel.process_types.keys().map(String::as_str).collect();
    ups.into_iter()
        .map(|u| {
            if !rel.process_types.contains_key(&u.proc_type) {
                return Err(ApiError::invalid(format!(
                    "unknown process type {:?} for app {app} (its Procfile has: {})",
                    u.proc_type,
                    known.join(", ")
                )));
            }
            if u.quantity > MAX_QUANTITY {
                return Err(ApiError::invalid(format!(
                    "quantity {} is above the limit of {MAX_QUANTITY}",
                    u.quantity
                )));
            }
            let mem = u.memory_mb.or_else(|| {
                current
                    .iter()
                    .find(|f| f.proc_type == u.proc_type)
                    .map(|f| f.memory_mb)
            });
            Ok(Formation {
                app: app.to_string(),
                proc_type: u.proc_type,
                quantity: u.quantity,
                memory_mb: mem.unwrap_or(c.cfg.default_memory_mb),
            })
        })
        .collect()
}

pub(super) fn check_config_key(k: &str) -> Result<(), ApiError> {
    let ok_chars = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok_chars {
        return Err(ApiError::invalid(format!(
            "invalid config var name {k:?}: use letters, digits and _, not starting with a digit"
        )));
    }
    if k == "PORT" || k.starts_with("ZEROKU_") {
        return Err(ApiError::invalid(format!(
            "config var {k} is set by zeroku itself and cannot be changed"
        )));
    }
    Ok(())
}

pub(super) fn describe_config(changes: &BTreeMap<String, Option<String>>) -> String {
    let set: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("Set {}", set.join(", ")));
    }
    if !unset.is_empty() {
        parts.push(format!("Unset {}", unset.join(", ")));
    }
    if parts.is_empty() {
        "Config unchanged".into()
    } else {
        parts.join("; ")
    }
}
