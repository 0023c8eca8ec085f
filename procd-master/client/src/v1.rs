//! The shared request and response types of the operator API under `/v1`.
//!
//! The master deserializes what it receives and serializes what it answers with these types,
//! and the worker, the frontend and the CLI use the same ones, so a renamed field breaks the
//! build rather than a cluster.

use serde::{Deserialize, Serialize};

/// Prefix of the last line of a build's streamed output (`POST /v1/apps/<app>/builds`); the rest
/// of the line is a JSON object with the build's result.
pub const BUILD_RESULT_PREFIX: &str = "zeroku:result ";

/// The body of every error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A stable, machine-readable `code` and a message a person can act on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `POST /v1/nodes/register`: a worker joins (with a join or admin token) or comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterNode {
    pub name: String,
    pub capacity_mb: u64,
    /// The address other nodes and frontends reach this node's instances at.
    #[serde(default = "loopback")]
    pub host: String,
}

fn loopback() -> String {
    "127.0.0.1".into()
}

/// The answer to [`RegisterNode`]: the node's own token and where the bus is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeJoined {
    pub node_token: String,
    pub pub_endpoint: String,
    pub pull_endpoint: String,
    pub heartbeat_interval_ms: u64,
}

/// `POST /v1/frontends/register`: a frontend joins or comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterFrontend {
    pub name: String,
    /// The host handler processes connect to for this frontend's sockets.
    pub handler_host: String,
}

/// The answer to [`RegisterFrontend`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontendJoined {
    pub token: String,
    pub pub_endpoint: String,
}
