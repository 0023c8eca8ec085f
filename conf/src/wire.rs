//! The envelope every ZMQ message travels in.
//!
//! A message is the msgpack encoding of `(version, Message)`. A decoder reads
//! the version first, so a message from a newer zeroku is refused with
//! [`WireError::Version`] instead of being misread, and garbage is an error,
//! never a panic.

use crate::model::{Heartbeat, LogLine, NodeList, RouteTable};
use serde::{de::IgnoredAny, Deserialize, Serialize};
use thiserror::Error;

/// The envelope version this build writes and the newest it reads.
pub const VERSION: u16 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// master → worker, on topic `node/<name>/<key id>` ([`node_topic`]).
    NodeList(NodeList),
    /// worker → master.
    Heartbeat(Heartbeat),
    /// worker → master, a batch of lines.
    Logs(Vec<LogLine>),
    /// master → frontends, on topic `routes`.
    Routes(RouteTable),
    /// master → every node, on topic `alive` ([`ALIVE_TOPIC`]), every republish interval and
    /// when its pace changes: the master is there, and how often it wants heartbeats.
    Alive(Alive),
    /// worker → master, every `report_interval_ms`: what each instance used since the last.
    Usage(crate::usage::Usage),
}

/// The master's sign of life to every node at once (one message, however many nodes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alive {
    /// The heartbeat interval the master wants now: the configured one, longer on a cluster
    /// so large that it would take more than `max_heartbeats_per_sec` at that interval.
    pub heartbeat_ms: u64,
}

/// The PUB topic of the route table.
pub const ROUTES_TOPIC: &str = "routes";
/// The topic every node subscribes to besides its own: [`Message::Alive`].
pub const ALIVE_TOPIC: &str = "alive";

#[derive(Debug, Error)]
pub enum WireError {
    #[error("message envelope version {0} is newer than this zeroku understands ({VERSION}); upgrade this daemon")]
    Version(u16),
    #[error("undecodable message ({len} bytes): {source}")]
    Decode {
        len: usize,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

pub fn encode(msg: &Message) -> Result<Vec<u8>, WireError> {
    Ok(rmp_serde::to_vec(&(VERSION, msg))?)
}

pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let err = |source| WireError::Decode {
        len: bytes.len(),
        source,
    };
    let (version, _): (u16, IgnoredAny) = rmp_serde::from_slice(bytes).map_err(err)?;
    if version > VERSION {
        return Err(WireError::Version(version));
    }
    let (_, msg): (u16, Message) = rmp_serde::from_slice(bytes).map_err(err)?;
    Ok(msg)
}

/// The PUB topic of a node's process list: `node/<name>/<key id>`, where the key id names the
/// bus key the node registered (the master lets only that key subscribe to it). A node that
/// joins again with a new key gets a new topic, so a peer holding the old key hears nothing more.
pub fn node_topic(node: &str, key_id: &str) -> String {
    format!("node/{node}/{key_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use proptest::prelude::*;

    fn sample() -> Message {
        Message::NodeList(NodeList {
            node: "n1".into(),
            generation: 7,
            instances: vec![InstanceSpec {
                id: "hello.web.1".into(),
                app: "hello".into(),
                app_seq: 1,
                proc_type: "web".into(),
                index: 1,
                release: 2,
                command: "python app.py".into(),
                env: [("A".to_string(), "b".to_string())].into(),
                slug: SlugRef {
                    sha256: "ab".repeat(32),
                    size: 4096,
                },
                limits: Limits::default(),
                stack: None,
                tty: None,
                handler: Vec::new(),
                restart: 0,
                stop_when_lost_ms: None,
                addon: None,
                requires: Vec::new(),
            }],
        })
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(decode(&encode(&m).unwrap()).unwrap(), m);
    }

    #[test]
    fn newer_version_is_refused() {
        let bytes = rmp_serde::to_vec(&(VERSION + 1, sample())).unwrap();
        let e = decode(&bytes).unwrap_err();
        assert!(
            matches!(e, WireError::Version(v) if v == VERSION + 1),
            "{e}"
        );
        assert!(e.to_string().contains("upgrade"));
    }

    #[test]
    fn garbage_is_an_error() {
        for g in [&b""[..], b"\xff\xff", b"hello world", b"\x92\x01\xc1"] {
            assert!(decode(g).is_err());
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncated_messages_are_errors(cut in 0usize..200) {
            let full = encode(&sample()).unwrap();
            let cut = cut.min(full.len() - 1);
            prop_assert!(decode(&full[..cut]).is_err());
        }

        #[test]
        fn flipped_bytes_never_panic(pos in 0usize..200, val in any::<u8>()) {
            let mut b = encode(&sample()).unwrap();
            let pos = pos % b.len();
            b[pos] = val;
            let _ = decode(&b);
        }
    }
}
