//! What torud knows of one plugin at any moment: read by the API, written
//! by the plugin's supervisor. No lock is held across an await or a request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use toru_plugin_api::PluginMetadata;

use toru_plugin_api::{HttpRequest, HttpResponse};

use super::command::Command;
use super::discovery::Fingerprint;
use super::error::{CommandError, ForwardError};
use super::link::PluginLink;
use super::logs::PluginLogs;
use crate::cgroup::{PluginGroup, Usage};

/// Where a plugin is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum State {
    /// Started, not yet ready.
    Starting,
    /// Ready and serving.
    Running,
    /// Being stopped (for a restart, a disable, a reload or torud's stop): requests
    /// in flight finish, new ones are refused.
    Stopping,
    /// Waiting to be restarted.
    Backoff,
    /// Crashed too often; down until enabled again.
    Failed,
    /// Stopped with torud.
    Stopped,
    /// Disabled by the administrator.
    Disabled,
    /// Its metadata is unusable; never started.
    Invalid,
}

impl State {
    /// The name the API uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Backoff => "backoff",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
            Self::Disabled => "disabled",
            Self::Invalid => "invalid",
        }
    }
}

#[derive(Debug)]
struct Status {
    state: State,
    error: Option<String>,
    pid: Option<u32>,
    restarts: u32,
    next_attempt: Option<Instant>,
    running_since: Option<chrono::DateTime<chrono::Utc>>,
    /// When `state` last changed.
    state_since: chrono::DateTime<chrono::Utc>,
    /// Restarts asked for (restart, licence changes), apart from `restarts`.
    manual_restarts: u32,
    /// How the last run of the process ended.
    last_exit: Option<LastExit>,
    /// Runs the kernel ended for memory since torud started.
    oom_kills: u32,
}

/// How one run of a plugin's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastExit {
    /// When.
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    /// In words: "exited with code 3", "killed by torud: hung: no answer to ping (...)".
    pub(crate) reason: String,
    /// Its exit code, when it exited.
    pub(crate) code: Option<i32>,
    /// The signal that ended it ("SIGKILL"), when one did.
    pub(crate) signal: Option<String>,
    /// Why it ended, as far as torud knows.
    pub(crate) cause: ExitCause,
}

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitCause {
    /// The process ended by itself (or by someone else's signal).
    Exited,
    /// torud killed it: it stopped answering pings.
    Hung,
    /// The kernel killed it for memory (its cgroup's `memory.max`).
    OutOfMemory,
    /// It never got to serve.
    StartFailed,
    /// torud stopped it, as asked (restart, disable, reload, stop).
    Stopped,
}

impl ExitCause {
    /// The name the API uses.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Exited => "exited",
            Self::Hung => "hung",
            Self::OutOfMemory => "out_of_memory",
            Self::StartFailed => "start_failed",
            Self::Stopped => "stopped",
        }
    }
}

/// One discovered plugin.
#[derive(Debug)]
pub(crate) struct PluginHandle {
    /// Metadata id (file name when invalid).
    pub(crate) id: String,
    /// The executable.
    pub(crate) path: PathBuf,
    /// Its metadata, when valid.
    pub(crate) metadata: Option<PluginMetadata>,
    /// Protocol version spoken.
    pub(crate) protocol: u32,
    /// The executable's identity when discovered.
    pub(crate) fingerprint: Fingerprint,
    /// Where it listens.
    pub(crate) socket: PathBuf,
    /// Its recent output.
    pub(crate) logs: Arc<PluginLogs>,
    /// Its requests' counters and latency histogram.
    pub(crate) meters: crate::metrics::Meters,
    status: Mutex<Status>,
    link: RwLock<Option<Arc<PluginLink>>>,
    group: RwLock<Option<Arc<PluginGroup>>>,
    /// The licence line installed, as read at the last start or install.
    license: RwLock<Option<String>>,
    settled: watch::Sender<bool>,
    commands: Option<mpsc::Sender<Command>>,
}

impl PluginHandle {
    /// A plugin with usable metadata, driven through `commands`.
    pub(crate) fn valid(
        metadata: PluginMetadata,
        path: PathBuf,
        fingerprint: Fingerprint,
        socket: PathBuf,
        commands: mpsc::Sender<Command>,
    ) -> Self {
        let id = metadata.id.clone();
        Self {
            fingerprint,
            protocol: metadata.protocol_version(),
            logs: PluginLogs::new(&id),
            meters: Default::default(),
            id,
            path,
            metadata: Some(metadata),
            socket,
            status: Mutex::new(Status {
                state: State::Starting,
                error: None,
                pid: None,
                restarts: 0,
                next_attempt: None,
                running_since: None,
                state_since: chrono::Utc::now(),
                manual_restarts: 0,
                last_exit: None,
                oom_kills: 0,
            }),
            link: RwLock::new(None),
            group: RwLock::new(None),
            license: RwLock::new(None),
            settled: watch::Sender::new(false),
            commands: Some(commands),
        }
    }

    /// A plugin listed but never started, with the reason.
    pub(crate) fn invalid(
        id: String,
        path: PathBuf,
        fingerprint: Fingerprint,
        reason: String,
    ) -> Self {
        Self {
            fingerprint,
            logs: PluginLogs::new(&id),
            meters: Default::default(),
            id,
            path,
            metadata: None,
            protocol: 1,
            socket: PathBuf::new(),
            status: Mutex::new(Status {
                state: State::Invalid,
                error: Some(reason),
                pid: None,
                restarts: 0,
                next_attempt: None,
                running_since: None,
                state_since: chrono::Utc::now(),
                manual_restarts: 0,
                last_exit: None,
                oom_kills: 0,
            }),
            link: RwLock::new(None),
            group: RwLock::new(None),
            license: RwLock::new(None),
            settled: watch::Sender::new(true),
            commands: None,
        }
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current state.
    pub(crate) fn state(&self) -> State {
        self.status().state
    }

    /// Moves to `state`; `error` is shown for `failed`.
    pub(crate) fn set_state(&self, state: State, error: Option<String>) {
        let mut status = self.status();
        if state == State::Running && status.state != State::Running {
            status.running_since = Some(chrono::Utc::now());
        } else if state != State::Running {
            status.running_since = None;
        }
        if state != status.state {
            status.state_since = chrono::Utc::now();
        }
        status.state = state;
        status.error = error;
        status.next_attempt = None;
        if !matches!(state, State::Running | State::Starting | State::Stopping) {
            status.pid = None;
        }
    }

    /// How the run that just ended ended.
    pub(crate) fn set_exit(&self, exit: LastExit) {
        let mut status = self.status();
        if exit.cause == ExitCause::OutOfMemory {
            status.oom_kills += 1;
        }
        status.last_exit = Some(exit);
    }

    /// Waiting until `at` to restart.
    pub(crate) fn set_backoff(&self, at: Instant) {
        let mut status = self.status();
        if status.state != State::Backoff {
            status.state_since = chrono::Utc::now();
        }
        status.state = State::Backoff;
        status.running_since = None;
        status.next_attempt = Some(at);
        status.pid = None;
    }

    /// The running process.
    pub(crate) fn set_pid(&self, pid: Option<u32>) {
        self.status().pid = pid;
    }

    /// One more restart after a crash, as systemd counts them.
    pub(crate) fn count_restart(&self) {
        self.status().restarts += 1;
    }

    /// One more restart asked for.
    pub(crate) fn count_manual_restart(&self) {
        self.status().manual_restarts += 1;
    }

    /// How long until the next start attempt, in backoff.
    pub(crate) fn retry_after(&self) -> Option<std::time::Duration> {
        let status = self.status();
        match status.state {
            State::Backoff => status
                .next_attempt
                .map(|at| at.saturating_duration_since(Instant::now())),
            State::Starting | State::Stopping => Some(std::time::Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The connection to forward requests on, while running.
    pub(crate) fn link(&self) -> Option<Arc<PluginLink>> {
        self.link
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets or clears the connection.
    pub(crate) fn set_link(&self, link: Option<Arc<PluginLink>>) {
        *self.link.write().unwrap_or_else(PoisonError::into_inner) = link;
    }

    /// The cgroup the plugin runs in, while it has one.
    pub(crate) fn group(&self) -> Option<Arc<PluginGroup>> {
        self.group
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sets or clears the cgroup.
    pub(crate) fn set_group(&self, group: Option<Arc<PluginGroup>>) {
        *self.group.write().unwrap_or_else(PoisonError::into_inner) = group;
    }

    /// The licence line installed for it, as last read.
    pub(crate) fn license(&self) -> Option<String> {
        self.license
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the licence line installed for it.
    pub(crate) fn set_license(&self, line: Option<String>) {
        *self.license.write().unwrap_or_else(PoisonError::into_inner) = line;
    }

    /// What its licence is worth on instance `instance_id` now.
    pub(crate) fn license_status(&self, instance_id: &str) -> super::license::LicenseStatus {
        super::license::status(
            self.metadata.as_ref(),
            self.license().as_deref(),
            instance_id,
            chrono::Utc::now(),
        )
    }

    /// The plugin has started or failed once: torud may report ready.
    pub(crate) fn settle(&self) {
        self.settled.send_replace(true);
    }

    /// Resolves once [`PluginHandle::settle`] ran.
    pub(crate) async fn settled(&self) {
        let mut settled = self.settled.subscribe();
        let _ = settled.wait_for(|s| *s).await;
    }

    /// Hands `command` to the supervisor.
    pub(crate) async fn command(&self, command: Command) -> Result<(), CommandError> {
        let Some(commands) = &self.commands else {
            return Err(CommandError::Invalid {
                plugin: self.id.clone(),
                reason: self.status().error.clone().unwrap_or_default(),
            });
        };
        commands
            .send(command)
            .await
            .map_err(|_| CommandError::Stopping)
    }

    /// Forwards `request` if the plugin runs; an answer whose status is not a final one
    /// is the plugin's failure too.
    pub(crate) async fn forward(
        &self,
        request: HttpRequest,
        timeout: std::time::Duration,
    ) -> Result<HttpResponse, ForwardError> {
        let Some(link) = self.link() else {
            return Err(ForwardError::NotRunning {
                plugin: self.id.clone(),
                state: self.state(),
                retry_after: self.retry_after(),
            });
        };
        let answer = link.forward(request, timeout).await?;
        // An informational status is no final answer; 101 would hijack the client's connection.
        let usable = http::StatusCode::from_u16(answer.status).is_ok_and(|s| !s.is_informational());
        if !usable {
            return Err(ForwardError::InvalidAnswer(format!(
                "with invalid status {}",
                answer.status
            )));
        }
        Ok(answer)
    }

    /// Why it is invalid, if it is.
    pub(crate) fn invalid_reason(&self) -> Option<String> {
        let status = self.status();
        (status.state == State::Invalid).then(|| status.error.clone().unwrap_or_default())
    }

    /// What it is doing now, as plain data.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let group = self.group();
        let usage = group.as_ref().map(|g| g.usage()).unwrap_or_default();
        let status = self.status();
        Snapshot {
            state: status.state,
            error: status.error.clone(),
            pid: status.pid,
            restarts: status.restarts,
            running_since: status.running_since,
            state_since: status.state_since,
            manual_restarts: status.manual_restarts,
            last_exit: status.last_exit.clone(),
            oom_kills: status.oom_kills,
            cgroup: group.map(|g| g.name().to_owned()),
            usage,
        }
    }
}

/// One plugin's moment, for whoever shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Where it is in its life.
    pub(crate) state: State,
    /// Why it is invalid or failed (also set in other states, not shown there).
    pub(crate) error: Option<String>,
    /// Its process, while it runs.
    pub(crate) pid: Option<u32>,
    /// Restarts after a crash since torud started (as systemd's `NRestarts` counts).
    pub(crate) restarts: u32,
    /// Since when it serves, while it runs.
    pub(crate) running_since: Option<chrono::DateTime<chrono::Utc>>,
    /// When it entered its state.
    pub(crate) state_since: chrono::DateTime<chrono::Utc>,
    /// Restarts asked for.
    pub(crate) manual_restarts: u32,
    /// How its last run ended.
    pub(crate) last_exit: Option<LastExit>,
    /// Runs the kernel ended for memory.
    pub(crate) oom_kills: u32,
    /// Its cgroup as `/proc/PID/cgroup` names it, while it runs in one.
    pub(crate) cgroup: Option<String>,
    /// What its cgroup uses.
    pub(crate) usage: Usage,
}
