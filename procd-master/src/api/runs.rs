//! One-off terminals: the WebSocket upgrade that joins a client or a node to an interactive
//! one-off's terminal, and shell-style exit codes.

use super::{full, Reply};
use crate::cluster::Cluster;
use crate::error::ApiError;
use crate::terminal;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Upgrades `req` to a WebSocket that becomes `side` of one-off `o`'s
/// terminal. A client waits up to two minutes for the node (a slug may be
/// downloading); a node waits 30 s for its client.
pub(super) fn terminal_upgrade(
    cluster: &Arc<Cluster>,
    mut req: Request<Incoming>,
    o: crate::store::OneOff,
    side: terminal::Side,
) -> Result<Reply, ApiError> {
    use hyper::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
    let h = req.headers();
    let upgrade = h
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = match (upgrade, h.get(SEC_WEBSOCKET_KEY)) {
        (true, Some(k)) => k.as_bytes().to_vec(),
        _ => {
            return Err(ApiError::bad_request(
                "this is a WebSocket endpoint: send a WebSocket upgrade (zeroku run does)",
            ))
        }
    };
    if o.tty.is_none() {
        return Err(ApiError::invalid(format!(
            "{} was not started with a terminal (zeroku run from a terminal, without --no-tty)",
            o.id
        )));
    }
    if let Some(exit) = &o.exit {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "ended",
            format!("{} has ended ({exit})", o.id),
        ));
    }
    if cluster.terminals.busy(&o.id, side) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            terminal::busy_reason(side),
        ));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let c = cluster.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(up) => hyper_util::rt::TokioIo::new(up),
            Err(e) => {
                tracing::debug!(instance = %o.id, error = %e, "terminal upgrade failed");
                return;
            }
        };
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            io,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        let patience = match side {
            terminal::Side::Client => Duration::from_secs(120),
            terminal::Side::Node => Duration::from_secs(30),
        };
        let (app, n) = (o.app.clone(), o.n);
        let store_of = c.clone();
        let gone = move || {
            let ended = store_of.store().oneoff(&app, n).ok().flatten()?.exit?;
            Some(format!("the one-off ended ({ended})"))
        };
        c.terminals.attach(&o.id, side, ws, patience, gone).await;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    let r = Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "Upgrade")
        .header(SEC_WEBSOCKET_ACCEPT, accept)
        .body(full(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Vec::new()).into_body())
        .map_err(ApiError::internal)?;
    Ok(Reply::Raw(r))
}

/// A shell-style exit code from a worker's exit description.
pub(super) fn exit_code(exit: &str) -> i32 {
    if let Some(c) = exit.strip_prefix("exited with status ") {
        return c.trim().parse().unwrap_or(1);
    }
    if let Some(s) = exit.strip_prefix("killed by signal ") {
        return 128 + s.trim().parse::<i32>().unwrap_or(0);
    }
    1
}
