//! What the API shows of a plugin, from what the domain knows of it.

use crate::api::{LastExitView, LicenseView, PluginView};
use crate::plugins::license::LicenseStatus;
use crate::plugins::{PluginHandle, State};

/// A plugin's licence.
pub(super) fn license(status: &LicenseStatus, installed: bool) -> LicenseView {
    LicenseView {
        status: status.state.as_str(),
        licensee: status.licensee.clone(),
        expires: status.expires.map(|d| d.to_string()),
        expires_in_seconds: status
            .expires_at
            .map(|at| (at - chrono::Utc::now()).num_seconds()),
        error: status.error.clone(),
        required: status.required,
        installed,
    }
}

/// `GET /api/plugins/{id}`, on instance `instance_id`.
pub(super) fn plugin(handle: &PluginHandle, instance_id: &str) -> PluginView {
    let now = handle.snapshot();
    let metadata = handle.metadata.as_ref();
    let state = now.state;
    PluginView {
        id: handle.id.clone(),
        name: metadata.map_or_else(|| handle.id.clone(), |m| m.name.clone()),
        version: metadata.map(|m| m.version.clone()).unwrap_or_default(),
        author: metadata.and_then(|m| m.author.clone()),
        icon: metadata.map(|m| m.icon.clone()).unwrap_or_default(),
        route: metadata.map(|m| m.route.clone()).unwrap_or_default(),
        protocol: handle.protocol,
        path: handle.path.display().to_string(),
        enabled: state != State::Disabled,
        running: state == State::Running,
        health: match state {
            State::Running => "healthy",
            State::Disabled => "disabled",
            _ => "unhealthy",
        },
        state: state.as_str(),
        pid: now.pid,
        restarts: now.restarts,
        manual_restarts: now.manual_restarts,
        oom_kills: now.oom_kills,
        last_exit: now.last_exit.clone().map(|exit| LastExitView {
            at: exit.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            reason: exit.reason,
            code: exit.code,
            signal: exit.signal,
            cause: exit.cause.as_str(),
        }),
        running_since: now
            .running_since
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        state_since: now
            .state_since
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        error: match state {
            State::Invalid | State::Failed => now.error,
            // Waiting to restart: why it ended ("killed by the kernel: out of memory ...").
            State::Backoff => now.last_exit.as_ref().map(|e| e.reason.clone()),
            _ => None,
        },
        socket_path: handle.socket.display().to_string(),
        cgroup: now.cgroup,
        memory_bytes: now.usage.memory_bytes,
        cpu_usec: now.usage.cpu_usec,
        license: license(
            &handle.license_status(instance_id),
            handle.license().is_some(),
        ),
    }
}
