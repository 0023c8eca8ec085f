//! Each app's log: its last N lines in memory, with a cluster-wide sequence
//! number so `zeroku logs --tail` can ask for "everything after seq S", and
//! every line on disk, so a master that starts again has each app's last N
//! lines, and their numbers, back.
//!
//! On disk an app's log is a run of segments, `<data>/logs/<app>/<first
//! seq>.jsonl` (a `[seq, line]` JSON array per line; 0600 files in 0700
//! directories: logs hold what apps print, secrets included). The newest
//! segment is appended to; a new one starts when it reaches an eighth of the
//! app's size bound or age bound, and whole segments go, oldest first, when
//! the app's log is over `log_retention_mb` or older than
//! `log_retention_hours`. A line cut short by a crash is skipped on reading.
//!
//! This module must not block on anything but its own files, nor keep on
//! disk what the retention no longer allows.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use zeroku_conf::LogLine;

/// Lines of one app, each with its sequence number.
type AppLines = VecDeque<(u64, LogLine)>;

/// How much of each app's log the disk keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_bytes: u64,
    pub max_age: Duration,
}

pub struct LogBook {
    per_app: usize,
    inner: Mutex<Inner>,
    /// Woken when lines arrive (the log drains wait on it).
    pub changed: tokio::sync::Notify,
}

struct Inner {
    /// The last sequence number handed out.
    seq: u64,
    apps: HashMap<String, AppLines>,
    disk: Option<Disk>,
}

struct Disk {
    dir: PathBuf,
    retention: Retention,
    /// The segment each app is appending to.
    open: HashMap<String, Segment>,
}

struct Segment {
    file: BufWriter<File>,
    bytes: u64,
    opened: SystemTime,
}

impl LogBook {
    /// A log kept in memory only.
    pub fn new(per_app: usize) -> LogBook {
        LogBook {
            per_app: per_app.max(1),
            changed: tokio::sync::Notify::new(),
            inner: Mutex::new(Inner {
                seq: 0,
                apps: HashMap::new(),
                disk: None,
            }),
        }
    }

    /// A log kept on disk under `dir` too: what is there already is read
    /// back (each app's last `per_app` lines), and old segments go.
    pub fn open(dir: &Path, per_app: usize, retention: Retention) -> std::io::Result<LogBook> {
        crate::dirs::private(dir)?;
        let book = LogBook::new(per_app);
        {
            let mut g = book.lock();
            for e in std::fs::read_dir(dir)?.flatten() {
                let Some(app) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let lines = read_last(&e.path(), book.per_app);
                if let Some((seq, _)) = lines.back() {
                    g.seq = g.seq.max(*seq);
                }
                g.apps.insert(app, lines);
            }
            let disk = Disk {
                dir: dir.to_path_buf(),
                retention,
                open: HashMap::new(),
            };
            for app in g.apps.keys() {
                disk.prune(app);
            }
            g.disk = Some(disk);
        }
        Ok(book)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, lines: Vec<LogLine>) {
        let mut g = self.lock();
        let Inner { seq, apps, disk } = &mut *g;
        let mut touched: Vec<String> = Vec::new();
        for l in lines {
            *seq += 1;
            if let Some(d) = disk.as_mut() {
                if !touched.contains(&l.app) {
                    touched.push(l.app.clone());
                }
                d.append(*seq, &l);
            }
            let q = apps.entry(l.app.clone()).or_default();
            if q.len() == self.per_app {
                q.pop_front();
            }
            q.push_back((*seq, l));
        }
        if let Some(d) = disk.as_mut() {
            for app in &touched {
                d.flush(app);
            }
        }
        drop(g);
        self.changed.notify_waiters();
    }

    /// Starts new segments where the current ones are too old, and deletes
    /// what the retention no longer allows (run now and then: an app that
    /// stopped logging ages too).
    pub fn prune(&self) {
        let mut g = self.lock();
        let Some(d) = g.disk.as_mut() else { return };
        let apps: Vec<String> = d.open.keys().cloned().collect();
        for app in apps {
            d.flush(&app);
        }
        let Ok(rd) = std::fs::read_dir(&d.dir) else {
            return;
        };
        for e in rd.flatten() {
            if let Some(app) = e.file_name().to_str() {
                d.prune(app);
            }
        }
    }

    /// The last sequence number handed out: lines after it are new.
    pub fn last_seq(&self) -> u64 {
        self.lock().seq
    }

    /// Lines of `app` with a sequence number above `after`, at most `limit`
    /// (the newest ones), and the sequence number to ask after next time.
    pub fn read(&self, app: &str, after: u64, limit: usize) -> (Vec<(u64, LogLine)>, u64) {
        self.read_where(app, after, limit, |_| true)
    }

    /// The sequence number of `app`'s newest line in memory (0: none): a cheap look before a
    /// read.
    pub fn app_last(&self, app: &str) -> u64 {
        self.lock()
            .apps
            .get(app)
            .and_then(|q| q.back())
            .map_or(0, |(s, _)| *s)
    }

    /// [`LogBook::read`] of the lines `keep` keeps (one process type or instance, one source).
    pub fn read_where(
        &self,
        app: &str,
        after: u64,
        limit: usize,
        keep: impl Fn(&LogLine) -> bool,
    ) -> (Vec<(u64, LogLine)>, u64) {
        let g = self.lock();
        let Some(q) = g.apps.get(app) else {
            return (Vec::new(), after.max(g.seq));
        };
        let newer: Vec<_> = q
            .iter()
            .filter(|(s, l)| *s > after && keep(l))
            .cloned()
            .collect();
        let skip = newer.len().saturating_sub(limit);
        let out: Vec<_> = newer.into_iter().skip(skip).collect();
        let next = out.last().map_or(after.max(g.seq), |(s, _)| *s);
        (out, next)
    }

    /// The lines of `old` are kept as the lines of `new` (the app was renamed).
    pub fn rename(&self, old: &str, new: &str) {
        let mut g = self.lock();
        if let Some(lines) = g.apps.remove(old) {
            g.apps.insert(new.to_string(), lines);
        }
        if let Some(d) = g.disk.as_mut() {
            d.open.remove(old);
            let _ = std::fs::rename(d.dir.join(old), d.dir.join(new));
        }
    }

    /// The app is gone, and so is its log.
    pub fn forget(&self, app: &str) {
        let mut g = self.lock();
        g.apps.remove(app);
        if let Some(d) = g.disk.as_mut() {
            d.open.remove(app);
            let _ = std::fs::remove_dir_all(d.dir.join(app));
        }
    }
}

impl Disk {
    fn append(&mut self, seq: u64, line: &LogLine) {
        let Some(seg) = self.segment(&line.app, seq) else {
            return;
        };
        let mut text = match serde_json::to_vec(&(seq, line)) {
            Ok(t) => t,
            Err(_) => return,
        };
        text.push(b'\n');
        match seg.file.write_all(&text) {
            Ok(()) => seg.bytes += text.len() as u64,
            Err(e) => {
                tracing::warn!(app = %line.app, error = %e, "cannot write the app's log to disk");
                self.open.remove(&line.app);
            }
        }
    }

    /// The segment `app` appends to, opened (a new one from `seq`) if need be.
    fn segment(&mut self, app: &str, seq: u64) -> Option<&mut Segment> {
        if !self.open.contains_key(app) {
            let dir = self.dir.join(app);
            let opened = crate::dirs::private(&dir).and_then(|()| {
                use std::os::unix::fs::OpenOptionsExt;
                OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(dir.join(format!("{seq:020}.jsonl")))
            });
            match opened {
                Ok(f) => {
                    let seg = Segment {
                        file: BufWriter::new(f),
                        bytes: 0,
                        opened: SystemTime::now(),
                    };
                    self.open.insert(app.to_string(), seg);
                }
                Err(e) => {
                    tracing::warn!(app, error = %e, "cannot write the app's log to disk");
                    return None;
                }
            }
        }
        self.open.get_mut(app)
    }

    /// Writes out what `app`'s segment holds; closes it once it is big or
    /// old enough (the next line starts a new one), and then prunes.
    fn flush(&mut self, app: &str) {
        let (max_bytes, max_age) = self.segment_bounds();
        let Some(seg) = self.open.get_mut(app) else {
            return;
        };
        if let Err(e) = seg.file.flush() {
            tracing::warn!(app, error = %e, "cannot write the app's log to disk");
        }
        let old = seg.opened.elapsed().unwrap_or_default() >= max_age;
        if seg.bytes >= max_bytes || (old && seg.bytes > 0) {
            self.open.remove(app);
            self.prune(app);
        }
    }

    /// When a segment is closed: at an eighth of the app's bounds.
    fn segment_bounds(&self) -> (u64, Duration) {
        (
            (self.retention.max_bytes / 8).max(64 << 10),
            (self.retention.max_age / 8).max(Duration::from_secs(60)),
        )
    }

    /// Deletes `app`'s closed segments past its bounds, oldest first.
    fn prune(&self, app: &str) {
        let dir = self.dir.join(app);
        let mut segs = segments(&dir);
        let open = self.open.contains_key(app);
        // The newest segment is being appended to when one is open.
        let closed = segs.len().saturating_sub(usize::from(open));
        let mut total: u64 = segs.iter().map(|s| s.1).sum();
        let now = SystemTime::now();
        for (path, size, modified) in segs.drain(..closed) {
            let aged = now.duration_since(modified).unwrap_or_default() > self.retention.max_age;
            if (total > self.retention.max_bytes || aged) && std::fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }
}

/// `dir`'s segments, oldest first: path, size, last written.
fn segments(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.path(), m.len(), m.modified().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    // Names are zero-padded first sequence numbers: their order is the log's.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The last `n` lines in `dir`'s segments, read from the newest back.
fn read_last(dir: &Path, n: usize) -> AppLines {
    let mut out: AppLines = VecDeque::new();
    for (path, _, _) in segments(dir).into_iter().rev() {
        let Ok(f) = File::open(&path) else { continue };
        let lines: Vec<(u64, LogLine)> = std::io::BufReader::new(f)
            .split(b'\n')
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_slice(&l).ok())
            .collect();
        for l in lines.into_iter().rev() {
            if out.len() == n {
                return out;
            }
            out.push_front(l);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroku_conf::Stream;

    fn line(app: &str, s: &str) -> LogLine {
        LogLine {
            app: app.into(),
            instance: format!("{app}.web.1"),
            release: 1,
            ts_ms: 0,
            stream: Stream::Out,
            line: s.into(),
        }
    }

    fn texts(l: &[(u64, LogLine)]) -> Vec<&str> {
        l.iter().map(|(_, l)| l.line.as_str()).collect()
    }

    #[test]
    fn bounded_and_cursor() {
        let b = LogBook::new(3);
        b.push((0..5).map(|i| line("a", &i.to_string())).collect());
        b.push(vec![line("b", "x")]);
        let (l, next) = b.read("a", 0, 100);
        assert_eq!(texts(&l), ["2", "3", "4"]);
        assert_eq!(b.read("a", next, 100).0.len(), 0);
        b.push(vec![line("a", "5")]);
        assert_eq!(b.read("a", next, 100).0[0].1.line, "5");
        assert_eq!(b.read("a", 0, 1).0[0].1.line, "5");
    }

    #[test]
    fn a_log_on_disk_comes_back_with_its_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let keep = Retention {
            max_bytes: 1 << 20,
            max_age: Duration::from_secs(3600),
        };
        let b = LogBook::open(dir.path(), 3, keep).unwrap();
        b.push((0..5).map(|i| line("a", &i.to_string())).collect());
        b.push(vec![line("b", "x")]);
        let (_, next) = b.read("a", 0, 100);
        drop(b);
        // A line a crash cut short is skipped.
        let seg = segments(&dir.path().join("a")).pop().unwrap().0;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .unwrap()
            .write_all(b"[99,{\"app\":\"a\"")
            .unwrap();
        let b = LogBook::open(dir.path(), 3, keep).unwrap();
        let (l, again) = b.read("a", 0, 100);
        assert_eq!(texts(&l), ["2", "3", "4"]);
        assert_eq!(again, next);
        assert_eq!(texts(&b.read("b", 0, 100).0), ["x"]);
        // Numbers go on from where they were.
        b.push(vec![line("a", "5")]);
        assert_eq!(b.read("a", next, 100).0[0].0, 7);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&seg).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        b.forget("b");
        assert!(!dir.path().join("b").exists());
    }

    #[test]
    fn the_disk_keeps_only_what_the_retention_allows() {
        let dir = tempfile::tempdir().unwrap();
        let keep = Retention {
            max_bytes: 256 << 10,
            max_age: Duration::from_secs(3600),
        };
        let b = LogBook::open(dir.path(), 10, keep).unwrap();
        let big = "x".repeat(1000);
        for _ in 0..100 {
            b.push((0..10).map(|_| line("a", &big)).collect());
        }
        let total: u64 = segments(&dir.path().join("a")).iter().map(|s| s.1).sum();
        // (bounded by the limit plus the segment being written)
        assert!(
            total <= (256 << 10) + (64 << 10) + 2048,
            "{total} bytes kept"
        );
        assert!(segments(&dir.path().join("a")).len() > 1);
        let b = LogBook::open(dir.path(), 10, keep).unwrap();
        assert_eq!(b.read("a", 0, 100).0.len(), 10);
        // Past the age bound, closed segments go.
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for (path, _, _) in segments(&dir.path().join("a")) {
            File::options()
                .append(true)
                .open(path)
                .unwrap()
                .set_modified(hour_ago)
                .unwrap();
        }
        let aged = Retention {
            max_bytes: 1 << 30,
            max_age: Duration::from_secs(60),
        };
        let b = LogBook::open(dir.path(), 10, aged).unwrap();
        assert!(segments(&dir.path().join("a")).is_empty());
        assert_eq!(b.read("a", 0, 100).0.len(), 10, "memory keeps its lines");
    }
}
