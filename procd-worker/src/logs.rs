//! Tailing the log files of processes: [`LogTailer`] returns the new complete
//! lines of a process's log file and persists how far it has read, so a
//! restarted worker neither repeats nor loses lines.
//!
//! Owns the offset files in its state directory (`<state_dir>/<log file
//! name>.offset`) and deletes a log file when told to ([`LogTailer::remove`]).
//! It must not write log files (the runtime points processes at them), nor
//! know where lines go next (the caller ships them).

use crate::runtime::ProcRecord;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The longest line returned, in bytes; longer lines are split into pieces
/// of at most this size (so nothing is lost).
pub const MAX_LINE: usize = 16 * 1024;
/// The most bytes of a log file consumed by one call.
pub const MAX_READ: usize = 1024 * 1024;

/// Where reading of one log file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Position {
    /// Inode of the file the offset belongs to; 0 when unknown.
    ino: u64,
    offset: u64,
}

/// Reads new lines from log files, remembering offsets across restarts.
#[derive(Debug)]
pub struct LogTailer {
    state_dir: PathBuf,
    positions: HashMap<PathBuf, Position>,
    state_dir_ready: bool,
}

impl LogTailer {
    /// Offsets are persisted in `state_dir` (created when first needed).
    pub fn new(state_dir: &Path) -> Self {
        LogTailer {
            state_dir: state_dir.to_path_buf(),
            positions: HashMap::new(),
            state_dir_ready: false,
        }
    }

    /// The new complete lines of `rec.log_path` since the last call (or the
    /// last worker run). A partial last line waits for its newline unless it
    /// is longer than [`MAX_LINE`]. Reads at most [`MAX_READ`] bytes: call
    /// again while lines come back to drain a large backlog.
    pub fn read_new(&mut self, rec: &ProcRecord) -> Vec<String> {
        self.read(rec, false)
    }

    /// Like [`read_new`](Self::read_new), but a partial last line at the end
    /// of the file is returned too: for a process that has exited. Call
    /// until it returns nothing, then [`remove`](Self::remove).
    pub fn read_final(&mut self, rec: &ProcRecord) -> Vec<String> {
        self.read(rec, true)
    }

    /// Deletes the offset state and the log file of `rec` (once its process
    /// has been forgotten and its last lines read). The caller must not have
    /// started another process writing the same log file meanwhile.
    pub fn remove(&mut self, rec: &ProcRecord) {
        self.positions.remove(&rec.log_path);
        for path in [self.state_path(&rec.log_path), rec.log_path.clone()] {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(instance = %rec.instance, path = %path.display(), error = %e, "cannot delete");
                }
            }
        }
    }

    fn read(&mut self, rec: &ProcRecord, flush: bool) -> Vec<String> {
        let path = &rec.log_path;
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::warn!(instance = %rec.instance, path = %path.display(), error = %e, "cannot open log file");
                return Vec::new();
            }
        };
        let (ino, len) = match file.metadata() {
            Ok(m) => (m.ino(), m.len()),
            Err(e) => {
                tracing::warn!(instance = %rec.instance, path = %path.display(), error = %e, "cannot stat log file");
                return Vec::new();
            }
        };
        let saved = self.position(path);
        // Another file (recreated) or a truncated one: start from the top.
        let start = if saved.ino != ino || len < saved.offset {
            0
        } else {
            saved.offset
        };
        let want = usize::try_from(len - start)
            .unwrap_or(MAX_READ)
            .min(MAX_READ);
        let mut buf = Vec::with_capacity(want);
        let read = file
            .seek(SeekFrom::Start(start))
            .and_then(|_| file.by_ref().take(want as u64).read_to_end(&mut buf));
        if let Err(e) = read {
            tracing::warn!(instance = %rec.instance, path = %path.display(), error = %e, "cannot read log file");
            return Vec::new();
        }
        let at_eof = start + buf.len() as u64 >= len;
        let (mut lines, mut consumed) = split_lines(&buf);
        if flush && at_eof && consumed < buf.len() {
            lines.push(to_line(&buf[consumed..]));
            consumed = buf.len();
        }
        let now = Position {
            ino,
            offset: start + consumed as u64,
        };
        if now != saved {
            self.save(path, now);
        }
        lines
    }

    fn state_path(&self, log_path: &Path) -> PathBuf {
        let name = log_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        self.state_dir.join(format!("{name}.offset"))
    }

    fn position(&mut self, log_path: &Path) -> Position {
        if let Some(p) = self.positions.get(log_path) {
            return *p;
        }
        let state = self.state_path(log_path);
        let pos = match std::fs::read_to_string(&state) {
            Ok(text) => parse_position(&text).unwrap_or_else(|| {
                tracing::warn!(path = %state.display(), "corrupt log offset, reading the log from the start");
                Position::default()
            }),
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %state.display(), error = %e, "cannot read log offset");
                }
                Position::default()
            }
        };
        self.positions.insert(log_path.to_path_buf(), pos);
        pos
    }

    fn save(&mut self, log_path: &Path, pos: Position) {
        self.positions.insert(log_path.to_path_buf(), pos);
        if !self.state_dir_ready {
            if let Err(e) = std::fs::create_dir_all(&self.state_dir) {
                tracing::warn!(path = %self.state_dir.display(), error = %e, "cannot create log state dir");
                return;
            }
            self.state_dir_ready = true;
        }
        let state = self.state_path(log_path);
        let mut tmp = state.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = std::fs::write(&tmp, format!("{} {}\n", pos.ino, pos.offset))
            .and_then(|()| std::fs::rename(&tmp, &state));
        if let Err(e) = written {
            tracing::warn!(path = %state.display(), error = %e, "cannot save log offset");
        }
    }
}

fn parse_position(text: &str) -> Option<Position> {
    let mut parts = text.split_ascii_whitespace();
    let ino = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some(Position { ino, offset })
}

/// Splits `buf` into lines: complete ones (without `\n` and a trailing
/// `\r`), and pieces of [`MAX_LINE`] bytes of longer lines. Returns them and
/// how many bytes were consumed; the rest is a partial line to wait for.
fn split_lines(buf: &[u8]) -> (Vec<String>, usize) {
    let mut lines = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let window = &rest[..rest.len().min(MAX_LINE + 1)];
        if let Some(nl) = window.iter().position(|&b| b == b'\n') {
            let line = &rest[..nl];
            lines.push(to_line(line.strip_suffix(b"\r").unwrap_or(line)));
            pos += nl + 1;
        } else if rest.len() > MAX_LINE {
            let cut = utf8_cut(rest, MAX_LINE);
            lines.push(to_line(&rest[..cut]));
            pos += cut;
        } else {
            break;
        }
    }
    (lines, pos)
}

/// The largest cut `<= max` that does not split a UTF-8 sequence (when the
/// bytes are UTF-8 at all).
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let mut cut = max.min(bytes.len());
    while cut > max.saturating_sub(3) && cut < bytes.len() && (bytes[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    if cut == 0 {
        max.min(bytes.len())
    } else {
        cut
    }
}

/// Lossy UTF-8, capped at [`MAX_LINE`] bytes (replacement characters can
/// make the text longer than the bytes it came from).
fn to_line(bytes: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(bytes).into_owned();
    if s.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_complete_lines_and_keeps_partial() {
        let (lines, used) = split_lines(b"a\r\nb\n\npart");
        assert_eq!(lines, vec!["a", "b", ""]);
        assert_eq!(used, 6);
    }

    #[test]
    fn long_lines_are_split_at_char_boundaries() {
        let mut buf = vec![b'x'; MAX_LINE - 1];
        buf.extend_from_slice("é".as_bytes()); // straddles the cap
        buf.extend_from_slice(b"yz\n");
        let (lines, used) = split_lines(&buf);
        assert_eq!(used, buf.len());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE - 1);
        assert_eq!(lines[1], "éyz");

        let partial = vec![b'p'; MAX_LINE + 10];
        let (lines, used) = split_lines(&partial);
        assert_eq!(lines.len(), 1);
        assert_eq!(used, MAX_LINE);

        let exact = [vec![b'q'; MAX_LINE], b"\n".to_vec()].concat();
        let (lines, used) = split_lines(&exact);
        assert_eq!((lines.len(), used), (1, MAX_LINE + 1));
    }

    #[test]
    fn lossy_and_capped() {
        assert_eq!(to_line(b"a\xffb"), "a\u{fffd}b");
        let junk = vec![0xffu8; MAX_LINE];
        assert!(to_line(&junk).len() <= MAX_LINE);
    }

    #[test]
    fn positions_round_trip() {
        assert_eq!(
            parse_position("12 345\n"),
            Some(Position {
                ino: 12,
                offset: 345
            })
        );
        assert_eq!(parse_position(""), None);
        assert_eq!(parse_position("1 x"), None);
        assert_eq!(parse_position("1 2 3"), None);
    }
}
