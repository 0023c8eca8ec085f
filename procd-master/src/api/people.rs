//! People: users and their tokens, who may do what on each app, and the audit log.

use super::auth::Caller;
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::store::{Perm, Role};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use zeroku_conf::names;

fn check_name(name: &str) -> Result<(), ApiError> {
    names::node(name).map_err(|e| ApiError::invalid(format!("user name: {e}")))
}

/// Who the caller is, and (for a user) what they may do on which app.
pub(super) fn whoami(c: &Cluster, caller: &Caller) -> Result<Value, ApiError> {
    let role = format!("{:?}", caller.role).to_lowercase();
    let mut v = json!({"name": caller.actor(), "role": role, "admin": caller.admin});
    if let Some(u) = caller.user() {
        let s = c.store();
        let mut apps = serde_json::Map::new();
        for app in s.apps_of(u)? {
            apps.insert(app.clone(), json!(Perm::join(&s.perms(&app, u)?)));
        }
        v["apps"] = Value::Object(apps);
    }
    Ok(v)
}

pub(super) fn users(c: &Cluster) -> Result<Value, ApiError> {
    Ok(json!(c.store().users()?))
}

#[derive(Deserialize)]
pub(super) struct NewUser {
    name: String,
    #[serde(default)]
    admin: bool,
}

/// Makes a user and their first token (shown once: the master keeps only its hash).
pub(super) fn add_user(c: &Cluster, u: NewUser) -> Result<Value, ApiError> {
    check_name(&u.name)?;
    if !c.store().add_user(&u.name, u.admin)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "a user named {:?} exists already (see `zeroku users`)",
                u.name
            ),
        ));
    }
    let token = super::new_token()?;
    c.store().add_token(&token, Role::User, Some(&u.name))?;
    Ok(json!({"name": u.name, "admin": u.admin, "token": token}))
}

/// Another token for a user (their old ones keep working until the user is removed).
pub(super) fn user_token(c: &Cluster, name: &str) -> Result<Value, ApiError> {
    if c.store().user(name)?.is_none() {
        return Err(ApiError::not_found(format!(
            "no user named {name:?} (see `zeroku users`)"
        )));
    }
    let token = super::new_token()?;
    c.store().add_token(&token, Role::User, Some(name))?;
    Ok(json!({"name": name, "token": token}))
}

pub(super) fn remove_user(c: &Cluster, name: &str) -> Result<Value, ApiError> {
    if !c.store().remove_user(name)? {
        return Err(ApiError::not_found(format!(
            "no user named {name:?} (see `zeroku users`)"
        )));
    }
    Ok(json!({"removed": name}))
}

pub(super) fn access(c: &Cluster, app: &str) -> Result<Value, ApiError> {
    let rows: Vec<Value> = c
        .store()
        .access(app)?
        .into_iter()
        .map(|(user, perms)| json!({"user": user, "permissions": Perm::join(&perms)}))
        .collect();
    Ok(json!(rows))
}

#[derive(Deserialize)]
pub(super) struct Grant {
    /// `view,deploy,operate,manage` (view is always included).
    permissions: String,
}

pub(super) fn set_access(c: &Cluster, app: &str, user: &str, g: Grant) -> Result<Value, ApiError> {
    check_name(user)?;
    if c.store().user(user)?.is_none() {
        return Err(ApiError::not_found(format!(
            "no user named {user:?}: an admin adds users with `zeroku users:add {user}`"
        )));
    }
    let perms = Perm::parse_list(&g.permissions).map_err(ApiError::invalid)?;
    c.store().set_access(app, user, &perms)?;
    Ok(json!({"app": app, "user": user, "permissions": Perm::join(&perms)}))
}

pub(super) fn remove_access(
    c: &Cluster,
    caller: &Caller,
    app: &str,
    user: &str,
) -> Result<Value, ApiError> {
    // The last manager may not lock everybody out but the admins by accident.
    let managers = c
        .store()
        .access(app)?
        .into_iter()
        .filter(|(u, p)| u != user && p.contains(&Perm::Manage))
        .count();
    if managers == 0 && !caller.admin && caller.user() == Some(user) {
        return Err(ApiError::invalid(format!(
            "you are the last user who may manage {app}: give `manage` to someone else first"
        )));
    }
    if !c.store().remove_access(app, user)? {
        return Err(ApiError::not_found(format!(
            "user {user:?} has no access to {app}"
        )));
    }
    Ok(json!({"app": app, "removed": user}))
}

/// The newest `lines` audit entries (of `app`, or of everything).
pub(super) fn audit(c: &Cluster, app: Option<&str>, lines: u32) -> Result<Value, ApiError> {
    Ok(json!(c.store().audit(app, lines.clamp(1, 10_000))?))
}
