//! Every scenario of `conformance/` (the exact frames both sides send) replayed
//! against the SDK's runtime over a real Unix socket, with the test as the host: the
//! same files `toructl plugins check` and the Python SDK's tests replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use support::*;
use toru_plugin_api::PluginServer;
use toru_plugin_api::conformance::replay;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_keeps_every_scenario() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance");
    let mut names: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for path in names {
        let scenario = std::fs::read_to_string(&path).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("t.sock");
        let server = PluginServer::bind(&socket, TestPlugin::default())
            .unwrap()
            .answering_checker_conventions();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        let mut stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
        let replayed = tokio::time::timeout(
            LONG,
            replay(
                &mut stream,
                &serde_json::json!({"plugin_id": "test"}),
                &scenario,
            ),
        )
        .await;
        assert!(
            matches!(replayed, Ok(Ok(()))),
            "{}: {replayed:?}",
            path.display()
        );
        let _ = stop.send(());
        let served = tokio::time::timeout(LONG, serving).await.unwrap().unwrap();
        assert!(served.is_ok(), "{}: {served:?}", path.display());
    }
}

/// The replayer fails where the plugin differs: a scenario expecting what the SDK does
/// not send is reported at its line.
#[tokio::test]
async fn a_scenario_the_runtime_does_not_keep_fails_at_its_line() {
    let running = start(TestPlugin::default()).await;
    let mut stream = tokio::net::UnixStream::connect(&running.path)
        .await
        .unwrap();
    let scenario = concat!(
        r#"{"from": "host", "header": {"type": "init", "id": 1, "protocol": 2, "instance_id": "550e8400-e29b-41d4-a716-446655440000", "plugin_id": "t"}}"#,
        "\n",
        r#"{"from": "plugin", "header": {"type": "init_ok", "id": 1, "protocol": 2}}"#,
        "\n",
        r#"{"from": "host", "header": {"type": "http_request", "id": 2, "method": "GET", "path": "/instance", "headers": []}}"#,
        "\n",
        r#"{"from": "plugin", "header": {"type": "http_response", "id": 2, "status": 200}, "body_hex": "00"}"#,
        "\n",
    );
    let err = replay(
        &mut stream,
        &serde_json::json!({"plugin_id": "test"}),
        scenario,
    )
    .await
    .unwrap_err();
    assert_eq!(err.line, 4, "{err}");
    assert!(err.message.contains("differ"), "{err}");
}
