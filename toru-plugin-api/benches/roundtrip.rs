//! Protocol-2 round trips between a host and an SDK plugin over one Unix socket.
//!
//! What is measured: how many `http_request` → `http_response` round trips
//! per second a [`HostConnection`] (the host's end, as `torud` uses it) gets
//! from a plugin served by [`PluginServer`], all on ONE connection, for
//! request and response bodies of 100 bytes and 64 KiB, with 1 and 64
//! requests in flight.
//!
//! Setup:
//!
//! * the plugin echoes the request body back as the response body;
//! * it is served on a socket in a temporary folder by [`PluginServer`], on a
//!   multi-thread tokio runtime of its own, on a std thread of its own: host
//!   and plugin share no runtime, as if they were two processes;
//! * the host side runs on another multi-thread tokio runtime; its KV backend
//!   refuses every call (KV is not exercised here);
//! * for `iters` round trips, `inflight` tasks are spawned on the host
//!   runtime, each making its share of the calls one after another on the
//!   shared connection, so `inflight` requests are outstanding at any time;
//!   the time measured runs from the first spawn to the last task's end.
//!
//! Each round trip counts as one element (`Throughput::Elements(1)`), so
//! criterion's `thrpt` line is round trips per second, and its `time` line is
//! the mean time per round trip (at `inflight=1`, the latency of one round
//! trip; at `inflight=64`, the inverse of the throughput).
//!
//! Benchmark ids are `roundtrip/body=<size>/inflight=<n>`.
//!
//! Run all of it (under two minutes):
//!
//! ```text
//! cargo bench -p toru-plugin-api --bench roundtrip
//! ```
//!
//! A single case: `cargo bench -p toru-plugin-api --bench roundtrip -- 'body=64KiB/inflight=64'`;
//! only check that it works: `cargo bench -p toru-plugin-api --bench roundtrip -- --test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use toru_plugin_api::host::{HostConnection, InitParams, KvBackend, KvFailure, KvReply, KvRequest};
use toru_plugin_api::protocol::v2::ErrorCode;
use toru_plugin_api::{
    HttpRequest, HttpResponse, PluginMetadata, PluginResult, PluginServer, ToruPlugin,
};

/// Body sizes, with the name used in benchmark ids.
const BODIES: [(usize, &str); 2] = [(100, "100B"), (64 * 1024, "64KiB")];
/// Requests kept in flight on the one connection.
const INFLIGHT: [usize; 2] = [1, 64];
/// Per-request timeout; never reached unless something is broken.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers every request with its own body.
#[derive(Debug)]
struct Echo;

impl ToruPlugin for Echo {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("bench-echo", "Echo", "1.0.0", "/echo")
    }

    async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
        Ok(HttpResponse::bytes("application/octet-stream", req.body))
    }
}

/// A KV backend that refuses everything: the echo plugin never calls it.
#[derive(Debug)]
struct NoKv;

impl KvBackend for NoKv {
    async fn call(&self, _request: KvRequest) -> Result<KvReply, KvFailure> {
        Err(KvFailure::new(
            ErrorCode::Storage,
            "no KV in the round-trip benchmark",
        ))
    }
}

/// The echo plugin served on its own runtime, on its own thread.
#[derive(Debug)]
struct PluginThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PluginThread {
    /// Binds `path` and serves it; returns once the socket accepts connections.
    fn start(path: PathBuf) -> Self {
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("plugin".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("plugin-worker")
                    .build()
                    .expect("plugin runtime");
                runtime.block_on(async move {
                    let server = PluginServer::bind(&path, Echo).expect("bind the plugin socket");
                    bound_tx.send(()).expect("bench thread is waiting");
                    server
                        .serve(async {
                            // A dropped sender also stops the plugin.
                            let _ = stop_rx.await;
                        })
                        .await
                        .expect("plugin stopped with an error");
                });
            })
            .expect("spawn the plugin thread");
        bound_rx
            .recv()
            .expect("the plugin thread died before binding");
        Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Triggers `serve`'s shutdown future and waits for the thread to end.
    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
            && !std::thread::panicking()
        {
            panic!("the plugin thread panicked");
        }
    }
}

impl Drop for PluginThread {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn connect(path: &Path) -> HostConnection {
    let stream = UnixStream::connect(path)
        .await
        .expect("connect to the plugin");
    let init = InitParams {
        instance_id: "00000000-0000-0000-0000-000000000000".into(),
        plugin_id: "bench-echo".into(),
        ..InitParams::default()
    };
    HostConnection::connect(stream, init, Arc::new(NoKv), Duration::from_secs(10))
        .await
        .expect("init the plugin")
}

/// One round trip; checks the echo came back whole.
async fn round_trip(conn: &HostConnection, request: HttpRequest) {
    let len = request.body.len();
    let response = conn.http(request, CALL_TIMEOUT).await.expect("round trip");
    assert_eq!(response.status, 200);
    assert_eq!(response.body.len(), len);
}

/// `iters` round trips with `inflight` of them outstanding at any time:
/// `inflight` tasks, each making its share of the calls in sequence.
async fn run(
    conn: &Arc<HostConnection>,
    request: &HttpRequest,
    iters: u64,
    inflight: usize,
) -> Duration {
    let tasks = inflight as u64;
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            // Spread `iters` as evenly as possible; some tasks may get none.
            let share = iters / tasks + u64::from(task < iters % tasks);
            let conn = conn.clone();
            let request = request.clone();
            tokio::spawn(async move {
                for _ in 0..share {
                    round_trip(&conn, request.clone()).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a client task panicked");
    }
    start.elapsed()
}

fn roundtrip(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("echo.sock");
    let plugin = PluginThread::start(path.clone());

    let host = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("host-worker")
        .build()
        .expect("host runtime");
    let conn = Arc::new(host.block_on(connect(&path)));
    check_echo(&host, &conn);

    let mut group = c.benchmark_group("roundtrip");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (size, size_name) in BODIES {
        let body = Bytes::from(vec![b'x'; size]);
        let mut request = HttpRequest::new("POST", "/echo");
        request.body = body;
        for inflight in INFLIGHT {
            let id = BenchmarkId::new(format!("body={size_name}"), format!("inflight={inflight}"));
            group.bench_with_input(id, &inflight, |b, &inflight| {
                b.to_async(&host)
                    .iter_custom(|iters| run(&conn, &request, iters, inflight));
            });
        }
    }
    group.finish();

    // Clean shutdown: the connection first (the plugin sees EOF), then the
    // plugin's `serve`, then the runtimes and the socket's folder.
    let conn = Arc::into_inner(conn).expect("no client task holds the connection");
    drop(conn);
    plugin.stop();
    host.shutdown_timeout(Duration::from_secs(5));
    drop(dir);
}

/// Before measuring anything: the echo comes back byte for byte, at every size.
fn check_echo(host: &Runtime, conn: &HostConnection) {
    host.block_on(async {
        for (size, _) in BODIES {
            let body: Bytes = (0..size).map(|i| (i % 251) as u8).collect();
            let mut request = HttpRequest::new("POST", "/echo");
            request.body = body.clone();
            let response = conn.http(request, CALL_TIMEOUT).await.expect("echo");
            assert_eq!(response.status, 200);
            assert_eq!(response.body, body, "echo of {size} bytes differs");
        }
    });
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
