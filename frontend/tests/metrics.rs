//! Metrics: the text exposition format parsed back line by line, histogram
//! cumulativity, label escaping, the app cardinality cap, and the admin
//! server over a real TCP connection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use zeroku_frontend::metrics::{escape_label, Metrics, BUCKETS, MAX_APPS, OTHER_APP};

#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict parser of the text format: HELP and TYPE precede their
/// family's samples, label values are unescaped, values are floats.
fn parse(text: &str) -> (Vec<Sample>, HashMap<String, String>) {
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    let mut types = HashMap::new();
    let mut helps = HashMap::new();
    let mut samples = Vec::new();
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        assert!(!line.is_empty(), "no empty lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(valid_name(name));
            assert!(!help.is_empty());
            assert!(helps.insert(name.to_string(), help.to_string()).is_none());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty));
            assert!(helps.contains_key(name), "HELP before TYPE for {name}");
            assert!(types.insert(name.to_string(), ty.to_string()).is_none());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line}");
        let name_end = line.find(['{', ' ']).unwrap();
        let name = &line[..name_end];
        assert!(valid_name(name), "{line}");
        let mut labels = BTreeMap::new();
        let mut rest = line[name_end..].to_string();
        if let Some(r) = rest.strip_prefix('{') {
            let b: Vec<char> = r.chars().collect();
            let mut i = 0;
            while b[i] != '}' {
                let start = i;
                while b[i] != '=' {
                    i += 1;
                }
                let key: String = b[start..i].iter().collect();
                assert!(valid_name(&key), "label name {key:?} in {line}");
                assert_eq!(b[i + 1], '"', "{line}");
                i += 2;
                let mut value = String::new();
                loop {
                    match b[i] {
                        '"' => break,
                        '\\' => {
                            i += 1;
                            value.push(match b[i] {
                                '\\' => '\\',
                                '"' => '"',
                                'n' => '\n',
                                c => panic!("bad escape \\{c} in {line}"),
                            });
                        }
                        c => value.push(c),
                    }
                    i += 1;
                }
                i += 1;
                assert!(labels.insert(key, value).is_none(), "{line}");
                match b[i] {
                    ',' => i += 1,
                    '}' => {}
                    c => panic!("unexpected {c:?} in {line}"),
                }
            }
            rest = b[i + 1..].iter().collect();
        }
        let value = rest.strip_prefix(' ').expect("one space before the value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value {v:?}")),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "TYPE before samples of {family}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    (samples, types)
}

fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let hits: Vec<_> = samples
        .iter()
        .filter(|s| s.name == name && s.labels == want)
        .collect();
    assert!(hits.len() <= 1, "duplicate series {name} {labels:?}");
    hits.first().map(|s| s.value)
}

const REQS: &str = "zeroku_frontend_requests_total";
const DUR: &str = "zeroku_frontend_request_duration_seconds";
const QUEUE: &str = "zeroku_frontend_handler_queue_depth";

#[test]
fn render_parses_back() {
    let m = Metrics::new();
    for _ in 0..12 {
        m.observe("chat", 200, Duration::from_millis(3));
    }
    m.observe("chat", 404, Duration::from_micros(200));
    m.observe("chat", 599, Duration::from_millis(30));
    m.observe("site", 503, Duration::from_secs(20));
    m.set_queue_depth("chat", 7);
    let text = m.render();
    let (samples, types) = parse(&text);
    assert_eq!(types[REQS], "counter");
    assert_eq!(types[DUR], "histogram");
    assert_eq!(types[QUEUE], "gauge");
    assert!(text.contains("zeroku_frontend_requests_total{app=\"chat\",code=\"200\"} 12\n"));
    assert!(text.contains(
        "zeroku_frontend_request_duration_seconds_bucket{app=\"chat\",le=\"0.005\"} 13\n"
    ));
    assert_eq!(
        find(&samples, REQS, &[("app", "chat"), ("code", "404")]),
        Some(1.0)
    );
    assert_eq!(
        find(&samples, REQS, &[("app", "chat"), ("code", "5xx")]),
        Some(1.0)
    );
    assert_eq!(
        find(&samples, REQS, &[("app", "site"), ("code", "503")]),
        Some(1.0)
    );
    assert_eq!(
        find(&samples, REQS, &[("app", "chat"), ("code", "500")]),
        None
    );
    assert_eq!(find(&samples, QUEUE, &[("app", "chat")]), Some(7.0));
    assert_eq!(find(&samples, QUEUE, &[("app", "site")]), None);
    assert_eq!(
        find(&samples, &format!("{DUR}_count"), &[("app", "chat")]),
        Some(14.0)
    );
    let sum = find(&samples, &format!("{DUR}_sum"), &[("app", "chat")]).unwrap();
    assert!((sum - (0.036 + 0.0002 + 0.03)).abs() < 1e-9, "{sum}");
    let le = |app, le| {
        find(
            &samples,
            &format!("{DUR}_bucket"),
            &[("app", app), ("le", le)],
        )
    };
    assert_eq!(le("chat", "0.001"), Some(1.0));
    assert_eq!(le("chat", "0.0025"), Some(1.0));
    assert_eq!(le("chat", "0.025"), Some(13.0));
    assert_eq!(le("chat", "0.05"), Some(14.0));
    assert_eq!(le("chat", "+Inf"), Some(14.0));
    assert_eq!(le("site", "10"), Some(0.0));
    assert_eq!(le("site", "+Inf"), Some(1.0));
    // Nothing for `_other` while it is empty.
    assert!(samples
        .iter()
        .all(|s| s.labels.get("app").map(String::as_str) != Some(OTHER_APP)));
    // The gauge updates.
    m.set_queue_depth("chat", 0);
    let (samples, _) = parse(&m.render());
    assert_eq!(find(&samples, QUEUE, &[("app", "chat")]), Some(0.0));
}

#[test]
fn histogram_is_cumulative() {
    let m = Metrics::new();
    let mut n = 0u64;
    for ms in [
        0u64, 1, 2, 4, 7, 12, 40, 90, 200, 400, 900, 2000, 4000, 9000, 15000,
    ] {
        for _ in 0..=(ms % 5) {
            m.observe("a", 200, Duration::from_millis(ms));
            n += 1;
        }
    }
    let (samples, _) = parse(&m.render());
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == format!("{DUR}_bucket") && s.labels["app"] == "a")
        .collect();
    assert_eq!(buckets.len(), BUCKETS.len() + 1);
    let les: Vec<f64> = buckets
        .iter()
        .map(|s| match s.labels["le"].as_str() {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap(),
        })
        .collect();
    assert!(les.windows(2).all(|w| w[0] < w[1]), "le ascending: {les:?}");
    assert_eq!(&les[..BUCKETS.len()], &BUCKETS[..]);
    assert!(
        buckets.windows(2).all(|w| w[0].value <= w[1].value),
        "cumulative"
    );
    assert_eq!(buckets.last().unwrap().value, n as f64);
    assert_eq!(
        find(&samples, &format!("{DUR}_count"), &[("app", "a")]),
        Some(n as f64)
    );
    // Every bucket counts exactly the observations <= le.
    let mut expect = vec![0u64; BUCKETS.len() + 1];
    for ms in [
        0u64, 1, 2, 4, 7, 12, 40, 90, 200, 400, 900, 2000, 4000, 9000, 15000,
    ] {
        for (i, le) in les.iter().enumerate() {
            if ms as f64 / 1000.0 <= *le {
                expect[i] += ms % 5 + 1;
            }
        }
    }
    let got: Vec<u64> = buckets.iter().map(|s| s.value as u64).collect();
    assert_eq!(got, expect);
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
    assert_eq!(escape_label("x\ny"), "x\\ny");
    assert_eq!(escape_label("plain-app"), "plain-app");
    let m = Metrics::new();
    let weird = "we\"ird\\app\nname,}{=é";
    m.observe(weird, 201, Duration::from_millis(1));
    m.set_queue_depth(weird, 3);
    let text = m.render();
    assert!(
        !text.contains("ird\\app\nname"),
        "no raw newline in a label"
    );
    let (samples, _) = parse(&text);
    assert_eq!(
        find(&samples, REQS, &[("app", weird), ("code", "201")]),
        Some(1.0)
    );
    assert_eq!(find(&samples, QUEUE, &[("app", weird)]), Some(3.0));
    assert_eq!(
        find(&samples, &format!("{DUR}_count"), &[("app", weird)]),
        Some(1.0)
    );
}

#[test]
fn cardinality_is_capped() {
    let m = Metrics::new();
    for i in 0..MAX_APPS + 25 {
        m.observe(&format!("app{i:05}"), 200, Duration::from_millis(2));
        m.set_queue_depth(&format!("app{i:05}"), 1);
    }
    // Already tracked apps keep their own series past the cap.
    m.observe("app00000", 500, Duration::from_millis(2));
    // The name `_other` itself goes to the aggregate, never a duplicate.
    m.observe(OTHER_APP, 200, Duration::from_millis(2));
    let (samples, _) = parse(&m.render());
    let apps: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter_map(|s| s.labels.get("app").map(String::as_str))
        .collect();
    assert_eq!(apps.len(), MAX_APPS + 1);
    assert!(apps.contains(OTHER_APP));
    assert!(!apps.contains(format!("app{:05}", MAX_APPS).as_str()));
    assert_eq!(
        find(&samples, REQS, &[("app", OTHER_APP), ("code", "200")]),
        Some(26.0)
    );
    assert_eq!(
        find(&samples, REQS, &[("app", "app00000"), ("code", "500")]),
        Some(1.0)
    );
    assert_eq!(find(&samples, QUEUE, &[("app", OTHER_APP)]), None);
    let gauges = samples.iter().filter(|s| s.name == QUEUE).count();
    assert_eq!(gauges, MAX_APPS);
    assert_eq!(
        find(&samples, "zeroku_frontend_tracked_apps", &[]),
        Some(MAX_APPS as f64)
    );
    // Codes: at most the registered ones plus the classes, whatever arrives.
    let m = Metrics::new();
    for code in 0..1000u16 {
        m.observe("x", code, Duration::ZERO);
    }
    let (samples, _) = parse(&m.render());
    let codes = samples.iter().filter(|s| s.name == REQS).count();
    assert!(codes <= 70, "{codes} code series");
    let total: f64 = samples
        .iter()
        .filter(|s| s.name == REQS)
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 1000.0);
}

#[test]
fn concurrent_observations_all_count() {
    let m = Arc::new(Metrics::new());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let m = m.clone();
            std::thread::spawn(move || {
                for i in 0..5000u32 {
                    m.observe(
                        &format!("app{}", i % 7),
                        200 + (t as u16),
                        Duration::from_micros(u64::from(i)),
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (samples, _) = parse(&m.render());
    let total: f64 = samples
        .iter()
        .filter(|s| s.name == REQS)
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 20_000.0);
    let count: f64 = samples
        .iter()
        .filter(|s| s.name == format!("{DUR}_count"))
        .map(|s| s.value)
        .sum();
    assert_eq!(count, 20_000.0);
}

/// One HTTP/1.1 request on a fresh connection: (status, headers, body).
async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(
        format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn admin_server() {
    let m = Arc::new(Metrics::new());
    m.observe("chat", 200, Duration::from_millis(4));
    m.set_queue_depth("chat", 2);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(zeroku_frontend::metrics::serve_admin(
        listener,
        m.clone(),
        shutdown.clone(),
    ));

    let (status, head, body) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (samples, _) = parse(&body);
    assert_eq!(
        find(&samples, REQS, &[("app", "chat"), ("code", "200")]),
        Some(1.0)
    );
    assert_eq!(find(&samples, QUEUE, &[("app", "chat")]), Some(2.0));

    // Live: a new observation shows in the next scrape.
    m.observe("chat", 200, Duration::from_millis(4));
    let (_, _, body) = http(addr, "GET", "/metrics").await;
    let (samples, _) = parse(&body);
    assert_eq!(
        find(&samples, REQS, &[("app", "chat"), ("code", "200")]),
        Some(2.0)
    );

    let (status, _, body) = http(addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, head, body) = http(addr, "HEAD", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, ""));
    assert!(head.contains("content-length: 2"), "{head}");
    assert_eq!(http(addr, "GET", "/").await.0, 404);
    assert_eq!(http(addr, "GET", "/metrics/x").await.0, 404);
    assert_eq!(http(addr, "GET", "/metricsx").await.0, 404);
    let (status, head, _) = http(addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));

    // Keep-alive: several requests on one connection.
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");

    // Shutdown: the server returns and the port stops answering.
    let idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(8), server)
        .await
        .expect("serve_admin returns after shutdown")
        .unwrap();
    drop(idle);
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
