//! A ZeroMQ socket's readiness on tokio's reactor, through `ZMQ_FD`, so a
//! task can read the socket without a thread of its own. The descriptor
//! belongs to libzmq: it is only watched here, never read or closed.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::unix::AsyncFd;

/// The socket's `ZMQ_FD`, borrowed.
pub struct ZmqFd(RawFd);

impl AsRawFd for ZmqFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `sock`'s `ZMQ_FD` for readability. The result must be dropped
/// before `sock` (declare it after the socket).
pub fn watch(sock: &zmq::Socket) -> io::Result<AsyncFd<ZmqFd>> {
    let fd = sock.get_fd().map_err(io::Error::other)?;
    // SAFETY: the descriptor stays open and the same while `sock` lives,
    // and the caller drops the AsyncFd before the socket; tokio only
    // registers it with epoll and never reads, writes or closes it.
    unsafe {
        AsyncFd::register_with_interest(ZmqFd(fd), tokio::io::Interest::READABLE)
            .map_err(io::Error::from)
    }
}
