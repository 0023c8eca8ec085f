//! A request head, judged: refused (with the page and whether to close),
//! sent as it is, a WebSocket handshake, or a body to read first. Parsing
//! and every check happen here, on the bytes as the client sent them; the
//! session acts on the decision.

use super::{owns, BodyFraming, Pending, ReplyBody, Session, MAX_HEADERS};
use crate::chunked::Dechunk;
use crate::edge::{closing_page, maintenance_page, Body};
use crate::m2;
use bytes::BytesMut;
use hyper::{Response, StatusCode};
use std::time::Instant;

/// What a request head in the buffer comes to.
pub(super) enum Decision {
    Partial,
    Refuse {
        method: hyper::Method,
        host: String,
        path: String,
        resp: Response<Body>,
        /// Close after the answer (what follows cannot be trusted to be a
        /// request, or a body was not read).
        close: bool,
        n: usize,
    },
    Send {
        msg: Vec<u8>,
        retryable: bool,
        pending: Pending,
        n: usize,
    },
    Handshake {
        msg: Vec<u8>,
        head: Box<m2::codec::RequestHead>,
        pending: Pending,
        n: usize,
    },
    Body {
        head: Box<m2::codec::RequestHead>,
        framing: BodyFraming,
        /// `None`: chunked.
        length: Option<u64>,
        retryable: bool,
        expect_continue: bool,
        pending: Pending,
        n: usize,
    },
}

/// Header lines as the handler codec takes them.
#[derive(Clone, Copy)]
struct Fields<'a>(&'a [httparse::Header<'a>]);

impl<'a> IntoIterator for Fields<'a> {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, httparse::Header<'a>>,
        fn(&'a httparse::Header<'a>) -> (&'a str, &'a [u8]),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|h| (h.name, h.value))
    }
}

/// Whether a comma-separated header holds `token`.
pub(super) fn has_token(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value)
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Parses and judges the request head at the start of `inbuf`.
pub(super) fn decide<W>(s: &Session<'_, W>, inbuf: &[u8]) -> Decision {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let n = match req.parse(inbuf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Decision::Partial,
        Err(e) => {
            let (status, msg) = match e {
                httparse::Error::TooManyHeaders => (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    format!("the request has more than {MAX_HEADERS} header lines"),
                ),
                e => (
                    StatusCode::BAD_REQUEST,
                    format!("the request head is malformed: {e}"),
                ),
            };
            return refuse(None, closing_page(status, &msg), true, 0);
        }
    };
    let (method, target, version) = (
        req.method.unwrap_or(""),
        req.path.unwrap_or(""),
        req.version.unwrap_or(1),
    );
    let headers = Fields(req.headers);
    let method = match hyper::Method::from_bytes(method.as_bytes()) {
        Ok(m) => m,
        Err(_) => {
            let page = closing_page(StatusCode::BAD_REQUEST, "the request method is malformed");
            return refuse(None, page, true, n);
        }
    };
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| String::from_utf8_lossy(h.value).into_owned())
        .unwrap_or_default();
    let at = |path: &str| Some((method.clone(), host.clone(), path.to_string()));
    if target.len() > crate::edge::MAX_LINE {
        let page = closing_page(StatusCode::URI_TOO_LONG, "the request target is over 8 KB");
        return refuse(at(""), page, true, n);
    }
    if let Some(h) = req
        .headers
        .iter()
        .find(|h| h.name.len() + h.value.len() + 2 > crate::edge::MAX_LINE)
    {
        let msg = format!("the {} header line is over 8 KB", h.name);
        let page = closing_page(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &msg);
        return refuse(at(""), page, true, n);
    }
    // The usual origin-form target is split where it is (up to a fragment,
    // as `http::Uri` reads it); the other forms are parsed.
    let parsed: hyper::Uri;
    let (path_ref, query, uri_text) = if target.starts_with('/') {
        let t = target.split('#').next().unwrap_or("");
        match t.split_once('?') {
            Some((p, q)) => (p, Some(q), t),
            None => (t, None, t),
        }
    } else {
        parsed = match target.parse() {
            Ok(u) => u,
            Err(_) => {
                let page = closing_page(StatusCode::BAD_REQUEST, "the request target is malformed");
                return refuse(at(""), page, true, n);
            }
        };
        (
            parsed.path(),
            parsed.query(),
            crate::edge::target_of(&parsed),
        )
    };
    let path = path_ref.to_string();
    if let Some(why) = crate::framing::ambiguous_fields(headers.into_iter()) {
        return refuse(
            at(&path),
            closing_page(StatusCode::BAD_REQUEST, why),
            true,
            n,
        );
    }
    if version == 1 && host.is_empty() {
        let page = closing_page(
            StatusCode::BAD_REQUEST,
            "an HTTP/1.1 request needs a Host header (RFC 9112 §3.2)",
        );
        return refuse(at(&path), page, true, n);
    }
    // Framing: a length, chunked, or nothing.
    let mut length = None;
    let mut chunked = false;
    let (mut upgrade_ws, mut connection_upgrade, mut ws_key, mut expect) =
        (false, false, None, false);
    let (mut conn_close, mut keep_alive) = (false, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if version == 0 || chunked || !h.value.eq_ignore_ascii_case(b"chunked") {
                let page = closing_page(
                    StatusCode::NOT_IMPLEMENTED,
                    "only Transfer-Encoding: chunked is supported, once, on HTTP/1.1",
                );
                return refuse(at(&path), page, true, n);
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade_ws |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection_upgrade |= has_token(h.value, "upgrade");
            conn_close |= has_token(h.value, "close");
            keep_alive |= has_token(h.value, "keep-alive");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            ws_key = std::str::from_utf8(h.value).ok().map(str::to_string);
        } else if name.eq_ignore_ascii_case("expect") {
            expect = h.value.eq_ignore_ascii_case(b"100-continue");
        }
    }
    let has_body = chunked || length.is_some_and(|l| l > 0);
    // The connection serves one app: a request for another is the
    // client's to send on a new connection.
    let routes = s.edge.routes();
    let route = match routes.lookup(&host) {
        Some(r) if r.app == s.hub.app && owns(r) => r,
        Some(_) => {
            let page = closing_page(
                StatusCode::MISDIRECTED_REQUEST,
                "this connection serves another app: send the request on a new connection",
            );
            return refuse(at(&path), page, true, n);
        }
        None => {
            let msg = format!("No app is served at {host:?} by this zeroku frontend. Apps answer at <app>.<base domain> or at their custom domains (zeroku domains:add).");
            let page = closing_page(StatusCode::NOT_FOUND, &msg);
            return refuse(at(&path), page, true, n);
        }
    };
    if let Some(page) = &route.maintenance {
        return refuse(at(&path), maintenance_page(page), has_body, n);
    }
    if length.is_some_and(|l| l > s.edge.max_body) {
        let msg = format!("request bodies are limited to {} bytes", s.edge.max_body);
        let page = closing_page(StatusCode::PAYLOAD_TOO_LARGE, &msg);
        return refuse(at(&path), page, true, n);
    }
    s.edge
        .requests
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let version_text = if version == 0 { "HTTP/1.0" } else { "HTTP/1.1" };
    let head = m2::codec::RequestHeadRef {
        method: method.as_str(),
        path: path_ref,
        query,
        fragment: None,
        uri: uri_text,
        version: version_text,
        headers,
        remote_addr: &s.conn.remote_addr,
        pattern: "/",
        url_scheme: if s.conn.https { "https" } else { "http" },
    };
    let retryable = crate::idempotent(&method);
    let websocket = method == hyper::Method::GET && upgrade_ws && connection_upgrade;
    if websocket && has_body {
        // What follows a handshake is frames or, if it is refused, the next
        // request: a body would be read as one or the other.
        let page = closing_page(StatusCode::BAD_REQUEST, "a WebSocket handshake has no body");
        return refuse(at(&path), page, true, n);
    }
    let pending = Pending {
        started: Instant::now(),
        sent: None,
        method: method.clone(),
        host,
        path,
        websocket: websocket && ws_key.is_some(),
        close_after: conn_close || (version == 0 && !keep_alive),
        head: BytesMut::new(),
        status: None,
        body: ReplyBody::UntilClose,
        upload: None,
    };
    let proto = crate::edge::hub_protocol(&s.hub);
    let uuid = s.edge.hubs.uuid.as_str();
    if let (true, Some(key)) = (websocket, ws_key) {
        let accept = crate::ws::accept_key(&key);
        let extra = [("METHOD".to_string(), "WEBSOCKET_HANDSHAKE".to_string())];
        let msg =
            m2::codec::encode_request_ref(uuid, s.conn.id, &head, &extra, accept.as_bytes(), proto);
        return Decision::Handshake {
            msg,
            head: Box::new(head.to_owned_head()),
            pending,
            n,
        };
    }
    if !has_body {
        let msg = m2::codec::encode_request_ref(uuid, s.conn.id, &head, &[], b"", proto);
        return Decision::Send {
            msg,
            retryable,
            pending,
            n,
        };
    }
    Decision::Body {
        head: Box::new(head.to_owned_head()),
        framing: match length {
            Some(l) if !chunked => BodyFraming::Length(l),
            _ => BodyFraming::Chunked(Dechunk::strict()),
        },
        length: if chunked { None } else { length },
        retryable,
        expect_continue: expect && version == 1,
        pending,
        n,
    }
}

fn refuse(
    at: Option<(hyper::Method, String, String)>,
    resp: Response<Body>,
    close: bool,
    n: usize,
) -> Decision {
    let (method, host, path) = at.unwrap_or((hyper::Method::GET, String::new(), String::new()));
    Decision::Refuse {
        method,
        host,
        path,
        resp,
        close,
        n,
    }
}
