//! torud under the real systemd-journald, run inside a private mount and PID
//! namespace by `tests/journald/ns.sh`: every plugin line is a journal entry
//! with `TORU_PLUGIN` and the priority of its level, torud's own lines carry
//! their fields, and with no journal socket torud says so and uses stderr.
//!
//! Needs root (unshare, mount), as every test on these machines runs.
//! Skipped, saying why, when util-linux's or systemd's tools are missing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const NS_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/journald/ns.sh");
const JOURNALD: &str = "/lib/systemd/systemd-journald";
/// torud's filter and the plugins' (they inherit `RUST_LOG`): every level
/// of a plugin's lines reaches the journal.
const RUST_LOG: &str = "debug,plugin=trace,hello=trace";

/// Why the test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = ["unshare", "nsenter", "systemd-cat", "journalctl"]
        .into_iter()
        .filter(|tool| !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()))
        .chain(Some(JOURNALD).filter(|j| !Path::new(j).is_file()))
        .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

macro_rules! skip_without_tools {
    () => {
        if let Some(missing) = missing_tools() {
            eprintln!("SKIPPED: {missing} not found (packages util-linux and systemd)");
            return;
        }
    };
}

/// `ns.sh` in its namespaces, with torud inside; stopped (or killed, and
/// with it everything in the namespace) when dropped.
struct Namespace {
    unshare: Child,
    /// Closing it tells `ns.sh` to stop torud and exit.
    lifeline: Option<ChildStdin>,
    /// The namespace's PID 1, as the host numbers it.
    leader: u32,
    /// `ns/pid` and `ns/mnt` of the leader, to prove nothing outlives it.
    namespaces: [String; 2],
    /// `ns.sh`'s stderr, and torud's in mode `no-journal`.
    log: PathBuf,
}

impl Namespace {
    fn start(setup: &Setup, mode: &str) -> Self {
        setup.write_config();
        let log = setup.dir.path().join(format!("{mode}.log"));
        let unshare = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--pid", "--fork"])
            .args(["--mount-proc", "--kill-child", "bash", NS_SH, mode, TORUD])
            .arg("--config")
            .arg(&setup.config)
            .env("RUST_LOG", RUST_LOG)
            .env("HOST_MNTNS", namespace("self", "mnt"))
            .env("LIFETIME", "120")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut namespace = Self {
            lifeline: None,
            leader: 0,
            namespaces: Default::default(),
            log,
            unshare,
        };
        namespace.lifeline = namespace.unshare.stdin.take();
        namespace.leader = namespace.find_leader();
        namespace.namespaces = ["pid", "mnt"].map(|ns| self::namespace(namespace.leader, ns));
        namespace
    }

    fn find_leader(&mut self) -> u32 {
        let id = self.unshare.id();
        let children = format!("/proc/{id}/task/{id}/children");
        let deadline = Instant::now() + LONG;
        loop {
            let text = std::fs::read_to_string(&children).unwrap_or_default();
            if let Some(pid) = text.split_whitespace().next() {
                return pid.parse().unwrap();
            }
            self.assert_running();
            assert!(Instant::now() < deadline, "unshare started no child");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.unshare.try_wait().unwrap() {
            panic!("ns.sh ended early ({status}): {}", self.log_text());
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// torud, once it serves and its plugins settled.
    async fn torud(&mut self, setup: &Setup) -> Torud {
        let torud = Torud {
            child: None,
            port: setup.port,
            unix: setup.runtime.join("toru.sock"),
            token_file: setup.state.join("admin.token"),
            log: None,
        };
        let deadline = Instant::now() + LONG;
        while tokio::net::UnixStream::connect(&torud.unix).await.is_err() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "torud did not listen: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        torud.wait_ready().await;
        torud
    }

    /// `journalctl ARGS -o json` inside the namespace, after journald wrote
    /// everything it received.
    fn journal(&self, args: &[&str]) -> Vec<Value> {
        let inside = |program: &str| {
            let mut command = Command::new("timeout");
            command
                .args(["10", "nsenter", "--mount", "--pid", "--target"])
                .arg(self.leader.to_string())
                .args([program, "--no-pager"]);
            command
        };
        let sync = inside("journalctl").arg("--sync").output().unwrap();
        assert!(sync.status.success(), "journalctl --sync: {sync:?}");
        let output = inside("journalctl")
            .args(["-o", "json"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "journalctl {args:?}: {output:?}");
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `journal(args)` once `done` holds for it (or 30 s passed): torud
    /// reads plugin lines a little after the plugin answered.
    fn journal_until(&self, args: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + LONG;
        loop {
            let entries = self.journal(args);
            if done(&entries) || Instant::now() > deadline {
                return entries;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Closes the lifeline and waits for `ns.sh` to stop torud and exit;
    /// asserts that no process is left in its namespaces.
    fn stop(mut self) -> ExitStatus {
        let status = self.finish();
        let left = processes_in(&self.namespaces);
        assert!(left.is_empty(), "left in the namespace: {left:?}");
        status
    }

    fn finish(&mut self) -> ExitStatus {
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                // --kill-child: the leader dies with unshare, and the kernel
                // kills the rest of its PID namespace with the leader.
                let _ = self.unshare.kill();
                return self.unshare.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if self.unshare.try_wait().ok().flatten().is_none() {
            self.finish();
        }
    }
}

/// `readlink /proc/PID/ns/NS`, e.g. `mnt:[4026532177]`.
fn namespace(pid: impl std::fmt::Display, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|link| link.display().to_string())
        .unwrap_or_default()
}

/// Processes on the host in any of `namespaces`.
fn processes_in(namespaces: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let inside = ["pid", "mnt"]
            .iter()
            .any(|ns| namespaces.contains(&namespace(&name, ns)));
        if inside {
            let cmdline = std::fs::read_to_string(format!("/proc/{name}/cmdline"));
            found.push(format!("{name} {}", cmdline.unwrap_or_default()));
        }
    }
    found
}

fn field<'a>(entry: &'a Value, name: &str) -> &'a str {
    entry[name].as_str().unwrap_or_default()
}

fn find<'a>(entries: &'a [Value], message: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| field(e, "MESSAGE") == message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_lines_are_journal_entries_with_the_priority_of_their_level() {
    skip_without_tools!();
    let setup = Setup::new();
    let mut ns = Namespace::start(&setup, "journal");
    let torud = ns.torud(&setup).await;

    // The plugin's level -> the entry's PRIORITY (`plain`: a line with no
    // level, written as it is).
    let levels = [
        ("error", "3"),
        ("warn", "4"),
        ("info", "6"),
        ("debug", "7"),
        ("trace", "7"),
        ("plain", "6"),
    ];
    let message = |level: &str| format!("journald test {level} line");
    for (level, _) in levels {
        let path = format!(
            "/api/plugins/route/hello/log?level={level}&msg={}",
            message(level).replace(' ', "%20")
        );
        assert_eq!(torud.get(&path).await.status, 204, "{path}");
    }

    let hello = ns.journal_until(&["TORU_PLUGIN=hello"], |entries| {
        levels
            .iter()
            .all(|(level, _)| !find(entries, &message(level)).is_empty())
    });
    for (level, priority) in levels {
        let found = find(&hello, &message(level));
        assert_eq!(found.len(), 1, "{level}: {hello:#?}");
        let entry = found[0];
        assert_eq!(field(entry, "PRIORITY"), priority, "{level}: {entry:#}");
        assert_eq!(field(entry, "TORU_PLUGIN"), "hello", "{entry:#}");
        assert_eq!(field(entry, "TARGET"), "plugin", "{entry:#}");
        assert_eq!(field(entry, "SYSLOG_IDENTIFIER"), "torud", "{entry:#}");
        // Native protocol, not a line of text on stderr.
        assert_eq!(field(entry, "_TRANSPORT"), "journal", "{entry:#}");
        let prefixed: Vec<_> = entry
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.starts_with("F_"))
            .collect();
        assert!(prefixed.is_empty(), "field prefix in {entry:#}");
    }
    let init = find(&hello, "hello initialized");
    assert_eq!(init.len(), 1, "{hello:#?}");
    assert_eq!(field(init[0], "PRIORITY"), "6");
    // The plugin's own fields, prefixed: `tracing::info!(instance_id = %id, ...)`.
    let instance = torud.get("/api/instance").await.json();
    assert_eq!(
        field(init[0], "TORU_FIELD_INSTANCE_ID"),
        instance["instance_id"].as_str().unwrap(),
        "{:#}",
        init[0]
    );
    let listening = find(&hello, "listening");
    assert!(
        field(listening[0], "TORU_FIELD_SOCKET").ends_with("hello.sock"),
        "{:#}",
        listening[0]
    );
    // Not the SDK's bookkeeping.
    assert!(init[0].get("TORU_FIELD_TARGET").is_none(), "{:#}", init[0]);
    assert!(
        init[0].get("TORU_FIELD_TIMESTAMP").is_none(),
        "{:#}",
        init[0]
    );

    // What README tells a sysadmin: -p warning keeps errors and warnings.
    let warnings = ns.journal(&["TORU_PLUGIN=hello", "-p", "warning"]);
    let mut messages: Vec<_> = warnings.iter().map(|e| field(e, "MESSAGE")).collect();
    messages.sort_unstable();
    assert_eq!(
        messages,
        [message("error"), message("warn")],
        "{warnings:#?}"
    );

    // The protocol-1 plugin's JSON lines, `"level": "info"`.
    let python = ns.journal(&["TORU_PLUGIN=hello-py"]);
    let listening: Vec<_> = python
        .iter()
        .filter(|e| field(e, "MESSAGE").starts_with("listening on "))
        .collect();
    assert_eq!(listening.len(), 1, "{python:#?}");
    assert_eq!(field(listening[0], "PRIORITY"), "6");

    // torud's own lines, with their fields as journal fields.
    let about_hello = ns.journal(&["SYSLOG_IDENTIFIER=torud", "PLUGIN=hello"]);
    let running = find(&about_hello, "plugin running");
    assert_eq!(running.len(), 1, "{about_hello:#?}");
    assert_eq!(field(running[0], "PRIORITY"), "6");
    assert_eq!(field(running[0], "_TRANSPORT"), "journal");
    assert!(
        field(running[0], "PID").parse::<u32>().is_ok(),
        "{running:#?}"
    );
    assert!(running[0].get("TORU_PLUGIN").is_none(), "{running:#?}");
    let own = ns.journal(&["SYSLOG_IDENTIFIER=torud", "TARGET=toru_service"]);
    assert_eq!(find(&own, "ready").len(), 1, "{own:#?}");

    // Nothing went to stderr: it would be an entry of the stdout transport.
    let text = ns.journal(&["_TRANSPORT=stdout"]);
    assert!(text.is_empty(), "lines on stderr: {text:#?}");

    let status = ns.stop();
    assert!(status.success(), "ns.sh: {status}");
}

/// A plugin whose stderr carries ten 10 MB lines and 100 MB of short ones
/// keeps running, none of its writes fails, torud's memory stays bounded,
/// and the line written after the flood reaches the logs API and the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_long_and_short_lines_costs_a_plugin_nothing() {
    skip_without_tools!();
    let setup = Setup::empty();
    let result = setup.dir.path().join("flood.result");
    let flood = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flood.py");
    script_plugin(
        &setup.plugins,
        "flood",
        &metadata("flood", "/flood", 2),
        &format!(
            "python3 {} {} &\nexec {}",
            flood.display(),
            result.display(),
            hello_binary().display()
        ),
    );
    let mut ns = Namespace::start(&setup, "journal");
    let torud = ns.torud(&setup).await;
    let pid = torud.plugin("flood").await["pid"].as_u64().unwrap();

    let deadline = Instant::now() + Duration::from_secs(300);
    while !result.exists() {
        assert!(Instant::now() < deadline, "the flood did not end");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(std::fs::read_to_string(&result).unwrap().trim(), "ok");

    // The plugin never stopped, and answers; a 20 KB line is no harm either.
    let plugin = torud.plugin("flood").await;
    assert_eq!(plugin["state"], "running", "{plugin}");
    assert_eq!(plugin["pid"].as_u64(), Some(pid), "{plugin}");
    assert_eq!(plugin["restarts"], 0, "{plugin}");
    let long = "m".repeat(20_000);
    let path = format!("/api/plugins/route/flood/log?level=plain&msg={long}");
    assert_eq!(torud.get(&path).await.status, 204);
    assert_eq!(
        torud
            .get("/api/plugins/route/flood/log?level=plain&msg=after%20all")
            .await
            .status,
        204
    );

    // The line comes through the plugin's stderr, the answer through its socket: two
    // readers in torud, so the line may reach the ring a moment after the answer.
    let deadline = Instant::now() + Duration::from_secs(30);
    let logs = loop {
        let logs = torud
            .get("/api/plugins/flood/logs?page_size=1000")
            .await
            .json();
        let last = logs["logs"].as_array().unwrap().last().cloned();
        if last.is_some_and(|l| l["message"] == "after all") || Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let messages: Vec<&str> = logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["message"].as_str())
        .collect();
    let tail = &messages[messages.len().saturating_sub(4)..];
    assert!(messages.contains(&"FINAL line after the flood"), "{tail:?}");
    assert_eq!(messages.last(), Some(&"after all"), "{tail:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("mmmm") && m.ends_with("[cut: line longer than 16384 bytes]")),
        "{tail:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.ends_with("lines dropped: more than 500 lines/s]"))
    );

    let journal = ns.journal_until(&["TORU_PLUGIN=flood"], |entries| {
        !find(entries, "after all").is_empty()
    });
    assert_eq!(find(&journal, "FINAL line after the flood").len(), 1);
    assert_eq!(find(&journal, "after all").len(), 1);

    // torud's high-water mark: the flood passed through a bounded buffer.
    let torud_rss = processes_in(&ns.namespaces)
        .iter()
        .filter_map(|p| p.split_once(' '))
        .filter(|(_, cmdline)| cmdline.starts_with(TORUD))
        .map(|(pid, _)| peak_rss_kib(pid))
        .max()
        .unwrap();
    eprintln!(
        "flood: torud peak RSS {torud_rss} KiB; {} lines kept in the ring, {} journal entries",
        messages.len(),
        journal.len()
    );
    assert!(
        torud_rss < 64 * 1024,
        "torud's peak RSS was {torud_rss} KiB"
    );
    drop(torud);
    let status = ns.stop();
    assert!(status.success(), "ns.sh: {status}");
}

/// `VmHWM` of a process, in KiB.
fn peak_rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_journal_socket_torud_says_so_once_and_uses_stderr() {
    skip_without_tools!();
    let setup = Setup::new();
    let mut ns = Namespace::start(&setup, "no-journal");
    let torud = ns.torud(&setup).await;
    let path = "/api/plugins/route/hello/log?level=warn&msg=fallback%20line";
    assert_eq!(torud.get(path).await.status, 204);
    let deadline = Instant::now() + LONG;
    while !ns.log_text().contains("fallback line") {
        assert!(Instant::now() < deadline, "{}", ns.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = ns.log.clone();
    let status = ns.stop();
    let mut stderr = String::new();
    File::open(log)
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "ns.sh: {status}: {stderr}");

    assert_eq!(
        stderr.matches("/run/systemd/journal/socket is not").count(),
        1,
        "{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("fallback line"))
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains(r#"toru_plugin="hello""#),
        "{line}"
    );
    assert!(stderr.contains("INFO ready"), "{stderr}");
}

/// JOURNAL_STREAM inherited from elsewhere does not name torud's stderr:
/// plain lines, and no attempt at the journal. (No plugins: this torud runs
/// outside a namespace, and a failed test must not leave plugins behind.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_stream_that_is_not_stderr_is_ignored() {
    let setup = Setup::empty();
    setup.write_config();
    let other = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&setup.config).unwrap();
        format!("{}:{}", meta.dev(), meta.ino())
    };
    let child = Command::new(TORUD)
        .arg("--config")
        .arg(&setup.config)
        .env("JOURNAL_STREAM", other)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut torud = Torud {
        child: Some(child),
        port: setup.port,
        unix: setup.runtime.join("toru.sock"),
        token_file: setup.state.join("admin.token"),
        log: None,
    };
    torud.wait_ready().await;
    let (code, stderr) = torud.stop();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("INFO ready"), "{stderr}");
    assert!(!stderr.contains("/run/systemd/journal"), "{stderr}");
}
