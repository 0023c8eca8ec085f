//! Every API route called with every kind of token: a caller the route table allows gets
//! through (2xx, or the route's own answer to the request, never 401/403), every other caller
//! gets 403 (401 with no token or an unknown one). The table is the master's own
//! (`zeroku_master::api::auth::ROUTES`), so a new route is covered by this test the day it is
//! added.

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use zeroku_master::api::auth::{Need, ROUTES};
use zeroku_master::store::Perm;

/// A kind of caller and its token.
struct Who {
    name: &'static str,
    token: String,
}

/// Who may use a route that needs `need` (the app is `a1`; node p1 runs it; frontend pf serves
/// no files of it).
fn allowed(who: &str, need: Need) -> bool {
    if need == Need::FrontendOnly {
        return who == "frontend";
    }
    if matches!(who, "admin" | "uadmin") {
        return true;
    }
    let user = who.starts_with('u');
    let perms: &[Perm] = match who {
        "uview" => &[Perm::View],
        "udeploy" => &[Perm::View, Perm::Deploy],
        "uoperate" => &[Perm::View, Perm::Operate],
        "umanage" => &[Perm::View, Perm::Manage],
        _ => &[],
    };
    match need {
        Need::Anyone => true,
        Need::User => user,
        Need::Admin => false,
        Need::App(p) => perms.contains(&p),
        Need::Join => who == "join",
        Need::Node => who == "node",
        Need::Frontend | Need::FrontendOnly => who == "frontend",
        // The node runs a1's instance; udeploy may deploy a1; the frontend serves none of it.
        Need::Slug => matches!(who, "node" | "udeploy"),
    }
}

fn call(c: &TestCluster, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let body = if method == "GET" || method == "DELETE" {
        ""
    } else {
        "{}"
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        c.master.api,
        body.len()
    );
    match http_request(&c.master.api, &raw) {
        Ok((status, _, body)) => (status, body),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn saved_token(path: std::path::PathBuf) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("saved credentials")).expect("json");
    v["token"].as_str().expect("token").to_string()
}

#[test]
fn every_route_with_every_role() {
    let mut c = TestCluster::start();
    c.add_worker("p1", 34600);
    let _fe = c.add_frontend("pf");
    c.deploy("a1", &[("Procfile", "clock: sleep 100000\n")]);
    c.cli_ok(&["ps:scale", "-a", "a1", "clock=1"]).unwrap();
    c.wait_up("a1", 1, Duration::from_secs(30));
    let sha = c.json(&["releases", "-a", "a1"])[0]["slug_sha256"]
        .as_str()
        .expect("slug")
        .to_string();

    // Users with each permission, and throwaway apps and users for the routes that destroy.
    let mut who = vec![
        Who {
            name: "admin",
            token: c.master.token.clone(),
        },
        Who {
            name: "node",
            token: saved_token(c.dir.path().join("worker-p1/node-token.json")),
        },
        Who {
            name: "frontend",
            token: saved_token(c.dir.path().join("frontend-pf/frontend-token.json")),
        },
        Who {
            name: "join",
            token: c.cli_ok(&["nodes:join-token"]).unwrap().trim().to_string(),
        },
    ];
    let grants = [
        ("uadmin", None),
        ("uview", Some("view")),
        ("udeploy", Some("deploy")),
        ("uoperate", Some("operate")),
        ("umanage", Some("manage")),
        ("unone", None),
    ];
    for (name, perm) in grants {
        let mut args = vec!["users:add", name];
        if name == "uadmin" {
            args.push("--admin");
        }
        args.push("--json");
        let v: Value = serde_json::from_str(&c.cli_ok(&args).unwrap()).unwrap();
        if let Some(p) = perm {
            c.cli_ok(&["access:add", name, "-a", "a1", "--permissions", p])
                .unwrap();
        }
        who.push(Who {
            name,
            token: v["token"].as_str().unwrap().to_string(),
        });
    }
    // Victims: an app each caller may destroy (with the caller's grant), a user each admin
    // may remove.
    let victim_app = |w: &str| format!("d-{w}");
    for w in &who {
        let app = victim_app(w.name);
        c.deploy(&app, &[("Procfile", "clock: sleep 100000\n")]);
        if let Some((_, Some(p))) = grants.iter().find(|(n, _)| *n == w.name) {
            c.cli_ok(&["access:add", w.name, "-a", &app, "--permissions", p])
                .unwrap();
        }
        c.cli_ok(&["users:add", &format!("v-{}", w.name)]).unwrap();
    }

    let mut refusals: HashMap<&str, usize> = HashMap::new();
    let mut passes = 0;
    for route in ROUTES {
        for w in &who {
            let app = if route.method == "DELETE" && route.path == "/v1/apps/:app" {
                victim_app(w.name)
            } else {
                "a1".to_string()
            };
            let user = if route.path == "/v1/users/:user" {
                format!("v-{}", w.name)
            } else {
                "unone".to_string()
            };
            let name = if route.path.starts_with("/v1/frontends/") {
                "pf"
            } else {
                "nothing-here"
            };
            let path = route
                .path
                .replace(":app", &app)
                .replace(":node", "p1")
                .replace(":name", name)
                .replace(":n", "1")
                .replace(":id", "a1.run.1")
                .replace(":sha", &sha)
                .replace(":user", &user)
                .replace(":domain", "x.example.com")
                .replace("drain|undrain", "undrain")
                .replace('*', "x");
            let (status, body) = call(&c, route.method, &path, Some(&w.token));
            let expect = allowed(w.name, route.need);
            if expect {
                assert!(
                    status != 401 && status != 403,
                    "{} may {} {} ({:?}) but got {status}: {body}",
                    w.name,
                    route.method,
                    path,
                    route.need
                );
                passes += 1;
            } else {
                assert_eq!(
                    status, 403,
                    "{} may not {} {} ({:?}) but got: {body}",
                    w.name, route.method, path, route.need
                );
                *refusals.entry(w.name).or_default() += 1;
            }
        }
        // No token, and a token the master does not know: 401 everywhere.
        let path = route.path.replace(':', "");
        for token in [None, Some("not-a-token")] {
            let (status, _) = call(&c, route.method, &path.replace('*', "x"), token);
            assert_eq!(
                status, 401,
                "{} {} with {token:?}",
                route.method, route.path
            );
        }
    }
    // Every kind of token was refused somewhere except the admins.
    for w in &who {
        if !matches!(w.name, "admin" | "uadmin") {
            assert!(refusals.get(w.name).copied().unwrap_or(0) > 0, "{}", w.name);
        }
    }
    eprintln!(
        "{} routes x {} callers: {passes} allowed, {} refused with 403",
        ROUTES.len(),
        who.len(),
        refusals.values().sum::<usize>()
    );

    // What a user sees is theirs only; what they changed is in the audit log, by name.
    let list = |token: &str| -> Vec<String> {
        let (_, body) = call(&c, "GET", "/v1/apps", Some(token));
        let v: Value = serde_json::from_str(&body).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    let uview = &who.iter().find(|w| w.name == "uview").unwrap().token;
    assert_eq!(list(uview), vec!["a1", "d-uview"]);
    assert!(list(&who[0].token).len() > 2, "admins see every app");
    // An operator scales (a change that succeeds, so it is logged).
    let uoperate = &who.iter().find(|w| w.name == "uoperate").unwrap().token;
    let scale = r#"[{"type":"clock","quantity":1}]"#;
    let raw = format!(
        "PATCH /v1/apps/a1/formation HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {uoperate}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{scale}",
        scale.len()
    );
    let (status, _, body) = http_request(&c.master.api, &raw).unwrap();
    assert_eq!(status, 200, "{body}");
    let audit = c.json(&["audit", "-a", "a1", "-n", "1000"]);
    let by = |actor: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["actor"] == actor && e["app"] == "a1")
    };
    assert!(by("udeploy"), "{audit}");
    assert!(by("umanage"), "{audit}");
    assert!(by("uoperate"), "{audit}");
    assert!(!by("uview"), "a viewer changed nothing: {audit}");
}
