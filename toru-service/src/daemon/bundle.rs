//! A plugin's front end, when the plugin does not serve one: the file
//! `<the plugin's folder>/<id>/bundle.js`, where the first Toru host read it.

use std::path::PathBuf;

use bytes::Bytes;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use toru_plugin_api::HttpResponse;

use crate::api::ApiError;
use crate::plugins::PluginHandle;

/// The largest bundle served from disk.
const MAX_BUNDLE_BYTES: u64 = 8 * 1024 * 1024;

/// Where plugin `handle`'s bundle file would be.
fn path(handle: &PluginHandle) -> Option<PathBuf> {
    Some(handle.path.parent()?.join(&handle.id).join("bundle.js"))
}

/// The bundle file as an answer, `None` when there is none; a file too large or
/// unreadable is an error that says so.
pub(super) async fn from_disk(handle: &PluginHandle) -> Result<Option<HttpResponse>, ApiError> {
    let Some(path) = path(handle) else {
        return Ok(None);
    };
    let metadata = match tokio::fs::metadata(&path).await {
        Ok(metadata) if metadata.is_file() => metadata,
        _ => return Ok(None),
    };
    if metadata.len() > MAX_BUNDLE_BYTES {
        return Err(ApiError::BadGateway(format!(
            "{} is {} bytes: larger than the {MAX_BUNDLE_BYTES} bytes a bundle may be",
            path.display(),
            metadata.len()
        )));
    }
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::BadGateway(format!("cannot read {}: {e}", path.display())))?;
    let mut answer = HttpResponse::new(200);
    answer.headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    answer.body = Bytes::from(bytes);
    Ok(Some(answer))
}
