use std::time::Duration;

use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::support::{TestServer, options, read_until_closed, send, send_h2};
use crate::http::HttpOptions;

#[tokio::test]
async fn requests_in_flight_finish_after_shutdown() {
    let mut server = TestServer::start(options()).await;
    let request = server.request(Method::GET, "/api/plugins/route/slow/x", "");
    let in_flight = tokio::spawn(send(request));
    // Let the request reach the backend's 500 ms sleep.
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.trigger_shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // No new connections while draining...
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting over TCP"
    );
    assert!(
        UnixStream::connect(&server.socket).await.is_err(),
        "still accepting over Unix"
    );
    // ...but the one in flight gets its answer.
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(&answer.body[..], b"slow done");
    let addr = server.addr;
    server.stop().await.unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn shutdown_cuts_what_outlives_the_grace_period() {
    let mut server = TestServer::start_with_grace(options(), Duration::from_millis(100)).await;
    let request = server.request(Method::GET, "/api/plugins/route/slow/x", "");
    let in_flight = tokio::spawn(send_raw_result(request));
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.trigger_shutdown();
    let started = std::time::Instant::now();
    server.stop().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(
        in_flight.await.unwrap().is_err(),
        "the cut request must fail, not succeed"
    );
}

#[tokio::test]
async fn dropping_serve_cuts_its_connections() {
    let server = TestServer::start(options()).await;
    let request = server.request(Method::GET, "/api/plugins/route/slow/x", "");
    let in_flight = tokio::spawn(send_raw_result(request));
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.abort().await;
    let result = tokio::time::timeout(Duration::from_millis(300), in_flight).await;
    assert!(
        result.unwrap().unwrap().is_err(),
        "the request must fail at once"
    );
}

async fn send_raw_result(
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<http::StatusCode, hyper_util::client::legacy::Error> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    client.request(request).await.map(|r| r.status())
}

#[tokio::test]
async fn connections_over_the_cap_wait_their_turn() {
    let server = TestServer::start(HttpOptions {
        max_connections: 2,
        ..options()
    })
    .await;
    let health = b"GET /api/health HTTP/1.1\r\nhost: t\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(health).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        held.push(stream); // kept alive: each holds a permit
    }

    // The kernel completes the handshake, but nobody reads the request yet.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /api/health HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");

    drop(held.pop());
    let answer = read_until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn http2_with_prior_knowledge() {
    let server = TestServer::start(options()).await;
    let answer = send_h2(server.request(Method::GET, "/api/plugins/hello", "")).await;
    assert_eq!(answer.response.version(), http::Version::HTTP_2);
    assert_eq!(answer.json()["id"], "hello");
    let answer = send_h2(server.request(
        Method::POST,
        "/api/plugins/hello/kv",
        r#"{"action":"get","key":"k"}"#,
    ))
    .await;
    assert_eq!(answer.json(), serde_json::json!({"value": null}));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn serve_without_listeners_is_an_error() {
    let result = crate::http::serve(
        Vec::new(),
        std::sync::Arc::new(super::support::FakeBackend::default()),
        std::sync::Arc::new(crate::http::AdminToken::from_secret("x")),
        options(),
        std::future::pending(),
    )
    .await;
    assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
}
