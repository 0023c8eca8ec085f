//! The Heroku `Procfile`: one `type: command` per line.

use std::collections::BTreeMap;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProcfileError {
    #[error("Procfile line {line}: {why} (expected `<type>: <command>`, got {text:?})")]
    Line {
        line: usize,
        text: String,
        why: String,
    },
    #[error("Procfile declares no process types")]
    Empty,
}

/// Parses a Procfile into `type → command`. Blank lines and `#` comments are
/// skipped; anything else that is not `type: command` is an error naming the
/// line, so a typo is never silently dropped.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, ProcfileError> {
    let mut out = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |why: String| ProcfileError::Line {
            line: i + 1,
            text: raw.to_string(),
            why,
        };
        let Some((name, command)) = line.split_once(':') else {
            return Err(err("no `:` after the process type".into()));
        };
        let (name, command) = (name.trim(), command.trim());
        crate::names::process_type(name).map_err(|e| err(e.to_string()))?;
        if command.is_empty() {
            return Err(err(format!("process type {name:?} has no command")));
        }
        crate::limits::command(name, command).map_err(|why| ProcfileError::Line {
            line: i + 1,
            // (the command itself may be huge: not repeated)
            text: format!("{name}: ..."),
            why,
        })?;
        if out.insert(name.to_string(), command.to_string()).is_some() {
            return Err(err(format!("process type {name:?} is declared twice")));
        }
        if let Err(why) = crate::limits::process_types(out.len()) {
            return Err(err(why));
        }
    }
    if out.is_empty() {
        return Err(ProcfileError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_types_and_skips_comments() {
        let p = parse("# hi\nweb: python app.py --port $PORT\n\nclock:  sh -c 'date'\n").unwrap();
        assert_eq!(p["web"], "python app.py --port $PORT");
        assert_eq!(p["clock"], "sh -c 'date'");
    }

    #[test]
    fn garbage_lines_name_the_line() {
        let e = parse("web: ok\nthis is garbage\n").unwrap_err();
        assert!(e.to_string().starts_with("Procfile line 2"), "{e}");
        assert!(parse("Web: x").is_err());
        assert!(parse("web:").is_err());
        assert!(parse("web: a\nweb: b").is_err());
        assert_eq!(parse("\n# only\n"), Err(ProcfileError::Empty));
    }

    #[test]
    fn commands_no_process_can_start_with_are_refused() {
        let e = parse("web: a\0b\n").unwrap_err().to_string();
        assert!(e.contains("NUL"), "{e}");
        let e = parse(&format!("web: {}\n", "x".repeat(1 << 20)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("MAX_ARG_STRLEN") && e.len() < 500, "{e}");
        let many: String = (0..101).map(|i| format!("t{i}: run\n")).collect();
        assert!(parse(&many)
            .unwrap_err()
            .to_string()
            .contains("at most 100"));
    }
}
