//! torud owning a real cgroup2 subtree, as under systemd's `Delegate=yes`:
//! each test starts it inside a fresh group under the cgroup2 mount.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;

/// A plugin that leaves helpers behind three ways (in its process group, in
/// a session of its own, double-forked to init), then serves as `hello`.
fn forker(setup: &Setup) -> std::path::PathBuf {
    let pids = setup.dir.path().join("helpers");
    script_plugin(
        &setup.plugins,
        "forker",
        &metadata("forker", "/forker", 2),
        &format!(
            "sleep 1000 & echo $! >> {p}\n\
             setsid sleep 1000 & echo $! >> {p}\n\
             ( sleep 1000 & echo $! >> {p} ) &\n\
             exec {hello}",
            p = pids.display(),
            hello = hello_binary().display()
        ),
    );
    pids
}

/// The three helpers' pids, once all are written.
async fn helpers(file: &Path) -> Vec<u32> {
    let deadline = Instant::now() + LONG;
    loop {
        let pids: Vec<u32> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.len() >= 3 {
            return pids;
        }
        assert!(Instant::now() < deadline, "helpers not started: {pids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// torud in a fresh test cgroup with the forker running and its three
/// helpers started; `None` where the machine has no writable cgroup2.
struct Forking {
    cgroup: TestCgroup,
    /// Kept for its temporary folder.
    setup: Setup,
    torud: Torud,
    /// Where the forker writes its helpers' pids.
    file: std::path::PathBuf,
    pids: Vec<u32>,
}

impl Forking {
    async fn start() -> Option<Self> {
        let cgroup = TestCgroup::new()?;
        let setup = Setup::empty();
        let file = forker(&setup);
        let torud = setup.start_in(&cgroup).await;
        torud.wait_state("forker", "running").await;
        let pids = helpers(&file).await;
        Some(Self {
            cgroup,
            setup,
            torud,
            file,
            pids,
        })
    }
}

async fn wait_gone(pids: &[u32], what: &str) {
    let deadline = Instant::now() + LONG;
    while let Some(pid) = pids.iter().find(|p| !is_gone(**p)) {
        assert!(
            Instant::now() < deadline,
            "helper {pid} survived {what}: in {}",
            cgroup_of(*pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torud_and_each_plugin_run_in_their_own_groups_with_usage_and_limits() {
    let Some(cgroup) = TestCgroup::new() else {
        return;
    };
    let mut setup = Setup::new();
    setup.extra =
        "[plugins.hello]\nmemory_max = \"64M\"\npids_max = 32\ncpu_max = \"50%\"\n".to_owned();
    let mut torud = setup.start_in(&cgroup).await;

    assert_eq!(
        cgroup_of(torud.pid()),
        format!("{}/supervisor", cgroup.name)
    );
    for id in ["hello", "hello-py"] {
        let plugin = torud.wait_state(id, "running").await;
        let pid = plugin["pid"].as_u64().unwrap() as u32;
        let expected = format!("{}/plugins/{id}", cgroup.name);
        assert_eq!(cgroup_of(pid), expected);
        assert_eq!(plugin["cgroup"], expected.as_str(), "{plugin}");
        assert!(plugin["cpu_usec"].is_u64(), "{plugin}");
    }

    let offered = cgroup.controllers();
    let has = |c: &str| offered.split_whitespace().any(|o| o == c);
    let group = cgroup.dir.join("plugins/hello");
    let plugin = torud.plugin("hello").await;
    assert_eq!(plugin["memory_bytes"].is_u64(), has("memory"), "{plugin}");
    if has("memory") {
        assert_eq!(
            std::fs::read_to_string(group.join("memory.max"))
                .unwrap()
                .trim(),
            (64 << 20).to_string()
        );
    }
    if has("pids") {
        assert_eq!(
            std::fs::read_to_string(group.join("pids.max"))
                .unwrap()
                .trim(),
            "32"
        );
    }
    if has("cpu") {
        assert_eq!(
            std::fs::read_to_string(group.join("cpu.max"))
                .unwrap()
                .trim(),
            "50000 100000"
        );
    }

    let metrics = torud.get("/metrics").await.text();
    assert!(
        metrics.contains("toru_plugin_cpu_seconds{plugin=\"hello\"}"),
        "{metrics}"
    );
    assert_eq!(
        metrics.contains("toru_plugin_memory_bytes{plugin=\"hello\"}"),
        has("memory"),
        "{metrics}"
    );

    let (code, stderr) = torud.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let missing: Vec<_> = ["cpu", "memory", "pids"]
        .into_iter()
        .filter(|c| !has(c))
        .collect();
    if missing.is_empty() {
        assert!(!stderr.contains("not available"), "{stderr}");
    } else {
        // On these machines: cgroup2 offers none of them.
        let line = stderr
            .lines()
            .find(|l| l.contains("cgroup controllers") && l.contains("not available"))
            .unwrap_or_else(|| panic!("no warning about missing controllers:\n{stderr}"));
        assert!(line.contains(&missing.join(", ")), "{line}");
        assert!(line.contains("hello"), "{line}");
        assert_eq!(
            stderr.matches("not available").count(),
            1,
            "warned more than once:\n{stderr}"
        );
    }
    assert!(!stderr.contains("process groups"), "{stderr}");
    assert_eq!(cgroup.plugin_groups(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_kills_everything_the_plugin_started() {
    let Some(f) = Forking::start().await else {
        return;
    };
    for pid in &f.pids {
        assert_eq!(cgroup_of(*pid), format!("{}/plugins/forker", f.cgroup.name));
    }

    let disabled = f
        .torud
        .unix("POST", "/api/plugins/forker/disable", Bytes::new())
        .await;
    assert_eq!(disabled.status, 200);
    let plugin = f.torud.wait_state("forker", "disabled").await;
    assert_eq!(plugin["cgroup"], serde_json::Value::Null, "{plugin}");
    wait_gone(&f.pids, "disable").await;
    assert_eq!(f.cgroup.plugin_groups(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_torud_kills_everything_its_plugins_started() {
    let Some(mut f) = Forking::start().await else {
        return;
    };

    let (code, stderr) = f.torud.stop();
    assert_eq!(code, Some(0), "{stderr}");
    wait_gone(&f.pids, "torud's SIGTERM").await;
    assert_eq!(f.cgroup.plugin_groups(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torud_started_after_one_was_killed_removes_what_it_left() {
    let Some(mut f) = Forking::start().await else {
        return;
    };

    f.torud.kill();
    // The premise: what a dead torud leaves behind is still running.
    assert!(
        f.pids.iter().all(|p| !is_gone(*p)),
        "helpers died with torud"
    );
    std::fs::remove_file(&f.file).unwrap();

    f.torud = f.setup.start_in(&f.cgroup).await;
    wait_gone(&f.pids, "a new torud's start").await;
    let plugin = f.torud.wait_state("forker", "running").await;
    let pid = plugin["pid"].as_u64().unwrap() as u32;
    assert_eq!(cgroup_of(pid), format!("{}/plugins/forker", f.cgroup.name));
    let fresh = helpers(&f.file).await;

    let (code, stderr) = f.torud.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("removed a plugin group left by a previous torud"),
        "{stderr}"
    );
    wait_gone(&fresh, "torud's SIGTERM").await;
    assert_eq!(f.cgroup.plugin_groups(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cgroup_shared_with_another_process_is_not_taken_over() {
    let Some(cgroup) = TestCgroup::new() else {
        return;
    };
    let mut other = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec sleep 1000"#)
        .arg(&cgroup.dir)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + LONG;
    while std::fs::read_to_string(cgroup.dir.join("cgroup.procs"))
        .unwrap()
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "the other process did not move");
        std::thread::sleep(Duration::from_millis(10));
    }
    let setup = Setup::new();
    let mut torud = setup.start_in(&cgroup).await;
    let plugin = torud.wait_state("hello", "running").await;
    assert_eq!(plugin["cgroup"], serde_json::Value::Null, "{plugin}");
    let pid = plugin["pid"].as_u64().unwrap() as u32;
    assert_eq!(cgroup_of(pid), cgroup.name);
    assert_eq!(cgroup_of(torud.pid()), cgroup.name);

    let (code, stderr) = torud.stop();
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("not delegated to torud alone")
            && stderr.contains("plugins run in process groups"),
        "{stderr}"
    );
    assert!(!cgroup.dir.join("supervisor").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_a_dying_plugin_take_everything_it_started_along() {
    let Some(f) = Forking::start().await else {
        return;
    };
    std::fs::remove_file(&f.file).unwrap();

    let restarted = f
        .torud
        .unix("POST", "/api/plugins/forker/restart", Bytes::new())
        .await;
    assert_eq!(restarted.status, 200);
    wait_gone(&f.pids, "restart").await;
    let second = helpers(&f.file).await;
    std::fs::remove_file(&f.file).unwrap();
    let plugin = f.torud.wait_state("forker", "running").await;

    // The plugin's main process dies: what it started goes with it.
    signal(plugin["pid"].as_u64().unwrap() as u32, "KILL");
    wait_gone(&second, "the plugin's death").await;
    let third = helpers(&f.file).await;
    let plugin = f.torud.wait_state("forker", "running").await;
    assert_eq!(
        cgroup_of(plugin["pid"].as_u64().unwrap() as u32),
        format!("{}/plugins/forker", f.cgroup.name)
    );
    for pid in third {
        assert_eq!(cgroup_of(pid), format!("{}/plugins/forker", f.cgroup.name));
    }
}
