//! The physical limit for torud's HTTP hop: a minimal hyper server that
//! answers every request at once, like `hello` does:
//!
//! * `GET` (any path): the same JSON as `hello`'s `GET /` (about 100 bytes);
//! * `POST` (any path): the request body, byte for byte (`hello`'s
//!   `POST /echo`), with the request's content type;
//! * `GET /ui/...`: the web console's files, the very bytes torud embeds,
//!   with their content type only (the limit for the console's first load).
//!
//! `limit ADDR` where ADDR is
//!
//! * `127.0.0.1:7171`: a TCP address to bind;
//! * `unix:/path/to/socket`: a Unix socket to bind (the backend of the nginx
//!   peer); a stale socket file at that path is replaced;
//! * `activated`: the listening socket systemd (or `systemd-socket-activate`)
//!   passed with `LISTEN_FDS`, adopted by the same code torud uses.
//!
//! Runs until killed.

use std::convert::Infallible;
use std::error::Error;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use toru_service::http::Listener;

type BoxError = Box<dyn Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let addr = std::env::args()
        .nth(1)
        .ok_or("usage: limit 127.0.0.1:PORT | unix:PATH | activated")?;
    // Before any thread exists, as unsetting LISTEN_* requires.
    let passed = if addr == "activated" {
        let passed = toru_service::systemd::activation::take()?;
        if passed.is_empty() {
            return Err("`activated` but no socket was passed (LISTEN_FDS)".into());
        }
        passed
    } else {
        Vec::new()
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(addr, passed))
}

async fn serve(
    addr: String,
    passed: Vec<toru_service::systemd::activation::Passed>,
) -> Result<(), BoxError> {
    let body = Bytes::from(
        serde_json::json!({
            "message": "Hello from Toru!",
            "plugin": "hello",
            "instance_id": "00000000-0000-4000-8000-000000000000",
        })
        .to_string(),
    );
    let listeners = if !passed.is_empty() {
        toru_service::systemd::activation::into_listeners(passed)?
    } else if let Some(path) = addr.strip_prefix("unix:") {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        vec![Listener::Unix(tokio::net::UnixListener::bind(path)?)]
    } else {
        vec![Listener::Tcp(tokio::net::TcpListener::bind(&addr).await?)]
    };
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        let body = body.clone();
        tasks.spawn(async move {
            match listener {
                Listener::Tcp(l) => loop {
                    let (stream, _) = l.accept().await?;
                    // As hyper's clients and wrk expect of a latency-bound server.
                    stream.set_nodelay(true)?;
                    tokio::spawn(connection(stream, body.clone()));
                },
                Listener::Unix(l) => loop {
                    let (stream, _) = l.accept().await?;
                    tokio::spawn(connection(stream, body.clone()));
                },
            }
        });
    }
    // Every accept loop runs forever; the first error ends the server.
    match tasks.join_next().await {
        Some(result) => result?,
        None => Ok(()),
    }
}

async fn connection<S>(stream: S, greeting: Bytes)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: http::Request<Incoming>| {
        let greeting = greeting.clone();
        async move {
            let response = if request.method() == http::Method::POST {
                let content_type = request.headers().get(http::header::CONTENT_TYPE).cloned();
                match request.into_body().collect().await {
                    Ok(body) => {
                        let mut response = http::Response::new(Full::new(body.to_bytes()));
                        if let Some(content_type) = content_type {
                            response
                                .headers_mut()
                                .insert(http::header::CONTENT_TYPE, content_type);
                        }
                        response
                    }
                    Err(_) => {
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        *response.status_mut() = http::StatusCode::BAD_REQUEST;
                        response
                    }
                }
            } else if let Some((_, content_type, bytes)) = toru_service::http::console_files()
                .find(|(path, _, _)| *path == request.uri().path())
            {
                let mut response = http::Response::new(Full::new(Bytes::from_static(bytes)));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static(content_type),
                );
                response
            } else {
                let mut response = http::Response::new(Full::new(greeting));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                response
            };
            Ok::<_, Infallible>(response)
        }
    });
    // A client that goes away mid-request is no error of the server's.
    let _ = Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
