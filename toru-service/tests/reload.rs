//! Reloading as a sysadmin and a plugin author do it: `toructl reload` (over the
//! admin API) says what changed and refuses a broken configuration with every
//! error; a running plugin's file replaced with `install` or a rename is picked
//! up (`cp` onto it fails with "Text file busy", as the docs say); `torud --dev
//! --config FILE` takes FILE's keys over the development ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::process::Command;

use ctl::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toructl_reload_says_what_changed_and_refuses_a_broken_configuration() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let hello_pid = torud.plugin("hello").await["pid"].clone();

    let nothing = ctl(&torud, &["reload"]).ok();
    assert!(
        nothing.stdout.starts_with("reloaded: no plugin changed\n"),
        "{nothing:?}"
    );
    assert!(
        nothing.stdout.contains("serving 2/2 plugins"),
        "{nothing:?}"
    );

    // A new plugin: started by the time toructl returns.
    script_plugin(
        &setup.plugins,
        "newcomer",
        &metadata("newcomer", "/newcomer", 2),
        &format!("exec {}", hello_binary().display()),
    );
    std::fs::remove_file(setup.plugins.join("hello-py.py")).unwrap();
    let run = ctl(&torud, &["reload"]).ok();
    assert!(run.stdout.contains("  added     newcomer\n"), "{run:?}");
    assert!(run.stdout.contains("  removed   hello-py\n"), "{run:?}");
    let newcomer = torud.plugin("newcomer").await;
    assert_eq!(newcomer["state"], "running", "{newcomer}");
    assert_eq!(torud.plugin("hello").await["pid"], hello_pid, "left alone");

    let json = ctl(&torud, &["--json", "reload"]).ok();
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["added"], serde_json::json!([]));
    assert!(json["status"].as_str().unwrap().starts_with("serving"));

    // A key only a restart applies is named.
    let config = std::fs::read_to_string(&setup.config).unwrap();
    std::fs::write(
        &setup.config,
        config.replace("shutdown_timeout", "max_connections = 99\nshutdown_timeout"),
    )
    .unwrap();
    let run = ctl(&torud, &["reload"]).ok();
    assert!(
        run.stdout
            .contains("`max_connections` changed: it takes effect when torud restarts"),
        "{run:?}"
    );

    // A broken configuration: refused with every error, the running one kept.
    std::fs::write(
        &setup.config,
        format!("{config}\nrequest_timeout = \"soon\"\nbogus = 1\n"),
    )
    .unwrap();
    let refused = ctl(&torud, &["reload"]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("still running the previous one"),
        "{refused:?}"
    );
    assert!(refused.stderr.contains("request_timeout"), "{refused:?}");
    assert!(refused.stderr.contains("bogus"), "{refused:?}");
    assert_eq!(torud.plugin("hello").await["state"], "running");
    let answer = torud.unix("POST", "/api/reload", "").await;
    assert_eq!(answer.status, 409, "{}", answer.text());
    // Only POST, and only for the administrator.
    assert_eq!(torud.get("/api/reload").await.status, 405);
    assert_eq!(
        torud
            .tcp_with(request("POST", "/api/reload", bytes::Bytes::new(), None))
            .await
            .status,
        401
    );
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_plugin_s_file_replaced_by_install_or_rename_is_picked_up() {
    let setup = Setup::empty();
    let file = setup.plugins.join("hello");
    std::fs::copy(hello_binary(), &file).unwrap();
    let mut torud = setup.start().await;
    let first = torud.plugin("hello").await["pid"].as_u64().unwrap();

    // `cp` onto the running executable fails: the kernel refuses to write it.
    let cp = Command::new("cp")
        .arg(hello_binary())
        .arg(&file)
        .output()
        .unwrap();
    assert!(!cp.status.success());
    assert!(
        String::from_utf8_lossy(&cp.stderr).contains("Text file busy"),
        "{cp:?}"
    );

    // `install -m 0755` writes a new file in its place.
    let install = Command::new("install")
        .args(["-m", "0755"])
        .arg(hello_binary())
        .arg(&file)
        .status()
        .unwrap();
    assert!(install.success());
    let run = ctl(&torud, &["reload"]).ok();
    assert!(run.stdout.contains("  replaced  hello\n"), "{run:?}");
    let second = torud.plugin("hello").await;
    assert_eq!(second["state"], "running", "{second}");
    assert_ne!(second["pid"].as_u64(), Some(first));

    // So does a rename of a copy made beside it.
    let staged = setup.dir.path().join("hello.new");
    std::fs::copy(hello_binary(), &staged).unwrap();
    std::fs::rename(&staged, &file).unwrap();
    let run = ctl(&torud, &["reload"]).ok();
    assert!(run.stdout.contains("  replaced  hello\n"), "{run:?}");
    let third = torud.plugin("hello").await;
    assert_eq!(third["state"], "running", "{third}");
    assert_ne!(third["pid"], second["pid"]);

    let events = ctl(&torud, &["events", "hello"]).ok().stdout;
    assert!(events.contains("replaced"), "{events}");
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_takes_a_config_file_s_keys_over_its_own() {
    // A checkout-like folder: the plugins `--dev` runs are in examples/plugins.
    let setup = Setup::empty();
    let examples = setup.dir.path().join("examples/plugins");
    std::fs::create_dir_all(&examples).unwrap();
    std::os::unix::fs::symlink(hello_binary(), examples.join("hello")).unwrap();
    // The file moves torud off port 7070 and out of target/, and gives hello a
    // setting; plugin_dirs stays --dev's.
    let file = setup.dir.path().join("mine.toml");
    std::fs::write(
        &file,
        format!(
            "listen = [\"127.0.0.1:{port}\", \"unix:{run}/toru.sock\"]\n\
             state_dir = \"{state}\"\nruntime_dir = \"{run}\"\n\
             [plugins.hello.config]\ngreeting = \"hi\"\n",
            port = setup.port,
            run = setup.runtime.display(),
            state = setup.state.display(),
        ),
    )
    .unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_torud"));
    command
        .args(["--dev", "--config"])
        .arg(&file)
        .current_dir(setup.dir.path());
    let check = Command::new(env!("CARGO_BIN_EXE_torud"))
        .args(["--dev", "--check-config", "--config"])
        .arg(&file)
        .current_dir(setup.dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let mut torud = setup.launch(command).await;
    let hello = torud.plugin("hello").await;
    assert_eq!(hello["state"], "running", "{hello}");
    assert!(
        hello["path"]
            .as_str()
            .unwrap()
            .ends_with("examples/plugins/hello"),
        "{hello}"
    );
    assert!(setup.state.join("toru.redb").exists());
    assert!(setup.state.join("admin.token").exists());
    torud.stop();
}
