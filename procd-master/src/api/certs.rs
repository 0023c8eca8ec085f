//! Apps' certificates (`zeroku certs`, `certs:add`, `certs:remove`; `certs:auto` is the
//! `certs_auto` setting): `GET`/`POST /v1/apps/<app>/certs`, `DELETE …/certs/<sha256 prefix>`.
//! Frontends fetch a certificate's chain and key by hash
//! (`GET /v1/frontends/<name>/certs/<sha256>`, their own token only). Keys reach nobody else:
//! users (admins too) see names, issuer and expiry.

use super::{body_json, ok, Reply};
use crate::api::auth::Caller;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{now, Cert, Role};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Deserialize;
use serde_json::json;

/// What `zeroku certs` shows: the names the app answers at, its certificates (no keys), and
/// how obtaining one went last.
pub(super) fn list(c: &Cluster, app: &str) -> Result<Reply, ApiError> {
    let store = c.store();
    let certs: Vec<_> = store
        .app_certs(app)?
        .into_iter()
        .map(|x| {
            json!({
                "sha256": x.sha256,
                "source": x.source,
                "names": x.names,
                "issuer": x.issuer,
                "not_after": x.not_after,
                "days_left": (x.not_after as i64 - now() as i64).div_euclid(86_400),
            })
        })
        .collect();
    let status = store.cert_status(app)?;
    let settings = store.settings()?;
    drop(store);
    ok(json!({
        "app": app,
        "auto": crate::acme::auto_on(c, app, &settings),
        "names": crate::acme::wanted_names(c, app)?,
        "certs": certs,
        "last_error": status.last_error,
        "error_at": status.error_at,
        "failures": status.failures,
        "next_try": status.next_try,
    }))
}

/// Certificates of its own an app may have (every frontend holds them all).
const MAX_MANUAL: usize = 10;

/// `certs:add`: a PEM chain and its key, checked to belong together.
pub(super) async fn add(c: &Cluster, app: &str, req: Request<Incoming>) -> Result<Reply, ApiError> {
    #[derive(Deserialize)]
    struct Add {
        chain_pem: String,
        key_pem: String,
    }
    let a: Add = body_json(req).await?;
    let manual = c
        .store()
        .app_certs(app)?
        .iter()
        .filter(|x| x.source == "manual")
        .count();
    if manual >= MAX_MANUAL {
        return Err(ApiError::invalid(format!(
            "{app} has {manual} certificates of its own, the most it may: remove one first (zeroku certs:remove)"
        )));
    }
    let d = crate::certs::describe(&a.chain_pem, &a.key_pem).map_err(ApiError::invalid)?;
    if d.not_after <= now() {
        return Err(ApiError::invalid(format!(
            "this certificate expired (not after {}); it would be refused by every browser",
            d.not_after
        )));
    }
    c.store().put_cert(&Cert {
        app: app.to_string(),
        sha256: d.sha256.clone(),
        source: "manual".into(),
        names: d.names.clone(),
        issuer: d.issuer.clone(),
        not_after: d.not_after,
        chain_pem: a.chain_pem,
        key_pem: a.key_pem,
        created_at: now(),
    })?;
    c.refresh_routes();
    Ok(Reply::Json(
        StatusCode::CREATED,
        json!({"app": app, "sha256": d.sha256, "names": d.names, "issuer": d.issuer, "not_after": d.not_after}),
    ))
}

/// `certs:remove`: by the first hex digits of its hash (8 at least, one certificate only).
pub(super) fn remove(c: &Cluster, app: &str, sha: &str) -> Result<Reply, ApiError> {
    let sha = sha.to_ascii_lowercase();
    if sha.len() < 8 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "name a certificate by at least the first 8 hex digits of its sha256 (zeroku certs lists them)",
        ));
    }
    let matching = c
        .store()
        .app_certs(app)?
        .into_iter()
        .filter(|x| x.sha256.starts_with(&sha))
        .count();
    match matching {
        0 => {
            return Err(ApiError::not_found(format!(
                "app {app} has no certificate {sha}…"
            )))
        }
        1 => {}
        n => {
            return Err(ApiError::invalid(format!(
                "{n} certificates of {app} start with {sha}: give more digits"
            )))
        }
    }
    c.store().remove_cert(app, &sha)?;
    c.refresh_routes();
    ok(json!({"app": app, "removed": sha}))
}

fn own_frontend(caller: &Caller, name: &str) -> Result<(), ApiError> {
    if caller.role == Role::Frontend && caller.node.as_deref() == Some(name) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "only frontend {name}'s own token may fetch certificates for it"
        )))
    }
}

/// A certificate's chain and key, for a frontend.
pub(super) fn for_frontend(
    c: &Cluster,
    caller: &Caller,
    name: &str,
    sha: &str,
) -> Result<Reply, ApiError> {
    own_frontend(caller, name)?;
    let cert = c
        .store()
        .cert_by_sha(sha)?
        .ok_or_else(|| ApiError::not_found(format!("no certificate {sha}")))?;
    ok(json!({"chain_pem": cert.chain_pem, "key_pem": cert.key_pem}))
}
