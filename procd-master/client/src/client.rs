//! [`Client`]: the HTTP client of the master's operator API. Errors carry the API's stable code
//! and human message unchanged.

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
pub use hyper::Method;
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client as Hyper};
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("invalid master URL {0:?}: expected http://HOST:PORT")]
    Url(String),
    #[error(
        "cannot reach the zeroku master at {url}: {why} (is it running? is ZEROKU_URL right?)"
    )]
    Connect { url: String, why: String },
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the master answered {status} with something that is not zeroku's API JSON: {body}")]
    Protocol { status: u16, body: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: Hyper<HttpConnector, Body>,
}

/// A WebSocket to the master (a one-off's terminal).
pub type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A request body: bytes in memory, or a stream (a file, a pipe).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body streamed from `r` as it is read.
pub fn reader_body(r: impl tokio::io::AsyncRead + Send + Sync + 'static) -> Body {
    BodyExt::boxed(StreamBody::new(
        tokio_util::io::ReaderStream::new(r).map_ok(Frame::data),
    ))
}

fn full(b: Bytes) -> Body {
    Full::new(b).map_err(|e| match e {}).boxed()
}

async fn open(file: &Path) -> Result<tokio::fs::File, ClientError> {
    tokio::fs::File::open(file)
        .await
        .map_err(|source| ClientError::Io {
            context: format!("cannot read {}", file.display()),
            source,
        })
}

impl Client {
    pub fn new(base: &str, token: &str) -> Result<Client, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(ClientError::Url(base));
        }
        let http = Hyper::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Ok(Client {
            base,
            token: token.trim().to_string(),
            http,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Body,
        ctype: &str,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self.raw(method, path, body, ctype).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                why: e.to_string(),
            })?
            .to_bytes();
        Ok((status, bytes))
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Body,
        ctype: &str,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ClientError> {
        let url = format!("{}{}", self.base, path);
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", ctype)
            .body(body)
            .map_err(|_| ClientError::Url(self.base.clone()))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                why: error_chain(&e),
            })?;
        Ok(resp)
    }

    fn decode<T: DeserializeOwned>(status: StatusCode, bytes: &[u8]) -> Result<T, ClientError> {
        if !status.is_success() {
            let v: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|_| ClientError::Protocol {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
                })?;
            return Err(ClientError::Api {
                status: status.as_u16(),
                code: v["error"]["code"].as_str().unwrap_or("unknown").to_string(),
                message: v["error"]["message"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .to_string(),
            });
        }
        serde_json::from_slice(bytes).map_err(|_| ClientError::Protocol {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (s, b) = self
            .call(Method::GET, path, full(Bytes::new()), "application/json")
            .await?;
        Self::decode(s, &b)
    }

    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body).map_err(|e| ClientError::Io {
            context: "encoding request".into(),
            source: std::io::Error::other(e),
        })?;
        let (s, b) = self
            .call(method, path, full(body.into()), "application/json")
            .await?;
        Self::decode(s, &b)
    }

    /// Opens a WebSocket to `path` (an upgrade authenticated like every
    /// other call). A refusal is the API's error, as for [`get`](Self::get).
    pub async fn websocket(&self, path: &str) -> Result<Socket, ClientError> {
        use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Error as WsError};
        let authority = &self.base["http://".len()..];
        let mut req = format!("ws://{authority}{path}")
            .into_client_request()
            .map_err(|_| ClientError::Url(self.base.clone()))?;
        let bearer = format!("Bearer {}", self.token)
            .parse()
            .map_err(|_| ClientError::Url(self.base.clone()))?;
        req.headers_mut().insert("authorization", bearer);
        let connect_err = |why: String| ClientError::Connect {
            url: self.base.clone(),
            why,
        };
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        match tokio_tungstenite::client_async(req, tcp).await {
            Ok((ws, _)) => Ok(ws),
            Err(WsError::Http(resp)) => {
                let body = resp.body().clone().unwrap_or_default();
                Err(Self::decode::<serde_json::Value>(resp.status(), &body)
                    .err()
                    .unwrap_or(ClientError::Protocol {
                        status: resp.status().as_u16(),
                        body: "a WebSocket upgrade answered without switching protocols".into(),
                    }))
            }
            Err(e) => Err(connect_err(e.to_string())),
        }
    }

    /// PUTs a file's bytes, streamed.
    pub async fn put_file<T: DeserializeOwned>(
        &self,
        path: &str,
        file: &Path,
    ) -> Result<T, ClientError> {
        let body = reader_body(open(file).await?);
        let (s, b) = self
            .call(Method::PUT, path, body, "application/octet-stream")
            .await?;
        Self::decode(s, &b)
    }

    /// POSTs a file's bytes, streamed, and hands each line of the
    /// (streamed) answer to `on_line` as it arrives.
    pub async fn post_file_lines(
        &self,
        path: &str,
        file: &Path,
        on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let body = reader_body(open(file).await?);
        self.post_lines(path, body, on_line).await
    }

    /// POSTs `body` and hands each line of the answer to `on_line` as it
    /// arrives.
    pub async fn post_lines(
        &self,
        path: &str,
        body: Body,
        mut on_line: impl FnMut(&str),
    ) -> Result<(), ClientError> {
        let mut body = self
            .streamed(Method::POST, path, body, "application/octet-stream")
            .await?;
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                why: format!("the answer was cut off: {e}"),
            })?;
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    on_line(String::from_utf8_lossy(&line[..i]).as_ref());
                }
            }
        }
        if !buf.is_empty() {
            on_line(String::from_utf8_lossy(&buf).as_ref());
        }
        Ok(())
    }

    /// The body of a successful answer, to read as it arrives; an error
    /// answer becomes the API's error.
    async fn streamed(
        &self,
        method: Method,
        path: &str,
        body: Body,
        ctype: &str,
    ) -> Result<hyper::body::Incoming, ClientError> {
        let resp = self.raw(method, path, body, ctype).await?;
        let status = resp.status();
        let body = resp.into_body();
        if status.is_success() {
            return Ok(body);
        }
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Err(match Self::decode::<serde_json::Value>(status, &bytes) {
            Err(e) => e,
            Ok(_) => ClientError::Protocol {
                status: status.as_u16(),
                body: String::new(),
            },
        })
    }

    /// GETs `path` into `dest`, streaming; returns the bytes written.
    pub async fn download(&self, path: &str, dest: &Path) -> Result<u64, ClientError> {
        let mut body = self
            .streamed(Method::GET, path, full(Bytes::new()), "application/json")
            .await?;
        let io = |source| ClientError::Io {
            context: format!("cannot write {}", dest.display()),
            source,
        };
        let mut f = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Connect {
                url: self.base.clone(),
                why: format!("download interrupted: {e}"),
            })?;
            if let Ok(data) = frame.into_data() {
                n += data.len() as u64;
                f.write_all(&data).await.map_err(io)?;
            }
        }
        f.flush().await.map_err(io)?;
        Ok(n)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
