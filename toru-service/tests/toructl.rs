//! `toructl` against the real torud over its admin Unix socket (and TCP
//! with the token): every command, as text and as `--json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use ctl::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_instance_id() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let instance = torud.get("/api/instance").await.json()["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();

    for run in [ctl(&torud, &["status"]), ctl_tcp(&torud, &["status"])] {
        let text = run.ok().stdout;
        assert!(text.contains(&format!("instance   {instance}")), "{text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
        assert!(text.contains(&torud.unix.display().to_string()), "{text}");
        assert!(text.contains("plugins    2 (2 running)"), "{text}");
        assert!(text.contains("uptime"), "{text}");
    }
    let status = ctl(&torud, &["status", "--json"]).ok().json();
    assert_eq!(status["instance_id"], instance.as_str());
    assert_eq!(status["plugins"]["running"], 2);
    assert!(status["uptime_seconds"].is_u64());
    assert_eq!(status["listeners"].as_array().unwrap().len(), 2);

    let text = ctl(&torud, &["instance-id"]).ok().stdout;
    assert_eq!(text, format!("{instance}\n"));
    let json = ctl_tcp(&torud, &["--json", "instance-id"]).ok().json();
    assert_eq!(
        json,
        serde_json::json!({ "instance_id": instance, "machine_id_changed": false })
    );
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_list_and_show() {
    let setup = Setup::new();
    let mut torud = setup.start().await;

    for run in [ctl(&torud, &["plugins", "list"]), ctl(&torud, &["plugins"])] {
        let text = run.ok().stdout;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(lines[1].starts_with("hello ") && lines[2].starts_with("hello-py "));
        // Columns line up, and no colour when stdout is not a terminal.
        for word in ["STATE", "PID", "ROUTE"] {
            let at = column(lines[0], word);
            assert!(
                lines[1..]
                    .iter()
                    .all(|l| l.len() > at && &l[at - 2..at] == "  ")
            );
        }
        assert_eq!(column(lines[1], "running"), column(lines[0], "STATE"));
        assert_eq!(column(lines[2], "/hello-py"), column(lines[0], "ROUTE"));
        assert!(!text.contains('\x1b'), "{text}");
    }
    let tcp = ctl_tcp(&torud, &["plugins", "list"]).ok().stdout;
    assert!(tcp.contains("hello-py"), "{tcp}");

    let list = ctl(&torud, &["plugins", "list", "--json"]).ok().json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    for field in [
        "id", "state", "health", "pid", "restarts", "protocol", "error",
    ] {
        assert!(list[0].get(field).is_some(), "{field} missing: {list:?}");
    }

    let hello = torud.plugin("hello").await;
    let text = ctl(&torud, &["plugins", "show", "hello"]).ok().stdout;
    for expected in [
        "id           hello".to_owned(),
        "state        running".to_owned(),
        "protocol     2".to_owned(),
        format!("pid          {}", hello["pid"]),
        "error        -".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text}");
    }
    let json = ctl(&torud, &["plugins", "show", "hello-py", "--json"])
        .ok()
        .json();
    assert_eq!(json["protocol"], 1);
    assert_eq!(json["state"], "running");
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_disable_restart_wait_for_the_plugin() {
    let setup = Setup::new();
    let mut torud = setup.start().await;

    let text = ctl(&torud, &["plugins", "disable", "hello-py"]).ok().stdout;
    assert_eq!(text, "disabled hello-py\n");
    assert_eq!(torud.plugin("hello-py").await["state"], "disabled");

    let text = ctl(&torud, &["plugins", "enable", "hello-py"]).ok().stdout;
    assert!(
        text.starts_with("enabled hello-py: running (pid "),
        "{text}"
    );
    assert_eq!(torud.plugin("hello-py").await["state"], "running");

    let before = torud.plugin("hello").await["pid"].clone();
    let text = ctl(&torud, &["plugins", "restart", "hello"]).ok().stdout;
    let after = torud.plugin("hello").await;
    assert_eq!(after["state"], "running");
    assert_ne!(after["pid"], before, "restart did not start a new process");
    assert_eq!(
        text,
        format!("restarted hello: running (pid {})\n", after["pid"])
    );

    let ok = serde_json::json!({ "success": true });
    assert_eq!(
        ctl(&torud, &["--json", "plugins", "disable", "hello"])
            .ok()
            .json(),
        ok
    );
    assert_eq!(torud.plugin("hello").await["state"], "disabled");
    assert_eq!(
        ctl(&torud, &["--json", "plugins", "enable", "hello"])
            .ok()
            .json(),
        ok
    );
    assert_eq!(torud.plugin("hello").await["state"], "running");
    let pid = torud.plugin("hello").await["pid"].clone();
    assert_eq!(
        ctl_tcp(&torud, &["--json", "plugins", "restart", "hello"])
            .ok()
            .json(),
        ok
    );
    assert_ne!(torud.plugin("hello").await["pid"], pid);
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_as_text_and_json() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    fail_a_request(&torud).await;

    let text = ctl(&torud, &["plugins", "logs", "hello"]).ok().stdout;
    assert!(text.contains("info   hello initialized"), "{text}");
    assert!(text.contains("error  request failed"), "{text}");
    let one = ctl(&torud, &["plugins", "logs", "hello", "-n", "1"])
        .ok()
        .stdout;
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(
        one.ends_with("error  request failed  error=\"invalid_key: key is empty\"\n"),
        "{one}"
    );
    let errors = ctl(&torud, &["plugins", "logs", "hello", "--level", "error"])
        .ok()
        .stdout;
    assert!(errors.lines().all(|l| l.contains(" error ")), "{errors}");

    let page = ctl(
        &torud,
        &["plugins", "logs", "hello-py", "--json", "-n", "2"],
    )
    .ok()
    .json();
    assert_eq!(page["plugin"], "hello-py");
    assert_eq!(page["page_size"], 2);
    let lines = page["logs"].as_array().unwrap();
    assert!(!lines.is_empty() && lines.len() <= 2, "{page}");
    for field in ["timestamp", "level", "message"] {
        assert!(lines[0].get(field).is_some(), "{page}");
    }
    torud.stop();
}

/// A request whose handler fails: the SDK logs "request failed" (an empty
/// KV key is refused by the host), a line the plugin writes on demand.
async fn fail_a_request(torud: &Torud) {
    let answer = torud
        .unix(
            "PUT",
            "/api/plugins/route/hello/kv/",
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(answer.status, 500, "{}", answer.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_a_line_written_after_it_started() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    for json in [false, true] {
        let mut command = command();
        command
            .arg("--socket")
            .arg(&torud.unix)
            .args(["plugins", "logs", "hello", "-f", "-n", "1"])
            .stdout(Stdio::piped());
        if json {
            command.arg("--json");
        }
        let mut child = command.spawn().unwrap();
        let (lines, seen) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let next = || seen.recv_timeout(Duration::from_secs(20)).expect("a line");
        // The last line so far comes first: following has begun.
        next();
        fail_a_request(&torud).await;
        let line = next();
        assert!(line.contains("request failed"), "{line}");
        // The SDK's reason, in its `error` field, is kept: what the client was told.
        if json {
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["message"], "request failed");
            assert_eq!(value["level"], "error");
            let reason = value["fields"]["error"].as_str().unwrap();
            assert!(reason.contains("invalid_key"), "{line}");
        } else {
            assert!(
                line.contains("request failed  error=\"invalid_key"),
                "{line}"
            );
        }
        // Nothing is printed twice.
        assert!(seen.recv_timeout(Duration::from_millis(1500)).is_err());
        signal(child.id(), "INT");
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "Ctrl-C ends following cleanly");
    }
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_get_set_delete_list() {
    let setup = Setup::new();
    let mut torud = setup.start().await;

    let set = ctl(&torud, &["kv", "set", "hello", "colour", "blue"])
        .ok()
        .stdout;
    assert_eq!(set, "set hello \"colour\" (4 bytes)\n");
    ctl(&torud, &["kv", "set", "hello", "size", "XL"]).ok();
    // Into a pipe: the bytes as stored (on a terminal a newline ends the line).
    assert_eq!(
        ctl(&torud, &["kv", "get", "hello", "colour"]).ok().stdout,
        "blue"
    );
    // The plugin sees what toructl stored.
    let via_plugin = torud.get("/api/plugins/route/hello/kv/colour").await;
    assert_eq!(via_plugin.text(), "blue");
    let keys = ctl(&torud, &["kv", "list", "hello"]).ok().stdout;
    assert_eq!(keys, "colour\nsize\n");
    assert_eq!(
        ctl(&torud, &["kv", "list", "hello", "si"]).ok().stdout,
        "size\n"
    );

    let json = ctl(&torud, &["--json", "kv", "get", "hello", "colour"])
        .ok()
        .json();
    assert_eq!(json, serde_json::json!({ "value": "blue" }));
    let json = ctl(&torud, &["--json", "kv", "set", "hello", "colour", "red"])
        .ok()
        .json();
    assert_eq!(json, serde_json::json!({ "value": "red" }));
    let json = ctl(&torud, &["--json", "kv", "list", "hello", "c"])
        .ok()
        .json();
    assert_eq!(
        json,
        serde_json::json!({ "keys": ["colour"], "truncated": false })
    );
    let json = ctl(&torud, &["--json", "kv", "delete", "hello", "colour"])
        .ok()
        .json();
    assert_eq!(json, serde_json::json!({ "value": null, "existed": true }));

    let text = ctl(&torud, &["kv", "delete", "hello", "size"]).ok().stdout;
    assert_eq!(text, "deleted hello \"size\"\n");
    let text = ctl(&torud, &["kv", "delete", "hello", "size"]).ok().stdout;
    assert!(text.contains("nothing to delete"), "{text}");
    ctl(&torud, &["kv", "get", "hello", "size"]).fails(1, "hello has no key \"size\"");
    let missing = ctl(&torud, &["--json", "kv", "get", "hello", "size"]);
    assert_eq!(missing.json(), serde_json::json!({ "value": null }));
    assert_eq!(missing.code, 1);
    let error: serde_json::Value = serde_json::from_str(missing.stderr.trim()).unwrap();
    assert_eq!(error["error"], "hello has no key \"size\"");
    assert_eq!(ctl(&torud, &["kv", "list", "hello"]).ok().stdout, "");

    // A value from stdin, byte for byte; the Python plugin has storage too.
    let mut child = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(["kv", "set", "hello-py", "motd", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"two\nlines")
        .unwrap();
    finish(child.wait_with_output().unwrap()).ok();
    let json = ctl(&torud, &["--json", "kv", "get", "hello-py", "motd"])
        .ok()
        .json();
    assert_eq!(json["value"], "two\nlines");
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_as_text_and_json() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    ctl(&torud, &["plugins", "restart", "hello-py"]).ok();

    let text = ctl(&torud, &["events"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("TIME "), "{text}");
    assert!(text.contains("daemon_started"), "{text}");
    let kind = column(lines[0], "EVENT");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("hello-py") && l[kind..].starts_with("started")),
        "{text}"
    );

    let only = ctl(&torud, &["events", "hello-py", "-n", "2"]).ok().stdout;
    assert_eq!(only.lines().count(), 3, "{only}");
    assert!(
        only.lines().skip(1).all(|l| l.contains("hello-py")),
        "{only}"
    );

    let json = ctl(&torud, &["events", "--json", "hello"]).ok().json();
    let events = json["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for event in events {
        assert_eq!(event["plugin"], "hello");
        for field in ["seq", "timestamp", "kind", "detail"] {
            assert!(event.get(field).is_some(), "{event}");
        }
    }
    let json = ctl_tcp(&torud, &["events", "--json", "-n", "1"])
        .ok()
        .json();
    assert_eq!(json["events"].as_array().unwrap().len(), 1);
    torud.stop();
}

/// Every field of a plugin's JSON line reaches the logs API (structured), `toructl
/// plugins logs` (key=value after the message; `--json` whole) and torud's stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_s_log_fields_are_kept_everywhere() {
    let setup = Setup::empty();
    script_plugin(
        &setup.plugins,
        "fields",
        &metadata("fields", "/fields", 1),
        r#"echo '{"timestamp":"t","level":"WARN","message":"stored note","note":"my note","count":3,"ok":true,"target":"fields"}' >&2
echo 'plain line' >&2
exec sleep 60"#,
    );
    let mut torud = setup.start().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = torud.get("/api/plugins/fields/logs").await.json();
        if page["total"].as_u64() >= Some(2) {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "{page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines = page["logs"].as_array().unwrap();
    let noted = lines
        .iter()
        .find(|l| l["message"] == "stored note")
        .unwrap();
    assert_eq!(noted["level"], "warn");
    assert_eq!(
        noted["fields"],
        serde_json::json!({"note": "my note", "count": 3, "ok": true})
    );
    let plain = lines.iter().find(|l| l["message"] == "plain line").unwrap();
    assert_eq!(plain["fields"], serde_json::json!({}));

    let text = ctl(&torud, &["plugins", "logs", "fields"]).ok().stdout;
    assert!(
        text.contains("stored note  count=3 note=\"my note\" ok=true"),
        "{text}"
    );
    let json = ctl(&torud, &["--json", "plugins", "logs", "fields"])
        .ok()
        .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["logs"][0]["fields"]["note"], "my note", "{json}");

    let (_, log) = torud.stop();
    assert!(
        log.lines().any(
            |l| l.contains("stored note count=3 note=\"my note\" ok=true")
                && l.contains("toru_plugin=\"fields\"")
        ),
        "{log}"
    );
}

/// `plugins show` tells what `systemctl status` would: state and since when, the last
/// exit in words, restarts after crashes apart from those asked for, the last lines;
/// a plugin draining for a restart is `stopping`, and a request refused meanwhile
/// says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_show_tells_as_much_as_systemctl_status() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let shown = ctl(&torud, &["plugins", "show", "hello"]).ok().stdout;
    assert!(shown.contains("state        running since "), "{shown}");
    assert!(shown.contains("restarts     0\n"), "{shown}");
    assert!(shown.contains("last exit    -\n"), "{shown}");
    assert!(
        shown.contains("  info   hello initialized  instance_id="),
        "{shown}"
    );

    // A crash: counted, and said in words.
    let pid = torud.plugin("hello").await["pid"].as_u64().unwrap() as u32;
    signal(pid, "KILL");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let plugin = torud.plugin("hello").await;
        if plugin["state"] == "running" && plugin["pid"].as_u64() != Some(u64::from(pid)) {
            assert_eq!(plugin["restarts"], 1, "{plugin}");
            assert_eq!(plugin["last_exit"]["cause"], "exited", "{plugin}");
            assert_eq!(plugin["last_exit"]["signal"], "SIGKILL", "{plugin}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{plugin}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = ctl(&torud, &["plugins", "show", "hello"]).ok().stdout;
    assert!(shown.contains(": killed by signal SIGKILL\n"), "{shown}");

    // A restart while a slow request is in flight: `stopping` until it is done.
    let slow = torud.probe();
    let request =
        tokio::spawn(async move { slow.get("/api/plugins/route/hello/slow?ms=1500").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restart = torud.unix("POST", "/api/plugins/hello/restart", "").await;
    assert_eq!(restart.status, 200, "{}", restart.text());
    let mut saw_stopping = false;
    for _ in 0..50 {
        let plugin = torud.plugin("hello").await;
        if plugin["state"] == "stopping" {
            assert_eq!(plugin["health"], "unhealthy", "{plugin}");
            assert_eq!(plugin["running"], false, "{plugin}");
            let refused = torud.get("/api/plugins/route/hello/").await;
            assert_eq!(refused.status, 503, "{}", refused.text());
            assert!(refused.text().contains("is stopping"), "{}", refused.text());
            saw_stopping = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(saw_stopping, "never seen stopping");
    assert_eq!(
        request.await.unwrap().status,
        200,
        "the request in flight finished"
    );
    torud.wait_state("hello", "running").await;
    let shown = ctl(&torud, &["plugins", "show", "hello"]).ok().stdout;
    assert!(
        shown.contains("restarts     1 (and 1 by request)\n"),
        "{shown}"
    );
    assert!(
        shown.contains(": stopped by torud, as asked: exited with code 0\n"),
        "{shown}"
    );
    let json = ctl(&torud, &["--json", "plugins", "show", "hello"])
        .ok()
        .stdout;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["manual_restarts"], 1);
    assert_eq!(json["last_exit"]["cause"], "stopped");
    assert_eq!(json["last_exit"]["code"], 0);
    torud.stop();
}

/// The small things a first day trips over: completions into a closed pipe, `kv get`
/// for a program, errors with `--json`, `-n 0`, "1 byte", storing for a plugin that
/// cannot read it, event texts that do not repeat themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toructl_is_polished_where_a_first_day_looks() {
    let setup = Setup::new();
    let mut torud = setup.start().await;

    // `toructl completions bash | head -1`: quietly done, no panic.
    let piped = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' completions bash | head -1",
            env!("CARGO_BIN_EXE_toructl")
        ))
        .output()
        .unwrap();
    assert!(piped.status.success(), "{piped:?}");
    assert!(
        String::from_utf8_lossy(&piped.stderr).is_empty(),
        "{piped:?}"
    );
    let script = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' completions bash > /dev/full; echo $?",
            env!("CARGO_BIN_EXE_toructl")
        ))
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&script.stderr).contains("panicked"),
        "{script:?}"
    );

    // `kv get` into a pipe: the value's bytes, not one more.
    let set = ctl(&torud, &["kv", "set", "hello", "k", "v"]).ok().stdout;
    assert_eq!(set, "set hello \"k\" (1 byte)\n");
    let raw = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(["kv", "get", "hello", "k"])
        .output()
        .unwrap();
    assert_eq!(raw.stdout, b"v");
    // A value that is not UTF-8 comes out as its bytes too.
    let stored = torud
        .unix(
            "PUT",
            "/api/plugins/route/hello/kv/bin",
            vec![0u8, 0xff, b'x'],
        )
        .await;
    assert!(stored.status < 300, "{}", stored.text());
    let raw = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(["kv", "get", "hello", "bin"])
        .output()
        .unwrap();
    assert_eq!(raw.stdout, [0u8, 0xff, b'x']);
    assert!(raw.stderr.is_empty(), "{raw:?}");

    // Storing for a protocol-1 plugin works, with a warning that it cannot read it.
    let legacy = ctl(&torud, &["kv", "set", "hello-py", "k", "vv"]);
    assert_eq!(legacy.code, 0, "{legacy:?}");
    assert_eq!(legacy.stdout, "set hello-py \"k\" (2 bytes)\n");
    assert!(legacy.stderr.contains("protocol 1"), "{legacy:?}");

    // With --json, errors are JSON on stderr too, usage errors included.
    for (args, code) in [
        (&["--json", "plugins", "show", "nosuch"][..], 1),
        (&["--json", "plugins", "show"][..], 2),
        (&["--json", "kv", "get", "hello", "absent"][..], 1),
    ] {
        let run = ctl(&torud, args);
        assert_eq!(run.code, code, "{run:?}");
        let error: serde_json::Value = serde_json::from_str(run.stderr.trim())
            .unwrap_or_else(|e| panic!("{args:?}: stderr is not JSON ({e}): {run:?}"));
        assert!(error["error"].is_string(), "{run:?}");
        assert_eq!(error["exit_code"], code, "{run:?}");
    }

    // `-n 0`: nothing, alike for logs and events; a typo is still an error.
    assert_eq!(
        ctl(&torud, &["plugins", "logs", "hello", "-n", "0"])
            .ok()
            .stdout,
        ""
    );
    assert_eq!(ctl(&torud, &["events", "hello", "-n", "0"]).ok().stdout, "");
    ctl(&torud, &["events", "nosuch", "-n", "0"]).fails(1, "no plugin \"nosuch\"");
    ctl(&torud, &["plugins", "logs", "nosuch", "-n", "0"]).fails(1, "no plugin \"nosuch\"");

    // Event texts say something the kind does not.
    ctl(&torud, &["plugins", "disable", "hello"]).ok();
    ctl(&torud, &["plugins", "enable", "hello"]).ok();
    let events = ctl(&torud, &["--json", "events", "hello"]).ok().json();
    for event in events["events"].as_array().unwrap() {
        assert_ne!(event["kind"], event["detail"], "{event}");
    }
    torud.stop();
}
