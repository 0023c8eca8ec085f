//! The Mongrel2 handler protocol (see `shared/MONGREL2.md`, a contract): the
//! wire format between zeroku's frontend and handler processes, and a small
//! Rust handler library.
//!
//! Owns: tnetstrings ([`tnetstring`]), netstrings ([`netstring`]), the
//! request/reply/disconnect messages ([`codec`]: encoded exactly as Mongrel2
//! 1.12 does, header order included, except that JSON is always valid), and
//! [`handler::Connection`], the Rust counterpart of Python's
//! `mongrel2.handler.Connection`.
//!
//! Everything here is pure byte-slice code except [`handler`], the only part
//! that does I/O (ZMQ sockets). The frontend's socket handling, routing,
//! upload files and WebSocket framing of client traffic live elsewhere.

pub mod codec;
pub mod handler;
mod header_table;
pub mod netstring;
pub mod tnetstring;

pub use codec::{
    encode_control, encode_disconnect, encode_reply, encode_request, http_response,
    parse_handler_message, parse_reply, parse_request, websocket_frame, CodecError, HandlerMessage,
    ParsedRequest, Protocol, Reply, RequestHead, MAX_IDS,
};
pub use handler::{Connection, HandlerError};
