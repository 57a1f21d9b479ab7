//! torud under systemd's protocols, with systemd's own tools where they
//! exist: socket activation through the real `systemd-socket-activate`, and
//! sd_notify read from a datagram socket the test binds as `NOTIFY_SOCKET`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

/// The notify socket: every datagram torud sends, with arrival times.
struct Notify {
    socket: UnixDatagram,
    path: PathBuf,
    seen: Vec<(Instant, String)>,
}

impl Notify {
    fn bind(dir: &std::path::Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self {
            socket,
            path,
            seen: Vec::new(),
        }
    }

    /// Reads datagrams until one contains `line` (or `within` passes).
    fn wait_for(&mut self, line: &str, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        if let Some((at, _)) = self.seen.iter().find(|(_, m)| m.lines().any(|l| l == line)) {
            return *at;
        }
        let mut buf = vec![0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "no {line:?} within {within:?}; seen: {:?}",
                self.messages()
            );
            if let Ok(n) = self.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let at = Instant::now();
                let hit = message.lines().any(|l| l == line);
                self.seen.push((at, message));
                if hit {
                    return at;
                }
            }
        }
    }

    /// Everything received in the next `period`.
    fn collect(&mut self, period: Duration) -> Vec<(Instant, String)> {
        let end = Instant::now() + period;
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while Instant::now() < end {
            if let Ok(n) = self.socket.recv(&mut buf) {
                got.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
        self.seen.extend(got.clone());
        got
    }

    fn messages(&self) -> Vec<String> {
        self.seen.iter().map(|(_, m)| m.clone()).collect()
    }
}

/// A plugin that takes `delay` to start, then runs `hello` under its own id.
fn slow_plugin(setup: &Setup, id: &str, delay: &str) {
    script_plugin(
        &setup.plugins,
        id,
        &metadata(id, &format!("/{id}"), 2),
        &format!("sleep {delay}\nexec {}", hello_binary().display()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_ready_after_plugins_watchdog_reload_and_stopping() {
    let setup = Setup::empty();
    slow_plugin(&setup, "slow", "1");
    let mut notify = Notify::bind(setup.dir.path());
    setup.write_config();
    let started = Instant::now();
    let mut command = Command::new(TORUD);
    command
        .arg("--config")
        .arg(&setup.config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "1000000")
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef");
    let mut torud = setup.launch(command).await;

    // READY=1 only once the slow plugin runs (it needs a second to start).
    let ready = notify.wait_for("READY=1", LONG);
    assert!(
        ready.duration_since(started) >= Duration::from_millis(900),
        "READY before the plugin could start"
    );
    assert_eq!(torud.plugin("slow").await["state"], "running");
    let status = notify
        .messages()
        .into_iter()
        .find(|m| m.contains("READY=1"))
        .unwrap();
    assert!(status.contains("STATUS=serving 1/1 plugins"), "{status}");

    // Watchdog pings at about half of WATCHDOG_USEC (1 s).
    let pings: Vec<Instant> = notify
        .collect(Duration::from_millis(2600))
        .into_iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(at, _)| at)
        .collect();
    assert!(
        (4..=7).contains(&pings.len()),
        "{} pings in 2.6 s",
        pings.len()
    );
    for pair in pings.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(
            gap > Duration::from_millis(300) && gap < Duration::from_millis(800),
            "gap {gap:?}"
        );
    }

    // Frozen: no pings. Thawed: pings again.
    signal(torud.pid(), "STOP");
    let frozen = notify.collect(Duration::from_millis(1500));
    signal(torud.pid(), "CONT");
    assert!(
        !frozen.iter().any(|(_, m)| m.contains("WATCHDOG=1")),
        "pings while stopped: {frozen:?}"
    );
    notify.seen.clear();
    notify.wait_for("WATCHDOG=1", Duration::from_secs(3));

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, a new plugin started, READY=1.
    slow_plugin(&setup, "fresh", "0");
    notify.seen.clear();
    signal(torud.pid(), "HUP");
    notify.wait_for("RELOADING=1", Duration::from_secs(5));
    let reloading = notify
        .messages()
        .into_iter()
        .find(|m| m.contains("RELOADING=1"))
        .unwrap();
    assert!(
        reloading.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading}"
    );
    notify.wait_for("READY=1", LONG);
    assert_eq!(torud.plugin("fresh").await["state"], "running");
    assert_eq!(torud.get("/api/plugins/route/fresh/").await.status, 200);
    assert_eq!(
        torud.plugin("slow").await["restarts"],
        0,
        "an unchanged plugin was restarted"
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    notify.seen.clear();
    let (code, stderr) = tokio::task::spawn_blocking(move || torud.stop())
        .await
        .unwrap();
    notify.wait_for("STOPPING=1", Duration::from_secs(5));
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemds_variables_never_reach_plugins() {
    let setup = Setup::empty();
    let dump = setup.dir.path().join("env");
    script_plugin(
        &setup.plugins,
        "envdump",
        &metadata("envdump", "/envdump", 2),
        &format!(
            "env > {}\nexec {}",
            dump.display(),
            hello_binary().display()
        ),
    );
    let notify = Notify::bind(setup.dir.path());
    setup.write_config();
    let mut command = Command::new(TORUD);
    command
        .arg("--config")
        .arg(&setup.config)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "30000000")
        .env("WATCHDOG_PID", "1")
        .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef")
        .env("JOURNAL_STREAM", "8:12345")
        .env("LISTEN_FDNAMES", "http");
    let torud = setup.launch(command).await;
    torud.wait_state("envdump", "running").await;
    let env = std::fs::read_to_string(&dump).unwrap();
    for leaked in [
        "NOTIFY_SOCKET",
        "LISTEN_",
        "WATCHDOG_",
        "INVOCATION_ID",
        "JOURNAL_STREAM",
    ] {
        assert!(!env.contains(leaked), "{leaked} reached the plugin:\n{env}");
    }
    assert!(env.contains("TORU_PLUGIN_ID=envdump"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_the_passed_listeners_without_binding_its_own() {
    let setup = Setup::new();
    // The config names other addresses: torud must not bind them.
    let unused_port = setup.port;
    setup.write_config();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unix = setup.dir.path().join("activated.sock");
    let mut command = Command::new("systemd-socket-activate");
    command
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-l")
        .arg(&unix)
        .arg("--fdname=http:admin")
        .arg(TORUD)
        .arg("--config")
        .arg(&setup.config);
    let child = command
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // systemd-socket-activate binds first and execs torud at the first
    // connection: that connection must be answered.
    let torud = Torud {
        child: Some(child),
        port,
        unix: unix.clone(),
        token_file: setup.state.join("admin.token"),
        log: None,
    };
    let deadline = Instant::now() + LONG;
    while !unix.exists() {
        assert!(
            Instant::now() < deadline,
            "systemd-socket-activate never bound"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = torud.get("/api/health").await;
    assert_eq!(first.status, 200);
    torud.wait_state("hello", "running").await;
    let status = torud.get("/api/status").await.json();
    let listeners = status["listeners"].to_string();
    assert!(
        listeners.contains(&format!("127.0.0.1:{port}")) && listeners.contains("activated.sock"),
        "{status}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", unused_port)).is_err(),
        "torud bound its configured port too"
    );
    assert!(
        !setup.runtime.join("toru.sock").exists(),
        "torud bound its configured socket too"
    );
    // Over the passed TCP listener the token is required, as on any TCP listener.
    let tcp = torud
        .tcp_with(request("GET", "/api/plugins", bytes::Bytes::new(), None))
        .await;
    assert_eq!(tcp.status, 401);
    assert_eq!(
        torud
            .tcp("GET", "/api/plugins/route/hello/", bytes::Bytes::new())
            .await
            .status,
        200
    );
}

#[test]
fn a_passed_descriptor_that_is_not_a_listening_socket_is_refused() {
    // systemd-socket-activate --datagram passes a datagram socket.
    let dir = tempfile::tempdir().unwrap();
    let setup_config = dir.path().join("toru.toml");
    std::fs::write(
        &setup_config,
        format!(
            "state_dir = \"{}\"\nruntime_dir = \"{}\"\nplugin_dirs = []\n",
            dir.path().join("s").display(),
            dir.path().join("r").display()
        ),
    )
    .unwrap();
    let sock = dir.path().join("dgram.sock");
    let mut child = Command::new("systemd-socket-activate")
        .arg("--datagram")
        .arg("-l")
        .arg(&sock)
        .arg(TORUD)
        .arg("--config")
        .arg(&setup_config)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LONG;
    while !sock.exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    // A datagram socket activates at the first datagram.
    let client = UnixDatagram::unbound().unwrap();
    client.send_to(b"hi", &sock).unwrap();
    let (code, stderr) = wait_exit(&mut child);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("not a stream socket"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_restarts_replaced_stops_removed_and_keeps_the_rest() {
    let setup = Setup::new();
    slow_plugin(&setup, "swap", "0");
    let torud = setup.start().await;
    let keep = torud.plugin("hello-py").await["pid"].clone();
    let old_swap = torud.plugin("swap").await["pid"].as_u64().unwrap() as u32;
    let old_hello = torud.plugin("hello").await["pid"].as_u64().unwrap() as u32;

    // A new binary for swap (same id), hello removed, a broken config
    // change refused first.
    std::fs::write(&setup.config, "this is not toml").unwrap();
    signal(torud.pid(), "HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        torud.get("/api/health").await.status,
        200,
        "a broken config took torud down"
    );
    setup.write_config();
    std::thread::sleep(Duration::from_millis(20));
    slow_plugin(&setup, "swap", "0.1");
    std::fs::remove_file(setup.plugins.join("hello")).unwrap();
    signal(torud.pid(), "HUP");

    let deadline = Instant::now() + LONG;
    loop {
        let plugins = torud.get("/api/plugins").await.json();
        let ids: Vec<String> = plugins
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect();
        let swap = plugins
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == "swap")
            .cloned();
        if !ids.contains(&"hello".to_owned())
            && swap.as_ref().is_some_and(|s| {
                s["state"] == "running" && s["pid"].as_u64() != Some(u64::from(old_swap))
            })
        {
            break;
        }
        assert!(Instant::now() < deadline, "reload not applied: {plugins}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        torud.plugin("hello-py").await["pid"],
        keep,
        "an unchanged plugin was restarted"
    );
    for pid in [old_swap, old_hello] {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of a replaced or removed plugin survived"
        );
    }
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 404);
    let events = torud.get("/api/events").await.json().to_string();
    assert!(events.contains("\"removed\""), "{events}");
}

/// A plugin posing as `hello` (`exec hello` under other metadata).
fn impostor(setup: &Setup, file: &str, id: &str, route: &str) {
    script_plugin(
        &setup.plugins,
        file,
        &metadata(id, route, 2),
        &format!("exec {}", hello_binary().display()),
    );
}

fn listed<'a>(plugins: &'a serde_json::Value, id: &str) -> Vec<&'a serde_json::Value> {
    plugins
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["id"] == id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_never_hands_a_running_plugin_s_id_or_route_to_a_newcomer() {
    let setup = Setup::new();
    let torud = setup.start().await;
    let hello = torud.plugin("hello").await;
    // Both sort before `hello`, which used to make them win.
    impostor(&setup, "0dupe", "hello", "/dupe");
    impostor(&setup, "0route", "thief", "/hello");
    signal(torud.pid(), "HUP");

    let deadline = Instant::now() + LONG;
    let plugins = loop {
        let plugins = torud.get("/api/plugins").await.json();
        if !listed(&plugins, "0dupe").is_empty() && !listed(&plugins, "0route").is_empty() {
            break plugins;
        }
        assert!(Instant::now() < deadline, "reload not applied: {plugins}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let hello_path = setup.plugins.join("hello");
    for (file, reason) in [
        (
            "0dupe",
            format!("id \"hello\" is already used by {}", hello_path.display()),
        ),
        (
            "0route",
            format!(
                "route \"/hello\" is already used by {}",
                hello_path.display()
            ),
        ),
    ] {
        let entry = listed(&plugins, file);
        assert_eq!(entry.len(), 1, "{plugins}");
        assert_eq!(entry[0]["state"], "invalid", "{plugins}");
        assert_eq!(entry[0]["error"], reason.as_str(), "{plugins}");
    }
    let now = torud.plugin("hello").await;
    assert_eq!(now["state"], "running", "{now}");
    assert_eq!(now["pid"], hello["pid"], "hello was restarted: {now}");
    assert_eq!(now["path"], hello["path"], "{now}");
    assert_eq!(torud.get("/api/plugins/route/hello/").await.status, 200);
    assert_eq!(listed(&plugins, "hello").len(), 1, "{plugins}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_first_start_the_first_file_name_wins_a_shared_id_and_both_are_listed() {
    let setup = Setup::empty();
    impostor(&setup, "b-second", "twin", "/twin-b");
    impostor(&setup, "a-first", "twin", "/twin-a");
    let torud = setup.start().await;
    let plugins = torud.get("/api/plugins").await.json();
    let twin = torud.plugin("twin").await;
    assert_eq!(twin["state"], "running", "{plugins}");
    assert!(
        twin["path"].as_str().unwrap().ends_with("/a-first"),
        "{twin}"
    );
    let loser = listed(&plugins, "b-second");
    assert_eq!(loser.len(), 1, "{plugins}");
    assert_eq!(loser[0]["state"], "invalid");
    assert!(
        loser[0]["error"].as_str().unwrap().ends_with("/a-first"),
        "{plugins}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_start_extends_the_start_timeout() {
    let setup = Setup::empty();
    slow_plugin(&setup, "slow", "3");
    let mut notify = Notify::bind(setup.dir.path());
    setup.write_config();
    let mut command = Command::new(TORUD);
    command
        .arg("--config")
        .arg(&setup.config)
        .env("NOTIFY_SOCKET", &notify.path);
    let _torud = setup.launch(command).await;
    notify.wait_for("READY=1", LONG);
    let messages = notify.messages();
    let extend = messages
        .iter()
        .position(|m| m.lines().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC=")));
    let ready = messages.iter().position(|m| m.contains("READY=1"));
    assert!(extend.is_some() && extend < ready, "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("STATUS=starting: serving 0/1 plugins; slow starting")),
        "{messages:?}"
    );
}
