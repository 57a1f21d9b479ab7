//! The `licensed` example as a real process, driven as torud drives it:
//! with a licence of its vendor's (test) key it serves; without one, or
//! with another key's or an expired one, it refuses in `init` and exits 77.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use toru_plugin_api::host::{HostConnection, InitParams, MemoryKv};
use toru_plugin_api::license::Claims;
use toru_plugin_api::license::vendor::SecretKey;
use toru_plugin_api::{EXIT_NO_LICENSE, HttpRequest, PluginMetadata};

const LICENSED: &str = env!("CARGO_BIN_EXE_licensed");
const LONG: Duration = Duration::from_secs(20);
const INSTANCE: &str = "7d444840-9dc0-11d1-b245-5ffdce74fad2";

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
        let socket = dir.path().join("licensed.sock");
        let child = Command::new(LICENSED)
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

    async fn connect(&self, license: Option<String>) -> Result<HostConnection, String> {
        let stream = wait_for_socket(&self.socket).await;
        let init = InitParams {
            instance_id: INSTANCE.into(),
            plugin_id: "licensed".into(),
            license,
            ..InitParams::default()
        };
        HostConnection::connect(stream, init, Arc::new(MemoryKv::default()), LONG)
            .await
            .map_err(|e| e.to_string())
    }

    /// Waits for exit: (code, stderr).
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

fn test_key() -> SecretKey {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("test-keys/vendor.key"))
            .unwrap();
    SecretKey::from_text(&text).unwrap()
}

fn licence(key: &SecretKey, expires: Option<&str>) -> String {
    key.sign(&Claims {
        plugin: "licensed".into(),
        instance: INSTANCE.into(),
        licensee: Some("ACME Ltd".into()),
        issued_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        expires: expires.map(|d| d.parse().unwrap()),
        extra: serde_json::Map::new(),
    })
    .unwrap()
}

#[test]
fn metadata_requires_a_licence_of_the_test_key() {
    let output = Command::new(LICENSED).arg("--metadata").output().unwrap();
    assert!(output.status.success());
    let metadata: PluginMetadata = serde_json::from_slice(&output.stdout).unwrap();
    metadata.validate().unwrap();
    let spec = metadata.license.unwrap();
    assert!(spec.required);
    assert_eq!(spec.public_key, test_key().public().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_valid_licence_it_serves() {
    let plugin = Plugin::start();
    let host = plugin
        .connect(Some(licence(&test_key(), None)))
        .await
        .unwrap();
    let answer = host.http(HttpRequest::new("GET", "/"), LONG).await.unwrap();
    assert_eq!(answer.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(json["licensee"], "ACME Ltd");
    assert_eq!(json["expires"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_one_it_refuses_and_exits_77() {
    let other = SecretKey::generate().unwrap();
    let cases = [
        (None, "requires a licence, and none is installed"),
        (Some(licence(&other, None)), "signature"),
        (Some(licence(&test_key(), Some("2026-01-31"))), "expired"),
        (Some("rubbish".to_owned()), "not a Toru licence"),
    ];
    for (license, reason) in cases {
        let plugin = Plugin::start();
        let refused = plugin.connect(license.clone()).await.err().unwrap();
        assert!(refused.contains(reason), "{license:?}: {refused}");
        let (code, stderr) = plugin.wait();
        assert_eq!(code, Some(i32::from(EXIT_NO_LICENSE)), "{stderr}");
        assert!(stderr.contains(reason), "{license:?}: {stderr}");
    }
}
