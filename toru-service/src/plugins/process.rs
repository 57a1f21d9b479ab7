//! One plugin process: started with a clean environment in a process group
//! of its own, and in its own cgroup when torud has them, so that stopping
//! it also stops everything it started (a process group can be left with
//! `setsid`, a cgroup cannot); killed by the kernel if torud dies.

use std::path::Path;
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;

use crate::cgroup::PluginGroup;
use crate::plugins::isolation::Isolation;
use crate::plugins::spawner;

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
        (None, Some(signal)) => {
            let name =
                Signal::try_from(signal).map_or_else(|_| signal.to_string(), |s| s.to_string());
            format!("killed by signal {name}")
        }
        _ => format!("ended ({status})"),
    }
}
