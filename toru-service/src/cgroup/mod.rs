//! The cgroup v2 subtree systemd delegates to torud (`Delegate=yes`), or a
//! test gives it by starting it in a fresh group:
//!
//! ```text
//! <torud's cgroup>/         memory, pids, cpu enabled for children where offered
//!   supervisor/             torud itself (a group with children holds no process)
//!   plugins/                same controllers enabled
//!     <id>/                 one plugin and all it starts: limits, usage, killed as one
//! ```
//!
//! torud takes the subtree over at start and removes whatever a previous
//! torud that died left in `plugins/`. Without a writable cgroup2, plugins
//! run in process groups only (see `plugins::process`).

/// Finding torud's own cgroup.
pub(crate) mod detect;
/// One plugin's group.
mod group;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tracing::{debug, info, warn};

use crate::config::{CPU_PERIOD_USEC, Max, PluginSettings, ResourceLimits};
pub(crate) use group::{KILL_TIMEOUT, PluginGroup, Usage};

/// The controllers torud uses, in the order it enables them.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Why plugins cannot get cgroups of their own.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Unavailable(String);

/// torud's delegated cgroup.
#[derive(Debug)]
pub(crate) struct Cgroups {
    dir: PathBuf,
    name: String,
    /// Enabled in `plugins/`: limits for these are enforced.
    enabled: Vec<&'static str>,
    /// `cgroup.controllers`, for messages.
    offered: String,
    warned: Mutex<BTreeSet<&'static str>>,
}

impl Cgroups {
    /// The subtree at `dir` (a cgroupfs directory, or one laid out like it).
    pub(crate) fn at(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        Self {
            name: dir.display().to_string(),
            dir,
            enabled: Vec::new(),
            offered: String::new(),
            warned: Mutex::new(BTreeSet::new()),
        }
    }

    /// torud's own cgroup, if it can be torud's alone: found through
    /// `/proc/self/cgroup` and `/proc/self/mountinfo`, writable, and holding
    /// no other process (else concurrent toruds would fight over it).
    pub(crate) fn detect() -> Result<Self, Unavailable> {
        let fail = |what: String| Unavailable(what);
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| fail(format!("/proc/self/cgroup: {e}")))?;
        let path = detect::unified_path(&own)
            .ok_or_else(|| fail("torud is in no cgroup2 group".into()))?
            .to_owned();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| fail(format!("/proc/self/mountinfo: {e}")))?;
        let mounts = detect::cgroup2_mounts(&mountinfo);
        if mounts.is_empty() {
            return Err(fail("no cgroup2 file system is mounted".into()));
        }
        let own_dir = detect::locate(&path, &mounts)
            .ok_or_else(|| fail(format!("its cgroup {path} is under no cgroup2 mount")))?;
        // Already in `supervisor/` (systemd's DelegateSubgroup=): the parent is ours.
        let (dir, name) = match path.rsplit_once('/') {
            Some((parent, "supervisor")) => (
                own_dir.parent().unwrap_or(&own_dir).to_owned(),
                if parent.is_empty() { "/" } else { parent }.to_owned(),
            ),
            _ => (own_dir.clone(), path.clone()),
        };
        if !dir.join("cgroup.kill").exists() {
            return Err(fail(format!(
                "{} has no cgroup.kill (the root cgroup, or a kernel before 5.14)",
                dir.display()
            )));
        }
        let me = std::process::id();
        let others = group::procs(&own_dir)
            .map_err(|e| fail(format!("{}/cgroup.procs: {e}", own_dir.display())))?
            .into_iter()
            .filter(|pid| *pid != me)
            .count();
        if others > 0 {
            return Err(fail(format!(
                "{others} other process(es) share its cgroup {path}: it is not delegated to torud alone"
            )));
        }
        std::fs::OpenOptions::new()
            .write(true)
            .open(own_dir.join("cgroup.procs"))
            .map_err(|e| fail(format!("{}/cgroup.procs: {e}", own_dir.display())))?;
        Ok(Self {
            name,
            ..Self::at(dir)
        })
    }

    /// [`Cgroups::detect`] and [`Cgroups::take_over`].
    pub(crate) fn start() -> Result<Self, Unavailable> {
        let mut cgroups = Self::detect()?;
        cgroups
            .take_over()
            .map_err(|e| Unavailable(format!("cannot take over {}: {e}", cgroups.name)))?;
        Ok(cgroups)
    }

    /// Moves torud into `supervisor/`, enables the controllers offered for
    /// `plugins/`, and kills and removes groups a previous torud left there.
    pub(crate) fn take_over(&mut self) -> io::Result<()> {
        let supervisor = self.dir.join("supervisor");
        create_dir(&supervisor)?;
        group::write(&supervisor, "cgroup.procs", &std::process::id().to_string())?;
        self.offered = std::fs::read_to_string(self.dir.join("cgroup.controllers"))?
            .trim()
            .to_owned();
        let offered: Vec<_> = CONTROLLERS
            .into_iter()
            .filter(|c| self.offered.split_whitespace().any(|o| o == *c))
            .collect();
        let top = enable(&self.dir, &offered);
        let plugins = self.plugins_dir();
        create_dir(&plugins)?;
        self.enabled = enable(&plugins, &top);
        for entry in std::fs::read_dir(&plugins)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            let leftover = entry.path();
            match group::remove_tree(&leftover, KILL_TIMEOUT) {
                Ok(killed) => info!(
                    group = %leftover.display(),
                    killed, "removed a plugin group left by a previous torud"
                ),
                Err(e) => {
                    warn!(error = %e, "cannot remove a plugin group left by a previous torud")
                }
            }
        }
        info!(
            cgroup = %self.name,
            controllers = if self.enabled.is_empty() { "none".to_owned() } else { self.enabled.join(" ") },
            "torud runs in {}/supervisor, each plugin in {}/plugins/<id>",
            self.name, self.name
        );
        Ok(())
    }

    /// The controllers enabled for plugin groups.
    #[cfg(test)]
    pub(crate) fn enabled(&self) -> &[&'static str] {
        &self.enabled
    }

    fn plugins_dir(&self) -> PathBuf {
        self.dir.join("plugins")
    }

    /// The controllers `limits` needs that plugin groups do not have.
    #[cfg(test)]
    pub(crate) fn missing(&self, limits: &ResourceLimits) -> Vec<&'static str> {
        needed(limits)
            .into_iter()
            .filter(|(c, _)| !self.enabled.contains(c))
            .map(|(c, _)| c)
            .collect()
    }

    /// Warns, once per controller over torud's life, about configured limits
    /// that cannot be enforced. Returns the warning when one was logged.
    pub(crate) fn warn_unenforced(
        &self,
        plugins: &BTreeMap<String, PluginSettings>,
    ) -> Option<String> {
        let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
        let mut controllers = BTreeSet::new();
        let mut keys = BTreeSet::new();
        let mut ids = Vec::new();
        for (id, plugin) in plugins {
            let missing: Vec<_> = needed(&plugin.limits)
                .into_iter()
                .filter(|(c, _)| !self.enabled.contains(c) && !warned.contains(c))
                .collect();
            if !missing.is_empty() {
                ids.push(id.as_str());
            }
            for (controller, key) in missing {
                controllers.insert(controller);
                keys.insert(key);
            }
        }
        if controllers.is_empty() {
            return None;
        }
        warned.extend(&controllers);
        let offered = if self.offered.is_empty() {
            "none"
        } else {
            &self.offered
        };
        let message = format!(
            "cgroup controllers {} not available in {} (it offers: {offered}): {} of plugin(s) {} not enforced",
            controllers.into_iter().collect::<Vec<_>>().join(", "),
            self.name,
            keys.into_iter().collect::<Vec<_>>().join(", "),
            ids.join(", "),
        );
        warn!("{message}");
        Some(message)
    }

    /// Creates `plugins/<id>` (replacing a leftover) with the `limits` its
    /// controllers allow; those without a controller were warned about.
    pub(crate) fn create(&self, id: &str, limits: &ResourceLimits) -> io::Result<PluginGroup> {
        if id.is_empty() || id.contains(['/', '.']) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{id:?} cannot name a cgroup"),
            ));
        }
        let dir = self.plugins_dir().join(id);
        if dir.exists() {
            let killed = group::remove_tree(&dir, KILL_TIMEOUT)?;
            debug!(plugin = id, killed, "replaced a leftover plugin group");
        }
        std::fs::create_dir(&dir)?;
        let group = PluginGroup::new(
            dir,
            format!("{}/plugins/{id}", self.name.trim_end_matches('/')),
            *limits,
        );
        // A new group's limits are `max`: only those set need writing.
        let set: Vec<LimitFile> = limit_files(limits).into_iter().filter(|l| l.set).collect();
        if let Err(e) = self.write_limits(&group, id, &set) {
            let _ = group.remove();
            return Err(e);
        }
        self.warn_unenforced_for(id, limits);
        Ok(group)
    }
}

impl Cgroups {
    /// [`Cgroups::warn_unenforced`] for one plugin's `limits`.
    fn warn_unenforced_for(&self, id: &str, limits: &ResourceLimits) {
        let mut single = BTreeMap::new();
        single.insert(
            id.to_owned(),
            PluginSettings {
                limits: *limits,
                ..PluginSettings::default()
            },
        );
        self.warn_unenforced(&single);
    }
}

/// Each controller `limits` needs, with the key that needs it.
fn needed(limits: &ResourceLimits) -> Vec<(&'static str, &'static str)> {
    [
        ("memory", "memory_max", limits.memory_max),
        ("memory", "memory_swap_max", limits.memory_swap_max),
        ("pids", "pids_max", limits.pids_max),
        ("cpu", "cpu_max", limits.cpu_max),
    ]
    .into_iter()
    .filter(|(_, _, max)| max.is_some())
    .map(|(controller, key, _)| (controller, key))
    .collect()
}

/// One limit as the kernel takes it: its controller, the key that sets it, the file, the
/// value written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LimitFile {
    controller: &'static str,
    key: &'static str,
    file: &'static str,
    value: String,
    /// Whether the configuration sets it (else `value` is `max`, a new group's).
    set: bool,
}

/// A [`LimitFile`] for each limit set. A limit left unset is `max` (what a new group
/// has), so that writing them all over a group's limits also lifts those removed.
fn limit_files(limits: &ResourceLimits) -> Vec<LimitFile> {
    let text = |max: Max| match max {
        Max::Unlimited => "max".to_owned(),
        Max::Value(n) => n.to_string(),
    };
    let file = |controller, key, file, value: Option<String>| LimitFile {
        controller,
        key,
        file,
        set: value.is_some(),
        value: value.unwrap_or_else(|| "max".to_owned()),
    };
    vec![
        file(
            "memory",
            "memory_max",
            "memory.max",
            limits.memory_max.map(text),
        ),
        file(
            "memory",
            "memory_swap_max",
            "memory.swap.max",
            limits.swap_max().map(text),
        ),
        file("pids", "pids_max", "pids.max", limits.pids_max.map(text)),
        file(
            "cpu",
            "cpu_max",
            "cpu.max",
            limits
                .cpu_max
                .map(|max| format!("{} {CPU_PERIOD_USEC}", text(max))),
        ),
    ]
}

impl Cgroups {
    /// Writes `files` into `group` where the controller is enabled. A refusal names the
    /// plugin's key; `memory.swap.max` is skipped where the kernel keeps no swap
    /// accounting.
    fn write_limits(&self, group: &PluginGroup, id: &str, files: &[LimitFile]) -> io::Result<()> {
        for limit in files
            .iter()
            .filter(|l| self.enabled.contains(&l.controller))
        {
            if limit.file == "memory.swap.max" && !group.dir().join(limit.file).exists() {
                continue;
            }
            if let Err(e) = std::fs::write(group.dir().join(limit.file), &limit.value) {
                return Err(io::Error::new(
                    e.kind(),
                    format!(
                        "the kernel refused `[plugins.{id}] {}` ({} = {}): {e}",
                        limit.key, limit.file, limit.value
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Puts `limits` in force on a running plugin's group (cgroup limits can be
    /// rewritten live) and says what changed (`cpu_max 20% -> 50%`); nothing when they
    /// are the ones in force.
    pub(crate) fn update(
        &self,
        group: &PluginGroup,
        id: &str,
        limits: &ResourceLimits,
    ) -> io::Result<Vec<String>> {
        let old = group.limits();
        let changes = limits.changes_from(&old);
        if changes.is_empty() {
            return Ok(changes);
        }
        let (before, after) = (limit_files(&old), limit_files(limits));
        let changed: Vec<LimitFile> = after
            .into_iter()
            .filter(|file| {
                !before
                    .iter()
                    .any(|b| b.file == file.file && b.value == file.value)
            })
            .collect();
        self.write_limits(group, id, &changed)?;
        group.set_limits(*limits);
        self.warn_unenforced_for(id, limits);
        Ok(changes)
    }
}

/// Enables `controllers` for the children of `dir`; returns those enabled.
fn enable(dir: &Path, controllers: &[&'static str]) -> Vec<&'static str> {
    if controllers.is_empty() {
        return Vec::new();
    }
    let all: Vec<_> = controllers.iter().map(|c| format!("+{c}")).collect();
    if group::write(dir, "cgroup.subtree_control", &all.join(" ")).is_ok() {
        return controllers.to_vec();
    }
    // One by one, to keep those that work.
    controllers
        .iter()
        .copied()
        .filter(
            |c| match group::write(dir, "cgroup.subtree_control", &format!("+{c}")) {
                Ok(()) => true,
                Err(e) => {
                    warn!(controller = c, error = %e, "cannot enable a cgroup controller");
                    false
                }
            },
        )
        .collect()
}

fn create_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", dir.display()),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
