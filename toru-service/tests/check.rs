//! `toructl plugins check`: both SDKs' example plugins keep every rule; the
//! protocol-1 example keeps the protocol-1 subset; a plugin broken on purpose fails
//! exactly the rules it breaks; one that never makes its socket fails in bounded time
//! and leaves nothing running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ctl::*;
use support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The verdict of each rule, from `--json`.
fn verdicts(path: &Path) -> (i32, BTreeMap<String, String>) {
    let (code, findings) = report(path);
    let verdicts = findings
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (code, verdicts)
}

/// The full report, from `--json`.
fn report(path: &Path) -> (i32, Vec<serde_json::Value>) {
    let run = finish(
        command()
            .args(["--json", "plugins", "check"])
            .arg(path)
            .output()
            .unwrap(),
    );
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"));
    (run.code, report["findings"].as_array().unwrap().clone())
}

#[test]
fn the_sdks_example_plugins_keep_every_rule() {
    for plugin in [hello_binary(), repo().join("examples/python/hello_v2.py")] {
        let (code, verdicts) = verdicts(&plugin);
        assert_eq!(code, 0, "{plugin:?}: {verdicts:?}");
        for rule in [
            "metadata",
            "socket",
            "init",
            "http",
            "http.binary",
            "ping",
            "concurrency",
            "kv",
            "cancel",
            "bad_input",
            "replay.http_echo",
            "replay.kv",
            "replay.duplicate_id",
            "replay.cancel",
            "shutdown",
            "leftovers",
            "sigterm",
        ] {
            assert_eq!(
                verdicts.get(rule).map(String::as_str),
                Some("pass"),
                "{plugin:?} {rule}: {verdicts:?}"
            );
        }
    }
    // As text: a line per rule and a summary.
    let text = command()
        .args(["plugins", "check"])
        .arg(hello_binary())
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("PASS  concurrency         64 requests in flight"),
        "{text}"
    );
    assert!(
        text.ends_with("hello: protocol 2, 17 rules, 0 failed\n"),
        "{text}"
    );
}

#[test]
fn the_protocol_1_example_keeps_the_protocol_1_subset() {
    let (code, verdicts) = verdicts(&python_plugin());
    assert_eq!(code, 0, "{verdicts:?}");
    for rule in ["metadata", "init", "http", "connections", "leftovers"] {
        assert_eq!(verdicts[rule], "pass", "{rule}: {verdicts:?}");
    }
    assert!(
        !verdicts.contains_key("kv"),
        "protocol 1 has no storage: {verdicts:?}"
    );
}

#[test]
fn a_broken_plugin_fails_exactly_the_rules_it_breaks() {
    let (code, verdicts) = verdicts(&repo().join("toru-service/tests/fixtures/broken_v2.py"));
    assert_eq!(code, 1, "{verdicts:?}");
    let failed: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v)| *v == "fail")
        .map(|(rule, _)| rule.as_str())
        .collect();
    assert_eq!(failed, ["shutdown", "sigterm", "socket"], "{verdicts:?}");
    assert_eq!(verdicts["concurrency"], "pass");
    assert_eq!(verdicts["kv"], "pass");
}

#[test]
fn a_plugin_that_never_serves_fails_in_bounded_time_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pid");
    let plugin = script_plugin(
        dir.path(),
        "mute",
        &metadata("mute", "/mute", 2),
        &format!("echo $$ > {}\nexec sleep 600", marker.display()),
    );
    let started = std::time::Instant::now();
    let (code, verdicts) = verdicts(&plugin);
    assert_eq!(code, 1);
    assert_eq!(verdicts["socket"], "fail", "{verdicts:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    let pid: u32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !is_gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin outlived the check"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Usage: no such file.
    ctl::command()
        .args(["plugins", "check", "/nonexistent/plugin"])
        .output()
        .map(finish)
        .unwrap()
        .fails(1, "does not keep the protocol");
}

/// `sleep 6017` processes still running.
fn helpers() -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-fx", "sleep 6017"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_plugin_that_leaves_a_helper_behind_fails_leftovers_and_the_helper_goes() {
    let (code, verdicts) = verdicts(&repo().join("toru-service/tests/fixtures/leaves_child.py"));
    assert_eq!(code, 1, "{verdicts:?}");
    assert_eq!(verdicts["leftovers"], "fail", "{verdicts:?}");
    // Its flood of stderr cost it nothing.
    for rule in ["http", "concurrency", "ping", "kv", "bad_input", "shutdown"] {
        assert_eq!(verdicts[rule], "pass", "{rule}: {verdicts:?}");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while helpers() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a helper outlived the check"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_plugin_that_dies_mid_check_fails_with_a_reason_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    // Serves `init`, then exits at its first request.
    let code = format!(
        "import os, sys\nsys.path.insert(0, {python:?})\n\
         from toru_plugin import Plugin, Response, run\n\
         plugin = Plugin(id='dies', name='Dies', version='1', route='/dies')\n\
         @plugin.fallback\nasync def die(req):\n    os._exit(9)\n\
         sys.exit(run(plugin))\n",
        python = repo().join("python").display().to_string(),
    );
    let file = dir.path().join("dies.py");
    std::fs::write(&file, code).unwrap();
    let plugin = script_plugin(
        dir.path(),
        "dies",
        &metadata("dies", "/dies", 2),
        &format!("exec python3 {}", file.display()),
    );
    let started = std::time::Instant::now();
    let (code, verdicts) = verdicts(&plugin);
    assert_eq!(code, 1, "{verdicts:?}");
    assert_eq!(verdicts["init"], "pass", "{verdicts:?}");
    assert_eq!(verdicts["http"], "fail", "{verdicts:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// `misbehaves.py MODE` processes still running.
fn misbehaving(mode: &str) -> usize {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &format!("misbehaves.py {mode}$")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn a_plugin_that_breaks_the_wire_fails_with_the_reason_and_is_killed() {
    let fixture = repo().join("toru-service/tests/fixtures/misbehaves.py");
    // A 4 GiB length prefix; frames whose header is not JSON (after 8 MiB of stdout);
    // silence. Each ignores SIGTERM and `shutdown`.
    let cases = [
        ("huge", "a frame length of 4294967295 bytes"),
        ("garbage", "could not be read: unreadable message header"),
        ("hangs", "timed out after 10s"),
    ];
    let checks: Vec<_> = cases
        .into_iter()
        .map(|(mode, reason)| {
            let fixture = fixture.clone();
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let plugin = script_plugin(
                    dir.path(),
                    mode,
                    &metadata("mis", "/mis", 2),
                    &format!("exec python3 {} {mode}", fixture.display()),
                );
                let started = std::time::Instant::now();
                let (code, findings) = report(&plugin);
                (mode, reason, code, findings, started.elapsed())
            })
        })
        .collect();
    for check in checks {
        let (mode, reason, code, findings, took) = check.join().unwrap();
        assert_eq!(code, 1, "{mode}: {findings:#?}");
        let find = |rule: &str| {
            findings
                .iter()
                .find(|f| f["rule"] == rule)
                .unwrap_or_else(|| panic!("{mode}: no {rule}: {findings:#?}"))
        };
        for rule in ["metadata", "socket", "init"] {
            assert_eq!(
                find(rule)["verdict"],
                "pass",
                "{mode} {rule}: {findings:#?}"
            );
        }
        let http = find("http");
        assert_eq!(http["verdict"], "fail", "{mode}: {findings:#?}");
        assert!(
            http["detail"].as_str().unwrap().contains(reason),
            "{mode}: {http}"
        );
        // What the connection could no longer check is said, not waited out.
        for rule in ["concurrency", "kv", "bad_input", "replay.cancel"] {
            assert_eq!(find(rule)["verdict"], "not_exercised", "{mode} {rule}");
        }
        assert!(
            find("http.binary")["detail"]
                .as_str()
                .unwrap()
                .contains("the plugin stopped answering"),
            "{mode}: {findings:#?}"
        );
        for rule in ["shutdown", "sigterm"] {
            assert_eq!(
                find(rule)["verdict"],
                "fail",
                "{mode} {rule}: {findings:#?}"
            );
        }
        assert!(
            took < std::time::Duration::from_secs(90),
            "{mode}: {took:?}"
        );
        assert_eq!(
            misbehaving(mode),
            0,
            "{mode}: the plugin outlived the check"
        );
    }
}

#[test]
fn a_licensed_plugin_is_checked_with_the_licence_it_is_given() {
    use toru_plugin_api::license::Claims;
    use toru_plugin_api::license::vendor::SecretKey;
    // Without one: `init` fails, saying how to give one.
    let (code, findings) = report(&licensed_binary());
    assert_eq!(code, 1);
    let init = findings.iter().find(|f| f["rule"] == "init").unwrap();
    assert_eq!(init["verdict"], "fail", "{findings:#?}");
    let detail = init["detail"].as_str().unwrap();
    assert!(
        detail.contains("requires a licence") && detail.contains("--license FILE"),
        "{detail}"
    );

    let key = SecretKey::from_text(&std::fs::read_to_string(test_vendor_key()).unwrap()).unwrap();
    let sign = |instance: &str| {
        key.sign(&Claims {
            plugin: "licensed".into(),
            instance: instance.into(),
            licensee: Some("ACME Ltd".into()),
            issued_at: chrono::Utc::now(),
            expires: None,
            extra: serde_json::Map::new(),
        })
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("licence");
    // For the checker's own instance id: every rule holds, the replays included.
    std::fs::write(&file, sign("00000000-0000-4000-8000-00000000c4ec")).unwrap();
    let run = finish(
        command()
            .args(["plugins", "check", "--license"])
            .arg(&file)
            .arg(licensed_binary())
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:#?}");
    assert!(run.stdout.contains("PASS  replay.kv"), "{}", run.stdout);
    // For another instance, told with --instance.
    let other = "6a1f0c1e-1111-4222-8333-444455556666";
    std::fs::write(&file, sign(other)).unwrap();
    let run = finish(
        command()
            .args(["plugins", "check", "--instance", other, "--license"])
            .arg(&file)
            .arg(licensed_binary())
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:#?}");
    // Bad input: no such file, an id that is no UUID.
    command()
        .args(["plugins", "check", "--license", "/nonexistent/licence"])
        .arg(licensed_binary())
        .output()
        .map(finish)
        .unwrap()
        .fails(1, "cannot read /nonexistent/licence");
    command()
        .args(["plugins", "check", "--instance", "nope"])
        .arg(licensed_binary())
        .output()
        .map(finish)
        .unwrap()
        .fails(2, "invalid value 'nope' for '--instance <UUID>'");
}

#[test]
fn isolation_is_off_unless_asked_and_torud_s_when_asked() {
    // hello keeps every rule in torud's namespaces.
    let run = finish(
        command()
            .args(["plugins", "check", "--isolate"])
            .arg(hello_binary())
            .output()
            .unwrap(),
    );
    assert_eq!(run.code, 0, "{run:#?}");
    // A plugin that says which mount namespace it runs in, then never serves.
    let ours = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let runs: Vec<_> = [false, true]
        .into_iter()
        .map(|isolate| {
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                let marker = dir.path().join("ns");
                let plugin = script_plugin(
                    dir.path(),
                    "where",
                    &metadata("where", "/where", 2),
                    &format!(
                        "readlink /proc/self/ns/mnt > {}\nexec sleep 600",
                        marker.display()
                    ),
                );
                let mut command = command();
                command.args(["plugins", "check"]);
                if isolate {
                    command.arg("--isolate");
                }
                let run = finish(command.arg(&plugin).output().unwrap());
                assert_eq!(run.code, 1, "{run:#?}");
                (isolate, std::fs::read_to_string(&marker).unwrap())
            })
        })
        .collect();
    for run in runs {
        let (isolate, theirs) = run.join().unwrap();
        assert_eq!(
            theirs.trim() != ours.to_str().unwrap(),
            isolate,
            "isolate {isolate}: {theirs} against ours {ours:?}"
        );
    }
}

/// The Rust SDK installs its SIGTERM handler before it makes its socket: a host
/// (or the checker's `sigterm` rule) that signals the moment it can connect gets a
/// clean exit 0, never death by the default action. Signalled within microseconds
/// of the socket appearing, twenty times.
#[test]
fn the_rust_sdk_handles_sigterm_from_the_moment_its_socket_exists() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    for round in 0..20 {
        let socket = dir.path().join(format!("hello-{round}.sock"));
        let mut child = std::process::Command::new(hello_binary())
            .env("TORU_PLUGIN_SOCKET", &socket)
            .env("RUST_LOG", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::fs::symlink_metadata(&socket).is_err() {
            assert!(std::time::Instant::now() < deadline, "no socket");
            std::hint::spin_loop();
        }
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            (status.code(), status.signal()),
            (Some(0), None),
            "round {round}: {status:?}"
        );
    }
}
