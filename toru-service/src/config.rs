//! `toru.toml`: parsed into a plain struct, then validated into [`Settings`],
//! which the rest of torud trusts.
//!
//! Every problem is collected and reported at once, each with its line:
//! syntax errors, sections that are not tables, unknown keys (anywhere),
//! values of the wrong type, and values that do not make sense.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Per-plugin resource limits.
mod limits;
/// The settings in force, and what a reload changes of them.
mod live;
/// The file as written, and its problems with their lines.
mod raw;
/// From what is written to [`Settings`].
mod validate;
pub use limits::{CPU_PERIOD_USEC, Max, ResourceLimits};
pub use live::{LiveSettings, read_at_start};
pub use validate::parse_listen;

/// Where torud looks for its configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/toru/toru.toml";

/// Where plugins are looked for when `plugin_dirs` is not set: packaged
/// ones, then the administrator's. Either may be absent.
pub const DEFAULT_PLUGIN_DIRS: [&str; 2] = ["/usr/lib/toru/plugins", "/usr/local/lib/toru/plugins"];

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

/// When the whole database file is checked at start, under `[store]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOnStart {
    /// At every start (0.5 to 2 ms per MiB of database).
    Always,
    /// Only after torud did not stop cleanly: for very large stores.
    AfterCrash,
}

/// How the database is looked after, under `[store]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    /// See [`VerifyOnStart`].
    pub verify_on_start: VerifyOnStart,
}

/// How long browser sessions of the console last, under `[sessions]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after its login, used or not.
    pub lifetime: Duration,
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
    /// The machine id the instance id is tied to (`/etc/machine-id`).
    pub machine_id_file: PathBuf,
    /// See [`RestartPolicy`].
    pub restart: RestartPolicy,
    /// See [`HealthPolicy`].
    pub health: HealthPolicy,
    /// See [`StoreSettings`].
    pub store: StoreSettings,
    /// See [`SessionSettings`].
    pub sessions: SessionSettings,
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

/// The configuration of `torud --dev`: the example plugins of a source
/// checkout, with state and sockets under `target/toru-dev`.
pub const DEV_CONFIG: &str = include_str!("dev.toml");

/// The keys [`DEV_CONFIG`] sets.
const DEV_KEYS: [&str; 4] = ["listen", "state_dir", "runtime_dir", "plugin_dirs"];

/// The development configuration, its relative paths anchored at `base`; with
/// `file`, that file's settings over it (`torud --dev --config FILE`): the keys
/// `FILE` sets are its, the others the development ones.
pub fn dev(base: &Path, file: Option<&Path>) -> Result<Settings, ConfigError> {
    let dev = parse(DEV_CONFIG, &SystemdDirs::default())?;
    let mut settings = match file {
        None => dev,
        Some(file) => {
            let mut settings = load(Some(file), &SystemdDirs::default())?;
            // `load` has read it whole: it is TOML.
            let set = std::fs::read_to_string(file)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .unwrap_or_default();
            for key in DEV_KEYS.iter().filter(|k| !set.contains_key(**k)) {
                match *key {
                    "listen" => settings.listen.clone_from(&dev.listen),
                    "state_dir" => {
                        // The token lives with the state unless the file says otherwise.
                        if !set.contains_key("admin_token_file") {
                            settings.admin_token_file.clone_from(&dev.admin_token_file);
                        }
                        settings.state_dir.clone_from(&dev.state_dir);
                    }
                    "runtime_dir" => settings.runtime_dir.clone_from(&dev.runtime_dir),
                    _ => settings.plugin_dirs.clone_from(&dev.plugin_dirs),
                }
            }
            settings
        }
    };
    settings.absolutize(base);
    Ok(settings)
}

impl Settings {
    /// What is usable but probably not meant: a configured plugin folder
    /// that does not exist (the default ones may be absent), a CPU share over
    /// what the machine has.
    pub fn warnings(&self) -> Vec<String> {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let too_much_cpu = self.plugins.iter().filter_map(|(id, plugin)| match plugin.limits.cpu_max {
            Some(Max::Value(quota)) if quota > CPU_PERIOD_USEC * cpus as u64 => Some(format!(
                "`plugins.{id}.cpu_max` = \"{}%\" is more than this machine's {cpus} CPU(s): it limits nothing",
                quota / 1000
            )),
            _ => None,
        });
        let dirs = self
            .plugin_dirs
            .iter()
            .filter(|dir| {
                !DEFAULT_PLUGIN_DIRS
                    .iter()
                    .any(|d| Path::new(d) == dir.as_path())
            })
            .filter_map(|dir| match std::fs::metadata(dir) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some(format!(
                    "`plugin_dirs`: {} is not a folder; no plugin is looked for there",
                    dir.display()
                )),
                Err(e) => Some(format!(
                    "`plugin_dirs`: {} cannot be read ({e}); no plugin is looked for there",
                    dir.display()
                )),
            });
        dirs.chain(too_much_cpu).collect()
    }

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
            // `FILE:LINE: problem`, as compilers say it.
            problems: e
                .problems
                .into_iter()
                .map(
                    |p| match p.strip_prefix("line ").and_then(|r| r.split_once(": ")) {
                        Some((line, rest)) if line.parse::<usize>().is_ok() => {
                            format!("{}:{line}: {rest}", path.display())
                        }
                        _ => format!("{}: {p}", path.display()),
                    },
                )
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
    let (raw, mut problems) = raw::read(text);
    let settings = raw.map(|raw| validate::validate(raw, dirs, &mut problems));
    match settings {
        Some(settings) if problems.is_empty() => Ok(settings),
        _ => Err(ConfigError {
            problems: problems.into_list(),
        }),
    }
}

#[cfg(test)]
mod tests;
