//! Plugins that die, hang, misbehave or are slow, under the real torud.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_colliding_plugins_are_listed_with_the_reason() {
    let setup = Setup::new();
    script_plugin(&setup.plugins, "broken", "not json", "sleep 60");
    script_plugin(
        &setup.plugins,
        "twin",
        &metadata("hello", "/twin", 2),
        "sleep 60",
    );
    script_plugin(
        &setup.plugins,
        "samepath",
        &metadata("other", "/hello", 2),
        "sleep 60",
    );
    script_plugin(
        &setup.plugins,
        "badroute",
        &metadata("bad-route", "/a/b", 2),
        "sleep 60",
    );
    std::fs::write(setup.plugins.join("notexec"), "#!/bin/sh\n").unwrap();
    std::fs::write(setup.plugins.join(".hidden"), "#!/bin/sh\n").unwrap();
    let torud = setup.start().await;
    let plugins = torud.get("/api/plugins").await.json();
    let by_path = |name: &str| {
        plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["path"].as_str().unwrap().ends_with(name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} not listed: {plugins}"))
    };
    for (name, reason) in [
        ("broken", "metadata"),
        ("twin", "already used"),
        ("samepath", "already used"),
        ("badroute", "route"),
    ] {
        let plugin = by_path(name);
        assert_eq!(plugin["state"], "invalid", "{plugin}");
        assert!(
            plugin["error"].as_str().unwrap().contains(reason),
            "{plugin}"
        );
        assert_eq!(plugin["pid"], serde_json::Value::Null);
    }
    assert!(!plugins.to_string().contains("notexec") && !plugins.to_string().contains(".hidden"));
    assert_eq!(torud.plugin("hello").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_plugin_is_restarted_and_serves_again() {
    let setup = Setup::new();
    let torud = setup.start().await;
    let before = torud.plugin("hello").await;
    let pid = before["pid"].as_u64().unwrap() as u32;
    signal(pid, "KILL");
    let deadline = Instant::now() + LONG;
    loop {
        let plugin = torud.plugin("hello").await;
        if plugin["state"] == "running" && plugin["pid"] != before["pid"] {
            assert_eq!(plugin["restarts"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {plugin}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 200);
    let events = torud.get("/api/events?plugin=hello").await.json();
    let kinds: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        kinds.contains(&"exited".to_owned()) && kinds.contains(&"restarted".to_owned()),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_keeps_dying_fails_and_enable_revives_it() {
    let mut setup = Setup::empty();
    let marker = setup.dir.path().join("starts");
    script_plugin(
        &setup.plugins,
        "crasher",
        &metadata("crasher", "/crasher", 2),
        &format!(
            "echo started >> {}\nenv > {}.env\nexit 3",
            marker.display(),
            marker.display()
        ),
    );
    setup.extra = "max_failures = 3\nfailure_window = \"1m\"\n".to_owned();
    let torud = setup.start().await;
    let failed = torud.wait_state("crasher", "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("exited with code 3"),
        "{failed}"
    );
    let starts = || std::fs::read_to_string(&marker).unwrap().lines().count();
    assert_eq!(starts(), 3);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(starts(), 3, "restarts went on after failed");
    let route = torud.get("/api/plugins/route/crasher/").await;
    assert_eq!(route.status, 503);

    // No systemd variable of torud's leaks; the plugin's own are there.
    let env = std::fs::read_to_string(format!("{}.env", marker.display())).unwrap();
    assert!(
        env.contains("TORU_PLUGIN_ID=crasher")
            && env.contains("TORU_INSTANCE_ID=")
            && env.contains("TORU_PLUGIN_SOCKET=")
    );

    let enabled = torud
        .unix("POST", "/api/plugins/crasher/enable", Bytes::new())
        .await;
    assert_eq!(enabled.json()["success"], true);
    let deadline = Instant::now() + LONG;
    while starts() < 4 {
        assert!(Instant::now() < deadline, "enable did not start it again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    torud.wait_state("crasher", "failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_disabled_states_persist_across_restarts() {
    let mut setup = Setup::new();
    script_plugin(
        &setup.plugins,
        "crasher",
        &metadata("crasher", "/crasher", 2),
        "exit 1",
    );
    setup.extra = "max_failures = 2\n".to_owned();
    let mut torud = setup.start().await;
    torud.wait_state("crasher", "failed").await;
    let disabled = torud
        .unix("POST", "/api/plugins/hello/disable", Bytes::new())
        .await;
    assert_eq!(disabled.status, 200);
    torud.wait_state("hello", "disabled").await;
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 404);
    assert_eq!(torud.stop().0, Some(0));

    let torud = setup.start().await;
    assert_eq!(torud.plugin("crasher").await["state"], "failed");
    assert_eq!(torud.plugin("hello").await["state"], "disabled");
    assert_eq!(torud.plugin("hello").await["enabled"], false);
    torud
        .unix("POST", "/api/plugins/hello/enable", Bytes::new())
        .await;
    torud.wait_state("hello", "running").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_plugin_times_out_while_others_proceed() {
    let mut setup = Setup::new();
    setup.top = "request_timeout = \"1s\"".to_owned();
    let torud = Arc::new(setup.start().await);
    let slow = {
        let torud = torud.clone();
        tokio::spawn(async move { torud.get("/api/plugins/route/hello/slow?ms=5000").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 200);
    assert_eq!(torud.get("/api/plugins/route/hello-py/").await.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "others waited: {:?}",
        started.elapsed()
    );
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert!(slow.json()["error"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_slow_requests_run_in_parallel() {
    let setup = Setup::new();
    let torud = Arc::new(setup.start().await);
    let started = Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let torud = torud.clone();
            tokio::spawn(async move {
                torud
                    .get("/api/plugins/route/hello/slow?ms=500")
                    .await
                    .status
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_plugin_mid_request_answers_502_at_once() {
    let setup = Setup::new();
    let torud = Arc::new(setup.start().await);
    let pid = torud.plugin("hello").await["pid"].as_u64().unwrap() as u32;
    let slow = {
        let torud = torud.clone();
        tokio::spawn(async move { torud.get("/api/plugins/route/hello/slow?ms=20000").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    signal(pid, "KILL");
    let answer = slow.await.unwrap();
    assert_eq!(answer.status, 502, "{}", answer.text());
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "{:?}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_a_request_in_flight_and_stops_every_plugin() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let hello = torud.plugin("hello").await["pid"].as_u64().unwrap() as u32;
    let legacy = torud.plugin("hello-py").await["pid"].as_u64().unwrap() as u32;
    let probe = torud.probe();
    let in_flight =
        tokio::spawn(async move { probe.get("/api/plugins/route/hello/slow?ms=1000").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, stderr) = tokio::task::spawn_blocking(move || torud.stop())
        .await
        .unwrap();
    let answer = in_flight.await.unwrap();
    assert_eq!(
        answer.status,
        200,
        "in-flight request cut: {}",
        answer.text()
    );
    assert_eq!(code, Some(0), "{stderr}");
    for pid in [hello, legacy] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "plugin {pid} left running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_plugin_is_found_by_ping_and_restarted() {
    let mut setup = Setup::new();
    setup.extra = "[health]\nping_interval = \"200ms\"\nping_timeout = \"300ms\"\n".to_owned();
    let torud = setup.start().await;
    let before = torud.plugin("hello").await;
    let pid = before["pid"].as_u64().unwrap() as u32;
    signal(pid, "STOP");
    let deadline = Instant::now() + LONG;
    loop {
        let plugin = torud.plugin("hello").await;
        if plugin["state"] == "running" && plugin["pid"] != before["pid"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "hung plugin not restarted: {plugin}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the hung process was left behind"
    );
    let events = torud
        .get("/api/events?plugin=hello")
        .await
        .json()
        .to_string();
    assert!(events.contains("\"hung\""), "{events}");
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_that_hangs_or_floods_makes_the_plugin_invalid() {
    let mut setup = Setup::new();
    setup.extra = "[health]\nmetadata_timeout = \"500ms\"\n".to_owned();
    let hang = setup.plugins.join("hang");
    std::fs::write(&hang, "#!/bin/sh\nsleep 60\n").unwrap();
    let flood = setup.plugins.join("flood");
    std::fs::write(
        &flood,
        "#!/bin/sh\nyes '{\"id\":\"x\"}' | head -c 1000000\n",
    )
    .unwrap();
    for path in [&hang, &flood] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    let started = Instant::now();
    let torud = setup.start().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        torud.plugin("hang").await["error"]
            .as_str()
            .unwrap()
            .contains("did not finish")
    );
    assert!(
        torud.plugin("flood").await["error"]
            .as_str()
            .unwrap()
            .contains("more than")
    );
    assert_eq!(torud.plugin("hello").await["state"], "running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_a_plugin_leaves_no_process_or_socket_behind() {
    let setup = Setup::empty();
    let sleeper = setup.dir.path().join("sleeper.pid");
    // A plugin that starts a helper process of its own, then serves.
    script_plugin(
        &setup.plugins,
        "wrapper",
        &metadata("wrapper", "/wrapper", 2),
        &format!(
            "sleep 1000 &\necho $! > {}\nexec {}",
            sleeper.display(),
            hello_binary().display()
        ),
    );
    let torud = setup.start().await;
    let plugin = torud.wait_state("wrapper", "running").await;
    let socket = std::path::PathBuf::from(plugin["socket_path"].as_str().unwrap());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(socket.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let helper: u32 = std::fs::read_to_string(&sleeper)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(std::path::Path::new(&format!("/proc/{helper}")).exists());

    let disabled = torud
        .unix("POST", "/api/plugins/wrapper/disable", Bytes::new())
        .await;
    assert_eq!(disabled.status, 200);
    torud.wait_state("wrapper", "disabled").await;
    let deadline = Instant::now() + LONG;
    while std::path::Path::new(&format!("/proc/{helper}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the plugin's helper process survived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!socket.exists(), "stale socket left behind");
}
