//! Requests whose routing two readers could take differently (RFC 9112
//! §3.2): refused with 400 before any backend sees them, whatever the
//! backend, as nginx refuses them. A request smuggled past
//! one reader into another is how one client's bytes become another's
//! request, so the edge never guesses.
//!
//! This module only decides; the edge answers and closes the connection.

use hyper::header::{HeaderMap, HOST, UPGRADE};

/// Why `headers` must be refused, if they must. (hyper's parser already
/// decides the two length ambiguities its own way before this sees them: a
/// Transfer-Encoding with a Content-Length wins and the connection closes
/// after the answer; identical Content-Length lines are merged, differing
/// ones are a 400.)
pub fn ambiguous(headers: &HeaderMap) -> Option<&'static str> {
    if headers.get_all(HOST).iter().nth(1).is_some() {
        return Some("the request has more than one Host header line (RFC 9112 §3.2)");
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
    }

    #[test]
    fn h2c_is_seen_in_any_upgrade_list() {
        assert!(asks_h2c(&headers(&[("upgrade", "foo, H2C")])));
        assert!(!asks_h2c(&headers(&[("upgrade", "websocket")])));
    }
}
