//! One task per plugin keeps it in the state the administrator asked for:
//! starts it, waits for it to be ready, pings it, restarts it with backoff
//! when it dies or hangs, gives up (`failed`, persisted) when it keeps dying,
//! and stops it gracefully: `shutdown` message, grace period, SIGTERM, SIGKILL;
//! then kills whatever is left in its cgroup.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::mpsc;
use toru_plugin_api::host::{HostConnection, InitParams};
use toru_plugin_api::protocol::v2::Limits;
use tracing::{info, warn};

use super::command::Command;
use super::handle::{PluginHandle, State};
use super::isolation::Isolation;
use super::leftovers;
use super::link::{LegacyLink, PluginLink};
use super::logs::spawn_reader;
use super::process::{PluginEnv, describe_exit, kill_group, signal_group, spawn};
use super::{Context, StoreKv};
use crate::cgroup::PluginGroup;
use crate::store::EventKind;

/// Where the supervisor goes next.
#[derive(Debug)]
enum Next {
    Run,
    Backoff(Duration),
    Failed(String),
    Disabled,
    Exit,
}

/// How one run of the process ended.
enum Outcome {
    /// Stopped on request; then go to `Next`.
    Stopped(Next),
    /// Died, failed to start, or hung after running `uptime`.
    Crashed { uptime: Duration, reason: String },
}

/// Runs until [`Command::Stop`].
pub async fn supervise(
    handle: Arc<PluginHandle>,
    ctx: Arc<Context>,
    mut commands: mpsc::Receiver<Command>,
) {
    let record = ctx.record(&handle.id).await;
    let mut next = match (&record.failed, record.enabled) {
        (_, false) => Next::Disabled,
        (Some(reason), true) => Next::Failed(reason.clone()),
        (None, true) => Next::Run,
    };
    let mut failures: VecDeque<Instant> = VecDeque::new();
    let mut backoff_level = 0u32;
    loop {
        next = match next {
            Next::Exit => return,
            Next::Disabled => {
                handle.set_state(State::Disabled, None);
                handle.settle();
                match commands.recv().await {
                    Some(Command::Enable | Command::Restart) => {
                        failures.clear();
                        backoff_level = 0;
                        ctx.persist(&handle.id, true, None, EventKind::Enabled, "enabled")
                            .await;
                        Next::Run
                    }
                    Some(Command::Disable) => Next::Disabled,
                    Some(Command::Stop) | None => Next::Exit,
                }
            }
            Next::Failed(reason) => {
                handle.set_state(State::Failed, Some(reason.clone()));
                handle.settle();
                match commands.recv().await {
                    Some(Command::Enable | Command::Restart) => {
                        failures.clear();
                        backoff_level = 0;
                        ctx.persist(
                            &handle.id,
                            true,
                            None,
                            EventKind::Enabled,
                            "enabled; failed state cleared",
                        )
                        .await;
                        Next::Run
                    }
                    Some(Command::Disable) => {
                        ctx.persist(&handle.id, false, None, EventKind::Disabled, "disabled")
                            .await;
                        Next::Disabled
                    }
                    Some(Command::Stop) | None => Next::Exit,
                }
            }
            Next::Backoff(delay) => {
                handle.set_backoff(Instant::now() + delay);
                handle.settle();
                tokio::select! {
                    () = tokio::time::sleep(delay) => Next::Run,
                    command = commands.recv() => match command {
                        Some(Command::Enable | Command::Restart) => Next::Run,
                        Some(Command::Disable) => {
                            ctx.persist(&handle.id, false, None, EventKind::Disabled, "disabled").await;
                            Next::Disabled
                        }
                        Some(Command::Stop) | None => Next::Exit,
                    },
                }
            }
            Next::Run => match run_once(&handle, &ctx, &mut commands).await {
                Outcome::Stopped(next) => next,
                Outcome::Crashed { uptime, reason } => {
                    let settings = ctx.settings();
                    let policy = &settings.restart;
                    let now = Instant::now();
                    if uptime >= policy.stable_after {
                        failures.clear();
                        backoff_level = 0;
                    }
                    failures.push_back(now);
                    while failures
                        .front()
                        .is_some_and(|t| now.duration_since(*t) > policy.failure_window)
                    {
                        failures.pop_front();
                    }
                    if failures.len() >= policy.max_failures as usize {
                        let reason = format!(
                            "{} failures within {}: last: {reason}",
                            failures.len(),
                            humantime::format_duration(policy.failure_window)
                        );
                        warn!(plugin = %handle.id, %reason, "plugin failed; not restarting until enabled again");
                        ctx.persist(
                            &handle.id,
                            true,
                            Some(reason.clone()),
                            EventKind::Failed,
                            &reason,
                        )
                        .await;
                        Next::Failed(reason)
                    } else {
                        let delay = policy
                            .backoff_initial
                            .saturating_mul(1 << backoff_level.min(20))
                            .min(policy.backoff_max);
                        backoff_level += 1;
                        handle.count_restart();
                        info!(plugin = %handle.id, %reason, ?delay, "plugin will be restarted");
                        ctx.event(
                            &handle.id,
                            EventKind::Restarted,
                            format!("restart in {delay:?} after: {reason}"),
                        )
                        .await;
                        Next::Backoff(delay)
                    }
                }
            },
        };
    }
}

/// Runs the process once, in a cgroup of its own when torud has them: the
/// group is made before the process starts and, however the process ends,
/// killed as a whole (with everything the plugin started) and removed.
async fn run_once(
    handle: &Arc<PluginHandle>,
    ctx: &Context,
    commands: &mut mpsc::Receiver<Command>,
) -> Outcome {
    handle.set_state(State::Starting, None);
    let group = match &ctx.cgroups {
        None => None,
        Some(cgroups) => {
            let (cgroups, id, limits) =
                (cgroups.clone(), handle.id.clone(), ctx.limits(&handle.id));
            let created = tokio::task::spawn_blocking(move || cgroups.create(&id, &limits))
                .await
                .map_err(std::io::Error::other)
                .and_then(|created| created);
            match created {
                Ok(group) => Some(Arc::new(group)),
                Err(e) => {
                    return crashed(Duration::ZERO, format!("cannot create its cgroup: {e}"));
                }
            }
        }
    };
    handle.set_group(group.clone());
    let outcome = run_process(handle, ctx, commands, group.as_deref()).await;
    // Whichever way it ended, the process has been waited for.
    leftovers::forget(&ctx.settings().runtime_dir, &handle.id);
    if let Some(group) = group {
        handle.set_group(None);
        let removed = tokio::task::spawn_blocking(move || group.remove())
            .await
            .map_err(std::io::Error::other)
            .and_then(|removed| removed);
        if let Err(e) = removed {
            warn!(plugin = %handle.id, error = %e, "cannot remove the plugin's cgroup");
        }
    }
    outcome
}

/// Starts the process, waits until it serves, then watches it.
async fn run_process(
    handle: &Arc<PluginHandle>,
    ctx: &Context,
    commands: &mut mpsc::Receiver<Command>,
    group: Option<&PluginGroup>,
) -> Outcome {
    if let Err(e) = prepare_socket(handle) {
        return crashed(
            Duration::ZERO,
            format!("cannot prepare {}: {e}", handle.socket.display()),
        );
    }
    let settings = ctx.settings();
    // The plugin's own folder: its socket, its working directory and HOME.
    let home = handle.socket.parent().unwrap_or(&settings.runtime_dir);
    let env = PluginEnv {
        socket: &handle.socket,
        plugin_id: &handle.id,
        instance_id: &ctx.instance_id,
        home,
    };
    let isolation = if settings.isolate_plugins {
        match Isolation::new(&settings, home) {
            Ok(isolation) => Some(isolation),
            Err(e) => return crashed(Duration::ZERO, format!("cannot isolate the plugin: {e}")),
        }
    } else {
        None
    };
    let hint = if isolation.is_some() {
        " in namespaces of its own (user namespaces refused? \
         `isolate_plugins = false` runs plugins unisolated)"
    } else {
        ""
    };
    let mut child = match spawn(&handle.path, &env, group, isolation).await {
        Ok(child) => child,
        Err(e) => {
            return crashed(
                Duration::ZERO,
                format!("cannot start {}{hint}: {e}", handle.path.display()),
            );
        }
    };
    let pid = child.id();
    handle.set_pid(pid);
    if let Some(pid) = pid {
        leftovers::note(&settings.runtime_dir, &handle.id, pid);
    }
    if let Some(stdout) = child.stdout.take() {
        spawn_reader(stdout, handle.logs.clone());
    }
    if let Some(stderr) = child.stderr.take() {
        spawn_reader(stderr, handle.logs.clone());
    }
    let started = Instant::now();

    let link = tokio::select! {
        link = connect(handle, ctx) => link,
        status = child.wait() => Err(match status {
            Ok(status) => format!("{} while starting", describe_exit(&status)),
            Err(e) => format!("lost track of the process while starting: {e}"),
        }),
        command = commands.recv() => {
            stop_process(handle, &mut child, None, Duration::ZERO).await;
            return Outcome::Stopped(after_stop(handle, ctx, command).await);
        }
    };
    let link = match link {
        Ok(link) => Arc::new(link),
        Err(reason) => {
            stop_process(handle, &mut child, None, Duration::ZERO).await;
            warn!(plugin = %handle.id, %reason, "plugin did not start");
            return crashed(Duration::ZERO, reason);
        }
    };
    handle.set_link(Some(link.clone()));
    handle.set_state(State::Running, None);
    handle.settle();
    info!(plugin = %handle.id, pid, "plugin running");
    ctx.event(
        &handle.id,
        EventKind::Started,
        format!("pid {}", pid.unwrap_or(0)),
    )
    .await;

    let health = settings.health.clone();
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + health.ping_interval,
        health.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let v2 = match link.as_ref() {
        PluginLink::V2(connection) => Some(connection),
        PluginLink::V1(_) => None,
    };
    loop {
        tokio::select! {
            biased;
            status = child.wait() => {
                handle.set_link(None);
                kill_group(pid);
                let reason = match status {
                    Ok(status) => describe_exit(&status),
                    Err(e) => format!("lost track of the process: {e}"),
                };
                warn!(plugin = %handle.id, %reason, "plugin exited");
                ctx.event(&handle.id, EventKind::Exited, reason.clone()).await;
                remove_socket(handle);
                return crashed(started.elapsed(), reason);
            }
            () = closed(v2) => {
                // A dying process closes its connection first: give its exit
                // status a moment to arrive, it says more.
                handle.set_link(None);
                let reason = match tokio::time::timeout(Duration::from_millis(500), child.wait()).await {
                    Ok(Ok(status)) => describe_exit(&status),
                    _ => "closed its connection".to_owned(),
                };
                stop_process(handle, &mut child, None, Duration::ZERO).await;
                warn!(plugin = %handle.id, %reason, "plugin exited");
                ctx.event(&handle.id, EventKind::Exited, reason.clone()).await;
                return crashed(started.elapsed(), reason);
            }
            _ = ping.tick(), if v2.is_some() => {
                let Some(connection) = v2 else { continue };
                if let Err(e) = connection.ping(health.ping_timeout).await {
                    let reason = format!("hung: no answer to ping ({e})");
                    warn!(plugin = %handle.id, %reason, "killing hung plugin");
                    ctx.event(&handle.id, EventKind::Hung, reason.clone()).await;
                    stop_process(handle, &mut child, None, Duration::ZERO).await;
                    return crashed(started.elapsed(), reason);
                }
            }
            command = commands.recv() => {
                if command == Some(Command::Enable) {
                    continue;
                }
                stop_process(handle, &mut child, Some(&link), ctx.settings().shutdown_timeout).await;
                return Outcome::Stopped(after_stop(handle, ctx, command).await);
            }
        }
    }
}

fn crashed(uptime: Duration, reason: String) -> Outcome {
    Outcome::Crashed { uptime, reason }
}

/// Persists and records a stop asked for by `command`.
async fn after_stop(handle: &PluginHandle, ctx: &Context, command: Option<Command>) -> Next {
    match command {
        Some(Command::Disable) => {
            ctx.persist(&handle.id, false, None, EventKind::Disabled, "disabled")
                .await;
            Next::Disabled
        }
        Some(Command::Restart) => {
            handle.count_restart();
            ctx.event(&handle.id, EventKind::Restarted, "restarted by request")
                .await;
            Next::Run
        }
        Some(Command::Enable) => Next::Run,
        Some(Command::Stop) | None => {
            handle.set_state(State::Stopped, None);
            Next::Exit
        }
    }
}

/// Resolves when a protocol-2 connection closes; never for protocol 1.
async fn closed(connection: Option<&HostConnection>) {
    match connection {
        Some(connection) => connection.closed().await,
        None => std::future::pending().await,
    }
}

/// Waits for the socket to accept, then says `init` in the plugin's protocol.
async fn connect(handle: &PluginHandle, ctx: &Context) -> Result<PluginLink, String> {
    let timeout = ctx.settings().health.start_timeout;
    let deadline = Instant::now() + timeout;
    let stream = loop {
        match tokio::net::UnixStream::connect(&handle.socket).await {
            Ok(stream) => break stream,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => return Err(format!("its socket did not accept within {timeout:?}: {e}")),
        }
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    if handle.protocol >= 2 {
        let init = InitParams {
            instance_id: ctx.instance_id.clone(),
            plugin_id: handle.id.clone(),
            config: ctx.plugin_config(&handle.id),
            limits: Limits::default(),
        };
        let kv = Arc::new(StoreKv::new(ctx.store.clone(), &handle.id));
        HostConnection::connect(stream, init, kv, left)
            .await
            .map(PluginLink::V2)
            .map_err(|e| format!("init failed: {e}"))
    } else {
        // The probe connection served as the readiness check; v1 init
        // travels on a connection of its own.
        drop(stream);
        LegacyLink::init(&handle.socket, &ctx.instance_id, left)
            .await
            .map(PluginLink::V1)
            .map_err(|e| format!("init failed: {e}"))
    }
}

/// Stops the process: `shutdown` (when `link` is given) and up to `grace`
/// for it to exit, then SIGTERM and 2 s, then SIGKILL of the whole group.
async fn stop_process(
    handle: &PluginHandle,
    child: &mut Child,
    link: Option<&Arc<PluginLink>>,
    grace: Duration,
) {
    handle.set_link(None);
    let pid = child.id();
    if let Some(link) = link {
        match link.as_ref() {
            PluginLink::V2(connection) => {
                if let Err(e) = connection.shutdown(grace).await {
                    tracing::debug!(plugin = %handle.id, error = %e, "shutdown message not sent");
                }
            }
            PluginLink::V1(legacy) => legacy.shutdown().await,
        }
        if tokio::time::timeout(grace, child.wait()).await.is_ok() {
            kill_group(pid);
            remove_socket(handle);
            return;
        }
        warn!(plugin = %handle.id, ?grace, "plugin did not exit in time; sending SIGTERM");
    }
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(Duration::from_secs(2), child.wait())
        .await
        .is_err()
    {
        warn!(plugin = %handle.id, "plugin ignored SIGTERM; sending SIGKILL");
    }
    kill_group(pid);
    let _ = child.wait().await;
    remove_socket(handle);
}

/// The sockets folder exists (0700) and no stale socket is in the way.
fn prepare_socket(handle: &PluginHandle) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = handle.socket.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    remove_socket(handle);
    Ok(())
}

fn remove_socket(handle: &PluginHandle) {
    match std::fs::remove_file(&handle.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(plugin = %handle.id, error = %e, "cannot remove the plugin's socket"),
    }
}
