//! Round trips per second over one Unix socket between the host side of protocol 2
//! (`HostConnection`, as torud has it) and a plugin *process* on either SDK, so the
//! Python SDK and the Rust SDK are measured the same way in the same run.
//!
//! `sdkroundtrip [--body BYTES] SECONDS PLUGIN...`: starts each plugin executable as the checker does
//! (`TORU_PLUGIN_SOCKET`, `TORU_CHECK=1`, so that it answers the echo convention of
//! docs/PROTOCOL.md 9.3 by itself: no routing of the plugin's own is measured), connects
//! as the host, and for SECONDS each sends `POST /.well-known/toru-check/echo` with a
//! body of BYTES (default 100), with 1 and then 64 requests in flight, checking every answer. Prints
//! one JSON line per plugin and depth: `{"plugin", "in_flight", "round_trips",
//! "seconds", "round_trips_per_s", "latency_us"}` (the mean time
//! one request waits for its answer).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UnixStream;
use toru_plugin_api::HttpRequest;
use toru_plugin_api::host::{HostConnection, InitParams, MemoryKv};

type BoxError = Box<dyn Error + Send + Sync>;

const ECHO: &str = "/.well-known/toru-check/echo";
const TIMEOUT: Duration = Duration::from_secs(10);

/// The plugin process; killed when dropped.
struct Plugin {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
    socket: PathBuf,
}

async fn start(path: &Path) -> Result<Plugin, BoxError> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("bench.sock");
    // Run from its own folder, as torud runs plugins: by absolute path.
    let path = std::fs::canonicalize(path)?;
    let child = tokio::process::Command::new(&path)
        .env("TORU_PLUGIN_SOCKET", &socket)
        .env("TORU_PLUGIN_ID", "bench")
        .env("TORU_INSTANCE_ID", "00000000-0000-4000-8000-0000000b3e4c")
        .env("TORU_CHECK", "1")
        .env("TORU_LOG_LEVEL", "error")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let started = Instant::now();
    while UnixStream::connect(&socket).await.is_err() {
        if started.elapsed() > TIMEOUT {
            return Err(format!("{}: no socket within {TIMEOUT:?}", path.display()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Plugin {
        child,
        _dir: dir,
        socket,
    })
}

/// `in_flight` loops sending one request after another for `seconds`; the count.
async fn run(
    host: Arc<HostConnection>,
    in_flight: usize,
    seconds: f64,
    size: usize,
) -> Result<u64, BoxError> {
    let body = Bytes::from(vec![b'x'; size]);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..in_flight)
        .map(|_| {
            let (host, body, done, stop) = (host.clone(), body.clone(), done.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let mut request = HttpRequest::new("POST", ECHO);
                    request.body = body.clone();
                    let answer = host.http(request, TIMEOUT).await?;
                    if answer.status != 200 || answer.body != body {
                        return Err::<(), BoxError>(
                            format!(
                                "a wrong answer: {} with {} bytes",
                                answer.status,
                                answer.body.len()
                            )
                            .into(),
                        );
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let usage = "usage: sdkroundtrip [--body BYTES] SECONDS PLUGIN...";
    let mut args = std::env::args().skip(1).peekable();
    let mut size = 100;
    if args.peek().is_some_and(|a| a == "--body") {
        args.next();
        size = args.next().ok_or(usage)?.parse()?;
    }
    let seconds: f64 = args.next().ok_or(usage)?.parse()?;
    for path in args.map(PathBuf::from) {
        let mut plugin = start(&path).await?;
        let stream = UnixStream::connect(&plugin.socket).await?;
        let init = InitParams {
            instance_id: "00000000-0000-4000-8000-0000000b3e4c".into(),
            plugin_id: "bench".into(),
            ..InitParams::default()
        };
        let host = Arc::new(
            HostConnection::connect(stream, init, Arc::new(MemoryKv::default()), TIMEOUT).await?,
        );
        // Warm up: the first requests pay for imports and allocations.
        run(host.clone(), 8, 0.5, size).await?;
        for in_flight in [1, 64] {
            let started = Instant::now();
            let n = run(host.clone(), in_flight, seconds, size).await?;
            let took = started.elapsed().as_secs_f64();
            let rate = n as f64 / took;
            println!(
                "{}",
                serde_json::json!({
                    "plugin": path.display().to_string(),
                    "in_flight": in_flight,
                    "body": size,
                    "round_trips": n,
                    "seconds": (took * 100.0).round() / 100.0,
                    "round_trips_per_s": rate.round() as u64,
                    "latency_us": ((in_flight as f64 * 1e6 / rate) * 10.0).round() / 10.0,
                })
            );
        }
        let _ = host.shutdown(Duration::from_secs(5)).await;
        let _ = tokio::time::timeout(Duration::from_secs(6), plugin.child.wait()).await;
    }
    Ok(())
}
