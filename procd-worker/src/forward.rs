//! Stable local addresses for required services: `ZEROKU_REQUIRE_<NAME>_ADDR`
//! is a loopback address on the instance's node, and every connection made to
//! it is passed to a provider that is up now (round-robin; a provider that
//! refuses is skipped for the next one), so an app that connects there never
//! needs to re-read anything when providers come and go.
//!
//! One listener per (app, requirement) on the node, shared by the app's
//! instances there; the supervisor chooses its address (with a root worker: the
//! app's own 127.x.y.z and a port below 1024, which no app can bind before the
//! worker does, even while the worker restarts) and the agent calls
//! [`Forwards::sync`] with what is wanted. Bytes are copied as they are: this
//! module must not look into them.
//!
//! A listener reaches nothing a process of the node could not reach at the
//! providers' own addresses; it serves at most [`MAX_CONNECTIONS`] at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long one provider is given to accept a connection before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Connections one listener passes on at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 512;

struct Forward {
    addrs: Arc<RwLock<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// The listeners of this node, by local address.
#[derive(Default)]
pub struct Forwards {
    by_addr: HashMap<SocketAddr, Forward>,
}

impl Drop for Forwards {
    fn drop(&mut self) {
        for f in self.by_addr.values() {
            f.task.abort();
        }
    }
}

impl Forwards {
    /// Listens on each address of `wanted` and passes its connections to its providers;
    /// stops listening on the addresses no longer wanted. Returns the addresses that could
    /// not be listened on (something else holds them): the caller chooses others. Cheap when
    /// nothing changed.
    pub fn sync(&mut self, wanted: HashMap<SocketAddr, Vec<String>>) -> Vec<SocketAddr> {
        let mut failed = Vec::new();
        self.by_addr.retain(|addr, f| {
            // A listener only ends when it could not bind.
            if f.task.is_finished() {
                failed.push(*addr);
                return false;
            }
            let keep = wanted.contains_key(addr);
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (addr, addrs) in wanted {
            if failed.contains(&addr) {
                continue;
            }
            if let Some(f) = self.by_addr.get(&addr) {
                let mut cur = f.addrs.write().unwrap_or_else(|e| e.into_inner());
                if *cur != addrs {
                    *cur = addrs;
                }
                continue;
            }
            let shared = Arc::new(RwLock::new(addrs));
            let task = tokio::spawn(listen(addr, shared.clone()));
            self.by_addr.insert(
                addr,
                Forward {
                    addrs: shared,
                    task,
                },
            );
        }
        failed
    }
}

async fn listen(addr: SocketAddr, addrs: Arc<RwLock<Vec<String>>>) {
    let l = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot listen for a required service");
            return;
        }
    };
    let next = Arc::new(AtomicUsize::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (client, _) = match l.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(%addr, error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "{MAX_CONNECTIONS} connections already: closed");
            continue;
        };
        let list = addrs.read().unwrap_or_else(|e| e.into_inner()).clone();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            pass(client, list, start, addr.port()).await;
            drop(slot);
        });
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

    /// Waits (up to 5 s) until `f` holds.
    async fn until<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
        for _ in 0..500 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn ask(at: SocketAddr) -> String {
        let mut s = TcpStream::connect(at).await.unwrap();
        s.write_all(b"hi").await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[tokio::test]
    async fn connections_reach_a_live_provider_and_follow_changes() {
        let (a, ta) = echo_server("a").await;
        let (b, _tb) = echo_server("b").await;
        // An address of its own on loopback: nothing else binds it.
        let at: SocketAddr = "127.77.0.1:0".parse().unwrap();
        let port = std::net::TcpListener::bind(at)
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let at = SocketAddr::from(([127, 77, 0, 1], port));
        let mut f = Forwards::default();
        assert!(f
            .sync(HashMap::from([(at, vec![a.clone(), b.clone()])]))
            .is_empty());
        until("the listener up", || async {
            TcpStream::connect(at).await.is_ok()
        })
        .await;
        let mut seen = vec![ask(at).await, ask(at).await];
        seen.sort();
        assert_eq!(seen, ["a:hi", "b:hi"], "round-robin");
        // A provider that is gone is skipped.
        ta.abort();
        until("provider a gone", || async {
            TcpStream::connect(a.as_str()).await.is_err()
        })
        .await;
        for _ in 0..3 {
            assert_eq!(ask(at).await, "b:hi");
        }
        // None: the connection is closed with nothing.
        f.sync(HashMap::from([(at, vec![])]));
        assert_eq!(ask(at).await, "");
        f.sync(HashMap::new());
        until("the listener gone", || async {
            TcpStream::connect(at).await.is_err()
        })
        .await;
        // An address something else holds is reported.
        let taken = std::net::TcpListener::bind("127.77.0.2:0").unwrap();
        let held = taken.local_addr().unwrap();
        f.sync(HashMap::from([(held, vec![b.clone()])]));
        let mut failed = Vec::new();
        for _ in 0..200 {
            failed = f.sync(HashMap::from([(held, vec![b.clone()])]));
            if !failed.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(failed, vec![held]);
    }
}
