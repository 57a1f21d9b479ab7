//! One task per plugin keeps it in the state the administrator asked for.
//! This is its I/O: making its cgroup, starting the process, waiting for it
//! to serve, pinging it, stopping it gracefully (`shutdown` message, grace
//! period, SIGTERM, SIGKILL, then whatever is left in its cgroup). Where to
//! go next, after a command or a crash, is [`policy`](super::policy)'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use toru_plugin_api::host::{HostConnection, InitParams};
use toru_plugin_api::protocol::v2::Limits;
use tracing::{info, warn};

use super::command::Command;
use super::context::Context;
use super::handle::{ExitCause, LastExit, PluginHandle, State};
use super::isolation::Isolation;
use super::kv::StoreKv;
use super::leftovers;
use super::link::{LegacyLink, PluginLink};
use super::logs::spawn_reader;
use super::policy::{self, AfterCrash, Effect, Phase, Restarts, Step};
use super::process::{
    PluginEnv, describe_exit, kill_group, prepare_socket, remove_socket, signal_name, spawn,
    stop_process,
};
use crate::cgroup::PluginGroup;
use crate::store::EventKind;

/// How long a process that closed its connection has to exit: its exit
/// status says more than the closed connection.
const EXIT_STATUS_WAIT: Duration = Duration::from_millis(500);
/// How often a starting plugin's socket is tried.
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// The least time `init` is given, however little of the start timeout is left.
const MIN_INIT_TIME: Duration = Duration::from_millis(100);

/// How one run of the process ended.
enum Outcome {
    /// Stopped on request: the step to take.
    Stopped(Step),
    /// Died, failed to start, or hung after running `uptime`.
    Crashed { uptime: Duration, reason: String },
    /// Not started: it requires a licence it does not have.
    Unlicensed(String),
}

/// Runs until [`Command::Stop`] (or until every sender of commands is gone).
pub(crate) async fn supervise(
    handle: Arc<PluginHandle>,
    ctx: Arc<Context>,
    mut commands: mpsc::Receiver<Command>,
) {
    let record = ctx.record(&handle.id).await;
    let mut phase = policy::first(record.enabled, record.failed);
    let mut restarts = Restarts::default();
    loop {
        let step = match &phase {
            Phase::Exit => return,
            Phase::Disabled => {
                handle.set_state(State::Disabled, None);
                handle.settle();
                policy::while_down(&phase, commands.recv().await)
            }
            Phase::Failed(reason) => {
                handle.set_state(State::Failed, Some(reason.clone()));
                handle.settle();
                policy::while_down(&phase, commands.recv().await)
            }
            Phase::Backoff(delay) => {
                handle.set_backoff(Instant::now() + *delay);
                handle.settle();
                tokio::select! {
                    () = tokio::time::sleep(*delay) => Step { next: Phase::Run, effect: Effect::None },
                    command = commands.recv() => policy::while_down(&phase, command),
                }
            }
            Phase::Run => match run_once(&handle, &ctx, &mut commands).await {
                Outcome::Stopped(step) => step,
                Outcome::Unlicensed(reason) => {
                    warn!(plugin = %handle.id, %reason, "plugin not started: {reason}");
                    ctx.event(
                        &handle.id,
                        EventKind::Failed,
                        format!("not started: {reason}"),
                    )
                    .await;
                    // Not persisted: installing a licence restarts it.
                    Step {
                        next: Phase::Failed(format!("not started: {reason}")),
                        effect: Effect::None,
                    }
                }
                Outcome::Crashed { uptime, reason } => {
                    after_crash(&handle, &ctx, &mut restarts, uptime, reason).await
                }
            },
        };
        record_effect(&handle, &ctx, &mut restarts, step.effect).await;
        phase = step.next;
    }
}

/// Asks the policy what follows a crash, and says so.
async fn after_crash(
    handle: &PluginHandle,
    ctx: &Context,
    restarts: &mut Restarts,
    uptime: Duration,
    reason: String,
) -> Step {
    let policy = ctx.settings().restart.clone();
    let now = tokio::time::Instant::now();
    match restarts.crashed(&policy, now, uptime, &reason) {
        AfterCrash::GiveUp(reason) => {
            warn!(plugin = %handle.id, %reason, "plugin failed, not restarted until enabled again: {reason}");
            ctx.persist(
                &handle.id,
                true,
                Some(reason.clone()),
                EventKind::Failed,
                &reason,
            )
            .await;
            Step {
                next: Phase::Failed(reason),
                effect: Effect::None,
            }
        }
        AfterCrash::Restart(delay) => {
            handle.count_restart();
            info!(plugin = %handle.id, %reason, ?delay, "plugin will be restarted in {delay:?}");
            ctx.event(
                &handle.id,
                EventKind::Restarted,
                format!("restart in {delay:?} after: {reason}"),
            )
            .await;
            Step {
                next: Phase::Backoff(delay),
                effect: Effect::None,
            }
        }
    }
}

/// Persists and records what a step did.
async fn record_effect(
    handle: &PluginHandle,
    ctx: &Context,
    restarts: &mut Restarts,
    effect: Effect,
) {
    match effect {
        Effect::None => {}
        Effect::Enabled { cleared } => {
            restarts.forget();
            let detail = if cleared {
                "by request; its failed state cleared"
            } else {
                "by request"
            };
            ctx.persist(&handle.id, true, None, EventKind::Enabled, detail)
                .await;
        }
        Effect::Disabled => {
            ctx.persist(&handle.id, false, None, EventKind::Disabled, "by request")
                .await;
        }
        Effect::Restarted => {
            handle.count_manual_restart();
            ctx.event(&handle.id, EventKind::Restarted, "by request")
                .await;
        }
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
    let license = match ctx.store.license(&handle.id).await {
        Ok(line) => line,
        Err(e) => {
            warn!(plugin = %handle.id, error = %e, "cannot read the plugin's licence");
            None
        }
    };
    handle.set_license(license);
    let status = handle.license_status(&ctx.instance_id());
    if let Some(reason) = status.refusal() {
        return Outcome::Unlicensed(reason);
    }
    if let (Some(at), Some(day)) = (status.expires_at, &status.expires)
        && at - chrono::Utc::now() < chrono::Duration::days(super::license::WARN_DAYS)
    {
        // `day` is the licence's last valid day, as the vendor wrote it.
        warn!(plugin = %handle.id, last_day = %day, "the plugin's licence expires soon");
    }
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
    let instance_id = ctx.instance_id();
    let license = handle.license();
    let env = PluginEnv {
        socket: &handle.socket,
        plugin_id: &handle.id,
        instance_id: &instance_id,
        home,
        // Protocol 1 plugins get the licence as the first host's design gave it.
        license: (handle.protocol < 2)
            .then_some(license.as_deref())
            .flatten(),
        checked: false,
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

    let connecting = connect(handle, ctx);
    tokio::pin!(connecting);
    let ooms = group.and_then(PluginGroup::oom_kills);
    let link = loop {
        tokio::select! {
            link = &mut connecting => break link,
            status = child.wait() => {
                let reason = match &status {
                    Ok(status) => format!("{} while starting", describe_exit(status)),
                    Err(e) => format!("lost track of the process while starting: {e}"),
                };
                handle.set_exit(last_exit(status.ok().as_ref(), &reason, ExitCause::StartFailed));
                break Err(reason);
            }
            command = commands.recv() => {
                let Some(step) = policy::while_running(command) else { continue };
                let status = stop_process(handle, &mut child, None, Duration::ZERO).await;
                handle.set_exit(last_exit(status.as_ref(), "stopped while starting", ExitCause::Stopped));
                return stopped(handle, step);
            }
        }
    };
    let link = match link {
        Ok(link) => Arc::new(link),
        Err(reason) => {
            if let Some(status) = stop_process(handle, &mut child, None, Duration::ZERO).await {
                handle.set_exit(last_exit(
                    Some(&status),
                    &format!("did not start: {reason}"),
                    ExitCause::StartFailed,
                ));
            }
            warn!(plugin = %handle.id, %reason, "plugin did not start: {reason}");
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
                let (reason, cause) = match &status {
                    Ok(status) => out_of_memory(status, group, ooms)
                        .map_or_else(|| (describe_exit(status), ExitCause::Exited), |oom| (oom, ExitCause::OutOfMemory)),
                    Err(e) => (format!("lost track of the process: {e}"), ExitCause::Exited),
                };
                handle.set_exit(last_exit(status.ok().as_ref(), &reason, cause));
                warn!(plugin = %handle.id, %reason, "plugin exited: {reason}");
                ctx.event(&handle.id, EventKind::Exited, reason.clone()).await;
                remove_socket(handle);
                return crashed(started.elapsed(), reason);
            }
            () = closed(v2) => {
                // A dying process closes its connection first: give its exit
                // status a moment to arrive, it says more.
                handle.set_link(None);
                let exited = tokio::time::timeout(EXIT_STATUS_WAIT, child.wait()).await;
                // Gone already (its status is kept), or made to go.
                let status = stop_process(handle, &mut child, None, Duration::ZERO).await;
                let oom = status.as_ref().and_then(|s| out_of_memory(s, group, ooms));
                let (reason, cause) = match (exited, oom) {
                    (_, Some(oom)) => (oom, ExitCause::OutOfMemory),
                    (Ok(Ok(status)), None) => (describe_exit(&status), ExitCause::Exited),
                    _ => ("closed its connection".to_owned(), ExitCause::Exited),
                };
                handle.set_exit(last_exit(status.as_ref(), &reason, cause));
                warn!(plugin = %handle.id, %reason, "plugin exited: {reason}");
                ctx.event(&handle.id, EventKind::Exited, reason.clone()).await;
                return crashed(started.elapsed(), reason);
            }
            _ = ping.tick(), if v2.is_some() => {
                let Some(connection) = v2 else { continue };
                if let Err(e) = connection.ping(health.ping_timeout).await {
                    let reason = format!("hung: no answer to ping ({e})");
                    warn!(plugin = %handle.id, %reason, "killing hung plugin: {reason}");
                    ctx.event(&handle.id, EventKind::Hung, reason.clone()).await;
                    let status = stop_process(handle, &mut child, None, Duration::ZERO).await;
                    handle.set_exit(last_exit(status.as_ref(), &format!("killed by torud: {reason}"), ExitCause::Hung));
                    return crashed(started.elapsed(), reason);
                }
            }
            command = commands.recv() => {
                let Some(step) = policy::while_running(command) else { continue };
                let status = stop_process(handle, &mut child, Some(&link), ctx.settings().shutdown_timeout).await;
                let reason = match &status {
                    Some(status) => format!("stopped by torud, as asked: {}", describe_exit(status)),
                    None => "stopped by torud, as asked".to_owned(),
                };
                handle.set_exit(last_exit(status.as_ref(), &reason, ExitCause::Stopped));
                return stopped(handle, step);
            }
        }
    }
}

/// A [`LastExit`] of now.
fn last_exit(
    status: Option<&std::process::ExitStatus>,
    reason: &str,
    cause: ExitCause,
) -> LastExit {
    use std::os::unix::process::ExitStatusExt;
    LastExit {
        at: chrono::Utc::now(),
        reason: reason.to_owned(),
        code: status.and_then(std::process::ExitStatus::code),
        signal: status.and_then(|s| s.signal()).map(signal_name),
        cause,
    }
}

/// "killed by the kernel: out of memory (...)" when the process was SIGKILLed and its
/// cgroup's OOM kills went up since `before`.
fn out_of_memory(
    status: &std::process::ExitStatus,
    group: Option<&PluginGroup>,
    before: Option<u64>,
) -> Option<String> {
    use std::os::unix::process::ExitStatusExt;
    let group = group?;
    let now = group.oom_kills()?;
    (status.signal() == Some(libc::SIGKILL) && now > before.unwrap_or(0)).then(|| {
        match group.limits().memory_max_text() {
            Some(max) => {
                format!("killed by the kernel: out of memory (over its memory_max of {max})")
            }
            None => "killed by the kernel: out of memory".to_owned(),
        }
    })
}

fn crashed(uptime: Duration, reason: String) -> Outcome {
    Outcome::Crashed { uptime, reason }
}

/// The process stopped on request; a stop for good leaves it `stopped`.
fn stopped(handle: &PluginHandle, step: Step) -> Outcome {
    if step.next == Phase::Exit {
        handle.set_state(State::Stopped, None);
    }
    Outcome::Stopped(step)
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
            Err(_) if Instant::now() < deadline => tokio::time::sleep(CONNECT_RETRY).await,
            Err(e) => return Err(format!("its socket did not accept within {timeout:?}: {e}")),
        }
    };
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_INIT_TIME);
    if handle.protocol >= 2 {
        let init = InitParams {
            instance_id: ctx.instance_id(),
            plugin_id: handle.id.clone(),
            config: ctx.plugin_config(&handle.id),
            limits: Limits::default(),
            license: handle.license(),
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
        LegacyLink::init(&handle.socket, &ctx.instance_id(), left)
            .await
            .map(PluginLink::V1)
            .map_err(|e| format!("init failed: {e}"))
    }
}
