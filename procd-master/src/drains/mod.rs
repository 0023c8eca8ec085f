//! Log drains (Heroku's `drains:add`): every line of an app's log also goes
//! to each drain its users added, as Heroku sends it —
//!
//! - `syslog+tcp://host:port` (or `syslog://`): RFC 5424 messages framed by
//!   octet counting (RFC 6587), on one connection kept open;
//! - `https://…` (or `http://…`): POSTs of `application/logplex-1` bodies,
//!   up to 500 such messages each, with `Logplex-Msg-Count`,
//!   `Logplex-Frame-Id` and the drain's `Logplex-Drain-Token`. Servers are
//!   checked against the system's CA bundle (`SSL_CERT_FILE`, else
//!   `/etc/ssl/certs/ca-certificates.crt`).
//!
//! Each drain has a task that follows the app's log from where it was (its
//! sequence numbers), woken when lines arrive: at rest nothing runs. A drain
//! that cannot be reached is tried again with back-off (1 s doubling to
//! 60 s) from the same line, and says so in the app's log; lines the log
//! book dropped meanwhile (past `log_lines_per_app` lines behind) are lost to
//! it, and counted in that message.
//!
//! This module must not slow the log: nothing here runs on the path that
//! writes it.

use crate::cluster::Cluster;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;
use zeroku_conf::{LogLine, Stream};

pub mod http;

/// Lines per send.
const BATCH: usize = 500;

/// Where a drain sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Syslog {
        host: String,
        port: u16,
    },
    Http {
        tls: bool,
        host: String,
        port: u16,
        path: String,
    },
}

/// Parses a drain URL, or says which forms are taken.
pub fn parse(url: &str) -> Result<Target, String> {
    let bad = || {
        format!(
            "{url:?} is not a drain URL: use syslog+tcp://HOST:PORT or https://HOST[:PORT]/PATH"
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || url.chars().any(char::is_whitespace) {
        return Err(bad());
    }
    let split_port = |default: Option<u16>| -> Result<(String, u16), String> {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse().map_err(|_| bad())?),
            _ => (authority, default.ok_or_else(bad)?),
        };
        Ok((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        ))
    };
    match scheme {
        "syslog" | "syslog+tcp" => {
            let (host, port) = split_port(None)?;
            Ok(Target::Syslog { host, port })
        }
        "https" | "http" => {
            let tls = scheme == "https";
            let (host, port) = split_port(Some(if tls { 443 } else { 80 }))?;
            Ok(Target::Http {
                tls,
                host,
                port,
                path: path.to_string(),
            })
        }
        "syslog+tls" => Err(format!(
            "{url:?}: syslog over TLS is not supported yet; use https://… or syslog+tcp://"
        )),
        _ => Err(bad()),
    }
}

/// One log line as an RFC 5424 message (Heroku's fields: the app as
/// hostname, `app` or `zeroku` as app-name, the process as procid).
pub fn syslog_message(app: &str, l: &LogLine) -> String {
    let (pri, name) = match l.stream {
        Stream::Err => (187, "app"),
        Stream::Out => (190, "app"),
        Stream::System => (190, "zeroku"),
    };
    let procid = l
        .instance
        .strip_prefix(app)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(&l.instance);
    let procid = if procid.is_empty() { "-" } else { procid };
    format!(
        "<{pri}>1 {} {app} {name} {procid} - - {}",
        zeroku_conf::time::rfc3339_millis(l.ts_ms),
        l.line
    )
}

/// `messages`, each octet-counted (RFC 6587 §3.4.1).
pub fn frames(messages: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        out.extend_from_slice(format!("{} {m}", m.len()).as_bytes());
    }
    out
}

/// The drains' tasks, kept in step with the store.
#[derive(Default)]
pub struct Drains {
    running: Mutex<HashMap<(String, String), CancellationToken>>,
}

impl Drains {
    /// Starts a task for each drain in the store without one, and stops
    /// those whose drain is gone.
    pub fn sync(&self, c: &Arc<Cluster>) {
        let want = match c.store().drains() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the log drains");
                return;
            }
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.retain(|k, stop| {
            let keep = want.iter().any(|d| (&d.app, &d.url) == (&k.0, &k.1));
            if !keep {
                stop.cancel();
            }
            keep
        });
        for d in want {
            let key = (d.app.clone(), d.url.clone());
            if running.contains_key(&key) {
                continue;
            }
            let Ok(target) = parse(&d.url) else { continue };
            let stop = CancellationToken::new();
            running.insert(key, stop.clone());
            tokio::spawn(follow(c.clone(), d, target, stop));
        }
    }
}

/// Sends the app's log to one drain until it is removed.
async fn follow(c: Arc<Cluster>, d: crate::store::Drain, target: Target, stop: CancellationToken) {
    // From the lines that arrive from now on.
    let mut after = c.logs.last_seq();
    let mut conn: Option<tokio::net::TcpStream> = None;
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let woken = c.logs.changed.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let (lines, next) = c.logs.read(&d.app, after, BATCH);
        if lines.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = woken => continue,
            }
        }
        let lost = lines
            .first()
            .map_or(0, |(s, _)| s.saturating_sub(after + 1));
        let messages: Vec<String> = lines
            .iter()
            .map(|(_, l)| syslog_message(&d.app, l))
            .collect();
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            r = send(&target, &d, &messages, lines[0].0, &mut conn) => r,
        };
        match sent {
            Ok(()) => {
                if failing {
                    let note = format!("drain {} reached again", d.url);
                    c.system_log(&d.app, "", note);
                    failing = false;
                }
                after = next;
                backoff = Duration::from_secs(1);
            }
            Err(e) => {
                conn = None;
                if !failing {
                    let note = if lost > 0 {
                        format!("drain {}: {e}; trying again ({lost} lines missed)", d.url)
                    } else {
                        format!("drain {}: {e}; trying again", d.url)
                    };
                    c.system_log(&d.app, "", note);
                    failing = true;
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

async fn send(
    target: &Target,
    d: &crate::store::Drain,
    messages: &[String],
    first_seq: u64,
    conn: &mut Option<tokio::net::TcpStream>,
) -> Result<(), String> {
    let timeout = Duration::from_secs(10);
    match target {
        Target::Syslog { host, port } => {
            if conn.is_none() {
                let s = tokio::time::timeout(
                    timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| "connecting timed out".to_string())?
                .map_err(|e| format!("cannot connect: {e}"))?;
                *conn = Some(s);
            }
            let Some(s) = conn.as_mut() else {
                return Err("not connected".into());
            };
            tokio::time::timeout(timeout, s.write_all(&frames(messages)))
                .await
                .map_err(|_| "sending timed out".to_string())?
                .map_err(|e| format!("cannot send: {e}"))
        }
        Target::Http { .. } => {
            let post = http::post(target, d, messages, first_seq);
            tokio::time::timeout(timeout, post)
                .await
                .map_err(|_| "the request timed out".to_string())?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_urls() {
        assert_eq!(
            parse("syslog+tcp://logs.example.com:514"),
            Ok(Target::Syslog {
                host: "logs.example.com".into(),
                port: 514
            })
        );
        assert_eq!(
            parse("https://logs.example.com/in?x=1"),
            Ok(Target::Http {
                tls: true,
                host: "logs.example.com".into(),
                port: 443,
                path: "/in?x=1".into()
            })
        );
        for bad in [
            "syslog+tcp://nohost",
            "ftp://x:1",
            "https://",
            "logs.example.com:514",
            "https://u:p@x/",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("syslog+tls://x:6514")
            .unwrap_err()
            .contains("not supported"));
    }

    #[test]
    fn herokus_syslog_format() {
        let l = LogLine {
            app: "blog".into(),
            instance: "blog.web.1".into(),
            release: 3,
            ts_ms: 1_796_330_000_123,
            stream: Stream::Out,
            line: "GET / 200".into(),
        };
        let m = syslog_message("blog", &l);
        assert!(m.starts_with("<190>1 20"), "{m}");
        assert!(m.ends_with(".123Z blog app web.1 - - GET / 200"), "{m}");
        assert_eq!(frames(&["ab".into(), "c".into()]), b"2 ab1 c");
    }
}
