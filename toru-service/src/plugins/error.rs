//! What can go wrong between torud and a plugin, each with its cause kept
//! (`source`), so that whoever reports it can give the whole chain. Which
//! HTTP status each one is decided in `crate::daemon`, nowhere here.

use std::time::Duration;

use toru_plugin_api::PluginError;

use super::handle::State;

/// Why a request did not reach a plugin, or no answer came back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// The plugin is not running (starting, stopping, backoff, failed, stopped, disabled or
    /// invalid).
    #[error("{}", not_running(plugin, *state))]
    NotRunning {
        /// Its id.
        plugin: String,
        /// Where it is.
        state: State,
        /// When it may be running again, if known.
        retry_after: Option<Duration>,
    },
    /// No answer within the request timeout.
    #[error("plugin did not answer within {0:?}")]
    Timeout(Duration),
    /// The plugin is stopping and refused the request.
    #[error("plugin is stopping")]
    Stopping(#[source] PluginError),
    /// The request does not fit in one protocol frame.
    #[error("request of {0} bytes is too large for the plugin's protocol")]
    TooLarge(usize),
    /// A binary body for a protocol-1 plugin.
    #[error("this plugin speaks protocol 1, which carries text bodies only")]
    TextOnly,
    /// The plugin's connection is gone.
    #[error("the plugin closed its connection")]
    Closed,
    /// A protocol-1 plugin's socket refused the connection.
    #[error("cannot connect to the plugin")]
    Connect(#[source] std::io::Error),
    /// The exchange failed on the way (sending, or reading the answer).
    #[error("the plugin failed the request")]
    Exchange(#[source] PluginError),
    /// What came back is not an answer torud can pass on.
    #[error("the plugin answered {0}")]
    InvalidAnswer(String),
}

/// Why a command did not reach a plugin's supervisor.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommandError {
    /// The plugin is listed but was never started: its metadata is unusable.
    #[error("plugin {plugin} is invalid and cannot be started: {reason}")]
    Invalid {
        /// Its id (or file name).
        plugin: String,
        /// Why it is invalid.
        reason: String,
    },
    /// torud is stopping: supervisors take no more commands.
    #[error("torud is stopping")]
    Stopping,
}

/// What a client is told about a plugin in `state` that is not serving.
fn not_running(plugin: &str, state: State) -> String {
    match state {
        State::Stopping => format!(
            "plugin {plugin} is stopping (restarted, disabled or reloaded): requests in flight \
             finish, new ones are refused until it is back"
        ),
        state => format!("plugin {plugin} is not running ({})", state.as_str()),
    }
}
