//! `GET /v1/services`: the services apps provide and require (`zeroku.toml`),
//! with their live providers, for `zeroku services`; with `?wait=GENERATION`
//! it answers once the providers changed since that generation (or after 25 s),
//! for `zeroku services:watch`.
//!
//! A caller sees the services and requirements of the apps it may view only.

use super::{ok, query, Reply};
use crate::api::auth::Caller;
use crate::cluster::Cluster;
use crate::error::ApiError;
use hyper::body::Incoming;
use hyper::Request;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long a `?wait=` request is held when nothing changes.
const WAIT: Duration = Duration::from_secs(25);

pub(super) async fn list(
    c: &Cluster,
    caller: &Caller,
    req: &Request<Incoming>,
) -> Result<Reply, ApiError> {
    if let Some(w) = query(req).get("wait") {
        let after: u64 = w
            .parse()
            .map_err(|_| ApiError::bad_request(format!("wait={w:?} is not a generation")))?;
        let mut rx = c.services_changed.subscribe();
        let _ = tokio::time::timeout(WAIT, rx.wait_for(|g| *g > after)).await;
    }
    let generation = *c.services_changed.borrow();
    let providers = c.providers();
    let (visible, releases) = {
        let store = c.store();
        let apps = store.apps()?;
        let visible: HashSet<String> = if caller.admin {
            apps.iter().map(|a| a.name.clone()).collect()
        } else {
            store
                .apps_of(caller.user().unwrap_or_default())?
                .into_iter()
                .collect()
        };
        let mut releases = HashMap::new();
        for a in apps.iter().filter(|a| visible.contains(&a.name)) {
            if let Some(r) = store.current_release(&a.name)? {
                releases.insert(a.name.clone(), r);
            }
        }
        (visible, releases)
    };
    let mut requires = Vec::new();
    // Who requires each provided service (among the apps the caller sees).
    let mut users: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut names: Vec<&String> = releases.keys().collect();
    names.sort();
    for app in names {
        for (name, r) in &releases[app].build.manifest.requires {
            let p = crate::discovery::resolve(app, name, r, &providers);
            if let Some(p) = p {
                users
                    .entry((p.app.clone(), p.service.clone()))
                    .or_default()
                    .push(format!("{app} ({name})"));
            }
            requires.push(json!({
                "app": app,
                "name": name,
                "env": zeroku_conf::manifest::env_name(name),
                "provider": { "app": r.app, "service": r.service(name) },
                "attributes": r.attributes,
                "on_change": r.on_change.to_string(),
                "resolved": p.is_some(),
                "addrs": p.map(|p| p.addrs.clone()).unwrap_or_default(),
            }));
        }
    }
    let provides: Vec<_> = providers
        .values()
        .filter(|p| visible.contains(&p.app))
        .map(|p| {
            json!({
                "app": p.app,
                "service": p.service,
                "process": p.process,
                "attributes": p.attributes,
                "consumers": p.consumers,
                "addrs": p.addrs,
                "required_by": users.get(&(p.app.clone(), p.service.clone())).cloned().unwrap_or_default(),
            })
        })
        .collect();
    ok(json!({
        "generation": generation,
        "provides": provides,
        "requires": requires,
    }))
}
