//! A certificate chain and its key as the master takes them (from the ACME CA or
//! `zeroku certs:add`): checked to belong together, and described (names, issuer, expiry)
//! before they are stored and served. Pure: no store, no network.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio_rustls::rustls;
use x509_parser::prelude::*;

/// What a chain says of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    /// SHA-256 of the chain's PEM, hex: how frontends ask for it.
    pub sha256: String,
    /// The DNS names of the first certificate (subject alternative names, else its common name).
    pub names: Vec<String>,
    /// The issuer's common name (its whole name where it has none).
    pub issuer: String,
    /// Unix seconds.
    pub not_after: u64,
}

/// Checks that `chain_pem` is a PEM certificate chain and `key_pem` the private key of its
/// first certificate, and describes the chain; the error says what is wrong in words a user
/// can act on.
pub fn describe(chain_pem: &str, key_pem: &str) -> Result<Described, String> {
    let chain: Vec<_> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    let Some(leaf) = chain.first() else {
        return Err(
            "the certificate file holds no certificate (-----BEGIN CERTIFICATE-----)".into(),
        );
    };
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| format!("the key is not PEM: {e}"))?
        .ok_or("the key file holds no private key (-----BEGIN PRIVATE KEY-----)")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            "the key is not the certificate's (its public key differs)".to_string()
        }
        e => format!("the certificate and key cannot be used: {e}"),
    })?;
    let (_, x509) = X509Certificate::from_der(leaf.as_ref())
        .map_err(|e| format!("the first certificate cannot be read: {e}"))?;
    let mut names: Vec<String> = x509
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::DNSName(n) => Some(n.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            x509.subject()
                .iter_common_name()
                .filter_map(|c| c.as_str().ok())
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    if names.is_empty() {
        return Err("the certificate names no DNS name".into());
    }
    names.sort();
    names.dedup();
    let issuer = x509
        .issuer()
        .iter_common_name()
        .filter_map(|c| c.as_str().ok())
        .next()
        .map_or_else(|| x509.issuer().to_string(), str::to_string);
    let not_after = u64::try_from(x509.validity().not_after.timestamp()).unwrap_or(0);
    Ok(Described {
        sha256: Sha256::digest(chain_pem.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        names,
        issuer,
        not_after,
    })
}

pub use zeroku_conf::names::cert_covers as covers;

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn a_chain_and_its_key_are_described() {
        let (chain, key) = self_signed(&["www.shop.example.com", "shop.example.com"]);
        let d = describe(&chain, &key).unwrap();
        assert_eq!(d.names, ["shop.example.com", "www.shop.example.com"]);
        assert!(d.not_after > 1_700_000_000);
        assert_eq!(d.sha256.len(), 64);
    }

    #[test]
    fn another_certificates_key_is_refused_in_words() {
        let (chain, _) = self_signed(&["a.example.com"]);
        let (_, other_key) = self_signed(&["b.example.com"]);
        let e = describe(&chain, &other_key).unwrap_err();
        assert!(e.contains("not the certificate's"), "{e}");
        let e = describe("hello", &other_key).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
        let e = describe(&chain, "").unwrap_err();
        assert!(e.contains("no private key"), "{e}");
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(covers("*.example.com", "shop.example.com"));
        assert!(!covers("*.example.com", "a.shop.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(covers("shop.example.com", "shop.example.com"));
        assert!(!covers("shop.example.com", "www.shop.example.com"));
    }
}
