//! Turns values and [`ApiError`](crate::api::ApiError)s into responses. Every
//! error the gateway answers goes through [`error`](crate::http::respond::error), so each one
//! has a JSON body and the status
//! [`ApiError::status`](crate::api::ApiError::status) gives it.

use bytes::Bytes;
use http::header::{
    ALLOW, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{Either, Full, StreamBody};
use hyper::body::Frame;
use serde::Serialize;
use tokio_util::io::ReaderStream;

use crate::api::ApiError;

/// The body of every response the gateway sends: in memory, but for a file
/// read as it is sent (a store backup).
pub(crate) type Body = Either<Full<Bytes>, StreamBody<FileFrames>>;

/// A file's bytes as body frames.
pub(crate) type FileFrames =
    futures_util::stream::MapOk<ReaderStream<tokio::fs::File>, fn(Bytes) -> Frame<Bytes>>;

/// An in-memory body.
pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Either::Left(Full::new(bytes.into()))
}

/// 200 with the whole of `file` (read from its start) as `filename`.
pub(crate) fn file(file: std::fs::File, filename: &str) -> Response<Body> {
    use futures_util::TryStreamExt;
    let length = file.metadata().map(|m| m.len()).ok();
    let frames: FileFrames =
        ReaderStream::new(tokio::fs::File::from_std(file)).map_ok(Frame::data as fn(_) -> _);
    let mut response = Response::new(Either::Right(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(length) = length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
    {
        headers.insert(CONTENT_DISPOSITION, disposition);
    }
    response
}

/// `Content-Type` of the API's own answers.
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// `Content-Type` of the Prometheus text exposition format.
const PROMETHEUS: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");

/// 200 with `value` as JSON.
pub(crate) fn ok<T: Serialize + ?Sized>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => bytes(StatusCode::OK, JSON, body),
        Err(e) => error(&ApiError::Internal(format!(
            "the answer could not be encoded as JSON: {e}"
        ))),
    }
}

/// 200 with the metrics text.
pub(crate) fn metrics(text: String) -> Response<Body> {
    bytes(StatusCode::OK, PROMETHEUS, text)
}

/// `err` as `{"error": "..."}` with its status, plus the headers its status
/// calls for: `Allow` on 405, `Retry-After` on 503 when known,
/// `WWW-Authenticate` on 401.
pub(crate) fn error(err: &ApiError) -> Response<Body> {
    let status = err.status();
    if status.is_server_error() {
        tracing::debug!(%status, error = %err, "API error");
    }
    let body = serde_json::json!({ "error": err.to_string() });
    // Encoding a map of one string cannot fail; the fallback only avoids a panic path.
    let body = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"error\"}".to_vec());
    let mut response = bytes(status, JSON, body);
    let headers = response.headers_mut();
    match err {
        ApiError::MethodNotAllowed(allow) => {
            if let Ok(allow) = HeaderValue::from_str(allow) {
                headers.insert(ALLOW, allow);
            }
        }
        ApiError::Unavailable {
            retry_after: Some(wait),
            ..
        } => {
            // Whole seconds, rounded up so a client never retries too early.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        ApiError::Unauthorized | ApiError::WrongToken => {
            // RFC 9110 §15.5.2: a 401 names the scheme that would work.
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        ApiError::TooManyRequests(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        _ => {}
    }
    response
}

/// A response with `status`, `content_type` and `body`.
fn bytes(status: StatusCode, content_type: HeaderValue, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, content_type);
    response
}
