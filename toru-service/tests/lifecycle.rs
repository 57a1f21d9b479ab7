//! torud's own life: configuration checks, the state directory lock, a
//! corrupt database, and what it prints when it cannot run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use support::*;

#[test]
fn check_config_lists_every_error_with_its_line_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toru.toml");
    // A type error used to end the listing and drop the unknown keys before it.
    std::fs::write(
        &config,
        "lisen = []\nrequest_timeout = 30\n[restart]\nmax_failures = \"five\"\nbackof = \"1s\"\n[plugins.a]\npids_max = 0\n",
    )
    .unwrap();
    let output = Command::new(TORUD)
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let shown = config.display();
    for needle in [
        format!("{shown}:1: unknown key `lisen`"),
        format!("{shown}:2: `request_timeout` = 30 is of the wrong type"),
        format!("{shown}:4: `restart.max_failures` = \"five\" is of the wrong type"),
        format!("{shown}:5: unknown key `restart.backof`"),
        format!("{shown}:7: `plugins.a.pids_max` = 0"),
    ] {
        assert!(stderr.contains(&needle), "{needle} missing from:\n{stderr}");
    }
    assert_eq!(stderr.lines().count(), 5, "{stderr}");

    // A plugin folder that does not exist: a warning, not an error.
    std::fs::write(
        &config,
        format!(
            "request_timeout = \"5s\"\nplugin_dirs = [\"{}\", \"/no/such/plugins\"]\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let output = Command::new(TORUD)
        .args(["--check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: `plugin_dirs`: /no/such/plugins cannot be read"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_plugin_folder_is_named_in_torud_s_log() {
    let mut setup = Setup::empty();
    setup.plugins = "/no/such/plugins".into();
    let mut torud = setup.start().await;
    let (_, stderr) = torud.stop();
    assert!(
        stderr.contains("/no/such/plugins cannot be read"),
        "{stderr}"
    );
}

#[test]
fn a_missing_named_config_is_an_error() {
    let output = Command::new(TORUD)
        .args(["--config", "/nonexistent/toru.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/toru.toml"));
}

#[test]
fn a_bad_worker_thread_count_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("toru.toml");
    std::fs::write(
        &config,
        format!(
            "listen = []\nstate_dir = \"{0}/state\"\nruntime_dir = \"{0}/run\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    // tokio itself panics on these.
    for value in ["0", "four", "-1", ""] {
        let output = Command::new(TORUD)
            .args(["--config"])
            .arg(&config)
            .env("TOKIO_WORKER_THREADS", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(78), "{value:?}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "TOKIO_WORKER_THREADS={value} is not a number of threads"
            )),
            "{value:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{value:?}: {stderr}");
    }
}

#[test]
fn version_is_printed() {
    let output = Command::new(TORUD).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_torud_on_the_same_state_names_the_holder() {
    let setup = Setup::empty();
    let torud = setup.start().await;
    let mut second_setup = Setup::empty();
    second_setup.state = setup.state.clone();
    let (code, stderr) = second_setup.run_to_exit();
    assert_ne!(code, Some(0));
    assert!(stderr.contains(&format!("pid {}", torud.pid())), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_corrupt_database_is_one_clear_error() {
    let setup = Setup::empty();
    std::fs::create_dir_all(&setup.state).unwrap();
    std::fs::write(setup.state.join("toru.redb"), vec![0x5a; 8192]).unwrap();
    let (code, stderr) = setup.run_to_exit();
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains("toru.redb") && stderr.contains("is damaged"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unusable_state_directory_is_one_clear_error() {
    let mut setup = Setup::empty();
    let file = setup.dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    setup.state = file.join("state");
    let (code, stderr) = setup.run_to_exit();
    assert_ne!(code, Some(0));
    assert!(stderr.contains("a-file/state"), "{stderr}");
}

/// A reload that shortens `shutdown_timeout` governs the next shutdown: the
/// gateway's drain and the plugins' grace both take the new value (the drain
/// used to keep the value torud started with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_shutdown_timeout_governs_the_next_shutdown() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    // shutdown_timeout is "5s" in the setup's file; make it 1s.
    let text = std::fs::read_to_string(&setup.config)
        .unwrap()
        .replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"1s\"");
    std::fs::write(&setup.config, text).unwrap();
    signal(torud.pid(), "HUP");
    let deadline = std::time::Instant::now() + LONG;
    while !torud.log_text().contains("reload applied") {
        assert!(std::time::Instant::now() < deadline, "{}", torud.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A request that will still be in flight when the drain ends.
    let slow = torud.probe();
    let in_flight =
        tokio::spawn(async move { slow.get("/api/plugins/route/hello/slow?ms=20000").await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let (code, stderr) = torud.stop();
    let took = started.elapsed();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("requests still in flight after the grace period")
            && stderr.contains("grace=1s"),
        "{stderr}"
    );
    assert!(
        took < std::time::Duration::from_millis(4500),
        "the stop took {took:?}"
    );
    in_flight.abort();
}

/// torud tidies up after itself: its first lines name every address it serves on;
/// on exit it removes the socket files it bound (0600, its owner's alone) and the
/// folders of its plugins under runtime_dir, as a reload does for a removed plugin;
/// a fatal error is said once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torud_leaves_nothing_behind_and_says_a_fatal_error_once() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let socket = setup.runtime.join("toru.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let plugin_dirs = setup.runtime.join("plugins");
    assert!(plugin_dirs.join("hello").is_dir());
    assert!(plugin_dirs.join("hello-py").is_dir());

    // A plugin removed by a reload takes its folder with it.
    std::fs::remove_file(setup.plugins.join("hello-py.py")).unwrap();
    let reloaded = torud.unix("POST", "/api/reload", "").await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    assert!(!plugin_dirs.join("hello-py").exists());
    assert!(plugin_dirs.join("hello").is_dir());

    let (code, log) = torud.stop();
    assert_eq!(code, Some(0), "{log}");
    let listening = format!(
        "listening on 127.0.0.1:{}, unix:{}",
        setup.port,
        socket.display()
    );
    assert!(log.contains(&listening), "{listening} in {log}");
    assert!(!socket.exists(), "the admin socket is left behind");
    assert!(
        !plugin_dirs.join("hello").exists(),
        "a plugin folder is left behind"
    );

    // A fatal error (the port is taken): one line says it.
    let taken = std::net::TcpListener::bind(("127.0.0.1", setup.port)).unwrap();
    let (code, stderr) = setup.run_to_exit();
    drop(taken);
    assert_eq!(code, Some(1), "{stderr}");
    let said: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("cannot listen on"))
        .collect();
    assert_eq!(said.len(), 1, "{stderr}");
}
