//! WebSocket pieces the handler backend needs (RFC 6455): the accept key
//! of the handshake, and an incremental reader of client frames that
//! unmasks them and reassembles fragmented messages, as Mongrel2 does
//! before handing a frame to a handler.

use sha1::{Digest, Sha1};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = Sha1::digest(format!("{}{GUID}", key.trim()).as_bytes());
    base64(&digest)
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].iter().enumerate() {
            if i <= c.len() {
                out.push(A[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A whole message (or control frame) from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The first byte of the (first) frame, FIN set: what Mongrel2 sends
    /// as `FLAGS` (`0x81` text, `0x82` binary, `0x88` close, `0x89` ping).
    pub first_byte: u8,
    /// Unmasked, reassembled payload.
    pub payload: Vec<u8>,
}

impl Message {
    pub fn opcode(&self) -> u8 {
        self.first_byte & 0x0f
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("websocket message of {0} bytes is over the limit")]
    TooBig(u64),
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
}

/// Reads client frames from a byte stream.
pub struct FrameReader {
    buf: Vec<u8>,
    /// First byte and payload of a fragmented message in progress.
    partial: Option<(u8, Vec<u8>)>,
    max: u64,
}

impl FrameReader {
    pub fn new(max_message: u64) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            partial: None,
            max: max_message,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if the buffer holds one.
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        loop {
            let Some((first, payload, used)) = self.parse_frame()? else {
                return Ok(None);
            };
            self.buf.drain(..used);
            let fin = first & 0x80 != 0;
            let opcode = first & 0x0f;
            if opcode >= 8 {
                if !fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
                return Ok(Some(Message {
                    first_byte: first,
                    payload,
                }));
            }
            match (opcode, self.partial.take()) {
                (0, None) => {
                    return Err(FrameError::Protocol("continuation without a first frame"))
                }
                (0, Some((f, mut p))) => {
                    p.extend_from_slice(&payload);
                    if p.len() as u64 > self.max {
                        return Err(FrameError::TooBig(p.len() as u64));
                    }
                    if fin {
                        return Ok(Some(Message {
                            first_byte: f | 0x80,
                            payload: p,
                        }));
                    }
                    self.partial = Some((f, p));
                }
                (_, Some(_)) => {
                    return Err(FrameError::Protocol("new message inside a fragmented one"))
                }
                (_, None) if fin => {
                    return Ok(Some(Message {
                        first_byte: first,
                        payload,
                    }))
                }
                (_, None) => self.partial = Some((first, payload)),
            }
        }
    }

    /// One frame: (first byte, unmasked payload, bytes used).
    fn parse_frame(&self) -> Result<Option<(u8, Vec<u8>, usize)>, FrameError> {
        let b = &self.buf;
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let masked = b[1] & 0x80 != 0;
        let (len, mut at) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(a), 10)
            }
            n => (u64::from(n), 2),
        };
        if len > self.max {
            return Err(FrameError::TooBig(len));
        }
        let mask = if masked {
            if b.len() < at + 4 {
                return Ok(None);
            }
            let m = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            at += 4;
            Some(m)
        } else {
            None
        };
        let end = at + len as usize;
        if b.len() < end {
            return Ok(None);
        }
        let mut payload = b[at..end].to_vec();
        if let Some(m) = mask {
            for (i, x) in payload.iter_mut().enumerate() {
                *x ^= m[i % 4];
            }
        }
        Ok(Some((b[0], payload, end)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let m = [1u8, 2, 3, 4];
        let mut f = vec![first, 0x80 | payload.len() as u8];
        f.extend_from_slice(&m);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        f
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_partial_fragmented_and_control() {
        let mut r = FrameReader::new(1 << 20);
        let f = masked(0x81, b"hello");
        r.push(&f[..3]);
        assert_eq!(r.next_message().unwrap(), None);
        r.push(&f[3..]);
        assert_eq!(
            r.next_message().unwrap(),
            Some(Message {
                first_byte: 0x81,
                payload: b"hello".to_vec()
            })
        );
        r.push(&masked(0x01, b"ab"));
        r.push(&masked(0x89, b"p"));
        r.push(&masked(0x80, b"cd"));
        assert_eq!(r.next_message().unwrap().unwrap().first_byte, 0x89);
        let m = r.next_message().unwrap().unwrap();
        assert_eq!((m.first_byte, m.payload.as_slice()), (0x81, &b"abcd"[..]));
        assert!(FrameReader::new(1).parse_frame().unwrap().is_none());
        let mut small = FrameReader::new(3);
        small.push(&masked(0x81, b"toolong"));
        assert_eq!(small.next_message(), Err(FrameError::TooBig(7)));
        let mut bad = FrameReader::new(100);
        bad.push(&masked(0x80, b"x"));
        assert!(bad.next_message().is_err());
    }
}
