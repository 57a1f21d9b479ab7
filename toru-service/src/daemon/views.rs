//! What the API shows of a plugin, from what the domain knows of it.

use crate::api::PluginView;
use crate::plugins::{PluginHandle, State};

/// `GET /api/plugins/{id}`.
pub(super) fn plugin(handle: &PluginHandle) -> PluginView {
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
        running_since: now
            .running_since
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        error: match state {
            State::Invalid | State::Failed => now.error,
            _ => None,
        },
        socket_path: handle.socket.display().to_string(),
        cgroup: now.cgroup,
        memory_bytes: now.usage.memory_bytes,
        cpu_usec: now.usage.cpu_usec,
    }
}
