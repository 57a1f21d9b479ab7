//! The SDK's error type.

use crate::protocol::v2::ErrorCode;

/// Result of every fallible SDK call and plugin handler.
pub type PluginResult<T> = Result<T, PluginError>;

/// Everything that can go wrong in a plugin or between a plugin and its host.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),

    /// A message could not be encoded or decoded as JSON.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),

    /// The peer broke the protocol (bad frame, unexpected message, ...).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// The peer answered a call with an `error` message.
    #[error("{code}: {message}")]
    Remote {
        /// Machine-readable reason, as sent on the wire.
        code: ErrorCode,
        /// What went wrong, for a person.
        message: String,
    },

    /// The connection to the host is gone (or was never made).
    #[error("not connected to the host")]
    NotConnected,

    /// The peer did not answer in time.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// A frame would exceed the 16 MiB limit of a frame.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Encoded size of the refused message.
        len: usize,
        /// The limit it exceeds.
        max: usize,
    },

    /// Plugin metadata is invalid; the string says which field and why.
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),

    /// A handler wants to answer with this HTTP status and message
    /// (`{"error": message}`); any other handler error becomes a 500.
    #[error("{message}")]
    Http {
        /// HTTP status code sent to the client.
        status: u16,
        /// Sent as `{"error": message}`.
        message: String,
    },

    /// A handler failed for a reason of its own; answered as 500.
    #[error("{0}")]
    Other(String),

    /// The plugin requires a licence, and has no valid one.
    #[error("this plugin requires a licence, and the one installed is not valid: {0}")]
    License(#[source] crate::license::LicenseError),

    /// The plugin requires a licence, and none is installed.
    #[error(
        "this plugin requires a licence, and none is installed \
         (`toructl license install ID FILE` installs the one its vendor sent)"
    )]
    NoLicense,
}

impl PluginError {
    /// A handler error answered with `status` and `{"error": message}`.
    pub fn http(status: u16, message: impl Into<String>) -> Self {
        Self::Http {
            status,
            message: message.into(),
        }
    }

    /// A handler error of the plugin's own, answered as 500.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(message.into())
    }
}
