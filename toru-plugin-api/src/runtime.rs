//! Runs a plugin: `--metadata`, the socket, protocol 2 with the host, shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::codec::FrameCodec;
use crate::error::{PluginError, PluginResult};
use crate::kv::PluginKvStore;
use crate::license::{License, LicenseError, PublicKey};
use crate::link::Link;
use crate::plugin::ToruPlugin;
use crate::protocol::v2::{ErrorCode, Frame, Message};
use crate::protocol::{PROTOCOL_VERSION, PluginMetadata};
use crate::types::{HttpRequest, HttpResponse, PluginConfig, PluginContext};

/// Environment variable naming the socket the plugin must listen on.
pub const SOCKET_ENV: &str = "TORU_PLUGIN_SOCKET";

/// How long in-flight requests may run after SIGTERM or SIGINT.
pub const SIGNAL_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `plugin` as a program: the whole `main` of a plugin.
///
/// * `PLUGIN --metadata` prints the metadata as JSON and exits 0.
/// * `PLUGIN` listens on `$TORU_PLUGIN_SOCKET` and serves the host until it
///   sends `shutdown` or the process gets SIGTERM/SIGINT, then exits 0 after
///   in-flight requests finish.
///
/// Logs are JSON lines on stderr (see [`crate::logging`]).
pub fn run<P: ToruPlugin>(plugin: P) -> ExitCode {
    let metadata = P::metadata();
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => {}
        ["--metadata"] => return print_metadata(&metadata),
        ["--help" | "-h"] => {
            println!("{}", usage(&metadata));
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!(
                "{}: unexpected arguments {args:?}\n{}",
                metadata.id,
                usage(&metadata)
            );
            return ExitCode::from(2);
        }
    }
    crate::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        // The handlers are installed before the socket exists: the host may send
        // SIGTERM as soon as it can connect, and a signal that arrived in between
        // would kill the plugin by its default action instead of a clean exit.
        let shutdown = shutdown_signal();
        let path = socket_path(&metadata.id);
        PluginServer::bind(&path, plugin)?.serve(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (PluginError::License(_) | PluginError::NoLicense)) => {
            error!(error = %e, "plugin stopped: it requires a licence");
            ExitCode::from(EXIT_NO_LICENSE)
        }
        Err(e) => {
            error!(error = %e, "plugin stopped");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a plugin that requires a licence and has no valid one
/// (sysexits' EX_NOPERM).
pub const EXIT_NO_LICENSE: u8 = 77;

fn usage(metadata: &PluginMetadata) -> String {
    format!(
        "usage: {} [--metadata]\n  Toru plugin {:?} ({}). Started by torud, which sets {SOCKET_ENV}.",
        metadata.id, metadata.name, metadata.version
    )
}

fn print_metadata(metadata: &PluginMetadata) -> ExitCode {
    if let Err(e) = metadata.validate() {
        eprintln!("{}: {e}", metadata.id);
        return ExitCode::FAILURE;
    }
    match serde_json::to_string_pretty(metadata) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: cannot encode metadata: {e}", metadata.id);
            ExitCode::FAILURE
        }
    }
}

/// `$TORU_PLUGIN_SOCKET`, or the first host's default for plugins started by hand.
fn socket_path(id: &str) -> PathBuf {
    std::env::var_os(SOCKET_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/toru-plugins/{id}.sock")))
}

/// Installs the SIGTERM and SIGINT handlers now (from here on neither signal
/// kills the process) and returns a future that resolves at the first of them.
/// Must be called inside the runtime.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let watched = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match watched {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM: shutting down"),
                    _ = int.recv() => info!("SIGINT: shutting down"),
                }
            }
            (Err(e), _) | (_, Err(e)) => {
                warn!(error = %e, "cannot watch for SIGTERM/SIGINT; only the host can stop this plugin");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// A plugin bound to its socket, ready to serve the host.
#[derive(Debug)]
pub struct PluginServer<P> {
    listener: UnixListener,
    path: PathBuf,
    shared: Arc<Shared<P>>,
}

impl<P: ToruPlugin> PluginServer<P> {
    /// Binds `path` (mode 0600): creates its folder (0700) when missing and
    /// replaces a stale socket left there; refuses to replace anything else.
    pub fn bind(path: &Path, plugin: P) -> PluginResult<Self> {
        use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
            Ok(_) => {
                return Err(PluginError::Io(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket; not replacing it",
                        path.display()
                    ),
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        info!(socket = %path.display(), "listening");
        Ok(Self {
            listener,
            path: path.to_owned(),
            shared: Arc::new(Shared::new(plugin)),
        })
    }

    /// Answers the checker's conventions (docs/PROTOCOL.md 9.3) whatever the
    /// environment says, as under `toructl plugins check`: for a plugin's own tests
    /// that replay the scenarios of `conformance/` against it.
    #[must_use]
    pub fn answering_checker_conventions(mut self) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.checking = true;
        }
        self
    }

    /// Serves host connections until the host sends `shutdown` or `signal`
    /// resolves; then stops accepting, lets in-flight requests finish within
    /// the deadline, removes the socket and returns.
    pub async fn serve(self, signal: impl Future<Output = ()>) -> PluginResult<()> {
        let Self {
            listener,
            path,
            shared,
        } = self;
        let connections = TaskTracker::new();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(serve_connection(stream, shared.clone()));
                    }
                    Err(e) => {
                        // Typically EMFILE: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut signal => {
                    shared.stop(SIGNAL_SHUTDOWN_DEADLINE);
                    break;
                }
                () = shared.stopping.cancelled() => break,
            }
        }
        drop(listener);
        if let Err(e) = std::fs::remove_file(&path) {
            debug!(error = %e, "socket file not removed");
        }

        shared.handlers.close();
        let deadline = shared.deadline();
        if tokio::time::timeout(deadline, shared.handlers.wait())
            .await
            .is_err()
        {
            warn!(
                in_flight = shared.handlers.len(),
                ?deadline,
                "shutdown deadline passed with requests still running; exiting anyway"
            );
        }
        shared.done.cancel();
        connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), connections.wait()).await;
        match lock(&shared.fatal).take() {
            Some(e) => Err(e),
            None => {
                info!("stopped");
                Ok(())
            }
        }
    }
}

enum Slot<P> {
    Fresh(P),
    Ready(Arc<P>),
    Failed,
}

impl<P> std::fmt::Debug for Slot<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Fresh(_) => "Fresh",
            Self::Ready(_) => "Ready",
            Self::Failed => "Failed",
        })
    }
}

/// State shared by every connection of one plugin process.
#[derive(Debug)]
struct Shared<P> {
    plugin: tokio::sync::Mutex<Slot<P>>,
    kv: PluginKvStore,
    /// Every running request handler.
    handlers: TaskTracker,
    /// Cancelled when no new requests are taken.
    stopping: CancellationToken,
    /// Cancelled when in-flight requests are done: connections close.
    done: CancellationToken,
    deadline: Mutex<Duration>,
    /// Why the plugin must exit non-zero (its `init` failed).
    fatal: Mutex<Option<PluginError>>,
    /// Whether the checker's conventions are answered (`TORU_CHECK=1`).
    checking: bool,
}

impl<P: ToruPlugin> Shared<P> {
    fn new(plugin: P) -> Self {
        Self {
            plugin: tokio::sync::Mutex::new(Slot::Fresh(plugin)),
            kv: PluginKvStore::default(),
            handlers: TaskTracker::new(),
            stopping: CancellationToken::new(),
            done: CancellationToken::new(),
            deadline: Mutex::new(SIGNAL_SHUTDOWN_DEADLINE),
            fatal: Mutex::new(None),
            checking: std::env::var_os(CHECK_ENV).is_some_and(|v| v == "1"),
        }
    }

    /// Stops taking requests; the first deadline given wins.
    fn stop(&self, deadline: Duration) {
        if !self.stopping.is_cancelled() {
            *lock(&self.deadline) = deadline;
            self.stopping.cancel();
        }
    }

    fn deadline(&self) -> Duration {
        *lock(&self.deadline)
    }

    /// Runs the plugin's `init` on the first connection; later ones reuse it.
    async fn initialize(&self, ctx: PluginContext) -> PluginResult<Arc<P>> {
        let mut slot = self.plugin.lock().await;
        match std::mem::replace(&mut *slot, Slot::Failed) {
            Slot::Ready(plugin) => {
                *slot = Slot::Ready(plugin.clone());
                Ok(plugin)
            }
            Slot::Fresh(mut plugin) => {
                plugin.init(ctx).await?;
                let plugin = Arc::new(plugin);
                *slot = Slot::Ready(plugin.clone());
                Ok(plugin)
            }
            Slot::Failed => Err(PluginError::other("init failed earlier")),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The installed licence checked against the metadata's vendor key: `None` when the
/// metadata declares none, or no licence is installed.
fn check_license<P: ToruPlugin>(
    license: Option<&str>,
    instance_id: &str,
    plugin_id: &str,
) -> Option<Result<License, LicenseError>> {
    let spec = P::metadata().license?;
    let key: PublicKey = match spec.public_key.parse() {
        Ok(key) => key,
        Err(e) => return Some(Err(e)),
    };
    let text = license?;
    Some(License::verify(
        text,
        &key,
        instance_id,
        plugin_id,
        chrono::Utc::now(),
    ))
}

/// The error to stop with when the metadata requires a licence and there is no valid one.
fn refuse_without_license<P: ToruPlugin>(
    check: &Option<Result<License, LicenseError>>,
) -> Option<PluginError> {
    if !P::metadata().license.is_some_and(|spec| spec.required) {
        return None;
    }
    match check {
        Some(Ok(_)) => None,
        Some(Err(e)) => Some(PluginError::License(e.clone())),
        None => Some(PluginError::NoLicense),
    }
}

/// One host connection: `init` first, then requests until EOF or shutdown.
async fn serve_connection<P: ToruPlugin>(stream: UnixStream, shared: Arc<Shared<P>>) {
    let (read, write) = stream.into_split();
    let (link, writer) = Link::start(write);
    let mut frames = FramedRead::new(read, FrameCodec::new());
    let conn = Connection {
        link: link.clone(),
        in_flight: Arc::new(Mutex::new(HashMap::new())),
    };

    if let Some(plugin) = conn.handshake(&mut frames, &shared).await {
        let done = shared.done.cancelled();
        tokio::pin!(done);
        let mut batch = crate::link::Batch::new(&link);
        loop {
            batch.before_read(frames.read_buffer());
            let item = tokio::select! {
                biased;
                () = &mut done => break,
                item = frames.next() => item,
            };
            batch.after_read(frames.read_buffer());
            match item {
                None => {
                    debug!("host closed the connection");
                    break;
                }
                Some(Err(e)) => {
                    error!(error = %e, "unreadable stream from the host; closing the connection");
                    break;
                }
                Some(Ok(Err(bad))) => {
                    warn!(id = ?bad.id, code = %bad.code, reason = %bad.reason, "bad frame from the host");
                    conn.link.refuse(bad).await;
                }
                Some(Ok(Ok(frame))) => conn.dispatch(frame, &plugin, &shared).await,
            }
        }
    }
    conn.abort_all();
    shared.kv.disconnect(&link);
    link.close();
    let _ = writer.await;
}

#[derive(Debug)]
struct Connection {
    link: Arc<Link>,
    /// Requests of this connection still being handled, to cancel them.
    in_flight: Arc<Mutex<HashMap<u64, AbortHandle>>>,
}

type Frames = FramedRead<tokio::net::unix::OwnedReadHalf, FrameCodec>;

impl Connection {
    /// Reads `init`, initializes the plugin, answers `init_ok`.
    async fn handshake<P: ToruPlugin>(
        &self,
        frames: &mut Frames,
        shared: &Shared<P>,
    ) -> Option<Arc<P>> {
        let first = tokio::select! {
            () = shared.done.cancelled() => return None,
            first = frames.next() => first,
        };
        let (id, ctx) = match first? {
            Ok(Ok(Frame {
                message:
                    Message::Init {
                        id,
                        protocol,
                        instance_id,
                        plugin_id,
                        config,
                        limits,
                        license,
                    },
                ..
            })) => {
                debug!(protocol, %instance_id, "init from the host");
                if protocol < PROTOCOL_VERSION {
                    let reply = Message::error(
                        Some(id),
                        ErrorCode::UnexpectedMessage,
                        format!(
                            "this plugin speaks protocol {PROTOCOL_VERSION}; the host offered {protocol}"
                        ),
                    );
                    self.reply(reply).await;
                    return None;
                }
                let license_check =
                    check_license::<P>(license.as_deref(), &instance_id, &plugin_id);
                if let Some(refusal) = refuse_without_license::<P>(&license_check) {
                    error!(error = %refusal, "not serving");
                    let reply =
                        Message::error(Some(id), ErrorCode::InitFailed, refusal.to_string());
                    self.reply(reply).await;
                    *lock(&shared.fatal) = Some(refusal);
                    shared.stop(Duration::ZERO);
                    return None;
                }
                if let Some(Err(e)) = &license_check {
                    warn!(error = %e, "the installed licence is not valid; serving without one");
                }
                shared.kv.connect(self.link.clone());
                let ctx = PluginContext {
                    instance_id,
                    plugin_id,
                    config: PluginConfig::new(config),
                    kv: shared.kv.clone(),
                    limits,
                    license,
                    license_check,
                };
                (id, ctx)
            }
            Ok(Ok(frame)) => {
                warn!(message = ?frame.message, "first message from the host is not init");
                let reply = Message::error(
                    frame.message.id(),
                    ErrorCode::UnexpectedMessage,
                    "the first message on a connection must be init",
                );
                self.reply(reply).await;
                return None;
            }
            Ok(Err(bad)) => {
                warn!(reason = %bad.reason, "bad first frame from the host");
                self.reply(Message::error(bad.id, bad.code, bad.reason))
                    .await;
                return None;
            }
            Err(e) => {
                error!(error = %e, "unreadable stream from the host");
                return None;
            }
        };
        match shared.initialize(ctx).await {
            Ok(plugin) => {
                let ok = Message::InitOk {
                    id,
                    protocol: PROTOCOL_VERSION,
                };
                self.reply(ok).await;
                Some(plugin)
            }
            Err(e) => {
                error!(error = %e, "init failed");
                let reply = Message::error(Some(id), ErrorCode::InitFailed, e.to_string());
                self.reply(reply).await;
                *lock(&shared.fatal) = Some(e);
                shared.stop(Duration::ZERO);
                None
            }
        }
    }

    async fn dispatch<P: ToruPlugin>(&self, frame: Frame, plugin: &Arc<P>, shared: &Shared<P>) {
        if frame.message.is_reply() {
            let (id, kind) = (frame.message.id(), frame.message.kind());
            if !self.link.answer(frame) {
                if id.is_some_and(|id| self.link.gave_up_on(id)) {
                    debug!(?id, kind, "answer to a request given up on; ignored");
                } else {
                    warn!(?id, kind, "answer to no request of ours; ignored");
                }
            }
            return;
        }
        match frame.message {
            Message::HttpRequest {
                id,
                method,
                path,
                headers,
            } => {
                if shared.stopping.is_cancelled() {
                    let reply = Message::error(
                        Some(id),
                        ErrorCode::ShuttingDown,
                        "the plugin is shutting down",
                    );
                    self.reply(reply).await;
                    return;
                }
                let request = HttpRequest {
                    method,
                    path,
                    headers,
                    body: frame.body,
                };
                self.spawn_handler(id, request, plugin.clone(), shared)
                    .await;
            }
            Message::Cancel { id } => {
                if let Some(handler) = lock(&self.in_flight).remove(&id) {
                    handler.abort();
                    debug!(id, "request cancelled by the host");
                }
            }
            Message::Ping { id } => self.reply(Message::Pong { id }).await,
            Message::Shutdown { deadline_ms } => {
                info!(deadline_ms, "shutdown requested by the host");
                shared.stop(Duration::from_millis(deadline_ms));
            }
            Message::Init { id, .. } => {
                let reply = Message::error(
                    Some(id),
                    ErrorCode::UnexpectedMessage,
                    "init was already received on this connection",
                );
                self.reply(reply).await;
            }
            other => {
                warn!(message = ?other, "message hosts do not send; refused");
                let reply = Message::error(
                    other.id(),
                    ErrorCode::UnexpectedMessage,
                    format!("{} is not a message a plugin accepts", other.kind()),
                );
                self.reply(reply).await;
            }
        }
    }

    /// Runs the handler for request `id`: polled once here, in the reader, so that
    /// one that needs no waiting is answered at once, without a task of its own; one
    /// that must wait goes on as a task, and the reader reads on.
    async fn spawn_handler<P: ToruPlugin>(
        &self,
        id: u64,
        request: HttpRequest,
        plugin: Arc<P>,
        shared: &Shared<P>,
    ) {
        if lock(&self.in_flight).contains_key(&id) {
            warn!(id, "request id already in flight; refused");
            let reply = Message::error(
                Some(id),
                ErrorCode::DuplicateId,
                format!("request id {id} is already in flight"),
            );
            self.reply(reply).await;
            return;
        }
        let link = self.link.clone();
        let map = self.in_flight.clone();
        let kv = shared.kv.clone();
        let checking = shared.checking;
        let mut work = Box::pin(async move {
            let response = match checked(checking, &kv, &request).await {
                Some(response) => response,
                None => invoke(&*plugin, request).await,
            };
            lock(&map).remove(&id);
            answer(&link, id, response).await;
        });
        let started = std::time::Instant::now();
        let ready = crate::link::finished_at_once(work.as_mut()).await;
        held_up(started.elapsed());
        if ready {
            return;
        }
        // Spawned with the table locked, so that the handler's own removal above
        // cannot run before its insertion.
        let mut in_flight = lock(&self.in_flight);
        let handle = shared.handlers.spawn(work);
        in_flight.insert(id, handle.abort_handle());
    }

    async fn reply(&self, message: Message) {
        if let Err(e) = self.link.send(&message, Bytes::new()).await {
            debug!(error = %e, "reply not sent");
        }
    }

    fn abort_all(&self) {
        for (_, handler) in lock(&self.in_flight).drain() {
            handler.abort();
        }
    }
}

/// The environment variable `toructl plugins check` sets, and torud never does: with
/// it, the SDK answers the checker's two conventions itself (docs/PROTOCOL.md 9.3).
pub const CHECK_ENV: &str = "TORU_CHECK";
/// The checker's echo: the body back, byte for byte.
const CHECK_ECHO: &str = "/.well-known/toru-check/echo";
/// The checker's storage round trip.
const CHECK_KV: &str = "/.well-known/toru-check/kv";
/// The longest `wait_ms` the echo convention honours.
const CHECK_MAX_WAIT_MS: u64 = 10_000;

/// The answer to one of the checker's conventions, when the checker runs this plugin.
async fn checked(
    checking: bool,
    kv: &PluginKvStore,
    request: &HttpRequest,
) -> Option<HttpResponse> {
    if !checking {
        return None;
    }
    match (request.method.as_str(), request.path_only()) {
        ("POST", CHECK_ECHO) => {
            // `?wait_ms=N` keeps it in flight a while, for the scenarios that need one.
            let wait = request
                .query_param("wait_ms")
                .and_then(|ms| ms.parse::<u64>().ok())
                .unwrap_or(0);
            // Not even a zero sleep without one: tokio's timer would round it up to 1 ms.
            if wait > 0 {
                tokio::time::sleep(Duration::from_millis(wait.min(CHECK_MAX_WAIT_MS))).await;
            }
            Some(HttpResponse::bytes(
                "application/octet-stream",
                request.body.clone(),
            ))
        }
        ("POST", CHECK_KV) => Some(match check_kv(kv, &request.body).await {
            Ok(value) => HttpResponse::bytes("application/octet-stream", value),
            Err(e) => HttpResponse::error(500, e.to_string()),
        }),
        _ => None,
    }
}

/// Sets `toru-check` to `body`, reads it back, lists it, deletes a scratch key.
async fn check_kv(kv: &PluginKvStore, body: &Bytes) -> PluginResult<Bytes> {
    kv.set("toru-check", body).await?;
    kv.set("toru-check/scratch", b"x").await?;
    let value = kv.get_bytes("toru-check").await?.unwrap_or_default();
    let keys = kv.list("toru-check").await?;
    if !keys.iter().any(|k| k == "toru-check") {
        return Err(PluginError::other("kv_list did not list the key just set"));
    }
    if !kv.delete("toru-check/scratch").await? {
        return Err(PluginError::other(
            "kv_delete did not find the key just set",
        ));
    }
    if kv.get_bytes("toru-check/scratch").await?.is_some() {
        return Err(PluginError::other("a deleted key is still there"));
    }
    if kv.set("", b"x").await.is_ok() {
        return Err(PluginError::other("an empty key was accepted"));
    }
    Ok(value)
}

/// How long a handler may compute before its first `.await` without a warning: that
/// time holds up every other request and ping of the connection.
const HOLD_UP_WARNING: Duration = Duration::from_millis(20);

/// Warns (once per process) when a handler's first poll held the reader up.
fn held_up(took: Duration) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if took > HOLD_UP_WARNING && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        warn!(
            took_ms = took.as_millis() as u64,
            "a request handler computed for this long before its first .await, holding up the \
             connection's other requests: move long computations to tokio::task::spawn_blocking"
        );
    }
}

/// Sends `response` as the answer to request `id`; one too large for a frame is
/// answered 500 instead.
async fn answer(link: &Link, id: u64, response: HttpResponse) {
    let message = Message::HttpResponse {
        id,
        status: response.status,
        headers: response.headers,
    };
    let sent = match link.send(&message, response.body).await {
        Err(PluginError::TooLarge { len, max }) => {
            error!(
                id,
                len, max, "response too large for one frame; answering 500"
            );
            let too_large = HttpResponse::error(
                500,
                format!("the plugin's response of {len} bytes exceeds the {max}-byte frame limit"),
            );
            let message = Message::HttpResponse {
                id,
                status: too_large.status,
                headers: too_large.headers,
            };
            link.send(&message, too_large.body).await
        }
        other => other,
    };
    if let Err(e) = sent {
        warn!(id, error = %e, "response not sent");
    }
}

/// Runs the handler; errors and panics become error responses.
async fn invoke<P: ToruPlugin>(plugin: &P, request: HttpRequest) -> HttpResponse {
    let response = match AssertUnwindSafe(plugin.handle_http(request))
        .catch_unwind()
        .await
    {
        Ok(Ok(response)) => response,
        Ok(Err(PluginError::Http { status, message })) => HttpResponse::error(status, message),
        Ok(Err(e)) => {
            error!(error = %e, "request failed");
            HttpResponse::error(500, e.to_string())
        }
        Err(_) => {
            // The panic hook has logged the message and location.
            HttpResponse::error(500, "the plugin's request handler panicked")
        }
    };
    if http::StatusCode::from_u16(response.status).is_err() {
        error!(
            status = response.status,
            "handler answered with an invalid status"
        );
        return HttpResponse::error(500, "the plugin answered with an invalid status");
    }
    response
}
