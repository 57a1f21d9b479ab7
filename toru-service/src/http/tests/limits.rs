use std::time::{Duration, Instant};

use http::Method;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::support::{
    TOKEN, TestServer, is_json, options, raw, raw_body, read_until_closed, send, send_h2,
};

#[tokio::test]
async fn body_over_the_limit_by_content_length() {
    let server = TestServer::start(options()).await;
    // Announced, never sent: refused before a byte of it is read.
    let head = format!(
        "POST /api/plugins/route/hello/x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\n\
         content-length: 10000000\r\n\r\n"
    );
    let answer = raw(server.addr, head.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(is_json(&answer), "{answer}");
    assert_eq!(
        raw_body(&answer)["error"],
        "request body exceeds 1024 bytes"
    );

    // Sent whole by a real client, to the KV endpoint.
    let body = format!(
        r#"{{"action":"set","key":"k","value":"{}"}}"#,
        "v".repeat(2000)
    );
    let answer = send(server.request(Method::POST, "/api/plugins/hello/kv", body)).await;
    answer.error(413);
    // Exactly at the limit is fine.
    let answer =
        send(server.request(Method::POST, "/api/plugins/route/hello/x", vec![7u8; 1024])).await;
    assert_eq!(answer.status(), 201);
    assert!(server.backend.kv.lock().unwrap().is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn chunked_body_over_the_limit() {
    let server = TestServer::start(options()).await;
    let chunk = "x".repeat(600);
    let request = format!(
        "POST /api/plugins/route/hello/x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = raw(server.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(is_json(&answer), "{answer}");
    assert!(server.backend.forwarded.lock().unwrap().is_empty());

    // One chunk under the limit goes through.
    let request = format!(
        "POST /api/plugins/route/hello/x HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {TOKEN}\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    let answer = raw(server.addr, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 201 "), "{answer}");
    assert!(answer.ends_with(&chunk));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn head_over_the_limit_is_431() {
    let server = TestServer::start(options()).await;
    let request = format!(
        "GET /api/health HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let answer = raw(server.addr, request.as_bytes()).await;
    // hyper answers this one itself, before the gateway sees a request: no JSON body.
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.200}");
    // A head under the limit is fine.
    let request = format!(
        "GET /api/health HTTP/1.1\r\nhost: t\r\nconnection: close\r\nx-big: {}\r\n\r\n",
        "a".repeat(8 * 1024)
    );
    assert!(
        raw(server.addr, request.as_bytes())
            .await
            .starts_with("HTTP/1.1 200 ")
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn header_list_over_the_limit_over_http2_is_431() {
    let server = TestServer::start(options()).await;
    // Somewhat over the 16 KiB limit: h2 answers 431 (far over, it sends GOAWAY).
    let mut request = server.request(Method::GET, "/api/plugins", "");
    request
        .headers_mut()
        .insert("x-big", "a".repeat(20 * 1024).parse().unwrap());
    let answer = send_h2(request).await;
    assert_eq!(answer.status(), 431);
    server.stop().await.unwrap();
}

fn slow_options() -> crate::http::HttpOptions {
    crate::http::HttpOptions {
        header_read_timeout: Duration::from_millis(300),
        ..options()
    }
}

#[tokio::test]
async fn half_a_head_is_cut_off_after_the_header_timeout() {
    let server = TestServer::start(slow_options()).await;
    let started = Instant::now();
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /api/health HTTP/1.1\r\nhost: t\r\nx-slow: ")
        .await
        .unwrap();
    let answer = read_until_closed(&mut stream).await;
    let waited = started.elapsed();
    assert!(!answer.contains("200"), "{answer}");
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn silent_connections_are_cut_off_too() {
    let server = TestServer::start(slow_options()).await;
    // Nothing, then half an HTTP/2 preface: hyper has not picked a protocol yet.
    for opening in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let started = Instant::now();
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(opening).await.unwrap();
        assert_eq!(read_until_closed(&mut stream).await, "");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(250), "{waited:?}");
        assert!(waited < Duration::from_secs(3), "{waited:?}");
    }
    // A client that asks in time keeps its connection between requests.
    let health = b"GET /api/health HTTP/1.1\r\nhost: t\r\n\r\n";
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(health).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stream.write_all(health).await.unwrap();
    let answers = read_until_closed(&mut stream).await;
    assert_eq!(answers.matches("HTTP/1.1 200 ").count(), 2, "{answers}");
    server.stop().await.unwrap();
}
