//! Accepting connections and driving them: one accept loop over every
//! listener, a task per connection, limits on what a client may hold, and
//! the drain at shutdown.
//!
//! ```text
//! serve ──accept (permit first)──▶ connection task ──hyper──▶ Gateway::handle
//!   │                                  ▲
//!   └─ shutdown: drop listeners, GOAWAY/close idle (graceful), wait `grace`, then cut
//! ```

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::auth::AdminToken;
use super::routes::{Gateway, Transport};
use super::session::{SessionPolicy, Sessions};
use crate::api::Backend;

/// hyper refuses an HTTP/1 read buffer smaller than this.
const MIN_BUF_SIZE: usize = 8192;

/// How long to wait before accepting again after an accept error such as
/// EMFILE: the condition rarely clears at once, and retrying at once would spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// A socket the gateway serves on, already bound and listening.
#[derive(Debug)]
pub enum Listener {
    /// Clients must present the admin token.
    Tcp(TcpListener),
    /// The socket file's owner and mode decide who may connect; no token.
    Unix(UnixListener),
}

/// Limits and timeouts of the gateway.
#[derive(Debug, Clone)]
pub(crate) struct HttpOptions {
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Largest HTTP/1 request head, and HTTP/2 header list (431 beyond).
    /// HTTP/1 cannot go below 8 KiB.
    pub max_header_bytes: usize,
    /// A client must send a whole request head within this (and its first
    /// request within this of connecting); must not be zero.
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// How long browser sessions last.
    pub sessions: SessionPolicy,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            sessions: SessionPolicy::default(),
        }
    }
}

/// One accepted connection.
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

/// Everything a connection task needs.
struct Shared<B> {
    gateway: Arc<Gateway<B>>,
    builder: auto::Builder<TokioExecutor>,
    first_request_timeout: Duration,
    /// Cancelled when the grace period is over: remaining connections are cut.
    cut: CancellationToken,
}

/// Serves the API on every listener until `shutdown` resolves to the grace
/// period in force; then stops accepting (new connections are refused), lets
/// requests in flight finish for up to that long, closes what is left and
/// returns.
///
/// Errors only when there is nothing to serve on; accept errors (such as
/// running out of file descriptors) are logged and retried.
pub(crate) async fn serve<B: Backend>(
    listeners: Vec<Listener>,
    backend: Arc<B>,
    token: Arc<AdminToken>,
    options: HttpOptions,
    shutdown: impl Future<Output = Duration> + Send,
) -> io::Result<()> {
    if listeners.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the HTTP gateway was given no listener",
        ));
    }
    let shared = Arc::new(Shared {
        gateway: Arc::new(Gateway::new(
            backend,
            token,
            Sessions::new(options.sessions),
            options.max_body_bytes,
        )),
        builder: connection_builder(&options),
        first_request_timeout: options.header_read_timeout,
        cut: CancellationToken::new(),
    });
    let permits = Arc::new(Semaphore::new(
        options.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    // Should the caller drop this future instead of resolving `shutdown`,
    // the connections must not live on unsupervised.
    let _cut_on_drop = shared.cut.clone().drop_guard();
    let graceful = GracefulShutdown::new();
    let tasks = TaskTracker::new();
    let mut shutdown = pin!(shutdown);
    let mut next = 0;

    let grace = loop {
        // The permit comes first: while every connection is taken, clients
        // wait in the kernel's backlog instead of being accepted and ignored.
        let permit = tokio::select! {
            biased;
            grace = &mut shutdown => break grace,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Only if closed, and nothing closes it.
                Err(_) => break Duration::ZERO,
            },
        };
        let accepted = tokio::select! {
            biased;
            grace = &mut shutdown => break grace,
            accepted = accept(&listeners, &mut next) => accepted,
        };
        match accepted {
            Ok(Accepted::Tcp(stream)) => {
                // Answers are small and written whole; do not let Nagle delay them.
                let _ = stream.set_nodelay(true);
                let watcher = graceful.watcher();
                tasks.spawn(connection(
                    Arc::clone(&shared),
                    stream,
                    Transport::Tcp,
                    watcher,
                    permit,
                ));
            }
            Ok(Accepted::Unix(stream)) => {
                let watcher = graceful.watcher();
                tasks.spawn(connection(
                    Arc::clone(&shared),
                    stream,
                    Transport::Unix,
                    watcher,
                    permit,
                ));
            }
            Err(e) if is_connection_error(&e) => {
                tracing::debug!(error = %e, "a connection failed before it was accepted");
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                tokio::select! {
                    grace = &mut shutdown => break grace,
                    () = tokio::time::sleep(ACCEPT_ERROR_PAUSE) => {}
                }
            }
        }
    };

    // Closing the listening sockets makes new clients fail at once rather
    // than hang in a backlog nobody reads.
    drop(listeners);
    tracing::info!(connections = graceful.count(), "HTTP gateway draining");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?grace,
            "requests still in flight after the grace period; closing their connections"
        );
        shared.cut.cancel();
    }
    tasks.close();
    tasks.wait().await;
    tracing::info!("HTTP gateway stopped");
    Ok(())
}

/// The hyper connection settings from `options`.
fn connection_builder(options: &HttpOptions) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Slowloris: a head must arrive whole in time, and hyper answers 431
        // itself when it does not fit the buffer.
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(options.max_header_bytes.max(MIN_BUF_SIZE));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(options.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The next connection on any listener, taking them in turn so a busy one
/// cannot starve the others.
async fn accept(listeners: &[Listener], next: &mut usize) -> io::Result<Accepted> {
    poll_fn(|cx| {
        let count = listeners.len();
        for offset in 0..count {
            let index = (*next + offset) % count;
            let polled = match &listeners[index] {
                Listener::Tcp(l) => l.poll_accept(cx).map_ok(|(s, _)| Accepted::Tcp(s)),
                Listener::Unix(l) => l.poll_accept(cx).map_ok(|(s, _)| Accepted::Unix(s)),
            };
            if polled.is_ready() {
                *next = index + 1;
                return polled;
            }
        }
        Poll::Pending
    })
    .await
}

/// Errors that concern one connection, not the listener: no pause needed.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Serves one connection until it closes, goes idle before its first
/// request, or is cut at the end of the grace period. Holds `permit` until then.
async fn connection<B, S>(
    shared: Arc<Shared<B>>,
    stream: S,
    transport: Transport,
    watcher: Watcher,
    permit: OwnedSemaphorePermit,
) where
    B: Backend,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _permit = permit;
    let requested = Arc::new(Notify::new());
    let service = {
        let gateway = Arc::clone(&shared.gateway);
        let requested = Arc::clone(&requested);
        service_fn(move |request| {
            requested.notify_one();
            Arc::clone(&gateway).handle(transport, request)
        })
    };
    let conn = watcher.watch(
        shared
            .builder
            .serve_connection(TokioIo::new(stream), service),
    );
    // hyper's header timeout starts once HTTP/1 is detected; a client that
    // sends nothing at all (or half an HTTP/2 preface) is caught here instead.
    let first_request = async {
        if tokio::time::timeout(shared.first_request_timeout, requested.notified())
            .await
            .is_ok()
        {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = conn => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        () = first_request => tracing::debug!("closing a connection that sent no request in time"),
        () = shared.cut.cancelled() => tracing::debug!("closing a connection at the end of the grace period"),
    }
}
