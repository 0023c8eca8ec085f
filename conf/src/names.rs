//! Names users choose: apps, process types, nodes.
//!
//! They end up in hostnames (`<app>.<domain>`), instance ids
//! (`<app>.<type>.<n>`), file names and ZMQ topics, so they are kept to a
//! small DNS-safe alphabet.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NameError {
    #[error("invalid {kind} name {name:?}: {why}")]
    Invalid {
        kind: &'static str,
        name: String,
        why: &'static str,
    },
}

fn check(kind: &'static str, name: &str, max: usize, allow_dash: bool) -> Result<(), NameError> {
    let bad = |why| {
        Err(NameError::Invalid {
            kind,
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > max {
        return bad(if max == 30 {
            "it is longer than 30 characters"
        } else {
            "it is longer than 63 characters"
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return bad("it must start with a lowercase letter");
    }
    if name.ends_with('-') {
        return bad("it must not end with a dash");
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || (allow_dash && c == '-');
    if !name.chars().all(ok) {
        return bad(if allow_dash {
            "use only lowercase letters, digits and dashes"
        } else {
            "use only lowercase letters and digits"
        });
    }
    Ok(())
}

/// An app name: 1–30 of `a-z0-9-`, starting with a letter (as on Heroku).
pub fn app(name: &str) -> Result<(), NameError> {
    check("app", name, 30, true)
}

/// A process type from a Procfile (`web`, `worker`, `clock`): `a-z0-9`,
/// starting with a letter, so that `<app>.<type>.<n>` splits unambiguously.
pub fn process_type(name: &str) -> Result<(), NameError> {
    check("process type", name, 30, false)
}

/// A service an app provides or requires (`zeroku.toml`): like a process
/// type, so that `ZEROKU_REQUIRE_<NAME>` is a plain variable name.
pub fn service(name: &str) -> Result<(), NameError> {
    check("service", name, 30, false)
}

/// A node name: a DNS label, 1–63 of `a-z0-9-`.
pub fn node(name: &str) -> Result<(), NameError> {
    check("node", name, 63, true)
}

/// The id of an instance: `<app>.<type>.<n>`.
pub fn instance_id(app: &str, proc_type: &str, index: u32) -> String {
    format!("{app}.{proc_type}.{index}")
}

/// The app and process type of an instance id (`blog.web.1` → (`blog`, `web`)); the whole
/// id and `""` for one not of that shape. (App names have no dots; add-on servers' ids name
/// the add-on: `pg-blog-1.postgres.1`.)
pub fn split_instance(id: &str) -> (&str, &str) {
    let mut parts = id.rsplitn(3, '.');
    let (_, proc_type, app) = (parts.next(), parts.next(), parts.next());
    match (app, proc_type) {
        (Some(app), Some(t)) => (app, t),
        _ => (id, ""),
    }
}

/// Whether a certificate's DNS name `cert_name` (perhaps `*.example.com`, one label) covers
/// `host` (both as stored: lower case).
pub fn cert_covers(cert_name: &str, host: &str) -> bool {
    match cert_name.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => cert_name.eq_ignore_ascii_case(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_split_into_app_and_type() {
        assert_eq!(split_instance("blog.web.1"), ("blog", "web"));
        assert_eq!(split_instance("pg-b-1.postgres.2"), ("pg-b-1", "postgres"));
        assert_eq!(split_instance("odd"), ("odd", ""));
    }

    #[test]
    fn app_names() {
        assert!(app("hello").is_ok());
        assert!(app("my-app-2").is_ok());
        for bad in [
            "",
            "Hello",
            "1app",
            "a_b",
            "a.b",
            "app-",
            "../x",
            &"a".repeat(31),
        ] {
            assert!(app(bad).is_err(), "{bad:?} accepted");
        }
        let msg = app("Hello").unwrap_err().to_string();
        assert!(
            msg.contains("\"Hello\"") && msg.contains("lowercase"),
            "{msg}"
        );
    }

    #[test]
    fn type_names_have_no_dash() {
        assert!(process_type("web").is_ok());
        assert!(process_type("web-1").is_err());
        assert!(node("node-1").is_ok());
    }
}
