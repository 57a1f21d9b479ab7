//! `toructl` when things go wrong: each a one-line message on stderr and
//! the documented exit code (1 failed, 2 usage, 69 unreachable, 77
//! permission denied); plus colour, man pages and completions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use ctl::*;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_plugins_and_refused_operations_exit_1() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    for args in [
        &["plugins", "show", "nosuch"][..],
        &["plugins", "enable", "nosuch"],
        &["plugins", "disable", "nosuch"],
        &["plugins", "restart", "nosuch"],
        &["plugins", "logs", "nosuch"],
        &["plugins", "logs", "nosuch", "-f"],
        &["kv", "get", "nosuch", "k"],
        &["kv", "set", "nosuch", "k", "v"],
        &["kv", "list", "nosuch"],
        &["events", "nosuch"],
        &["plugins", "show", "../etc"],
    ] {
        let run = ctl(&torud, args).fails(1, "no plugin \"");
        assert!(run.stdout.is_empty(), "{run:#?}");
    }
    let run = ctl(&torud, &["--json", "plugins", "show", "nosuch"]).fails_json(1, "no plugin \"");
    assert!(run.stdout.is_empty(), "{run:#?}");
    ctl_tcp(&torud, &["plugins", "show", "nosuch"]).fails(1, "no plugin \"nosuch\"");
    ctl(&torud, &["kv", "get", "hello", ""]).fails(1, "key is empty");

    // A value over the store's limit (1 MiB), piped in: too long for argv.
    let mut child = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(["kv", "set", "hello", "big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&vec![b'x'; 1024 * 1024 + 1]).unwrap();
    drop(stdin);
    finish(child.wait_with_output().unwrap()).fails(
        1,
        "value of 1048577 bytes exceeds the limit of 1048576 bytes",
    );
    ctl(&torud, &["kv", "get", "hello", "big"]).fails(1, "no key");
    torud.stop();
}

#[test]
fn usage_errors_exit_2() {
    for (args, text) in [
        (&["plugins", "show"][..], "<ID>"),
        (&["kv", "set", "hello"], "<KEY>"),
        (&["frobnicate"], "frobnicate"),
        (&["plugins", "frob"], "frob"),
        (&["plugins", "logs", "hello", "-n", "5000"], "5000"),
        (&["plugins", "logs", "hello", "--level", "loud"], "loud"),
        (&["events", "-n", "x"], "'x'"),
        (&["--url", "https://h:1", "status"], "https"),
        (&["--url", "http://h:1/api", "status"], "path"),
        (&["completions", "cmd.exe"], "cmd.exe"),
    ] {
        bare(args).fails(2, text);
    }
    let both = command()
        .args(["--socket", "/x", "--url", "http://127.0.0.1:1", "status"])
        .output()
        .unwrap();
    finish(both).fails(2, "cannot be used together");
    let help = bare(&["--help"]).ok();
    assert!(help.stdout.contains("Exit status"), "{help:#?}");
    assert!(bare(&["--version"]).ok().stdout.starts_with("toructl "));
}

#[test]
fn unreachable_torud_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("toru.sock");
    let run =
        bare(&["--socket", missing.to_str().unwrap(), "status"]).fails(69, "systemctl status toru");
    assert!(
        run.stderr.contains(&missing.display().to_string()),
        "{run:#?}"
    );

    // A stale socket: the file is there, nobody listens.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let run = bare(&["--socket", stale.to_str().unwrap(), "plugins"]).fails(69, "stale socket");
    assert!(
        run.stderr.contains(&stale.display().to_string()),
        "{run:#?}"
    );

    // The default socket, from the environment.
    let run = finish(
        command()
            .env("TORU_SOCKET", &missing)
            .args(["plugins", "logs", "hello", "-f"])
            .output()
            .unwrap(),
    );
    run.fails(69, &missing.display().to_string());

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    bare(&["--url", &url, "status"]).fails(69, &url);
    let run = finish(
        command()
            .env("TORU_URL", &url)
            .arg("instance-id")
            .output()
            .unwrap(),
    );
    run.fails(69, "systemctl status toru");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_exits_77_and_a_missing_one_1() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let url = format!("http://127.0.0.1:{}", torud.port);
    let wrong = setup.dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    bare(&[
        "--url",
        &url,
        "--token-file",
        wrong.to_str().unwrap(),
        "status",
    ])
    .fails(77, "refused the token");
    let missing = setup.dir.path().join("missing.token");
    bare(&[
        "--url",
        &url,
        "--token-file",
        missing.to_str().unwrap(),
        "status",
    ])
    .fails(1, "cannot read the admin token");
    torud.stop();
}

/// Runs `args` as `nobody` with a copy of toructl that `nobody` can execute.
fn as_nobody(dir: &Path, args: &[&str]) -> Run {
    let binary = dir.join("toructl");
    if !binary.exists() {
        std::fs::copy(TORUCTL, &binary).unwrap();
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let output = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&binary)
        .args(args)
        .env_remove("TORU_SOCKET")
        .env_remove("TORU_URL")
        .stdin(Stdio::null())
        .output()
        .expect("setpriv runs");
    finish(output)
}

fn is_root() -> bool {
    let id = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&id.stdout).trim() == "0"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_mode_decides_who_may_connect() {
    if !is_root() {
        eprintln!("skipped: needs root to run toructl as another user");
        return;
    }
    let setup = Setup::new();
    let mut torud = setup.start().await;
    // Let `nobody` reach the socket's folder, so that only its mode decides.
    let open = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    open(setup.dir.path(), 0o755);
    open(&setup.runtime, 0o755);
    let bin = tempfile::tempdir().unwrap();
    open(bin.path(), 0o755);
    let socket = torud.unix.to_str().unwrap();

    open(&torud.unix, 0o600);
    let run =
        as_nobody(bin.path(), &["--socket", socket, "status"]).fails(77, "permission denied on");
    assert!(run.stderr.contains(socket), "{run:#?}");
    as_nobody(bin.path(), &["--socket", socket, "--json", "plugins"])
        .fails_json(77, "run toructl as root");

    open(&torud.unix, 0o666);
    let run = as_nobody(bin.path(), &["--socket", socket, "instance-id"]).ok();
    assert_eq!(
        run.stdout.trim(),
        torud.get("/api/instance").await.json()["instance_id"]
    );

    // The admin token is root's too.
    let token = torud.token_file.to_str().unwrap();
    let url = format!("http://127.0.0.1:{}", torud.port);
    open(&setup.state, 0o755);
    open(&torud.token_file, 0o600);
    as_nobody(
        bin.path(),
        &["--url", &url, "--token-file", token, "status"],
    )
    .fails(77, "permission denied reading the admin token");
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colour_only_on_a_terminal_without_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to give toructl a terminal");
        return;
    }
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let on_terminal = |no_color: Option<&str>| {
        let line = format!("{TORUCTL} --socket {} plugins list", torud.unix.display());
        let mut command = Command::new("script");
        command
            .args(["-qec", &line, "/dev/null"])
            .env_remove("NO_COLOR");
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        finish(command.stdin(Stdio::null()).output().unwrap())
    };
    let coloured = on_terminal(None).ok();
    assert!(
        coloured.stdout.contains("\x1b[32mrunning\x1b[0m"),
        "{coloured:#?}"
    );
    let plain = on_terminal(Some("1")).ok();
    assert!(
        plain.stdout.contains("running") && !plain.stdout.contains('\x1b'),
        "{plain:#?}"
    );
    // NO_COLOR set but empty does not count (https://no-color.org).
    assert!(on_terminal(Some("")).ok().stdout.contains('\x1b'));
    torud.stop();
}

#[test]
fn man_pages_and_completions_come_from_the_definition() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let run = bare(&["generate-man", out.to_str().unwrap()]).ok();
    for page in [
        "toructl.1",
        "toructl-plugins-logs.1",
        "toructl-kv-set.1",
        "toructl-status.1",
        "torud.8",
    ] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}: {text}");
        assert!(run.stdout.contains(page), "{run:#?}");
    }
    let main = std::fs::read_to_string(out.join("toructl.1")).unwrap();
    assert!(
        main.contains("TORU_SOCKET") && main.contains("69"),
        "{main}"
    );
    for section in [
        ".SH SYNOPSIS",
        ".SH EXAMPLES",
        ".SH ENVIRONMENT",
        ".SH FILES",
        ".SH EXIT STATUS",
    ] {
        assert!(main.contains(section), "{section}: {main}");
    }
    assert!(
        main.contains("[\\fB\\-\\-socket\\fR \\fIPATH\\fR]"),
        "{main}"
    );
    // A command's synopsis names its values and arguments, and its page has examples.
    let logs = std::fs::read_to_string(out.join("toructl-plugins-logs.1")).unwrap();
    assert!(
        logs.contains("[\\fB\\-n\\fR|\\fB\\-\\-lines\\fR \\fIN\\fR]")
            && logs.contains("\\fIID\\fR"),
        "{logs}"
    );
    assert!(logs.contains(".SH EXAMPLES"), "{logs}");
    let torud = std::fs::read_to_string(out.join("torud.8")).unwrap();
    assert!(
        torud.contains("[\\fB\\-\\-config\\fR \\fIPATH\\fR]"),
        "{torud}"
    );
    assert!(
        !out.join("toructl-generate-man.1").exists(),
        "hidden commands get no page"
    );

    for (shell, expected) in [
        ("bash", "_toructl"),
        ("zsh", "#compdef toructl"),
        ("fish", "complete -c toructl"),
    ] {
        let script = bare(&["completions", shell]).ok().stdout;
        assert!(script.contains(expected), "{shell}: {script}");
        assert!(script.contains("restart"), "{shell} completes subcommands");
    }
}
