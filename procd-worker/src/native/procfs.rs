//! Reading `/proc/<pid>/stat`: the pure parser and a thin file reader.
//!
//! Owns nothing but parsing; it must not decide whether a process is "ours"
//! (the caller compares start ticks with its record).

use std::path::PathBuf;

/// The fields of `/proc/<pid>/stat` the native runtime relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R`, `S`, `D`, `Z`, `T`, ...
    pub state: char,
    /// Field 4.
    pub ppid: u32,
    /// Field 5: process group id.
    pub pgrp: u32,
    /// Field 6: session id.
    pub session: u32,
    /// Field 22: start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// A zombie has exited and only waits to be reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

/// Parses the content of `/proc/<pid>/stat`.
///
/// Field 2 is `(comm)`, which may itself contain spaces and parentheses, so
/// the remaining fields are taken after the *last* `)`.
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let close = text.rfind(')')?;
    let mut fields = text.get(close + 1..)?.split_ascii_whitespace();
    // After the comm, index 0 is field 3 (state); field N is index N - 3.
    let mut state_chars = fields.next()?.chars();
    let state = state_chars.next()?;
    if state_chars.next().is_some() {
        return None;
    }
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    // Fields 7..=21 are skipped; field 22 is the 16th field after field 6.
    let start_ticks = fields.nth(15)?.parse().ok()?;
    Some(ProcStat {
        state,
        ppid,
        pgrp,
        session,
        start_ticks,
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` if the process does not exist
/// (or the file cannot be parsed).
pub fn read_proc_stat(pid: u32) -> Option<ProcStat> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = std::fs::read_to_string(path).ok()?;
    parse_proc_stat(&text)
}

/// The pids whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read_proc_stat(*pid).is_some_and(|st| st.pgrp == pgid && !st.is_zombie()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(comm: &str) -> String {
        format!(
            "1234 ({comm}) S 1 1234 1234 0 -1 4194560 500 0 0 0 3 1 0 0 20 0 1 0 987654 \
             10000000 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0"
        )
    }

    #[test]
    fn parses_plain_comm() {
        let st = parse_proc_stat(&line("sleep")).expect("parses");
        assert_eq!(
            st,
            ProcStat {
                state: 'S',
                ppid: 1,
                pgrp: 1234,
                session: 1234,
                start_ticks: 987654
            }
        );
        assert!(!st.is_zombie());
    }

    #[test]
    fn parses_comm_with_spaces_and_parens() {
        for comm in ["my app", "a) b (c", "x) Z 9 9 9 (", ")", "((", " "] {
            let st = parse_proc_stat(&line(comm)).expect(comm);
            assert_eq!(st.state, 'S', "{comm}");
            assert_eq!(st.session, 1234, "{comm}");
            assert_eq!(st.start_ticks, 987654, "{comm}");
        }
    }

    #[test]
    fn zombie_state() {
        let text = line("sh").replacen(") S ", ") Z ", 1);
        assert!(parse_proc_stat(&text).expect("parses").is_zombie());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_proc_stat(""), None);
        assert_eq!(parse_proc_stat("1234 (sh"), None);
        assert_eq!(parse_proc_stat("1234 (sh) S 1 2 3"), None);
        assert_eq!(
            parse_proc_stat("1234 (sh) SS 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"),
            None
        );
        let ok = "1234 (sh) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5";
        assert_eq!(parse_proc_stat(ok).map(|s| s.start_ticks), Some(5));
        assert_eq!(parse_proc_stat(&ok.replace(" 5", " x")), None);
    }

    #[test]
    fn reads_own_stat() {
        let st = read_proc_stat(std::process::id()).expect("own stat");
        assert!(st.start_ticks > 0);
        assert!(!st.is_zombie());
    }
}
