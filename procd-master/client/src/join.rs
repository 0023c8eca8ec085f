//! What a worker or a frontend needs to join the cluster and come back: its saved credentials
//! and patience with a master that is not up yet.

use crate::ClientError;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a worker or frontend keeps in its data directory (mode 0600) once it has joined: its
/// name, its master, its own token and its bus key pair.
#[derive(Clone, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub master: String,
    pub token: String,
    /// Its CURVE key pair (z85), registered with the master when it joined.
    #[serde(default)]
    pub bus_public: String,
    #[serde(default)]
    pub bus_secret: String,
}

impl Saved {
    /// The credentials saved at `path` for `name` at `master`, if any.
    pub fn load(path: &Path, name: &str, master: &str) -> Option<Saved> {
        let bytes = std::fs::read(path).ok()?;
        let s: Saved = serde_json::from_slice(&bytes).ok()?;
        (s.name == name && s.master == master).then_some(s)
    }

    /// Writes them to `path`, readable by their owner only, atomically.
    pub fn store(&self, path: &Path) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("tmp");
        crate::write_private(&tmp, &bytes)?;
        std::fs::rename(&tmp, path)
    }
}

/// Calls `attempt` until the master answers it, waiting longer between tries while the master
/// cannot be reached (or answers 5xx). A refusal (4xx) is returned at once; `None` when
/// `shutdown` came first.
pub async fn until_answered<T, F, Fut>(
    shutdown: &CancellationToken,
    what: &str,
    mut attempt: F,
) -> Result<Option<T>, ClientError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let mut delay = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(v) => return Ok(Some(v)),
            Err(
                e @ ClientError::Api {
                    status: 400..=499, ..
                },
            ) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "cannot {what} yet; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
