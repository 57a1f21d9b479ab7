//! Test support: a test plugin served by the real SDK runtime on a real Unix
//! socket, an in-memory KV backend for the host side, and a raw peer that
//! writes frames by hand to misbehave on purpose.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::codec::Framed;
use toru_plugin_api::codec::{BadFrame, EncodedFrame, FrameCodec};
use toru_plugin_api::host::{HostConnection, InitParams};
use toru_plugin_api::protocol::v2::{ErrorCode, Frame, Message};
use toru_plugin_api::{
    HttpRequest, HttpResponse, PluginContext, PluginError, PluginMetadata, PluginResult,
    PluginServer, ToruPlugin,
};

pub const INSTANCE: &str = "550e8400-e29b-41d4-a716-446655440000";
pub const LONG: Duration = Duration::from_secs(20);

/// A plugin with one route per behaviour under test.
#[derive(Default)]
pub struct TestPlugin {
    ctx: Option<PluginContext>,
    /// Slow requests that ran to the end (cancelled ones do not).
    pub finished_slow: Arc<AtomicUsize>,
}

impl ToruPlugin for TestPlugin {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("test", "Test", "0.0.0", "/test")
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        if ctx.config.get::<bool>("fail_init")? == Some(true) {
            return Err(PluginError::other("configured to fail"));
        }
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
        let ctx = self.ctx.as_ref().expect("init ran");
        let param = |name: &str| req.query_param(name).unwrap_or_default();
        match req.path_only() {
            // Computes (blocks the thread) before answering, with no `.await`.
            "/spin" => {
                let ms: u64 = param("ms").parse().unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(HttpResponse::text("spun"))
            }
            "/sleep" => {
                let ms: u64 = param("ms").parse().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.finished_slow.fetch_add(1, Ordering::SeqCst);
                Ok(HttpResponse::text(param("tag")))
            }
            "/echo" => {
                let mut response = HttpResponse::new(200);
                response.headers = req.headers.clone();
                response.body = req.body.clone();
                Ok(response)
            }
            "/panic" => panic!("the test handler panics on purpose"),
            "/fail" => Err(PluginError::other("the handler failed on purpose")),
            "/teapot" => Err(PluginError::http(418, "short and stout")),
            "/kv" => {
                let key = param("key");
                ctx.kv.set(&key, &req.body).await?;
                let value = ctx.kv.get_bytes(&key).await?.unwrap_or_default();
                Ok(HttpResponse::bytes("application/octet-stream", value))
            }
            "/kv-delete" => Ok(HttpResponse::text(
                ctx.kv.delete(&param("key")).await?.to_string(),
            )),
            "/kv-list" => {
                let keys = ctx.kv.list(&param("prefix")).await?;
                Ok(HttpResponse::json(&keys))
            }
            "/huge" => Ok(HttpResponse::bytes(
                "application/octet-stream",
                vec![0u8; 17 * 1024 * 1024],
            )),
            "/instance" => Ok(HttpResponse::text(ctx.instance_id.clone())),
            _ => Ok(HttpResponse::not_found()),
        }
    }
}

pub use toru_plugin_api::host::MemoryKv as MemKv;

/// The SDK runtime serving a plugin on a socket in a temporary directory.
pub struct Running {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    pub server: JoinHandle<PluginResult<()>>,
}

impl Running {
    /// Resolves the `serve` future's signal, as SIGTERM would.
    pub fn signal(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start<P: ToruPlugin>(plugin: P) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugins").join("test.sock");
    let server = PluginServer::bind(&path, plugin).unwrap();
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(server.serve(async {
        let _ = rx.await;
    }));
    Running {
        dir,
        path,
        stop: Some(tx),
        server,
    }
}

pub fn init_params() -> InitParams {
    InitParams {
        instance_id: INSTANCE.into(),
        plugin_id: "test".into(),
        ..InitParams::default()
    }
}

pub async fn connect(running: &Running, kv: Arc<MemKv>) -> HostConnection {
    let stream = UnixStream::connect(&running.path).await.unwrap();
    HostConnection::connect(stream, init_params(), kv, LONG)
        .await
        .unwrap()
}

pub fn get(path: &str) -> HttpRequest {
    HttpRequest::new("GET", path)
}

/// A peer that writes frames by hand.
pub struct RawPeer {
    pub framed: Framed<UnixStream, FrameCodec>,
}

impl RawPeer {
    pub async fn connect(path: &std::path::Path) -> Self {
        Self {
            framed: Framed::new(UnixStream::connect(path).await.unwrap(), FrameCodec::new()),
        }
    }

    /// Connects and completes `init`.
    pub async fn initialized(path: &std::path::Path) -> Self {
        let mut peer = Self::connect(path).await;
        let params = init_params();
        peer.send(Message::Init {
            id: 1,
            protocol: 2,
            instance_id: params.instance_id,
            plugin_id: params.plugin_id,
            config: params.config,
            limits: params.limits,
            license: params.license,
        })
        .await;
        assert!(matches!(
            peer.recv().await,
            Ok(Frame {
                message: Message::InitOk { id: 1, protocol: 2 },
                ..
            })
        ));
        peer
    }

    pub async fn send(&mut self, message: Message) {
        self.send_with_body(message, Bytes::new()).await;
    }

    pub async fn send_with_body(&mut self, message: Message, body: Bytes) {
        let frame = EncodedFrame::from_parts(&message, body).unwrap();
        self.framed.send(frame).await.unwrap();
    }

    /// Writes bytes as they are, bypassing the codec.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.framed.get_mut().write_all(bytes).await.unwrap();
    }

    /// Next frame; panics on end of stream or after 20 s.
    pub async fn recv(&mut self) -> Result<Frame, BadFrame> {
        tokio::time::timeout(LONG, self.framed.next())
            .await
            .expect("an answer in time")
            .expect("the connection to stay open")
            .expect("a readable stream")
    }

    /// True when the peer closes the connection (within 20 s).
    pub async fn closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(LONG, self.framed.next()).await,
            Ok(None | Some(Err(_)))
        )
    }
}

/// A `v2` frame with a raw header, for headers the codec would never write.
pub fn raw_frame(header: &[u8]) -> BytesMut {
    use bytes::BufMut;
    let mut v = BytesMut::new();
    v.put_u32(4 + header.len() as u32);
    v.put_u32(header.len() as u32);
    v.put_slice(header);
    v
}

pub fn error_code(frame: &Frame) -> Option<(Option<u64>, ErrorCode)> {
    match &frame.message {
        Message::Error { id, code, .. } => Some((*id, *code)),
        _ => None,
    }
}
