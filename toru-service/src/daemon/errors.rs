//! The one place where a failure of torud's domain becomes what an API
//! client is told: [`ApiError`], hence its status. A forwarding failure
//! that is the plugin's or torud's (502, 503, 504) is also logged here,
//! once, with the plugin, the request path and the whole cause chain.

use std::time::Duration;

use crate::api::ApiError;
use crate::plugins::State;
use crate::plugins::error::{CommandError, ForwardError};
use crate::report::chain;
use crate::store::StoreError;

/// How long a client is told to wait for a plugin that is stopping to be back.
const STOPPING_RETRY: Duration = Duration::from_secs(1);

/// What a client is told when a request for `plugin` at `path` failed.
pub(super) fn forward(plugin: &str, path: &str, error: &ForwardError) -> ApiError {
    let answer = match error {
        ForwardError::NotRunning {
            state: State::Disabled | State::Invalid,
            ..
        } => ApiError::NotFound(error.to_string()),
        ForwardError::NotRunning { retry_after, .. } => ApiError::Unavailable {
            message: error.to_string(),
            retry_after: *retry_after,
        },
        ForwardError::Stopping(_) => ApiError::Unavailable {
            message: chain(error),
            retry_after: Some(STOPPING_RETRY),
        },
        ForwardError::Timeout(after) => ApiError::Timeout(*after),
        ForwardError::TooLarge(len) => ApiError::PayloadTooLarge(*len),
        ForwardError::TextOnly => ApiError::BadRequest(error.to_string()),
        ForwardError::Closed
        | ForwardError::Connect(_)
        | ForwardError::Exchange(_)
        | ForwardError::InvalidAnswer(_) => ApiError::BadGateway(chain(error)),
    };
    let status = answer.status().as_u16();
    match status {
        502 | 504 => tracing::warn!(plugin, path, status, error = %chain(error), "request failed"),
        503 => tracing::info!(plugin, path, status, error = %chain(error), "request refused"),
        _ => {}
    }
    answer
}

/// What a client is told when a command could not be given.
pub(super) fn command(error: &CommandError) -> ApiError {
    match error {
        CommandError::Invalid { .. } => ApiError::BadRequest(error.to_string()),
        CommandError::Stopping => ApiError::Unavailable {
            message: error.to_string(),
            retry_after: None,
        },
    }
}

/// What a client is told when the store failed (its errors say what to do).
pub(super) fn store(error: &StoreError) -> ApiError {
    ApiError::Internal(format!("storage: {}", chain(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use toru_plugin_api::PluginError;

    #[test]
    fn each_failure_has_its_status() {
        let not_running = |state| ForwardError::NotRunning {
            plugin: "p".into(),
            state,
            retry_after: None,
        };
        let io = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let cases = [
            (not_running(State::Disabled), 404),
            (not_running(State::Invalid), 404),
            (not_running(State::Backoff), 503),
            (not_running(State::Starting), 503),
            (ForwardError::Stopping(PluginError::NotConnected), 503),
            (ForwardError::Timeout(Duration::from_secs(1)), 504),
            (ForwardError::TooLarge(1), 413),
            (ForwardError::TextOnly, 400),
            (ForwardError::Closed, 502),
            (ForwardError::Connect(io()), 502),
            (ForwardError::Exchange(PluginError::Io(io())), 502),
            (ForwardError::InvalidAnswer("x".into()), 502),
        ];
        for (error, status) in cases {
            assert_eq!(
                forward("p", "/x", &error).status().as_u16(),
                status,
                "{error:?}"
            );
        }
    }

    #[test]
    fn a_502_says_the_whole_cause_chain() {
        let error = ForwardError::Exchange(PluginError::Io(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "broken pipe",
        )));
        let answer = forward("p", "/x", &error);
        assert_eq!(
            answer.to_string(),
            "the plugin failed the request: i/o error: broken pipe"
        );
    }
}
