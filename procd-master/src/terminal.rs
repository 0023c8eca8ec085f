//! Terminals of interactive one-offs (`zeroku run` from a terminal): the
//! master meets the CLI's WebSocket and the one the worker running the
//! one-off opens, and splices them.
//!
//! Binary messages are terminal bytes, both ways; text messages are JSON
//! control messages from the CLI (`{"resize":{"cols":C,"rows":R}}`), passed
//! to the worker as they are. Either side may arrive first; it waits for
//! the other for a while, then is closed with the reason. When one side
//! closes, what the other sent before is delivered, then it is closed too:
//! a CLI that goes away hangs up the remote terminal (SIGHUP), and the end
//! of the remote process ends the CLI's session.
//!
//! This module owns only the meeting and the splicing. Who may open which
//! side is decided by the API before the upgrade.

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// Which end of a one-off's terminal a WebSocket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The CLI of whoever ran `zeroku run`.
    Client,
    /// The worker running the one-off.
    Node,
}

struct Slot {
    side: Side,
    seq: u64,
    partner: oneshot::Sender<Box<Ws>>,
}

#[derive(Default)]
pub struct Terminals {
    waiting: Mutex<HashMap<String, Slot>>,
    /// One-offs whose two sides are spliced now.
    active: Mutex<HashSet<String>>,
    seq: std::sync::atomic::AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a side may not attach now, for the API to answer before upgrading.
pub fn busy_reason(side: Side) -> &'static str {
    match side {
        Side::Client => "another terminal is attached to this one-off already",
        Side::Node => "this one-off's node terminal is connected already",
    }
}

impl Terminals {
    /// Whether `side` of one-off `id` is attached or waiting already.
    pub fn busy(&self, id: &str, side: Side) -> bool {
        lock(&self.active).contains(id)
            || lock(&self.waiting).get(id).is_some_and(|s| s.side == side)
    }

    /// Attaches `ws` as `side` of one-off `id`: splices it to the other side
    /// if that waits, else waits up to `patience` for it. `gone` is asked
    /// every half second while waiting: `Some(why)` means the one-off ended
    /// and nobody will come.
    pub async fn attach(
        &self,
        id: &str,
        side: Side,
        ws: Ws,
        patience: Duration,
        gone: impl Fn() -> Option<String>,
    ) {
        let (tx, mut rx) = oneshot::channel();
        let seq = self.seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Decided under the lock, acted on after it.
        let mut mine = Some(ws);
        let refused: Option<&str> = {
            let mut waiting = lock(&self.waiting);
            match waiting.remove(id) {
                Some(other) if other.side != side => {
                    // The other side waits: hand it this one; its task splices.
                    match mine.take().map(|ws| other.partner.send(Box::new(ws))) {
                        Some(Ok(())) | None => return,
                        Some(Err(ws)) => {
                            mine = Some(*ws);
                            Some("the other side of the terminal went away")
                        }
                    }
                }
                Some(same) => {
                    waiting.insert(id.to_string(), same);
                    Some(busy_reason(side))
                }
                None => {
                    waiting.insert(
                        id.to_string(),
                        Slot {
                            side,
                            seq,
                            partner: tx,
                        },
                    );
                    None
                }
            }
        };
        let Some(mut ws) = mine else { return };
        if let Some(why) = refused {
            close(ws, why).await;
            return;
        }
        let deadline = tokio::time::Instant::now() + patience;
        // What a waiting client typed (or a resize), for the node once it
        // is there.
        let mut early = Vec::new();
        let why = loop {
            tokio::select! {
                partner = &mut rx => match partner {
                    Ok(other) => {
                        lock(&self.active).insert(id.to_string());
                        let (client, node) = match side {
                            Side::Client => (ws, *other),
                            Side::Node => (*other, ws),
                        };
                        tracing::info!(instance = id, "terminal attached");
                        splice(client, node, early).await;
                        lock(&self.active).remove(id);
                        tracing::info!(instance = id, "terminal detached");
                        return;
                    }
                    Err(_) => break "the terminal could not be connected".to_string(),
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {
                    if let Some(why) = gone() {
                        break why;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        break match side {
                            Side::Client => format!(
                                "the one-off's node did not connect its terminal within {}s",
                                patience.as_secs()
                            ),
                            Side::Node => "no client attached to the terminal in time".into(),
                        };
                    }
                    // A client that hung up while waiting frees the slot.
                    if side == Side::Client && is_closed(&mut ws, &mut early).await {
                        break "the client went away".to_string();
                    }
                }
            }
        };
        {
            let mut waiting = lock(&self.waiting);
            if waiting.get(id).is_some_and(|s| s.seq == seq) {
                waiting.remove(id);
            }
        }
        // A partner may have been handed over just as the wait ended.
        if let Ok(other) = rx.try_recv() {
            close(*other, &why).await;
        }
        tracing::info!(instance = id, ?side, why, "terminal not connected");
        close(ws, &why).await;
    }
}

/// The most a waiting client's input kept for its node, bytes.
const EARLY_MAX: usize = 64 * 1024;

/// Whether the peer closed `ws`; what it sent meanwhile is kept in `early`
/// (up to [`EARLY_MAX`]).
async fn is_closed(ws: &mut Ws, early: &mut Vec<Message>) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_millis(1), ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(m))) => {
                let kept: usize = early.iter().map(Message::len).sum();
                if (m.is_binary() || m.is_text()) && kept + m.len() <= EARLY_MAX {
                    early.push(m);
                }
            }
        }
    }
}

async fn close(mut ws: Ws, why: &str) {
    let frame = CloseFrame {
        code: CloseCode::Again,
        reason: why.chars().take(120).collect::<String>().into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(Some(frame))).await;
}

/// Passes terminal bytes and control messages both ways until one side
/// ends; what that side sent before is delivered, then the other is closed.
async fn splice(client: Ws, node: Ws, early: Vec<Message>) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut node_tx, mut node_rx) = node.split();
    for m in early {
        if node_tx.send(m).await.is_err() {
            return;
        }
    }
    let up = async {
        while let Some(Ok(m)) = client_rx.next().await {
            if m.is_close() {
                break;
            }
            if (m.is_binary() || m.is_text()) && node_tx.send(m).await.is_err() {
                break;
            }
        }
        let _ = node_tx.close().await;
    };
    let down = async {
        let mut reason = None;
        while let Some(Ok(m)) = node_rx.next().await {
            if let Message::Close(f) = m {
                reason = f;
                break;
            }
            if (m.is_binary() || m.is_text()) && client_tx.send(m).await.is_err() {
                break;
            }
        }
        let frame = reason.unwrap_or(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        });
        let _ = client_tx.send(Message::Close(Some(frame))).await;
        let _ = client_tx.close().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
