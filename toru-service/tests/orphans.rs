//! A torud killed outright where it has no cgroup (the process-group
//! fallback of `--dev` and of containers without delegation): its plugins
//! die with it, and what they started is ended by the next torud.
//!
//! These tests run torud in the root cgroup, where it cannot take a
//! subtree over: the fallback, as the first assertion checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// Waits up to 30 s for `pid` to be gone.
async fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + LONG;
    while !is_gone(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) outlived torud"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_torud_in_the_fallback_takes_its_plugins_and_the_next_ends_their_helpers() {
    let setup = Setup::new();
    let helper_pid_file = setup.dir.path().join("helper.pid");
    // A plugin that leaves a helper in its process group, as many do.
    script_plugin(
        &setup.plugins,
        "helper",
        &metadata("helper", "/helper", 2),
        &format!(
            "sleep 1000 &\necho $! > {}\nexec {}",
            helper_pid_file.display(),
            hello_binary().display()
        ),
    );
    let mut torud = setup.start().await;
    let mut pids = Vec::new();
    for id in ["hello", "hello-py", "helper"] {
        let plugin = torud.plugin(id).await;
        assert_eq!(plugin["state"], "running", "{plugin}");
        assert!(plugin["cgroup"].is_null(), "not the fallback: {plugin}");
        pids.push((id, plugin["pid"].as_u64().unwrap() as u32));
    }
    let helper: u32 = std::fs::read_to_string(&helper_pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();

    // SIGKILL to torud alone: nothing of torud's runs to stop the plugins.
    let mut child = torud.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    for (id, pid) in &pids {
        wait_gone(*pid, id).await;
    }
    // What the kernel's signal cannot reach: the helper, in the plugin's group.
    assert!(
        !is_gone(helper),
        "the helper died too; the test proves less than it says"
    );

    // The next torud ends it before it starts plugins of its own.
    let mut next = setup.start().await;
    wait_gone(helper, "the helper").await;
    for (id, old) in &pids {
        let plugin = next.plugin(id).await;
        assert_eq!(plugin["state"], "running", "{plugin}");
        assert_ne!(plugin["pid"].as_u64(), Some(u64::from(*old)), "{plugin}");
    }
    let (code, stderr) = next.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("killed what an earlier torud left running: helper: pid"),
        "{stderr}"
    );
    // A clean stop leaves no note behind.
    let notes: Vec<_> = std::fs::read_dir(setup.runtime.join("pids"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(notes.is_empty(), "{notes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_dies_with_torud_also_when_not_isolated() {
    let mut setup = Setup::new();
    setup.top = "isolate_plugins = false".to_owned();
    let mut torud = setup.start().await;
    let pid = torud.plugin("hello").await["pid"].as_u64().unwrap() as u32;
    let mut child = torud.child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    wait_gone(pid, "hello").await;
}
