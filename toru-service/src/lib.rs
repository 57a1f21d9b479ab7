//! # torud
//!
//! The Toru daemon: discovers plugin executables, runs each under a
//! supervisor that restarts it with backoff, forwards HTTP requests to them
//! (protocol 2 multiplexed, protocol 1 for legacy plugins), keeps the
//! instance identity and each plugin's key-value data in redb, and serves
//! the admin API.
//!
//! ```text
//!  clients ──HTTP──▶ http (hyper) ──Backend──▶ daemon ──▶ plugins::Manager
//!                                                 │          │ one supervisor per plugin
//!                                                 ▼          ▼
//!                                               store ◀── plugin KV calls (protocol 2)
//! ```
//!
//! # Layout
//!
//! * [`config`] — `toru.toml` into validated [`Settings`].
//! * [`store`] — redb: instance id, plugin KV, plugin state, events.
//! * [`plugins`] — discovery, supervision, processes, links, logs.
//! * [`cgroup`] — torud's delegated cgroup: one group per plugin, limits, kill.
//! * [`http`] — the hyper server, routes, auth.
//! * [`api`] — the seam between `http` and the rest; errors → statuses.
//! * [`daemon`] — [`api::Backend`] over manager, store and metrics.
//! * [`metrics`] — Prometheus exposition.
//! * [`listen`] — binding the configured listeners.
//! * [`systemd`] — socket activation, sd_notify, watchdog, journal detection.
//! * [`signals`] — SIGTERM/SIGINT and SIGHUP into [`Control`] messages.
//! * [`logging`] — the journal when stderr is the journal, else stderr.
//! * [`cli`] — `toructl`, the command line over the API.
//! * [`torud_args`] — `torud`'s command line and `torud(8)`.

// `deny`, not `forbid`: adopting systemd's sockets and placing a plugin in
// its cgroup between fork and exec are the places allowed `unsafe`.
#![deny(unsafe_code)]

/// The gateway's view of torud, and the error → status mapping.
pub mod api;
/// The delegated cgroup v2 subtree: plugin groups, limits, kill, usage.
pub mod cgroup;
/// `toructl`.
pub mod cli;
/// `toru.toml`.
pub mod config;
/// `Backend` over the running parts.
pub mod daemon;
/// The HTTP server.
pub mod http;
/// Binding listeners from the configuration.
pub mod listen;
/// Logging: native journal entries when stderr is the journal, else stderr lines.
pub mod logging;
/// `/metrics`.
pub mod metrics;
/// Plugins: discovery, supervision, connections, logs.
pub mod plugins;
/// Signals: SIGTERM/SIGINT stop, SIGHUP reloads.
pub mod signals;
/// The redb store.
pub mod store;
/// Socket activation, sd_notify, journal detection.
pub mod systemd;
/// `torud`'s command line and manual page.
pub mod torud_args;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

pub use config::Settings;
use daemon::Daemon;
use http::{AdminToken, HttpOptions, Listener};
use plugins::{Context, Manager};
use store::{Event, EventKind, Store};

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
    /// Apply a re-read configuration and rescan the plugin folders.
    Reload(Box<Settings>),
    /// Stop (also what a closed channel means).
    Shutdown,
}

/// Runs torud on `listeners` until [`Control::Shutdown`] (or the channel
/// closes), then stops taking requests, lets in-flight ones finish
/// (`shutdown_timeout`), stops every plugin, and returns.
pub async fn run(
    settings: Settings,
    listeners: Vec<Listener>,
    mut control: mpsc::Receiver<Control>,
    lifecycle: Arc<dyn Lifecycle>,
) -> Result<(), Error> {
    let settings = Arc::new(settings);
    for warning in settings.warnings() {
        warn!("config: {warning}");
    }
    let state_dir = settings.state_dir.clone();
    let verify = settings.store.verify_on_start;
    let store = tokio::task::spawn_blocking(move || Store::open_verifying(&state_dir, verify))
        .await
        .map_err(|e| Error::Internal(e.to_string()))??;
    let store = Arc::new(store);
    let token =
        AdminToken::load_or_create(&settings.admin_token_file).map_err(|source| Error::Token {
            path: settings.admin_token_file.clone(),
            source,
        })?;
    prepare_runtime_dir(&settings.runtime_dir)?;
    // Only now, holding the state directory's lock: no other torud runs these.
    for killed in plugins::leftovers::reap(&settings.runtime_dir) {
        warn!("killed what an earlier torud left running: {killed}");
    }
    let instance_id = store.instance_id().to_string();
    info!(%instance_id, state_dir = %settings.state_dir.display(), "store open");
    record(
        &store,
        Event::new(
            None,
            EventKind::DaemonStarted,
            format!("torud {}", env!("CARGO_PKG_VERSION")),
        ),
    );

    let cgroups = take_over_cgroups(&settings).await;
    let ctx = Arc::new(Context::new(
        settings.clone(),
        store.clone(),
        instance_id,
        cgroups,
    ));
    let manager = Manager::new(ctx.clone());
    lifecycle.status("discovering plugins");
    let found =
        plugins::discovery::discover(&settings.plugin_dirs, settings.health.metadata_timeout, &[])
            .await;
    info!(found = found.len(), "plugins discovered");
    manager.load(found);

    let names = listeners.iter().map(listen::describe).collect();
    let daemon = Arc::new(Daemon::new(manager.clone(), store.clone(), names));
    let options = HttpOptions {
        max_body_bytes: settings.max_body_bytes,
        max_header_bytes: settings.max_header_bytes,
        header_read_timeout: settings.header_read_timeout,
        max_connections: settings.max_connections,
        grace: settings.shutdown_timeout,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(http::serve(
        listeners,
        daemon.clone(),
        Arc::new(token),
        options,
        stop.clone().cancelled_owned(),
    ));

    if wait_settled(
        &manager,
        &daemon,
        &mut control,
        lifecycle.as_ref(),
        &settings,
    )
    .await
    {
        let status = status_line(&daemon);
        info!(%status, "ready");
        lifecycle.ready(&status);
        let keepalive = tokio::spawn(keepalive(daemon.clone(), lifecycle.clone()));
        while let Some(Control::Reload(new)) = control.recv().await {
            lifecycle.reloading();
            reload(&ctx, &manager, *new).await;
            let status = status_line(&daemon);
            info!(%status, "reloaded");
            lifecycle.ready(&status);
        }
        keepalive.abort();
    }

    info!("stopping: finishing requests in flight");
    lifecycle.stopping();
    stop.cancel();
    let served = server.await;
    manager
        .shutdown(settings.shutdown_timeout + Duration::from_secs(5))
        .await;
    record(
        &store,
        Event::new(None, EventKind::DaemonStopped, "stopped"),
    );
    info!("stopped");
    match served {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::Http(e)),
        Err(e) => Err(Error::Internal(e.to_string())),
    }
}

/// Waits until every plugin has started or failed, telling the service
/// manager that start-up is progressing; false if asked to stop meanwhile.
async fn wait_settled(
    manager: &Manager,
    daemon: &Daemon,
    control: &mut mpsc::Receiver<Control>,
    lifecycle: &dyn Lifecycle,
    settings: &Settings,
) -> bool {
    let settled = manager.settled();
    tokio::pin!(settled);
    let mut progress = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(2),
        Duration::from_secs(2),
    );
    loop {
        tokio::select! {
            () = &mut settled => return true,
            _ = progress.tick() => {
                // Each plugin's start is bounded by start_timeout: asking
                // for that much more at a time can never extend forever.
                lifecycle.extend_timeout(settings.health.start_timeout + Duration::from_secs(5));
                lifecycle.status(&format!("starting: {}", status_line(daemon)));
            }
            message = control.recv() => match message {
                Some(Control::Reload(_)) => warn!("reload ignored: torud is still starting"),
                Some(Control::Shutdown) | None => return false,
            },
        }
    }
}

/// Status lines on change, and watchdog pings at half the interval. The
/// pings come from a task of the serving runtime that also takes the
/// plugins' state locks: a stalled runtime or a deadlock stops them.
async fn keepalive(daemon: Arc<Daemon>, lifecycle: Arc<dyn Lifecycle>) {
    let half = lifecycle.watchdog_interval().map(|w| w / 2);
    let mut status_tick = tokio::time::interval(Duration::from_secs(2));
    let mut watchdog_tick = tokio::time::interval(half.unwrap_or(Duration::from_secs(3600)));
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = status_tick.tick() => {
                let status = status_line(&daemon);
                if status != last {
                    lifecycle.status(&status);
                    last = status;
                }
            }
            _ = watchdog_tick.tick(), if half.is_some() => {
                let _alive = status_line(&daemon);
                lifecycle.watchdog();
            }
        }
    }
}

/// Applies a re-read configuration: settings for future starts, then a
/// rescan of the plugin folders.
async fn reload(ctx: &Context, manager: &Manager, new: Settings) {
    let old = ctx.settings();
    for (what, changed) in [
        ("listen", old.listen != new.listen),
        ("state_dir", old.state_dir != new.state_dir),
        ("runtime_dir", old.runtime_dir != new.runtime_dir),
        (
            "admin_token_file",
            old.admin_token_file != new.admin_token_file,
        ),
        (
            "limits of the HTTP server",
            old.max_body_bytes != new.max_body_bytes
                || old.max_header_bytes != new.max_header_bytes
                || old.max_connections != new.max_connections
                || old.header_read_timeout != new.header_read_timeout,
        ),
    ] {
        if changed {
            warn!("`{what}` changed: it takes effect when torud restarts");
        }
    }
    for warning in new.warnings() {
        warn!("config: {warning}");
    }
    let mut new = new;
    new.listen = old.listen.clone();
    new.state_dir = old.state_dir.clone();
    new.runtime_dir = old.runtime_dir.clone();
    new.admin_token_file = old.admin_token_file.clone();
    let new = Arc::new(new);
    ctx.set_settings(new.clone());
    let found = plugins::discovery::discover(
        &new.plugin_dirs,
        new.health.metadata_timeout,
        &manager.held(),
    )
    .await;
    let changes = manager.reload(found).await;
    manager.settled().await;
    info!(%changes, "reload applied");
}

/// "serving 3/4 plugins; hello-py in backoff".
pub fn status_line(daemon: &Daemon) -> String {
    let plugins = daemon.manager.list();
    let valid: Vec<_> = plugins.iter().filter(|p| p.metadata.is_some()).collect();
    let running = valid
        .iter()
        .filter(|p| p.state() == plugins::handle::State::Running)
        .count();
    let mut line = format!("serving {running}/{} plugins", valid.len());
    for plugin in &plugins {
        let state = plugin.state();
        if !matches!(
            state,
            plugins::handle::State::Running | plugins::handle::State::Disabled
        ) {
            line.push_str(&format!("; {} {}", plugin.id, state.as_str()));
        }
    }
    line
}

/// torud's delegated cgroup, taken over (torud in `supervisor/`, leftovers
/// of a torud that died removed); `None`, said once, when there is none.
async fn take_over_cgroups(settings: &Settings) -> Option<Arc<cgroup::Cgroups>> {
    let limited: Vec<&str> = settings
        .plugins
        .iter()
        .filter(|(_, p)| p.limits.any())
        .map(|(id, _)| id.as_str())
        .collect();
    match tokio::task::spawn_blocking(cgroup::Cgroups::start).await {
        Ok(Ok(cgroups)) => {
            cgroups.warn_unenforced(&settings.plugins);
            Some(Arc::new(cgroups))
        }
        Ok(Err(reason)) => {
            warn!("cgroup2 not writable ({reason}): plugins run in process groups");
            if !limited.is_empty() {
                warn!(
                    plugins = %limited.join(", "),
                    "memory_max, pids_max and cpu_max are not enforced without a writable cgroup2"
                );
            }
            None
        }
        Err(e) => {
            warn!(error = %e, "cgroup detection failed: plugins run in process groups");
            None
        }
    }
}

fn record(store: &Store, event: Event) {
    if let Err(e) = store.record_event(&event) {
        warn!(error = %e, "cannot record event");
    }
}

/// The runtime directory exists; plugin sockets get a private folder in it.
fn prepare_runtime_dir(dir: &std::path::Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let err = |source| Error::RuntimeDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(err)?;
    let sockets = dir.join("plugins");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sockets)
        .map_err(err)?;
    std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}
