//! The 408 hyper does not send: when a client started a request head but did
//! not finish it within the header timeout, hyper ends the connection with
//! an error and no answer. [`Watched`] wraps the connection's stream, and when
//! the edge sees that error it marks the stream; dropping a marked stream
//! that has received bytes since its last write sends `408 Request Timeout`
//! (a few bytes that always fit the socket buffer) before the close. An idle
//! keep-alive connection that sent nothing is closed silently, as nginx does.

use std::io::Write;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(crate) const RESPONSE_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 50\r\nConnection: close\r\n\r\nzeroku: the request head did not arrive in time.\r\n";

/// A stream that can write a last message without waiting, from `Drop`.
pub trait LastWords {
    fn last_words(&mut self, bytes: &[u8]);
}

impl LastWords for TcpStream {
    fn last_words(&mut self, bytes: &[u8]) {
        let _ = self.try_write(bytes);
    }
}

impl LastWords for tokio_rustls::server::TlsStream<TcpStream> {
    fn last_words(&mut self, bytes: &[u8]) {
        let (tcp, tls) = self.get_mut();
        if tls.writer().write_all(bytes).is_err() {
            return;
        }
        tls.send_close_notify();
        while tls.wants_write() {
            match tls.write_tls(&mut TryWriter(tcp)) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// `io::Write` over a non-blocking socket: what does not fit now is dropped.
struct TryWriter<'a>(&'a TcpStream);

impl Write for TryWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.try_write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The connection's stream, watched for a request head that times out.
pub struct Watched<I: LastWords> {
    inner: I,
    /// Bytes arrived since the last write: a request is being read.
    reading: bool,
    timed_out: Arc<AtomicBool>,
}

impl<I: LastWords> Watched<I> {
    /// The stream and the flag the edge sets when hyper reports a header timeout.
    pub fn new(inner: I) -> (Self, Arc<AtomicBool>) {
        let flag = Arc::new(AtomicBool::new(false));
        (
            Watched {
                inner,
                reading: false,
                timed_out: flag.clone(),
            },
            flag,
        )
    }
}

impl<I: LastWords> Drop for Watched<I> {
    fn drop(&mut self) {
        if self.reading && self.timed_out.load(Ordering::Relaxed) {
            self.inner.last_words(RESPONSE_408);
        }
    }
}

impl<I: LastWords + AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            me.reading = true;
        }
        r
    }
}

impl<I: LastWords + AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.reading = false;
        }
        r
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            me.reading = false;
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
