//! A request body on its way in: held in memory, or written to an upload
//! file the app's handler owns (announced when it begins and when it is
//! complete, as Mongrel2 does), then sent.

use super::reply::write_response;
use super::{BodyFraming, BodyIn, Flow, Pending, Reading, Session, Sink};
use crate::edge::{closing_page, Body};
use crate::m2;
use bytes::{Buf, BytesMut};
use hyper::{Response, StatusCode};
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};

impl<W: AsyncWrite + Unpin> Session<'_, W> {
    /// Begins an upload, as Mongrel2 does: the body goes to a temp file the
    /// app's handler owns, and the handler hears of it now and when it is
    /// complete.
    pub(super) async fn start_upload(
        &mut self,
        head: &m2::codec::RequestHead,
        pending: &mut Pending,
    ) -> Result<Sink, Response<Body>> {
        let fail = |e: std::io::Error| {
            closing_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("cannot store the upload: {e}"),
            )
        };
        let (path, file) = self.edge.uploads.create(&self.hub).map_err(fail)?;
        pending.upload = Some(path.clone());
        let start = (
            "x-mongrel2-upload-start".to_string(),
            path.display().to_string(),
        );
        let msg = m2::codec::encode_request(
            &self.edge.hubs.uuid,
            self.conn.id,
            head,
            std::slice::from_ref(&start),
            b"",
            crate::edge::hub_protocol(&self.hub),
        );
        self.hub.send(self.conn.id, msg, self.tx.clone(), false);
        self.served = true;
        Ok(Sink::File { file, start })
    }

    /// Body bytes in `inbuf`: `None` while more are needed, else what
    /// became of the connection once the body is whole.
    pub(super) async fn on_body(&mut self, inbuf: &mut BytesMut) -> Option<Flow> {
        let Reading::Body(mut b) = std::mem::replace(&mut self.reading, Reading::Head) else {
            return Some(Flow::Go);
        };
        let max = self.edge.max_body;
        let (data, done) = match &mut b.framing {
            BodyFraming::Length(left) => {
                let n = (*left).min(inbuf.len() as u64) as usize;
                *left -= n as u64;
                (inbuf.split_to(n).freeze(), *left == 0)
            }
            BodyFraming::Chunked(d) => match d.feed_counted(inbuf) {
                Ok(fed) => {
                    inbuf.advance(fed.used);
                    (fed.data, fed.done)
                }
                Err(e) => {
                    let msg = format!("the chunked request body is malformed: {e}");
                    return Some(self.fail_body(b, StatusCode::BAD_REQUEST, &msg).await);
                }
            },
        };
        b.got += data.len() as u64;
        if b.got > max {
            let msg = format!("request bodies are limited to {max} bytes");
            return Some(self.fail_body(b, StatusCode::PAYLOAD_TOO_LARGE, &msg).await);
        }
        if let Sink::Memory(m) = &mut b.sink {
            m.extend_from_slice(&data);
        }
        // A chunked body is held until it ends or passes the upload
        // threshold, so a malformed one reaches no handler; past the
        // threshold (or whole) it becomes an upload, as Mongrel2 has it.
        let chunked = matches!(b.framing, BodyFraming::Chunked(_));
        // (a held body's request is not waiting yet; an upload's is)
        let holding = chunked && b.pending.is_some() && matches!(b.sink, Sink::Memory(_));
        if holding && (done || b.got > self.edge.upload_threshold) {
            if let Some(mut pending) = b.pending.take() {
                let held = match std::mem::replace(&mut b.sink, Sink::Memory(BytesMut::new())) {
                    Sink::Memory(m) => m,
                    Sink::File { .. } => BytesMut::new(),
                };
                match self.start_upload(&b.head, &mut pending).await {
                    Ok(sink) => {
                        self.waiting.push_back(pending);
                        b.sink = sink;
                        if let Sink::File { file, .. } = &mut b.sink {
                            if let Err(e) = file.write_all(&held).await {
                                let msg = format!("cannot store the upload: {e}");
                                let status = StatusCode::INTERNAL_SERVER_ERROR;
                                return Some(self.fail_body(b, status, &msg).await);
                            }
                        }
                    }
                    Err(resp) => {
                        b.pending = Some(pending);
                        return Some(self.fail_body_with(b, resp).await);
                    }
                }
            }
        } else if let Sink::File { file, .. } = &mut b.sink {
            if let Err(e) = file.write_all(&data).await {
                let msg = format!("cannot store the upload: {e}");
                return Some(
                    self.fail_body(b, StatusCode::INTERNAL_SERVER_ERROR, &msg)
                        .await,
                );
            }
        }
        if !done {
            self.reading = Reading::Body(b);
            return None;
        }
        let BodyIn {
            head,
            sink,
            retryable,
            pending,
            ..
        } = *b;
        let proto = crate::edge::hub_protocol(&self.hub);
        let uuid = self.edge.hubs.uuid.as_str();
        match (sink, pending) {
            (Sink::Memory(body), Some(pending)) => {
                let msg = m2::codec::encode_request(uuid, self.conn.id, &head, &[], &body, proto);
                self.send(msg, retryable, pending);
            }
            (Sink::File { mut file, start }, _) => {
                if let Err(e) = file.flush().await {
                    let msg = format!("cannot store the upload: {e}");
                    let status = StatusCode::INTERNAL_SERVER_ERROR;
                    let _ = write_response(&mut self.wr, closing_page(status, &msg)).await;
                    return Some(Flow::End);
                }
                let done = ("x-mongrel2-upload-done".to_string(), start.1.clone());
                let msg = m2::codec::encode_request(
                    uuid,
                    self.conn.id,
                    &head,
                    &[start, done],
                    b"",
                    proto,
                );
                self.hub.send_more(self.conn.id, msg);
                if let Some(p) = self.waiting.back_mut() {
                    p.sent = Some(Instant::now());
                    self.last_request |= p.close_after;
                }
            }
            (Sink::Memory(_), None) => {}
        }
        Some(Flow::Go)
    }

    /// A body that cannot be taken: answered, and the connection closed
    /// (what follows it cannot be trusted to be a request).
    async fn fail_body(&mut self, b: Box<BodyIn>, status: StatusCode, msg: &str) -> Flow {
        self.fail_body_with(b, closing_page(status, msg)).await
    }

    async fn fail_body_with(&mut self, mut b: Box<BodyIn>, resp: Response<Body>) -> Flow {
        // (an upload's request is the last one waiting)
        let p = match b.pending.take() {
            Some(p) => Some(p),
            None => self.waiting.pop_back(),
        };
        if let Some(p) = p {
            self.log(&p, resp.status().as_u16());
            self.drop_upload(p.upload);
        }
        let _ = write_response(&mut self.wr, resp).await;
        Flow::End
    }
}
