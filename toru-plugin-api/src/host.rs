//! The host's end of a protocol-2 connection: used by `torud`, and by tests
//! and benchmarks that stand in for it.
//!
//! [`HostConnection::connect`] sends `init` and waits for `init_ok`; then any
//! number of tasks may call [`HostConnection::http`] at once on the one
//! connection. KV calls from the plugin are checked against the [`Limits`]
//! and handed to a [`KvBackend`], each on a task of its own.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::net::UnixStream;
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use tracing::{debug, warn};

use crate::codec::FrameCodec;
use crate::error::{PluginError, PluginResult};
use crate::link::Link;
use crate::protocol::PROTOCOL_VERSION;
use crate::protocol::v2::{ErrorCode, Frame, Limits, Message};
use crate::types::{HttpRequest, HttpResponse};

/// What the host tells a plugin in `init`.
#[derive(Debug, Clone, Default)]
pub struct InitParams {
    /// The host's instance id.
    pub instance_id: String,
    /// The plugin's id.
    pub plugin_id: String,
    /// The plugin's settings.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Limits the host enforces.
    pub limits: Limits,
    /// The licence line installed for the plugin, if any.
    pub license: Option<String>,
}

/// A KV call from a plugin, already checked against the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvRequest {
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
    /// Write a key durably.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: String,
    },
    /// A page of keys.
    List {
        /// Keys starting with this.
        prefix: String,
        /// Keys strictly after this.
        after: Option<String>,
        /// At most this many (1 to `max_list_keys`).
        limit: u32,
    },
}

/// The backend's answer to a [`KvRequest`] of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvReply {
    /// For `Get`: the value, or `None` when unset.
    Value(Option<Bytes>),
    /// For `Set`: committed.
    Stored,
    /// For `Delete`: whether the key existed.
    Deleted(bool),
    /// For `List`: one page.
    Keys {
        /// Keys in byte order.
        keys: Vec<String>,
        /// Cursor for the next page, `None` on the last.
        next: Option<String>,
    },
}

/// A KV call that failed; sent to the plugin as an `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct KvFailure {
    /// The code sent on the wire.
    pub code: ErrorCode,
    /// What went wrong.
    pub message: String,
}

impl KvFailure {
    /// A failure with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Where a plugin's KV calls go. Every call concerns the one plugin this
/// connection belongs to: the backend scopes keys by that plugin's id.
pub trait KvBackend: Send + Sync + 'static {
    /// Carries out one call.
    fn call(&self, request: KvRequest) -> impl Future<Output = Result<KvReply, KvFailure>> + Send;
}

/// A [`KvBackend`] in memory, for testing plugins without a host and for
/// tools; `torud` keeps plugin data in its database instead.
#[derive(Debug, Default)]
pub struct MemoryKv {
    data: Mutex<std::collections::BTreeMap<String, Bytes>>,
}

impl MemoryKv {
    /// A copy of everything stored.
    pub fn snapshot(&self) -> std::collections::BTreeMap<String, Bytes> {
        self.data
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stores `value` under `key` directly.
    pub fn insert(&self, key: impl Into<String>, value: impl Into<Bytes>) {
        self.data
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.into(), value.into());
    }
}

impl KvBackend for MemoryKv {
    async fn call(&self, request: KvRequest) -> Result<KvReply, KvFailure> {
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(match request {
            KvRequest::Get { key } => KvReply::Value(data.get(&key).cloned()),
            KvRequest::Set { key, value } => {
                data.insert(key, value);
                KvReply::Stored
            }
            KvRequest::Delete { key } => KvReply::Deleted(data.remove(&key).is_some()),
            KvRequest::List {
                prefix,
                after,
                limit,
            } => {
                use std::ops::Bound;
                let start = match &after {
                    Some(after) if after.as_str() >= prefix.as_str() => {
                        Bound::Excluded(after.clone())
                    }
                    _ => Bound::Included(prefix.clone()),
                };
                let mut keys: Vec<String> = data
                    .range((start, Bound::Unbounded))
                    .map(|(k, _)| k)
                    .take_while(|k| k.starts_with(&prefix))
                    .take(limit as usize + 1)
                    .cloned()
                    .collect();
                let next = if keys.len() > limit as usize {
                    keys.truncate(limit as usize);
                    keys.last().cloned()
                } else {
                    None
                };
                KvReply::Keys { keys, next }
            }
        })
    }
}

/// The host's end of one plugin's connection.
#[derive(Debug)]
pub struct HostConnection {
    link: Arc<Link>,
    reader: JoinHandle<()>,
    /// What was last wrong with the plugin's frames, for [`HostConnection::trouble`].
    trouble: Arc<Mutex<Option<String>>>,
}

impl Drop for HostConnection {
    fn drop(&mut self) {
        self.link.close();
        self.reader.abort();
    }
}

impl HostConnection {
    /// Sends `init` on `stream` and waits up to `timeout` for `init_ok`.
    pub async fn connect<K: KvBackend>(
        stream: UnixStream,
        init: InitParams,
        kv: Arc<K>,
        timeout: Duration,
    ) -> PluginResult<Self> {
        let (read, write) = stream.into_split();
        let (link, _writer) = Link::start(write);
        let limits = init.limits;
        let trouble = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read_loop(
            FramedRead::new(read, FrameCodec::new()),
            link.clone(),
            kv,
            limits,
            trouble.clone(),
        ));
        let connection = Self {
            link,
            reader,
            trouble,
        };
        let InitParams {
            instance_id,
            plugin_id,
            config,
            limits,
            license,
        } = init;
        let init = |id| Message::Init {
            id,
            protocol: PROTOCOL_VERSION,
            instance_id,
            plugin_id,
            config,
            limits,
            license,
        };
        let answer = connection
            .link
            .call(init, Bytes::new(), timeout, None)
            .await?;
        match answer.message {
            Message::InitOk { protocol, .. } if protocol == PROTOCOL_VERSION => {
                debug!(protocol, "plugin initialized");
                Ok(connection)
            }
            Message::InitOk { protocol, .. } => Err(PluginError::Protocol(format!(
                "plugin answered init for protocol {protocol}; this host speaks {PROTOCOL_VERSION}"
            ))),
            other => Err(PluginError::Protocol(format!(
                "plugin answered init with {}",
                other.kind()
            ))),
        }
    }

    /// Forwards one request and waits up to `timeout` for the answer. On
    /// timeout, or if this future is dropped, the plugin is sent `cancel`.
    /// [`PluginError::NotConnected`] as soon as the connection breaks.
    pub async fn http(
        &self,
        request: HttpRequest,
        timeout: Duration,
    ) -> PluginResult<HttpResponse> {
        let HttpRequest {
            method,
            path,
            headers,
            body,
        } = request;
        let build = |id| Message::HttpRequest {
            id,
            method,
            path,
            headers,
        };
        let cancel: fn(u64) -> Message = |id| Message::Cancel { id };
        let answer = self.link.call(build, body, timeout, Some(cancel)).await?;
        match answer.message {
            Message::HttpResponse { status, .. } if !(100..=999).contains(&status) => Err(
                PluginError::Protocol(format!("plugin answered with invalid HTTP status {status}")),
            ),
            Message::HttpResponse {
                status, headers, ..
            } => Ok(HttpResponse {
                status,
                headers,
                body: answer.body,
            }),
            other => Err(PluginError::Protocol(format!(
                "plugin answered http_request with {}",
                other.kind()
            ))),
        }
    }

    /// Round trip of a `ping`, answered by the plugin's reader even while its
    /// handlers are busy: a timeout here means the plugin is hung.
    pub async fn ping(&self, timeout: Duration) -> PluginResult<Duration> {
        let start = Instant::now();
        let answer = self
            .link
            .call(|id| Message::Ping { id }, Bytes::new(), timeout, None)
            .await?;
        match answer.message {
            Message::Pong { .. } => Ok(start.elapsed()),
            other => Err(PluginError::Protocol(format!(
                "plugin answered ping with {}",
                other.kind()
            ))),
        }
    }

    /// Asks the plugin to finish in-flight requests within `deadline` and exit.
    pub async fn shutdown(&self, deadline: Duration) -> PluginResult<()> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        self.link
            .send(&Message::Shutdown { deadline_ms }, Bytes::new())
            .await
    }

    /// What was last wrong with the plugin's side of the stream, if anything: a
    /// frame that could not be read (answered `bad_message`), or why the stream was
    /// given up (a length over 16 MiB, bytes that are no frame). For reports that
    /// say why a call failed.
    pub fn trouble(&self) -> Option<String> {
        self.trouble
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// True once the connection is broken or closed.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Resolves when the connection is broken or closed.
    pub async fn closed(&self) {
        self.link.closed().await;
    }
}

async fn read_loop<K: KvBackend>(
    mut frames: FramedRead<tokio::net::unix::OwnedReadHalf, FrameCodec>,
    link: Arc<Link>,
    kv: Arc<K>,
    limits: Limits,
    trouble: Arc<Mutex<Option<String>>>,
) {
    let note = |what: String| {
        *trouble.lock().unwrap_or_else(PoisonError::into_inner) = Some(what);
    };
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let closed = link.closed();
    tokio::pin!(closed);
    let mut batch = crate::link::Batch::new(&link);
    loop {
        batch.before_read(frames.read_buffer());
        let item = tokio::select! {
            () = &mut closed => break,
            item = frames.next() => item,
        };
        batch.after_read(frames.read_buffer());
        match item {
            None => {
                debug!("plugin closed the connection");
                break;
            }
            Some(Err(e)) => {
                warn!(error = %e, "unreadable stream from the plugin; closing the connection");
                note(format!(
                    "the plugin's stream was unreadable ({e}); the host closed the connection"
                ));
                break;
            }
            Some(Ok(Err(bad))) => {
                warn!(id = ?bad.id, code = %bad.code, reason = %bad.reason, "bad frame from the plugin");
                note(format!(
                    "the plugin sent a frame that could not be read: {}",
                    bad.reason
                ));
                link.refuse(bad).await;
            }
            Some(Ok(Ok(frame))) => {
                if frame.message.is_reply() {
                    let (id, kind) = (frame.message.id(), frame.message.kind());
                    if !link.answer(frame) {
                        if id.is_some_and(|id| link.gave_up_on(id)) {
                            // It crossed our cancel, or came after the timeout.
                            debug!(?id, kind, "answer to a request given up on; ignored");
                        } else {
                            warn!(?id, kind, "answer to no pending request; ignored");
                        }
                    }
                    continue;
                }
                let id = frame.message.id();
                match incoming(frame, &limits) {
                    Ok(Incoming::Kv(id, request)) => {
                        spawn_kv(id, request, &link, &kv, &in_flight).await;
                    }
                    Ok(Incoming::Ping(id)) => {
                        send(&link, Message::Pong { id }, Bytes::new()).await;
                    }
                    Ok(Incoming::Nothing) => {}
                    Err(failure) => {
                        debug!(?id, %failure, "plugin message refused");
                        let reply = Message::error(id, failure.code, failure.message);
                        send(&link, reply, Bytes::new()).await;
                    }
                }
            }
        }
    }
    link.close();
}

/// A request from the plugin, checked.
enum Incoming {
    Kv(u64, KvRequest),
    Ping(u64),
    Nothing,
}

/// Turns a plugin's request into a checked [`Incoming`].
fn incoming(frame: Frame, limits: &Limits) -> Result<Incoming, KvFailure> {
    let Frame { message, body } = frame;
    let request = match message {
        Message::Ping { id } => return Ok(Incoming::Ping(id)),
        // A plugin giving up on its own KV call: the call is short and
        // cannot be stopped halfway, so there is nothing to do.
        Message::Cancel { .. } => return Ok(Incoming::Nothing),
        Message::KvGet { id, key } => (
            id,
            KvRequest::Get {
                key: check_key(key, limits)?,
            },
        ),
        Message::KvSet { id, key } => {
            let key = check_key(key, limits)?;
            if body.len() > limits.max_value_len as usize {
                return Err(KvFailure::new(
                    ErrorCode::TooLarge,
                    format!(
                        "value of {} bytes exceeds the limit of {} bytes",
                        body.len(),
                        limits.max_value_len
                    ),
                ));
            }
            (id, KvRequest::Set { key, value: body })
        }
        Message::KvDelete { id, key } => (
            id,
            KvRequest::Delete {
                key: check_key(key, limits)?,
            },
        ),
        Message::KvList {
            id,
            prefix,
            after,
            limit,
        } => {
            if prefix.len() > limits.max_key_len as usize {
                return Err(KvFailure::new(
                    ErrorCode::InvalidKey,
                    "prefix is longer than a key may be",
                ));
            }
            let limit = match limit {
                Some(0) => {
                    return Err(KvFailure::new(
                        ErrorCode::BadMessage,
                        "limit must be at least 1",
                    ));
                }
                Some(n) => n.min(limits.max_list_keys),
                None => limits.max_list_keys,
            };
            (
                id,
                KvRequest::List {
                    prefix,
                    after,
                    limit,
                },
            )
        }
        other => {
            return Err(KvFailure::new(
                ErrorCode::UnexpectedMessage,
                format!("{} is not a message a host accepts", other.kind()),
            ));
        }
    };
    Ok(Incoming::Kv(request.0, request.1))
}

/// Checks a KV key: 1 to `max_key_len` bytes of UTF-8 without control
/// characters. The host applies it to every KV call; admin tools should too.
pub fn validate_key(key: &str, limits: &Limits) -> Result<(), KvFailure> {
    check_key(key.to_owned(), limits).map(drop)
}

/// A key is 1 to `max_key_len` bytes of UTF-8 without control characters.
fn check_key(key: String, limits: &Limits) -> Result<String, KvFailure> {
    if key.is_empty() {
        return Err(KvFailure::new(ErrorCode::InvalidKey, "key is empty"));
    }
    if key.len() > limits.max_key_len as usize {
        return Err(KvFailure::new(
            ErrorCode::InvalidKey,
            format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                limits.max_key_len
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(KvFailure::new(
            ErrorCode::InvalidKey,
            "key holds control characters",
        ));
    }
    Ok(key)
}

async fn spawn_kv<K: KvBackend>(
    id: u64,
    request: KvRequest,
    link: &Arc<Link>,
    kv: &Arc<K>,
    in_flight: &Arc<Mutex<HashSet<u64>>>,
) {
    let fresh = in_flight
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id);
    if !fresh {
        let reply = Message::error(
            Some(id),
            ErrorCode::DuplicateId,
            format!("request id {id} is already in flight"),
        );
        send(link, reply, Bytes::new()).await;
        return;
    }
    let (link, kv, in_flight) = (link.clone(), kv.clone(), in_flight.clone());
    let mut work = Box::pin(async move {
        let (message, body) = match kv.call(request).await {
            Ok(KvReply::Value(Some(value))) => (Message::KvValue { id, found: true }, value),
            Ok(KvReply::Value(None)) => (Message::KvValue { id, found: false }, Bytes::new()),
            Ok(KvReply::Stored) => (Message::KvOk { id }, Bytes::new()),
            Ok(KvReply::Deleted(existed)) => (Message::KvDeleted { id, existed }, Bytes::new()),
            Ok(KvReply::Keys { keys, next }) => (Message::KvKeys { id, keys, next }, Bytes::new()),
            Err(failure) => (
                Message::error(Some(id), failure.code, failure.message),
                Bytes::new(),
            ),
        };
        in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        send(&link, message, body).await;
    });
    // Polled once here, in the reader: a call the backend answers at once (a read
    // from its cache) costs no task; one that waits (a commit) gets a task of its own.
    if !crate::link::finished_at_once(work.as_mut()).await {
        tokio::spawn(work);
    }
}

async fn send(link: &Link, message: Message, body: Bytes) {
    if let Err(e) = link.send(&message, body).await {
        debug!(error = %e, "message to the plugin not sent");
    }
}

/// A plugin of this process served on a private socket and connected as the host
/// connects to it, with an in-memory store: for a plugin's own tests.
///
/// ```no_run
/// # use toru_plugin_api::{HttpRequest, HttpResponse, PluginMetadata, PluginResult, ToruPlugin};
/// # struct Shout;
/// # impl ToruPlugin for Shout {
/// #     fn metadata() -> PluginMetadata { PluginMetadata::new("shout", "Shout", "0.1.0", "/shout") }
/// #     async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
/// #         Ok(HttpResponse::text(req.body_text()?.to_uppercase()))
/// #     }
/// # }
/// # async fn test() -> toru_plugin_api::PluginResult<()> {
/// let host = toru_plugin_api::host::TestHost::start(Shout).await?;
/// let answer = host.post("/", "hi").await?;
/// assert_eq!(answer.body, "HI");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestHost {
    connection: HostConnection,
    kv: Arc<MemoryKv>,
    server: JoinHandle<PluginResult<()>>,
    dir: std::path::PathBuf,
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.server.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How long a [`TestHost`] waits for the plugin's answers.
const TEST_TIMEOUT: Duration = Duration::from_secs(10);

impl TestHost {
    /// Serves `plugin` and connects to it with [`InitParams::default`] (the plugin id
    /// from its metadata).
    pub async fn start<P: crate::ToruPlugin>(plugin: P) -> PluginResult<Self> {
        let init = InitParams {
            plugin_id: P::metadata().id,
            instance_id: "00000000-0000-4000-8000-000000000000".to_owned(),
            ..InitParams::default()
        };
        Self::start_with(plugin, init).await
    }

    /// Serves `plugin` and connects to it with `init` (its config, its licence, ...).
    pub async fn start_with<P: crate::ToruPlugin>(
        plugin: P,
        init: InitParams,
    ) -> PluginResult<Self> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("toru-test-host-{}-{n}", std::process::id()));
        let socket = dir.join("plugin.sock");
        let server = crate::PluginServer::bind(&socket, plugin)?;
        let server = tokio::spawn(server.serve(std::future::pending()));
        let kv = Arc::new(MemoryKv::default());
        let stream = UnixStream::connect(&socket).await?;
        let connection = HostConnection::connect(stream, init, kv.clone(), TEST_TIMEOUT).await?;
        Ok(Self {
            connection,
            kv,
            server,
            dir,
        })
    }

    /// Sends `request` as the host forwards one (its path below the plugin's route).
    pub async fn request(&self, request: HttpRequest) -> PluginResult<HttpResponse> {
        self.connection.http(request, TEST_TIMEOUT).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> PluginResult<HttpResponse> {
        self.request(HttpRequest::new("GET", path)).await
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> PluginResult<HttpResponse> {
        let mut request = HttpRequest::new("POST", path);
        request.body = body.into();
        self.request(request).await
    }

    /// What the plugin has stored.
    pub fn kv(&self) -> &MemoryKv {
        &self.kv
    }
}
