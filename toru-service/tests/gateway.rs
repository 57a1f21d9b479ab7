//! The real torud serving the example plugins: routing in both protocols,
//! bodies, KV through the plugin and the admin API, auth and limits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_protocols_are_routed_and_listed() {
    let setup = Setup::new();
    let torud = setup.start().await;

    let instance = torud.get("/api/instance").await.json()["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        uuid::Uuid::parse_str(&instance).unwrap().get_version_num(),
        4
    );

    let hello = torud.get("/api/plugins/route/hello/").await;
    assert_eq!(hello.status, 200, "{}", hello.text());
    assert_eq!(hello.json()["instance_id"], instance.as_str());

    let legacy = torud.get("/api/plugins/route/hello-py/?x=1").await;
    assert_eq!(legacy.status, 200, "{}", legacy.text());
    assert_eq!(legacy.json()["instance_id"], instance.as_str());

    let plugins = torud.get("/api/plugins").await.json();
    let ids: Vec<_> = plugins
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"hello") && ids.contains(&"hello-py"),
        "{ids:?}"
    );
    let hello = torud.plugin("hello").await;
    for field in [
        "id",
        "name",
        "version",
        "author",
        "icon",
        "route",
        "protocol",
        "enabled",
        "running",
        "health",
        "state",
        "pid",
        "restarts",
        "error",
        "socket_path",
    ] {
        assert!(
            hello.get(field).is_some(),
            "plugin object lacks {field}: {hello}"
        );
    }
    assert_eq!(hello["protocol"], 2);
    assert_eq!(hello["health"], "healthy");
    assert_eq!(torud.plugin("hello-py").await["protocol"], 1);
    assert_eq!(torud.get("/api/plugins/nope").await.status, 404);
    assert_eq!(torud.get("/api/plugins/route/nope/").await.status, 404);

    let bundle = torud.get("/api/plugins/hello/bundle.js").await;
    assert_eq!(bundle.status, 200);
    assert!(bundle.text().contains("window.ToruPlugins"));
    assert_eq!(bundle.headers["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_bodies_are_echoed_byte_for_byte() {
    let setup = Setup::new();
    let torud = setup.start().await;
    let body: Bytes = (0..300_000u32)
        .map(|i| (i * 31 % 256) as u8)
        .collect::<Vec<_>>()
        .into();
    let echo = torud
        .unix("POST", "/api/plugins/route/hello/echo", body.clone())
        .await;
    assert_eq!(echo.status, 200);
    assert!(echo.body == body, "echo differs");
    // Protocol 1 carries text only: a clear 400, not garbage.
    let legacy = torud
        .unix(
            "POST",
            "/api/plugins/route/hello-py/echo",
            Bytes::from_static(&[0xff, 0xfe]),
        )
        .await;
    assert_eq!(legacy.status, 400, "{}", legacy.text());
    let text = torud
        .unix("POST", "/api/plugins/route/hello-py/echo", "héllo")
        .await;
    assert_eq!((text.status, text.text().as_str()), (200, "héllo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_is_shared_by_plugin_and_admin_api_and_survives_a_restart() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let put = torud
        .unix("PUT", "/api/plugins/route/hello/kv/colour", "blue")
        .await;
    assert_eq!(put.status, 204, "{}", put.text());
    let kv = |body: &str| body.to_owned();
    let get = torud
        .unix(
            "POST",
            "/api/plugins/hello/kv",
            kv(r#"{"action":"get","key":"colour"}"#),
        )
        .await;
    assert_eq!(get.json()["value"], "blue");
    let set = torud
        .unix(
            "POST",
            "/api/plugins/hello/kv",
            kv(r#"{"action":"set","key":"size","value":"XL"}"#),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let via_plugin = torud.get("/api/plugins/route/hello/kv/size").await;
    assert_eq!(via_plugin.text(), "XL");
    // Another plugin's storage is separate.
    let other = torud
        .unix(
            "POST",
            "/api/plugins/hello-py/kv",
            kv(r#"{"action":"get","key":"colour"}"#),
        )
        .await;
    assert_eq!(other.json()["value"], serde_json::Value::Null);
    let bad = torud
        .unix(
            "POST",
            "/api/plugins/hello/kv",
            kv(r#"{"action":"explode"}"#),
        )
        .await;
    assert_eq!(bad.status, 400);

    let instance = torud.get("/api/instance").await.json();
    let (code, _) = torud.stop();
    assert_eq!(code, Some(0));
    let torud = setup.start().await;
    assert_eq!(
        torud.get("/api/instance").await.json(),
        instance,
        "instance id changed"
    );
    assert_eq!(
        torud.get("/api/plugins/route/hello/kv/colour").await.text(),
        "blue"
    );
    let get = torud
        .unix(
            "POST",
            "/api/plugins/hello/kv",
            kv(r#"{"action":"get","key":"size"}"#),
        )
        .await;
    assert_eq!(get.json()["value"], "XL");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_the_token_and_unix_does_not() {
    let setup = Setup::new();
    let torud = setup.start().await;
    let token = torud.token();
    assert!(token.len() >= 32);
    let mode = std::fs::metadata(&torud.token_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let health = torud
        .tcp_with(request("GET", "/api/health", Bytes::new(), None))
        .await;
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, "ok".into())
    );
    for path in [
        "/api/plugins",
        "/api/instance",
        "/metrics",
        "/api/plugins/route/hello/",
    ] {
        let none = torud
            .tcp_with(request("GET", path, Bytes::new(), None))
            .await;
        assert_eq!(none.status, 401, "{path} without a token");
        let wrong = torud
            .tcp_with(request("GET", path, Bytes::new(), Some("nope")))
            .await;
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        assert!(wrong.json()["error"].is_string());
        assert_eq!(
            torud.tcp("GET", path, Bytes::new()).await.status,
            200,
            "{path} with the token"
        );
    }
    assert_eq!(torud.get("/api/plugins").await.status, 200);
    let metrics = torud.get("/metrics").await.text();
    assert!(metrics.contains("toru_plugin_state"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_headers_are_refused() {
    let setup = Setup::new();
    let torud = setup.start().await;
    let big = torud
        .unix(
            "POST",
            "/api/plugins/route/hello/echo",
            vec![0u8; 9 * 1024 * 1024],
        )
        .await;
    assert_eq!(big.status, 413);
    let mut huge_header = request("GET", "/api/health", Bytes::new(), None);
    huge_header
        .headers_mut()
        .insert("x-big", "a".repeat(100 * 1024).parse().unwrap());
    let answer = torud.tcp_with(huge_header).await;
    assert_eq!(answer.status, 431);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_to_a_legacy_plugin_all_succeed() {
    let setup = Setup::new();
    let torud = std::sync::Arc::new(setup.start().await);
    // More at once than the plugin's listen backlog (16) would hold.
    let calls: Vec<_> = (0..64)
        .map(|_| {
            let torud = torud.clone();
            tokio::spawn(async move { torud.get("/api/plugins/route/hello-py/").await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
}

/// A request that fails on the plugin's side is logged by torud once, with
/// the plugin, the request path and the cause chain; a 404 is not logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_forward_is_logged_once_with_plugin_path_and_cause() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let pid = torud.plugin("hello").await["pid"].as_u64().unwrap() as u32;
    let slow = torud.probe();
    let request =
        tokio::spawn(async move { slow.get("/api/plugins/route/hello/slow?ms=10000").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    signal(pid, "KILL");
    let answer = request.await.unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert_eq!(torud.get("/api/plugins/route/nosuch/").await.status, 404);
    let (_, log) = torud.stop();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{log}");
    let line = failed[0];
    assert!(
        line.contains("WARN")
            && line.contains("plugin=\"hello\"")
            && line.contains("/slow?ms=10000")
            && line.contains("status=502")
            && line.contains("error="),
        "{line}"
    );
    let said = |l: &&str| l.contains(" WARN ") || l.contains(" INFO ");
    assert!(
        !log.lines().filter(said).any(|l| l.contains("nosuch")),
        "a 404 was logged: {log}"
    );
}

/// A plugin's request metrics count what its clients sent it through the gateway, not
/// what the administrator asked torud about it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_forwarded_requests_count_as_a_plugin_s_traffic() {
    let setup = Setup::new();
    let torud = setup.start().await;
    let count = |metrics: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("toru_http_requests_total{plugin=\"hello\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let before = count(&torud.get("/metrics").await.text());
    for path in [
        "/api/plugins/hello",
        "/api/plugins/hello/logs",
        "/api/plugins/hello/license",
        "/api/plugins/nosuch",
    ] {
        torud.get(path).await;
    }
    torud
        .unix(
            "POST",
            "/api/plugins/hello/kv",
            r#"{"action":"get","key":"k"}"#,
        )
        .await;
    assert_eq!(count(&torud.get("/metrics").await.text()), before);
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 200);
    assert_eq!(
        torud.get("/api/plugins/route/hello/nosuch").await.status,
        404
    );
    let metrics = torud.get("/metrics").await.text();
    assert_eq!(count(&metrics), before + 2, "{metrics}");
    // Labelled by the plugin's id, here reached by its route.
    assert_eq!(torud.get("/api/plugins/route/hello-py/").await.status, 200);
    let metrics = torud.get("/metrics").await.text();
    assert!(
        metrics.contains("toru_http_requests_total{plugin=\"hello-py\",class=\"2xx\"} 1"),
        "{metrics}"
    );
}

/// A protocol-1 plugin that answers `/status/N` with status N and `/sleep` after 3 s.
const ODD_PLUGIN: &str = r#"
import json, os, socket, struct, time

def frame(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data

path = os.environ["TORU_PLUGIN_SOCKET"]
if os.path.exists(path):
    os.remove(path)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(16)
while True:
    conn, _ = server.accept()
    with conn:
        while True:
            header = frame(conn, 4)
            if header is None:
                break
            message = json.loads(frame(conn, struct.unpack(">I", header)[0]))
            if message.get("type") != "http":
                continue
            request = message["payload"]["payload"]
            status = 200
            if request["path"].startswith("/status/"):
                status = int(request["path"].split("/")[2])
            elif request["path"] == "/sleep":
                time.sleep(3)
            answer = {"type": "http", "request_id": message["request_id"],
                      "payload": {"status": status, "headers": {}, "body": "odd"}}
            data = json.dumps(answer).encode()
            try:
                conn.sendall(struct.pack(">I", len(data)) + data)
            except OSError:
                break
"#;

/// When a plugin misbehaves the operator is told: an answer with a status that is not
/// a final HTTP status (99, 101, 1000) is a 502, a late one a 504, and each is logged
/// once with the plugin, the request path and the cause. A plugin's own 4xx/5xx are its
/// answers, not torud's news.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_s_invalid_or_late_answer_is_logged_with_plugin_path_and_cause() {
    let mut setup = Setup::empty();
    let code = setup.dir.path().join("odd.py");
    std::fs::write(&code, ODD_PLUGIN).unwrap();
    script_plugin(
        &setup.plugins,
        "odd",
        &metadata("odd", "/odd", 1),
        &format!("exec python3 {}", code.display()),
    );
    setup.top = "request_timeout = \"1s\"".into();
    let mut torud = setup.start().await;
    torud.wait_state("odd", "running").await;
    for status in [99, 101, 1000] {
        let answer = torud
            .get(&format!("/api/plugins/route/odd/status/{status}"))
            .await;
        assert_eq!(answer.status, 502, "{status}: {}", answer.text());
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains(&format!("invalid status {status}")),
            "{}",
            answer.text()
        );
    }
    for status in [200, 299, 404, 599] {
        let answer = torud
            .get(&format!("/api/plugins/route/odd/status/{status}"))
            .await;
        assert_eq!(answer.status, status);
    }
    assert_eq!(torud.get("/api/plugins/route/odd/sleep").await.status, 504);
    let (_, log) = torud.stop();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("request failed"))
        .collect();
    assert_eq!(failed.len(), 4, "{log}");
    for (line, (path, status, cause)) in failed.iter().zip([
        ("/status/99", 502, "invalid status 99"),
        ("/status/101", 502, "invalid status 101"),
        ("/status/1000", 502, "invalid status 1000"),
        ("/sleep", 504, "did not answer within"),
    ]) {
        assert!(
            line.contains("WARN")
                && line.contains("plugin=\"odd\"")
                && line.contains(&format!("path=\"{path}\""))
                && line.contains(&format!("status={status}"))
                && line.contains(cause),
            "{line}"
        );
    }
}
