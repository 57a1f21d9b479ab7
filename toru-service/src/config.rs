//! `toru.toml`: parsed into a plain struct, then validated into [`Settings`],
//! which the rest of torud trusts.
//!
//! Every problem is collected and reported at once: unknown keys (all of
//! them, found with `serde_ignored`), then each value that does not make sense.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Per-plugin resource limits.
mod limits;
pub use limits::{CPU_PERIOD_USEC, Max, ResourceLimits};

/// Where torud looks for its configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/toru/toru.toml";

/// A configuration that cannot be used; lists every problem.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// One line per problem, each naming the key.
    pub problems: Vec<String>,
}

impl ConfigError {
    fn one(problem: String) -> Self {
        Self {
            problems: vec![problem],
        }
    }
}

/// One address to serve the HTTP API on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// `127.0.0.1:7070`, `[::1]:7070`.
    Tcp(SocketAddr),
    /// `unix:/run/toru/toru.sock`.
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// When and how often a plugin that exits is started again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Wait before the first restart; doubles each time.
    pub backoff_initial: Duration,
    /// The longest wait between restarts.
    pub backoff_max: Duration,
    /// A plugin up this long is healthy again: the backoff starts over.
    pub stable_after: Duration,
    /// This many exits within `failure_window` make the plugin `failed`.
    pub max_failures: u32,
    /// See `max_failures`.
    pub failure_window: Duration,
}

/// How torud tells a live plugin from a hung or slow one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthPolicy {
    /// How long a starting plugin has to accept on its socket and answer `init`.
    pub start_timeout: Duration,
    /// How long `PLUGIN --metadata` may take.
    pub metadata_timeout: Duration,
    /// How often a protocol-2 plugin is pinged.
    pub ping_interval: Duration,
    /// A ping unanswered this long means the plugin is hung: it is restarted.
    pub ping_timeout: Duration,
}

/// Settings of one plugin, under `[plugins.<id>]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginSettings {
    /// Handed to the plugin in `init` as its `config`.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Enforced through the plugin's cgroup, where the controller exists.
    pub limits: ResourceLimits,
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Addresses served when not socket-activated.
    pub listen: Vec<ListenAddr>,
    /// The database and the admin token live here.
    pub state_dir: PathBuf,
    /// Plugin sockets live here.
    pub runtime_dir: PathBuf,
    /// Folders searched for plugin executables, in order.
    pub plugin_dirs: Vec<PathBuf>,
    /// Longest wait for a plugin's answer before 504.
    pub request_timeout: Duration,
    /// Bearer token for TCP clients; created (0600) when missing.
    pub admin_token_file: PathBuf,
    /// On stop: how long in-flight requests and plugins get to finish.
    pub shutdown_timeout: Duration,
    /// Longest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest request head (request line + headers) accepted (431 above).
    pub max_header_bytes: usize,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A client has this long to send a request's headers (slowloris).
    pub header_read_timeout: Duration,
    /// Run each plugin in a user and mount namespace of its own, where
    /// `state_dir`, the admin token and the rest of `runtime_dir` (other
    /// plugins' sockets, torud's own) are hidden.
    pub isolate_plugins: bool,
    /// See [`RestartPolicy`].
    pub restart: RestartPolicy,
    /// See [`HealthPolicy`].
    pub health: HealthPolicy,
    /// Per-plugin settings by plugin id.
    pub plugins: BTreeMap<String, PluginSettings>,
}

/// systemd's directories, when it set them (`StateDirectory=` ...).
#[derive(Debug, Clone, Default)]
pub struct SystemdDirs {
    /// `$STATE_DIRECTORY`.
    pub state: Option<PathBuf>,
    /// `$RUNTIME_DIRECTORY`.
    pub runtime: Option<PathBuf>,
}

impl SystemdDirs {
    /// Reads the variables; systemd may list several paths separated by `:`,
    /// the first is ours.
    pub fn from_env() -> Self {
        let first = |name: &str| {
            std::env::var_os(name)
                .and_then(|v| {
                    v.to_str()
                        .map(|s| s.split(':').next().unwrap_or("").to_owned())
                })
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
        };
        Self {
            state: first("STATE_DIRECTORY"),
            runtime: first("RUNTIME_DIRECTORY"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    listen: Option<Vec<String>>,
    state_dir: Option<PathBuf>,
    runtime_dir: Option<PathBuf>,
    plugin_dirs: Option<Vec<PathBuf>>,
    request_timeout: Option<String>,
    admin_token_file: Option<PathBuf>,
    shutdown_timeout: Option<String>,
    max_body_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    max_connections: Option<usize>,
    header_read_timeout: Option<String>,
    isolate_plugins: Option<bool>,
    #[serde(default)]
    restart: RawRestart,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    plugins: BTreeMap<String, RawPlugin>,
}

#[derive(Debug, Default, Deserialize)]
struct RawRestart {
    backoff_initial: Option<String>,
    backoff_max: Option<String>,
    stable_after: Option<String>,
    max_failures: Option<u32>,
    failure_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawHealth {
    start_timeout: Option<String>,
    metadata_timeout: Option<String>,
    ping_interval: Option<String>,
    ping_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawPlugin {
    #[serde(default)]
    config: toml::Table,
    memory_max: Option<toml::Value>,
    pids_max: Option<toml::Value>,
    cpu_max: Option<toml::Value>,
}

/// The configuration of `torud --dev`: the example plugins of a source
/// checkout, with state and sockets under `target/toru-dev`.
pub const DEV_CONFIG: &str = include_str!("dev.toml");

/// The development configuration, its relative paths anchored at `base`.
pub fn dev(base: &Path) -> Result<Settings, ConfigError> {
    let mut settings = parse(DEV_CONFIG, &SystemdDirs::default())?;
    settings.absolutize(base);
    Ok(settings)
}

impl Settings {
    /// Anchors every relative path at `base` (plugins get absolute socket
    /// paths even though they run in another folder).
    pub fn absolutize(&mut self, base: &Path) {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        anchor(&mut self.state_dir);
        anchor(&mut self.runtime_dir);
        anchor(&mut self.admin_token_file);
        self.plugin_dirs.iter_mut().for_each(anchor);
        for listen in &mut self.listen {
            if let ListenAddr::Unix(path) = listen {
                anchor(path);
            }
        }
    }
}

/// Reads the configuration: `path` when given (it must exist), else
/// [`DEFAULT_CONFIG_PATH`] if it exists, else built-in defaults.
pub fn load(path: Option<&Path>, dirs: &SystemdDirs) -> Result<Settings, ConfigError> {
    let (path, required) = match path {
        Some(path) => (path, true),
        None => (Path::new(DEFAULT_CONFIG_PATH), false),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, dirs).map_err(|e| ConfigError {
            problems: e
                .problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => parse("", dirs),
        Err(e) => Err(ConfigError::one(format!(
            "{}: cannot read: {e}",
            path.display()
        ))),
    }
}

/// Parses and validates configuration text.
pub fn parse(text: &str, dirs: &SystemdDirs) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| ConfigError::one(format!("invalid TOML: {}", e.to_string().trim())))?;
    let raw: RawConfig = serde_ignored::deserialize(deserializer, |key| {
        problems.push(format!("unknown key `{key}`"));
    })
    .map_err(|e| ConfigError::one(e.to_string().trim().to_owned()))?;
    let settings = validate(raw, dirs, &mut problems);
    if problems.is_empty() {
        Ok(settings)
    } else {
        Err(ConfigError { problems })
    }
}

fn validate(raw: RawConfig, dirs: &SystemdDirs, problems: &mut Vec<String>) -> Settings {
    let mut duration = |key: &str, value: Option<String>, default: Duration| match value {
        None => default,
        Some(text) => match humantime::parse_duration(&text) {
            Ok(d) if d.is_zero() => {
                problems.push(format!("`{key}` must be above zero, got {text:?}"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                problems.push(format!(
                    "`{key}` = {text:?} is not a duration ({e}); write e.g. \"250ms\", \"30s\", \"5m\""
                ));
                default
            }
        },
    };
    let request_timeout = duration(
        "request_timeout",
        raw.request_timeout,
        Duration::from_secs(30),
    );
    let shutdown_timeout = duration(
        "shutdown_timeout",
        raw.shutdown_timeout,
        Duration::from_secs(10),
    );
    let header_read_timeout = duration(
        "header_read_timeout",
        raw.header_read_timeout,
        Duration::from_secs(10),
    );
    let restart = RestartPolicy {
        backoff_initial: duration(
            "restart.backoff_initial",
            raw.restart.backoff_initial,
            Duration::from_millis(250),
        ),
        backoff_max: duration(
            "restart.backoff_max",
            raw.restart.backoff_max,
            Duration::from_secs(30),
        ),
        stable_after: duration(
            "restart.stable_after",
            raw.restart.stable_after,
            Duration::from_secs(60),
        ),
        max_failures: raw.restart.max_failures.unwrap_or(5),
        failure_window: duration(
            "restart.failure_window",
            raw.restart.failure_window,
            Duration::from_secs(120),
        ),
    };
    let health = HealthPolicy {
        start_timeout: duration(
            "health.start_timeout",
            raw.health.start_timeout,
            Duration::from_secs(10),
        ),
        metadata_timeout: duration(
            "health.metadata_timeout",
            raw.health.metadata_timeout,
            Duration::from_secs(5),
        ),
        ping_interval: duration(
            "health.ping_interval",
            raw.health.ping_interval,
            Duration::from_secs(10),
        ),
        ping_timeout: duration(
            "health.ping_timeout",
            raw.health.ping_timeout,
            Duration::from_secs(5),
        ),
    };
    if restart.max_failures == 0 {
        problems.push("`restart.max_failures` must be at least 1".to_owned());
    }
    if restart.backoff_initial > restart.backoff_max {
        problems.push("`restart.backoff_initial` is longer than `restart.backoff_max`".to_owned());
    }

    let state_dir = dir(
        "state_dir",
        raw.state_dir,
        dirs.state.clone(),
        "/var/lib/toru",
        problems,
    );
    let runtime_dir = dir(
        "runtime_dir",
        raw.runtime_dir,
        dirs.runtime.clone(),
        "/run/toru",
        problems,
    );
    let plugin_dirs = raw.plugin_dirs.unwrap_or_else(|| {
        vec![
            "/usr/lib/toru/plugins".into(),
            "/usr/local/lib/toru/plugins".into(),
        ]
    });
    if plugin_dirs.iter().any(|d| d.as_os_str().is_empty()) {
        problems.push("`plugin_dirs` holds an empty path".to_owned());
    }
    let admin_token_file = raw
        .admin_token_file
        .unwrap_or_else(|| state_dir.join("admin.token"));

    let listen = match raw.listen {
        None => vec![
            ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 7070))),
            ListenAddr::Unix(runtime_dir.join("toru.sock")),
        ],
        Some(list) => list
            .iter()
            .filter_map(|entry| match parse_listen(entry) {
                Ok(addr) => Some(addr),
                Err(e) => {
                    problems.push(format!("`listen`: {e}"));
                    None
                }
            })
            .collect(),
    };

    let mut positive = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => {
            problems.push(format!("`{key}` must be above zero"));
            default
        }
        Some(n) => n,
        None => default,
    };
    let max_body_bytes = positive("max_body_bytes", raw.max_body_bytes, 8 * 1024 * 1024);
    let max_header_bytes = positive("max_header_bytes", raw.max_header_bytes, 64 * 1024);
    let max_connections = positive("max_connections", raw.max_connections, 1024);
    if max_body_bytes > toru_plugin_api::codec::MAX_FRAME_LEN - 64 * 1024 {
        problems.push(format!(
            "`max_body_bytes` must leave room in a 16 MiB protocol frame: at most {}",
            toru_plugin_api::codec::MAX_FRAME_LEN - 64 * 1024
        ));
    }
    if max_header_bytes < 8192 {
        problems.push("`max_header_bytes` must be at least 8192".to_owned());
    }

    let isolate_plugins = raw.isolate_plugins.unwrap_or(true);
    if isolate_plugins
        && (runtime_dir.starts_with(&state_dir) || state_dir.starts_with(&runtime_dir))
    {
        problems.push(format!(
            "`state_dir` ({}) and `runtime_dir` ({}) must not contain one another: \
             plugins see their own socket folder, never the state",
            state_dir.display(),
            runtime_dir.display()
        ));
    }

    let mut plugins = BTreeMap::new();
    for (id, plugin) in raw.plugins {
        if let Err(e) = toru_plugin_api::protocol::metadata::validate_id(&id) {
            problems.push(format!("`plugins.{id}`: {e}"));
            continue;
        }
        let config = match serde_json::to_value(&plugin.config) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                problems.push(format!(
                    "`plugins.{id}.config` cannot be given to a plugin as JSON"
                ));
                continue;
            }
        };
        let limits = ResourceLimits::parse(
            &format!("plugins.{id}"),
            plugin.memory_max,
            plugin.pids_max,
            plugin.cpu_max,
            problems,
        );
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
        restart,
        health,
        plugins,
    }
}

/// The configured folder, else systemd's, else the default.
fn dir(
    key: &str,
    configured: Option<PathBuf>,
    systemd: Option<PathBuf>,
    default: &str,
    problems: &mut Vec<String>,
) -> PathBuf {
    let dir = configured.or(systemd).unwrap_or_else(|| default.into());
    if dir.as_os_str().is_empty() {
        problems.push(format!("`{key}` is empty"));
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

#[cfg(test)]
mod tests;
