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
            ("maintenance", "on" | "off") => {}
            ("force_https" | "certs_auto", "on" | "off") => {}
            ("force_https" | "certs_auto", other) => {
                return Err(ApiError::invalid(format!(
                    "{k} is on or off, not {other:?}"
                )))
            }
            ("hsts", v) => {
                crate::settings::hsts_max_age(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "hsts is off, on (a year) or a max-age in seconds up to two years; not {v:?}"
                    ))
                })?;
            }
            ("maintenance", other) => {
                return Err(ApiError::invalid(format!(
                    "maintenance is on or off, not {other:?}"
                )))
            }
            ("maintenance_page", page) if page.len() > 64 << 10 => {
                return Err(ApiError::invalid(
                    "a maintenance page is at most 64 KB (link to images instead of embedding them)",
                ))
            }
            ("maintenance_page", _) => {}
            ("runtime", other) => {
                return Err(ApiError::invalid(format!(
                    "runtime must be native or docker, not {other:?}"
                )))
            }
            ("stack", s) => {
                check_stack(s)?;
                let tar = super::files::stacks_dir(c)?.join(format!("{s}.tar"));
                if !tar.exists() {
                    return Err(ApiError::invalid(format!(
                        "there is no stack named {s:?}: `zeroku stacks` lists them, `zeroku stacks:import {s} <tarball>` adds one"
                    )));
                }
            }
            ("cpu", v) => {
                crate::settings::cpu_millis(v).ok_or_else(|| {
                    ApiError::invalid(format!(
                        "cpu is in cores, from 0.01 to 256 (e.g. cpu=0.5), or 0 for no limit; not {v:?}"
                    ))
                })?;
            }
            ("stop_when_lost_ms", "off") => {}
            ("stop_when_lost_ms", v) => {
                // A worker hears the master at least every republish interval.
                let min = 3 * c.cfg.republish_interval_ms.max(1000);
                match v.parse::<u64>() {
                    Ok(ms) if ms >= min => {}
                    _ => {
                        return Err(ApiError::invalid(format!(
                            "stop_when_lost_ms is milliseconds, at least {min} (three republish intervals), or off; not {v:?}"
                        )))
                    }
                }
            }
            ("m2_protocol", other) => {
                return Err(ApiError::invalid(format!(
                    "m2_protocol must be json or tnetstring, not {other:?}"
                )))
            }
            (other, _) => {
                return Err(ApiError::invalid(format!(
                    "unknown app setting {other:?} (known: m2_protocol, runtime, stack, cpu, maintenance, maintenance_page, stop_when_lost_ms)"
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

/// The base domain apps answer under (`<app>.<base>`), from the `app_url` setting.
fn base_domain(c: &Cluster) -> Option<String> {
    crate::settings::base_domain(&c.cfg.app_url)
}

/// The custom domains of `app` that are its name under the base domain (`<app>.<base>` and
/// names below it): they go when the app is renamed, as its name is then free for another app.
pub(super) fn name_domains(c: &Cluster, app: &str, domains: &[(String, String)]) -> Vec<String> {
    let Some(base) = base_domain(c) else {
        return Vec::new();
    };
    let own = format!("{app}.{base}");
    domains
        .iter()
        .filter(|(d, a)| a == app && (*d == own || d.ends_with(&format!(".{own}"))))
        .map(|(d, _)| d.clone())
        .collect()
}

/// A custom domain may not be another app's address: nobody else's default host, and nothing
/// under the base domain but the app's own name (and names below it).
pub(super) fn check_domain_owner(c: &Cluster, app: &str, domain: &str) -> Result<(), ApiError> {
    let Some(base) = base_domain(c) else {
        return Ok(());
    };
    let own = format!("{app}.{base}");
    if domain == base || domain == own || domain.ends_with(&format!(".{own}")) {
        if domain == base {
            return Err(ApiError::new(
                hyper::StatusCode::CONFLICT,
                "conflict",
                format!("{domain} is the cluster's base domain, no app's"),
            ));
        }
        return Ok(());
    }
    if let Some(label) = domain.strip_suffix(&format!(".{base}")) {
        let owner = label.rsplit('.').next().unwrap_or(label);
        let taken = c.store().app(owner)?.is_some();
        return Err(ApiError::new(
            hyper::StatusCode::CONFLICT,
            "conflict",
            if taken {
                format!("{domain} is app {owner}'s address: an app may add names under {base} only below its own, {own}")
            } else {
                format!("names under {base} are apps' own addresses: app {app} may add {own} or names below it, not {domain}")
            },
        ));
    }
    Ok(())
}

/// Largest quantity of one process type: a typo like `web=1000000` must not
/// take the cluster down.
const MAX_QUANTITY: u32 = 10_000;

/// The least memory an instance may have, MiB: less and nothing useful starts.
pub(crate) const MIN_MEMORY_MB: u64 = 32;

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
            if let Some(m) = u.memory_mb {
                if m < MIN_MEMORY_MB {
                    return Err(ApiError::invalid(format!(
                        "{} MB is too little memory for an instance: the minimum is {MIN_MEMORY_MB} MB",
                        m
                    )));
                }
                if u.quantity > 0 {
                    if let Some((node, free)) = crate::views::most_free(c, &store, app, &u.proc_type)? {
                        if m > free {
                            return Err(ApiError::invalid(format!(
                                "no node has {m} MB free: the most is {free} MB, on node {node} (the minimum is {MIN_MEMORY_MB} MB; see `zeroku nodes`)"
                            )));
                        }
                    }
                }
            }
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
    // A release's description is a line: ten names at most, then how many more.
    let names = |v: &[&str]| {
        let shown = v.iter().take(10).copied().collect::<Vec<_>>().join(", ");
        match v.len() {
            n if n > 10 => format!("{shown} and {} more", n - 10),
            _ => shown,
        }
    };
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("Set {}", names(&set)));
    }
    if !unset.is_empty() {
        parts.push(format!("Unset {}", names(&unset)));
    }
    if parts.is_empty() {
        "Config unchanged".into()
    } else {
        parts.join("; ")
    }
}
