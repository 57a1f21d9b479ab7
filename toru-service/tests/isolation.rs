//! Plugins run as torud's user, so what keeps them from torud's state and
//! from each other is the namespaces torud puts each one in: here, under
//! the real torud, probes that look around from inside a plugin.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use support::*;

/// A protocol-2 plugin (the `hello` binary under another id) that first
/// reports what it can see on stderr, one `seen:` line each.
fn probe(setup: &Setup, id: &str) {
    let body = format!(
        r#"state="{state}"; run="{run}"
if cat "$state/admin.token" >/dev/null 2>&1; then echo "seen: token readable" >&2; else echo "seen: token hidden" >&2; fi
if [ -e "$state/toru.redb" ]; then echo "seen: database visible" >&2; else echo "seen: database hidden" >&2; fi
echo "seen: runtime [$(ls -A "$run" | tr '\n' ' ')]" >&2
echo "seen: plugins [$(ls -A "$run/plugins" | tr '\n' ' ')]" >&2
echo "seen: cwd $(pwd) home $HOME" >&2
exec "{hello}""#,
        state = setup.state.display(),
        run = setup.runtime.display(),
        hello = hello_binary().display(),
    );
    script_plugin(
        &setup.plugins,
        id,
        &metadata(id, &format!("/{id}"), 2),
        &body,
    );
}

/// The `seen:` lines of a plugin, once it has written all five.
async fn seen(torud: &Torud, id: &str) -> Vec<String> {
    let deadline = Instant::now() + LONG;
    loop {
        let logs = torud
            .get(&format!("/api/plugins/{id}/logs?page_size=100"))
            .await
            .json();
        let lines: Vec<String> = logs["logs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|line| line["message"].as_str())
            .filter_map(|m| m.strip_prefix("seen: "))
            .map(str::to_owned)
            .collect();
        if lines.len() >= 5 {
            return lines;
        }
        assert!(Instant::now() < deadline, "{id} did not report: {logs}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_neither_the_state_nor_other_plugins_sockets() {
    let setup = Setup::empty();
    probe(&setup, "probe-a");
    probe(&setup, "probe-b");
    let torud = setup.start().await;
    torud.wait_state("probe-a", "running").await;
    torud.wait_state("probe-b", "running").await;

    let own = setup.runtime.join("plugins/probe-a");
    let seen = seen(&torud, "probe-a").await;
    assert_eq!(
        seen,
        [
            "token hidden".to_owned(),
            "database hidden".to_owned(),
            "runtime [plugins ]".to_owned(),
            "plugins [probe-a ]".to_owned(),
            format!("cwd {} home {}", own.display(), own.display()),
        ],
        "torud's admin socket, probe-b's socket and the state must be out of sight"
    );
    // Outside, torud sees both sockets, each in its own folder.
    assert!(setup.runtime.join("plugins/probe-a/probe-a.sock").exists());
    assert!(setup.runtime.join("plugins/probe-b/probe-b.sock").exists());

    // Isolated, the plugin still serves, and its KV goes through torud.
    assert_eq!(torud.get("/api/plugins/route/probe-a/").await.status, 200);
    let put = torud
        .unix("PUT", "/api/plugins/route/probe-a/kv/colour", "blue")
        .await;
    assert!((200..300).contains(&put.status), "{}", put.text());
    let got = torud.get("/api/plugins/route/probe-a/kv/colour").await;
    assert_eq!(got.text(), "blue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_isolate_plugins_false_a_plugin_sees_everything() {
    let mut setup = Setup::empty();
    setup.top = "isolate_plugins = false".to_owned();
    probe(&setup, "probe-a");
    let torud = setup.start().await;
    torud.wait_state("probe-a", "running").await;
    let seen = seen(&torud, "probe-a").await;
    assert_eq!(seen[0], "token readable", "{seen:?}");
    assert_eq!(seen[1], "database visible", "{seen:?}");
    assert!(seen[2].contains("toru.sock"), "{seen:?}");
}

#[test]
fn nested_state_and_runtime_folders_are_refused_while_isolating() {
    let mut setup = Setup::empty();
    setup.runtime = setup.state.join("run");
    let (code, stderr) = setup.run_to_exit();
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("must not contain one another"), "{stderr}");
}
