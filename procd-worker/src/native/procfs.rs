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

/// Remote ends (`/proc/net/tcp` address as hex, port) of the established
/// TCP connections the processes hold; `None` if their file descriptors
/// cannot be read (another user's processes).
pub fn established_peers(pids: &[u32]) -> Option<Vec<(String, u16)>> {
    let mut inodes = std::collections::HashSet::new();
    for pid in pids {
        let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        for e in rd.flatten() {
            if let Ok(target) = std::fs::read_link(e.path()) {
                if let Some(ino) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                {
                    inodes.insert(ino.to_string());
                }
            }
        }
    }
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        out.extend(parse_net_tcp(&text, &inodes));
    }
    Some(out)
}

/// The (remote address, remote port) of ESTABLISHED rows whose inode is in
/// `inodes`, from the text of `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn parse_net_tcp(text: &str, inodes: &std::collections::HashSet<String>) -> Vec<(String, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (remote, state, inode) = (f.get(2)?, f.get(3)?, f.get(9)?);
            if *state != "01" || !inodes.contains(*inode) {
                return None;
            }
            let (addr, port) = remote.split_once(':')?;
            Some((addr.to_string(), u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

/// An IPv4 address as `/proc/net/tcp` writes it (little-endian hex).
pub fn ipv4_hex(ip: std::net::Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{:02X}{:02X}{:02X}{:02X}", o[3], o[2], o[1], o[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_rows_of_our_sockets() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:C351 0100007F:9C42 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
";
        let ours: std::collections::HashSet<String> =
            ["111", "222"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            parse_net_tcp(text, &ours),
            vec![("0100007F".to_string(), 40000)]
        );
        assert_eq!(ipv4_hex(std::net::Ipv4Addr::LOCALHOST), "0100007F");
    }

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
