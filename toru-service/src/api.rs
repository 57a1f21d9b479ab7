//! The seam between the HTTP gateway and the rest of torud: what the
//! gateway may ask ([`Backend`]), the views it serves, and the one place
//! where a failure becomes an HTTP status ([`ApiError::status`]).

use std::future::Future;
use std::time::Duration;

use serde::Serialize;
use toru_plugin_api::{HttpRequest, HttpResponse};

pub(crate) use crate::plugins::logs::{LogPage, LogQuery};

/// A plugin as the API shows it (`GET /api/plugins[/{id}]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PluginView {
    /// Metadata id (for an unreadable plugin: its file name).
    pub(crate) id: String,
    /// Display name.
    pub(crate) name: String,
    /// The plugin's version.
    pub(crate) version: String,
    /// Who wrote it.
    pub(crate) author: Option<String>,
    /// Icon.
    pub(crate) icon: String,
    /// `/route`, served under `/api/plugins/route/route/`.
    pub(crate) route: String,
    /// Protocol version spoken (1 or 2).
    pub(crate) protocol: u32,
    /// The executable.
    pub(crate) path: String,
    /// The administrator's choice, persisted.
    pub(crate) enabled: bool,
    /// The process is up and serving.
    pub(crate) running: bool,
    /// `healthy`, `unhealthy` or `disabled`.
    pub(crate) health: &'static str,
    /// `starting`, `running`, `backoff`, `failed`, `stopped`, `disabled`, `invalid`.
    pub(crate) state: &'static str,
    /// The plugin's process id while it runs.
    pub(crate) pid: Option<u32>,
    /// Restarts after a crash since torud started, as systemd counts them (`NRestarts`).
    pub(crate) restarts: u32,
    /// Restarts asked for since torud started (`restart`, a licence change), apart.
    pub(crate) manual_restarts: u32,
    /// How the last run of its process ended, if one did since torud started.
    pub(crate) last_exit: Option<LastExitView>,
    /// Runs the kernel's OOM killer ended (its cgroup's `memory.events` `oom_kill`) since
    /// torud started.
    pub(crate) oom_kills: u32,
    /// When the process in this run began serving (RFC 3339), while it runs.
    pub(crate) running_since: Option<String>,
    /// When it entered its `state` (RFC 3339, µs): a client waiting for a restart
    /// watches it change.
    pub(crate) state_since: String,
    /// Why the plugin is invalid or failed; `null` otherwise.
    pub(crate) error: Option<String>,
    /// Where the plugin listens.
    pub(crate) socket_path: String,
    /// The plugin's cgroup as `/proc/PID/cgroup` names it, while it runs in one.
    pub(crate) cgroup: Option<String>,
    /// Memory its cgroup uses (`memory.current`), where the kernel says.
    pub(crate) memory_bytes: Option<u64>,
    /// CPU time its cgroup used in this run, in µs (`cpu.stat` `usage_usec`).
    pub(crate) cpu_usec: Option<u64>,
    /// Its licence here.
    pub(crate) license: LicenseView,
}

/// How a run of a plugin's process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LastExitView {
    /// When (RFC 3339).
    pub(crate) at: String,
    /// In words: "exited with code 3", "killed by torud: hung: ...", "killed by the kernel: out
    /// of memory ...", "stopped by torud, as asked: exited with code 0".
    pub(crate) reason: String,
    /// The exit code, when it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it (`SIGKILL`), when one did.
    pub(crate) signal: Option<String>,
    /// `exited`, `hung`, `out_of_memory`, `start_failed` or `stopped`.
    pub(crate) cause: &'static str,
}

/// A plugin's licence (`GET /api/plugins/{id}/license`, and in the plugin object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LicenseView {
    /// `valid`, `missing`, `invalid`, `expired` or `not_required`.
    pub(crate) status: &'static str,
    /// To whom it was sold.
    pub(crate) licensee: Option<String>,
    /// Its last day (`YYYY-MM-DD`), or null for ever.
    pub(crate) expires: Option<String>,
    /// Seconds until it stops being valid, when it has an end.
    pub(crate) expires_in_seconds: Option<i64>,
    /// Why it is not valid, or a note.
    pub(crate) error: Option<String>,
    /// Whether the plugin refuses to serve without a valid licence.
    pub(crate) required: bool,
    /// Whether one is installed.
    pub(crate) installed: bool,
}

/// The legacy admin KV endpoint's operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AdminKv {
    /// `{"action":"get","key":K}`.
    Get(String),
    /// `{"action":"set","key":K,"value":V}`.
    Set(String, String),
    /// `{"action":"delete","key":K}`.
    Delete(String),
    /// `{"action":"list","prefix":P}` (Toru's addition): the keys.
    List(String),
}

/// A backup of the store, in an unnamed file read from its start.
#[derive(Debug)]
pub(crate) struct Backup {
    /// The backup, a redb database.
    pub(crate) file: std::fs::File,
    /// What it holds.
    pub(crate) counts: crate::store::Counts,
}

/// Summary for `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct StatusView {
    /// The instance id.
    pub(crate) instance_id: String,
    /// torud's version.
    pub(crate) version: String,
    /// Seconds since torud started.
    pub(crate) uptime_seconds: u64,
    /// What torud serves on.
    pub(crate) listeners: Vec<String>,
    /// Plugins by state.
    pub(crate) plugins: std::collections::BTreeMap<String, usize>,
    /// What a sysadmin should know: licences ending soon, a changed machine id.
    pub(crate) warnings: Vec<String>,
}

/// `GET /api/instance`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct InstanceView {
    /// The instance id.
    pub(crate) instance_id: String,
    /// Whether `/etc/machine-id` is another than the one the id was made on (a cloned
    /// disk, a backup restored on another machine); `null` when torud cannot tell.
    pub(crate) machine_id_changed: Option<bool>,
}

/// Everything that can go wrong answering an API request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ApiError {
    /// Malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// A login with a token that is not the admin token (401).
    #[error("that is not the admin token")]
    WrongToken,
    /// Authenticated, but not allowed to do this, this way (403).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins lately (429); when to try again.
    #[error("too many wrong tokens: try again in a few seconds")]
    TooManyRequests(Duration),
    /// No such plugin, route or path (404).
    #[error("{0}")]
    NotFound(String),
    /// Method not allowed (405); the allowed methods.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// Body too large (413).
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The plugin broke the connection or answered nonsense (502).
    #[error("{0}")]
    BadGateway(String),
    /// The plugin is not running (503); seconds to wait, when known.
    #[error("{message}")]
    Unavailable {
        /// Why.
        message: String,
        /// For `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// The plugin did not answer in time (504).
    #[error("plugin did not answer within {0:?}")]
    Timeout(Duration),
    /// torud itself failed (500).
    #[error("{0}")]
    Internal(String),
    /// What torud holds (its configuration file, say) does not allow it now (409).
    #[error("{0}")]
    Conflict(String),
}

impl ApiError {
    /// The HTTP status for this error: the only mapping in torud.
    pub(crate) fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            Self::BadRequest(_) => S::BAD_REQUEST,
            Self::Unauthorized | Self::WrongToken => S::UNAUTHORIZED,
            Self::Forbidden(_) => S::FORBIDDEN,
            Self::TooManyRequests(_) => S::TOO_MANY_REQUESTS,
            Self::NotFound(_) => S::NOT_FOUND,
            Self::MethodNotAllowed(_) => S::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => S::PAYLOAD_TOO_LARGE,
            Self::BadGateway(_) => S::BAD_GATEWAY,
            Self::Unavailable { .. } => S::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => S::GATEWAY_TIMEOUT,
            Self::Internal(_) => S::INTERNAL_SERVER_ERROR,
            Self::Conflict(_) => S::CONFLICT,
        }
    }
}

/// What the gateway needs from the rest of torud. Implemented by the plugin
/// manager; tests of the gateway may implement it with fixed answers.
pub(crate) trait Backend: Send + Sync + 'static {
    /// The instance id.
    fn instance_id(&self) -> String;
    /// `GET /api/status`.
    fn status(&self) -> StatusView;
    /// Every discovered plugin, valid or not, by id.
    fn plugins(&self) -> Vec<PluginView>;
    /// One plugin.
    fn plugin(&self, id: &str) -> Result<PluginView, ApiError>;
    /// Enables (and clears `failed`), persisted; starts it.
    fn enable(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Disables, persisted; stops it.
    fn disable(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Stops and starts it again.
    fn restart(&self, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// Recent log lines.
    fn logs(&self, id: &str, query: &LogQuery) -> Result<LogPage, ApiError>;
    /// Recent events as JSON objects, newest last.
    fn events(
        &self,
        plugin: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<serde_json::Value>, ApiError>> + Send;
    /// The legacy admin KV endpoint, on the plugin's own storage.
    /// Returns the JSON to answer: `{"value": V|null}` (or `{"keys": [...]}` for list).
    fn kv(
        &self,
        id: &str,
        op: AdminKv,
    ) -> impl Future<Output = Result<serde_json::Value, ApiError>> + Send;
    /// Forwards `request` (path below the route, query kept) to the
    /// plugin whose route is `/{route}`.
    fn forward(
        &self,
        route: &str,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, ApiError>> + Send;
    /// `GET /api/instance`.
    fn instance(&self) -> InstanceView;
    /// Re-reads the configuration and rescans the plugin folders (`POST /api/reload`), as
    /// SIGHUP does; what changed.
    fn reload(&self) -> impl Future<Output = Result<crate::reload::Reloaded, ApiError>> + Send;
    /// Makes a new instance id (`POST /api/instance/regenerate`); its licences stop being valid.
    fn regenerate_instance(&self) -> impl Future<Output = Result<InstanceView, ApiError>> + Send;
    /// `GET /api/plugins/{id}/license`.
    fn license(&self, id: &str) -> Result<LicenseView, ApiError>;
    /// `PUT /api/plugins/{id}/license`: checks and installs `line`, restarts the plugin.
    fn install_license(
        &self,
        id: &str,
        line: &str,
    ) -> impl Future<Output = Result<LicenseView, ApiError>> + Send;
    /// `DELETE /api/plugins/{id}/license`: removes it, restarts the plugin.
    fn remove_license(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<LicenseView, ApiError>> + Send;
    /// A consistent copy of the whole store (`GET /api/store/backup`).
    fn backup(&self) -> impl Future<Output = Result<Backup, ApiError>> + Send;
    /// Asks plugin `id` for its `/bundle.js`.
    fn bundle(&self, id: &str) -> impl Future<Output = Result<HttpResponse, ApiError>> + Send;
    /// Prometheus text exposition.
    fn metrics(&self) -> String;
    /// Records one answered request for the metrics: one forwarded to the plugin at
    /// `route` (its first path segment), or one of torud's own (`None`).
    fn observe(&self, route: Option<&str>, status: u16, elapsed: Duration);
}
