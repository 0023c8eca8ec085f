//! A small blocking handler library on ZMQ, the Rust counterpart of
//! Mongrel2's Python `mongrel2.handler.Connection`.
//!
//! A handler connects a PULL socket to each server's `send_spec` (requests
//! arrive round-robin) and a PUB socket to each server's `recv_spec`
//! (replies are addressed to the server's UUID, so with several frontends
//! every one receives the reply and only the addressee acts on it).
//!
//! Environment (set by zeroku's worker for `handler` processes):
//! `M2_SEND_SPEC` and `M2_RECV_SPEC` (space-separated endpoint lists, one per
//! frontend) and `M2_SENDER_ID` (this handler's identity; may be empty).

use std::time::Duration;

use super::codec::{
    encode_reply, http_response, parse_request, websocket_frame, CodecError, ParsedRequest, MAX_IDS,
};

/// Errors from [`Connection`].
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
    #[error("zmq: connecting to {endpoint:?}: {source}")]
    Connect {
        endpoint: String,
        source: zmq::Error,
    },
    #[error("malformed message from the server: {0}")]
    Codec(#[from] CodecError),
    #[error("environment variable {0} is not set or not UTF-8")]
    MissingEnv(&'static str),
    #[error("{0} holds no endpoint")]
    NoEndpoint(&'static str),
}

/// A handler's pair of sockets. Not `Sync`: use one per thread.
pub struct Connection {
    sender_id: String,
    reqs: zmq::Socket,
    resp: zmq::Socket,
    _ctx: zmq::Context,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("sender_id", &self.sender_id)
            .finish_non_exhaustive()
    }
}

/// How long unsent replies may delay closing the sockets.
const LINGER_MS: i32 = 2000;

impl Connection {
    /// Connects PULL to every endpoint in `send_spec` (where requests come
    /// from) and PUB to every endpoint in `recv_spec` (where replies go);
    /// both are space-separated lists. `sender_id` becomes the PUB socket's
    /// identity when not empty, as the Python library does.
    pub fn new(sender_id: &str, send_spec: &str, recv_spec: &str) -> Result<Self, HandlerError> {
        let sends: Vec<&str> = send_spec.split_whitespace().collect();
        let recvs: Vec<&str> = recv_spec.split_whitespace().collect();
        if sends.is_empty() {
            return Err(HandlerError::NoEndpoint("send_spec"));
        }
        if recvs.is_empty() {
            return Err(HandlerError::NoEndpoint("recv_spec"));
        }
        let ctx = zmq::Context::new();
        let reqs = ctx.socket(zmq::PULL)?;
        reqs.set_linger(0)?;
        let resp = ctx.socket(zmq::PUB)?;
        resp.set_linger(LINGER_MS)?;
        if !sender_id.is_empty() {
            resp.set_identity(sender_id.as_bytes())?;
        }
        let connect = |s: &zmq::Socket, ep: &str| {
            s.connect(ep).map_err(|source| HandlerError::Connect {
                endpoint: ep.to_string(),
                source,
            })
        };
        // PUB first, so replies have somewhere to go once requests flow.
        for ep in &recvs {
            connect(&resp, ep)?;
        }
        for ep in &sends {
            connect(&reqs, ep)?;
        }
        Ok(Connection {
            sender_id: sender_id.to_string(),
            reqs,
            resp,
            _ctx: ctx,
        })
    }

    /// [`Connection::new`] from `M2_SENDER_ID` (may be empty or unset),
    /// `M2_SEND_SPEC` and `M2_RECV_SPEC`.
    pub fn from_env() -> Result<Self, HandlerError> {
        let var =
            |name: &'static str| std::env::var(name).map_err(|_| HandlerError::MissingEnv(name));
        let sender = std::env::var("M2_SENDER_ID").unwrap_or_default();
        Self::new(&sender, &var("M2_SEND_SPEC")?, &var("M2_RECV_SPEC")?)
    }

    /// This handler's identity.
    pub fn sender_id(&self) -> &str {
        &self.sender_id
    }

    /// Waits for the next message and parses it. Disconnect notices are
    /// returned too (check [`ParsedRequest::is_disconnect`]); a malformed
    /// message is a [`HandlerError::Codec`] and the next call goes on.
    pub fn recv(&self) -> Result<ParsedRequest, HandlerError> {
        let msg = self.reqs.recv_bytes(0)?;
        Ok(parse_request(&msg)?)
    }

    /// Like [`Connection::recv`], but gives up after `timeout` with `None`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<ParsedRequest>, HandlerError> {
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        if self.reqs.poll(zmq::POLLIN, ms)? == 0 {
            return Ok(None);
        }
        match self.reqs.recv_bytes(zmq::DONTWAIT) {
            Ok(msg) => Ok(Some(parse_request(&msg)?)),
            Err(zmq::Error::EAGAIN) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Sends a raw, already encoded message on the reply socket.
    pub fn send_raw(&self, msg: &[u8]) -> Result<(), HandlerError> {
        self.resp.send(msg, 0)?;
        Ok(())
    }

    /// Sends `body` to the connection `req` came from (written raw to it).
    pub fn reply(&self, req: &ParsedRequest, body: &[u8]) -> Result<(), HandlerError> {
        self.deliver(&req.sender, &[req.conn_id], body)
    }

    /// Sends a complete HTTP/1.1 response with `Content-Length`.
    pub fn reply_http(
        &self,
        req: &ParsedRequest,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HandlerError> {
        self.reply(req, &http_response(status, headers, body))
    }

    /// Sends one WebSocket frame (FIN set) with `opcode` (1 text, 2 binary,
    /// 8 close, 9 ping, 10 pong).
    pub fn reply_websocket(
        &self,
        req: &ParsedRequest,
        opcode: u8,
        payload: &[u8],
    ) -> Result<(), HandlerError> {
        self.reply(req, &websocket_frame(opcode, payload))
    }

    /// Sends `body` to every connection in `ids` of server `uuid`
    /// (broadcast), in messages of at most [`MAX_IDS`] ids. Nothing is sent
    /// for an empty `ids`.
    pub fn deliver(&self, uuid: &str, ids: &[u64], body: &[u8]) -> Result<(), HandlerError> {
        for chunk in ids.chunks(MAX_IDS) {
            self.send_raw(&encode_reply(uuid, chunk, body))?;
        }
        Ok(())
    }

    /// Closes the connection `req` came from (empty reply).
    pub fn close(&self, req: &ParsedRequest) -> Result<(), HandlerError> {
        self.reply(req, b"")
    }

    /// Closes every connection in `ids` of server `uuid`.
    pub fn deliver_close(&self, uuid: &str, ids: &[u64]) -> Result<(), HandlerError> {
        self.deliver(uuid, ids, b"")
    }
}
