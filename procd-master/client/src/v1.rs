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

/// `POST /v1/nodes/register` (a join or admin token): a worker joins the cluster. Also the body
/// of `POST /v1/nodes/<name>/hello` (the node's own token): a worker that joined before comes
/// back, with the same bus key; a node token can never register or re-key a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterNode {
    pub name: String,
    pub capacity_mb: u64,
    /// The address other nodes and frontends reach this node's instances at.
    #[serde(default = "loopback")]
    pub host: String,
    /// The node's CURVE public key (z85): the only key the master lets speak for this node on
    /// the bus.
    pub bus_key: String,
}

fn loopback() -> String {
    "127.0.0.1".into()
}

/// Where the bus is and how to prove it is the master's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusInfo {
    pub pub_endpoint: String,
    pub pull_endpoint: String,
    pub heartbeat_interval_ms: u64,
    /// The master's CURVE public key (z85): a bus endpoint with another key is not the master.
    pub master_key: String,
    /// The cluster's identity, made once by its master: what a worker labels its containers
    /// with, so that two clusters on one Docker Engine never touch each other's.
    #[serde(default)]
    pub cluster: String,
}

/// The answer to [`RegisterNode`]: the node's own token, and the bus.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeJoined {
    pub node_token: String,
    #[serde(flatten)]
    pub bus: BusInfo,
}

/// `POST /v1/frontends/register` (a join or admin token): a frontend joins. Also the body of
/// `POST /v1/frontends/<name>/hello` (the frontend's own token) when it comes back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterFrontend {
    pub name: String,
    /// The host handler relays on other nodes connect to for this frontend's sockets.
    pub handler_host: String,
    /// The frontend's CURVE public key (z85): on the master's bus, and the server key of its
    /// handler sockets.
    pub bus_key: String,
    /// The worker node on the same host, if any: its handlers reach this frontend over
    /// `ipc://` sockets in `ipc_dir` instead of TCP.
    #[serde(default)]
    pub node: String,
    /// Where this frontend binds its per-app `ipc://` handler sockets (`<ipc_dir>/<app>/`).
    #[serde(default)]
    pub ipc_dir: String,
}

/// The answer to [`RegisterFrontend`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrontendJoined {
    /// The frontend's own token (empty in the answer to a hello: it keeps the one it has).
    pub token: String,
    pub pub_endpoint: String,
    /// The master's CURVE public key (z85).
    pub master_key: String,
}

/// `POST /v1/nodes/join-token` (admin): a token that lets one node or frontend join, once,
/// within `ttl_secs` (default an hour).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewJoinToken {
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// The answer to [`NewJoinToken`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinToken {
    pub token: String,
    /// Unix seconds after which it no longer works.
    pub expires_at: u64,
}
