//! Request bodies, read whole but never beyond the configured limit.
//!
//! A refused body is drained (up to [`LINGER_BYTES`] and [`LINGER_TIME`])
//! before the 413 goes out, as nginx's lingering close does: a client still
//! writing its body would otherwise see the connection reset instead of
//! reading the answer.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_LENGTH;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::api::ApiError;

/// Reads `body` into memory; 413 when it is, or announces to be, longer than
/// `limit` bytes.
pub(crate) async fn read(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    // Refuse an announced oversize body before reading a byte of it.
    let announced = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|len| len > limit as u64) {
        linger(body).await;
        return Err(ApiError::PayloadTooLarge(limit));
    }
    // Chunked bodies (and HTTP/2 bodies without content-length) are
    // refused as soon as they pass the limit.
    let mut body = body;
    // A body that arrives in one piece is passed on as it is; pieces are
    // gathered into one buffer, sized from Content-Length when announced
    // (bounded by `limit` above) rather than grown by doubling.
    let mut first: Option<Bytes> = None;
    let mut collected: Vec<u8> = Vec::new();
    let announced = announced.and_then(|len| usize::try_from(len).ok());
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::BadRequest(format!("could not read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let have = first.as_ref().map_or(0, Bytes::len) + collected.len();
        if have + data.len() > limit {
            linger(body).await;
            return Err(ApiError::PayloadTooLarge(limit));
        }
        if have == 0 {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            collected.reserve_exact(announced.unwrap_or(0).max(first.len() + data.len()));
            collected.extend_from_slice(&first);
        }
        collected.extend_from_slice(&data);
    }
    Ok(first.unwrap_or_else(|| Bytes::from(collected)))
}

/// Most bytes of a refused body read and thrown away before answering.
pub(crate) const LINGER_BYTES: u64 = 64 * 1024 * 1024;
/// Longest time spent doing so.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// Reads and discards what is left of `body`, within the linger bounds;
/// a client sending more than that is cut off (its connection closes).
async fn linger(mut body: Incoming) {
    let drain = async {
        let mut seen = 0u64;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
