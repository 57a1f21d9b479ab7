//! # torud
//!
//! The Toru daemon: discovers plugin executables, runs each under a
//! supervisor that restarts it with backoff, forwards HTTP requests to them
//! (protocol 2 multiplexed, protocol 1 for legacy plugins), keeps the
//! instance identity and each plugin's key-value data in redb, and serves
//! the admin API.
//!
//! ```text
//!  clients ──HTTP──▶ http ──Backend──▶ daemon ──▶ plugins (domain) ──▶ plugin processes
//!                    (statuses,         (the one    Manager, one supervisor each,
//!                     views)             adapter)   its policy apart from its I/O
//!                                                 │          │
//!                                                 ▼          ▼
//!                                     store::Handle ◀── plugin KV calls (protocol 2)
//! ```
//!
//! docs/ARCHITECTURE.md draws the same on a page: the path of a request and
//! of a KV call, and who owns which state.
//!
//! # Layout
//!
//! * [`config`] — `toru.toml` into validated [`Settings`]; the settings in
//!   force ([`config::LiveSettings`]) and what a reload may change.
//! * [`store`] — redb: instance id, plugin KV, plugin state, events; its async
//!   [`store::Handle`], backups and recovery.
//! * `plugins` — the domain: discovery, supervision and its policy,
//!   processes, links, logs; its own errors, no HTTP.
//! * `cgroup` — torud's delegated cgroup: one group per plugin, limits, kill.
//! * [`http`] — the hyper server, routes, auth; it sees only `api`.
//! * `api` — what the gateway may ask (`Backend`), views, `ApiError` → status.
//! * `daemon` — the adapter: `Backend` over the domain, domain errors to
//!   `ApiError` in one place.
//! * `service` — torud's life: start, serve, reload, stop ([`run`]).
//! * `metrics` — Prometheus exposition.
//! * [`listen`] — binding the configured listeners.
//! * [`systemd`] — socket activation, sd_notify, watchdog, journal detection.
//! * [`signals`] — SIGTERM/SIGINT and SIGHUP into [`Control`] messages.
//! * [`logging`] — the journal when stderr is the journal, else stderr.
//! * [`report`] — an error with its causes, for logs.
//! * [`cli`] — `toructl`, the command line over the API.
//! * [`torud_args`] — `torud`'s command line and `torud(8)`.

// `deny`, not `forbid`: adopting systemd's sockets and placing a plugin in
// its cgroup between fork and exec are the places allowed `unsafe`.
#![deny(unsafe_code)]

/// The gateway's view of torud, and the error → status mapping.
pub(crate) mod api;
/// The delegated cgroup v2 subtree: plugin groups, limits, kill, usage.
pub(crate) mod cgroup;
/// `toructl`.
pub mod cli;
/// `toru.toml`.
pub mod config;
/// `Backend` over the running parts: the one adapter from the domain to the API.
pub(crate) mod daemon;
/// The HTTP server.
pub mod http;
/// Binding listeners from the configuration.
pub mod listen;
/// Logging: native journal entries when stderr is the journal, else stderr lines.
pub mod logging;
/// The machine the instance id is tied to.
pub(crate) mod machine;
/// Manual pages from the clap definitions, with sections of our own.
pub(crate) mod man;
/// Giving freed memory back to the system after a load.
pub(crate) mod memory;
/// `/metrics`.
pub(crate) mod metrics;
/// Plugins: discovery, supervision, connections, logs.
pub(crate) mod plugins;
/// A reload: the configuration re-read, applied, and what changed.
pub mod reload;
/// Saying an error with its causes.
pub mod report;
/// torud's life: start, serve, reload, stop.
mod service;
/// Signals: SIGTERM/SIGINT stop, SIGHUP reloads.
pub mod signals;
/// The redb store.
pub mod store;
/// Socket activation, sd_notify, journal detection.
pub mod systemd;
/// `torud`'s command line and manual page.
pub mod torud_args;

use std::time::Duration;

pub use config::Settings;
pub use service::run;

/// Why torud could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory or database is unusable.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The admin token file cannot be read or created.
    #[error("admin token {path}: {source}")]
    Token {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listener cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime directory cannot be prepared.
    #[error("runtime directory {path}: {source}")]
    RuntimeDir {
        /// The folder.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// A task of torud's panicked.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The exit status for this error: 65 (sysexits' EX_DATAERR) when the stored data is
    /// damaged, lost or of another installation (restarting cannot help), else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Store(e) if e.is_damage() => 65,
            _ => 1,
        }
    }
}

/// Notifications about torud's life, for a service manager (systemd).
/// Every method does nothing by default.
pub trait Lifecycle: Send + Sync + 'static {
    /// Storage open, listeners serving, every enabled plugin started or failed.
    fn ready(&self, status: &str) {
        let _ = status;
    }
    /// A line for a person (`systemctl status`).
    fn status(&self, status: &str) {
        let _ = status;
    }
    /// A reload began; `ready` follows when it is done.
    fn reloading(&self) {}
    /// Start-up is slow but making progress: allow `by` more.
    fn extend_timeout(&self, by: Duration) {
        let _ = by;
    }
    /// How often the service manager expects [`Lifecycle::watchdog`], if at all.
    fn watchdog_interval(&self) -> Option<Duration> {
        None
    }
    /// The serving path is alive.
    fn watchdog(&self) {}
    /// Shutdown began.
    fn stopping(&self) {}
}

/// No service manager to tell.
#[derive(Debug, Default)]
pub struct NoLifecycle;

impl Lifecycle for NoLifecycle {}

/// What can be asked of a running torud.
#[derive(Debug)]
pub enum Control {
    /// Apply a re-read configuration and rescan the plugin folders; say what
    /// changed on `done`.
    Reload {
        /// The configuration read again.
        settings: Box<Settings>,
        /// Where the outcome goes.
        done: tokio::sync::oneshot::Sender<Result<reload::Reloaded, reload::ReloadError>>,
    },
    /// Stop (also what a closed channel means).
    Shutdown,
}
