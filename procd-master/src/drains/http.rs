//! An HTTPS (or HTTP) drain's POST: Heroku's `application/logplex-1` body,
//! over a connection of its own (TLS checked against the system's CA
//! bundle).

use super::{frames, Target};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, OnceLock};
use tokio_rustls::rustls;

/// Sends `messages` (the first has sequence number `first_seq`) to the
/// drain; an answer other than 2xx is an error.
pub async fn post(
    target: &Target,
    d: &crate::store::Drain,
    messages: &[String],
    first_seq: u64,
) -> Result<(), String> {
    let headers = [
        ("Logplex-Msg-Count", messages.len().to_string()),
        ("Logplex-Frame-Id", format!("{}-{first_seq}", d.token)),
        ("Logplex-Drain-Token", d.token.clone()),
    ];
    send(target, "application/logplex-1", &headers, frames(messages)).await
}

/// POSTs `body` to an HTTP(S) target (as [`super::parse`] reads a URL) on a connection of
/// its own; an answer other than 2xx is an error.
pub async fn send(
    target: &Target,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Result<(), String> {
    let Target::Http {
        tls,
        host,
        port,
        path,
    } = target
    else {
        return Err("not an HTTP(S) URL".into());
    };
    let tcp = tokio::net::TcpStream::connect((host.as_str(), *port))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut req = hyper::Request::post(path.as_str())
        .header(hyper::header::HOST, host.as_str())
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::USER_AGENT, "zeroku");
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let req = req
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| format!("cannot make the request: {e}"))?;
    let status = if *tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host:?} is not a server name: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(client_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}: {e}"))?;
        exchange(stream, req).await?
    } else {
        exchange(tcp, req).await?
    };
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("it answered {status}"))
    }
}

async fn exchange<S>(
    stream: S,
    req: hyper::Request<Full<bytes::Bytes>>,
) -> Result<hyper::StatusCode, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    Ok(status)
}

/// The system's CA bundle (`SSL_CERT_FILE`, as OpenSSL reads it, else
/// Debian's), read once.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let path = std::env::var("SSL_CERT_FILE")
                .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
            let pem = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(format!("no CA certificates in {path}"));
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}
