//! The Python SDK (`python/toru_plugin`): its own tests (the SDK against the protocol,
//! with the test as the host), and `examples/python/hello_v2.py` on it under the real
//! torud: every route, binary bodies, storage, a failing route, many requests at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use support::*;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn the_sdk_s_own_tests_pass() {
    let run = Command::new("python3")
        .args(["-m", "unittest", "discover", "-s", "tests"])
        .current_dir(repo().join("python"))
        // No bytecode left in the tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{report}");
    assert!(report.contains("OK"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_py2_serves_through_torud() {
    let setup = Setup::empty();
    // As `torud --dev` has it: a link to the example, which finds the SDK itself.
    std::os::unix::fs::symlink(
        repo().join("examples/python/hello_v2.py"),
        setup.plugins.join("hello-py2"),
    )
    .unwrap();
    let mut torud = setup.start().await;
    let plugin = torud.wait_state("hello-py2", "running").await;
    assert_eq!(plugin["protocol"], 2, "{plugin}");

    let greeting = torud.get("/api/plugins/route/hello-py2/").await;
    assert_eq!(greeting.status, 200, "{}", greeting.text());
    let instance = torud.get("/api/instance").await.json()["instance_id"].clone();
    assert_eq!(greeting.json()["instance_id"], instance);

    let binary: Vec<u8> = (0..=255).collect();
    let echo = torud
        .unix("POST", "/api/plugins/route/hello-py2/echo", binary.clone())
        .await;
    assert_eq!(echo.status, 200);
    assert_eq!(echo.body, Bytes::from(binary));

    let put = torud
        .unix("PUT", "/api/plugins/route/hello-py2/kv/my%20colour", "blue")
        .await;
    assert_eq!(put.status, 204, "{}", put.text());
    assert_eq!(
        torud
            .get("/api/plugins/route/hello-py2/kv/my%20colour")
            .await
            .text(),
        "blue"
    );
    let stored = torud
        .unix(
            "POST",
            "/api/plugins/hello-py2/kv",
            r#"{"action":"get","key":"my colour"}"#,
        )
        .await;
    assert_eq!(
        stored.json()["value"],
        "blue",
        "kept by torud, under its own id"
    );
    assert_eq!(
        torud
            .get("/api/plugins/route/hello-py2/kv/other")
            .await
            .status,
        404
    );

    let fail = torud.get("/api/plugins/route/hello-py2/fail").await;
    assert_eq!(fail.status, 500);
    assert!(fail.text().contains("fails on purpose"), "{}", fail.text());

    // Many at once over its one connection: 16 requests of 400 ms take far less than 16 × 400 ms.
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|_| {
            let torud = torud.probe();
            tokio::spawn(async move {
                torud
                    .get("/api/plugins/route/hello-py2/slow?ms=400")
                    .await
                    .status
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}: not concurrent",
        started.elapsed()
    );
    let plugin = torud.plugin("hello-py2").await;
    assert_eq!(plugin["state"], "running");
    assert_eq!(plugin["restarts"], 0, "{plugin}");

    let logs = torud.get("/api/plugins/hello-py2/logs").await.json();
    let lines = logs["logs"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "stored" && l["fields"]["key"] == "my colour"),
        "{logs}"
    );
    let (code, _) = torud.stop();
    assert_eq!(code, Some(0));
    let last = std::fs::read_to_string(setup.dir.path().join("torud-0.log")).unwrap_or_default();
    assert!(
        !last.contains("did not exit in time"),
        "hello-py2 did not stop on shutdown"
    );
}
