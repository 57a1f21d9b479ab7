//! The raw file checked key by key into [`Settings`]: defaults filled in,
//! every value that makes no sense said with its key and line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::{Problems, RawConfig};
use super::{
    DEFAULT_PLUGIN_DIRS, HealthPolicy, ListenAddr, PluginSettings, ResourceLimits, RestartPolicy,
    SessionSettings, Settings, StoreSettings, SystemdDirs, VerifyOnStart,
};

pub(super) fn validate(
    raw: RawConfig,
    dirs: &SystemdDirs,
    problems: &mut Problems<'_>,
) -> Settings {
    let duration = |problems: &mut Problems<'_>, key: &str, value, default: Duration| {
        let Some(text) = problems.take_hinted::<String>(
            key,
            value,
            "a duration is a string such as \"250ms\", \"30s\", \"5m\"",
        ) else {
            return default;
        };
        match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                problems.at(key, format!("`{key}` must be above zero, got {text:?}"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                problems.at(
                    key,
                    format!(
                        "`{key}` = {text:?} is not a duration ({e}); write e.g. \"250ms\", \"30s\", \"5m\""
                    ),
                );
                default
            }
        }
    };
    let request_timeout = duration(
        problems,
        "request_timeout",
        raw.request_timeout,
        Duration::from_secs(30),
    );
    let shutdown_timeout = duration(
        problems,
        "shutdown_timeout",
        raw.shutdown_timeout,
        Duration::from_secs(10),
    );
    let header_read_timeout = duration(
        problems,
        "header_read_timeout",
        raw.header_read_timeout,
        Duration::from_secs(10),
    );
    let restart = RestartPolicy {
        backoff_initial: duration(
            problems,
            "restart.backoff_initial",
            raw.restart.backoff_initial,
            Duration::from_millis(250),
        ),
        backoff_max: duration(
            problems,
            "restart.backoff_max",
            raw.restart.backoff_max,
            Duration::from_secs(30),
        ),
        stable_after: duration(
            problems,
            "restart.stable_after",
            raw.restart.stable_after,
            Duration::from_secs(60),
        ),
        max_failures: problems
            .take("restart.max_failures", raw.restart.max_failures)
            .unwrap_or(5),
        failure_window: duration(
            problems,
            "restart.failure_window",
            raw.restart.failure_window,
            Duration::from_secs(120),
        ),
    };
    let health = HealthPolicy {
        start_timeout: duration(
            problems,
            "health.start_timeout",
            raw.health.start_timeout,
            Duration::from_secs(10),
        ),
        metadata_timeout: duration(
            problems,
            "health.metadata_timeout",
            raw.health.metadata_timeout,
            Duration::from_secs(5),
        ),
        ping_interval: duration(
            problems,
            "health.ping_interval",
            raw.health.ping_interval,
            Duration::from_secs(10),
        ),
        ping_timeout: duration(
            problems,
            "health.ping_timeout",
            raw.health.ping_timeout,
            Duration::from_secs(5),
        ),
    };
    if restart.max_failures == 0 {
        problems.at(
            "restart.max_failures",
            "`restart.max_failures` must be at least 1",
        );
    }
    if restart.backoff_initial > restart.backoff_max {
        problems.at(
            "restart.backoff_initial",
            "`restart.backoff_initial` is longer than `restart.backoff_max`",
        );
    }
    let store = StoreSettings {
        verify_on_start: match problems
            .take::<String>("store.verify_on_start", raw.store.verify_on_start)
            .as_deref()
        {
            None | Some("always") => VerifyOnStart::Always,
            Some("after-crash") => VerifyOnStart::AfterCrash,
            Some(other) => {
                problems.at(
                    "store.verify_on_start",
                    format!(
                        "`store.verify_on_start` = {other:?}: write \"always\" or \"after-crash\""
                    ),
                );
                VerifyOnStart::Always
            }
        },
    };

    let sessions = SessionSettings {
        idle_timeout: duration(
            problems,
            "sessions.idle_timeout",
            raw.sessions.idle_timeout,
            Duration::from_secs(3600),
        ),
        lifetime: duration(
            problems,
            "sessions.lifetime",
            raw.sessions.lifetime,
            Duration::from_secs(12 * 3600),
        ),
    };
    if sessions.idle_timeout > sessions.lifetime {
        problems.at(
            "sessions.idle_timeout",
            "`sessions.idle_timeout` is longer than `sessions.lifetime`",
        );
    }

    let state_dir = problems.take("state_dir", raw.state_dir);
    let state_dir = dir(
        "state_dir",
        state_dir,
        dirs.state.clone(),
        "/var/lib/toru",
        problems,
    );
    let runtime_dir = problems.take("runtime_dir", raw.runtime_dir);
    let runtime_dir = dir(
        "runtime_dir",
        runtime_dir,
        dirs.runtime.clone(),
        "/run/toru",
        problems,
    );
    let plugin_dirs = problems
        .take("plugin_dirs", raw.plugin_dirs)
        .unwrap_or_else(|| DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect());
    if plugin_dirs.iter().any(|d| d.as_os_str().is_empty()) {
        problems.at("plugin_dirs", "`plugin_dirs` holds an empty path");
    }
    let admin_token_file = problems
        .take("admin_token_file", raw.admin_token_file)
        .unwrap_or_else(|| state_dir.join("admin.token"));

    let listen = match problems.take("listen", raw.listen) {
        None => vec![
            ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 7070))),
            ListenAddr::Unix(runtime_dir.join("toru.sock")),
        ],
        Some(list) => list
            .iter()
            .filter_map(|entry| match parse_listen(entry) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    problems.at("listen", format!("`listen`: {e}"));
                    None
                }
            })
            .collect(),
    };

    let positive = |problems: &mut Problems<'_>, key: &str, value, default: usize| match problems
        .take::<usize>(
        key, value,
    ) {
        Some(0) => {
            problems.at(key, format!("`{key}` must be above zero"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_body_bytes = positive(
        problems,
        "max_body_bytes",
        raw.max_body_bytes,
        8 * 1024 * 1024,
    );
    let max_header_bytes = positive(
        problems,
        "max_header_bytes",
        raw.max_header_bytes,
        64 * 1024,
    );
    let max_connections = positive(problems, "max_connections", raw.max_connections, 1024);
    if max_body_bytes > toru_plugin_api::codec::MAX_FRAME_LEN - 64 * 1024 {
        problems.at(
            "max_body_bytes",
            format!(
                "`max_body_bytes` must leave room in a 16 MiB protocol frame: at most {}",
                toru_plugin_api::codec::MAX_FRAME_LEN - 64 * 1024
            ),
        );
    }
    if max_header_bytes < 8192 {
        problems.at(
            "max_header_bytes",
            "`max_header_bytes` must be at least 8192",
        );
    }

    let machine_id_file = problems
        .take("machine_id_file", raw.machine_id_file)
        .unwrap_or_else(|| PathBuf::from("/etc/machine-id"));
    let isolate_plugins = problems
        .take("isolate_plugins", raw.isolate_plugins)
        .unwrap_or(true);
    if isolate_plugins
        && (runtime_dir.starts_with(&state_dir) || state_dir.starts_with(&runtime_dir))
    {
        problems.at(
            "state_dir",
            format!(
                "`state_dir` ({}) and `runtime_dir` ({}) must not contain one another: \
                 plugins see their own socket folder, never the state",
                state_dir.display(),
                runtime_dir.display()
            ),
        );
    }

    let mut plugins = BTreeMap::new();
    for (id, mut plugin) in raw.plugins {
        let key = format!("plugins.{id}");
        if let Err(e) = toru_plugin_api::protocol::metadata::validate_id(&id) {
            problems.at(&key, format!("`{key}`: {e}"));
            continue;
        }
        let config_key = format!("{key}.config");
        let table = problems
            .take(&config_key, std::mem::take(&mut plugin.config))
            .unwrap_or_default();
        let config = match serde_json::to_value(&table) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                problems.at(
                    &config_key,
                    format!("`{config_key}` cannot be given to a plugin as JSON"),
                );
                continue;
            }
        };
        let limits = ResourceLimits::parse(&key, &plugin, problems);
        plugins.insert(id, PluginSettings { config, limits });
    }

    Settings {
        listen,
        state_dir,
        runtime_dir,
        plugin_dirs,
        request_timeout,
        admin_token_file,
        shutdown_timeout,
        max_body_bytes,
        max_header_bytes,
        max_connections,
        header_read_timeout,
        isolate_plugins,
        machine_id_file,
        restart,
        health,
        store,
        sessions,
        plugins,
    }
}

/// The configured folder, else systemd's, else the default.
fn dir(
    key: &str,
    configured: Option<PathBuf>,
    systemd: Option<PathBuf>,
    default: &str,
    problems: &mut Problems<'_>,
) -> PathBuf {
    let dir = configured.or(systemd).unwrap_or_else(|| default.into());
    if dir.as_os_str().is_empty() {
        problems.at(key, format!("`{key}` is empty"));
    }
    dir
}

/// `unix:PATH` or `IP:PORT`.
pub fn parse_listen(entry: &str) -> Result<ListenAddr, String> {
    if let Some(path) = entry.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("{entry:?} names no socket path"));
        }
        return Ok(ListenAddr::Unix(path.into()));
    }
    entry.parse().map(ListenAddr::Tcp).map_err(|_| {
        format!("{entry:?} is neither IP:PORT (127.0.0.1:7070, [::1]:7070) nor unix:/path/to.sock")
    })
}
