//! `zeroku run` on a terminal: the local terminal in raw mode, connected
//! over the master's WebSocket to the one-off's pseudo-terminal on its
//! node. Keys (Ctrl-C too) go to the remote process as typed; window size
//! changes follow; the remote exit status becomes ours.
//!
//! Raw mode is set and restored with `stty` on our stdin, so the CLI needs
//! no unsafe code of its own.

use super::{enc, explain};
use anyhow::{anyhow, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::io::{IsTerminal, Write};
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use zeroku_client::Client;

/// Whether stdin and stdout are both a terminal.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The local terminal's size as (columns, rows).
pub fn size() -> (u16, u16) {
    stty(&["size"])
        .and_then(|s| {
            let (rows, cols) = s.split_once(' ')?;
            Some((cols.parse().ok()?, rows.parse().ok()?))
        })
        .filter(|&(c, r): &(u16, u16)| c > 0 && r > 0)
        .unwrap_or((80, 24))
}

/// The terminal in raw mode until dropped.
struct RawMode {
    saved: String,
}

impl RawMode {
    fn enter() -> Result<RawMode> {
        let saved =
            stty(&["-g"]).ok_or_else(|| anyhow!("cannot read the terminal's mode (stty -g)"))?;
        stty(&["raw", "-echo"]).ok_or_else(|| anyhow!("cannot put the terminal in raw mode"))?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = stty(&[self.saved.as_str()]);
    }
}

/// Attaches to one-off `n` of `app` (started with a terminal); returns its
/// exit status.
pub async fn attach(c: &Client, app: &str, n: u64, id: &str) -> Result<i32> {
    let ws = c
        .websocket(&format!("/v1/apps/{}/runs/{n}/terminal", enc(app)))
        .await
        .map_err(explain)?;
    let (mut tx, mut rx) = ws.split();
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let mut stdout = std::io::stdout();
    let raw = RawMode::enter()?;
    // Keys and resizes go up while output comes down, side by side: a
    // paste the remote program is slow to take never holds up its output.
    let up = async {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 4096];
        let mut stdin_open = true;
        loop {
            let m = tokio::select! {
                r = stdin.read(&mut buf), if stdin_open => match r {
                    Ok(0) | Err(_) => {
                        stdin_open = false;
                        continue;
                    }
                    Ok(k) => Message::Binary(buf[..k].to_vec().into()),
                },
                _ = winch.recv() => {
                    let (cols, rows) = size();
                    let m = serde_json::json!({"resize": {"cols": cols, "rows": rows}});
                    Message::Text(m.to_string().into())
                }
            };
            if tx.send(m).await.is_err() {
                return;
            }
        }
    };
    let down = async {
        while let Some(m) = rx.next().await {
            match m {
                Ok(Message::Binary(b)) => {
                    let _ = stdout.write_all(&b);
                    let _ = stdout.flush();
                }
                Ok(Message::Close(f)) => {
                    return f
                        .filter(|f| f.code != CloseCode::Normal && !f.reason.is_empty())
                        .map(|f| f.reason.to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        None
    };
    let ended: Option<String> = tokio::select! {
        _ = up => None,
        why = down => why,
    };
    drop(raw);
    if let Some(why) = &ended {
        eprintln!("\r\nzeroku: {why}");
    }
    // The exit status, once the node has reported it.
    for _ in 0..100 {
        let st: Value = c
            .get(&format!("/v1/apps/{}/runs/{n}", enc(app)))
            .await
            .map_err(explain)?;
        if st["state"] == "done" {
            return Ok(st["exit_code"].as_i64().unwrap_or(1) as i32);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("zeroku: {id} did not report how it ended; see `zeroku ps` and `zeroku logs`");
    Ok(1)
}
