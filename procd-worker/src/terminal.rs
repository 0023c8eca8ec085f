//! The node's end of an interactive one-off's terminal: a WebSocket to the
//! master (`/v1/nodes/<node>/runs/<instance>/terminal`), which splices it
//! to the CLI of whoever ran `zeroku run`.
//!
//! Binary messages carry terminal bytes both ways; a text message
//! `{"resize":{"cols":C,"rows":R}}` resizes the terminal. When the process
//! (and everything holding its terminal) has exited, the socket is closed;
//! when the master closes it (the CLI went away), the terminal is hung up,
//! which sends the process SIGHUP, as closing an ssh session does.
//!
//! The runtime makes the terminal (a pseudo-terminal for a native process,
//! a TTY container for Docker); this module only moves bytes. A worker
//! restart hangs up the terminals it held.

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use zeroku_client::{Client, ClientError, Socket};

/// Opens this node's side of `instance`'s terminal, retrying for a few
/// seconds while the master cannot be reached.
pub async fn connect(client: &Client, node: &str, instance: &str) -> Option<Socket> {
    let path = format!("/v1/nodes/{node}/runs/{instance}/terminal");
    for attempt in 0..20 {
        match client.websocket(&path).await {
            Ok(ws) => return Some(ws),
            Err(e @ ClientError::Api { .. }) => {
                tracing::warn!(instance, error = %e, "the master refused the terminal");
                return None;
            }
            Err(e) => {
                if attempt == 19 {
                    tracing::warn!(instance, error = %e, "cannot connect the terminal");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

/// A resize request, if `text` is one.
fn parse_resize(text: &str) -> Option<(u16, u16)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let r = &v["resize"];
    let cols = u16::try_from(r["cols"].as_u64()?).ok()?;
    let rows = u16::try_from(r["rows"].as_u64()?).ok()?;
    (cols > 0 && rows > 0).then_some((cols, rows))
}

/// Moves bytes between `ws` and a terminal until either ends: `output` is
/// what the terminal shows, `input` takes the keys, `resize` sets its size.
/// The two directions run side by side, so a paste the program is slow
/// to read never holds up what it prints (or the reverse).
pub async fn relay<W, O, I, R, F>(instance: &str, ws: W, mut output: O, mut input: I, mut resize: R)
where
    W: Stream<Item = Result<Message, WsError>> + futures_util::Sink<Message> + Unpin,
    O: Stream<Item = Bytes> + Unpin,
    I: AsyncWrite + Unpin,
    R: FnMut(u16, u16) -> F,
    F: Future<Output = ()>,
{
    let (mut tx, mut rx) = ws.split();
    let shown = async {
        while let Some(b) = output.next().await {
            if tx.send(Message::Binary(b)).await.is_err() {
                return;
            }
        }
        tracing::info!(instance, "terminal ended");
    };
    let typed = async {
        loop {
            match rx.next().await {
                Some(Ok(Message::Binary(b))) => {
                    if input.write_all(&b).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    if let Some((cols, rows)) = parse_resize(t.as_str()) {
                        resize(cols, rows).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    tracing::info!(instance, "terminal hung up by the client");
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::select! {
        _ = shown => {}
        _ = typed => {}
    }
    let _ = tx.close().await;
}

/// The master side of a pseudo-terminal, non-blocking, for tokio.
pub struct Pty(AsyncFd<std::fs::File>);

impl Pty {
    pub fn new(master: OwnedFd) -> std::io::Result<Pty> {
        Ok(Pty(crate::native::async_terminal(master)?))
    }

    pub fn resize(&self, cols: u16, rows: u16) {
        if let Err(e) = crate::native::set_winsize(self.0.get_ref(), cols, rows) {
            tracing::debug!(error = %e, "cannot resize the terminal");
        }
    }

    /// What the terminal shows, until every process holding it has exited
    /// (the master then reads EIO).
    pub fn output(self: std::sync::Arc<Self>) -> impl Stream<Item = Bytes> + Unpin {
        Box::pin(futures_util::stream::unfold(self, |pty| async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let mut guard = pty.0.readable().await.ok()?;
                match guard.try_io(|f| f.get_ref().read(&mut buf)) {
                    Ok(Ok(0)) | Ok(Err(_)) => return None,
                    Ok(Ok(n)) => {
                        buf.truncate(n);
                        return Some((Bytes::from(buf), pty));
                    }
                    Err(_would_block) => continue,
                }
            }
        }))
    }
}

/// Keys typed into the terminal.
pub struct PtyInput(pub std::sync::Arc<Pty>);

impl AsyncWrite for PtyInput {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0 .0.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(buf)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Relays a native process's pseudo-terminal: connects, then moves bytes
/// until the process ends or the client hangs up (dropping the master side
/// hangs the terminal up).
pub async fn relay_pty(client: Client, node: String, instance: String, master: OwnedFd) {
    let pty = match Pty::new(master) {
        Ok(p) => std::sync::Arc::new(p),
        Err(e) => {
            tracing::warn!(instance, error = %e, "cannot use the terminal");
            return;
        }
    };
    let Some(ws) = connect(&client, &node, &instance).await else {
        return;
    };
    let resizer = pty.clone();
    relay(
        &instance,
        ws,
        pty.clone().output(),
        PtyInput(pty),
        move |c, r| {
            resizer.resize(c, r);
            std::future::ready(())
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::Role;
    use tokio_tungstenite::WebSocketStream;

    /// A program that never reads its terminal's input.
    struct Stuck;

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn output_keeps_flowing_while_a_paste_waits_for_the_program() {
        let (a, b) = tokio::io::duplex(64 << 10);
        let node = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let mut cli = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        const CHUNKS: usize = 2000;
        let output = futures_util::stream::iter((0..CHUNKS).map(|_| Bytes::from(vec![b'x'; 1024])));
        let relay = tokio::spawn(async move {
            relay(
                "t.run.1",
                node,
                output,
                Stuck,
                |_, _| std::future::ready(()),
            )
            .await;
        });
        // A 1 MiB paste the program will never take, then read what it shows.
        let mut shown = 0;
        let read = async {
            cli.send(Message::Binary(Bytes::from(vec![b'p'; 1 << 20])))
                .await
                .unwrap();
            while let Some(Ok(m)) = cli.next().await {
                match m {
                    Message::Binary(b) => shown += b.len(),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the output stalled behind the paste");
        assert_eq!(shown, CHUNKS * 1024);
        relay.await.unwrap();
    }

    #[test]
    fn resize_messages() {
        assert_eq!(
            parse_resize(r#"{"resize":{"cols":120,"rows":40}}"#),
            Some((120, 40))
        );
        assert_eq!(parse_resize(r#"{"resize":{"cols":0,"rows":40}}"#), None);
        assert_eq!(parse_resize(r#"{"resize":{"cols":70000,"rows":40}}"#), None);
        assert_eq!(parse_resize("not json"), None);
    }
}
