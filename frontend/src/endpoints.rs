//! Where an app's handler sockets are bound, and who may use them.
//!
//! Each hub's PUSH (requests) and SUB (replies) socket is bound twice:
//!
//! - `ipc://<ipc_dir>/<app>/send|recv`, for handlers on this frontend's node: the directory
//!   belongs to the app's uid and no one else may enter it, so only the app's own processes can
//!   take its requests or answer on its connections. Mongrel2 handlers connect to these paths
//!   as they would to any endpoint (`M2_SEND_SPEC`/`M2_RECV_SPEC`).
//! - `tcp://<handler_bind>:<port>`, for relays of handlers on other nodes: CURVE with this
//!   frontend's key, and a ZAP handler that lets in only the bus keys of the nodes that run the
//!   app's handlers (from the master's route table).
//!
//! This module binds and checks; it must not read or write handler traffic.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, RwLock};
use zeroku_bus::{curve, zap, Keys};

/// Upload files in an app's directory are named `<this><pid>.<n>`.
pub const UPLOAD_PREFIX: &str = "upload.";

/// The ZAP domain of app `app`'s TCP handler sockets.
fn domain(app: &str) -> String {
    format!("handler/{app}")
}

/// The frontend's walls around handler sockets.
pub struct Walls {
    keys: Keys,
    ipc_dir: PathBuf,
    bind_host: String,
    /// Handler sockets belong to uid `uid_base + app number` (when the frontend is root).
    uid_base: Option<u32>,
    /// App → bus keys (z85) of the nodes that may relay for it.
    relays: Arc<RwLock<HashMap<String, HashSet<String>>>>,
    /// TCP peers refused (unknown key, or a node that runs none of the app's handlers).
    pub refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Drop for Walls {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

impl Walls {
    /// Sets up `ipc_dir` (traversable, not listable) and the ZAP handler of `ctx`.
    pub fn new(
        ctx: &zmq::Context,
        keys: Keys,
        ipc_dir: &Path,
        bind_host: &str,
        uid_base: u32,
    ) -> Result<Walls, String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(ipc_dir)
            .and_then(|()| {
                std::fs::set_permissions(ipc_dir, std::fs::Permissions::from_mode(0o711))
            })
            .map_err(|e| format!("cannot set up {}: {e}", ipc_dir.display()))?;
        let relays: Arc<RwLock<HashMap<String, HashSet<String>>>> = Arc::default();
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let r = relays.clone();
        zap::start(
            ctx,
            move |domain, key| {
                let app = domain.strip_prefix("handler/")?;
                let z = zeroku_bus::keys::z85(key);
                let ok = r
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(app)
                    .is_some_and(|keys| keys.contains(&z));
                ok.then_some(z)
            },
            refused.clone(),
            stop.clone(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Walls {
            keys,
            ipc_dir: ipc_dir.to_path_buf(),
            bind_host: bind_host.to_string(),
            uid_base: is_root().then_some(uid_base),
            relays,
            refused,
            stop,
        })
    }

    /// The nodes (bus keys) that may relay for `app` from now on.
    pub fn set_relays(&self, app: &str, keys: &[String]) {
        let mut r = self.relays.write().unwrap_or_else(|e| e.into_inner());
        r.insert(app.to_string(), keys.iter().cloned().collect());
    }

    /// Forgets the apps not in `apps`.
    pub fn keep_relays(&self, apps: &HashSet<&str>) {
        let mut r = self.relays.write().unwrap_or_else(|e| e.into_inner());
        r.retain(|a, _| apps.contains(a.as_str()));
    }

    /// `<ipc_dir>/<app>`: the app's sockets and upload files.
    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.ipc_dir.join(app)
    }

    /// The uid app number `seq`'s files belong to (`None` when not root).
    pub fn uid(&self, seq: u32) -> Option<u32> {
        self.uid_base.and_then(|b| b.checked_add(seq))
    }

    /// Binds `sock` for app `app` (number `seq`): `ipc://<ipc_dir>/<app>/<which>` for local
    /// handlers, then `tcp://<handler_bind>:<port>` with CURVE for relays. Returns the ipc
    /// endpoint.
    pub fn bind(
        &self,
        sock: &zmq::Socket,
        app: &str,
        seq: u32,
        which: &str,
        port: u16,
    ) -> Result<String, String> {
        use std::os::unix::fs::PermissionsExt;
        let err = |what: String| move |e: std::io::Error| format!("app {app}: cannot {what}: {e}");
        let dir = self.app_dir(app);
        std::fs::create_dir_all(&dir).map_err(err(format!("create {}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(err(format!("protect {}", dir.display())))?;
        let uid = self.uid(seq);
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid))
                .map_err(err(format!("give {} to uid {uid}", dir.display())))?;
        }
        // Upload files a crash left behind.
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(UPLOAD_PREFIX) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let path = dir.join(which);
        let ipc = format!("ipc://{}", path.display());
        if ipc.len() - "ipc://".len() > 107 {
            return Err(format!(
                "app {app}: the handler socket path {} is longer than a Unix socket allows (107 bytes): give the frontend a shorter data directory",
                path.display()
            ));
        }
        sock.bind(&ipc)
            .map_err(|e| format!("app {app}: cannot bind {ipc}: {e}"))?;
        if let Some(uid) = uid {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid))
                .map_err(err(format!("give {} to uid {uid}", path.display())))?;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(err(format!("protect {}", path.display())))?;
        // Options apply to the binds after them: TCP takes CURVE, ipc did not.
        curve::server(sock, &self.keys, &domain(app)).map_err(|e| format!("app {app}: {e}"))?;
        let tcp = format!("tcp://{}:{port}", self.bind_host);
        if let Err(e) = sock.bind(&tcp) {
            // Handlers on this node still work; those elsewhere cannot reach this frontend.
            tracing::error!(
                app,
                endpoint = %tcp,
                error = %e,
                "cannot bind the handler port for relays: handlers on other nodes cannot reach this frontend (is another frontend on this host using the same handler_bind?)"
            );
        }
        Ok(ipc)
    }
}
