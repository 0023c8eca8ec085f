//! TLS termination: a rustls server config from PEM files (certificate
//! chain and private key), HTTP/1.1 over ALPN.

use std::io::BufReader;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A TLS acceptor for `cert` (PEM chain) and `key` (PEM PKCS#8, PKCS#1 or
/// SEC1); errors name the file and what is wrong with it.
pub fn acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    let open = |p: &str| {
        std::fs::File::open(p)
            .map(BufReader::new)
            .map_err(|e| format!("cannot read {p}: {e}"))
    };
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{cert} is not a PEM certificate chain: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{cert} holds no certificate"));
    }
    let key_der = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| format!("{key} is not a PEM private key: {e}"))?
        .ok_or_else(|| format!("{key} holds no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("{cert} and {key} do not make a usable certificate: {e}"))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}
