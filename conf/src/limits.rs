//! What a process can be started with, checked before a command or a config var is accepted:
//! the kernel refuses an `execve` whose single argument or environment string is over
//! `MAX_ARG_STRLEN` (32 pages) or has a NUL byte in it (the string would be cut there), and
//! whose arguments and environment together are over `ARG_MAX` (a quarter of the stack limit,
//! 2 MiB by default). A value accepted here can be started; one refused is refused with the
//! limit named, before a release is made.

use std::collections::BTreeMap;

/// The kernel's limit on one argument or `KEY=VALUE` string, with its NUL (32 pages of 4 KiB).
pub const MAX_ARG_STRLEN: usize = 32 * 4096;
/// Most process types a release may declare.
pub const MAX_PROCESS_TYPES: usize = 100;
/// Most config vars an app may have.
pub const MAX_CONFIG_VARS: usize = 1000;
/// Most bytes an app's config vars may take together (`KEY=VALUE` and a NUL each): an eighth
/// of `ARG_MAX`'s default, leaving the rest to the command and zeroku's own variables.
pub const MAX_CONFIG_BYTES: usize = 256 << 10;

/// A Procfile command: run as `sh -c COMMAND`, so it is one argument.
pub fn command(kind: &str, cmd: &str) -> Result<(), String> {
    if cmd.contains('\0') {
        return Err(format!(
            "the command of process type {kind:?} contains a NUL byte, which no process can be started with"
        ));
    }
    if cmd.len() >= MAX_ARG_STRLEN {
        return Err(format!(
            "the command of process type {kind:?} is {} bytes: the kernel starts no process with an argument of {MAX_ARG_STRLEN} bytes or more (MAX_ARG_STRLEN)",
            cmd.len()
        ));
    }
    Ok(())
}

/// How many process types a release declares.
pub fn process_types(n: usize) -> Result<(), String> {
    if n > MAX_PROCESS_TYPES {
        return Err(format!(
            "{n} process types: a release may declare at most {MAX_PROCESS_TYPES}"
        ));
    }
    Ok(())
}

/// An app's whole config (after a change), as its processes' environment.
pub fn config(vars: &BTreeMap<String, String>) -> Result<(), String> {
    if vars.len() > MAX_CONFIG_VARS {
        return Err(format!(
            "{} config vars: an app may have at most {MAX_CONFIG_VARS}",
            vars.len()
        ));
    }
    let mut total = 0;
    for (k, v) in vars {
        if v.contains('\0') {
            return Err(format!(
                "config var {k} contains a NUL byte, which no process environment can hold"
            ));
        }
        let n = k.len() + 1 + v.len() + 1;
        if n > MAX_ARG_STRLEN {
            return Err(format!(
                "config var {k} is {n} bytes as KEY=VALUE: the kernel starts no process with an environment string over {MAX_ARG_STRLEN} bytes (MAX_ARG_STRLEN)"
            ));
        }
        total += n;
    }
    if total > MAX_CONFIG_BYTES {
        return Err(format!(
            "the app's config vars would take {total} bytes: at most {MAX_CONFIG_BYTES} (the kernel's ARG_MAX, 2 MiB, must also hold the command and zeroku's own variables)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_kernel_would_refuse_is_refused_first() {
        assert!(command("web", "python3 app.py").is_ok());
        assert!(command("web", "a\0b").unwrap_err().contains("NUL"));
        let long = "x".repeat(MAX_ARG_STRLEN);
        assert!(command("web", &long)
            .unwrap_err()
            .contains("MAX_ARG_STRLEN"));
        assert!(process_types(MAX_PROCESS_TYPES).is_ok());
        assert!(process_types(MAX_PROCESS_TYPES + 1).is_err());
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        assert!(config(&one("A", "b")).is_ok());
        assert!(config(&one("A", "b\0c")).unwrap_err().contains("NUL"));
        assert!(config(&one("A", &"v".repeat(900 << 10)))
            .unwrap_err()
            .contains("MAX_ARG_STRLEN"));
        let many: BTreeMap<String, String> = (0..=MAX_CONFIG_VARS)
            .map(|i| (format!("K{i}"), "v".into()))
            .collect();
        assert!(config(&many).unwrap_err().contains("at most 1000"));
        let big: BTreeMap<String, String> = (0..3)
            .map(|i| (format!("K{i}"), "v".repeat(100 << 10)))
            .collect();
        assert!(config(&big).unwrap_err().contains("ARG_MAX"));
    }
}
