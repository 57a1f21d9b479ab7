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
    let run = finish(
        command()
            .args(["--json", "plugins", "check"])
            .arg(path)
            .output()
            .unwrap(),
    );
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run:#?}"));
    let verdicts = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (run.code, verdicts)
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
        text.contains("PASS  concurrency  64 requests in flight"),
        "{text}"
    );
    assert!(
        text.ends_with("hello: protocol 2, 13 rules, 0 failed\n"),
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
