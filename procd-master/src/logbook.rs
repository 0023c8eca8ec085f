//! The last N log lines of each app, in memory, with a cluster-wide sequence
//! number so `zeroku logs --tail` can ask for "everything after seq S".

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use zeroku_conf::LogLine;

/// Lines of one app, each with its sequence number.
type AppLines = VecDeque<(u64, LogLine)>;

pub struct LogBook {
    per_app: usize,
    /// The last sequence number handed out, and every app's lines.
    inner: Mutex<(u64, HashMap<String, AppLines>)>,
}

impl LogBook {
    pub fn new(per_app: usize) -> LogBook {
        LogBook {
            per_app: per_app.max(1),
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn push(&self, lines: Vec<LogLine>) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (seq, apps) = &mut *g;
        for l in lines {
            *seq += 1;
            let q = apps.entry(l.app.clone()).or_default();
            if q.len() == self.per_app {
                q.pop_front();
            }
            q.push_back((*seq, l));
        }
    }

    /// Lines of `app` with a sequence number above `after`, at most `limit`
    /// (the newest ones), and the sequence number to ask after next time.
    pub fn read(&self, app: &str, after: u64, limit: usize) -> (Vec<(u64, LogLine)>, u64) {
        self.read_where(app, after, limit, |_| true)
    }

    /// [`LogBook::read`] of the lines `keep` keeps (one process type or instance, one source).
    pub fn read_where(
        &self,
        app: &str,
        after: u64,
        limit: usize,
        keep: impl Fn(&LogLine) -> bool,
    ) -> (Vec<(u64, LogLine)>, u64) {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = g.1.get(app) else {
            return (Vec::new(), after.max(g.0));
        };
        let newer: Vec<_> = q
            .iter()
            .filter(|(s, l)| *s > after && keep(l))
            .cloned()
            .collect();
        let skip = newer.len().saturating_sub(limit);
        let out: Vec<_> = newer.into_iter().skip(skip).collect();
        let next = out.last().map_or(after.max(g.0), |(s, _)| *s);
        (out, next)
    }

    /// The lines of `old` are kept as the lines of `new` (the app was renamed).
    pub fn rename(&self, old: &str, new: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lines) = g.1.remove(old) {
            g.1.insert(new.to_string(), lines);
        }
    }

    pub fn forget(&self, app: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(app);
    }
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

    #[test]
    fn bounded_and_cursor() {
        let b = LogBook::new(3);
        b.push((0..5).map(|i| line("a", &i.to_string())).collect());
        b.push(vec![line("b", "x")]);
        let (l, next) = b.read("a", 0, 100);
        assert_eq!(
            l.iter().map(|(_, l)| l.line.as_str()).collect::<Vec<_>>(),
            ["2", "3", "4"]
        );
        assert_eq!(b.read("a", next, 100).0.len(), 0);
        b.push(vec![line("a", "5")]);
        assert_eq!(b.read("a", next, 100).0[0].1.line, "5");
        assert_eq!(b.read("a", 0, 1).0[0].1.line, "5");
    }
}
