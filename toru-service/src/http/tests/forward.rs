use bytes::Bytes;
use http::Method;
use http::header::{AUTHORIZATION, SET_COOKIE};

use super::support::{TestServer, options, send, send_h2};

#[tokio::test]
async fn forwards_path_query_and_end_to_end_headers() {
    let server = TestServer::start(options()).await;
    let binary: Vec<u8> = (0..=255).collect();
    let mut request = server.request(
        Method::PUT,
        "/api/plugins/route/hello/kv/a%20b?x=1&y=%2F",
        binary.clone(),
    );
    let headers = request.headers_mut();
    for (name, value) in [
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic eDp5"),
        ("x-kept", "a"),
        ("x-kept", "b"),
        ("content-type", "application/octet-stream"),
    ] {
        headers.append(name, value.parse().unwrap());
    }
    let answer = send(request).await;

    assert_eq!(answer.status(), 201);
    assert_eq!(
        &answer.body[..],
        &binary[..],
        "binary body byte for byte, both ways"
    );
    let response = answer.response.headers();
    let cookies: Vec<&str> = response
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(answer.header("x-plugin"), Some("yes"));
    assert_eq!(
        answer.header("content-length"),
        Some("256"),
        "the plugin's wrong length is replaced"
    );
    for dropped in ["x-private", "keep-alive"] {
        assert!(
            !response.contains_key(dropped),
            "{dropped} reached the client"
        );
    }

    let forwarded = server.backend.forwarded.lock().unwrap().clone();
    let (route, seen) = &forwarded[0];
    assert_eq!(route, "hello");
    assert_eq!(seen.method, "PUT");
    assert_eq!(seen.path, "/kv/a%20b?x=1&y=%2F");
    assert_eq!(&seen.body[..], &binary[..]);
    for dropped in [
        "authorization",
        "host",
        "connection",
        "x-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert!(
            !seen.headers.contains_key(dropped),
            "{dropped} reached the plugin"
        );
    }
    let kept: Vec<&str> = seen
        .headers
        .get_all("x-kept")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(kept, ["a", "b"]);
    assert_eq!(seen.headers["content-type"], "application/octet-stream");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn route_root_is_slash() {
    let server = TestServer::start(options()).await;
    for path in [
        "/api/plugins/route/hello",
        "/api/plugins/route/hello/",
        "/api/plugins/route/hello?q=1",
    ] {
        assert_eq!(server.get(path).await.status(), 201, "{path}");
    }
    let paths: Vec<String> = server
        .backend
        .forwarded
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.path.clone())
        .collect();
    assert_eq!(paths, ["/", "/", "/?q=1"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plugin_failures_become_statuses() {
    let server = TestServer::start(options()).await;
    let down = server.get("/api/plugins/route/down/x").await;
    assert_eq!(down.error(503), "plugin down is in backoff");
    assert_eq!(down.header("retry-after"), Some("5"), "4.2 s rounds up");
    server.get("/api/plugins/route/gone/x").await.error(502);
    let weird = server.get("/api/plugins/route/weird/x").await.error(502);
    assert!(weird.contains("invalid status 42"), "{weird}");
    server.get("/api/plugins/route/late/x").await.error(504);
    server.get("/api/plugins/route/nobody/x").await.error(404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn forwarding_over_http2() {
    let server = TestServer::start(options()).await;
    let answer =
        send_h2(server.request(Method::POST, "/api/plugins/route/hello/echo?z=9", "over h2")).await;
    assert_eq!(answer.response.version(), http::Version::HTTP_2);
    assert_eq!(answer.status(), 201);
    assert_eq!(answer.body, Bytes::from_static(b"over h2"));
    let forwarded = server.backend.forwarded.lock().unwrap().clone();
    assert_eq!(forwarded[0].1.path, "/echo?z=9");
    assert!(!forwarded[0].1.headers.contains_key(AUTHORIZATION));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bundle_is_javascript_and_never_cached() {
    let server = TestServer::start(options()).await;
    let bundle = server.get("/api/plugins/hello/bundle.js").await;
    assert_eq!(bundle.status(), 200);
    assert_eq!(
        bundle.header("content-type"),
        Some("application/javascript")
    );
    assert_eq!(bundle.header("cache-control"), Some("no-store"));
    assert_eq!(&bundle.body[..], b"window.ToruPlugins={};");
    // The plugin's own content type stands.
    let own = server.get("/api/plugins/slow/bundle.js").await;
    assert_eq!(own.header("content-type"), Some("text/javascript"));
    assert_eq!(own.header("cache-control"), Some("no-store"));
    server.get("/api/plugins/nope/bundle.js").await.error(404);
    server.stop().await.unwrap();
}
