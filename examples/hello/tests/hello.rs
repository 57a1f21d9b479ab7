//! The `hello` example plugin as a real process: `--metadata`, its socket,
//! every route through the host side of protocol 2, logs, and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use toru_plugin_api::host::{HostConnection, InitParams, MemoryKv};
use toru_plugin_api::{HttpRequest, PluginMetadata};

const HELLO: &str = env!("CARGO_BIN_EXE_hello");
const LONG: Duration = Duration::from_secs(20);
const INSTANCE: &str = "7d444840-9dc0-11d1-b245-5ffdce74fad2";

/// The plugin process; killed when dropped so a failed test leaves nothing.
struct Plugin {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Plugin {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run").join("hello.sock");
        let child = Command::new(HELLO)
            .env("TORU_PLUGIN_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    async fn connect(&self, kv: Arc<MemoryKv>) -> HostConnection {
        let stream = wait_for_socket(&self.socket).await;
        let init = InitParams {
            instance_id: INSTANCE.into(),
            plugin_id: "hello".into(),
            ..InitParams::default()
        };
        HostConnection::connect(stream, init, kv, LONG)
            .await
            .unwrap()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit and returns (exit code, stderr).
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + LONG;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                use std::io::Read;
                self.child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut stderr)
                    .unwrap();
                return (status.code(), stderr);
            }
            assert!(Instant::now() < deadline, "plugin did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Readiness as the host sees it: the socket accepts.
async fn wait_for_socket(path: &Path) -> tokio::net::UnixStream {
    let deadline = Instant::now() + LONG;
    loop {
        match tokio::net::UnixStream::connect(path).await {
            Ok(stream) => return stream,
            Err(e) if Instant::now() > deadline => panic!("socket never accepted: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn request(method: &str, path: &str, body: impl Into<Bytes>) -> HttpRequest {
    let mut request = HttpRequest::new(method, path);
    request.body = body.into();
    request
}

#[test]
fn metadata_declares_protocol_2() {
    let output = Command::new(HELLO).arg("--metadata").output().unwrap();
    assert!(output.status.success());
    let metadata: PluginMetadata = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(metadata.id, "hello");
    assert_eq!(metadata.route, "/hello");
    assert_eq!(metadata.protocol, Some(2));
    metadata.validate().unwrap();
}

#[test]
fn unknown_arguments_are_a_usage_error() {
    let output = Command::new(HELLO).arg("--bogus").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_through_the_host() {
    let plugin = Plugin::start();
    let kv = Arc::new(MemoryKv::default());
    let host = plugin.connect(kv.clone()).await;

    let mode = std::fs::metadata(&plugin.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    let root = host.http(request("GET", "/", ""), LONG).await.unwrap();
    assert_eq!(root.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&root.body).unwrap();
    assert_eq!(json["instance_id"], INSTANCE);

    // Binary echo, byte for byte, up to a megabyte.
    let body: Bytes = (0..1024 * 1024)
        .map(|i| (i * 7 % 256) as u8)
        .collect::<Vec<_>>()
        .into();
    let echo = host
        .http(request("POST", "/echo", body.clone()), LONG)
        .await
        .unwrap();
    assert_eq!(echo.status, 200);
    assert!(echo.body == body, "echo differs");

    // KV through the host.
    let put = host
        .http(request("PUT", "/kv/colour", "blue\0green"), LONG)
        .await
        .unwrap();
    assert_eq!(put.status, 204);
    assert_eq!(
        kv.snapshot().get("colour").map(|v| v.as_ref()),
        Some(&b"blue\0green"[..])
    );
    let got = host
        .http(request("GET", "/kv/colour", ""), LONG)
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.body),
        (200, Bytes::from_static(b"blue\0green"))
    );
    let missing = host
        .http(request("GET", "/kv/nothing", ""), LONG)
        .await
        .unwrap();
    assert_eq!(missing.status, 404);

    let bundle = host
        .http(request("GET", "/bundle.js", ""), LONG)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&bundle.body).contains("window.ToruPlugins"));
    assert_eq!(bundle.headers["content-type"], "application/javascript");

    let bad = host
        .http(request("GET", "/slow?ms=abc", ""), LONG)
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
    let unknown = host.http(request("GET", "/nope", ""), LONG).await.unwrap();
    assert_eq!(unknown.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_requests_run_concurrently() {
    let plugin = Plugin::start();
    let host = Arc::new(plugin.connect(Arc::default()).await);
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.http(request("GET", "/slow?ms=500", ""), LONG).await })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, 200);
    }
    // Ten in a row would take 5 s.
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_0_leaving_no_socket() {
    let plugin = Plugin::start();
    let host = Arc::new(plugin.connect(Arc::default()).await);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { host.http(request("GET", "/slow?ms=400", ""), LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    plugin.signal("TERM");
    assert_eq!(slow.await.unwrap().unwrap().status, 200);
    let socket = plugin.socket.clone();
    let (code, stderr) = plugin.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!socket.exists());
    // Every log line is one JSON object with a level.
    let lines: Vec<_> = stderr.lines().collect();
    assert!(lines.iter().any(|l| l.contains("SIGTERM")), "{stderr}");
    for line in lines {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(entry["level"].is_string(), "{line}");
    }
}

#[tokio::test]
async fn the_shutdown_message_exits_0() {
    let plugin = Plugin::start();
    let host = plugin.connect(Arc::default()).await;
    host.shutdown(Duration::from_secs(5)).await.unwrap();
    // The plugin closes the connection as it exits.
    tokio::time::timeout(LONG, host.closed()).await.unwrap();
    let (code, stderr) = plugin.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("shutdown requested by the host"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("hello.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let mut child = Command::new(HELLO)
        .env("TORU_PLUGIN_SOCKET", &socket)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stream = tokio::time::timeout(LONG, wait_for_socket(&socket)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(stream.is_ok());
}

#[tokio::test]
async fn the_log_route_writes_one_line_at_the_level_asked() {
    let plugin = Plugin::start();
    let host = plugin.connect(Arc::default()).await;
    for (query, status) in [
        ("level=warn&msg=disk%20low", 204),
        ("level=plain&msg=no%20level%20here", 204),
        ("level=loud&msg=x", 400),
    ] {
        let answer = host
            .http(request("GET", &format!("/log?{query}"), ""), LONG)
            .await
            .unwrap();
        assert_eq!(answer.status, status, "{query}");
    }
    host.shutdown(Duration::from_secs(5)).await.unwrap();
    tokio::time::timeout(LONG, host.closed()).await.unwrap();
    let (code, stderr) = plugin.wait();
    assert_eq!(code, Some(0), "{stderr}");
    let warn = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|entry| entry["message"] == "disk low")
        .unwrap_or_else(|| panic!("no JSON line for the warning: {stderr}"));
    assert_eq!(warn["level"], "WARN");
    assert!(stderr.lines().any(|l| l == "no level here"), "{stderr}");
}
