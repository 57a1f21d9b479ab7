//! Talking to a running plugin: protocol 2 over its one multiplexed
//! connection, protocol 1 with a connection per message as the legacy
//! plugins require.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;
use toru_plugin_api::host::HostConnection;
use toru_plugin_api::protocol::v1::{self, HttpPayload, LifecycleInitPayload};
use toru_plugin_api::protocol::v2::ErrorCode;
use toru_plugin_api::{HttpRequest, HttpResponse, PluginError, PluginProtocol};

use super::error::ForwardError;

/// How torud reaches one running plugin.
#[derive(Debug)]
pub(crate) enum PluginLink {
    /// Protocol 2: one connection, many requests in flight.
    V2(HostConnection),
    /// Protocol 1: a new connection for every request.
    V1(LegacyLink),
}

impl PluginLink {
    /// Forwards one request; the answer, or why there is none.
    pub(crate) async fn forward(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, ForwardError> {
        match self {
            Self::V2(connection) => connection
                .http(request, timeout)
                .await
                .map_err(|e| match e {
                    PluginError::Timeout(t) => ForwardError::Timeout(t),
                    e @ PluginError::Remote {
                        code: ErrorCode::ShuttingDown,
                        ..
                    } => ForwardError::Stopping(e),
                    PluginError::TooLarge { len, .. } => ForwardError::TooLarge(len),
                    PluginError::NotConnected => ForwardError::Closed,
                    other => ForwardError::Exchange(other),
                }),
            // Boxed: its connection and buffers would make the future of every
            // protocol-2 request (moved at each level it is awaited through) larger.
            Self::V1(legacy) => Box::pin(legacy.forward(request, timeout)).await,
        }
    }
}

/// A protocol-1 plugin's socket.
///
/// Legacy plugins serve one connection at a time, and their listen backlog
/// is small: more connections than that fail with `EAGAIN`. So torud sends
/// them one request at a time and queues the rest itself, within each
/// request's timeout.
#[derive(Debug, Clone)]
pub(crate) struct LegacyLink {
    socket: PathBuf,
    turn: Arc<Semaphore>,
}

impl LegacyLink {
    /// Sends `init` on a connection of its own, as the first host did.
    pub(crate) async fn init(
        socket: &Path,
        instance_id: &str,
        timeout: Duration,
    ) -> Result<Self, PluginError> {
        let payload = LifecycleInitPayload {
            instance_id: instance_id.to_owned(),
            plugin_socket: socket.display().to_string(),
            // Legacy plugins may open this to write: give them nowhere to fill.
            log_path: "/dev/null".to_owned(),
        };
        let send = async {
            let stream = UnixStream::connect(socket).await?;
            let mut protocol = PluginProtocol::new(stream);
            protocol.write_message(&v1::Message::init(payload)).await
        };
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| PluginError::Timeout(timeout))??;
        Ok(Self {
            socket: socket.to_owned(),
            turn: Arc::new(Semaphore::new(1)),
        })
    }

    /// Sends `shutdown` on a connection of its own; the plugin exits at once.
    pub(crate) async fn shutdown(&self) {
        let send = async {
            let stream = UnixStream::connect(&self.socket).await?;
            PluginProtocol::new(stream)
                .write_message(&v1::Message::shutdown())
                .await
        };
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(2), send).await {
            tracing::debug!(error = %e, "shutdown not delivered");
        }
    }

    /// One request on one connection, never pipelined.
    async fn forward(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> Result<HttpResponse, ForwardError> {
        let body = match request.body.is_empty() {
            true => None,
            false => {
                Some(String::from_utf8(request.body.to_vec()).map_err(|_| ForwardError::TextOnly)?)
            }
        };
        let payload = HttpPayload {
            method: request.method,
            path: request.path,
            headers: flatten(&request.headers),
            body,
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let message = v1::Message::http_request(request_id.clone(), payload);
        let exchange = async {
            let _turn = self
                .turn
                .acquire()
                .await
                .map_err(|_| ForwardError::Closed)?;
            let stream = UnixStream::connect(&self.socket)
                .await
                .map_err(ForwardError::Connect)?;
            let mut protocol = PluginProtocol::new(stream);
            protocol
                .write_message(&message)
                .await
                .map_err(ForwardError::Exchange)?;
            match protocol.read_http_response().await {
                Ok(Some((_, response))) => Ok(response),
                Ok(None) => Err(ForwardError::InvalidAnswer(
                    "nothing: it closed the connection".into(),
                )),
                Err(e) => Err(ForwardError::Exchange(e)),
            }
        };
        let response = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ForwardError::Timeout(timeout))??;
        let mut headers = HeaderMap::new();
        for (name, value) in &response.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        Ok(HttpResponse {
            status: response.status,
            headers,
            body: response.body.unwrap_or_default().into(),
        })
    }
}

/// Protocol 1 has one value per header: repeated ones are joined with ", ".
fn flatten(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut flat: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        flat.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    flat
}
