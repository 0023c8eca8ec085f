//! Stable local addresses for required services: `ZEROKU_REQUIRE_<NAME>_ADDR`
//! is `127.0.0.1:PORT` on the instance's node, and every connection made to it
//! is passed to a provider that is up now (round-robin; a provider that refuses
//! is skipped for the next one), so an app that connects there never needs to
//! re-read anything when providers come and go.
//!
//! One listener per (app, requirement) on the node, shared by the app's
//! instances there; the supervisor chooses and keeps its port (in the worker's
//! port range, the same across worker restarts) and the agent calls
//! [`Forwards::sync`] with what is wanted. Bytes are copied as they are: this
//! module must not look into them.
//!
//! The listener is on loopback: it reaches nothing a process of the node could
//! not reach at the providers' own addresses.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long one provider is given to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

struct Forward {
    addrs: Arc<RwLock<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The listeners of this node, by local port.
#[derive(Default)]
pub struct Forwards {
    by_port: HashMap<u16, Forward>,
}

impl Drop for Forwards {
    fn drop(&mut self) {
        for f in self.by_port.values() {
            f.task.abort();
        }
    }
}

impl Forwards {
    /// Listens on each port of `wanted` and passes its connections to its providers; stops
    /// listening on the ports no longer wanted. Cheap when nothing changed.
    pub fn sync(&mut self, wanted: HashMap<u16, Vec<String>>) {
        self.by_port.retain(|port, f| {
            let keep = wanted.contains_key(port) && !f.task.is_finished();
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (port, addrs) in wanted {
            if let Some(f) = self.by_port.get(&port) {
                let mut cur = f.addrs.write().unwrap_or_else(|e| e.into_inner());
                if *cur != addrs {
                    *cur = addrs;
                }
                continue;
            }
            let shared = Arc::new(RwLock::new(addrs));
            let task = tokio::spawn(listen(port, shared.clone()));
            self.by_port.insert(
                port,
                Forward {
                    addrs: shared,
                    task,
                },
            );
        }
    }
}

async fn listen(port: u16, addrs: Arc<RwLock<Vec<String>>>) {
    let l = match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(l) => l,
        Err(e) => {
            // Tried again on the next sync (the task is finished).
            tracing::warn!(port, error = %e, "cannot listen for a required service");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let (client, _) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(port, error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let list = addrs.read().unwrap_or_else(|e| e.into_inner()).clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(pass(client, list, start, port));
    }
}

/// Connects `client` to the first provider of `list` (from `start`, round-robin) that
/// accepts, and copies bytes both ways until either side closes. With none, the client's
/// connection is closed.
async fn pass(mut client: TcpStream, list: Vec<String>, start: usize, port: u16) {
    let _ = client.set_nodelay(true);
    for i in 0..list.len() {
        let addr = &list[(start + i) % list.len()];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(mut up)) => {
                let _ = up.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(port, provider = %addr, error = %e, "provider refused"),
            Err(_) => tracing::debug!(port, provider = %addr, "provider did not answer"),
        }
    }
    tracing::debug!(port, "no provider up: connection closed");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: &'static str) -> (String, tokio::task::JoinHandle<()>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 64];
                    let n = s.read(&mut b).await.unwrap_or(0);
                    let _ = s.write_all(format!("{tag}:").as_bytes()).await;
                    let _ = s.write_all(&b[..n]).await;
                });
            }
        });
        (addr, task)
    }

    async fn ask(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(b"hi").await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn connections_reach_a_live_provider_and_follow_changes() {
        let (a, ta) = echo_server("a").await;
        let (b, _tb) = echo_server("b").await;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut f = Forwards::default();
        f.sync(HashMap::from([(port, vec![a.clone(), b.clone()])]));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut seen = vec![ask(port).await, ask(port).await];
        seen.sort();
        assert_eq!(seen, ["a:hi", "b:hi"], "round-robin");
        // A provider that is gone is skipped.
        ta.abort();
        tokio::time::sleep(Duration::from_millis(50)).await;
        for _ in 0..3 {
            assert_eq!(ask(port).await, "b:hi");
        }
        // None: the connection is closed with nothing.
        f.sync(HashMap::from([(port, vec![])]));
        assert_eq!(ask(port).await, "");
        f.sync(HashMap::new());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(TcpStream::connect(("127.0.0.1", port)).await.is_err());
    }
}
