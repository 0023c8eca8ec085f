//! Apps' TLS certificates: those the master obtained over ACME (`source = "auto"`, at most one
//! per app: a renewal replaces it) and those given with `zeroku certs:add` (`"manual"`), with
//! their private keys (the database is 0600, in the master's 0700 directory; keys leave it
//! only for frontends), the last ACME error per app, and the ACME account per directory.

use super::{now, Result, Store};
use rusqlite::{params, OptionalExtension};

/// A certificate chain and its key.
#[derive(Debug, Clone, PartialEq)]
pub struct Cert {
    pub app: String,
    /// SHA-256 of `chain_pem`, hex.
    pub sha256: String,
    /// `auto` (ACME) or `manual` (`certs:add`).
    pub source: String,
    pub names: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_after: u64,
    pub chain_pem: String,
    pub key_pem: String,
    pub created_at: u64,
}

/// How obtaining an app's certificate went last.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CertStatus {
    /// Empty after a success.
    pub last_error: String,
    pub error_at: u64,
    /// Failures in a row.
    pub failures: u32,
    /// No new order before this (unix seconds): failures back off.
    pub next_try: u64,
    /// The names that failed last (the others are ordered without them meanwhile); empty
    /// when the order failed as a whole.
    pub failed_names: Vec<String>,
}

fn cert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Cert> {
    let names: String = r.get(3)?;
    Ok(Cert {
        app: r.get(0)?,
        sha256: r.get(1)?,
        source: r.get(2)?,
        names: serde_json::from_str(&names).unwrap_or_default(),
        issuer: r.get(4)?,
        not_after: r.get(5)?,
        chain_pem: r.get(6)?,
        key_pem: r.get(7)?,
        created_at: r.get(8)?,
    })
}

const COLUMNS: &str =
    "app, sha256, source, names, issuer, not_after, chain_pem, key_pem, created_at";

impl Store {
    /// Every certificate, by app then expiry.
    pub fn certs(&self) -> Result<Vec<Cert>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM certs ORDER BY app, not_after"
        ))?;
        let rows = st.query_map([], cert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every certificate without its chain and key (what the route table needs).
    pub fn cert_refs(&self) -> Result<Vec<Cert>> {
        let mut st = self.db.prepare(
            "SELECT app, sha256, source, names, issuer, not_after, '', '', created_at FROM certs ORDER BY app, not_after",
        )?;
        let rows = st.query_map([], cert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// One app's certificates.
    pub fn app_certs(&self, app: &str) -> Result<Vec<Cert>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {COLUMNS} FROM certs WHERE app = ?1 ORDER BY not_after"
        ))?;
        let rows = st.query_map([app], cert_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The certificate with this chain hash, of any app.
    pub fn cert_by_sha(&self, sha256: &str) -> Result<Option<Cert>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {COLUMNS} FROM certs WHERE sha256 = ?1 LIMIT 1"),
                [sha256],
                cert_row,
            )
            .optional()?)
    }

    /// Stores `cert`; an `auto` one replaces the app's earlier `auto` ones, but for those
    /// still valid for a name it lacks (one that failed this time: served until they end).
    pub fn put_cert(&mut self, cert: &Cert) -> Result<()> {
        let older = if cert.source == "auto" {
            self.app_certs(&cert.app)?
        } else {
            Vec::new()
        };
        let tx = self.db.transaction()?;
        for old in older.iter().filter(|o| o.source == "auto") {
            let still_needed =
                old.not_after > now() && old.names.iter().any(|n| !cert.names.contains(n));
            if !still_needed {
                tx.execute(
                    "DELETE FROM certs WHERE app = ?1 AND sha256 = ?2",
                    params![cert.app, old.sha256],
                )?;
            }
        }
        // Not for an app deleted (or renamed) while its order ran.
        tx.execute(
            &format!("INSERT OR REPLACE INTO certs ({COLUMNS}) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 WHERE EXISTS (SELECT 1 FROM apps WHERE name = ?1)"),
            params![
                cert.app,
                cert.sha256,
                cert.source,
                serde_json::to_string(&cert.names)?,
                cert.issuer,
                cert.not_after,
                cert.chain_pem,
                cert.key_pem,
                cert.created_at,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes an app's certificate whose hash starts with `sha_prefix` (at least 8 hex
    /// digits); how many went.
    pub fn remove_cert(&self, app: &str, sha_prefix: &str) -> Result<usize> {
        Ok(self.db.execute(
            "DELETE FROM certs WHERE app = ?1 AND substr(sha256, 1, length(?2)) = ?2",
            params![app, sha_prefix],
        )?)
    }

    pub fn cert_status(&self, app: &str) -> Result<CertStatus> {
        Ok(self
            .db
            .query_row(
                "SELECT last_error, error_at, failures, next_try, failed_names FROM cert_status WHERE app = ?1",
                [app],
                |r| {
                    let names: String = r.get(4)?;
                    Ok(CertStatus {
                        last_error: r.get(0)?,
                        error_at: r.get(1)?,
                        failures: r.get(2)?,
                        next_try: r.get(3)?,
                        failed_names: serde_json::from_str(&names).unwrap_or_default(),
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// Records a failed attempt for `app` (`failed_names`: the names that failed, when the
    /// others did not; added to those that failed before while their back-off lasts): the
    /// next waits `backoff(failures)` seconds.
    pub fn cert_failed(
        &self,
        app: &str,
        error: &str,
        failed_names: &[String],
        backoff: impl Fn(u32) -> u64,
    ) -> Result<()> {
        let before = self.cert_status(app)?;
        let failures = before.failures.saturating_add(1);
        let at = now();
        let mut failed_names = failed_names.to_vec();
        if before.next_try > at && !failed_names.is_empty() {
            failed_names.extend(before.failed_names);
            failed_names.sort();
            failed_names.dedup();
        }
        self.db.execute(
            "INSERT OR REPLACE INTO cert_status (app, last_error, error_at, failures, next_try, failed_names) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![app, error, at, failures, at.saturating_add(backoff(failures)), serde_json::to_string(&failed_names)?],
        )?;
        Ok(())
    }

    /// Forgets an app's failures: it has a certificate for every name it wants.
    pub fn cert_succeeded(&self, app: &str) -> Result<()> {
        self.db
            .execute("DELETE FROM cert_status WHERE app = ?1", [app])?;
        Ok(())
    }

    /// Forgets an app's back-off (`certs:auto` asked again): try at once, unless the last
    /// failure was less than a minute ago (asking again and again must not spend the CA's
    /// limits).
    pub fn cert_retry_now(&self, app: &str) -> Result<()> {
        self.db.execute(
            "UPDATE cert_status SET next_try = 0 WHERE app = ?1 AND error_at < ?2",
            params![app, now().saturating_sub(60)],
        )?;
        Ok(())
    }

    /// The ACME account kept for `directory` (its credentials, JSON).
    pub fn acme_account(&self, directory: &str) -> Result<Option<String>> {
        Ok(self
            .db
            .query_row(
                "SELECT credentials FROM acme_accounts WHERE directory = ?1",
                [directory],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn put_acme_account(&self, directory: &str, credentials: &str) -> Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO acme_accounts (directory, credentials, created_at) VALUES (?1, ?2, ?3)",
            params![directory, credentials, now()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(app: &str, sha: &str, source: &str) -> Cert {
        Cert {
            app: app.into(),
            sha256: sha.into(),
            source: source.into(),
            names: vec![format!("{app}.example.com")],
            issuer: "Pebble Intermediate CA".into(),
            not_after: 2_000_000_000,
            chain_pem: "chain".into(),
            key_pem: "key".into(),
            created_at: 1,
        }
    }

    #[test]
    fn a_renewal_replaces_the_auto_certificate_and_keeps_manual_ones() {
        let mut s = Store::open_in_memory().unwrap();
        // Not for an app that is not there (deleted while its order ran).
        s.put_cert(&cert("web", "aaaa1111", "manual")).unwrap();
        assert!(s.certs().unwrap().is_empty());
        s.create_app("web").unwrap();
        s.put_cert(&cert("web", "aaaa1111", "manual")).unwrap();
        s.put_cert(&cert("web", "bbbb2222", "auto")).unwrap();
        s.cert_failed("web", "rate limited", &[], |n| 60 * u64::from(n))
            .unwrap();
        assert_eq!(s.cert_status("web").unwrap().failures, 1);
        s.put_cert(&cert("web", "cccc3333", "auto")).unwrap();
        let shas: Vec<_> = s
            .app_certs("web")
            .unwrap()
            .into_iter()
            .map(|c| c.sha256)
            .collect();
        assert_eq!(shas, ["aaaa1111", "cccc3333"]);
        assert_eq!(s.cert_status("web").unwrap().failures, 1);
        s.cert_succeeded("web").unwrap();
        assert_eq!(s.cert_status("web").unwrap(), CertStatus::default());
        assert_eq!(s.remove_cert("web", "aaaa").unwrap(), 1);
        assert_eq!(s.certs().unwrap().len(), 1);
        assert!(s.cert_by_sha("cccc3333").unwrap().is_some());
    }

    #[test]
    fn failures_back_off() {
        let s = Store::open_in_memory().unwrap();
        let bad = ["www.shop.example".to_string()];
        s.cert_failed("web", "DNS", &[], |n| 60 << n).unwrap();
        s.cert_failed("web", "DNS", &bad, |n| 60 << n).unwrap();
        let st = s.cert_status("web").unwrap();
        assert_eq!(st.failures, 2);
        assert_eq!(st.failed_names, bad);
        assert!(st.next_try >= now() + 240);
        // Another name failing during the back-off: both are left out.
        let other = ["api.shop.example".to_string()];
        s.cert_failed("web", "DNS", &other, |n| 60 << n).unwrap();
        assert_eq!(
            s.cert_status("web").unwrap().failed_names,
            ["api.shop.example", "www.shop.example"]
        );
        // Asked again within a minute of a failure: the back-off stands.
        s.cert_retry_now("web").unwrap();
        assert!(s.cert_status("web").unwrap().next_try > 0);
        s.db.execute("UPDATE cert_status SET error_at = 1", [])
            .unwrap();
        s.cert_retry_now("web").unwrap();
        assert_eq!(s.cert_status("web").unwrap().next_try, 0);
    }

    #[test]
    fn a_renewal_without_a_name_keeps_the_certificate_that_has_it_until_it_ends() {
        let mut s = Store::open_in_memory().unwrap();
        s.create_app("web").unwrap();
        let mut all = cert("web", "full", "auto");
        all.names = vec!["a.example".into(), "b.example".into()];
        s.put_cert(&all).unwrap();
        let mut part = cert("web", "part", "auto");
        part.names = vec!["a.example".into()];
        s.put_cert(&part).unwrap();
        let shas: Vec<_> = s
            .app_certs("web")
            .unwrap()
            .into_iter()
            .map(|c| c.sha256)
            .collect();
        assert_eq!(shas.len(), 2, "{shas:?}");
        // A later one with every name: the others go.
        let mut again = cert("web", "again", "auto");
        again.names = vec!["a.example".into(), "b.example".into()];
        s.put_cert(&again).unwrap();
        let shas: Vec<_> = s
            .app_certs("web")
            .unwrap()
            .into_iter()
            .map(|c| c.sha256)
            .collect();
        assert_eq!(shas, ["again"]);
    }
}
