//! Printing: aligned tables, JSON, human times.

use serde_json::Value;

/// Longest cell a table shows; longer ones end in `…` (`--json` has them whole).
const MAX_CELL: usize = 120;

/// Prints rows as columns aligned under `headers`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table_text(headers, rows));
}

fn table_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let shorten = |c: &str| -> String {
        if c.chars().count() > MAX_CELL {
            c.chars().take(MAX_CELL - 1).chain(['…']).collect()
        } else {
            c.to_string()
        }
    };
    let head: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| shorten(c)).collect())
        .collect();
    let mut width: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in &body {
        for (i, c) in r.iter().enumerate() {
            if i < width.len() {
                width[i] = width[i].max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(&head).chain(&body) {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(c);
            let pad = width.get(i).copied().unwrap_or(0);
            line.extend(std::iter::repeat_n(
                ' ',
                pad.saturating_sub(c.chars().count()),
            ));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// `f` of each element of a JSON array (nothing when `v` is not one).
pub fn each<T>(v: &Value, f: impl FnMut(&Value) -> T) -> Vec<T> {
    v.as_array()
        .map(|a| a.iter().map(f).collect())
        .unwrap_or_default()
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `93s` → `1m33s`, `90000s` → `1d1h`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// Unix milliseconds as RFC 3339 UTC, e.g. `2026-11-21T20:55:32.123Z`.
pub fn timestamp(ms: u64) -> String {
    zeroku_conf::time::rfc3339_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_shorten_what_no_terminal_shows() {
        let rows = vec![
            vec!["v1".to_string(), "x".repeat(100_000)],
            vec!["v22".to_string(), "short".to_string()],
        ];
        let t = table_text(&["version", "description"], &rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "VERSION  DESCRIPTION");
        assert!(lines[1].starts_with("v1       xxx") && lines[1].ends_with('…'));
        assert_eq!(lines[1].chars().count(), 9 + MAX_CELL);
        assert_eq!(lines[2], "v22      short");
    }

    #[test]
    fn times() {
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(timestamp(1_795_301_732_123), "2026-11-21T22:55:32.123Z");
        assert_eq!(timestamp(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(duration(93), "1m33s");
        assert_eq!(duration(90_000), "1d1h");
    }
}
