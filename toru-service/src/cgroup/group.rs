//! One plugin's cgroup, `plugins/<id>`: the process placed in it before
//! exec, usage read from it, and everything in it killed as one.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::ResourceLimits;

#[cfg(test)]
use tokio::process::Child;
use tokio::process::Command;

/// The longest wait for a killed group to empty.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a plugin's group has used; `None` where the kernel does not say
/// (`memory.current` needs the memory controller, `cpu.stat` is always there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// `memory.current`.
    pub(crate) memory_bytes: Option<u64>,
    /// `usage_usec` of `cpu.stat`: CPU time of the group's processes.
    pub(crate) cpu_usec: Option<u64>,
}

/// The cgroup a plugin runs in, for as long as it runs.
#[derive(Debug)]
pub(crate) struct PluginGroup {
    dir: PathBuf,
    name: String,
    /// The limits written into it.
    limits: std::sync::Mutex<ResourceLimits>,
}

impl PluginGroup {
    pub(super) fn new(dir: PathBuf, name: String, limits: ResourceLimits) -> Self {
        Self {
            dir,
            name,
            limits: std::sync::Mutex::new(limits),
        }
    }

    /// The limits in force.
    pub(crate) fn limits(&self) -> ResourceLimits {
        *self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn set_limits(&self, limits: ResourceLimits) {
        *self
            .limits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = limits;
    }

    /// As the kernel names it in `/proc/PID/cgroup`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Its directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Spawns `command` inside the group: the child moves itself in between
    /// fork and exec, so the plugin never runs outside it. Fails (and nothing
    /// runs) when the move fails.
    #[cfg(test)]
    pub(crate) fn spawn(&self, mut command: Command) -> io::Result<Child> {
        let procs = self.join_before_exec(&mut command)?;
        let child = command.spawn();
        // `procs` stays open until the fork is done.
        drop(procs);
        child
    }

    /// Has the child of `command` move itself into the group between fork
    /// and exec (before any hook added later). The file returned must stay
    /// open until `command` is spawned.
    pub(crate) fn join_before_exec(&self, command: &mut Command) -> io::Result<File> {
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join("cgroup.procs"))?;
        place_before_exec(command, &procs);
        Ok(procs)
    }

    /// What the group uses now.
    pub(crate) fn usage(&self) -> Usage {
        let read = |file: &str| std::fs::read_to_string(self.dir.join(file)).ok();
        Usage {
            memory_bytes: read("memory.current").and_then(|t| t.trim().parse().ok()),
            cpu_usec: read("cpu.stat").and_then(|t| keyed(&t, "usage_usec")),
        }
    }

    /// How many times the kernel's OOM killer killed a process of the group
    /// (`memory.events` `oom_kill`); `None` without the memory controller.
    pub(crate) fn oom_kills(&self) -> Option<u64> {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).ok()?;
        keyed(&events, "oom_kill")
    }

    /// Kills everything in the group, waits for it to empty and removes it.
    pub(crate) fn remove(&self) -> io::Result<()> {
        remove_tree(&self.dir, KILL_TIMEOUT).map(drop)
    }
}

/// Has the child write "0" to `procs` (a group's `cgroup.procs`) between
/// fork and exec: cgroup v2 moves the writing process itself.
#[allow(unsafe_code)]
fn place_before_exec(command: &mut Command, procs: &File) {
    use std::os::fd::AsRawFd;
    let fd = procs.as_raw_fd();
    let hook = move || {
        // SAFETY: `fd` is open in the child: `spawn` keeps `procs` open until
        // the fork is done (O_CLOEXEC closes it at exec); the buffer is static.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        if written == 1 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    // SAFETY: the hook runs between fork and exec, where only async-signal-safe
    // work is sound: it makes one write(2) and reads errno; it neither
    // allocates nor takes a lock.
    unsafe {
        command.pre_exec(hook);
    }
}

/// The number after `key ` in a flat-keyed cgroup file (`cpu.stat`, `cgroup.events`).
pub(super) fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Whether any process is in the group or below (`populated 1` in
/// `cgroup.events`); a group that is gone is empty.
pub(super) fn populated(dir: &Path) -> io::Result<bool> {
    match std::fs::read_to_string(dir.join("cgroup.events")) {
        Ok(text) => Ok(keyed(&text, "populated").is_some_and(|n| n != 0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The processes directly in the group (not below).
pub(super) fn procs(dir: &Path) -> io::Result<Vec<u32>> {
    let text = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Writes `value` to a cgroup file. (A missing file fails with EACCES, not
/// ENOENT: callers check `cgroup.controllers` first.)
pub(super) fn write(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    std::fs::write(dir.join(file), value)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}

/// SIGKILLs everything in `dir` and below (`cgroup.kill`), waits up to
/// `timeout` for it to empty, then removes the groups bottom-up. Returns how
/// many processes were directly in `dir` or below.
pub(super) fn remove_tree(dir: &Path, timeout: Duration) -> io::Result<usize> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let mut count = 0;
    let mut groups = vec![dir.to_owned()];
    let mut i = 0;
    while let Some(group) = groups.get(i).cloned() {
        count += procs(&group).map(|p| p.len()).unwrap_or(0);
        for entry in std::fs::read_dir(&group)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                groups.push(entry.path());
            }
        }
        i += 1;
    }
    write(dir, "cgroup.kill", "1")?;
    let deadline = Instant::now() + timeout;
    while populated(dir)? {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{}: processes still there {timeout:?} after cgroup.kill",
                    dir.display()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Parents were listed before their children.
    for group in groups.iter().rev() {
        match std::fs::remove_dir(group) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot remove {}: {e}", group.display()),
                ));
            }
        }
    }
    Ok(count)
}
