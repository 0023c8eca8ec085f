//! The static directory backend over real files: escapes of every form
//! (encoded `..`, NUL, backslashes, absolute paths, symlinks out of the
//! root) answer 404; 304, 206, 416, index.html, 301, HEAD, 405; and through
//! a real hyper connection, that HEAD and 304 frame correctly.

use http_body_util::BodyExt;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroku_frontend::dir::{self, Dir};

/// A temporary tree, removed on drop:
/// `root/` (served) and `outside/` (must never be served).
struct Tree {
    base: PathBuf,
}

const BIG: usize = 3 * 65536 + 17;

fn big() -> Vec<u8> {
    (0..BIG).map(|i| (i * 7 % 251) as u8).collect()
}

impl Tree {
    fn new() -> Tree {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = std::env::temp_dir().join(format!(
            "zeroku-dir-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let out = base.join("outside");
        for d in [
            root.join("sub"),
            root.join("noindex"),
            root.join("evilindex"),
            root.join("dirindex/index.html"),
            out.clone(),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let w = |p: &Path, b: &[u8]| std::fs::write(p, b).unwrap();
        w(&root.join("index.html"), b"<h1>home</h1>\n");
        w(&root.join("hello.txt"), b"hello world\n");
        w(&root.join("empty.txt"), b"");
        w(&root.join("data.bin"), &big());
        w(&root.join("style.CSS"), b"body{}");
        w(&root.join("a b.txt"), b"spaced");
        w(&root.join("..dots"), b"dots");
        w(&root.join("sub/index.html"), b"sub index");
        w(&root.join("sub/app.js"), b"console.log(1)");
        w(&out.join("secret.txt"), b"SECRET");
        w(&out.join("index.html"), b"SECRET INDEX");
        use std::os::unix::fs::symlink;
        symlink("hello.txt", root.join("inside-link")).unwrap();
        symlink("../outside/secret.txt", root.join("link")).unwrap();
        symlink(out.join("secret.txt"), root.join("abslink")).unwrap();
        symlink("../outside", root.join("linkdir")).unwrap();
        symlink(
            "../../outside/index.html",
            root.join("evilindex/index.html"),
        )
        .unwrap();
        symlink("root", base.join("rootlink")).unwrap();
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

async fn req(root: &Path, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let r = dir::serve(root, &method, path, &h).await;
    let (parts, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    if let Some(n) = parts.headers.get(header::CONTENT_LENGTH) {
        if method == Method::GET && parts.status != StatusCode::NOT_MODIFIED {
            assert_eq!(n.to_str().unwrap(), body.len().to_string(), "{path}");
        }
    }
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

async fn get(root: &Path, path: &str) -> Answer {
    req(root, Method::GET, path, &[]).await
}

#[tokio::test]
async fn serves_files_with_types_and_validators() {
    let t = Tree::new();
    let a = get(&t.root(), "/hello.txt").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, b"hello world\n");
    assert_eq!(a.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(a.header("content-length"), Some("12"));
    assert_eq!(a.header("accept-ranges"), Some("bytes"));
    let etag = a.header("etag").unwrap();
    assert!(etag.starts_with("\"c-") && etag.ends_with('"'), "{etag}");
    let lm = a.header("last-modified").unwrap();
    let mtime = std::fs::metadata(t.root().join("hello.txt"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        dir::parse_http_date(lm),
        Some(mtime.duration_since(UNIX_EPOCH).unwrap().as_secs())
    );
    assert!(lm.ends_with(" GMT"));

    let a = get(&t.root(), "/style.CSS").await;
    assert_eq!(a.header("content-type"), Some("text/css; charset=utf-8"));
    let a = get(&t.root(), "/sub/app.js").await;
    assert_eq!(
        a.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let a = get(&t.root(), "/a%20b.txt").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"spaced"[..]));
    let a = get(&t.root(), "/..dots").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"dots"[..]));
    let a = get(&t.root(), "/data.bin").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, big());
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    let a = get(&t.root(), "/empty.txt").await;
    assert_eq!((a.status, a.body.len()), (StatusCode::OK, 0));
    assert_eq!(a.header("content-length"), Some("0"));
    // A symlink that stays inside the root is fine.
    let a = get(&t.root(), "/inside-link").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::OK, &b"hello world\n"[..])
    );
    // The root itself may be reached through a symlink.
    let a = get(&t.base.join("rootlink"), "/hello.txt").await;
    assert_eq!(a.status, 200);
    let a = get(&t.base.join("rootlink"), "/link").await;
    assert_eq!(a.status, 404);
}

#[tokio::test]
async fn escapes_are_404() {
    let t = Tree::new();
    for path in [
        "/../outside/secret.txt",
        "/..",
        "/../",
        "/sub/../../outside/secret.txt",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2e/outside/secret.txt",
        "/%2e%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/%2e./outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/..%2Foutside/secret.txt",
        "/sub/%2e%2e%2f%2e%2e%2foutside/secret.txt",
        "/..\\outside\\secret.txt",
        "/%5c..%5coutside%5csecret.txt",
        "/..%5coutside/secret.txt",
        "/hello.txt%00",
        "/hello.txt%00.html",
        "/%00/../outside/secret.txt",
        "//etc/passwd",
        "/%2fetc/passwd",
        "/%2Fetc%2Fpasswd",
        &format!("/{}", t.base.join("outside/secret.txt").display()),
        &format!("/%2f{}", t.base.join("outside/secret.txt").display()),
        "/link",
        "/abslink",
        "/linkdir/secret.txt",
        "/linkdir/",
        "/linkdir",
        "/evilindex/",
        "/%",
        "/%zz",
        "hello.txt",
        "",
    ] {
        for m in [Method::GET, Method::HEAD] {
            let a = req(&t.root(), m.clone(), path, &[]).await;
            assert_eq!(a.status, 404, "{m} {path:?}");
            let body = String::from_utf8_lossy(&a.body);
            assert!(!body.contains("SECRET"), "{path:?}");
            assert!(!body.contains(&*t.base.to_string_lossy()), "{path:?}");
            assert!(a.header("location").is_none(), "{path:?}");
        }
    }
    // Double encoding is one level of decoding only: a name, not a `..`.
    assert_eq!(
        get(&t.root(), "/%252e%252e/outside/secret.txt")
            .await
            .status,
        404
    );
    // A missing root is a 404 too.
    assert_eq!(get(&t.base.join("nope"), "/").await.status, 404);
}

#[tokio::test]
async fn directories_index_redirect_no_listing() {
    let t = Tree::new();
    let a = get(&t.root(), "/").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::OK, &b"<h1>home</h1>\n"[..])
    );
    assert_eq!(a.header("content-type"), Some("text/html; charset=utf-8"));
    let a = get(&t.root(), "/sub/").await;
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"sub index"[..]));
    let a = get(&t.root(), "/sub").await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(a.header("location"), Some("/sub/"));
    let a = req(&t.root(), Method::HEAD, "/sub", &[]).await;
    assert_eq!(a.status, StatusCode::MOVED_PERMANENTLY);
    let a = get(&t.root(), "/sub/index.html").await;
    assert_eq!(a.status, 200);
    // No listings: a directory without index.html is not found.
    assert_eq!(get(&t.root(), "/noindex/").await.status, 404);
    assert_eq!(get(&t.root(), "/noindex").await.status, 301);
    // index.html that is a directory: not found.
    assert_eq!(get(&t.root(), "/dirindex/").await.status, 404);
    // A file is not a directory.
    assert_eq!(get(&t.root(), "/hello.txt/").await.status, 404);
    assert_eq!(get(&t.root(), "/missing.txt").await.status, 404);
}

#[tokio::test]
async fn head_and_methods() {
    let t = Tree::new();
    let a = req(&t.root(), Method::HEAD, "/data.bin", &[]).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_empty());
    assert_eq!(a.header("content-length"), Some(&*BIG.to_string()));
    assert!(a.header("etag").is_some() && a.header("last-modified").is_some());
    // Range is for GET only.
    let a = req(
        &t.root(),
        Method::HEAD,
        "/data.bin",
        &[("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(a.status, 200);
    for m in [
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
        Method::PATCH,
    ] {
        let a = req(&t.root(), m.clone(), "/hello.txt", &[]).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(a.header("allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn conditional_requests() {
    let t = Tree::new();
    let root = t.root();
    let first = get(&root, "/hello.txt").await;
    let etag = first.header("etag").unwrap().to_string();
    let lm = first.header("last-modified").unwrap().to_string();
    let weak = format!("W/{etag}");
    let list = format!("\"nope\", {etag}");
    for h in [
        vec![("if-none-match", etag.as_str())],
        vec![("if-none-match", weak.as_str())],
        vec![("if-none-match", list.as_str())],
        vec![("if-none-match", "*")],
        vec![
            ("if-none-match", "\"nope\""),
            ("if-none-match", etag.as_str()),
        ],
        vec![("if-modified-since", lm.as_str())],
        vec![("if-modified-since", "Fri, 31 Dec 2100 23:59:59 GMT")],
    ] {
        for m in [Method::GET, Method::HEAD] {
            let a = req(&root, m, "/hello.txt", &h).await;
            assert_eq!(a.status, StatusCode::NOT_MODIFIED, "{h:?}");
            assert!(a.body.is_empty());
            assert_eq!(a.header("etag"), Some(etag.as_str()));
            assert_eq!(a.header("last-modified"), Some(lm.as_str()));
        }
    }
    for h in [
        vec![("if-none-match", "\"nope\"")],
        // If-None-Match wins over If-Modified-Since.
        vec![
            ("if-none-match", "\"nope\""),
            ("if-modified-since", lm.as_str()),
        ],
        vec![("if-modified-since", "Thu, 01 Jan 1970 00:00:00 GMT")],
        vec![("if-modified-since", "not a date")],
    ] {
        let a = req(&root, Method::GET, "/hello.txt", &h).await;
        assert_eq!(a.status, 200, "{h:?}");
        assert_eq!(a.body, b"hello world\n");
    }
    // Index pages revalidate too.
    let idx = get(&root, "/").await;
    let a = req(
        &root,
        Method::GET,
        "/",
        &[("if-none-match", idx.header("etag").unwrap())],
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
    // A changed file gets a new ETag.
    std::fs::write(root.join("hello.txt"), b"hello again, world\n").unwrap();
    let a = req(
        &root,
        Method::GET,
        "/hello.txt",
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(a.status, 200);
    assert_ne!(a.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn ranges() {
    let t = Tree::new();
    let root = t.root();
    let data = big();
    let range = |r: &'static str| {
        let root = root.clone();
        async move { req(&root, Method::GET, "/data.bin", &[("range", r)]).await }
    };
    let a = range("bytes=0-9").await;
    assert_eq!(a.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(a.body, &data[..10]);
    assert_eq!(
        a.header("content-range"),
        Some(&*format!("bytes 0-9/{BIG}"))
    );
    assert_eq!(a.header("content-length"), Some("10"));
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    // Across read chunks, open-ended, suffix.
    let a = range("bytes=65530-131080").await;
    assert_eq!(a.body, &data[65530..=131080]);
    let a = range("bytes=100000-").await;
    assert_eq!(a.body, &data[100000..]);
    assert_eq!(
        a.header("content-range"),
        Some(&*format!("bytes 100000-{}/{BIG}", BIG - 1))
    );
    let a = range("bytes=-5").await;
    assert_eq!(
        (a.status, &a.body[..]),
        (StatusCode::PARTIAL_CONTENT, &data[BIG - 5..])
    );
    let a = range("bytes=-999999999").await;
    assert_eq!((a.status, a.body.len()), (StatusCode::PARTIAL_CONTENT, BIG));
    let a = range("bytes=10-99999999").await;
    assert_eq!(a.body, &data[10..]);
    // Unsatisfiable.
    for r in ["bytes=999999-", "bytes=196625-196700", "bytes=-0"] {
        let a = range(r).await;
        assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE, "{r}");
        assert_eq!(a.header("content-range"), Some(&*format!("bytes */{BIG}")));
    }
    let a = req(&root, Method::GET, "/empty.txt", &[("range", "bytes=0-")]).await;
    assert_eq!(a.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(a.header("content-range"), Some("bytes */0"));
    // Several ranges, bad syntax, other units: the whole file.
    for r in ["bytes=0-1,5-6", "bytes=5-1", "bytes=x-", "lines=1-2"] {
        let a = range(r).await;
        assert_eq!((a.status, a.body.len()), (StatusCode::OK, BIG), "{r}");
        assert!(a.header("content-range").is_none());
    }
    // If-Range: honoured when it matches, whole file otherwise.
    let full = get(&root, "/data.bin").await;
    let etag = full.header("etag").unwrap().to_string();
    let lm = full.header("last-modified").unwrap().to_string();
    for (v, partial) in [
        (etag.as_str(), true),
        (lm.as_str(), true),
        ("\"stale\"", false),
        ("Thu, 01 Jan 1970 00:00:00 GMT", false),
    ] {
        let a = req(
            &root,
            Method::GET,
            "/data.bin",
            &[("range", "bytes=0-3"), ("if-range", v)],
        )
        .await;
        let want = if partial {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        };
        assert_eq!(a.status, want, "If-Range {v}");
    }
    // A 304 wins over a range.
    let a = req(
        &root,
        Method::GET,
        "/data.bin",
        &[("range", "bytes=0-3"), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn dir_handle_reuses_its_root() {
    let t = Tree::new();
    let d = Dir::new(&t.base.join("rootlink")).unwrap();
    assert_eq!(d.root(), std::fs::canonicalize(t.root()).unwrap());
    let r = d.serve(&Method::GET, "/hello.txt", &HeaderMap::new()).await;
    assert_eq!(r.status(), 200);
    let r = d.serve(&Method::GET, "/link", &HeaderMap::new()).await;
    assert_eq!(r.status(), 404);
    assert!(Dir::new(&t.root().join("hello.txt")).is_err());
    assert!(Dir::new(&t.base.join("missing")).is_err());
}

/// Through hyper: HEAD and 304 carry no body (so the next pipelined answer
/// follows right after the head), HEAD keeps the file's Content-Length.
#[tokio::test]
async fn framing_through_hyper() {
    let t = Tree::new();
    let d = std::sync::Arc::new(Dir::new(&t.root()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = hyper::service::service_fn(move |r: hyper::Request<hyper::body::Incoming>| {
            let d = d.clone();
            async move {
                Ok::<_, std::convert::Infallible>(
                    d.serve(r.method(), r.uri().path(), r.headers()).await,
                )
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
            .await;
    });
    let etag = get(&t.root(), "/hello.txt")
        .await
        .header("etag")
        .unwrap()
        .to_string();
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let reqs = format!(
        "HEAD /data.bin HTTP/1.1\r\nHost: x\r\n\r\n\
         GET /hello.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n\
         GET /data.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=-4\r\n\r\n\
         GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    c.write_all(reqs.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    server.await.unwrap();

    let mut rest = &out[..];
    let mut answers = Vec::new();
    while !rest.is_empty() {
        let mut hs = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut hs);
        let n = match r.parse(rest).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                panic!("partial head: {:?}", String::from_utf8_lossy(rest))
            }
        };
        let hdr = |name: &str| {
            r.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8(h.value.to_vec()).unwrap())
        };
        let code = r.code.unwrap();
        let len = hdr("content-length");
        let body_len = if answers.is_empty() || code == 304 {
            0 // HEAD, 304
        } else {
            len.as_deref().unwrap().parse().unwrap()
        };
        answers.push((code, len, rest[n..n + body_len].to_vec()));
        rest = &rest[n + body_len..];
    }
    assert_eq!(answers.len(), 4, "{:?}", String::from_utf8_lossy(&out));
    assert_eq!(answers[0].0, 200);
    assert_eq!(answers[0].1.as_deref(), Some(&*BIG.to_string()));
    assert_eq!(answers[1].0, 304);
    assert_eq!((answers[2].0, &answers[2].2[..]), (206, &big()[BIG - 4..]));
    assert_eq!(
        (answers[3].0, &answers[3].2[..]),
        (200, &b"hello world\n"[..])
    );
}
