//! What an earlier torud left running.
//!
//! A plugin's main process dies with torud ([`super::spawner`]), but helpers
//! it started stay in its process group, and without a cgroup nothing else
//! ends them. So torud notes each running plugin as `pid starttime` in
//! `runtime_dir/pids/<id>` (out of every plugin's sight), and a torud that
//! starts, holding the state directory's lock, kills each noted group that
//! is still there before it starts any plugin.
//!
//! The start time (field 22 of `/proc/PID/stat`) tells a reused pid from
//! the plugin's. A group whose leader is gone is killed all the same: Linux
//! does not hand out a pid that a live process group still goes by.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::{debug, warn};

/// `runtime_dir/pids`.
fn folder(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join("pids")
}

/// Notes that `plugin` runs as `pid` (leading its own process group).
pub(crate) fn note(runtime_dir: &Path, plugin: &str, pid: u32) {
    let Some(started) = start_time(pid) else {
        return;
    };
    let dir = folder(runtime_dir);
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::fs::write(dir.join(plugin), format!("{pid} {started}\n")));
    if let Err(e) = written {
        warn!(plugin, pid, error = %e, "cannot note the plugin's pid for a later torud");
    }
}

/// Forgets `plugin`'s note: its process is gone.
pub(crate) fn forget(runtime_dir: &Path, plugin: &str) {
    match std::fs::remove_file(folder(runtime_dir).join(plugin)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(plugin, error = %e, "cannot remove the plugin's pid note"),
    }
}

/// Kills every process group an earlier torud noted and that still runs;
/// returns one line for each (`hello: pid 1234`), and removes the notes.
pub(crate) fn reap(runtime_dir: &Path) -> Vec<String> {
    let dir = folder(runtime_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(dir = %dir.display(), error = %e, "cannot read the pid notes of an earlier torud");
            return Vec::new();
        }
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let plugin = entry.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some((pid, started)) = parse(&text)
            && kill_if_ours(pid, started)
        {
            killed.push(format!("{plugin}: pid {pid}"));
        }
        if let Err(e) = std::fs::remove_file(entry.path()) {
            warn!(plugin, error = %e, "cannot remove a pid note");
        }
    }
    killed
}

fn parse(text: &str) -> Option<(u32, u64)> {
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok().filter(|&pid| pid > 1)?;
    let started = fields.next()?.parse().ok()?;
    Some((pid, started))
}

/// SIGKILL to the group `pid` led, unless `pid` is now another process.
fn kill_if_ours(pid: u32, started: u64) -> bool {
    match start_time(pid) {
        Some(now) if now != started => {
            debug!(pid, "noted pid now belongs to another process");
            return false;
        }
        _ => {}
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    match killpg(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(e) => {
            warn!(pid, error = %e, "cannot kill what an earlier torud left running");
            false
        }
    }
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks
/// since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_names_pid_and_start_time() {
        assert_eq!(parse("1234 5678\n"), Some((1234, 5678)));
        for bad in ["", "1234", "x 5", "1 5", "0 5", "12 y"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_start_time_of_this_process_is_read() {
        let me = std::process::id();
        let started = start_time(me).unwrap();
        assert!(started > 0);
        assert_eq!(start_time(me), Some(started));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn a_reused_pid_is_left_alone_and_notes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let started = start_time(me).unwrap();
        // This test's own pid under another start time: a reused pid.
        std::fs::create_dir(dir.path().join("pids")).unwrap();
        std::fs::write(
            dir.path().join("pids/other"),
            format!("{me} {}", started + 1),
        )
        .unwrap();
        assert!(reap(dir.path()).is_empty());
        assert!(!dir.path().join("pids/other").exists());
        assert!(reap(dir.path()).is_empty(), "no folder is no leftover");
    }
}
