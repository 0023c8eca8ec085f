//! A hello-world Mongrel2 handler in Rust, on `zeroku_frontend::m2`.
//!
//! It answers every request with `200` and a body naming the path, and works
//! unchanged behind zeroku or the real Mongrel2. Endpoints come from the
//! environment zeroku's worker sets for `handler` processes:
//!
//! ```text
//! M2_SEND_SPEC="tcp://127.0.0.1:9997" M2_RECV_SPEC="tcp://127.0.0.1:9996" \
//! M2_SENDER_ID=hello cargo run -p zeroku-frontend --example rust_handler
//! ```
//!
//! It keeps no state, so it simply runs until a signal (SIGTERM, SIGINT)
//! ends it; disconnect notices and malformed messages are skipped.

use zeroku_frontend::m2::{Connection, HandlerError};

fn main() -> Result<(), HandlerError> {
    let conn = Connection::from_env()?;
    eprintln!("rust_handler: ready as {:?}", conn.sender_id());
    loop {
        let req = match conn.recv() {
            Ok(req) => req,
            Err(HandlerError::Codec(e)) => {
                eprintln!("rust_handler: skipping malformed message: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        if req.is_disconnect() {
            continue;
        }
        let body = format!("Hello from Rust, you asked for {}\n", req.path);
        conn.reply_http(
            &req,
            200,
            &[("Content-Type", "text/plain; charset=utf-8")],
            body.as_bytes(),
        )?;
        if req.should_close() {
            conn.close(&req)?;
        }
    }
}
