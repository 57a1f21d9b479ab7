//! torud's life: open the store, take over the cgroup, start the plugins,
//! serve, report readiness, apply reloads, and stop in order. The settings
//! in force are one [`LiveSettings`]: the reload puts the re-read ones there,
//! and every reader (supervisors, the gateway's drain, the shutdown of the
//! plugins) takes its value from it when it needs it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{LiveSettings, Settings};
use crate::daemon::Daemon;
use crate::http::{self, AdminToken, HttpOptions, Listener};
use crate::plugins::{self, Context, Manager, State};
use crate::reload::{ReloadError, Reloaded, Reloader};
use crate::store::{self, Event, EventKind};
use crate::{Control, Error, Lifecycle, cgroup, listen, machine};

/// The target of torud's own lines about its life (`journalctl TARGET=toru_service`): the
/// crate's, as when they were logged from its root.
const LIFE: &str = "toru_service";
/// How much longer than `shutdown_timeout` torud waits for supervisors to end: each also
/// waits for SIGTERM, then SIGKILL, after the plugin's grace.
const SUPERVISOR_SLACK: Duration = Duration::from_secs(5);
/// How often starting torud tells the service manager it is making progress...
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// ...asking each time for a plugin's start timeout and this much more.
const START_SLACK: Duration = Duration::from_secs(5);
/// How often the status line is compared with the last one sent.
const STATUS_EVERY: Duration = Duration::from_secs(2);
/// How often the warnings (licences ending, a new machine) are looked at...
const WARNINGS_EVERY: Duration = Duration::from_secs(10);
/// ...and how long one already logged stays quiet.
const WARNING_QUIET: Duration = Duration::from_secs(24 * 3600);

/// Runs torud on `listeners` until [`Control::Shutdown`] (or the channel
/// closes), then stops taking requests, lets in-flight ones finish
/// (`shutdown_timeout`), stops every plugin, and returns. `reloader` is what
/// `POST /api/reload` asks (none: that route answers that torud cannot reload).
pub async fn run(
    settings: Settings,
    listeners: Vec<Listener>,
    mut control: mpsc::Receiver<Control>,
    reloader: Option<Arc<Reloader>>,
    lifecycle: Arc<dyn Lifecycle>,
) -> Result<(), Error> {
    for warning in settings.warnings() {
        warn!(target: LIFE, "config: {warning}");
    }
    let live = LiveSettings::new(settings);
    let settings = live.current();
    let store = store::Handle::open(&settings.state_dir, settings.store.verify_on_start).await?;
    let token =
        AdminToken::load_or_create(&settings.admin_token_file).map_err(|source| Error::Token {
            path: settings.admin_token_file.clone(),
            source,
        })?;
    prepare_runtime_dir(&settings.runtime_dir)?;
    // Only now, holding the state directory's lock: no other torud runs these.
    for killed in plugins::leftovers::reap(&settings.runtime_dir) {
        warn!(target: LIFE, "killed what an earlier torud left running: {killed}");
    }
    info!(target: LIFE, instance_id = %store.instance_id(), state_dir = %settings.state_dir.display(), "store open");
    record(
        &store,
        Event::new(
            None,
            EventKind::DaemonStarted,
            format!("torud {}", env!("CARGO_PKG_VERSION")),
        ),
    )
    .await;

    let cgroups = take_over_cgroups(&settings).await;
    let ctx = Arc::new(Context::new(live.subscribe(), store.clone(), cgroups));
    let manager = Manager::new(ctx.clone());
    lifecycle.status("discovering plugins");
    let found =
        plugins::discovery::discover(&settings.plugin_dirs, settings.health.metadata_timeout, &[])
            .await;
    info!(target: LIFE, found = found.len(), "plugins discovered");
    manager.load(found);

    let names: Vec<String> = listeners.iter().map(listen::describe).collect();
    info!(target: LIFE, "listening on {}", names.join(", "));
    let machine = machine::check(&store, &settings.machine_id_file).await;
    let daemon = Arc::new(Daemon::new(
        manager.clone(),
        store.clone(),
        names,
        machine,
        reloader,
    ));
    let options = HttpOptions {
        max_body_bytes: settings.max_body_bytes,
        max_header_bytes: settings.max_header_bytes,
        header_read_timeout: settings.header_read_timeout,
        max_connections: settings.max_connections,
        sessions: http::SessionPolicy {
            idle_timeout: settings.sessions.idle_timeout,
            lifetime: settings.sessions.lifetime,
        },
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let drain = {
        let (stop, mut settings) = (stop.clone(), live.subscribe());
        // The grace is the one in force when the drain begins.
        async move {
            stop.cancelled().await;
            settings.borrow_and_update().shutdown_timeout
        }
    };
    let server = tokio::spawn(http::serve(
        listeners,
        daemon.clone(),
        Arc::new(token),
        options,
        drain,
    ));

    if wait_settled(&manager, &daemon, &mut control, lifecycle.as_ref(), &live).await {
        let status = status_line(&daemon);
        info!(target: LIFE, %status, "ready");
        lifecycle.ready(&status);
        let keepalive = tokio::spawn(keepalive(daemon.clone(), lifecycle.clone()));
        while let Some(Control::Reload { settings, done }) = control.recv().await {
            lifecycle.reloading();
            let mut reloaded = reload(&live, &manager, *settings).await;
            reloaded.status = status_line(&daemon);
            info!(target: LIFE, status = %reloaded.status, "reloaded");
            lifecycle.ready(&reloaded.status);
            // The one who asked may have given up waiting: nothing to tell then.
            let _ = done.send(Ok(reloaded));
        }
        keepalive.abort();
    }

    info!(target: LIFE, "stopping: finishing requests in flight");
    lifecycle.stopping();
    stop.cancel();
    let served = server.await;
    manager
        .shutdown(live.current().shutdown_timeout + SUPERVISOR_SLACK)
        .await;
    record(
        &store,
        Event::new(None, EventKind::DaemonStopped, "stopped"),
    )
    .await;
    info!(target: LIFE, "stopped");
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
    live: &LiveSettings,
) -> bool {
    let settled = manager.settled();
    tokio::pin!(settled);
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    loop {
        tokio::select! {
            () = &mut settled => return true,
            _ = progress.tick() => {
                // Each plugin's start is bounded by start_timeout: asking
                // for that much more at a time can never extend forever.
                lifecycle.extend_timeout(live.current().health.start_timeout + START_SLACK);
                lifecycle.status(&format!("starting: {}", status_line(daemon)));
            }
            message = control.recv() => match message {
                Some(Control::Reload { done, .. }) => {
                    warn!(target: LIFE, "reload ignored: torud is still starting");
                    let _ = done.send(Err(ReloadError::Starting));
                }
                Some(Control::Shutdown) | None => return false,
            },
        }
    }
}

/// Status lines on change, watchdog pings at half the interval, and each warning in the
/// journal at most once a day. The pings come from a task of the serving runtime that
/// also takes the plugins' state locks: a stalled runtime or a deadlock stops them.
async fn keepalive(daemon: Arc<Daemon>, lifecycle: Arc<dyn Lifecycle>) {
    let half = lifecycle.watchdog_interval().map(|w| w / 2);
    let mut status_tick = tokio::time::interval(STATUS_EVERY);
    let mut watchdog_tick = tokio::time::interval(half.unwrap_or(Duration::from_secs(3600)));
    let mut warnings_tick = tokio::time::interval(WARNINGS_EVERY);
    let mut trim_tick = tokio::time::interval(crate::memory::TRIM_EVERY);
    let mut logged = std::collections::HashMap::<String, tokio::time::Instant>::new();
    let mut last = String::new();
    loop {
        tokio::select! {
            _ = warnings_tick.tick() => {
                let now = tokio::time::Instant::now();
                logged.retain(|_, at| now.duration_since(*at) < WARNING_QUIET);
                for warning in daemon.warnings() {
                    if let std::collections::hash_map::Entry::Vacant(entry) = logged.entry(warning) {
                        warn!(target: LIFE, "{}", entry.key());
                        entry.insert(now);
                    }
                }
            }
            _ = status_tick.tick() => {
                let status = status_line(&daemon);
                if status != last {
                    lifecycle.status(&status);
                    last = status;
                }
            }
            _ = trim_tick.tick() => {
                // Off the serving threads: it takes the allocator's locks a moment.
                tokio::task::spawn_blocking(crate::memory::trim);
            }
            _ = watchdog_tick.tick(), if half.is_some() => {
                let _alive = status_line(&daemon);
                lifecycle.watchdog();
            }
        }
    }
}

/// Puts a re-read configuration in force (but for the keys read at start),
/// then rescans the plugin folders; what changed (the status line left empty).
async fn reload(live: &LiveSettings, manager: &Manager, new: Settings) -> Reloaded {
    let warnings = new.warnings();
    for warning in &warnings {
        warn!(target: LIFE, "config: {warning}");
    }
    let restart_needed = live.reload(new);
    for key in &restart_needed {
        warn!(target: LIFE, "`{key}` changed: it takes effect when torud restarts");
    }
    let settings = live.current();
    let found = plugins::discovery::discover(
        &settings.plugin_dirs,
        settings.health.metadata_timeout,
        &manager.held(),
    )
    .await;
    let changes = manager.reload(found).await;
    manager.settled().await;
    let limits_changed = manager.apply_limits().await;
    let limits = match limits_changed.as_slice() {
        [] => "no limit changed".to_owned(),
        changed => format!("limits changed: {}", changed.join("; ")),
    };
    info!(target: LIFE, "reload applied: {changes}; {limits}");
    Reloaded {
        limits_changed,
        added: changes.added,
        replaced: changes.replaced,
        removed: changes.removed,
        restart_needed: restart_needed.into_iter().map(str::to_owned).collect(),
        warnings,
        status: String::new(),
    }
}

/// "serving 3/4 plugins; hello-py in backoff".
pub(crate) fn status_line(daemon: &Daemon) -> String {
    let plugins = daemon.manager.list();
    let valid: Vec<_> = plugins.iter().filter(|p| p.metadata.is_some()).collect();
    let running = valid.iter().filter(|p| p.state() == State::Running).count();
    let mut line = format!("serving {running}/{} plugins", valid.len());
    for plugin in &plugins {
        let state = plugin.state();
        if !matches!(state, State::Running | State::Disabled) {
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
            warn!(target: LIFE, "cgroup2 not writable ({reason}): plugins run in process groups");
            if !limited.is_empty() {
                warn!(target: LIFE,
                    plugins = %limited.join(", "),
                    "memory_max, pids_max and cpu_max are not enforced without a writable cgroup2"
                );
            }
            None
        }
        Err(e) => {
            warn!(target: LIFE, error = %e, "cgroup detection failed: plugins run in process groups");
            None
        }
    }
}

async fn record(store: &store::Handle, event: Event) {
    if let Err(e) = store.record_event(event).await {
        warn!(target: LIFE, error = %e, "cannot record event");
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
