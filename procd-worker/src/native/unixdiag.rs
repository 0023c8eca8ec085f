//! Which listening Unix-socket paths the sockets of given processes are
//! connected to, asked of the kernel one socket at a time over `sock_diag`
//! netlink (`man 7 sock_diag`, `linux/unix_diag.h`).
//!
//! Owns nothing that outlives a call: it reads `/proc/<pid>/fd` of the pids
//! it is given, opens one `NETLINK_SOCK_DIAG` socket (closed on every path),
//! asks for the peer of each socket inode found there and then for the bound
//! name of each peer.
//!
//! It must not walk all sockets of the host: no `/proc/net/unix`, no
//! `NLM_F_DUMP` request, so what reaches this process grows with the given
//! processes' file descriptors, not with the host's sockets. (The kernel
//! itself finds an inode by scanning its Unix-socket table, in-kernel and
//! per request.) It holds no policy about what the paths mean.
#![allow(unsafe_code)]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// From linux/sock_diag.h and linux/unix_diag.h; libc defines none of these
// (it has NETLINK_SOCK_DIAG, NLM_F_REQUEST and NLMSG_ERROR, used below).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
/// `INET_DIAG_NOCOOKIE`: "any socket with this inode".
const NO_COOKIE: u32 = !0;

const NLMSG_ERROR: u16 = libc::NLMSG_ERROR as u16;
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
/// `~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)`.
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// `sizeof(struct unix_diag_req)`.
const UNIX_DIAG_REQ_LEN: usize = 24;
/// `sizeof(struct unix_diag_msg)`.
const UNIX_DIAG_MSG_LEN: usize = 16;
const REQUEST_LEN: usize = NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN;

/// How long to wait for the kernel's answer to one request.
const REPLY_TIMEOUT: Duration = Duration::from_secs(1);
/// Receive buffer: an answer is a header, a `unix_diag_msg` and at most a
/// 108-byte name; the kernel never sends one larger than a page.
const RECV_BUF_LEN: usize = 8192;

/// The filesystem paths of the Unix sockets that the sockets held open by `pids` are connected to
/// (the peer's bound name; for a connection accepted by a listener, the listener's path).
/// Abstract names and unnamed peers are left out. A pid that is gone is skipped.
///
/// A path is the name as given to `bind(2)` (it may be relative). Only
/// sockets in the caller's network namespace can be resolved; a connection
/// the listener has not yet `accept`ed has no peer inode the kernel reports,
/// so it is not seen.
pub fn connected_paths(pids: &[u32]) -> io::Result<HashSet<PathBuf>> {
    let mut inodes = HashSet::new();
    for &pid in pids {
        socket_inodes(pid, &mut inodes)?;
    }
    let mut paths = HashSet::new();
    if inodes.is_empty() {
        return Ok(paths);
    }
    let mut diag = DiagSocket::open()?;
    let mut peers = HashSet::new();
    for ino in inodes {
        if let Some(peer) = diag.ask(ino, UDIAG_SHOW_PEER, peer_inode)? {
            peers.insert(peer);
        }
    }
    for peer in peers {
        if let Some(path) = diag.ask(peer, UDIAG_SHOW_NAME, bound_path)? {
            paths.insert(path);
        }
    }
    Ok(paths)
}

/// Adds the inodes of the sockets `pid` holds open to `into`. A process
/// that is gone, or whose descriptors we may not read, adds nothing.
fn socket_inodes(pid: u32, into: &mut HashSet<u32>) -> io::Result<()> {
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(dir) => dir,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ) || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for entry in dir {
        // An error part-way through means the process is exiting: keep what
        // was listed so far.
        let Ok(entry) = entry else { break };
        // The descriptor may have been closed since it was listed.
        if let Ok(target) = std::fs::read_link(entry.path()) {
            if let Some(ino) = socket_inode(&target) {
                into.insert(ino);
            }
        }
    }
    Ok(())
}

/// The inode of a `/proc/<pid>/fd/<n>` link target like `socket:[12345]`.
fn socket_inode(target: &Path) -> Option<u32> {
    let digits = target
        .as_os_str()
        .as_bytes()
        .strip_prefix(b"socket:[")?
        .strip_suffix(b"]")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits)
        .ok()?
        .parse()
        .ok()
        .filter(|&ino| ino != 0)
}

/// A `NETLINK_SOCK_DIAG` socket that asks about one Unix socket at a time.
struct DiagSocket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl DiagSocket {
    fn open() -> io::Result<Self> {
        // SAFETY: socket() takes only integers; its result is checked below
        // before it is used.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor socket() just created; nothing else
        // owns it, so OwnedFd may close it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: the pointer and length describe `timeout`, a live timeval,
        // which setsockopt only reads during the call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd,
            seq: 0,
            buf: vec![0; RECV_BUF_LEN],
        })
    }

    /// Asks about socket `ino` with `show` and hands the reply's attributes
    /// to `parse`. `None` when the kernel answers with an error (not a Unix
    /// socket, gone since) or with a reply that does not parse.
    fn ask<T>(
        &mut self,
        ino: u32,
        show: u32,
        parse: impl Fn(&[u8]) -> Option<T>,
    ) -> io::Result<Option<T>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        self.send(&request(seq, ino, show))?;
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let n = self.recv()?;
            let datagram = self.buf.get(..n).unwrap_or_default();
            match parse_reply(datagram, seq, ino) {
                Reply::Attrs(attrs) => return Ok(parse(attrs)),
                Reply::Error(_) | Reply::Malformed => return Ok(None),
                // A late answer to an earlier request: keep waiting, but
                // not past the deadline.
                Reply::Unrelated if Instant::now() >= deadline => return Err(timed_out()),
                Reply::Unrelated => {}
            }
        }
    }

    fn send(&self, request: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: the pointer and length describe `request`, which send
            // only reads during the call.
            let n = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if usize::try_from(n).ok() != Some(request.len()) {
                return Err(io::Error::other("short send on sock_diag socket"));
            }
            return Ok(());
        }
    }

    /// Receives one datagram from the kernel into `self.buf`; its length.
    /// Datagrams from anyone but the kernel (port 0) are dropped.
    fn recv(&mut self) -> io::Result<usize> {
        loop {
            // SAFETY: sockaddr_nl is plain integers, for which all zeroes is
            // a valid value.
            let mut from: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
            let mut from_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: `self.buf` is writable for its length, `from` for
            // `from_len` bytes, and both outlive the call.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                    std::ptr::from_mut(&mut from).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Err(timed_out()),
                    _ => return Err(e),
                }
            }
            if from.nl_pid != 0 {
                continue;
            }
            return Ok(usize::try_from(n).unwrap_or(0).min(self.buf.len()));
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "no sock_diag reply from the kernel",
    )
}

/// A `SOCK_DIAG_BY_FAMILY` request for the one Unix socket `ino` (no dump).
fn request(seq: u32, ino: u32, show: u32) -> [u8; REQUEST_LEN] {
    let mut req = [0u8; REQUEST_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        if let Some(dst) = req.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        at += bytes.len();
    };
    // struct nlmsghdr
    put(&(REQUEST_LEN as u32).to_ne_bytes()); // nlmsg_len
    put(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    put(&NLM_F_REQUEST.to_ne_bytes()); // nlmsg_flags
    put(&seq.to_ne_bytes()); // nlmsg_seq
    put(&0u32.to_ne_bytes()); // nlmsg_pid
                              // struct unix_diag_req
    put(&[libc::AF_UNIX as u8, 0]); // sdiag_family, sdiag_protocol
    put(&0u16.to_ne_bytes()); // pad
    put(&(!0u32).to_ne_bytes()); // udiag_states: all
    put(&ino.to_ne_bytes()); // udiag_ino
    put(&show.to_ne_bytes()); // udiag_show
    put(&NO_COOKIE.to_ne_bytes()); // udiag_cookie[0]
    put(&NO_COOKIE.to_ne_bytes()); // udiag_cookie[1]
    req
}

/// What one received datagram says about the request `seq` for `ino`.
#[derive(Debug, PartialEq, Eq)]
enum Reply<'a> {
    /// Not the answer to this request (another sequence number, or too
    /// short to tell).
    Unrelated,
    /// The kernel's `NLMSG_ERROR`: the errno (positive), e.g. `ENOENT` when
    /// `ino` is no Unix socket.
    Error(i32),
    /// Carries this request's sequence number but is cut short or does not
    /// describe `ino`.
    Malformed,
    /// The attributes that follow the `unix_diag_msg`.
    Attrs(&'a [u8]),
}

fn parse_reply(mut datagram: &[u8], seq: u32, ino: u32) -> Reply<'_> {
    while let (Some(len), Some(kind), Some(msg_seq)) = (
        u32_at(datagram, 0),
        u16_at(datagram, 4),
        u32_at(datagram, 8),
    ) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let whole = len >= NLMSG_HDRLEN && len <= datagram.len();
        if msg_seq != seq {
            if !whole {
                return Reply::Unrelated;
            }
            datagram = datagram
                .get(align4(len).min(datagram.len())..)
                .unwrap_or_default();
            continue;
        }
        let Some(payload) = datagram.get(NLMSG_HDRLEN..len).filter(|_| whole) else {
            return Reply::Malformed;
        };
        return match kind {
            NLMSG_ERROR => match u32_at(payload, 0) {
                // struct nlmsgerr starts with `int error`, a negative errno.
                Some(error) => Reply::Error((error as i32).saturating_neg()),
                None => Reply::Malformed,
            },
            SOCK_DIAG_BY_FAMILY => {
                let family_ok = payload.first() == Some(&(libc::AF_UNIX as u8));
                match payload.get(UNIX_DIAG_MSG_LEN..) {
                    Some(attrs) if family_ok && u32_at(payload, 4) == Some(ino) => {
                        Reply::Attrs(attrs)
                    }
                    _ => Reply::Malformed,
                }
            }
            _ => Reply::Malformed,
        };
    }
    Reply::Unrelated
}

/// The peer inode in a reply's attributes (`UNIX_DIAG_PEER`); `None` when
/// the socket has no peer (a listener, an unconnected socket) or the peer
/// has no inode (a connection not yet accepted).
fn peer_inode(attrs: &[u8]) -> Option<u32> {
    u32_at(attr(attrs, UNIX_DIAG_PEER)?, 0).filter(|&ino| ino != 0)
}

/// The filesystem path in a reply's attributes (`UNIX_DIAG_NAME`); `None`
/// for an unnamed socket or an abstract name.
fn bound_path(attrs: &[u8]) -> Option<PathBuf> {
    let name = attr(attrs, UNIX_DIAG_NAME)?;
    // An abstract name starts with a NUL byte.
    if matches!(name.first(), None | Some(0)) {
        return None;
    }
    // The kernel keeps (and reports) the NUL that terminated the path given
    // to bind(); cut there.
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(PathBuf::from(OsStr::from_bytes(name.get(..end)?)))
}

/// The payload of the first netlink attribute of type `want`.
fn attr(mut attrs: &[u8], want: u16) -> Option<&[u8]> {
    while let (Some(len), Some(kind)) = (u16_at(attrs, 0), u16_at(attrs, 2)) {
        let len = usize::from(len);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind & NLA_TYPE_MASK == want {
            return attrs.get(4..len);
        }
        attrs = attrs.get(align4(len).min(attrs.len())..)?;
    }
    None
}

fn align4(len: usize) -> usize {
    len.saturating_add(3) & !3
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes(b.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(b.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    /// A netlink message: header and payload, padded to 4 bytes.
    fn message(kind: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    /// A `unix_diag_msg` for `ino` followed by `attrs`.
    fn diag(ino: u32, attrs: &[u8]) -> Vec<u8> {
        let mut p = vec![libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 1, 0];
        p.extend_from_slice(&ino.to_ne_bytes());
        p.extend_from_slice(&[0xff; 8]);
        p.extend_from_slice(attrs);
        p
    }

    /// A netlink attribute, padded to 4 bytes.
    fn nla(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(data);
        a.resize(align4(a.len()), 0);
        a
    }

    fn error_reply(seq: u32, errno: i32) -> Vec<u8> {
        let mut p = (-errno).to_ne_bytes().to_vec();
        p.extend_from_slice(&request(seq, 7, UDIAG_SHOW_PEER)[..NLMSG_HDRLEN]);
        message(NLMSG_ERROR, seq, &p)
    }

    #[test]
    fn connected_listener_path_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("web.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let _client = UnixStream::connect(&path).expect("connect");
        let _accepted = listener.accept().expect("accept");
        let paths = connected_paths(&[std::process::id()]).expect("connected_paths");
        assert!(paths.contains(&path), "{path:?} not in {paths:?}");
    }

    #[test]
    fn unconnected_listener_is_absent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let used = dir.path().join("used.sock");
        let idle = dir.path().join("idle.sock");
        let used_listener = UnixListener::bind(&used).expect("bind used");
        let _idle_listener = UnixListener::bind(&idle).expect("bind idle");
        let _client = UnixStream::connect(&used).expect("connect");
        let _accepted = used_listener.accept().expect("accept");
        let paths = connected_paths(&[std::process::id()]).expect("connected_paths");
        assert!(paths.contains(&used), "{used:?} not in {paths:?}");
        assert!(!paths.contains(&idle), "{idle:?} in {paths:?}");
    }

    #[test]
    fn missing_pid_is_skipped() {
        let paths = connected_paths(&[u32::MAX - 1]).expect("connected_paths");
        assert!(paths.is_empty(), "{paths:?}");
    }

    #[test]
    fn error_reply_means_skip() {
        let reply = error_reply(5, libc::ENOENT);
        assert_eq!(parse_reply(&reply, 5, 7), Reply::Error(libc::ENOENT));
        // Someone else's error is not ours.
        assert_eq!(parse_reply(&reply, 6, 7), Reply::Unrelated);
    }

    #[test]
    fn truncated_reply_is_malformed() {
        let attrs = nla(UNIX_DIAG_PEER, &42u32.to_ne_bytes());
        let reply = message(SOCK_DIAG_BY_FAMILY, 9, &diag(7, &attrs));
        assert_eq!(parse_reply(&reply, 9, 7), Reply::Attrs(&attrs[..]));
        // Cut inside the payload: the header claims more than arrived.
        assert_eq!(parse_reply(&reply[..20], 9, 7), Reply::Malformed);
        // Cut inside the header: cannot even tell whose it is.
        assert_eq!(parse_reply(&reply[..10], 9, 7), Reply::Unrelated);
        assert_eq!(parse_reply(&[], 9, 7), Reply::Unrelated);
        // A payload shorter than a unix_diag_msg.
        let short = message(SOCK_DIAG_BY_FAMILY, 9, &diag(7, &[])[..8]);
        assert_eq!(parse_reply(&short, 9, 7), Reply::Malformed);
        // An error reply without its errno.
        assert_eq!(
            parse_reply(&message(NLMSG_ERROR, 9, &[]), 9, 7),
            Reply::Malformed
        );
        // An attribute claiming more bytes than there are.
        let mut bad = nla(UNIX_DIAG_PEER, &42u32.to_ne_bytes());
        bad[0] = 200;
        assert_eq!(peer_inode(&bad), None);
        assert_eq!(peer_inode(&bad[..6]), None);
    }

    #[test]
    fn reply_for_another_inode_is_malformed() {
        let reply = message(SOCK_DIAG_BY_FAMILY, 9, &diag(8, &[]));
        assert_eq!(parse_reply(&reply, 9, 7), Reply::Malformed);
    }

    #[test]
    fn later_message_in_datagram_is_found() {
        let mut datagram = error_reply(4, libc::ENOENT);
        let attrs = nla(UNIX_DIAG_PEER, &42u32.to_ne_bytes());
        datagram.extend(message(SOCK_DIAG_BY_FAMILY, 5, &diag(7, &attrs)));
        assert_eq!(parse_reply(&datagram, 5, 7), Reply::Attrs(&attrs[..]));
    }

    #[test]
    fn peer_inode_is_read() {
        let mut attrs = nla(UNIX_DIAG_NAME, b"/run/x.sock\0");
        attrs.extend(nla(UNIX_DIAG_PEER, &42u32.to_ne_bytes()));
        assert_eq!(peer_inode(&attrs), Some(42));
        assert_eq!(peer_inode(&nla(UNIX_DIAG_PEER, &0u32.to_ne_bytes())), None);
        assert_eq!(peer_inode(&nla(UNIX_DIAG_PEER, &[1, 2])), None);
        assert_eq!(peer_inode(&[]), None);
    }

    #[test]
    fn path_name_is_read_without_its_nul() {
        let attrs = nla(UNIX_DIAG_NAME, b"/run/app/web.sock\0");
        assert_eq!(bound_path(&attrs), Some(PathBuf::from("/run/app/web.sock")));
        let attrs = nla(UNIX_DIAG_NAME, b"/run/app/web.sock");
        assert_eq!(bound_path(&attrs), Some(PathBuf::from("/run/app/web.sock")));
    }

    #[test]
    fn abstract_and_missing_names_are_left_out() {
        assert_eq!(bound_path(&nla(UNIX_DIAG_NAME, b"\0abstract")), None);
        assert_eq!(bound_path(&nla(UNIX_DIAG_NAME, b"")), None);
        assert_eq!(bound_path(&nla(UNIX_DIAG_PEER, &1u32.to_ne_bytes())), None);
    }

    #[test]
    fn socket_links_give_inodes() {
        assert_eq!(socket_inode(Path::new("socket:[12345]")), Some(12345));
        assert_eq!(socket_inode(Path::new("socket:[]")), None);
        assert_eq!(socket_inode(Path::new("socket:[+1]")), None);
        assert_eq!(socket_inode(Path::new("socket:[99999999999]")), None);
        assert_eq!(socket_inode(Path::new("pipe:[12345]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn request_layout() {
        let req = request(3, 77, UDIAG_SHOW_NAME);
        assert_eq!(u32_at(&req, 0), Some(REQUEST_LEN as u32));
        assert_eq!(u16_at(&req, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&req, 6), Some(1));
        assert_eq!(u32_at(&req, 8), Some(3));
        assert_eq!(req[16], libc::AF_UNIX as u8);
        assert_eq!(u32_at(&req, 20), Some(!0));
        assert_eq!(u32_at(&req, 24), Some(77));
        assert_eq!(u32_at(&req, 28), Some(UDIAG_SHOW_NAME));
        assert_eq!(&req[32..40], &[0xff; 8]);
    }
}
