//! Which app a request is for: `<app>.<base domain>` or a custom domain,
//! from the route table the master publishes.

use std::collections::HashMap;
use zeroku_conf::{AppRoute, RouteTable};

/// The current table, indexed by host name.
#[derive(Debug, Default)]
pub struct Routes {
    pub generation: u64,
    by_host: HashMap<String, AppRoute>,
    /// ACME HTTP-01 challenges under way: token → key authorization.
    acme: HashMap<String, String>,
    /// The master's ACME account thumbprint (empty: none yet).
    pub acme_thumbprint: String,
}

impl Routes {
    pub fn new(table: RouteTable, base_domain: &str) -> Routes {
        let mut by_host = HashMap::new();
        for app in table.apps {
            for d in &app.domains {
                by_host.insert(d.to_ascii_lowercase(), app.clone());
            }
            by_host.insert(format!("{}.{}", app.app, base_domain), app);
        }
        Routes {
            generation: table.generation,
            by_host,
            acme_thumbprint: table.acme_thumbprint,
            acme: table
                .acme
                .into_iter()
                .map(|c| (c.token, c.key_authorization))
                .collect(),
        }
    }

    /// The answer to the ACME challenge `token`, if one is under way.
    pub fn acme(&self, token: &str) -> Option<&str> {
        self.acme.get(token).map(String::as_str)
    }

    /// The app for a `Host` header value (port and trailing dot ignored,
    /// case-insensitive).
    pub fn lookup(&self, host: &str) -> Option<&AppRoute> {
        // The usual Host needs no copy: lowercase, at most a port to drop.
        let bare = host
            .rsplit_once(':')
            .filter(|(h, p)| !h.contains(':') && p.bytes().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        let plain = !bare.is_empty()
            && !bare.ends_with('.')
            && bare
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-');
        if plain {
            return self.by_host.get(bare);
        }
        self.by_host.get(&normalize_host(host))
    }
}

/// `Chat.Localhost:8080` → `chat.localhost`; `[::1]:80` → `[::1]`.
pub fn normalize_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1])
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    without_port.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, domains: &[&str]) -> AppRoute {
        AppRoute {
            app: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            handler: None,
            web: vec![],
            paths: vec![],
            slug: None,
            maintenance: None,
            certs: vec![],
            force_https: false,
            hsts: None,
        }
    }

    #[test]
    fn lookup_normalizes_like_normalize_host() {
        let r = Routes::new(
            RouteTable {
                generation: 1,
                apps: vec![app("chat", &["www.example.test"])],
                acme: vec![],
                acme_thumbprint: String::new(),
            },
            "localhost",
        );
        for h in [
            "chat.localhost",
            "chat.localhost:8080",
            "Chat.Localhost:8080",
            "chat.localhost.",
            "chat.localhost:",
            " chat.localhost ",
            "www.example.test:443",
            "WWW.example.test",
        ] {
            assert_eq!(r.lookup(h).map(|a| a.app.as_str()), Some("chat"), "{h:?}");
        }
        for h in ["", ":80", "chat.localhost:x", "[::1]:80", "other.localhost"] {
            assert!(r.lookup(h).is_none(), "{h:?}");
        }
    }

    #[test]
    fn hosts() {
        let r = Routes::new(
            RouteTable {
                generation: 3,
                apps: vec![app("chat", &[]), app("site", &["www.example.test"])],
                acme: vec![zeroku_conf::AcmeChallenge {
                    token: "tok".into(),
                    key_authorization: "tok.thumb".into(),
                }],
                acme_thumbprint: "thumb".into(),
            },
            "localhost",
        );
        assert_eq!(r.lookup("chat.localhost:8080").unwrap().app, "chat");
        assert_eq!(r.lookup("CHAT.localhost.").unwrap().app, "chat");
        assert_eq!(r.lookup("www.example.test").unwrap().app, "site");
        assert_eq!(r.lookup("site.localhost").unwrap().app, "site");
        assert!(r.lookup("localhost:8080").is_none());
        assert!(r.lookup("nope.localhost").is_none());
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(r.acme("tok"), Some("tok.thumb"));
        assert_eq!(r.acme("other"), None);
    }
}
