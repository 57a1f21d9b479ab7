//! A real server on 127.0.0.1:0 and a Unix socket, and the clients that talk to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(super) use super::fake::FakeBackend;
use crate::http::{AdminToken, HttpOptions, Listener, serve};

/// The token every test server uses.
pub(super) const TOKEN: &str = "s3cret-token";

/// Options for tests: small limits, so tests can cross them cheaply.
pub(super) fn options() -> HttpOptions {
    HttpOptions {
        max_body_bytes: 1024,
        max_header_bytes: 16 * 1024,
        header_read_timeout: Duration::from_secs(5),
        max_connections: 64,
        sessions: crate::http::SessionPolicy::default(),
    }
}

/// A gateway serving a [`FakeBackend`] on TCP and on a Unix socket.
pub(super) struct TestServer {
    pub(super) addr: SocketAddr,
    pub(super) socket: PathBuf,
    pub(super) backend: Arc<FakeBackend>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub(super) async fn start(options: HttpOptions) -> Self {
        Self::start_with_grace(options, Duration::from_secs(5)).await
    }

    /// [`TestServer::start`], draining for `grace` at shutdown.
    pub(super) async fn start_with_grace(options: HttpOptions, grace: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("toru.sock");
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let unix = UnixListener::bind(&socket).unwrap();
        let backend = Arc::new(FakeBackend::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            vec![Listener::Tcp(tcp), Listener::Unix(unix)],
            Arc::clone(&backend),
            Arc::new(AdminToken::from_secret(TOKEN)),
            options,
            async move {
                let _ = stopped.await;
                grace
            },
        ));
        Self {
            addr,
            socket,
            backend,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Triggers shutdown without waiting for it.
    pub(super) fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Drops the `serve` future, as a caller that gives up on it would.
    pub(super) async fn abort(mut self) {
        let task = self.task.take().unwrap();
        task.abort();
        let _ = task.await;
    }

    /// Shuts down and returns what `serve` returned.
    pub(super) async fn stop(mut self) -> std::io::Result<()> {
        self.trigger_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
    }

    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request to this server over TCP carrying the right token.
    pub(super) fn request(
        &self,
        method: Method,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(self.url(path))
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Full::new(body.into()))
            .unwrap()
    }

    pub(super) async fn get(&self, path: &str) -> Answer {
        send(self.request(Method::GET, path, Bytes::new())).await
    }

    pub(super) async fn post(&self, path: &str, body: &str) -> Answer {
        send(self.request(Method::POST, path, body.to_owned())).await
    }
}

/// A response with its body read.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) response: Response<()>,
    pub(super) body: Bytes,
}

impl Answer {
    pub(super) fn status(&self) -> u16 {
        self.response.status().as_u16()
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap())
    }

    pub(super) fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Asserts the gateway's error shape and returns the message.
    pub(super) fn error(&self, status: u16) -> String {
        assert_eq!(self.status(), status, "{self:?}");
        self.json()["error"].as_str().unwrap().to_owned()
    }
}

async fn collect(response: Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        response: Response::from_parts(parts, ()),
        body,
    }
}

/// Sends `request` with the hyper-util legacy client (HTTP/1.1).
pub(super) async fn send(request: Request<Full<Bytes>>) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    collect(response).await
}

/// Sends `request` over HTTP/2 with prior knowledge.
pub(super) async fn send_h2(request: Request<Full<Bytes>>) -> Answer {
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .unwrap()
        .unwrap();
    collect(response).await
}

/// Sends `request` (path only, no token) over the Unix socket.
pub(super) async fn send_unix(socket: &PathBuf, method: Method, path: &str) -> Answer {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    collect(sender.send_request(request).await.unwrap()).await
}

/// Writes `bytes` on a fresh connection and returns everything the server
/// sends back until it closes. A reset after the answer counts as the close:
/// a server that does not read a refused body resets the connection.
pub(super) async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_until_closed(&mut stream).await
}

pub(super) async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => received.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the server neither answered nor closed"),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// The JSON body of a raw HTTP/1.1 answer.
pub(super) fn raw_body(answer: &str) -> serde_json::Value {
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

/// The answer's `content-type` must be JSON.
pub(super) fn is_json(answer: &str) -> bool {
    answer
        .to_ascii_lowercase()
        .contains("\r\ncontent-type: application/json\r\n")
}
