//! What the administrator (or torud's own shutdown) asks of a plugin.

/// Asked of a plugin's supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Enable, clear `failed`, and start.
    Enable,
    /// Stop and stay stopped (persisted).
    Disable,
    /// Stop if running, start again.
    Restart,
    /// torud is stopping: stop the plugin and end the task.
    Stop,
}
