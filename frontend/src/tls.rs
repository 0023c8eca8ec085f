//! TLS termination with rustls: a certificate per name, chosen by SNI, from the apps'
//! certificates the route table names (their chains and keys fetched from the master by
//! hash and kept in memory only), and the configured PEM files (`tls_cert`/`tls_key`) for any
//! other name. HTTP/1.1 over ALPN.

use std::collections::HashMap;
use std::io::BufReader;
use std::sync::{Arc, RwLock};
use tokio_rustls::rustls;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use zeroku_conf::names::cert_covers as covers;
use zeroku_conf::AppRoute;

/// A chain and key from PEM text; errors say what is wrong with which.
pub fn certified_key(chain: &[u8], key: &[u8], what: &str) -> Result<CertifiedKey, String> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut BufReader::new(chain))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} is not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(key))
        .map_err(|e| format!("the key of {what} is not a PEM private key: {e}"))?
        .ok_or_else(|| format!("the key of {what} holds no private key"))?;
    let provider = rustls::crypto::ring::default_provider();
    CertifiedKey::from_der(certs, key_der, &provider)
        .map_err(|e| format!("{what} and its key do not make a usable certificate: {e}"))
}

/// Every certificate this frontend serves.
#[derive(Debug, Default)]
pub struct Certs {
    /// For names no app certificate covers.
    fallback: Option<Arc<CertifiedKey>>,
    /// Chains and keys fetched, by hash.
    by_sha: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Host name → the certificate served for it.
    by_host: RwLock<HashMap<String, Arc<CertifiedKey>>>,
    /// Per host, the certificates of its app that cover it, newest first.
    wanted: RwLock<Vec<(String, Vec<String>)>>,
    /// Hashes being fetched.
    pending: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Certs {
    /// With the configured PEM files, if any.
    pub fn new(cert: &str, key: &str) -> Result<Certs, String> {
        let fallback = if cert.is_empty() {
            None
        } else {
            let read = |p: &str| std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"));
            Some(Arc::new(certified_key(&read(cert)?, &read(key)?, cert)?))
        };
        Ok(Certs {
            fallback,
            ..Default::default()
        })
    }

    /// Takes the route table's certificates: an app's are served only for its own names
    /// (`<app>.<base>` and its custom domains) that they cover, the newest usable one per
    /// name. Returns the hashes to fetch (while they are on their way, a name keeps the
    /// certificate it had: a renewal replaces it without a gap).
    pub fn set_routes(&self, apps: &[AppRoute], base_domain: &str) -> Vec<String> {
        let mut wanted = Vec::new();
        for app in apps {
            let mut certs: Vec<_> = app.certs.iter().collect();
            certs.sort_by_key(|c| std::cmp::Reverse(c.not_after));
            let own = format!("{}.{base_domain}", app.app);
            for host in app.domains.iter().chain(std::iter::once(&own)) {
                let host = host.to_ascii_lowercase();
                let covering: Vec<String> = certs
                    .iter()
                    .filter(|c| c.names.iter().any(|n| covers(n, &host)))
                    .map(|c| c.sha256.clone())
                    .collect();
                if !covering.is_empty() {
                    wanted.push((host, covering));
                }
            }
        }
        let have = self.by_sha.read().unwrap_or_else(|e| e.into_inner());
        let mut missing: Vec<String> = wanted
            .iter()
            .flat_map(|(_, shas)| shas)
            .filter(|sha| !have.contains_key(*sha))
            .cloned()
            .collect();
        drop(have);
        missing.sort();
        missing.dedup();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            missing.retain(|sha| pending.insert(sha.clone()));
        }
        *self.wanted.write().unwrap_or_else(|e| e.into_inner()) = wanted;
        self.rebuild();
        missing
    }

    /// A fetched chain and key.
    pub fn insert(&self, sha: String, key: CertifiedKey) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sha);
        self.by_sha
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sha, Arc::new(key));
        self.rebuild();
    }

    /// A certificate that could not be fetched or used: asked for again with the next table
    /// that names it; the names it was for go on without it.
    pub fn failed(&self, sha: &str) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sha);
        self.rebuild();
    }

    /// Host → certificate: the wanted one once fetched, else the one it had (a renewal being
    /// fetched); fetched ones nothing serves or wants any more are dropped.
    fn rebuild(&self) {
        let wanted = self.wanted.read().unwrap_or_else(|e| e.into_inner());
        let mut by_sha = self.by_sha.write().unwrap_or_else(|e| e.into_inner());
        let mut served = self.by_host.write().unwrap_or_else(|e| e.into_inner());
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_host = HashMap::new();
        for (host, shas) in wanted.iter() {
            // The newest fetched; while a newer one is on its way, what the name had.
            let newest = shas.iter().find_map(|s| by_sha.get(s).map(|k| (s, k)));
            let waiting = |upto: Option<&String>| {
                shas.iter()
                    .take_while(|s| Some(*s) != upto)
                    .any(|s| pending.contains(s))
            };
            let key = match newest {
                Some((s, k)) if !waiting(Some(s)) => Some(k.clone()),
                Some((_, k)) => served.get(host).cloned().or_else(|| Some(k.clone())),
                None if waiting(None) => served.get(host).cloned(),
                None => None,
            };
            if let Some(k) = key {
                by_host.insert(host.clone(), k);
            }
        }
        by_sha.retain(|sha, _| wanted.iter().any(|(_, s)| s.contains(sha)));
        *served = by_host;
    }

    /// The certificate for `host`, if this frontend has one.
    pub fn for_host(&self, host: &str) -> Option<Arc<CertifiedKey>> {
        self.by_host
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&host.to_ascii_lowercase())
            .cloned()
            .or_else(|| self.fallback.clone())
    }
}

/// Picks the certificate by SNI.
#[derive(Debug)]
struct BySni(Arc<Certs>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            Some(name) => self.0.for_host(name),
            None => self.0.fallback.clone(),
        }
    }
}

/// A TLS acceptor serving `certs`.
pub fn acceptor(certs: Arc<Certs>) -> Result<tokio_rustls::TlsAcceptor, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(BySni(certs)));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroku_conf::CertRef;

    fn app(name: &str, domains: &[&str], certs: Vec<CertRef>) -> AppRoute {
        AppRoute {
            app: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            handler: None,
            web: vec![],
            paths: vec![],
            slug: None,
            maintenance: None,
            certs,
            force_https: false,
            hsts: None,
        }
    }

    fn cref(sha: &str, names: &[&str], not_after: u64) -> CertRef {
        CertRef {
            sha256: sha.into(),
            names: names.iter().map(|d| d.to_string()).collect(),
            not_after,
        }
    }

    fn apps() -> Vec<AppRoute> {
        vec![
            app(
                "shop",
                &["shop.com"],
                vec![cref("s1", &["shop.com", "shop.example.net"], 10)],
            ),
            // "evil" holds a certificate naming shop's domain: not used for shop.
            app(
                "evil",
                &[],
                vec![cref("e1", &["shop.com", "evil.example.net"], 20)],
            ),
        ]
    }

    #[test]
    fn an_apps_certificate_is_served_only_for_its_own_names() {
        let certs = Certs::default();
        let missing = certs.set_routes(&apps(), "example.net");
        assert_eq!(missing, ["e1", "s1"]);
        // Asked for once, while they are on their way.
        assert!(certs.set_routes(&apps(), "example.net").is_empty());
        let mut wanted = certs.wanted.read().unwrap().clone();
        wanted.sort();
        let pair = |h: &str, s: &str| (h.to_string(), vec![s.to_string()]);
        assert_eq!(
            wanted,
            [
                pair("evil.example.net", "e1"),
                pair("shop.com", "s1"),
                pair("shop.example.net", "s1")
            ]
        );
        // One that cannot be fetched is asked for again with the next table.
        certs.failed("s1");
        assert_eq!(certs.set_routes(&apps(), "example.net"), ["s1"]);
    }

    #[test]
    fn the_newest_certificate_comes_first_and_wildcards_cover_one_label() {
        let certs = Certs::default();
        certs.set_routes(
            &[app(
                "shop",
                &["a.shop.com"],
                vec![
                    cref("old", &["a.shop.com"], 10),
                    cref("new", &["*.shop.com"], 20),
                ],
            )],
            "example.net",
        );
        let wanted = certs.wanted.read().unwrap().clone();
        assert_eq!(
            wanted,
            [(
                "a.shop.com".to_string(),
                vec!["new".to_string(), "old".to_string()]
            )]
        );
        assert!(covers("*.shop.com", "a.shop.com"));
        assert!(!covers("*.shop.com", "b.a.shop.com"));
    }
}
