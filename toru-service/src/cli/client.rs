//! A small HTTP/1.1 client for torud's API: over the admin Unix socket
//! (no token: the socket's mode is the access control), or over TCP with
//! the admin token as `Authorization: Bearer`. One connection per request.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::error::CliError;

/// How long one request may take; torud answers in far less, but a
/// restart waits for the plugin to stop.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// An `http://host[:port]` base URL, as `--url` accepts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Port (80 when the URL has none).
    pub port: u16,
    /// `host:port` as written, for the `Host` header.
    pub authority: String,
}

impl std::fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// Parses `--url`: `http://` scheme, a host, an optional port, no path.
pub(crate) fn parse_url(text: &str) -> Result<BaseUrl, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => return Err(format!("scheme {other:?} is not supported; use http://")),
        None => return Err("expected http://HOST:PORT".into()),
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("expected http://HOST:PORT without a path".into());
    }
    let authority = uri.authority().ok_or("expected http://HOST:PORT")?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    Ok(BaseUrl {
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_owned(),
    })
}

/// Where torud is.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// The admin Unix socket.
    Unix(PathBuf),
    /// A TCP listener; the token is read from `token_file` when needed.
    Tcp {
        /// The base URL.
        url: BaseUrl,
        /// The admin token file.
        token_file: PathBuf,
    },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp { url, .. } => write!(f, "{url}"),
        }
    }
}

/// Talks to one torud.
#[derive(Debug)]
pub(crate) struct Client {
    target: Target,
}

impl Client {
    /// A client for `target`; nothing is connected or read yet.
    pub(crate) fn new(target: Target) -> Self {
        Self { target }
    }

    /// `GET path`, the answer's JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.request(Method::GET, path, None).await
    }

    /// `PUT path` with `text` as the body (`text/plain`), the answer's JSON.
    pub(crate) async fn put_text(&self, path: &str, text: &str) -> Result<Value, CliError> {
        let body = (Bytes::from(text.to_owned()), "text/plain; charset=utf-8");
        self.request(Method::PUT, path, Some(body)).await
    }

    /// `DELETE path`, the answer's JSON.
    pub(crate) async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.request(Method::DELETE, path, None).await
    }

    /// `POST path` with `body` as JSON (or no body), the answer's JSON.
    pub(crate) async fn post(&self, path: &str, body: Option<&Value>) -> Result<Value, CliError> {
        let body = body.map(|value| (Bytes::from(value.to_string()), "application/json"));
        self.request(Method::POST, path, body).await
    }

    /// One request with `body` and its content type, the answer's JSON.
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Value, CliError> {
        let exchange = async {
            let response = self.open(method, path, body).await?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.broken(&e))?
                .to_bytes();
            Ok::<_, CliError>((status, body))
        };
        let (status, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| self.unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))??;
        self.interpret(status, &body)
    }

    /// `GET path`, its body written to `out` as it arrives; the bytes written. An error
    /// answer is the error it carries.
    pub(crate) async fn download(
        &self,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
    ) -> Result<u64, CliError> {
        use tokio::io::AsyncWriteExt;
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.open(Method::GET, path, None))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))??;
        let status = response.status();
        let mut body = response.into_body();
        if !status.is_success() {
            let body = body
                .collect()
                .await
                .map_err(|e| self.broken(&e))?
                .to_bytes();
            return self.interpret(status, &body).map(|_| 0);
        }
        let mut written = 0u64;
        // A stall between two pieces is bounded, not the whole transfer.
        while let Some(frame) = tokio::time::timeout(REQUEST_TIMEOUT, body.frame())
            .await
            .map_err(|_| self.unreachable(format!("nothing came for {REQUEST_TIMEOUT:?}")))?
        {
            let frame = frame.map_err(|e| self.broken(&e))?;
            if let Ok(data) = frame.into_data() {
                out.write_all(&data)
                    .await
                    .map_err(|e| CliError::Failed(format!("cannot write: {e}")))?;
                written += data.len() as u64;
            }
        }
        out.flush()
            .await
            .map_err(|e| CliError::Failed(format!("cannot write: {e}")))?;
        Ok(written)
    }

    /// Connects (an unreachable torud is the news, not the token), sends, and returns the
    /// answer's head with its body still to be read.
    async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<http::Response<hyper::body::Incoming>, CliError> {
        match &self.target {
            Target::Unix(socket) => {
                let stream = tokio::net::UnixStream::connect(socket)
                    .await
                    .map_err(|e| self.connect_error(&e))?;
                self.send(stream, self.build(method, path, body)?).await
            }
            Target::Tcp { url, .. } => {
                let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
                    .await
                    .map_err(|e| self.connect_error(&e))?;
                self.send(stream, self.build(method, path, body)?).await
            }
        }
    }

    /// The request, with the token when it goes over TCP.
    fn build(
        &self,
        method: Method,
        path: &str,
        body: Option<(Bytes, &'static str)>,
    ) -> Result<Request<Full<Bytes>>, CliError> {
        let mut builder = Request::builder().method(method).uri(path);
        builder = match &self.target {
            Target::Unix(_) => builder.header(http::header::HOST, "localhost"),
            Target::Tcp { url, token_file } => builder
                .header(http::header::HOST, url.authority.as_str())
                .header(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", read_token(token_file)?),
                ),
        };
        let body = match body {
            Some((bytes, kind)) => {
                builder = builder.header(http::header::CONTENT_TYPE, kind);
                bytes
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(body))
            .map_err(|e| CliError::Failed(format!("cannot build the request: {e}")))
    }

    /// One request on a fresh connection; the connection ends with the answer.
    async fn send<S>(
        &self,
        stream: S,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, CliError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.broken(&e))?;
        // The connection is driven beside the request; it ends once the answer is read.
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|e| self.broken(&e))
    }

    fn broken(&self, e: &hyper::Error) -> CliError {
        self.unreachable(format!("the connection broke: {e}"))
    }

    /// The JSON of a 2xx answer, or the error it carries.
    fn interpret(&self, status: StatusCode, body: &[u8]) -> Result<Value, CliError> {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        if status.is_success() {
            return json.ok_or_else(|| {
                CliError::Failed(format!(
                    "torud answered {status} with a body that is not JSON"
                ))
            });
        }
        let message = json
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_str)
            .map_or_else(|| format!("torud answered {status}"), str::to_owned);
        match (&self.target, status) {
            (Target::Tcp { url, token_file }, StatusCode::UNAUTHORIZED) => {
                Err(CliError::TokenRefused {
                    url: url.to_string(),
                    token_file: token_file.clone(),
                    message,
                })
            }
            _ => Err(CliError::Failed(message)),
        }
    }

    fn connect_error(&self, error: &std::io::Error) -> CliError {
        match (&self.target, error.kind()) {
            (Target::Unix(path), ErrorKind::PermissionDenied) => {
                CliError::SocketPermission(path.clone())
            }
            (Target::Unix(_), ErrorKind::ConnectionRefused) => {
                self.unreachable(format!("{error} (a stale socket: nobody listens on it)"))
            }
            _ => self.unreachable(error.to_string()),
        }
    }

    fn unreachable(&self, reason: String) -> CliError {
        CliError::Unreachable {
            target: self.target.to_string(),
            reason,
        }
    }
}

/// The token in `path`, trimmed.
fn read_token(path: &Path) -> Result<String, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => {
            Err(CliError::TokenPermission(path.to_owned()))
        }
        Err(e) => Err(CliError::Failed(format!(
            "cannot read the admin token {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = parse_url("http://127.0.0.1:7070").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 7070));
        assert_eq!(url.to_string(), "http://127.0.0.1:7070");
        let url = parse_url("http://[::1]:8080/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 8080));
        assert_eq!(parse_url("http://toru.example").unwrap().port, 80);
        assert!(parse_url("https://h:1").unwrap_err().contains("https"));
        assert!(parse_url("h:1").is_err());
        assert!(parse_url("http://h:1/api").unwrap_err().contains("path"));
    }
}
