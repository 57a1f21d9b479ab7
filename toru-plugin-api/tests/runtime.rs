//! The SDK runtime driven by the host side of protocol 2 (and by a raw peer
//! that misbehaves), over real Unix sockets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::join_all;
use support::*;
use toru_plugin_api::PluginError;
use toru_plugin_api::protocol::v2::{ErrorCode, Frame, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_requests_are_answered_out_of_order() {
    let running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let finished = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    // Request i sleeps (100 - i) * 4 ms: the last sent is the first done.
    let calls = (0..100u64).map(|i| {
        let (host, finished) = (host.clone(), finished.clone());
        async move {
            let path = format!("/sleep?ms={}&tag={i}", (100 - i) * 4);
            let response = host.http(get(&path), LONG).await.unwrap();
            finished.lock().unwrap().push(i);
            (i, response)
        }
    });
    for (i, response) in join_all(calls).await {
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body,
            i.to_string(),
            "request {i} got another's answer"
        );
    }
    let order = finished.lock().unwrap().clone();
    assert_eq!(order.len(), 100);
    assert!(
        order[0] > 50 && order[99] < 50,
        "answered in send order: {order:?}"
    );
    // One at a time this would take 100 sleeps, over 20 s.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_calls_interleave_with_http_requests() {
    let running = start(TestPlugin::default()).await;
    let kv = Arc::new(MemKv::default());
    let host = Arc::new(connect(&running, kv.clone()).await);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { host.http(get("/sleep?ms=300&tag=slow"), LONG).await })
    };
    let writes = (0..20).map(|i| {
        let host = host.clone();
        async move {
            let mut request = get(&format!("/kv?key=k{i:02}"));
            request.method = "POST".into();
            request.body = Bytes::from(vec![i as u8; 1000 + i]);
            host.http(request, LONG).await.unwrap()
        }
    });
    for (i, response) in join_all(writes).await.into_iter().enumerate() {
        assert_eq!(
            response.body,
            vec![i as u8; 1000 + i],
            "value {i} read back"
        );
    }
    assert_eq!(slow.await.unwrap().unwrap().body, "slow");
    assert_eq!(kv.snapshot().len(), 20);

    let list = host.http(get("/kv-list?prefix=k1"), LONG).await.unwrap();
    let keys: Vec<String> = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(keys, (10..20).map(|i| format!("k{i}")).collect::<Vec<_>>());
    let deleted = host.http(get("/kv-delete?key=k00"), LONG).await.unwrap();
    assert_eq!(deleted.body, "true");
    let again = host.http(get("/kv-delete?key=k00"), LONG).await.unwrap();
    assert_eq!(again.body, "false");
}

#[tokio::test]
async fn kv_listing_pages_through_more_keys_than_a_page() {
    let running = start(TestPlugin::default()).await;
    let kv = Arc::new(MemKv::default());
    for i in 0..2500 {
        kv.insert(format!("p/{i:05}"), Bytes::new());
    }
    kv.insert("o/other", Bytes::new());
    kv.insert("q/other", Bytes::new());
    let host = connect(&running, kv).await;
    let list = host.http(get("/kv-list?prefix=p/"), LONG).await.unwrap();
    let keys: Vec<String> = serde_json::from_slice(&list.body).unwrap();
    assert_eq!(keys.len(), 2500);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn kv_limits_come_back_as_errors_not_nulls() {
    let running = start(TestPlugin::default()).await;
    let host = connect(&running, Arc::default()).await;

    let long_key = "k".repeat(1025);
    let response = host
        .http(get(&format!("/kv?key={long_key}")), LONG)
        .await
        .unwrap();
    assert_eq!(response.status, 500);
    assert!(String::from_utf8_lossy(&response.body).contains("invalid_key"));

    let mut big = get("/kv?key=big");
    big.body = Bytes::from(vec![0; 1024 * 1024 + 1]);
    let response = host.http(big, LONG).await.unwrap();
    assert_eq!(response.status, 500);
    assert!(String::from_utf8_lossy(&response.body).contains("too_large"));

    let response = host.http(get("/kv?key="), LONG).await.unwrap();
    assert!(String::from_utf8_lossy(&response.body).contains("key is empty"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_answers_500_while_others_complete() {
    let running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let mut calls = Vec::new();
    for i in 0..10 {
        let host = host.clone();
        calls.push(tokio::spawn(async move {
            host.http(get(&format!("/sleep?ms=100&tag={i}")), LONG)
                .await
        }));
    }
    let panicked = host.http(get("/panic"), LONG).await.unwrap();
    assert_eq!(panicked.status, 500);
    assert!(String::from_utf8_lossy(&panicked.body).contains("panicked"));
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, 200);
    }
    assert_eq!(host.http(get("/echo"), LONG).await.unwrap().status, 200);
}

#[tokio::test]
async fn handler_errors_become_statuses() {
    let running = start(TestPlugin::default()).await;
    let host = connect(&running, Arc::default()).await;
    let failed = host.http(get("/fail"), LONG).await.unwrap();
    assert_eq!(failed.status, 500);
    let body: serde_json::Value = serde_json::from_slice(&failed.body).unwrap();
    assert_eq!(body["error"], "the handler failed on purpose");
    assert_eq!(host.http(get("/teapot"), LONG).await.unwrap().status, 418);
    assert_eq!(host.http(get("/nowhere"), LONG).await.unwrap().status, 404);
}

#[tokio::test]
async fn binary_bodies_and_repeated_headers_survive_the_trip() {
    let running = start(TestPlugin::default()).await;
    let host = connect(&running, Arc::default()).await;
    let mut request = get("/echo?x=1");
    request.method = "POST".into();
    request.headers.append("x-multi", "one".parse().unwrap());
    request.headers.append("x-multi", "two".parse().unwrap());
    request.body = (0..=255u8).cycle().take(300_000).collect::<Vec<_>>().into();
    let response = host.http(request.clone(), LONG).await.unwrap();
    assert_eq!(response.body, request.body);
    let values: Vec<_> = response.headers.get_all("x-multi").iter().collect();
    assert_eq!(values, ["one", "two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_requests_then_refuses_new_ones() {
    let running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { host.http(get("/sleep?ms=500&tag=done"), LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    host.shutdown(Duration::from_secs(5)).await.unwrap();
    let refused = host.http(get("/sleep?ms=0"), LONG).await;
    assert!(
        matches!(
            refused,
            Err(PluginError::Remote {
                code: ErrorCode::ShuttingDown,
                ..
            })
        ),
        "{refused:?}"
    );
    let slow = slow.await.unwrap().unwrap();
    assert_eq!((slow.status, slow.body), (200, Bytes::from("done")));
    let served = tokio::time::timeout(LONG, running.server)
        .await
        .unwrap()
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    assert!(!running.path.exists(), "socket file left behind");
    tokio::time::timeout(LONG, host.closed()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_shutdown_deadline_abandons_the_request_and_exits() {
    let running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let stuck = {
        let host = host.clone();
        tokio::spawn(async move { host.http(get("/sleep?ms=60000"), LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    host.shutdown(Duration::from_millis(200)).await.unwrap();
    let served = tokio::time::timeout(LONG, running.server)
        .await
        .unwrap()
        .unwrap();
    assert!(served.is_ok());
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    let stuck = stuck.await.unwrap();
    assert!(matches!(stuck, Err(PluginError::NotConnected)), "{stuck:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signal_drains_like_shutdown() {
    let mut running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let slow = {
        let host = host.clone();
        tokio::spawn(async move { host.http(get("/sleep?ms=300&tag=ok"), LONG).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    running.signal();
    assert_eq!(slow.await.unwrap().unwrap().body, "ok");
    assert!(
        tokio::time::timeout(LONG, running.server)
            .await
            .unwrap()
            .unwrap()
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_is_cancelled_in_the_plugin() {
    let plugin = TestPlugin::default();
    let finished = plugin.finished_slow.clone();
    let running = start(plugin).await;
    let host = connect(&running, Arc::default()).await;
    let result = host
        .http(get("/sleep?ms=400"), Duration::from_millis(50))
        .await;
    assert!(matches!(result, Err(PluginError::Timeout(_))), "{result:?}");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "the cancelled handler ran to the end"
    );
    // The connection is still good.
    assert_eq!(
        host.http(get("/sleep?ms=0"), LONG).await.unwrap().status,
        200
    );
    assert_eq!(finished.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_answered_while_handlers_are_busy() {
    let running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let busy: Vec<_> = (0..50)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move { host.http(get("/sleep?ms=1000"), LONG).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rtt = host.ping(Duration::from_millis(500)).await.unwrap();
    assert!(rtt < Duration::from_millis(500));
    for call in busy {
        call.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn init_gives_the_plugin_its_context() {
    let running = start(TestPlugin::default()).await;
    let host = connect(&running, Arc::default()).await;
    assert_eq!(
        host.http(get("/instance"), LONG).await.unwrap().body,
        INSTANCE
    );
    // A second connection is initialized without running init again.
    let second = connect(&running, Arc::default()).await;
    assert_eq!(
        second.http(get("/instance"), LONG).await.unwrap().body,
        INSTANCE
    );
}

#[tokio::test]
async fn a_failing_init_is_reported_and_stops_the_plugin() {
    let running = start(TestPlugin::default()).await;
    let stream = tokio::net::UnixStream::connect(&running.path)
        .await
        .unwrap();
    let mut params = init_params();
    params.config.insert("fail_init".into(), true.into());
    let kv: Arc<MemKv> = Arc::default();
    let result = toru_plugin_api::host::HostConnection::connect(stream, params, kv, LONG).await;
    match result {
        Err(PluginError::Remote { code, message }) => {
            assert_eq!(code, ErrorCode::InitFailed);
            assert!(message.contains("configured to fail"), "{message}");
        }
        other => panic!("expected init_failed, got {other:?}"),
    }
    let served = tokio::time::timeout(LONG, running.server)
        .await
        .unwrap()
        .unwrap();
    assert!(served.is_err(), "the plugin must exit with an error");
}

#[tokio::test]
async fn the_socket_is_private_and_a_stale_one_is_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let running = start(TestPlugin::default()).await;
    let mode = std::fs::metadata(&running.path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(running.path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    // A socket file left by a dead plugin is replaced; a regular file is not.
    let stale = running.dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(toru_plugin_api::PluginServer::bind(&stale, TestPlugin::default()).is_ok());
    let regular = running.dir.path().join("regular");
    std::fs::write(&regular, "precious").unwrap();
    assert!(toru_plugin_api::PluginServer::bind(&regular, TestPlugin::default()).is_err());
    assert_eq!(std::fs::read_to_string(&regular).unwrap(), "precious");
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection() {
    let running = start(TestPlugin::default()).await;
    let mut peer = RawPeer::initialized(&running.path).await;
    peer.send_raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]).await;
    assert!(peer.closed().await);
    let host = connect(&running, Arc::default()).await;
    assert_eq!(host.http(get("/echo"), LONG).await.unwrap().status, 200);
}

#[tokio::test]
async fn garbage_frames_get_errors_and_the_connection_survives() {
    let running = start(TestPlugin::default()).await;
    let mut peer = RawPeer::initialized(&running.path).await;

    peer.send_raw(&raw_frame(b"\x00garbage")).await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((None, ErrorCode::BadMessage))
    );

    peer.send_raw(&raw_frame(br#"{"type":"http_request","id":5,"method":7}"#))
        .await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((Some(5), ErrorCode::BadMessage))
    );

    peer.send_raw(&raw_frame(br#"{"type":"warp","id":6}"#))
        .await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((Some(6), ErrorCode::UnknownType))
    );

    // A host-bound message sent to the plugin.
    peer.send(Message::KvGet {
        id: 7,
        key: "k".into(),
    })
    .await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((Some(7), ErrorCode::UnexpectedMessage))
    );

    // An answer to a request the plugin never sent: ignored.
    peer.send(Message::KvValue {
        id: 999,
        found: true,
    })
    .await;
    peer.send(Message::Ping { id: 8 }).await;
    assert_eq!(peer.recv().await.unwrap().message, Message::Pong { id: 8 });
}

#[tokio::test]
async fn a_duplicate_request_id_is_refused_and_the_first_completes() {
    let running = start(TestPlugin::default()).await;
    let mut peer = RawPeer::initialized(&running.path).await;
    let request = |path: &str| Message::HttpRequest {
        id: 5,
        method: "GET".into(),
        path: path.into(),
        headers: Default::default(),
    };
    peer.send(request("/sleep?ms=300&tag=first")).await;
    peer.send(request("/sleep?ms=0&tag=second")).await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((Some(5), ErrorCode::DuplicateId))
    );
    let Frame { message, body } = peer.recv().await.unwrap();
    assert!(matches!(
        message,
        Message::HttpResponse {
            id: 5,
            status: 200,
            ..
        }
    ));
    assert_eq!(body, "first");
}

#[tokio::test]
async fn a_request_before_init_is_refused_and_the_connection_closed() {
    let running = start(TestPlugin::default()).await;
    let mut peer = RawPeer::connect(&running.path).await;
    peer.send(Message::Ping { id: 1 }).await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((Some(1), ErrorCode::UnexpectedMessage))
    );
    assert!(peer.closed().await);
}

#[tokio::test]
async fn a_truncated_frame_then_eof_closes_the_connection_cleanly() {
    let running = start(TestPlugin::default()).await;
    let mut peer = RawPeer::initialized(&running.path).await;
    peer.send_raw(&[0, 0, 0, 100, 0, 0]).await;
    peer.framed.get_mut().shutdown().await.unwrap();
    assert!(peer.closed().await);
    // The plugin still serves others.
    let host = connect(&running, Arc::default()).await;
    assert_eq!(host.http(get("/echo"), LONG).await.unwrap().status, 200);
}

use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn a_response_too_large_for_a_frame_becomes_a_500() {
    let running = start(TestPlugin::default()).await;
    let host = connect(&running, Arc::default()).await;
    let response = host.http(get("/huge"), LONG).await.unwrap();
    assert_eq!(response.status, 500);
    assert!(String::from_utf8_lossy(&response.body).contains("frame limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_falls_back_to_an_older_connection_when_the_newest_closes() {
    let running = start(TestPlugin::default()).await;
    let kv = Arc::new(MemKv::default());
    let older = connect(&running, kv.clone()).await;
    let newer = connect(&running, kv.clone()).await;
    drop(newer);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut request = get("/kv?key=still");
    request.body = Bytes::from("works");
    let response = older.http(request, LONG).await.unwrap();
    assert_eq!(
        (response.status, response.body),
        (200, Bytes::from("works"))
    );
}

#[tokio::test]
async fn an_init_for_protocol_1_is_refused() {
    let running = start(TestPlugin::default()).await;
    let mut peer = RawPeer::connect(&running.path).await;
    peer.send(Message::Init {
        id: 1,
        protocol: 1,
        instance_id: INSTANCE.into(),
        plugin_id: "test".into(),
        config: Default::default(),
        limits: Default::default(),
        license: None,
    })
    .await;
    assert_eq!(
        error_code(&peer.recv().await.unwrap()),
        Some((Some(1), ErrorCode::UnexpectedMessage))
    );
    assert!(peer.closed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_computes_before_any_await_holds_up_the_connection_but_loses_nothing() {
    // Handlers start in the connection's reader: one that answers without waiting
    // costs no task switch, and one that blocks holds the others back until it is done.
    let running = start(TestPlugin::default()).await;
    let host = Arc::new(connect(&running, Arc::default()).await);
    let spin = {
        let host = host.clone();
        tokio::spawn(async move { host.http(get("/spin?ms=200"), LONG).await })
    };
    let quick: Vec<_> = (0..10)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move { host.http(get(&format!("/sleep?ms=0&tag={i}")), LONG).await })
        })
        .collect();
    assert_eq!(spin.await.unwrap().unwrap().body, "spun");
    for (i, call) in quick.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap().body, i.to_string());
    }
    host.ping(Duration::from_secs(5)).await.unwrap();
}
