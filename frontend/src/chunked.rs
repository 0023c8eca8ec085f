//! `Transfer-Encoding: chunked` (RFC 9112 §7.1), decoded incrementally.
//!
//! Two readers of the same bytes must agree where a chunked body ends, or
//! the bytes after it become someone else's request. So a request body is
//! decoded strictly ([`Dechunk::strict`]): every line ends in CRLF, a size is
//! 1–16 hex digits and nothing else, and anything else is an error the edge
//! answers with 400. A handler's response is decoded leniently (a bare LF is
//! accepted), as browsers read responses.
//!
//! This module only decodes; it never answers or closes.

use bytes::{Bytes, BytesMut};

/// Longest chunk size line (with its extensions) or trailer line.
const MAX_LINE: usize = 4096;

/// An incremental chunked decoder.
#[derive(Default)]
pub struct Dechunk {
    /// Bytes left in the current chunk's data.
    left: u64,
    /// A partial size line or trailer.
    line: Vec<u8>,
    /// Waiting for the CRLF after a chunk's data.
    need_crlf: bool,
    in_trailer: bool,
    /// RFC 9112 exactly (request bodies).
    strict: bool,
    /// Only find the end; do not copy the data out.
    discard: bool,
}

/// What one [`Dechunk::feed_counted`] found.
pub struct Fed {
    /// The decoded data (empty when discarding).
    pub data: Bytes,
    /// The body ended (last chunk and trailer read).
    pub done: bool,
    /// How many input bytes belong to the body: the rest is what follows it.
    pub used: usize,
}

impl Dechunk {
    /// A decoder for request bodies: CRLF only, sizes of hex digits only.
    pub fn strict() -> Dechunk {
        Dechunk {
            strict: true,
            ..Dechunk::default()
        }
    }

    /// A lenient decoder that only finds where a body ends.
    pub fn end_finder() -> Dechunk {
        Dechunk {
            discard: true,
            ..Dechunk::default()
        }
    }

    /// Feeds raw bytes; returns decoded data and whether the body ended.
    /// Bytes after the end are ignored.
    pub fn feed(&mut self, input: &[u8]) -> Result<(Bytes, bool), String> {
        let fed = self.feed_counted(input)?;
        Ok((fed.data, fed.done))
    }

    /// Feeds raw bytes, stopping where the body ends.
    pub fn feed_counted(&mut self, input: &[u8]) -> Result<Fed, String> {
        let mut out = BytesMut::new();
        let mut at = 0;
        while at < input.len() {
            let rest = &input[at..];
            if self.left > 0 {
                let n = (self.left as usize).min(rest.len());
                if !self.discard {
                    out.extend_from_slice(&rest[..n]);
                }
                self.left -= n as u64;
                at += n;
                if self.left == 0 {
                    self.need_crlf = true;
                }
                continue;
            }
            let Some(nl) = rest.iter().position(|b| *b == b'\n') else {
                self.line.extend_from_slice(rest);
                if self.line.len() > MAX_LINE {
                    return Err("a chunk size line is too long".into());
                }
                at = input.len();
                break;
            };
            self.line.extend_from_slice(&rest[..nl]);
            at += nl + 1;
            let line = std::mem::take(&mut self.line);
            if line.len() > MAX_LINE {
                return Err("a chunk size line is too long".into());
            }
            let line = match line.strip_suffix(b"\r") {
                Some(l) => l,
                None if self.strict => {
                    return Err("a chunk line ends in a bare LF, not CRLF".into())
                }
                None => &line,
            };
            if self.need_crlf {
                if !line.is_empty() {
                    return Err("chunk data is not followed by CRLF".into());
                }
                self.need_crlf = false;
                continue;
            }
            if self.in_trailer {
                if line.is_empty() {
                    return Ok(Fed {
                        data: out.freeze(),
                        done: true,
                        used: at,
                    });
                }
                continue;
            }
            let size = if self.strict {
                strict_size(line)
            } else {
                lenient_size(line)
            }
            .ok_or_else(|| format!("bad chunk size line {:?}", String::from_utf8_lossy(line)))?;
            if size == 0 {
                self.in_trailer = true;
            } else {
                self.left = size;
            }
        }
        Ok(Fed {
            data: out.freeze(),
            done: false,
            used: at,
        })
    }
}

/// `chunk-size [ BWS ";" chunk-ext ]`: 1 to 16 hex digits, nothing else.
fn strict_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let after = &line[digits..];
    let ext = after
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .map(|i| &after[i..]);
    if ext.is_some_and(|e| e[0] != b';') {
        return None;
    }
    let s = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(s, 16).ok()
}

fn lenient_size(line: &[u8]) -> Option<u64> {
    std::str::from_utf8(line)
        .ok()
        .map(|s| s.split(';').next().unwrap_or("").trim())
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
        .and_then(|s| u64::from_str_radix(s, 16).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dechunk_across_feeds() {
        let mut d = Dechunk::default();
        let (a, done) = d.feed(b"5\r\nhel").unwrap();
        assert_eq!((&a[..], done), (&b"hel"[..], false));
        let (b, done) = d.feed(b"lo\r\n3;x=y\r\n wo\r\n0\r\n").unwrap();
        assert_eq!((&b[..], done), (&b"lo wo"[..], false));
        let (c, done) = d.feed(b"\r\n").unwrap();
        assert_eq!((&c[..], done), (&b""[..], true));
        assert!(Dechunk::default().feed(b"zz\r\n").is_err());
    }

    #[test]
    fn strict_refuses_what_readers_could_take_differently() {
        for bad in [
            &b"3\nabc\r\n0\r\n\r\n"[..],
            b"-1\r\n",
            b"0x3\r\nabc\r\n",
            b"+3\r\nabc\r\n",
            b" 3\r\nabc\r\n",
            b"10000000000000000\r\n",
            b"3 x\r\nabc\r\n",
            b"3\r\nabcd\r\n",
        ] {
            assert!(
                Dechunk::strict().feed(bad).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let mut d = Dechunk::strict();
        let fed = d
            .feed_counted(b"3 ;ext=1\r\nabc\r\n0\r\nX-Trailer: y\r\n\r\nGET / HTTP/1.1")
            .unwrap();
        assert!(fed.done);
        assert_eq!(&fed.data[..], b"abc");
        assert_eq!(fed.used, 34, "the next request is not the body's");
    }

    #[test]
    fn the_end_finder_copies_nothing() {
        let mut d = Dechunk::end_finder();
        let fed = d.feed_counted(b"5\nhello\n0\n\nextra").unwrap();
        assert!(fed.done && fed.data.is_empty());
        assert_eq!(fed.used, 11);
    }
}
