//! `toructl` against the real torud over its admin Unix socket (and TCP
//! with the token): every command, as text and as `--json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
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
    assert_eq!(text, "disabled hello-py: disabled\n");
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
    assert!(one.ends_with("error  request failed\n"), "{one}");
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
    assert_eq!(
        ctl(&torud, &["kv", "get", "hello", "colour"]).ok().stdout,
        "blue\n"
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
    missing.fails(1, "no key");
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
