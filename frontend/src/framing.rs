//! Requests whose routing two readers could take differently (RFC 9112
//! §3.2): refused with 400 before any backend sees them, whatever the
//! backend, as nginx refuses them. A request smuggled past
//! one reader into another is how one client's bytes become another's
//! request, so the edge never guesses.
//!
//! This module only decides; the edge answers and closes the connection.

use hyper::header::{HeaderMap, HOST, UPGRADE};

/// Why a request hyper parsed must be refused, if it must (an answer of 400
/// and a closed connection): two `Host` lines. (hyper has decided the
/// length ambiguities by then: it merges equal `Content-Length`s, refuses
/// differing ones, and lets chunked win over a length and closes after the
/// answer; the edge checks a connection's first request on its raw bytes
/// with [`ambiguous_fields`] before hyper sees it.)
pub fn ambiguous(headers: &HeaderMap) -> Option<&'static str> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Some(TWO_HOSTS);
    }
    None
}

const TWO_HOSTS: &str = "the request has more than one Host header line (RFC 9112 §3.2)";

/// Why header lines as sent (any case) must be refused, if they must: two
/// `Host` lines, two `Content-Length` lines (even equal ones), a length that
/// is not a number, or both `Content-Length` and `Transfer-Encoding`.
pub fn ambiguous_fields<'a>(
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Option<&'static str> {
    let (mut hosts, mut lengths, mut te) = (0, 0, false);
    for (name, value) in fields {
        // (by length first: most lines are none of the three)
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => hosts += 1,
            14 if name.eq_ignore_ascii_case("content-length") => {
                lengths += 1;
                if value.is_empty() || !value.iter().all(u8::is_ascii_digit) || value.len() > 19 {
                    return Some("the Content-Length is not a number (RFC 9112 §6.3)");
                }
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => te = true,
            _ => {}
        }
    }
    if hosts > 1 {
        return Some(TWO_HOSTS);
    }
    if lengths > 1 {
        return Some("the request has more than one Content-Length header line (RFC 9112 §6.3)");
    }
    if lengths == 1 && te {
        return Some("the request has both Content-Length and Transfer-Encoding (RFC 9112 §6.1)");
    }
    None
}

/// Whether the request asks to switch to HTTP/2 over cleartext (`Upgrade:
/// h2c`), which the edge does not offer and never passes on.
pub fn asks_h2c(headers: &HeaderMap) -> bool {
    headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn two_hosts_are_ambiguous() {
        assert!(ambiguous(&headers(&[("host", "a"), ("content-length", "3")])).is_none());
        let two_hosts = headers(&[("host", "a"), ("host", "a")]);
        assert!(ambiguous(&two_hosts).unwrap().contains("Host"));
        let raw = |lines: &[(&'static str, &'static [u8])]| {
            ambiguous_fields(lines.iter().copied()).unwrap_or("")
        };
        let two = raw(&[("Content-Length", b"3"), ("content-length", b"3")]);
        assert!(two.contains("more than one Content-Length"));
        let both = raw(&[("Content-Length", b"3"), ("Transfer-Encoding", b"chunked")]);
        assert!(both.contains("both"));
        assert!(raw(&[("content-length", b"+3")]).contains("not a number"));
        assert!(raw(&[("HOST", b"a"), ("host", b"a")]).contains("Host"));
        assert_eq!(raw(&[("host", b"a"), ("content-length", b"12")]), "");
    }

    #[test]
    fn h2c_is_seen_in_any_upgrade_list() {
        assert!(asks_h2c(&headers(&[("upgrade", "foo, H2C")])));
        assert!(!asks_h2c(&headers(&[("upgrade", "websocket")])));
    }
}
