//! Files over the API: request bodies streamed to disk with a size limit, slugs verified on
//! upload, and files streamed back.

use super::Reply;
use crate::cluster::Cluster;
use crate::error::ApiError;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// `<data>/stacks`: root file system tarballs, one per stack.
pub(super) fn stacks_dir(c: &Cluster) -> Result<std::path::PathBuf, ApiError> {
    let d = crate::stacks::dir(&c.data);
    std::fs::create_dir_all(&d).map_err(ApiError::internal)?;
    Ok(d)
}

/// A file as the answer, streamed.
pub(super) async fn file_reply(path: &std::path::Path, missing: &str) -> Result<Reply, ApiError> {
    let file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(missing.to_string()))
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let stream = tokio_util::io::ReaderStream::new(file).map_ok(Frame::data);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/octet-stream"),
    );
    Ok(Reply::Raw(r))
}

/// Streams a request body into `path`, at most `limit` bytes; on any error
/// the partial file is removed.
pub(super) async fn receive_file(
    body: &mut Incoming,
    path: &std::path::Path,
    limit: u64,
    what: &str,
) -> Result<u64, ApiError> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(ApiError::internal)?;
    let res: Result<u64, ApiError> = async {
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| ApiError::bad_request(format!("{what} interrupted: {e}")))?;
            if let Ok(data) = frame.into_data() {
                n += data.len() as u64;
                if n > limit {
                    drain(body, 2 << 30).await;
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!(
                            "the {what} is over the limit of {} MB (remove large files from the app, or raise [master] build_max_source_mb)",
                            limit >> 20
                        ),
                    ));
                }
                file.write_all(&data).await.map_err(ApiError::internal)?;
            }
        }
        file.flush().await.map_err(ApiError::internal)?;
        Ok(n)
    }
    .await;
    if res.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    res
}

/// Reads and drops up to `most` more bytes of a refused body (for at most
/// 30 s), so a client still sending reads the refusal instead of a broken
/// pipe; a larger rest is cut off. (Nothing is kept: it costs the time of
/// reading it, bounded either way.)
async fn drain(body: &mut Incoming, most: u64) {
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        let mut n = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > most {
                break;
            }
        }
    })
    .await;
}

/// Streams an uploaded slug to a temp file, then verifies and stores it.
pub(super) async fn receive_slug(
    c: &Cluster,
    sha: &str,
    mut body: Incoming,
) -> Result<zeroku_slug::SlugInfo, ApiError> {
    c.slugs
        .path(sha)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let tmp = zeroku_slug::store::upload_path(c.slugs.dir());
    receive_file(&mut body, &tmp, u64::MAX, "slug upload").await?;
    let (store, sha, tmp2) = (c.slugs.clone(), sha.to_string(), tmp.clone());
    let out = tokio::task::spawn_blocking(move || {
        zeroku_slug::verify(&tmp2, &sha)?;
        zeroku_slug::check(&tmp2)?;
        store.put_file(&tmp2, &sha)
    })
    .await
    .map_err(ApiError::internal)?;
    let _ = std::fs::remove_file(&tmp);
    out.map_err(|e| ApiError::invalid(format!("slug refused: {e}")))
}
