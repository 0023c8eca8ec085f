//! The static directory backend: serves files from a directory of an app's
//! slug (GET and HEAD only), with `ETag`/`Last-Modified` revalidation
//! (304), single byte ranges (206/416), `index.html` for directories and a
//! content type from the file extension.
//!
//! It owns path safety: a request path is percent-decoded and refused (404)
//! when it could name anything outside the root (`..` in any encoding, NUL,
//! backslashes, empty segments such as `//etc`, symlinks resolving outside).
//! It must not list directories, write anything, read a whole file into
//! memory (bodies are streamed) or reveal file-system paths in its answers.
//!
//! Documented choices: a `Range` with several ranges is answered with the
//! whole file (200); `Range` is honoured for GET only (RFC 9110 §14.2) and
//! ignored when syntactically invalid; a 304 carries no `Content-Length`.
//! Redirects (`/dir` → `/dir/`) name the path exactly as the caller passed it
//! to [`serve`], so a caller that strips a route prefix must put it back.

use crate::edge::{error_page, Body, BoxError};
use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Bytes read from the file per body frame, at most.
const CHUNK: u64 = 64 << 10;

/// A directory to serve, its root canonicalized once.
#[derive(Debug, Clone)]
pub struct Dir {
    root: PathBuf,
}

impl Dir {
    /// Canonicalizes `root` (which must exist and be a directory).
    pub fn new(root: &Path) -> std::io::Result<Dir> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(Dir { root })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers one request; `path` is the raw (percent-encoded) request
    /// path without the query.
    pub async fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut r = error_page(
                StatusCode::METHOD_NOT_ALLOWED,
                "static files answer GET and HEAD only",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let Some((rel, trailing_slash)) = safe_relative(path) else {
            return not_found();
        };
        let Some(target) = self.resolve(&self.root.join(&rel)).await else {
            return not_found();
        };
        let Ok(meta) = tokio::fs::metadata(&target).await else {
            return not_found();
        };
        let target = if meta.is_dir() {
            if !trailing_slash {
                return redirect(&format!("{path}/"));
            }
            match self.resolve(&target.join("index.html")).await {
                Some(t) => t,
                None => return not_found(),
            }
        } else if trailing_slash {
            return not_found();
        } else {
            target
        };
        let Ok(mut file) = tokio::fs::File::open(&target).await else {
            return not_found();
        };
        // The handle's own metadata: what is streamed is what is described.
        let meta = match file.metadata().await {
            Ok(m) if m.is_file() => m,
            _ => return not_found(),
        };
        let size = meta.len();
        let modified = meta.modified().ok();
        let tag = etag(size, modified);
        let mut h = HeaderMap::new();
        h.insert(header::ETAG, hv(&tag));
        if let Some(m) = modified {
            h.insert(header::LAST_MODIFIED, hv(&http_date(m)));
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));

        if not_modified(headers, &tag, modified) {
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            *r.headers_mut() = h;
            return r;
        }

        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&target)),
        );
        let range = if method == Method::GET && if_range_holds(headers, &tag, modified) {
            let values: Vec<&str> = headers
                .get_all(header::RANGE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            match values.as_slice() {
                [one] => parse_range(one, size),
                _ => Range::Full,
            }
        } else {
            Range::Full
        };
        let (status, start, len) = match range {
            Range::Full => (StatusCode::OK, 0, size),
            Range::Partial { start, end } => {
                h.insert(
                    header::CONTENT_RANGE,
                    hv(&format!("bytes {start}-{end}/{size}")),
                );
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            Range::Unsatisfiable => {
                let mut r = error_page(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "the requested range is outside the file",
                );
                let rh = r.headers_mut();
                rh.insert(header::CONTENT_RANGE, hv(&format!("bytes */{size}")));
                rh.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                return r;
            }
        };
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        let body = if method == Method::HEAD || len == 0 {
            empty()
        } else {
            if start > 0 && file.seek(std::io::SeekFrom::Start(start)).await.is_err() {
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the file");
            }
            let reader = file.take(len);
            let stream =
                tokio_util::io::ReaderStream::with_capacity(reader, len.min(CHUNK) as usize)
                    .map(|r| r.map(Frame::data).map_err(|e| Box::new(e) as BoxError));
            BodyExt::boxed(StreamBody::new(stream))
        };
        let mut r = Response::new(body);
        *r.status_mut() = status;
        *r.headers_mut() = h;
        r
    }

    /// Canonicalizes `p` and keeps it only if it is still inside the root
    /// (symlinks resolving elsewhere are refused).
    async fn resolve(&self, p: &Path) -> Option<PathBuf> {
        let c = tokio::fs::canonicalize(p).await.ok()?;
        c.starts_with(&self.root).then_some(c)
    }
}

/// Serves `path` from `root`, canonicalizing `root` for this one request;
/// keep a [`Dir`] to do that once.
pub async fn serve(
    root: &Path,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Body> {
    let root = root.to_path_buf();
    match tokio::task::spawn_blocking(move || Dir::new(&root)).await {
        Ok(Ok(dir)) => dir.serve(method, path, headers).await,
        _ => not_found(),
    }
}

fn not_found() -> Response<Body> {
    error_page(StatusCode::NOT_FOUND, "no such file")
}

fn redirect(location: &str) -> Response<Body> {
    let mut r = error_page(StatusCode::MOVED_PERMANENTLY, "this is a directory");
    r.headers_mut().insert(header::LOCATION, hv(location));
    r
}

fn empty() -> Body {
    Empty::<Bytes>::new().map_err(|e| match e {}).boxed()
}

/// A header value from text we built (ASCII); never fails in practice.
fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

// ---------------------------------------------------------------- paths

/// Decodes `%XX` escapes; `None` on a malformed escape. `+` stays `+`.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let hi = hex(*b.get(i + 1)?)?;
            let lo = hex(*b.get(i + 2)?)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The relative file-system path a raw request path names, and whether it
/// ended with `/`; `None` if it must not be served: not starting with `/`,
/// a malformed escape, NUL or backslash, a `..` segment, or an empty
/// segment other than the trailing one (`//etc/passwd`, `/%2fetc`).
pub fn safe_relative(raw: &str) -> Option<(PathBuf, bool)> {
    let decoded = percent_decode(raw)?;
    let rest = decoded.strip_prefix(b"/")?;
    if decoded.iter().any(|&c| c == 0 || c == b'\\') {
        return None;
    }
    let segments: Vec<&[u8]> = rest.split(|&c| c == b'/').collect();
    let last = segments.len() - 1;
    let mut rel = PathBuf::new();
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            b"" if i == last => {}
            b"" | b".." => return None,
            b"." => {}
            s => rel.push(OsStr::from_bytes(s)),
        }
    }
    // Belt and braces: only plain names made it in.
    if rel.is_absolute()
        || rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some((rel, rest.is_empty() || rest.ends_with(b"/")))
}

// ------------------------------------------------------------ MIME types

/// The `Content-Type` for a file, from its extension (case-insensitive);
/// `application/octet-stream` when unknown.
pub fn content_type(path: &Path) -> &'static str {
    let Some(ext) = path.extension().and_then(OsStr::to_str) else {
        return "application/octet-stream";
    };
    let ext = ext.to_ascii_lowercase();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "txt" | "text" => "text/plain; charset=utf-8",
        "md" | "markdown" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "xml" => "text/xml; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "bmp" => "image/bmp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        _ => "application/octet-stream",
    }
}

// ------------------------------------------------- validators, conditions

/// A strong entity tag from the size and the modification time:
/// `"<size hex>-<mtime nanos hex>"`.
pub fn etag(size: u64, modified: Option<SystemTime>) -> String {
    let nanos = modified
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("\"{size:x}-{nanos:x}\"")
}

/// The entity tags of an `If-None-Match`/`If-Range` style list, each with
/// its quotes and without any `W/`; `None` for `*`. Malformed tails end the
/// list.
fn etag_list(s: &str) -> Option<Vec<&str>> {
    if s.trim() == "*" {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let tag = rest.strip_prefix("W/").unwrap_or(rest);
        if !tag.starts_with('"') {
            break;
        }
        let Some(end) = tag[1..].find('"') else { break };
        out.push(&tag[..end + 2]);
        rest = &tag[end + 2..];
    }
    Some(out)
}

/// Whether the request's `If-None-Match` (weak comparison, `*`) or, without
/// it, `If-Modified-Since` says the client's copy is current.
fn not_modified(headers: &HeaderMap, tag: &str, modified: Option<SystemTime>) -> bool {
    let inm: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !inm.is_empty() {
        return inm.iter().any(|v| match etag_list(v) {
            None => true,
            Some(tags) => tags.contains(&tag),
        });
    }
    let (Some(ims), Some(m)) = (
        headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date),
        modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()),
    ) else {
        return false;
    };
    m.as_secs() <= ims
}

/// Whether a `Range` may be honoured given `If-Range`: absent, a strong tag
/// equal to ours, or a date equal to our `Last-Modified`.
fn if_range_holds(headers: &HeaderMap, tag: &str, modified: Option<SystemTime>) -> bool {
    let Some(v) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(v) = v.to_str() else { return false };
    let v = v.trim();
    if v.starts_with('"') {
        return v == tag;
    }
    if v.starts_with("W/") {
        return false;
    }
    match (
        parse_http_date(v),
        modified.and_then(|m| m.duration_since(UNIX_EPOCH).ok()),
    ) {
        (Some(d), Some(m)) => d == m.as_secs(),
        _ => false,
    }
}

// ----------------------------------------------------------------- ranges

/// What a `Range` header asks of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No usable range: the whole file, 200 (also for several ranges,
    /// other units and invalid syntax).
    Full,
    /// One range, `end` inclusive and within the file: 206.
    Partial { start: u64, end: u64 },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Parses a `Range` value (`bytes=a-b`, `bytes=a-`, `bytes=-n`) against a
/// file of `size` bytes.
pub fn parse_range(value: &str, size: u64) -> Range {
    let value = value.trim();
    let Some((unit, set)) = value.split_once('=') else {
        return Range::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Range::Full;
    }
    let specs: Vec<&str> = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .collect();
    let [spec] = specs.as_slice() else {
        return Range::Full;
    };
    let Some((a, b)) = spec.split_once('-') else {
        return Range::Full;
    };
    let num = |s: &str| -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(s.bytes().fold(0u64, |n, c| {
            n.saturating_mul(10).saturating_add(u64::from(c - b'0'))
        }))
    };
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Range::Full,
        // -n: the last n bytes.
        (true, false) => match num(b) {
            None => Range::Full,
            Some(0) => Range::Unsatisfiable,
            Some(_) if size == 0 => Range::Unsatisfiable,
            Some(n) => Range::Partial {
                start: size - n.min(size),
                end: size - 1,
            },
        },
        (false, _) => {
            let Some(start) = num(a) else {
                return Range::Full;
            };
            let end = if b.is_empty() {
                u64::MAX
            } else {
                match num(b) {
                    Some(e) if e >= start => e,
                    _ => return Range::Full,
                }
            };
            if start >= size {
                Range::Unsatisfiable
            } else {
                Range::Partial {
                    start,
                    end: end.min(size - 1),
                }
            }
        }
    }
}

// ------------------------------------------------------------------ dates

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month 1..=12, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats a time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`);
/// times before 1970 are clamped to the epoch.
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[((days + 4) % 7) as usize],
        MONTHS[(m - 1) as usize],
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

/// Parses an HTTP date in any of the three forms of RFC 9110 §5.6.7
/// (IMF-fixdate, RFC 850, asctime) into seconds since the epoch. The day
/// name is not checked.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let s = s.trim();
    let month = |m: &str| MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1);
    let (y, mo, d, time) = if let Some((_, rest)) = s.split_once(',') {
        let f: Vec<&str> = rest.split_whitespace().collect();
        match f.as_slice() {
            // 06 Nov 1994 08:49:37 GMT
            [d, mo, y, time, "GMT"] if d.len() == 2 && y.len() == 4 => {
                (y.parse().ok()?, month(mo)?, d.parse().ok()?, *time)
            }
            // 06-Nov-94 08:49:37 GMT
            [date, time, "GMT"] => {
                let mut p = date.split('-');
                let (d, mo, y) = (p.next()?, p.next()?, p.next()?);
                if p.next().is_some() || d.len() != 2 || y.len() != 2 {
                    return None;
                }
                let yy: i64 = y.parse().ok()?;
                let y = if yy < 70 { 2000 + yy } else { 1900 + yy };
                (y, month(mo)?, d.parse().ok()?, *time)
            }
            _ => return None,
        }
    } else {
        // Sun Nov  6 08:49:37 1994
        let f: Vec<&str> = s.split_whitespace().collect();
        match f.as_slice() {
            [_, mo, d, time, y] if y.len() == 4 => {
                (y.parse().ok()?, month(mo)?, d.parse().ok()?, *time)
            }
            _ => return None,
        }
    };
    let t: Vec<&str> = time.split(':').collect();
    let [h, mi, se] = t.as_slice() else {
        return None;
    };
    let two = |x: &str| -> Option<u64> {
        (x.len() == 2 && x.bytes().all(|c| c.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (h, mi, se) = (two(h)?, two(mi)?, two(se)?);
    if !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 || y < 1970 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if days < 0 {
        return None;
    }
    Some(days as u64 * 86_400 + h * 3600 + mi * 60 + se)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(p: &str) -> Option<String> {
        safe_relative(p)
            .map(|(r, slash)| format!("{}{}", r.display(), if slash { "/" } else { "" }))
    }

    #[test]
    fn path_safety() {
        assert_eq!(rel("/").as_deref(), Some("/"));
        assert_eq!(rel("/a/b.txt").as_deref(), Some("a/b.txt"));
        assert_eq!(rel("/a/b/").as_deref(), Some("a/b/"));
        assert_eq!(rel("/a/./b").as_deref(), Some("a/b"));
        assert_eq!(rel("/a%20b.txt").as_deref(), Some("a b.txt"));
        assert_eq!(rel("/a+b").as_deref(), Some("a+b"));
        assert_eq!(rel("/a%2fb").as_deref(), Some("a/b"));
        assert_eq!(rel("/..foo").as_deref(), Some("..foo"));
        for bad in [
            "",
            "a/b",
            "*",
            "/..",
            "/../x",
            "/a/../../x",
            "/a/..",
            "/%2e%2e/x",
            "/%2E%2e/x",
            "/%2e%2E",
            "/.%2e/x",
            "/..%2fx",
            "/..%2Fx",
            "/a/%2e%2e%2f%2e%2e%2fx",
            "/%00",
            "/index.html%00.txt",
            "/a\\b",
            "/%5c..%5cx",
            "//etc/passwd",
            "/%2fetc/passwd",
            "/a//b",
            "/%",
            "/%2",
            "/%zz",
            "/%e9%",
        ] {
            assert_eq!(rel(bad), None, "{bad:?} must be refused");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%41%7a%7A").unwrap(), b"aAzz");
        assert_eq!(percent_decode("%e2%9c%93").unwrap(), "✓".as_bytes());
        assert_eq!(percent_decode("%g0"), None);
    }

    #[test]
    fn ranges() {
        use Range::*;
        let p = |s, e| Partial { start: s, end: e };
        assert_eq!(parse_range("bytes=0-0", 10), p(0, 0));
        assert_eq!(parse_range("bytes=2-5", 10), p(2, 5));
        assert_eq!(parse_range("bytes=2-100", 10), p(2, 9));
        assert_eq!(parse_range("bytes=2-99999999999999999999999", 10), p(2, 9));
        assert_eq!(parse_range("bytes=7-", 10), p(7, 9));
        assert_eq!(parse_range("bytes=-3", 10), p(7, 9));
        assert_eq!(parse_range("bytes=-30", 10), p(0, 9));
        assert_eq!(parse_range("Bytes = 1-2 ", 10), p(1, 2));
        assert_eq!(parse_range("bytes= 1-2,", 10), p(1, 2));
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 10),
            Unsatisfiable
        );
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
        for full in [
            "bytes=0-1,3-4",
            "bytes=5-2",
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=+1-2",
            "items=0-1",
            "bytes",
            "",
            "bytes=",
        ] {
            assert_eq!(parse_range(full, 10), Full, "{full:?}");
        }
    }

    #[test]
    fn dates() {
        let t = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(http_date(t(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(t(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(t(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        // 2100 is not a leap year.
        assert_eq!(http_date(t(4_107_542_399)), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(http_date(t(4_107_542_400)), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(http_date(t(4_133_980_799)), "Fri, 31 Dec 2100 23:59:59 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH - Duration::from_secs(5)),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_http_date(s), Some(784_111_777), "{s}");
        }
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Thu, 01 Jan 1969 00:00:00 GMT",
            "1994-11-06T08:49:37Z",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
        // Round trip over a spread of days, leap years included.
        for secs in (0..4_000_000_000u64).step_by(86_400 * 97 + 3_601) {
            assert_eq!(parse_http_date(&http_date(t(secs))), Some(secs));
        }
    }

    #[test]
    fn mime() {
        let ct = |p: &str| content_type(Path::new(p));
        assert_eq!(ct("a/index.html"), "text/html; charset=utf-8");
        assert_eq!(ct("X.HTM"), "text/html; charset=utf-8");
        assert_eq!(ct("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("app.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(ct("s.css"), "text/css; charset=utf-8");
        assert_eq!(ct("r.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("d.json"), "application/json");
        assert_eq!(ct("app.js.map"), "application/json");
        assert_eq!(ct("i.svg"), "image/svg+xml");
        assert_eq!(ct("i.JPG"), "image/jpeg");
        assert_eq!(ct("m.wasm"), "application/wasm");
        assert_eq!(ct("f.woff2"), "font/woff2");
        assert_eq!(ct("Makefile"), "application/octet-stream");
        assert_eq!(ct("x.unknown"), "application/octet-stream");
        assert_eq!(ct(".bashrc"), "application/octet-stream");
    }

    #[test]
    fn entity_tags() {
        let tag = "\"a-1f\"";
        assert_eq!(etag(10, Some(UNIX_EPOCH + Duration::from_nanos(31))), tag);
        assert_eq!(etag_list("*"), None);
        assert_eq!(
            etag_list("\"x\", W/\"a-1f\" ,\"y,z\"").unwrap(),
            vec!["\"x\"", tag, "\"y,z\""]
        );
        assert_eq!(etag_list("\"x\", junk, \"y\"").unwrap(), vec!["\"x\""]);
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, hv("W/\"a-1f\""));
        assert!(not_modified(&h, tag, None));
        h.insert(header::IF_NONE_MATCH, hv("\"other\""));
        h.insert(
            header::IF_MODIFIED_SINCE,
            hv("Sun, 06 Nov 2094 08:49:37 GMT"),
        );
        // If-None-Match present and not matching: If-Modified-Since ignored.
        assert!(!not_modified(&h, tag, Some(UNIX_EPOCH)));
        h.remove(header::IF_NONE_MATCH);
        assert!(not_modified(&h, tag, Some(UNIX_EPOCH)));
    }
}
