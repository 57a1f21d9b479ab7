//! One plugin process: started with a clean environment in a process group
//! of its own, and in its own cgroup when torud has them, so that stopping
//! it also stops everything it started (a process group can be left with
//! `setsid`, a cgroup cannot); killed by the kernel if torud dies; and
//! stopped gracefully: `shutdown`, a grace period, SIGTERM, SIGKILL.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::cgroup::PluginGroup;
use crate::plugins::handle::{PluginHandle, State};
use crate::plugins::isolation::Isolation;
use crate::plugins::link::PluginLink;
use crate::plugins::spawner;

/// How long a plugin has to exit after SIGTERM before SIGKILL.
const SIGTERM_GRACE: Duration = Duration::from_secs(2);

/// Variables a plugin inherits from torud; everything else (systemd's
/// `NOTIFY_SOCKET`, `LISTEN_*`, `WATCHDOG_*`, `INVOCATION_ID`, ...) is withheld.
const INHERITED: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "RUST_LOG", "RUST_BACKTRACE"];

/// What a plugin is told through its environment.
#[derive(Debug, Clone)]
pub(crate) struct PluginEnv<'a> {
    /// `TORU_PLUGIN_SOCKET`.
    pub(crate) socket: &'a Path,
    /// `TORU_PLUGIN_ID`.
    pub(crate) plugin_id: &'a str,
    /// `TORU_INSTANCE_ID`.
    pub(crate) instance_id: &'a str,
    /// Working directory and `HOME`.
    pub(crate) home: &'a Path,
    /// `TORU_LICENSE_KEY`: the licence line, for protocol-1 plugins.
    pub(crate) license: Option<&'a str>,
    /// `TORU_CHECK=1`: run by `toructl plugins check`, never by torud.
    pub(crate) checked: bool,
}

/// Starts `path` with stdout and stderr piped to torud, inside `group`
/// when given (it is there before it runs), and in namespaces of its own
/// when `isolation` is given (entered after joining the group).
pub(crate) async fn spawn(
    path: &Path,
    env: &PluginEnv<'_>,
    group: Option<&PluginGroup>,
    isolation: Option<Isolation>,
) -> std::io::Result<Child> {
    let mut command = spawner::command(path);
    command.env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    if std::env::var_os("PATH").is_none() {
        command.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    command
        .env("TORU_PLUGIN_SOCKET", env.socket)
        .env("TORU_PLUGIN_ID", env.plugin_id)
        .env("TORU_INSTANCE_ID", env.instance_id)
        .env("HOME", env.home)
        .current_dir(env.home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(license) = env.license {
        command.env("TORU_LICENSE_KEY", license);
    }
    if env.checked {
        command.env(toru_plugin_api::CHECK_ENV, "1");
    }
    let procs = group
        .map(|group| group.join_before_exec(&mut command))
        .transpose()?;
    if let Some(isolation) = isolation {
        isolation.apply_before_exec(&mut command);
    }
    let child = spawner::spawn(command).await;
    // The cgroup's `cgroup.procs`, named by the first hook, stays open until
    // the fork is done.
    drop(procs);
    child
}

/// Sends `signal` to the process group led by `pid`; a group already gone is fine.
pub(crate) fn signal_group(pid: Option<u32>, signal: Signal) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    if let Err(e) = killpg(Pid::from_raw(pid), signal)
        && e != nix::errno::Errno::ESRCH
    {
        tracing::warn!(pid, %signal, error = %e, "cannot signal plugin process group");
    }
}

/// SIGKILL to the whole process group led by `pid`.
pub(crate) fn kill_group(pid: Option<u32>) {
    signal_group(pid, Signal::SIGKILL);
}

/// How a process ended, for people and for the event log.
pub(crate) fn describe_exit(status: &std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("killed by signal {}", signal_name(signal)),
        _ => format!("ended ({status})"),
    }
}

/// `SIGKILL` for 9; the number for a signal without a name.
pub(crate) fn signal_name(signal: i32) -> String {
    Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.to_string())
}

/// Stops the process: `shutdown` (when `link` is given) and up to `grace`
/// for it to exit, then SIGTERM and 2 s, then SIGKILL of the whole group.
/// Meanwhile the plugin is `stopping`. Its exit status, when known.
pub(crate) async fn stop_process(
    handle: &PluginHandle,
    child: &mut Child,
    link: Option<&Arc<PluginLink>>,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    handle.set_link(None);
    handle.set_state(State::Stopping, None);
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
        if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
            kill_group(pid);
            remove_socket(handle);
            return status.ok();
        }
        warn!(plugin = %handle.id, ?grace, "plugin did not exit in time; sending SIGTERM");
    }
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(SIGTERM_GRACE, child.wait())
        .await
        .is_err()
    {
        warn!(plugin = %handle.id, "plugin ignored SIGTERM; sending SIGKILL");
    }
    kill_group(pid);
    let status = child.wait().await.ok();
    remove_socket(handle);
    status
}

/// The sockets folder exists (0700) and no stale socket is in the way.
pub(crate) fn prepare_socket(handle: &PluginHandle) -> std::io::Result<()> {
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

/// Removes the plugin's own folder under `runtime_dir/plugins` (its socket, its
/// working directory) once its process is gone.
pub(crate) fn remove_run_dir(handle: &PluginHandle) {
    let Some(dir) = handle.socket.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return;
    };
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(plugin = %handle.id, error = %e, "cannot remove the plugin's folder"),
    }
}

pub(crate) fn remove_socket(handle: &PluginHandle) {
    match std::fs::remove_file(&handle.socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(plugin = %handle.id, error = %e, "cannot remove the plugin's socket"),
    }
}
