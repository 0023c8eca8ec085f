//! The access log: one line per request with its app, host, method, path,
//! final status and duration, e.g.
//!
//! ```text
//! 2026-11-22T03:30:10.123Z access app=hello host="hello.localhost" method=GET path="/" status=200 ms=0.42
//! ```
//!
//! Lines are formatted straight into a buffer that is written out every
//! 50 ms (or at 64 KiB, and at shutdown): on the request path it costs a
//! few hundred nanoseconds and no system call, where a log line through
//! `tracing` cost about a fifth of the frontend's CPU per request
//! (bench/frontend.sh). It goes to stderr with the daemon's log, to a file
//! of its own, or nowhere (`[frontend] access_log`).

use crate::ascii::put_decimal;
use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FLUSH_AT: usize = 64 * 1024;

enum Sink {
    Off,
    Stderr,
    File(File),
}

pub struct AccessLog {
    buf: Mutex<Pending>,
    /// Set once at open: `off` skips the formatting altogether.
    off: bool,
    sink: Mutex<Sink>,
    /// Told when the buffer gets its first line: the flusher's wake-up.
    pending: tokio::sync::Notify,
}

/// Lines not yet written, and the last timestamp formatted (requests
/// under load share their millisecond).
struct Pending {
    bytes: Vec<u8>,
    stamp_ms: u64,
    stamp: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessLog {
    /// `""` or `"stderr"`: with the daemon's log; `"off"`: none; else a
    /// file, appended to.
    pub fn open(setting: &str) -> std::io::Result<AccessLog> {
        let sink = match setting {
            "" | "stderr" => Sink::Stderr,
            "off" => Sink::Off,
            path => Sink::File(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        Ok(AccessLog {
            buf: Mutex::new(Pending {
                bytes: Vec::with_capacity(FLUSH_AT),
                stamp_ms: u64::MAX,
                stamp: String::new(),
            }),
            off: matches!(sink, Sink::Off),
            pending: tokio::sync::Notify::new(),
            sink: Mutex::new(sink),
        })
    }

    /// Writes the buffer out 50 ms after its first line, until the runtime stops; wakes for
    /// nothing while no request comes.
    pub fn spawn_flusher(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                me.pending.notified().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                me.flush();
            }
        });
    }

    pub fn log(
        &self,
        app: &str,
        host: &str,
        method: &hyper::Method,
        path: &str,
        status: u16,
        started: Instant,
    ) {
        if self.off {
            return;
        }
        // Hundredths of a millisecond, in integers: float formatting was a
        // visible share of a proxied request's CPU.
        let centi = started.elapsed().as_micros() / 10;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut p = lock(&self.buf);
        if p.stamp_ms != now {
            let was = p.stamp_ms;
            restamp(&mut p.stamp, was, now);
            p.stamp_ms = now;
        }
        let Pending { bytes, stamp, .. } = &mut *p;
        if bytes.is_empty() {
            self.pending.notify_one();
        }
        bytes.extend_from_slice(stamp.as_bytes());
        bytes.extend_from_slice(b" access app=");
        bytes.extend_from_slice(if app.is_empty() { "-" } else { app }.as_bytes());
        bytes.extend_from_slice(b" host=");
        put_quoted(bytes, host);
        bytes.extend_from_slice(b" method=");
        bytes.extend_from_slice(method.as_str().as_bytes());
        bytes.extend_from_slice(b" path=");
        put_quoted(bytes, path);
        bytes.extend_from_slice(b" status=");
        put_decimal(bytes, u64::from(status));
        bytes.extend_from_slice(b" ms=");
        put_decimal(bytes, (centi / 100) as u64);
        let c = (centi % 100) as u8;
        bytes.extend_from_slice(&[b'.', b'0' + c / 10, b'0' + c % 10, b'\n']);
        if bytes.len() >= FLUSH_AT {
            let full = std::mem::replace(bytes, Vec::with_capacity(FLUSH_AT));
            drop(p);
            self.write(&full);
        }
    }

    pub fn flush(&self) {
        let pending = {
            let mut p = lock(&self.buf);
            if p.bytes.is_empty() {
                return;
            }
            std::mem::replace(&mut p.bytes, Vec::with_capacity(FLUSH_AT))
        };
        self.write(&pending);
    }

    fn write(&self, bytes: &[u8]) {
        let r = match &mut *lock(&self.sink) {
            Sink::Off => Ok(()),
            Sink::Stderr => std::io::stderr().write_all(bytes),
            Sink::File(f) => f.write_all(bytes),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot write the access log");
        }
    }
}

/// `s` as Rust's `{:?}` writes it (quoted, escaped), without the
/// formatting machinery for the usual printable ASCII.
fn put_quoted(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Makes `stamp` (the RFC 3339 time of `was`, in ms) say `now`. Within one second only the
/// three millisecond digits change: formatting the whole date was 3.5% of a handler request's
/// instructions (callgrind).
fn restamp(stamp: &mut String, was: u64, now: u64) {
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: the digits are at 20..23.
    if was / 1000 == now / 1000 && stamp.len() == 24 {
        let m = now % 1000;
        let digits = [
            b'0' + (m / 100) as u8,
            b'0' + (m / 10 % 10) as u8,
            b'0' + (m % 10) as u8,
        ];
        if let Ok(d) = std::str::from_utf8(&digits) {
            stamp.replace_range(20..23, d);
            return;
        }
    }
    *stamp = zeroku_conf::time::rfc3339_millis(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_moved_within_its_second_reads_as_one_made_anew() {
        let t0 = 1_764_806_399_990u64; // 23:59:59.990, the last second of a day
        let mut stamp = String::new();
        let mut was = u64::MAX;
        for now in (t0..t0 + 25).chain([t0 + 1_000, t0 + 86_400_000, t0 + 86_400_007]) {
            restamp(&mut stamp, was, now);
            assert_eq!(stamp, zeroku_conf::time::rfc3339_millis(now), "at {now}");
            was = now;
        }
    }

    #[test]
    fn lines_quote_what_clients_send() {
        let dir = std::env::temp_dir().join(format!("zk-access-{}", std::process::id()));
        let log = AccessLog::open(dir.to_str().unwrap()).unwrap();
        log.log(
            "hello",
            "evil\nhost",
            &hyper::Method::GET,
            "/a b\"c",
            200,
            Instant::now(),
        );
        log.flush();
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(text.lines().count(), 1, "{text}");
        let ms = text
            .trim_end()
            .rsplit_once(" ms=")
            .map(|(_, m)| m)
            .unwrap_or("");
        assert!(
            ms.split_once('.').is_some_and(|(a, b)| !a.is_empty()
                && b.len() == 2
                && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())),
            "{text}"
        );
        assert!(
            text.contains(
                r#"access app=hello host="evil\nhost" method=GET path="/a b\"c" status=200 ms="#
            ),
            "{text}"
        );
    }
}
