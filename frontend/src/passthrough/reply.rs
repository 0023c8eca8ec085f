//! What the edge reads of a handler's reply (never changing it): its status
//! and where its body ends. And the edge's own small answers, written as
//! HTTP/1.1.

use super::request::has_token;
use super::{Flow, Reading, Session, MAX_REPLY_HEAD};
use crate::chunked::Dechunk;
use crate::edge::Body;
use bytes::Bytes;
use bytes::BytesMut;
use http_body_util::BodyExt;
use hyper::Response;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Where a response's body ends.
pub(super) enum ReplyBody {
    Length(u64),
    Chunked(Dechunk),
    /// At the close (no length, not chunked), or unknown (a reply that is
    /// not HTTP, passed on all the same).
    UntilClose,
}

/// A response head at the start of `buf`: its status, where its body ends,
/// and its length; `None` while incomplete, an error if it is not HTTP.
pub(super) fn parse_reply_head(
    buf: &[u8],
    head_request: bool,
) -> Option<Result<(u16, ReplyBody, usize), ()>> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut fields);
    let n = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return None,
        Err(_) => return Some(Err(())),
    };
    let status = resp.code.unwrap_or(502);
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
        return Some(Ok((status, ReplyBody::Length(0), n)));
    }
    let mut body = ReplyBody::UntilClose;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") && has_token(h.value, "chunked") {
            body = ReplyBody::Chunked(Dechunk::end_finder());
            break;
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if let Some(l) = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
            {
                body = ReplyBody::Length(l);
            }
        }
    }
    Some(Ok((status, body, n)))
}

/// Writes one of the edge's own answers (a small page) to the client.
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    wr: &mut W,
    resp: Response<Body>,
) -> std::io::Result<()> {
    let (parts, body) = resp.into_parts();
    let body: Bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let status = parts.status;
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in &parts.headers {
        if k == hyper::header::CONTENT_LENGTH {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(&body);
    wr.write_all(&out).await?;
    wr.flush().await
}

impl<W: AsyncWrite + Unpin> Session<'_, W> {
    /// Follows the responses in what a handler sent (already written to the
    /// client as it is): their status, and where each ends.
    /// `End` once a response after which the client asked to close is out.
    pub(super) fn track(&mut self, mut rest: &[u8]) -> Flow {
        while !rest.is_empty() {
            let Some(p) = self.waiting.front_mut() else {
                return Flow::Go;
            };
            if p.status.is_none() {
                let gathered = !p.head.is_empty();
                if gathered {
                    p.head.extend_from_slice(rest);
                }
                let buf: &[u8] = if gathered { &p.head } else { rest };
                let parsed = parse_reply_head(buf, p.method == hyper::Method::HEAD);
                let (status, body, used) = match parsed {
                    Some(Ok((status, body, n))) => {
                        // (what the head took of `rest`)
                        let before = buf.len() - rest.len();
                        (status, body, n - before)
                    }
                    None if buf.len() < MAX_REPLY_HEAD => {
                        if !gathered {
                            p.head.extend_from_slice(rest);
                        }
                        return Flow::Go;
                    }
                    // Not HTTP, or a head too long to read: passed on as
                    // sent, and counted as the handler's error.
                    _ => (502, ReplyBody::UntilClose, rest.len()),
                };
                rest = &rest[used..];
                p.head = BytesMut::new();
                if (100..200).contains(&status) && status != 101 {
                    continue; // an interim response; the final one follows
                }
                p.status = Some(status);
                p.body = body;
                let websocket = p.websocket;
                let p_done = matches!(p.body, ReplyBody::Length(0));
                self.log(self.waiting.front().expect("front"), status);
                // (only the handshake's own answer ends the wait for it)
                if let (Reading::Upgrading(_), true) = (&self.reading, websocket) {
                    let Reading::Upgrading(head) =
                        std::mem::replace(&mut self.reading, Reading::Head)
                    else {
                        unreachable!()
                    };
                    if websocket && status == 101 {
                        self.reading = Reading::WebSocket {
                            reader: crate::ws::FrameReader::new(self.edge.max_body),
                            head,
                        };
                        self.pop_front();
                        return Flow::Go;
                    }
                }
                if p_done && self.pop_front() {
                    return Flow::End;
                }
                continue;
            }
            let done = match &mut p.body {
                ReplyBody::Length(left) => {
                    let n = (*left).min(rest.len() as u64);
                    *left -= n;
                    rest = &rest[n as usize..];
                    *left == 0
                }
                ReplyBody::Chunked(d) => match d.feed_counted(rest) {
                    Ok(fed) => {
                        rest = &rest[fed.used..];
                        fed.done
                    }
                    Err(_) => {
                        p.body = ReplyBody::UntilClose;
                        return Flow::Go;
                    }
                },
                ReplyBody::UntilClose => return Flow::Go,
            };
            if done && self.pop_front() {
                return Flow::End;
            }
        }
        Flow::Go
    }

    /// The response in front is out; returns whether the client asked to
    /// close after it.
    fn pop_front(&mut self) -> bool {
        match self.waiting.pop_front() {
            Some(p) => {
                self.drop_upload(p.upload);
                p.close_after
            }
            None => false,
        }
    }
}
