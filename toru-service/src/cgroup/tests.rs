//! Against a directory laid out like cgroupfs (the kernel's side is played
//! by files), and against the real cgroup2 mount for what only the kernel does.

use std::path::Path;
use std::time::Duration;

use super::*;

/// A cgroup directory as the kernel would show it, offering `controllers`.
fn fake(dir: &Path, controllers: &str) {
    std::fs::create_dir_all(dir).unwrap();
    for (file, text) in [
        ("cgroup.controllers", controllers),
        ("cgroup.subtree_control", ""),
        ("cgroup.procs", ""),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn limits() -> ResourceLimits {
    ResourceLimits {
        memory_max: Some(Max::Value(256 << 20)),
        memory_swap_max: None,
        pids_max: Some(Max::Value(64)),
        cpu_max: Some(Max::Value(50_000)),
    }
}

fn with_limits(id: &str, limits: ResourceLimits) -> BTreeMap<String, PluginSettings> {
    let mut plugins = BTreeMap::new();
    plugins.insert(
        id.to_owned(),
        PluginSettings {
            limits,
            ..PluginSettings::default()
        },
    );
    plugins
}

#[test]
fn take_over_moves_torud_enables_the_offered_controllers_and_kills_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("toru.service");
    fake(&root, "cpuset cpu io memory hugetlb pids rdma misc\n");
    let leftover = root.join("plugins/old");
    fake(&leftover, "");
    fake(&leftover.join("nested"), "");

    let mut cgroups = Cgroups::at(&root);
    cgroups.take_over().unwrap();

    assert_eq!(
        read(root.join("supervisor/cgroup.procs")),
        std::process::id().to_string()
    );
    assert_eq!(
        read(root.join("cgroup.subtree_control")),
        "+memory +pids +cpu"
    );
    assert_eq!(
        read(root.join("plugins/cgroup.subtree_control")),
        "+memory +pids +cpu"
    );
    assert_eq!(cgroups.enabled(), ["memory", "pids", "cpu"]);
    // The leftover was killed as a whole (its removal needs the real
    // cgroupfs, where the files are not files: see the test below).
    assert_eq!(read(leftover.join("cgroup.kill")), "1");
}

#[test]
fn limits_are_written_where_the_controllers_exist() {
    let tmp = tempfile::tempdir().unwrap();
    fake(tmp.path(), "cpu memory pids");
    let mut cgroups = Cgroups::at(tmp.path());
    cgroups.take_over().unwrap();
    assert_eq!(cgroups.missing(&limits()), Vec::<&str>::new());
    assert_eq!(
        cgroups.warn_unenforced(&with_limits("hello", limits())),
        None
    );

    let group = cgroups.create("hello", &limits()).unwrap();
    let dir = tmp.path().join("plugins/hello");
    assert_eq!(group.dir(), dir);
    assert_eq!(read(dir.join("memory.max")), "268435456");
    assert_eq!(read(dir.join("pids.max")), "64");
    assert_eq!(read(dir.join("cpu.max")), "50000 100000");
    assert!(group.name().ends_with("/plugins/hello"), "{}", group.name());

    let unlimited = ResourceLimits {
        memory_max: Some(Max::Unlimited),
        memory_swap_max: None,
        pids_max: None,
        cpu_max: Some(Max::Unlimited),
    };
    cgroups.create("other", &unlimited).unwrap();
    let dir = tmp.path().join("plugins/other");
    assert_eq!(read(dir.join("memory.max")), "max");
    assert_eq!(read(dir.join("cpu.max")), "max 100000");
    assert!(!dir.join("pids.max").exists());

    for bad in ["", "..", "a/b"] {
        assert!(cgroups.create(bad, &limits()).is_err(), "{bad:?}");
    }
}

#[test]
fn missing_controllers_are_named_once_and_their_limits_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    fake(tmp.path(), "hugetlb\n");
    let mut cgroups = Cgroups::at(tmp.path());
    cgroups.take_over().unwrap();
    assert!(cgroups.enabled().is_empty());
    assert!(!tmp.path().join("plugins/cgroup.subtree_control").exists());
    assert_eq!(cgroups.missing(&limits()), ["memory", "pids", "cpu"]);

    let message = cgroups
        .warn_unenforced(&with_limits("hello", limits()))
        .expect("a warning");
    for needle in ["cpu, memory, pids", "hugetlb", "memory_max", "hello"] {
        assert!(message.contains(needle), "{needle} not in {message}");
    }
    // Once: not again at start, nor when a plugin group is made.
    assert_eq!(
        cgroups.warn_unenforced(&with_limits("hello", limits())),
        None
    );
    let group = cgroups.create("hello", &limits()).unwrap();
    for file in ["memory.max", "pids.max", "cpu.max"] {
        assert!(!group.dir().join(file).exists(), "{file} written");
    }
    // No limit configured, nothing to say.
    let quiet = Cgroups::at(tmp.path());
    assert_eq!(
        quiet.warn_unenforced(&with_limits("x", ResourceLimits::default())),
        None
    );
}

#[test]
fn events_stats_and_procs_are_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fake(dir, "");
    assert!(!group::populated(dir).unwrap());
    std::fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    assert!(group::populated(dir).unwrap());
    assert!(!group::populated(&dir.join("gone")).unwrap());

    let plugin = PluginGroup::new(dir.to_owned(), "/x".into(), ResourceLimits::default());
    assert_eq!(
        plugin.usage(),
        Usage {
            memory_bytes: None,
            cpu_usec: Some(0)
        }
    );
    std::fs::write(dir.join("memory.current"), "1048576\n").unwrap();
    std::fs::write(
        dir.join("cpu.stat"),
        "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n",
    )
    .unwrap();
    assert_eq!(
        plugin.usage(),
        Usage {
            memory_bytes: Some(1 << 20),
            cpu_usec: Some(1234)
        }
    );
    std::fs::write(dir.join("cgroup.procs"), "12\n345\n").unwrap();
    assert_eq!(group::procs(dir).unwrap(), [12, 345]);
}

#[test]
fn a_group_that_does_not_empty_is_reported_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    fake(tmp.path(), "");
    std::fs::write(tmp.path().join("cgroup.events"), "populated 1\n").unwrap();
    let err = group::remove_tree(tmp.path(), Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    assert_eq!(read(tmp.path().join("cgroup.kill")), "1");
}

#[tokio::test]
async fn the_child_places_itself_before_exec() {
    let tmp = tempfile::tempdir().unwrap();
    let group = PluginGroup::new(
        tmp.path().to_owned(),
        "/x".into(),
        ResourceLimits::default(),
    );
    std::fs::write(tmp.path().join("cgroup.procs"), "").unwrap();
    let status = group
        .spawn(tokio::process::Command::new("true"))
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(status.success());
    assert_eq!(read(tmp.path().join("cgroup.procs")), "0");

    // When the move fails, the program never runs.
    std::fs::remove_file(tmp.path().join("cgroup.procs")).unwrap();
    std::os::unix::fs::symlink("/dev/full", tmp.path().join("cgroup.procs")).unwrap();
    let marker = tmp.path().join("ran");
    let mut command = tokio::process::Command::new("touch");
    command.arg(&marker);
    let err = group.spawn(command).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(!marker.exists(), "the program ran outside its group");
}

/// A fresh group under the real cgroup2 mount, removed even on panic.
struct RealGroup(PathBuf);

impl Drop for RealGroup {
    fn drop(&mut self) {
        let _ = group::remove_tree(&self.0, KILL_TIMEOUT);
    }
}

#[tokio::test]
async fn on_the_real_cgroupfs_a_group_is_joined_before_exec_and_killed_whole() {
    let Some(mount) = detect::cgroup2_mount().unwrap() else {
        println!("SKIPPED: no cgroup2 file system is mounted here");
        return;
    };
    let name = format!("toru-unit-{}", std::process::id());
    let real = RealGroup(mount.join(&name));
    std::fs::create_dir(&real.0).unwrap();
    let group = PluginGroup::new(
        real.0.clone(),
        format!("/{name}"),
        ResourceLimits::default(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let mut command = tokio::process::Command::new("sh");
    command.arg("-c").arg(format!(
        "sleep 1000 & echo $! > {p}; setsid sleep 1000 & echo $! >> {p}; exec sleep 1000",
        p = pids.display()
    ));
    let mut child = group.spawn(command).unwrap();
    let pid = child.id().unwrap();
    let own = read(format!("/proc/{pid}/cgroup"));
    assert_eq!(detect::unified_path(&own), Some(group.name()), "{own}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let helpers: Vec<u32> = loop {
        let found: Vec<u32> = std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .collect();
        if found.len() == 2 {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "helpers not started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(group::populated(&real.0).unwrap());

    group.remove().unwrap();
    assert!(!real.0.exists(), "group not removed");
    let _ = child.wait().await;
    for helper in helpers {
        let stat = std::fs::read_to_string(format!("/proc/{helper}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        assert!(
            stat.is_empty() || stat.contains(") Z "),
            "helper {helper} survived: {stat}"
        );
    }
}

#[test]
fn limits_are_rewritten_live_and_the_changes_said() {
    let tmp = tempfile::tempdir().unwrap();
    fake(tmp.path(), "cpu memory pids");
    let mut cgroups = Cgroups::at(tmp.path());
    cgroups.take_over().unwrap();
    let group = cgroups.create("spin", &limits()).unwrap();
    let dir = tmp.path().join("plugins/spin");
    // Where swap is accounted (the file exists), memory_max bounds it: 0 unless set.
    std::fs::write(dir.join("memory.swap.max"), "max").unwrap();
    assert!(
        cgroups
            .update(&group, "spin", &limits())
            .unwrap()
            .is_empty()
    );

    let mut faster = limits();
    faster.cpu_max = Some(Max::Value(20_000));
    faster.pids_max = None;
    let changes = cgroups.update(&group, "spin", &faster).unwrap();
    assert_eq!(changes, ["pids_max 64 -> unset", "cpu_max 50% -> 20%"]);
    assert_eq!(read(dir.join("cpu.max")), "20000 100000");
    assert_eq!(read(dir.join("pids.max")), "max");
    assert_eq!(group.limits(), faster);

    let mut swap = faster;
    swap.memory_swap_max = Some(Max::Value(64 << 20));
    let changes = cgroups.update(&group, "spin", &swap).unwrap();
    assert_eq!(changes, ["memory_swap_max 0 -> 64M"]);
    assert_eq!(read(dir.join("memory.swap.max")), "67108864");
}

#[test]
fn a_limit_the_kernel_refuses_names_the_plugin_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    fake(tmp.path(), "cpu memory pids");
    let mut cgroups = Cgroups::at(tmp.path());
    cgroups.take_over().unwrap();
    let group = cgroups.create("spin", &limits()).unwrap();
    // A file the kernel would refuse: here, one that cannot be written.
    let cpu = tmp.path().join("plugins/spin/cpu.max");
    std::fs::remove_file(&cpu).unwrap();
    std::fs::create_dir(&cpu).unwrap();
    let mut changed = limits();
    changed.cpu_max = Some(Max::Value(999_000));
    let error = cgroups.update(&group, "spin", &changed).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("`[plugins.spin] cpu_max`"), "{text}");
    assert!(text.contains("cpu.max = 999000 100000"), "{text}");
    assert_eq!(group.limits(), limits(), "the old limits stay in force");
}
