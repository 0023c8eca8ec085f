//! Encoding and parsing of the messages exchanged with Mongrel2 handlers.
//! Pure functions over byte slices: no I/O.
//!
//! Server → handler: [`encode_request`], [`encode_disconnect`]; parsed back by
//! [`parse_request`]. Handler → server: [`encode_reply`], [`encode_control`];
//! parsed by [`parse_handler_message`] / [`parse_reply`].

use std::borrow::Cow;

use super::header_table::Table;
use super::netstring;
use super::tnetstring::{self, TnetError, Value};

/// Mongrel2's limit on connection ids in one reply (`MAX_TARGETS`).
pub const MAX_IDS: usize = 128;

/// How request headers are encoded (per route in Mongrel2:
/// `protocol = "json"` (default) or `"tnetstring"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Json,
    Tnetstring,
}

/// What the frontend knows about one HTTP request when it hands it to a
/// handler.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// The request method as sent (`GET`).
    pub method: String,
    /// The raw path: not %-decoded, without query or fragment.
    pub path: String,
    /// The query string without `?`, if the URI had one.
    pub query: Option<String>,
    /// The fragment without `#`, if the request line had one.
    pub fragment: Option<String>,
    /// The request target as sent, without fragment (Mongrel2's `URI`).
    pub uri: String,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Client headers in arrival order, names as sent (they are lowercased
    /// here), values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The peer's IP address without port (Mongrel2's `REMOTE_ADDR`, and
    /// the value of `x-forwarded-for`).
    pub remote_addr: String,
    /// The pattern of the route that matched (Mongrel2's `PATTERN`).
    pub pattern: String,
    /// `http` or `https`.
    pub url_scheme: String,
}

/// A request message as a handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The server's identity (`send_ident`), to address replies to.
    pub sender: String,
    pub conn_id: u64,
    /// The path field of the message (`@*` for disconnect notices).
    pub path: String,
    /// A JSON object, whichever protocol carried it (tnetstring byte strings
    /// that are not UTF-8 get U+FFFD).
    pub headers: serde_json::Value,
    pub body: Vec<u8>,
    /// Which header encoding the message used.
    pub protocol: Protocol,
}

/// A handler's reply: `body` is written raw to each connection in `ids`; an
/// empty body closes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub uuid: String,
    pub ids: Vec<u64>,
    pub body: Vec<u8>,
}

/// Anything a handler may send to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerMessage {
    /// `UUID SP LEN:ID ID..., SP BODY`.
    Reply(Reply),
    /// Extended reply `UUID SP LEN:X ID ID..., SP TNETSTRING`, e.g.
    /// `["ctl", {"credits": 4}]`.
    Control {
        uuid: String,
        ids: Vec<u64>,
        value: Value,
    },
}

/// Why a message could not be parsed. Offsets are from the start of the
/// message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    #[error("expected {expected} at byte {offset}")]
    Expected {
        expected: &'static str,
        offset: usize,
    },
    #[error("invalid {what} at byte {offset}")]
    Invalid { what: &'static str, offset: usize },
    #[error("{what}: length at byte {offset} is not 1-9 decimal digits followed by ':'")]
    BadLength { what: &'static str, offset: usize },
    #[error(
        "{what}: netstring at byte {offset} declares {declared} bytes but only {available} remain"
    )]
    Truncated {
        what: &'static str,
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("{count} connection ids in the list at byte {offset}; at most {MAX_IDS} allowed")]
    TooManyIds { offset: usize, count: usize },
    #[error("headers at byte {offset}: {reason}")]
    Headers { offset: usize, reason: String },
    #[error(transparent)]
    Tnetstring(#[from] TnetError),
    #[error("{len} unexpected bytes at byte {offset} after the message")]
    Trailing { offset: usize, len: usize },
    #[error("extended (control) reply at byte {offset} where a plain reply was expected")]
    UnexpectedControl { offset: usize },
}

// ---------------------------------------------------------------------------
// Requests: server -> handler

const SERVER_KEYS: [&str; 9] = [
    "PATH",
    "METHOD",
    "VERSION",
    "URI",
    "QUERY",
    "FRAGMENT",
    "PATTERN",
    "URL_SCHEME",
    "REMOTE_ADDR",
];

/// The uppercase keys the server sets, in Mongrel2's JSON order.
struct ServerKeys<'a> {
    path: &'a [u8],
    method: &'a [u8],
    version: &'a [u8],
    uri: &'a [u8],
    query: Option<&'a [u8]>,
    fragment: Option<&'a [u8]>,
    pattern: &'a [u8],
    url_scheme: &'a [u8],
    remote_addr: &'a [u8],
}

impl<'a> ServerKeys<'a> {
    /// Overrides one key; false if `key` is not a server key.
    fn set(&mut self, key: &str, v: &'a [u8]) -> bool {
        match key {
            "PATH" => self.path = v,
            "METHOD" => self.method = v,
            "VERSION" => self.version = v,
            "URI" => self.uri = v,
            "QUERY" => self.query = Some(v),
            "FRAGMENT" => self.fragment = Some(v),
            "PATTERN" => self.pattern = v,
            "URL_SCHEME" => self.url_scheme = v,
            "REMOTE_ADDR" => self.remote_addr = v,
            _ => return false,
        }
        true
    }

    /// (key, value) in Mongrel2's JSON order after `PATH`; absent optional
    /// keys are `None`.
    fn json_order(&self) -> [Option<(&'static str, &'a [u8])>; 8] {
        [
            Some(("METHOD", self.method)),
            Some(("VERSION", self.version)),
            Some(("URI", self.uri)),
            self.query.map(|q| ("QUERY", q)),
            self.fragment.map(|f| ("FRAGMENT", f)),
            Some(("PATTERN", self.pattern)),
            Some(("URL_SCHEME", self.url_scheme)),
            Some(("REMOTE_ADDR", self.remote_addr)),
        ]
    }

    /// (key, value) in the order Mongrel2's tnetstring output has them
    /// (it renders PATH, VERSION, URI, QUERY, FRAGMENT, PATTERN, URL_SCHEME,
    /// METHOD, REMOTE_ADDR into a buffer that is reversed at the end).
    fn tnetstring_order(&self) -> [Option<(&'static str, &'a [u8])>; 9] {
        [
            Some(("REMOTE_ADDR", self.remote_addr)),
            Some(("METHOD", self.method)),
            Some(("URL_SCHEME", self.url_scheme)),
            Some(("PATTERN", self.pattern)),
            self.fragment.map(|f| ("FRAGMENT", f)),
            self.query.map(|q| ("QUERY", q)),
            Some(("URI", self.uri)),
            Some(("VERSION", self.version)),
            Some(("PATH", self.path)),
        ]
    }
}

/// Encodes a request for a handler:
/// `UUID SP CONN_ID SP PATH SP LEN:HEADERS, LEN:BODY,` (with `proto =
/// Tnetstring` the headers are a tnetstring dict, ending in `}`).
///
/// Headers, as Mongrel2 1.12 builds them:
/// - client header names lowercased; a repeated name becomes a list of its
///   first 5 values (later ones dropped);
/// - `x-forwarded-for` set to `head.remote_addr`, replacing any the client
///   sent;
/// - then each `extra` pair: an uppercase server key (`METHOD`, `PATH`,
///   `QUERY`, ...) overrides that key's value; any other key (e.g.
///   `x-mongrel2-upload-start`, `FLAGS`) replaces a same-named header or is
///   added;
/// - JSON order: `PATH`, the headers in Mongrel2's hash-table order (see
///   `header_table`), then `METHOD`, `VERSION`, `URI`, `QUERY`, `FRAGMENT`,
///   `PATTERN`, `URL_SCHEME`, `REMOTE_ADDR`. Tnetstring order is the reverse
///   of Mongrel2's rendering order: `REMOTE_ADDR`, `METHOD`, `URL_SCHEME`,
///   `PATTERN`, `FRAGMENT`, `QUERY`, `URI`, `VERSION`, `PATH`, then the
///   headers in reverse hash-table order.
/// - A key appears once: server keys win over any header of the same name.
///
/// Deliberate difference: Mongrel2 escapes only `"` and `\` in JSON; zeroku
/// writes valid JSON always (control characters escaped, bytes that are not
/// UTF-8 replaced by U+FFFD). Tnetstring output carries the raw bytes.
pub fn encode_request(
    sender_uuid: &str,
    conn_id: u64,
    head: &RequestHead,
    extra: &[(String, String)],
    body: &[u8],
    proto: Protocol,
) -> Vec<u8> {
    encode_request_ref(sender_uuid, conn_id, &head.borrowed(), extra, body, proto)
}

/// A [`RequestHead`] borrowed from wherever the request is (hyper's parsed
/// head, for the frontend: no copy of each field for every request).
#[derive(Debug, Clone, Copy)]
pub struct RequestHeadRef<'a, H> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub fragment: Option<&'a str>,
    pub uri: &'a str,
    pub version: &'a str,
    /// Client headers in arrival order: (name as sent, raw value).
    pub headers: H,
    pub remote_addr: &'a str,
    pub pattern: &'a str,
    pub url_scheme: &'a str,
}

/// The headers of a [`RequestHead`], as a [`RequestHeadRef`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct HeaderPairs<'a>(pub &'a [(String, Vec<u8>)]);

impl<'a> IntoIterator for HeaderPairs<'a> {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Vec<u8>)>,
        fn(&'a (String, Vec<u8>)) -> (&'a str, &'a [u8]),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }
}

impl RequestHead {
    /// The head as a [`RequestHeadRef`].
    pub fn borrowed(&self) -> RequestHeadRef<'_, HeaderPairs<'_>> {
        RequestHeadRef {
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            fragment: self.fragment.as_deref(),
            uri: &self.uri,
            version: &self.version,
            headers: HeaderPairs(&self.headers),
            remote_addr: &self.remote_addr,
            pattern: &self.pattern,
            url_scheme: &self.url_scheme,
        }
    }
}

impl<'a, H> RequestHeadRef<'a, H>
where
    H: IntoIterator<Item = (&'a str, &'a [u8])> + Copy,
{
    /// An owned copy, for a request that outlives what it borrows (a
    /// WebSocket's frames are sent with the head of its upgrade).
    pub fn to_owned_head(&self) -> RequestHead {
        RequestHead {
            method: self.method.to_string(),
            path: self.path.to_string(),
            query: self.query.map(str::to_string),
            fragment: self.fragment.map(str::to_string),
            uri: self.uri.to_string(),
            version: self.version.to_string(),
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_vec()))
                .collect(),
            remote_addr: self.remote_addr.to_string(),
            pattern: self.pattern.to_string(),
            url_scheme: self.url_scheme.to_string(),
        }
    }
}

/// [`encode_request`] of a borrowed head.
pub fn encode_request_ref<'h, H>(
    sender_uuid: &str,
    conn_id: u64,
    head: &RequestHeadRef<'h, H>,
    extra: &[(String, String)],
    body: &[u8],
    proto: Protocol,
) -> Vec<u8>
where
    H: IntoIterator<Item = (&'h str, &'h [u8])> + Copy,
{
    let headers = head.headers.into_iter();
    let mut table = Table::with_capacity(headers.size_hint().0 + extra.len() + 1);
    for (name, value) in headers {
        let key = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        table.set(key, value, false);
    }
    table.set(
        Cow::Borrowed("x-forwarded-for"),
        head.remote_addr.as_bytes(),
        true,
    );
    let mut server = ServerKeys {
        path: head.path.as_bytes(),
        method: head.method.as_bytes(),
        version: head.version.as_bytes(),
        uri: head.uri.as_bytes(),
        query: head.query.map(str::as_bytes),
        fragment: head.fragment.map(str::as_bytes),
        pattern: head.pattern.as_bytes(),
        url_scheme: head.url_scheme.as_bytes(),
        remote_addr: head.remote_addr.as_bytes(),
    };
    for (k, v) in extra {
        if !server.set(k, v.as_bytes()) {
            table.set(Cow::Borrowed(k.as_str()), v.as_bytes(), true);
        }
    }
    // Client header names are lowercase; only an extra key can be a
    // server key.
    let mut order = table.scan();
    order.retain(|&i| {
        let k = table.node(i).key.as_ref();
        !k.starts_with(|c: char| c.is_ascii_uppercase()) || !SERVER_KEYS.contains(&k)
    });

    let mut headers = Vec::with_capacity(256);
    match proto {
        Protocol::Json => {
            headers.extend_from_slice(b"{\"PATH\":");
            write_json_str(&mut headers, server.path);
            for &i in &order {
                let node = table.node(i);
                headers.push(b',');
                write_json_str(&mut headers, node.key.as_bytes());
                headers.push(b':');
                match node.values() {
                    [one] => write_json_str(&mut headers, one),
                    many => {
                        headers.push(b'[');
                        for (j, v) in many.iter().enumerate() {
                            if j > 0 {
                                headers.push(b',');
                            }
                            write_json_str(&mut headers, v);
                        }
                        headers.push(b']');
                    }
                }
            }
            for (k, v) in server.json_order().into_iter().flatten() {
                headers.extend_from_slice(b",\"");
                headers.extend_from_slice(k.as_bytes()); // plain ASCII
                headers.extend_from_slice(b"\":");
                write_json_str(&mut headers, v);
            }
            headers.push(b'}');
        }
        Protocol::Tnetstring => {
            let mut dict = Vec::with_capacity(256);
            for (k, v) in server.tnetstring_order().into_iter().flatten() {
                netstring::write(&mut dict, k.as_bytes());
                netstring::write(&mut dict, v);
            }
            for &i in order.iter().rev() {
                let node = table.node(i);
                netstring::write(&mut dict, node.key.as_bytes());
                match node.values() {
                    [one] => netstring::write(&mut dict, one),
                    many => {
                        let mut list = Vec::new();
                        for v in many {
                            netstring::write(&mut list, v);
                        }
                        tnetstring::put_raw(&mut dict, &list, b']');
                    }
                }
            }
            tnetstring::put_raw(&mut headers, &dict, b'}');
        }
    }

    let mut out =
        Vec::with_capacity(sender_uuid.len() + server.path.len() + headers.len() + body.len() + 48);
    out.extend_from_slice(sender_uuid.as_bytes());
    out.push(b' ');
    crate::ascii::put_decimal(&mut out, conn_id);
    out.push(b' ');
    out.extend_from_slice(server.path);
    out.push(b' ');
    match proto {
        Protocol::Json => netstring::write(&mut out, &headers),
        Protocol::Tnetstring => out.extend_from_slice(&headers),
    }
    netstring::write(&mut out, body);
    out
}

/// Bytes that need no escaping in a JSON string and are ASCII: the common
/// case, copied as a block.
const fn plain_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = 0x20;
    while b < 0x7f {
        t[b] = b != b'"' as usize && b != b'\\' as usize;
        b += 1;
    }
    t
}
static PLAIN: [bool; 256] = plain_table();

/// Writes `s` as a JSON string. Invalid UTF-8 becomes U+FFFD; `"`, `\` and
/// control characters are escaped; everything else is copied as is (so for
/// ordinary values the bytes equal Mongrel2's).
fn write_json_str(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    if s.iter().all(|&b| PLAIN[usize::from(b)]) {
        out.extend_from_slice(s);
    } else {
        write_json_escaped(out, &String::from_utf8_lossy(s));
    }
    out.push(b'"');
}

/// The slow path of [`write_json_str`]: valid UTF-8 with escapes to make.
fn write_json_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// The notice sent when a client goes away or a reply targets a dead id:
/// `UUID CONN_ID @* 17:{"METHOD":"JSON"},21:{"type":"disconnect"},`.
pub fn encode_disconnect(sender_uuid: &str, conn_id: u64) -> Vec<u8> {
    encode_disconnect_as(sender_uuid, conn_id, Protocol::Json)
}

/// The disconnect notice in a route's header protocol: with tnetstring
/// headers Mongrel2 sends `16:6:METHOD,4:JSON,}` as the header block (the
/// body stays the JSON netstring), as the differential test observed.
pub fn encode_disconnect_as(sender_uuid: &str, conn_id: u64, proto: Protocol) -> Vec<u8> {
    let headers = match proto {
        Protocol::Json => "17:{\"METHOD\":\"JSON\"},",
        Protocol::Tnetstring => "16:6:METHOD,4:JSON,}",
    };
    format!("{sender_uuid} {conn_id} @* {headers}21:{{\"type\":\"disconnect\"}},").into_bytes()
}

/// Parses a request message (what a handler receives).
pub fn parse_request(msg: &[u8]) -> Result<ParsedRequest, CodecError> {
    let (sender, pos) = take_word(msg, 0, "space after the sender UUID")?;
    check_uuid(0, sender)?;
    let id_at = pos;
    let (id, pos) = take_word(msg, pos, "space after the connection id")?;
    let conn_id = parse_id(id).ok_or(CodecError::Invalid {
        what: "connection id",
        offset: id_at,
    })?;
    let (path, pos) = take_word(msg, pos, "space after the path")?;
    if path.is_empty() {
        return Err(CodecError::Invalid {
            what: "path (empty)",
            offset: id_at + id.len() + 1,
        });
    }
    let headers_at = pos;
    let (value, pos) = tnetstring::decode_at(msg, pos).map_err(|e| match e {
        TnetError::BadLength { offset } => CodecError::BadLength {
            what: "headers",
            offset,
        },
        TnetError::Truncated {
            offset,
            declared,
            available,
        } => CodecError::Truncated {
            what: "headers",
            offset,
            declared,
            available,
        },
        other => CodecError::Tnetstring(other),
    })?;
    let (headers, protocol) = match value {
        Value::String(json) => {
            let v: serde_json::Value =
                serde_json::from_slice(&json).map_err(|e| CodecError::Headers {
                    offset: headers_at,
                    reason: format!("invalid JSON: {e}"),
                })?;
            (v, Protocol::Json)
        }
        v @ Value::Dict(_) => (v.to_json(), Protocol::Tnetstring),
        _ => {
            return Err(CodecError::Headers {
                offset: headers_at,
                reason: "neither a JSON string nor a tnetstring dict".into(),
            })
        }
    };
    if !headers.is_object() {
        return Err(CodecError::Headers {
            offset: headers_at,
            reason: "not a JSON object".into(),
        });
    }
    let (body, end) = netstring::parse_at(msg, pos, "body")?;
    if end != msg.len() {
        return Err(CodecError::Trailing {
            offset: end,
            len: msg.len() - end,
        });
    }
    Ok(ParsedRequest {
        sender: String::from_utf8_lossy(sender).into_owned(),
        conn_id,
        path: String::from_utf8_lossy(path).into_owned(),
        headers,
        body: body.to_vec(),
        protocol,
    })
}

impl ParsedRequest {
    /// The first value of a header (JSON lists give their first element);
    /// `name` is matched exactly (client names are lowercase, server keys
    /// uppercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.headers.get(name)? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Array(a) => a.first()?.as_str(),
            _ => None,
        }
    }

    /// All values of a header.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        match self.headers.get(name) {
            Some(serde_json::Value::String(s)) => vec![s.as_str()],
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// The `METHOD` key.
    pub fn method(&self) -> Option<&str> {
        self.header("METHOD")
    }

    /// For `METHOD: JSON` messages, the body parsed as JSON.
    pub fn json_body(&self) -> Option<serde_json::Value> {
        if self.method() == Some("JSON") {
            serde_json::from_slice(&self.body).ok()
        } else {
            None
        }
    }

    /// A disconnect notice: `METHOD` is `JSON` and the body is
    /// `{"type":"disconnect"}`.
    pub fn is_disconnect(&self) -> bool {
        self.json_body()
            .is_some_and(|b| b.get("type").and_then(|t| t.as_str()) == Some("disconnect"))
    }

    /// Whether an HTTP handler should close after replying (the client sent
    /// `Connection: close`, or spoke HTTP/1.0 without `keep-alive`), as the
    /// Python library's `should_close`.
    pub fn should_close(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some("close") => true,
            Some("keep-alive") => false,
            _ => self.header("VERSION") == Some("HTTP/1.0"),
        }
    }
}

// ---------------------------------------------------------------------------
// Replies: handler -> server

/// Encodes `UUID SP LEN:ID ID ID..., SP BODY`.
pub fn encode_reply(uuid: &str, ids: &[u64], body: &[u8]) -> Vec<u8> {
    let list = join_ids(ids);
    let mut out = Vec::with_capacity(uuid.len() + list.len() + body.len() + 16);
    out.extend_from_slice(uuid.as_bytes());
    out.push(b' ');
    netstring::write(&mut out, list.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// Encodes an extended reply `UUID SP LEN:X ID ID..., SP TNETSTRING`.
pub fn encode_control(uuid: &str, ids: &[u64], value: &Value) -> Vec<u8> {
    let list = format!("X {}", join_ids(ids));
    let mut out = Vec::new();
    out.extend_from_slice(uuid.as_bytes());
    out.push(b' ');
    netstring::write(&mut out, list.as_bytes());
    out.push(b' ');
    value.encode_into(&mut out);
    out
}

fn join_ids(ids: &[u64]) -> String {
    let mut s = String::with_capacity(ids.len() * 8);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&id.to_string());
    }
    s
}

/// Parses a plain reply; an extended (control) reply is an error here.
pub fn parse_reply(msg: &[u8]) -> Result<Reply, CodecError> {
    match parse_handler_message(msg)? {
        HandlerMessage::Reply(r) => Ok(r),
        HandlerMessage::Control { uuid, .. } => Err(CodecError::UnexpectedControl {
            offset: uuid.len() + 1,
        }),
    }
}

/// Parses anything a handler sends: `UUID SP LEN:ID ID..., SP BODY`, or
/// `UUID SP LEN:X ID ID..., SP TNETSTRING`.
///
/// Accepted as Mongrel2 does: the UUID is printable ASCII without spaces;
/// ids are decimal u64 separated by single spaces (one trailing space
/// allowed), 1 to [`MAX_IDS`] of them; the space after `,` may be missing
/// only when the body is empty (end of message). An empty body means close.
pub fn parse_handler_message(msg: &[u8]) -> Result<HandlerMessage, CodecError> {
    Ok(match parse_handler_message_ref(msg)? {
        HandlerMessageRef::Reply { uuid, ids, body } => HandlerMessage::Reply(Reply {
            uuid: String::from_utf8_lossy(uuid).into_owned(),
            ids,
            body: body.to_vec(),
        }),
        HandlerMessageRef::Control { uuid, ids, value } => HandlerMessage::Control {
            uuid: String::from_utf8_lossy(uuid).into_owned(),
            ids,
            value,
        },
    })
}

/// A [`HandlerMessage`] whose UUID and body are slices of the message, for
/// the frontend, which reads one per request.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerMessageRef<'a> {
    Reply {
        uuid: &'a [u8],
        ids: Vec<u64>,
        body: &'a [u8],
    },
    Control {
        uuid: &'a [u8],
        ids: Vec<u64>,
        value: Value,
    },
}

/// [`parse_handler_message`] without copying the UUID or the body.
pub fn parse_handler_message_ref(msg: &[u8]) -> Result<HandlerMessageRef<'_>, CodecError> {
    let (uuid, pos) = take_word(msg, 0, "space after the sender UUID")?;
    check_uuid(0, uuid)?;
    let list_at = pos;
    let (list, end) = netstring::parse_at(msg, pos, "connection id list")?;
    let content_at = end - 1 - list.len();
    let body_at = match msg.get(end) {
        None => end,
        Some(b' ') => end + 1,
        Some(_) => {
            return Err(CodecError::Expected {
                expected: "space after the connection id list",
                offset: end,
            })
        }
    };
    let body = &msg[body_at..];
    if let Some(rest) = list.strip_prefix(b"X ") {
        let ids = parse_ids(rest, content_at + 2, list_at)?;
        let (value, vend) = tnetstring::decode_at(msg, body_at)?;
        if vend != msg.len() {
            return Err(CodecError::Trailing {
                offset: vend,
                len: msg.len() - vend,
            });
        }
        return Ok(HandlerMessageRef::Control { uuid, ids, value });
    }
    let ids = parse_ids(list, content_at, list_at)?;
    Ok(HandlerMessageRef::Reply { uuid, ids, body })
}

/// Parses `ID ID ID` (one trailing space allowed) found at `at` in the
/// message.
fn parse_ids(list: &[u8], at: usize, list_at: usize) -> Result<Vec<u64>, CodecError> {
    let list_trimmed = list.strip_suffix(b" ").unwrap_or(list);
    if list_trimmed.is_empty() {
        return Err(CodecError::Invalid {
            what: "connection id list (no ids)",
            offset: at,
        });
    }
    let count = list_trimmed.split(|&b| b == b' ').count();
    if count > MAX_IDS {
        return Err(CodecError::TooManyIds {
            offset: list_at,
            count,
        });
    }
    let mut ids = Vec::with_capacity(count);
    let mut off = at;
    for part in list_trimmed.split(|&b| b == b' ') {
        ids.push(parse_id(part).ok_or(CodecError::Invalid {
            what: "connection id (not a decimal u64)",
            offset: off,
        })?);
        off += part.len() + 1;
    }
    Ok(ids)
}

fn parse_id(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Returns the bytes from `pos` up to the next space, and the offset after
/// that space.
fn take_word<'a>(
    msg: &'a [u8],
    pos: usize,
    expected: &'static str,
) -> Result<(&'a [u8], usize), CodecError> {
    let rest = msg.get(pos..).unwrap_or_default();
    match rest.iter().position(|&b| b == b' ') {
        Some(n) => Ok((&rest[..n], pos + n + 1)),
        None => Err(CodecError::Expected {
            expected,
            offset: msg.len(),
        }),
    }
}

fn check_uuid(at: usize, uuid: &[u8]) -> Result<(), CodecError> {
    if uuid.is_empty() {
        return Err(CodecError::Invalid {
            what: "sender UUID (empty)",
            offset: at,
        });
    }
    if let Some(i) = uuid.iter().position(|&b| !(0x21..=0x7e).contains(&b)) {
        return Err(CodecError::Invalid {
            what: "sender UUID (not printable ASCII)",
            offset: at + i,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// HTTP and WebSocket helpers for handlers (pure)

/// The reason phrase for common status codes ("" for unknown ones).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A complete HTTP/1.1 response: status line, `headers`, and a
/// `Content-Length` (added unless `headers` has one), then `body`.
pub fn http_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64 + headers.len() * 32);
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    let mut has_len = false;
    for (k, v) in headers {
        has_len |= k.eq_ignore_ascii_case("content-length");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_len {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// An unmasked server WebSocket frame with FIN set: `opcode` 1 text, 2
/// binary, 8 close, 9 ping, 10 pong.
pub fn websocket_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | (opcode & 0x0f));
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_escaping() {
        let mut out = Vec::new();
        write_json_str(&mut out, b"a\"b\\c\n\x01\x7f\xff\xe2\x82\xac");
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            "\"a\\\"b\\\\c\\n\\u0001\x7f\u{fffd}\u{20ac}\""
        );
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}\u{7f}\u{fffd}\u{20ac}");
    }

    #[test]
    fn ids() {
        assert_eq!(parse_ids(b"1 2 3", 0, 0).unwrap(), [1, 2, 3]);
        assert_eq!(parse_ids(b"7 ", 0, 0).unwrap(), [7]);
        assert!(parse_ids(b"1  2", 0, 0).is_err());
        assert!(parse_ids(b" 1", 0, 0).is_err());
        assert!(parse_ids(b"", 0, 0).is_err());
        assert!(parse_ids(b"18446744073709551616", 0, 0).is_err());
        assert_eq!(
            parse_ids(b"18446744073709551615", 0, 0).unwrap(),
            [u64::MAX]
        );
        assert_eq!(
            parse_ids(b"1 x", 10, 7),
            Err(CodecError::Invalid {
                what: "connection id (not a decimal u64)",
                offset: 12
            })
        );
    }

    #[test]
    fn websocket_frames() {
        assert_eq!(websocket_frame(1, b"ok"), b"\x81\x02ok");
        let f = websocket_frame(2, &[0; 300]);
        assert_eq!(&f[..4], &[0x82, 126, 1, 44]);
        assert_eq!(f.len(), 304);
    }

    #[test]
    fn http_response_adds_length() {
        assert_eq!(
            http_response(200, &[("Content-Type", "text/plain")], b"hi"),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            http_response(404, &[("content-length", "0")], b""),
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
