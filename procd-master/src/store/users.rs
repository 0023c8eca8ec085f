//! Users, their per-app permissions, and the audit log.
//!
//! Heroku's four app permissions: `view` (see the app, its releases,
//! processes and logs), `deploy` (push, config, run, rollback), `operate`
//! (scale, restart, stop) and `manage` (domains, access, settings, destroy).
//! Any grant includes `view`. Admins hold every permission on every app.

use super::{now, Result, Store};
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// One app permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Perm {
    View,
    Deploy,
    Operate,
    Manage,
}

impl Perm {
    pub const ALL: [Perm; 4] = [Perm::View, Perm::Deploy, Perm::Operate, Perm::Manage];

    pub fn name(self) -> &'static str {
        match self {
            Perm::View => "view",
            Perm::Deploy => "deploy",
            Perm::Operate => "operate",
            Perm::Manage => "manage",
        }
    }

    /// `view,deploy` → the permissions, with `view` added; an error names a bad word.
    pub fn parse_list(s: &str) -> std::result::Result<Vec<Perm>, String> {
        let mut out = vec![Perm::View];
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let p = Perm::ALL
                .into_iter()
                .find(|p| p.name() == w)
                .ok_or_else(|| {
                    format!("unknown permission {w:?} (known: view, deploy, operate, manage)")
                })?;
            out.push(p);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    pub fn join(perms: &[Perm]) -> String {
        perms.iter().map(|p| p.name()).collect::<Vec<_>>().join(",")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub admin: bool,
    pub created_at: u64,
}

/// One line of the audit log: who changed what, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: u64,
    pub actor: String,
    pub app: String,
    pub action: String,
    pub detail: String,
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        name: r.get(0)?,
        admin: r.get(1)?,
        created_at: r.get(2)?,
    })
}

impl Store {
    /// Adds a user; false if the name is taken.
    pub fn add_user(&self, name: &str, admin: bool) -> Result<bool> {
        let n = self.db.execute(
            "INSERT OR IGNORE INTO users (name, admin, created_at) VALUES (?1, ?2, ?3)",
            params![name, admin, now()],
        )?;
        Ok(n > 0)
    }

    pub fn user(&self, name: &str) -> Result<Option<User>> {
        Ok(self
            .db
            .query_row(
                "SELECT name, admin, created_at FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()?)
    }

    pub fn users(&self) -> Result<Vec<User>> {
        let mut st = self
            .db
            .prepare("SELECT name, admin, created_at FROM users ORDER BY name")?;
        let rows = st.query_map([], user_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Removes a user with their tokens, app permissions and SSH keys.
    pub fn remove_user(&mut self, name: &str) -> Result<bool> {
        let role = serde_json::to_string(&super::Role::User)?;
        let tx = self.db.transaction()?;
        tx.execute(
            "DELETE FROM tokens WHERE role = ?1 AND node = ?2",
            params![role, name],
        )?;
        tx.execute("DELETE FROM app_access WHERE user = ?1", [name])?;
        tx.execute("DELETE FROM ssh_keys WHERE user = ?1", [name])?;
        let n = tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Sets `user`'s permissions on `app` (replacing what they had).
    pub fn set_access(&self, app: &str, user: &str, perms: &[Perm]) -> Result<()> {
        self.db.execute(
            "INSERT INTO app_access (app, user, perms) VALUES (?1, ?2, ?3)
             ON CONFLICT(app, user) DO UPDATE SET perms = excluded.perms",
            params![app, user, Perm::join(perms)],
        )?;
        Ok(())
    }

    pub fn remove_access(&self, app: &str, user: &str) -> Result<bool> {
        Ok(self.db.execute(
            "DELETE FROM app_access WHERE app = ?1 AND user = ?2",
            params![app, user],
        )? > 0)
    }

    /// Who may do what on `app`: (user, permissions), by user.
    pub fn access(&self, app: &str) -> Result<Vec<(String, Vec<Perm>)>> {
        let mut st = self
            .db
            .prepare("SELECT user, perms FROM app_access WHERE app = ?1 ORDER BY user")?;
        let rows = st.query_map([app], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (user, perms) = row?;
            out.push((user, Perm::parse_list(&perms).unwrap_or_default()));
        }
        Ok(out)
    }

    /// `user`'s permissions on `app` (none: empty).
    pub fn perms(&self, app: &str, user: &str) -> Result<Vec<Perm>> {
        let p: Option<String> = self
            .db
            .query_row(
                "SELECT perms FROM app_access WHERE app = ?1 AND user = ?2",
                params![app, user],
                |r| r.get(0),
            )
            .optional()?;
        Ok(p.map(|p| Perm::parse_list(&p).unwrap_or_default())
            .unwrap_or_default())
    }

    /// The apps `user` has any permission on.
    pub fn apps_of(&self, user: &str) -> Result<Vec<String>> {
        let mut st = self
            .db
            .prepare("SELECT app FROM app_access WHERE user = ?1 ORDER BY app")?;
        let rows = st.query_map([user], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Adds a line to the audit log.
    pub fn record(&self, actor: &str, app: &str, action: &str, detail: &str) -> Result<()> {
        self.db.execute(
            "INSERT INTO audit (at, actor, app, action, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![now(), actor, app, action, detail],
        )?;
        Ok(())
    }

    /// The newest `limit` audit lines (of `app`, or all), oldest first.
    pub fn audit(&self, app: Option<&str>, limit: u32) -> Result<Vec<AuditEntry>> {
        let mut st = self.db.prepare(
            "SELECT seq, at, actor, app, action, detail FROM audit
             WHERE ?1 IS NULL OR app = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![app, limit], |r| {
            Ok(AuditEntry {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                app: r.get(3)?,
                action: r.get(4)?,
                detail: r.get(5)?,
            })
        })?;
        let mut out: Vec<AuditEntry> = rows.collect::<rusqlite::Result<_>>()?;
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_get_per_app_permissions_and_lose_everything_when_removed() {
        let mut s = Store::open_in_memory().unwrap();
        assert!(s.add_user("ana", false).unwrap());
        assert!(!s.add_user("ana", true).unwrap(), "taken");
        s.add_token("t-ana", super::super::Role::User, Some("ana"))
            .unwrap();
        assert_eq!(
            Perm::parse_list("deploy, operate").unwrap(),
            vec![Perm::View, Perm::Deploy, Perm::Operate]
        );
        assert!(Perm::parse_list("root").is_err());
        s.set_access("blog", "ana", &Perm::parse_list("deploy").unwrap())
            .unwrap();
        assert_eq!(
            s.perms("blog", "ana").unwrap(),
            vec![Perm::View, Perm::Deploy]
        );
        assert_eq!(s.perms("shop", "ana").unwrap(), vec![]);
        assert_eq!(s.apps_of("ana").unwrap(), vec!["blog".to_string()]);
        s.record("ana", "blog", "PATCH /v1/apps/:app/config", "Set A")
            .unwrap();
        s.record("root", "", "POST /v1/users", "bob").unwrap();
        assert_eq!(s.audit(Some("blog"), 10).unwrap().len(), 1);
        assert_eq!(s.audit(None, 10).unwrap().len(), 2);
        assert_eq!(s.audit(None, 1).unwrap()[0].actor, "root", "the newest");
        assert!(s.remove_user("ana").unwrap());
        assert_eq!(s.token("t-ana").unwrap(), None);
        assert!(s.perms("blog", "ana").unwrap().is_empty());
        assert_eq!(s.audit(None, 10).unwrap().len(), 2, "the log stays");
    }
}
