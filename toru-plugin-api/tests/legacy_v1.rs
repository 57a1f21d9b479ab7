#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Protocol 1 as deployed: the recorded wire vectors, byte-exact host messages, and the
//! Python example plugin (`examples/python/hello_v1.py`) end to end over a Unix socket.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::net::UnixStream;
use toru_plugin_api::compat::{
    HttpPayload, HttpResponsePayload, KvOp, LifecyclePayload, Message, MessageType,
    decode_http_response,
};
use toru_plugin_api::{LifecycleInitPayload, MessagePayload, PluginMetadata, PluginProtocol};

const INIT: &[u8] = include_bytes!("data/v1/init.core.json");
const SHUTDOWN: &[u8] = include_bytes!("data/v1/shutdown.core.json");
const HTTP_REQUEST: &[u8] = include_bytes!("data/v1/http-request.core.json");
const HTTP_REQUEST_NOBODY: &[u8] = include_bytes!("data/v1/http-request-nobody.core.json");
const RESPONSE_PLAIN: &[u8] = include_bytes!("data/v1/http-response-plain.plugin.json");
const RESPONSE_PLAIN_NOBODY: &[u8] =
    include_bytes!("data/v1/http-response-plain-nobody.plugin.json");
const RESPONSE_WRAPPED: &[u8] = include_bytes!("data/v1/http-response-wrapped.plugin.json");
const RESPONSE_WRAPPED_GET: &[u8] = include_bytes!("data/v1/http-response-wrapped-get.plugin.json");
const METADATA: &[u8] = include_bytes!("data/v1/metadata.plugin.json");
const METADATA_NOAUTHOR: &[u8] = include_bytes!("data/v1/metadata-noauthor.plugin.json");

/// The request id every HTTP vector carries.
const REQUEST_ID: &str = "5f1c2d3e-9a8b-4c7d-8e6f-0a1b2c3d4e5f";

fn timestamp_of(vector: &[u8]) -> DateTime<Utc> {
    let value: Value = serde_json::from_slice(vector).unwrap();
    let raw = value["timestamp"].as_str().expect("vector has a timestamp");
    DateTime::parse_from_rfc3339(raw)
        .unwrap()
        .with_timezone(&Utc)
}

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn init_payload() -> LifecycleInitPayload {
    LifecycleInitPayload {
        instance_id: "550e8400-e29b-41d4-a716-446655440000".to_owned(),
        plugin_socket: "/run/toru/plugins/hello.sock".to_owned(),
        log_path: "/var/log/toru/plugins/hello.log".to_owned(),
    }
}

fn post_restart() -> HttpPayload {
    HttpPayload {
        method: "POST".to_owned(),
        path: "/services/nginx/restart?force=1".to_owned(),
        headers: headers(&[
            ("user-agent", "curl/8.5.0"),
            ("content-type", "application/json"),
        ]),
        body: Some(r#"{"reason":"deploy"}"#.to_owned()),
    }
}

fn get_root() -> HttpPayload {
    HttpPayload {
        method: "GET".to_owned(),
        path: "/".to_owned(),
        headers: BTreeMap::new(),
        body: None,
    }
}

// ---------------------------------------------------------------------------
// Vectors parse
// ---------------------------------------------------------------------------

#[test]
fn init_vector_parses() {
    let m: Message = serde_json::from_slice(INIT).unwrap();
    assert_eq!(m.message_type, MessageType::Lifecycle);
    assert_eq!(m.request_id, None);
    assert_eq!(m.timestamp, Some(timestamp_of(INIT)));
    assert_eq!(
        m.payload,
        MessagePayload::Lifecycle(LifecyclePayload::Init(init_payload()))
    );
}

#[test]
fn shutdown_vector_parses() {
    let m: Message = serde_json::from_slice(SHUTDOWN).unwrap();
    assert_eq!(m.message_type, MessageType::Lifecycle);
    assert_eq!(m.request_id, None);
    assert_eq!(
        m.payload,
        MessagePayload::Lifecycle(LifecyclePayload::Shutdown)
    );
}

#[test]
fn http_request_vectors_parse() {
    for (vector, expected) in [
        (HTTP_REQUEST, post_restart()),
        (HTTP_REQUEST_NOBODY, get_root()),
    ] {
        let m: Message = serde_json::from_slice(vector).unwrap();
        assert_eq!(m.message_type, MessageType::Http);
        assert_eq!(m.request_id.as_deref(), Some(REQUEST_ID));
        assert_eq!(m.timestamp, Some(timestamp_of(vector)));
        assert_eq!(
            m.payload,
            MessagePayload::Http {
                request_id: REQUEST_ID.to_owned(),
                payload: expected,
            }
        );
    }
}

#[test]
fn metadata_vectors_parse_as_protocol_1() {
    let m: PluginMetadata = serde_json::from_slice(METADATA).unwrap();
    assert_eq!(m.id, "systemd-services");
    assert_eq!(m.author.as_deref(), Some("ToruAI"));
    assert_eq!(m.route, "/systemd-services");
    assert_eq!(m.protocol, None);
    assert_eq!(m.protocol_version(), 1);
    m.validate().unwrap();

    let m: PluginMetadata = serde_json::from_slice(METADATA_NOAUTHOR).unwrap();
    assert_eq!(m.id, "hello-plugin-python");
    assert_eq!(m.author, None);
    assert_eq!(m.icon, "🐍");
    assert_eq!(m.protocol_version(), 1);
    m.validate().unwrap();
}

#[test]
fn plain_response_with_body() {
    let (id, r) = decode_http_response(RESPONSE_PLAIN).unwrap();
    assert_eq!(id.as_deref(), Some(REQUEST_ID));
    assert_eq!(r.status, 200);
    assert_eq!(r.headers, headers(&[("Content-Type", "application/json")]));
    assert_eq!(
        r.body.as_deref(),
        Some(r#"{"message":"Hello from Python plugin!"}"#)
    );
}

#[test]
fn plain_response_without_body() {
    let (id, r) = decode_http_response(RESPONSE_PLAIN_NOBODY).unwrap();
    assert_eq!(id.as_deref(), Some(REQUEST_ID));
    assert_eq!(
        r,
        HttpResponsePayload {
            status: 204,
            headers: BTreeMap::new(),
            body: None,
        }
    );
}

#[test]
fn wrapped_response() {
    let (id, r) = decode_http_response(RESPONSE_WRAPPED).unwrap();
    assert_eq!(id.as_deref(), Some(REQUEST_ID));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers,
        headers(&[("Content-Type", "application/javascript")])
    );
    assert_eq!(
        r.body.as_deref(),
        Some("window.ToruPlugins=window.ToruPlugins||{};")
    );
}

#[test]
fn wrapped_get_response_with_null_inner_body() {
    let (id, r) = decode_http_response(RESPONSE_WRAPPED_GET).unwrap();
    assert_eq!(id.as_deref(), Some(REQUEST_ID));
    assert_eq!(r.status, 404);
    assert_eq!(r.headers, headers(&[("Content-Type", "application/json")]));
    assert_eq!(r.body, None);
}

#[test]
fn wrapped_response_without_outer_request_id_takes_the_inner_one() {
    let mut v: Value = serde_json::from_slice(RESPONSE_WRAPPED).unwrap();
    v["request_id"] = Value::Null;
    let (id, r) = decode_http_response(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(id.as_deref(), Some(REQUEST_ID));
    assert_eq!(r.status, 200);
}

// ---------------------------------------------------------------------------
// Host messages, byte for byte
// ---------------------------------------------------------------------------

fn assert_bytes(message: &Message, vector: &[u8]) {
    let written = serde_json::to_vec(message).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&written),
        String::from_utf8_lossy(vector)
    );
    assert_eq!(written, vector);
}

#[test]
fn init_is_byte_exact() {
    let m = Message::init(init_payload()).at(timestamp_of(INIT));
    assert_bytes(&m, INIT);
    assert_eq!(m, serde_json::from_slice::<Message>(INIT).unwrap());
}

#[test]
fn shutdown_is_byte_exact() {
    assert_bytes(&Message::shutdown().at(timestamp_of(SHUTDOWN)), SHUTDOWN);
}

#[test]
fn http_request_is_byte_exact() {
    let m = Message::http_request(REQUEST_ID, post_restart()).at(timestamp_of(HTTP_REQUEST));
    assert_bytes(&m, HTTP_REQUEST);
}

#[test]
fn http_request_without_body_is_byte_exact() {
    let m = Message::http_request(REQUEST_ID, get_root()).at(timestamp_of(HTTP_REQUEST_NOBODY));
    assert_bytes(&m, HTTP_REQUEST_NOBODY);
}

#[test]
fn http_messages_carry_inner_type_and_request_id() {
    for payload in [post_restart(), get_root()] {
        let v = serde_json::to_value(Message::http_request("r-7", payload)).unwrap();
        assert_eq!(v["type"], "http");
        assert_eq!(v["request_id"], "r-7");
        assert_eq!(v["payload"]["type"], "http");
        assert_eq!(v["payload"]["request_id"], "r-7");
        assert!(v["timestamp"].is_string());
    }
    let v = serde_json::to_value(Message::shutdown()).unwrap();
    assert_eq!(v["payload"]["type"], "lifecycle");
    assert_eq!(v["request_id"], Value::Null);
}

// ---------------------------------------------------------------------------
// KV and rejections
// ---------------------------------------------------------------------------

#[test]
fn kv_op_reads_spec_and_sdk_0_1_spellings() {
    let key = || "k".to_owned();
    for raw in [
        r#"{"action":"get","key":"k"}"#,
        r#"{"action":"Get","key":"k"}"#,
    ] {
        assert_eq!(
            serde_json::from_str::<KvOp>(raw).unwrap(),
            KvOp::Get { key: key() }
        );
    }
    for raw in [
        r#"{"action":"set","key":"k","value":"v"}"#,
        r#"{"action":"Set","key":"k","value":"v"}"#,
    ] {
        assert_eq!(
            serde_json::from_str::<KvOp>(raw).unwrap(),
            KvOp::Set {
                key: key(),
                value: "v".to_owned()
            }
        );
    }
    for raw in [
        r#"{"action":"delete","key":"k"}"#,
        r#"{"action":"Delete","key":"k"}"#,
    ] {
        assert_eq!(
            serde_json::from_str::<KvOp>(raw).unwrap(),
            KvOp::Delete { key: key() }
        );
    }
    // Written as the spec says.
    let written = serde_json::to_value(KvOp::Get { key: key() }).unwrap();
    assert_eq!(written, json!({"action": "get", "key": "k"}));

    // And inside a whole SDK 0.1 message.
    let m: Message = serde_json::from_value(json!({
        "type": "kv", "timestamp": "2025-12-30T12:00:00Z", "request_id": "r",
        "payload": {"type": "kv", "request_id": "r", "payload": {"action": "Get", "key": "k"}}
    }))
    .unwrap();
    assert_eq!(
        m.payload,
        MessagePayload::Kv {
            request_id: "r".to_owned(),
            payload: KvOp::Get { key: key() }
        }
    );
}

#[test]
fn decode_rejects_a_non_http_message() {
    assert!(decode_http_response(INIT).is_err());
    assert!(decode_http_response(SHUTDOWN).is_err());
}

#[test]
fn decode_rejects_a_wrapped_message_with_null_body() {
    let mut v: Value = serde_json::from_slice(RESPONSE_WRAPPED).unwrap();
    v["payload"]["payload"]["body"] = Value::Null;
    assert!(decode_http_response(&serde_json::to_vec(&v).unwrap()).is_err());
}

#[test]
fn decode_rejects_garbage() {
    for frame in [
        &b"not json"[..],
        b"",
        b"{\"type\":\"http\"",
        b"[]",
        b"{\"type\":\"http\",\"request_id\":\"r\"}",
        b"{\"type\":\"http\",\"request_id\":\"r\",\"payload\":{}}",
        b"{\"type\":\"http\",\"request_id\":\"r\",\"payload\":{\"status\":\"ok\"}}",
        b"{\"type\":\"http\",\"request_id\":\"r\",\"payload\":{\"type\":\"http\",\"request_id\":\"r\",\
          \"payload\":{\"method\":\"RESPONSE\",\"path\":\"\",\"headers\":{},\"body\":\"nope\"}}}",
    ] {
        assert!(
            decode_http_response(frame).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(frame)
        );
    }
}

// ---------------------------------------------------------------------------
// The Python example plugin, end to end
// ---------------------------------------------------------------------------

/// Generous bound for anything the plugin does.
const PATIENCE: Duration = Duration::from_secs(10);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/hello_v1.py")
}

/// A running `hello_v1.py`, killed when dropped so a failing test leaves nothing behind.
struct PythonPlugin {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for PythonPlugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl PythonPlugin {
    /// Starts the plugin and waits until its socket accepts a connection.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A folder that does not exist yet: the plugin must create it.
        let socket = dir.path().join("plugins").join("hello-py.sock");
        let child = Command::new("python3")
            .arg(script())
            .env("TORU_PLUGIN_SOCKET", &socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut plugin = Self {
            child,
            socket,
            _dir: dir,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if UnixStream::connect(&plugin.socket).await.is_ok() {
                // That probe connection is accepted, seen at EOF and closed.
                return plugin;
            }
            if let Some(status) = plugin.child.try_wait().unwrap() {
                panic!("plugin exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "plugin never listened");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn connect(&self) -> PluginProtocol<UnixStream> {
        PluginProtocol::new(UnixStream::connect(&self.socket).await.unwrap())
    }

    /// Sends `init` on a connection of its own, as the first host did.
    async fn init(&self, instance_id: &str) {
        let mut conn = self.connect().await;
        let payload = LifecycleInitPayload {
            instance_id: instance_id.to_owned(),
            plugin_socket: self.socket.display().to_string(),
            log_path: "/dev/null".to_owned(),
        };
        conn.write_message(&Message::init(payload)).await.unwrap();
    }

    /// Waits (bounded) for the process to end.
    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "plugin did not exit in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the (exited) plugin wrote to stderr.
    fn stderr(&mut self) -> String {
        let mut out = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            err.read_to_string(&mut out).unwrap();
        }
        out
    }
}

/// One request and its answer; asserts the answer carries the request's id.
async fn ask(
    conn: &mut PluginProtocol<UnixStream>,
    id: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponsePayload {
    let request = HttpPayload {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: self::headers(headers),
        body: body.map(str::to_owned),
    };
    conn.write_message(&Message::http_request(id, request))
        .await
        .unwrap();
    let (answer_id, response) = tokio::time::timeout(PATIENCE, conn.read_http_response())
        .await
        .expect("plugin answered in time")
        .unwrap()
        .expect("plugin answered before closing");
    assert_eq!(answer_id.as_deref(), Some(id));
    response
}

/// One request on a connection of its own.
async fn ask_alone(
    plugin: &PythonPlugin,
    id: &str,
    method: &str,
    path: &str,
) -> HttpResponsePayload {
    ask(&mut plugin.connect().await, id, method, path, &[], None).await
}

fn json_body(response: &HttpResponsePayload) -> Value {
    serde_json::from_str(response.body.as_deref().expect("a body")).unwrap()
}

#[test]
fn python_metadata_is_protocol_1() {
    let out = Command::new("python3")
        .arg(script())
        .arg("--metadata")
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", out.status);
    let raw: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(raw.get("protocol").is_none(), "{raw}");
    let m: PluginMetadata = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m.id, "hello-py");
    assert_eq!(m.route, "/hello-py");
    assert_eq!(m.icon, "🐍");
    assert_eq!(m.protocol, None);
    assert_eq!(m.protocol_version(), 1);
    m.validate().unwrap();
}

#[tokio::test]
async fn python_plugin_answers_requests() {
    let plugin = PythonPlugin::start().await;
    plugin.init("inst-42").await;

    let r = ask_alone(&plugin, "r1", "GET", "/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["Content-Type"], "application/json");
    let body = json_body(&r);
    assert_eq!(body["message"], "Hello from Python plugin!");
    assert_eq!(body["instance_id"], "inst-42");

    // The query string is kept in the path and ignored by the route.
    let r = ask_alone(&plugin, "r2", "GET", "/?x=1").await;
    assert_eq!(r.status, 200);

    let mut conn = plugin.connect().await;
    let r = ask(
        &mut conn,
        "r3",
        "POST",
        "/echo",
        &[("content-type", "text/x-test; charset=utf-8")],
        Some("héllo, wörld"),
    )
    .await;
    drop(conn);
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["Content-Type"], "text/x-test; charset=utf-8");
    assert_eq!(r.body.as_deref(), Some("héllo, wörld"));

    let r = ask_alone(&plugin, "r4", "GET", "/nope").await;
    assert_eq!(r.status, 404);
    assert_eq!(json_body(&r), json!({"error": "not found"}));

    let r = ask_alone(&plugin, "r5", "GET", "/bundle.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["Content-Type"], "application/javascript");
    let bundle = r.body.unwrap();
    // The other convention of the deployed bundles: window["toru_plugin_<id>"].
    assert!(
        bundle.contains(r#"window["toru_plugin_hello-py"]"#),
        "{bundle}"
    );
    assert!(bundle.contains("mount(container)") && bundle.contains("unmount(container)"));
}

#[tokio::test]
async fn python_plugin_answers_one_request_after_another_on_one_connection() {
    let plugin = PythonPlugin::start().await;
    plugin.init("inst-seq").await;

    // Never pipelined: each request is written after the previous answer.
    let mut conn = plugin.connect().await;
    let r = ask(&mut conn, "a", "GET", "/slow?ms=50", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_body(&r)["slept_ms"], 50);
    let r = ask(&mut conn, "b", "GET", "/", &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(json_body(&r)["instance_id"], "inst-seq");
}

#[tokio::test]
async fn python_plugin_exits_0_on_shutdown() {
    let mut plugin = PythonPlugin::start().await;
    plugin.init("inst-bye").await;

    let mut conn = plugin.connect().await;
    conn.write_message(&Message::shutdown()).await.unwrap();
    let status = plugin.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}");
    // No answer to shutdown: the connection just ends.
    let next = tokio::time::timeout(PATIENCE, conn.read_frame())
        .await
        .expect("connection closed in time");
    assert!(matches!(next, Ok(None) | Err(_)), "{next:?}");

    // Diagnostics: one JSON object per line.
    let stderr = plugin.stderr();
    assert!(!stderr.is_empty());
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        for key in ["timestamp", "level", "plugin", "message"] {
            assert!(v.get(key).is_some(), "{line} lacks {key}");
        }
        assert_eq!(v["plugin"], "hello-py");
        assert!(v["level"] == "info" || v["level"] == "error", "{line}");
    }
}

#[tokio::test]
async fn python_plugin_removes_its_socket_on_sigterm() {
    let mut plugin = PythonPlugin::start().await;
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(plugin.child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = plugin.wait_exit().await;
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(!plugin.socket.exists(), "socket left behind");
}

#[test]
fn null_headers_from_a_plugin_read_as_none() {
    let frame =
        br#"{"type":"http","request_id":"r","payload":{"status":200,"headers":null,"body":"x"}}"#;
    let (id, response) = toru_plugin_api::compat::decode_http_response(frame).unwrap();
    assert_eq!(id.as_deref(), Some("r"));
    assert!(response.headers.is_empty());
}

/// Code written against SDK 0.1 names the protocol-1 message at the crate
/// root: it still builds (with a deprecation warning) and is the same type.
#[test]
#[allow(deprecated)]
fn sdk_0_1_names_still_build() {
    let old: toru_plugin_api::Message = toru_plugin_api::Message::shutdown();
    let new: Message = old.clone();
    assert_eq!(old, new);
}
