use std::sync::atomic::Ordering;

use http::Method;
use serde_json::json;

use super::support::{TestServer, options, send};
use crate::api::LogQuery;

#[tokio::test]
async fn read_only_routes() {
    let server = TestServer::start(options()).await;

    let health = server.get("/api/health").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json(), json!({"status": "ok"}));

    let instance = server.get("/api/instance").await;
    assert_eq!(
        instance.json(),
        json!({"instance_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "machine_id_changed": false})
    );

    let status = server.get("/api/status").await.json();
    assert_eq!(status["uptime_seconds"], 7);
    assert_eq!(status["plugins"], json!({"running": 2}));

    let plugins = server.get("/api/plugins").await.json();
    let ids: Vec<&str> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["hello", "slow"]);

    let one = server.get("/api/plugins/hello").await.json();
    assert_eq!(one["route"], "/hello");
    assert_eq!(one["state"], "running");
    assert_eq!(one["error"], json!(null));

    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(&metrics.body[..], b"# TYPE toru_up gauge\ntoru_up 1\n");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let server = TestServer::start(options()).await;
    let answer = send(server.request(Method::HEAD, "/api/plugins/hello", "")).await;
    assert_eq!(answer.status(), 200);
    assert!(answer.body.is_empty());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn plugin_actions() {
    let server = TestServer::start(options()).await;
    for action in ["enable", "disable", "restart", "restart"] {
        let answer = server
            .post(&format!("/api/plugins/hello/{action}"), "")
            .await;
        assert_eq!(answer.json(), json!({"success": true}), "{action}");
    }
    let backend = &server.backend;
    assert_eq!(backend.enabled.load(Ordering::SeqCst), 1);
    assert_eq!(backend.disabled.load(Ordering::SeqCst), 1);
    assert_eq!(backend.restarted.load(Ordering::SeqCst), 2);
    let message = server.post("/api/plugins/nope/enable", "").await.error(404);
    assert_eq!(message, "no such plugin: nope");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn logs_and_their_query() {
    let server = TestServer::start(options()).await;
    let page = server.get("/api/plugins/hello/logs").await.json();
    assert_eq!(page["logs"][0]["message"], "started");
    assert_eq!(page["page"], 1);
    assert_eq!(page["page_size"], 100);
    server
        .get("/api/plugins/hello/logs?page=3&page_size=1000&level=Warning")
        .await
        .json();
    assert_eq!(
        *server.backend.log_queries.lock().unwrap(),
        [
            LogQuery {
                page: 1,
                page_size: 100,
                min_level: None
            },
            LogQuery {
                page: 3,
                page_size: 1000,
                min_level: Some("warn")
            },
        ]
    );
    for (query, name) in [
        ("page=0", "page"),
        ("page=two", "page"),
        ("page_size=0", "page_size"),
        ("page_size=1001", "page_size"),
        ("level=loud", "level"),
    ] {
        let message = server
            .get(&format!("/api/plugins/hello/logs?{query}"))
            .await
            .error(400);
        assert!(
            message.contains(&format!("\"{name}\"")),
            "{query}: {message}"
        );
    }
    server.get("/api/plugins/nope/logs").await.error(404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn events_and_their_query() {
    let server = TestServer::start(options()).await;
    let events = server.get("/api/events").await.json();
    assert_eq!(
        events,
        json!({"events": [{"kind": "started", "plugin": "hello"}]})
    );
    server
        .get("/api/events?plugin=hello&limit=10000")
        .await
        .json();
    assert_eq!(
        *server.backend.events_asked.lock().unwrap(),
        [(None, 100), (Some("hello".to_owned()), 10000)]
    );
    for query in ["limit=0", "limit=10001", "limit=x"] {
        let message = server.get(&format!("/api/events?{query}")).await.error(400);
        assert!(message.contains("\"limit\""), "{message}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn kv_operations() {
    let server = TestServer::start(options()).await;
    let kv = "/api/plugins/hello/kv";
    let answer = |body: &'static str| {
        let server = &server;
        async move { server.post(kv, body).await.json() }
    };
    assert_eq!(
        answer(r#"{"action":"get","key":"a"}"#).await,
        json!({"value": null})
    );
    assert_eq!(
        answer(r#"{"action":"set","key":"a","value":"1"}"#).await,
        json!({"value": null})
    );
    assert_eq!(
        answer(r#"{"action":"set","key":"b","value":"2"}"#).await,
        json!({"value": null})
    );
    assert_eq!(
        answer(r#"{"action":"get","key":"a"}"#).await,
        json!({"value": "1"})
    );
    assert_eq!(
        answer(r#"{"action":"list","prefix":""}"#).await,
        json!({"keys": ["a", "b"]})
    );
    assert_eq!(
        answer(r#"{"action":"delete","key":"a"}"#).await,
        json!({"value": "1"})
    );
    assert_eq!(answer(r#"{"action":"list"}"#).await, json!({"keys": ["b"]}));
    server
        .post("/api/plugins/nope/kv", r#"{"action":"get","key":"a"}"#)
        .await
        .error(404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_kv_bodies() {
    let server = TestServer::start(options()).await;
    for (body, expected) in [
        ("", "not valid JSON"),
        ("{\"action\":", "not valid JSON"),
        ("[1,2]", "JSON object"),
        (r#"{"key":"a"}"#, "missing \"action\""),
        (r#"{"action":"frob","key":"a"}"#, "unknown action"),
        (r#"{"action":"get"}"#, "missing \"key\""),
        (r#"{"action":"delete","key":7}"#, "\"key\" must be a string"),
        (r#"{"action":"set","key":"a"}"#, "missing \"value\""),
        (
            r#"{"action":"set","key":"a","value":{"x":1}}"#,
            "\"value\" must be a string",
        ),
    ] {
        let message = server.post("/api/plugins/hello/kv", body).await.error(400);
        assert!(message.contains(expected), "{body}: {message}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_paths_and_names() {
    let server = TestServer::start(options()).await;
    let message = server.get("/api/nothing/here").await.error(404);
    assert_eq!(message, "no such path: /api/nothing/here");
    // The root is the console's now: a redirect to /ui/.
    let root = server.get("/").await;
    assert_eq!(root.status(), 302);
    assert_eq!(root.header("location"), Some("/ui/"));
    server.get("/ui/nope.js").await.error(404);
    server.get("/api/plugins/nope").await.error(404);
    // Raw segments are matched: an escaped character never reaches the backend.
    for path in [
        "/api/plugins/hel%6Co",
        "/api/plugins/a%2Fb/logs",
        "/api/plugins/..",
        "/api/plugins/route/%68ello/x",
    ] {
        let message = server.get(path).await.error(404);
        assert!(message.starts_with("no such path"), "{path}: {message}");
    }
    assert!(server.backend.forwarded.lock().unwrap().is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_methods() {
    let server = TestServer::start(options()).await;
    for (method, path, allow) in [
        (Method::POST, "/api/plugins", "GET, HEAD"),
        (Method::DELETE, "/api/plugins/hello", "GET, HEAD"),
        (Method::GET, "/api/plugins/hello/enable", "POST"),
        (Method::GET, "/api/plugins/hello/kv", "POST"),
        (Method::PUT, "/metrics", "GET, HEAD"),
        (Method::POST, "/api/health", "GET, HEAD"),
    ] {
        let answer = send(server.request(method.clone(), path, "")).await;
        assert_eq!(answer.error(405), "method not allowed", "{method} {path}");
        assert_eq!(answer.header("allow"), Some(allow), "{method} {path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn every_answer_is_observed() {
    let server = TestServer::start(options()).await;
    server.get("/api/plugins/hello/logs").await;
    server.get("/api/plugins/nope").await;
    server.get("/api/plugins").await;
    server.post("/api/plugins/route/hello/x", "").await;
    server.post("/api/plugins/route/down/x", "").await;
    assert_eq!(
        *server.backend.observed.lock().unwrap(),
        [
            (None, 200), // the admin API about a plugin is not its traffic
            (None, 404), // unknown names never become metric labels
            (None, 200),
            (Some("hello".to_owned()), 201),
            (Some("down".to_owned()), 503),
        ]
    );
    server.stop().await.unwrap();
}
