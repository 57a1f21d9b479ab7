//! Protocol 1, as deployed by the first Toru host: the shapes in
//! `docs/PROTOCOL.md` ("Protocol 1"), byte for byte.
//!
//! Only the host speaks this side of it in Toru: it is here so that `torud`
//! and tests can talk to legacy plugins. Every host message carries the inner
//! `type` (and `request_id` for `http`) that Rust SDK 0.1 plugins require.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{PluginError, PluginResult};

/// The outer `type` of a protocol-1 message; always equal to the payload's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageType {
    /// `init` and `shutdown`.
    Lifecycle,
    /// An HTTP request or response.
    Http,
    /// Key-value operation (never used by deployed hosts).
    Kv,
}

/// The protocol-1 envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Equal to the payload's `type`.
    #[serde(rename = "type")]
    pub message_type: MessageType,
    /// When the message was written; required by Rust SDK 0.1 plugins.
    #[serde(deserialize_with = "lenient_timestamp", default)]
    pub timestamp: Option<DateTime<Utc>>,
    /// The request id for `http` messages, `null` for lifecycle ones.
    pub request_id: Option<String>,
    /// The message itself, tagged with `type` again.
    pub payload: MessagePayload,
}

/// Payload of a host message, tagged with its own `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum MessagePayload {
    /// `init` or `shutdown`.
    Lifecycle(LifecyclePayload),
    /// An HTTP request (or, from SDK 0.1 plugins, a response wrapped as one).
    Http {
        /// Same as the envelope's.
        request_id: String,
        /// The request.
        payload: HttpPayload,
    },
    /// A key-value operation.
    Kv {
        /// Same as the envelope's.
        request_id: String,
        /// The operation.
        payload: KvOp,
    },
}

/// A lifecycle message, tagged by `action`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum LifecyclePayload {
    /// Sent once, on a connection of its own, after the plugin's socket accepts.
    Init(LifecycleInitPayload),
    /// The plugin exits at once.
    Shutdown,
}

/// The `init` lifecycle payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleInitPayload {
    /// The host's instance id (a UUID).
    pub instance_id: String,
    /// Where the plugin listens.
    pub plugin_socket: String,
    /// Where the first host kept the plugin's log file; informational only.
    pub log_path: String,
}

/// An HTTP request in protocol 1: text bodies, one value per header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpPayload {
    /// `GET`, `POST`, ...; `RESPONSE` or `GET` in wrapped responses.
    pub method: String,
    /// Path below the plugin's route, starting with `/`, query kept.
    pub path: String,
    /// Header names to values, sorted by name on the wire.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub headers: BTreeMap<String, String>,
    /// UTF-8 body, `null` when empty.
    #[serde(default)]
    pub body: Option<String>,
}

/// A key-value operation as SDK 0.1 defined it (host to plugin).
///
/// Nothing deployed depends on it; [`crate::ToruPlugin::handle_kv`] keeps it
/// for source compatibility. SDK 0.1 wrote the action capitalized, the spec
/// lowercase: both are read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum KvOp {
    /// Read `key`.
    #[serde(alias = "Get")]
    Get {
        /// The key.
        key: String,
    },
    /// Write `value` under `key`.
    #[serde(alias = "Set")]
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Remove `key`.
    #[serde(alias = "Delete")]
    Delete {
        /// The key.
        key: String,
    },
}

/// A plugin's answer to an HTTP request, whichever shape it was sent in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpResponsePayload {
    /// HTTP status.
    pub status: u16,
    /// One value per header name.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub headers: BTreeMap<String, String>,
    /// UTF-8 body, absent or `null` when empty.
    #[serde(default)]
    pub body: Option<String>,
}

impl Message {
    /// The `init` message, stamped now.
    pub fn init(payload: LifecycleInitPayload) -> Self {
        Self::lifecycle(LifecyclePayload::Init(payload))
    }

    /// The `shutdown` message, stamped now.
    pub fn shutdown() -> Self {
        Self::lifecycle(LifecyclePayload::Shutdown)
    }

    fn lifecycle(payload: LifecyclePayload) -> Self {
        Self {
            message_type: MessageType::Lifecycle,
            timestamp: Some(Utc::now()),
            request_id: None,
            payload: MessagePayload::Lifecycle(payload),
        }
    }

    /// An HTTP request, stamped now, with the id in both places plugins read it.
    pub fn http_request(request_id: impl Into<String>, payload: HttpPayload) -> Self {
        let request_id = request_id.into();
        Self {
            message_type: MessageType::Http,
            timestamp: Some(Utc::now()),
            request_id: Some(request_id.clone()),
            payload: MessagePayload::Http {
                request_id,
                payload,
            },
        }
    }

    /// Replaces the timestamp (tests compare against fixed vectors).
    pub fn at(mut self, timestamp: DateTime<Utc>) -> Self {
        self.timestamp = Some(timestamp);
        self
    }
}

/// The outer shape every plugin answer shares; `payload` is told apart later.
#[derive(Deserialize)]
struct ResponseEnvelope {
    #[serde(rename = "type")]
    message_type: String,
    #[serde(default)]
    request_id: Option<String>,
    payload: serde_json::Value,
}

/// Reads a plugin's HTTP answer: the plain shape (`payload` holds `status`)
/// or the wrapped shape of Rust SDK 0.1 (`payload.payload.body` is a JSON
/// string holding `{"status","headers","body"}`).
///
/// Returns the envelope's `request_id` (the inner one when the outer is absent)
/// and the response.
pub fn decode_http_response(frame: &[u8]) -> PluginResult<(Option<String>, HttpResponsePayload)> {
    let envelope: ResponseEnvelope = serde_json::from_slice(frame)?;
    if envelope.message_type != "http" {
        return Err(PluginError::Protocol(format!(
            "expected an http response, got a {:?} message",
            envelope.message_type
        )));
    }
    if envelope.payload.get("status").is_some() {
        let response = serde_json::from_value(envelope.payload)?;
        return Ok((envelope.request_id, response));
    }
    let wrapped: MessagePayload = serde_json::from_value(envelope.payload).map_err(|e| {
        PluginError::Protocol(format!("http payload is neither plain nor wrapped: {e}"))
    })?;
    let MessagePayload::Http {
        request_id,
        payload,
    } = wrapped
    else {
        return Err(PluginError::Protocol(
            "wrapped response payload is not of type http".to_owned(),
        ));
    };
    let inner = payload.body.ok_or_else(|| {
        PluginError::Protocol("wrapped response carries no body holding the response".to_owned())
    })?;
    let response = serde_json::from_str(&inner)?;
    Ok((envelope.request_id.or(Some(request_id)), response))
}

/// Reads `"headers": null`, which some hand-written plugins send, as no headers.
fn null_as_empty<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::deserialize(deserializer)?.unwrap_or_default())
}

/// Accepts any RFC 3339 timestamp, and treats a missing or unreadable one as
/// absent: plugins' clocks and formatting are not worth failing a reply over.
fn lenient_timestamp<'de, D>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Option::<serde_json::Value>::deserialize(deserializer)?;
    Ok(raw
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc)))
}
