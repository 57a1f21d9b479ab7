//! The physical limit for torud's HTTP hop: a minimal hyper server that
//! answers every request at once with a body like `hello`'s `GET /`.
//!
//! `limit ADDR` (e.g. `127.0.0.1:7171`); runs until killed.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).ok_or("usage: limit ADDR")?;
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let body = Bytes::from(
        serde_json::json!({
            "message": "Hello from Toru!",
            "plugin": "hello",
            "instance_id": "00000000-0000-4000-8000-000000000000",
        })
        .to_string(),
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request| {
                let body = body.clone();
                async move {
                    let mut response = http::Response::new(Full::new(body));
                    response.headers_mut().insert(
                        "content-type",
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
