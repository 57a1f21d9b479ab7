use super::raw::{RawConfig, RawHealth, RawPlugin, RawRestart, RawSessions, RawStore};
use super::*;

fn no_env() -> SystemdDirs {
    SystemdDirs::default()
}

#[test]
fn an_empty_file_gives_the_documented_defaults() {
    let s = parse("", &no_env()).unwrap();
    assert_eq!(
        s.listen,
        vec![
            ListenAddr::Tcp("127.0.0.1:7070".parse().unwrap()),
            ListenAddr::Unix("/run/toru/toru.sock".into())
        ]
    );
    assert_eq!(s.state_dir, Path::new("/var/lib/toru"));
    assert_eq!(s.runtime_dir, Path::new("/run/toru"));
    assert_eq!(s.admin_token_file, Path::new("/var/lib/toru/admin.token"));
    assert_eq!(s.plugin_dirs.len(), 2);
    assert_eq!(s.request_timeout, Duration::from_secs(30));
    assert!(s.restart.backoff_initial < Duration::from_secs(1));
}

#[test]
fn every_contract_key_is_read() {
    let text = r#"
        listen = ["127.0.0.1:9000", "[::1]:9001", "unix:/tmp/t.sock"]
        state_dir = "/srv/state"
        runtime_dir = "/srv/run"
        plugin_dirs = ["/opt/plugins"]
        request_timeout = "250ms"
        admin_token_file = "/etc/toru/token"
        shutdown_timeout = "5m"
        max_body_bytes = 1024
        max_connections = 10

        [restart]
        backoff_initial = "100ms"
        backoff_max = "2s"
        max_failures = 3
        failure_window = "30s"

        [health]
        ping_interval = "1s"

        [plugins.hello.config]
        greeting = "hi"
        nested = { n = 1, list = [true] }
    "#;
    let s = parse(text, &no_env()).unwrap();
    assert_eq!(s.listen.len(), 3);
    assert_eq!(s.listen[2], ListenAddr::Unix("/tmp/t.sock".into()));
    assert_eq!(s.state_dir, Path::new("/srv/state"));
    assert_eq!(s.admin_token_file, Path::new("/etc/toru/token"));
    assert_eq!(s.request_timeout, Duration::from_millis(250));
    assert_eq!(s.shutdown_timeout, Duration::from_secs(300));
    assert_eq!(s.restart.max_failures, 3);
    assert_eq!(s.health.ping_interval, Duration::from_secs(1));
    let config = &s.plugins["hello"].config;
    assert_eq!(config["greeting"], "hi");
    assert_eq!(config["nested"]["list"][0], true);
}

#[test]
fn every_unknown_key_is_an_error_and_all_are_listed() {
    let text =
        "lisen = []\nstate_dir = \"/x\"\n[restart]\nbackof = \"1s\"\n[plugins.a]\nconfg = {}\n";
    let err = parse(text, &no_env()).unwrap_err();
    let all = err.problems.join("\n");
    for key in ["lisen", "restart.backof", "plugins.a.confg"] {
        assert!(all.contains(key), "{key} missing from: {all}");
    }
    assert_eq!(err.problems.len(), 3, "{all}");
}

#[test]
fn every_bad_value_is_listed_with_its_key() {
    let text = r#"
        listen = ["localhost", "unix:"]
        request_timeout = "soon"
        shutdown_timeout = "0s"
        max_body_bytes = 0
        [restart]
        max_failures = 0
        backoff_initial = "1m"
        backoff_max = "1s"
        [plugins."bad id"]
    "#;
    let err = parse(text, &no_env()).unwrap_err();
    let all = err.problems.join("\n");
    for needle in [
        "\"localhost\"",
        "\"unix:\"",
        "request_timeout",
        "shutdown_timeout",
        "max_body_bytes",
        "max_failures",
        "backoff_initial",
        "plugins.bad id",
    ] {
        assert!(all.contains(needle), "{needle} missing from:\n{all}");
    }
    assert!(err.problems.len() >= 8, "{all}");
}

#[test]
fn wrong_types_and_broken_toml_are_reported() {
    let err = parse("max_connections = \"many\"", &no_env()).unwrap_err();
    assert!(err.to_string().contains("max_connections"), "{err}");
    let err = parse("listen = [", &no_env()).unwrap_err();
    assert!(err.to_string().contains("TOML"), "{err}");
    let err = parse("isolate_plugins = \"yes\"", &no_env()).unwrap_err();
    assert!(err.to_string().contains("isolate_plugins"), "{err}");
    assert!(
        !parse("isolate_plugins = false", &no_env())
            .unwrap()
            .isolate_plugins
    );
}

/// The fault campaign's file: type errors used to end the listing at the
/// first and drop the unknown keys found before it.
#[test]
fn type_errors_unknown_keys_and_bad_values_are_all_listed_with_their_lines() {
    let text = r#"bogus = 1
request_timeout = 30
listen = ["nowhere"]

[restart]
max_failures = "five"
backof = "1s"
backoff_max = "soon"

[health]
ping_interval = 5

[store]
verify_on_start = "sometimes"

[plugins.hello]
memory_max = "lots"
colour = "red"
config = 7
"#;
    let err = parse(text, &no_env()).unwrap_err();
    let all = err.problems.join("\n");
    for expected in [
        "line 1: unknown key `bogus`",
        "line 2: `request_timeout` = 30 is of the wrong type",
        "line 3: `listen`: \"nowhere\"",
        "line 6: `restart.max_failures` = \"five\" is of the wrong type",
        "line 7: unknown key `restart.backof`",
        "line 8: `restart.backoff_max` = \"soon\" is not a duration",
        "line 11: `health.ping_interval` = 5 is of the wrong type",
        "line 14: `store.verify_on_start` = \"sometimes\"",
        "line 17: `plugins.hello.memory_max` = \"lots\"",
        "line 18: unknown key `plugins.hello.colour`",
        "line 19: `plugins.hello.config` = 7 is of the wrong type",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
    assert_eq!(err.problems.len(), 11, "{all}");
}

#[test]
fn a_section_that_is_not_a_table_is_one_problem_among_the_others() {
    let text = "restart = 5\nbogus = true\n[plugins]\nhello = \"x\"\n[health]\nping_timeout = 1\n";
    let err = parse(text, &no_env()).unwrap_err();
    let all = err.problems.join("\n");
    for expected in [
        "line 1: `restart` must be a table (`[restart]`), not an integer",
        "line 2: unknown key `bogus`",
        "line 4: `plugins.hello` must be a table (`[plugins.hello]`), not a string",
        "line 6: `health.ping_timeout` = 1 is of the wrong type",
    ] {
        assert!(all.contains(expected), "{expected:?} missing from:\n{all}");
    }
    assert_eq!(err.problems.len(), 4, "{all}");
}

#[test]
fn every_syntax_error_is_listed_with_its_line() {
    let err = parse("a = \"open\nb = = 2\nc = 3\n", &no_env()).unwrap_err();
    let all = err.problems.join("\n");
    assert!(all.contains("line 1: invalid TOML"), "{all}");
    assert!(all.contains("line 2: invalid TOML"), "{all}");
}

#[test]
fn a_configured_plugin_folder_that_does_not_exist_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "plugin_dirs = [\"{}\", \"/no/such/folder\"]",
        dir.path().display()
    );
    let settings = parse(&text, &no_env()).unwrap();
    let warnings = settings.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("/no/such/folder"), "{warnings:?}");
    // The default folders may be absent without a word.
    let defaults = parse("", &no_env()).unwrap();
    assert_eq!(defaults.plugin_dirs.len(), 2);
    assert!(defaults.warnings().is_empty());
}

#[test]
fn systemd_directories_are_the_defaults_when_set() {
    let dirs = SystemdDirs {
        state: Some("/var/lib/toru-sd".into()),
        runtime: Some("/run/toru-sd".into()),
    };
    let s = parse("", &dirs).unwrap();
    assert_eq!(s.state_dir, Path::new("/var/lib/toru-sd"));
    assert_eq!(
        s.listen[1],
        ListenAddr::Unix("/run/toru-sd/toru.sock".into())
    );
    // The file still wins over systemd.
    let s = parse("state_dir = \"/elsewhere\"", &dirs).unwrap();
    assert_eq!(s.state_dir, Path::new("/elsewhere"));
}

#[test]
fn a_named_file_must_exist_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = load(Some(&missing), &no_env()).unwrap_err();
    assert!(err.to_string().contains("nope.toml"), "{err}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "bogus = 1\n").unwrap();
    let err = load(Some(&bad), &no_env()).unwrap_err();
    assert!(
        err.to_string().contains("bad.toml:1: unknown key `bogus`"),
        "{err}"
    );
}

#[test]
fn the_dev_config_is_valid_and_anchored() {
    let s = dev(Path::new("/src/toru"), None).unwrap();
    assert_eq!(
        s.plugin_dirs,
        vec![PathBuf::from("/src/toru/examples/plugins")]
    );
    assert_eq!(s.state_dir, Path::new("/src/toru/target/toru-dev/state"));
    assert_eq!(
        s.admin_token_file,
        Path::new("/src/toru/target/toru-dev/state/admin.token")
    );
    assert_eq!(
        s.listen[1],
        ListenAddr::Unix("/src/toru/target/toru-dev/run/toru.sock".into())
    );
}

#[test]
fn plugin_limits_are_read_and_bad_ones_listed_with_their_key() {
    let text = r#"
        [plugins.hello]
        memory_max = "256M"
        pids_max = 64
        cpu_max = "50%"
        [plugins.hello.config]
        greeting = "hi"
        [plugins.other]
        memory_max = 1048576
        pids_max = "max"
    "#;
    let s = parse(text, &no_env()).unwrap();
    assert_eq!(
        s.plugins["hello"].limits,
        ResourceLimits {
            memory_max: Some(Max::Value(256 << 20)),
            memory_swap_max: None,
            pids_max: Some(Max::Value(64)),
            cpu_max: Some(Max::Value(50_000)),
        }
    );
    assert_eq!(s.plugins["hello"].config["greeting"], "hi");
    assert_eq!(
        s.plugins["other"].limits.memory_max,
        Some(Max::Value(1 << 20))
    );
    assert_eq!(s.plugins["other"].limits.pids_max, Some(Max::Unlimited));
    assert_eq!(s.plugins["other"].limits.cpu_max, None);

    let text = r#"
        [plugins.hello]
        memory_max = "lots"
        pids_max = 0
        cpu_max = "50"
        cpu_shares = 3
    "#;
    let err = parse(text, &no_env()).unwrap_err();
    let all = err.problems.join("\n");
    for key in [
        "plugins.hello.memory_max",
        "plugins.hello.pids_max",
        "plugins.hello.cpu_max",
        "plugins.hello.cpu_shares",
    ] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
    assert_eq!(err.problems.len(), 4, "{all}");
}

/// Every key torud reads, from the deserializer's own field lists, as
/// dotted paths (`plugins.ID.memory_max`).
fn keys_torud_reads() -> std::collections::BTreeSet<String> {
    use serde_aux::serde_introspection::serde_introspect;
    let mut keys = std::collections::BTreeSet::new();
    let tables = ["restart", "health", "store", "sessions", "plugins"];
    for key in serde_introspect::<RawConfig>() {
        if !tables.contains(key) {
            keys.insert((*key).to_owned());
        }
    }
    for key in serde_introspect::<RawRestart>() {
        keys.insert(format!("restart.{key}"));
    }
    for key in serde_introspect::<RawHealth>() {
        keys.insert(format!("health.{key}"));
    }
    for key in serde_introspect::<RawStore>() {
        keys.insert(format!("store.{key}"));
    }
    for key in serde_introspect::<RawSessions>() {
        keys.insert(format!("sessions.{key}"));
    }
    for key in serde_introspect::<RawPlugin>() {
        keys.insert(format!("plugins.ID.{key}"));
    }
    keys
}

/// The dotted keys of a TOML document, a plugin's name as `ID`, and a
/// plugin's `config` table as one key (its contents are the plugin's).
fn keys_of(table: &toml::Table, prefix: &str, into: &mut std::collections::BTreeSet<String>) {
    for (key, value) in table {
        let key = if prefix == "plugins." {
            "ID"
        } else {
            key.as_str()
        };
        let path = format!("{prefix}{key}");
        match value {
            toml::Value::Table(inner) if !path.ends_with(".config") => {
                keys_of(inner, &format!("{path}."), into)
            }
            _ => {
                into.insert(path);
            }
        }
    }
}

fn repository_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `packaging/toru.toml`, shipped as /etc/toru/toru.toml: every key torud
/// reads is there, commented out, with its default.
#[test]
fn the_packaged_config_has_every_key_commented_with_its_default() {
    let shipped = repository_file("packaging/toru.toml");
    // As shipped it is all comments (but table headers): the defaults.
    let as_shipped = parse(&shipped, &no_env()).unwrap();
    assert_eq!(as_shipped, parse("", &no_env()).unwrap());

    // Uncommented, every line is a key torud knows...
    let uncommented: String = shipped
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase() || c == '[') => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let settings = parse(&uncommented, &no_env()).unwrap();
    // ...whose value is the default (the per-plugin example aside).
    let mut without_example = settings.clone();
    without_example.plugins.clear();
    assert_eq!(without_example, as_shipped);
    // "max" everywhere: no limit, as when the plugin has no table.
    let example = &settings.plugins["hello"].limits;
    assert_eq!(example.memory_max, Some(Max::Unlimited));
    assert_eq!(example.pids_max, Some(Max::Unlimited));
    assert_eq!(example.cpu_max, Some(Max::Unlimited));

    // ...and every key torud knows is there.
    let mut shown = std::collections::BTreeSet::new();
    keys_of(&uncommented.parse::<toml::Table>().unwrap(), "", &mut shown);
    assert_eq!(shown, keys_torud_reads());
}

/// `docs/CONFIGURATION.md` and `toru.toml(5)` name every key torud reads.
#[test]
fn the_documentation_and_the_man_page_name_every_key() {
    let docs = repository_file("docs/CONFIGURATION.md");
    let block = docs
        .split("```toml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let mut documented = std::collections::BTreeSet::new();
    keys_of(&block.parse::<toml::Table>().unwrap(), "", &mut documented);
    assert_eq!(documented, keys_torud_reads());

    let page = repository_file("packaging/man/toru.toml.5");
    for key in keys_torud_reads() {
        let last = key.rsplit('.').next().unwrap();
        let entry = if last == "config" {
            "\\fB[plugins.\\fR\\fIID\\fR\\fB.config]\\fR".to_owned()
        } else {
            format!("\\fB{}\\fR = ", last.replace('-', "\\-"))
        };
        assert!(page.contains(&entry), "toru.toml(5) lacks {key} ({entry})");
    }
}

#[test]
fn limits_no_kernel_would_make_sense_of_are_said() {
    // Too little memory for any program: an error naming the key.
    let error = parse("[plugins.hog]\nmemory_max = \"1\"\n", &no_env()).unwrap_err();
    assert!(
        error.problems[0].contains("`plugins.hog.memory_max`") && error.problems[0].contains("1M"),
        "{error:?}"
    );
    // No swap is a value; a swap limit is read as memory is.
    let s = parse(
        "[plugins.hog]\nmemory_max = \"32M\"\n[plugins.other]\nmemory_max = \"32M\"\nmemory_swap_max = \"64M\"\n",
        &no_env(),
    )
    .unwrap();
    assert_eq!(s.plugins["hog"].limits.swap_max(), Some(Max::Value(0)));
    assert_eq!(
        s.plugins["other"].limits.swap_max(),
        Some(Max::Value(64 << 20))
    );
    // More CPU than the machine has: usable, and a warning naming plugin and key.
    let s = parse("[plugins.spin]\ncpu_max = \"100000%\"\n", &no_env()).unwrap();
    let warnings = s.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("`plugins.spin.cpu_max`") && w.contains("limits nothing")),
        "{warnings:?}"
    );
}
