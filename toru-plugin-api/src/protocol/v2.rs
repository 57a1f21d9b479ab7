//! Protocol 2: one persistent, multiplexed connection per plugin.
//!
//! A frame is a JSON header describing the message plus an optional binary
//! body (HTTP bodies and KV values travel raw, never base64). Requests in
//! either direction carry an `id` chosen by their sender; the answer carries
//! the same `id`. Each side numbers its own requests, and an answer is always
//! looked up among the requests its receiver sent, so the two id spaces never
//! mix. The full specification is `docs/PROTOCOL.md`.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One protocol-2 message: its header and, for the kinds that carry one, a body.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// What the frame says.
    pub message: Message,
    /// Raw bytes: the HTTP body or KV value; empty for every other kind.
    pub body: Bytes,
}

impl Frame {
    /// A frame with no body.
    pub fn new(message: Message) -> Self {
        Self {
            message,
            body: Bytes::new(),
        }
    }

    /// A frame carrying `body`.
    pub fn with_body(message: Message, body: impl Into<Bytes>) -> Self {
        Self {
            message,
            body: body.into(),
        }
    }
}

/// Every protocol-2 message, tagged by `type` on the wire.
///
/// Unknown fields are ignored so that later versions can add some; an
/// unknown `type` is answered with an `error` of code `unknown_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Message {
    /// Host → plugin, first message on a connection. Answer: `init_ok` or `error`.
    Init {
        /// Request id.
        id: u64,
        /// The host's protocol version (2).
        protocol: u32,
        /// The host's instance id (a UUID).
        instance_id: String,
        /// The id the host knows this plugin by.
        plugin_id: String,
        /// The plugin's own settings from the host's configuration.
        #[serde(default)]
        config: serde_json::Map<String, serde_json::Value>,
        /// The host's limits.
        #[serde(default)]
        limits: Limits,
        /// The licence line installed for this plugin, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        license: Option<String>,
    },
    /// Plugin → host: `init` succeeded; the plugin now serves requests.
    InitOk {
        /// The `init`'s id.
        id: u64,
        /// The plugin's protocol version (2).
        protocol: u32,
    },
    /// Host → plugin. Body: the request body. Answer: `http_response` or `error`.
    HttpRequest {
        /// Request id.
        id: u64,
        /// `GET`, `POST`, ...
        method: String,
        /// Path below the plugin's route, starting with `/`, query kept.
        path: String,
        /// `[name, value]` pairs; a name may repeat.
        #[serde(with = "header_pairs")]
        headers: HeaderMap,
    },
    /// Plugin → host. Body: the response body.
    HttpResponse {
        /// The request's id.
        id: u64,
        /// HTTP status, 100 to 999.
        status: u16,
        /// `[name, value]` pairs; a name may repeat.
        #[serde(with = "header_pairs")]
        headers: HeaderMap,
    },
    /// Host → plugin: the host gave up on request `id` (timeout, client gone).
    /// No answer; the plugin may stop working on it.
    Cancel {
        /// The abandoned request's id.
        id: u64,
    },
    /// Either direction. Answer: `pong`, from the connection's reader at once,
    /// even while handlers are busy.
    Ping {
        /// Request id.
        id: u64,
    },
    /// Answer to `ping`.
    Pong {
        /// The ping's id.
        id: u64,
    },
    /// Host → plugin: stop taking requests, finish the ones in flight within
    /// `deadline_ms`, then exit 0. No answer.
    Shutdown {
        /// Milliseconds the plugin has before the host stops it by force.
        deadline_ms: u64,
    },
    /// Plugin → host: read a key. Answer: `kv_value` or `error`.
    KvGet {
        /// Request id.
        id: u64,
        /// The key.
        key: String,
    },
    /// Host → plugin: the value of a key. Body: the value when `found`.
    KvValue {
        /// The `kv_get`'s id.
        id: u64,
        /// Whether the key exists.
        found: bool,
    },
    /// Plugin → host: write a key, durably. Body: the value. Answer: `kv_ok` or `error`.
    KvSet {
        /// Request id.
        id: u64,
        /// The key.
        key: String,
    },
    /// Host → plugin: the `kv_set` is committed.
    KvOk {
        /// The `kv_set`'s id.
        id: u64,
    },
    /// Plugin → host: remove a key. Answer: `kv_deleted` or `error`.
    KvDelete {
        /// Request id.
        id: u64,
        /// The key.
        key: String,
    },
    /// Host → plugin: the `kv_delete` is committed.
    KvDeleted {
        /// The `kv_delete`'s id.
        id: u64,
        /// Whether the key existed.
        existed: bool,
    },
    /// Plugin → host: keys starting with `prefix`, in byte order, after
    /// `after`, at most `limit` (default and maximum: `limits.max_list_keys`).
    /// Answer: `kv_keys` or `error`.
    KvList {
        /// Request id.
        id: u64,
        /// Only keys starting with this.
        #[serde(default)]
        prefix: String,
        /// Only keys strictly after this one (the previous page's `next`).
        #[serde(default)]
        after: Option<String>,
        /// Most keys wanted.
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Host → plugin: one page of keys.
    KvKeys {
        /// The `kv_list`'s id.
        id: u64,
        /// The keys, in byte order.
        keys: Vec<String>,
        /// Pass as `after` to get the next page; `null` on the last page.
        next: Option<String>,
    },
    /// Either direction: the request `id` failed, or (with `id: null`) a frame
    /// that could not be read at all.
    Error {
        /// The failed request's id, if it could be read.
        id: Option<u64>,
        /// Machine-readable reason.
        code: ErrorCode,
        /// What went wrong, for a person.
        message: String,
    },
}

impl Message {
    /// Every `type` this version knows.
    pub const TYPES: &'static [&'static str] = &[
        "init",
        "init_ok",
        "http_request",
        "http_response",
        "cancel",
        "ping",
        "pong",
        "shutdown",
        "kv_get",
        "kv_value",
        "kv_set",
        "kv_ok",
        "kv_delete",
        "kv_deleted",
        "kv_list",
        "kv_keys",
        "error",
    ];

    /// The `type`s that answer a request (see [`Message::is_reply`]).
    pub const ANSWER_TYPES: &'static [&'static str] = &[
        "init_ok",
        "http_response",
        "pong",
        "kv_value",
        "kv_ok",
        "kv_deleted",
        "kv_keys",
        "error",
    ];

    /// The request id this message carries or answers, if any.
    pub fn id(&self) -> Option<u64> {
        match self {
            Self::Init { id, .. }
            | Self::InitOk { id, .. }
            | Self::HttpRequest { id, .. }
            | Self::HttpResponse { id, .. }
            | Self::Cancel { id }
            | Self::Ping { id }
            | Self::Pong { id }
            | Self::KvGet { id, .. }
            | Self::KvValue { id, .. }
            | Self::KvSet { id, .. }
            | Self::KvOk { id }
            | Self::KvDelete { id, .. }
            | Self::KvDeleted { id, .. }
            | Self::KvList { id, .. }
            | Self::KvKeys { id, .. } => Some(*id),
            Self::Error { id, .. } => *id,
            Self::Shutdown { .. } => None,
        }
    }

    /// True for messages that answer a request (looked up among the
    /// receiver's own pending requests).
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Self::InitOk { .. }
                | Self::HttpResponse { .. }
                | Self::Pong { .. }
                | Self::KvValue { .. }
                | Self::KvOk { .. }
                | Self::KvDeleted { .. }
                | Self::KvKeys { .. }
                | Self::Error { .. }
        )
    }

    /// An `error` answer to request `id`.
    pub fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Error {
            id,
            code,
            message: message.into(),
        }
    }
}

/// Machine-readable reason in an `error` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame or a field of it could not be read.
    BadMessage,
    /// The `type` is not one this peer knows.
    UnknownType,
    /// A request reused the id of one still in flight.
    DuplicateId,
    /// The message is not valid in this state (e.g. a request before `init`).
    UnexpectedMessage,
    /// A KV key is empty, too long, or not valid.
    InvalidKey,
    /// A KV value is above the limit.
    TooLarge,
    /// The host's storage failed; the operation did not happen.
    Storage,
    /// The peer is shutting down and takes no new requests.
    ShuttingDown,
    /// The plugin's `init` failed; it exits.
    InitFailed,
    /// A failure inside the peer.
    Internal,
    /// A code this version does not know (sent by a newer peer).
    #[serde(other)]
    Unknown,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Self::BadMessage => "bad_message",
            Self::UnknownType => "unknown_type",
            Self::DuplicateId => "duplicate_id",
            Self::UnexpectedMessage => "unexpected_message",
            Self::InvalidKey => "invalid_key",
            Self::TooLarge => "too_large",
            Self::Storage => "storage",
            Self::ShuttingDown => "shutting_down",
            Self::InitFailed => "init_failed",
            Self::Internal => "internal",
            Self::Unknown => "unknown",
        };
        f.write_str(text)
    }
}

/// Limits the host enforces, told to the plugin in `init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest frame either side may send (length prefix value).
    pub max_frame_len: u32,
    /// Longest KV key, in bytes.
    pub max_key_len: u32,
    /// Largest KV value, in bytes.
    pub max_value_len: u32,
    /// Most keys in one `kv_keys` page.
    pub max_list_keys: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_len: crate::codec::MAX_FRAME_LEN as u32,
            max_key_len: 1024,
            max_value_len: 1024 * 1024,
            max_list_keys: 1000,
        }
    }
}

/// Serializes a [`HeaderMap`] as `[[name, value], ...]`, keeping repeated names.
///
/// Values are UTF-8 on the wire: a value that is not (rare, and legal in
/// HTTP/1 only as obsolete text) is sent with invalid bytes replaced.
pub mod header_pairs {
    use super::*;

    /// Writes the pairs in the map's order.
    pub fn serialize<S: Serializer>(headers: &HeaderMap, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(headers.len()))?;
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            seq.serialize_element(&(name.as_str(), value.as_ref()))?;
        }
        seq.end()
    }

    /// Reads the pairs, refusing names and values HTTP does not allow.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HeaderMap, D::Error> {
        deserializer.deserialize_seq(PairsVisitor)
    }

    struct PairsVisitor;

    impl<'de> Visitor<'de> for PairsVisitor {
        type Value = HeaderMap;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of [name, value] string pairs")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderMap, A::Error> {
            use serde::de::Error;
            let mut map = HeaderMap::with_capacity(seq.size_hint().unwrap_or(0).min(64));
            while let Some((Text(name), Text(value))) =
                seq.next_element::<(Text<'_>, Text<'_>)>()?
            {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| A::Error::custom(format!("invalid header name {name:?}")))?;
                let value = HeaderValue::from_bytes(value.as_bytes())
                    .map_err(|_| A::Error::custom(format!("invalid value for header {name}")))?;
                map.append(name, value);
            }
            Ok(map)
        }
    }

    /// A JSON string, borrowed from the frame unless it has escapes: a header's name
    /// and value are copied once, into the `HeaderMap`.
    struct Text<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Text<'de> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_str(TextVisitor)
        }
    }

    struct TextVisitor;

    impl<'de> Visitor<'de> for TextVisitor {
        type Value = Text<'de>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
            Ok(Text(Cow::Borrowed(v)))
        }

        fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
            Ok(Text(Cow::Owned(v.to_owned())))
        }

        fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
            Ok(Text(Cow::Owned(v)))
        }
    }

    /// [`deserialize`] for a field that may be missing.
    pub(super) fn deserialize_some<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<HeaderMap>, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

impl Message {
    /// Reads a frame's JSON header.
    ///
    /// The messages every forwarded request and KV call makes are read in one pass
    /// over the bytes ([`Hot`]); serde's internally tagged enums buffer the whole
    /// document first, which cost more than the rest of the frame's handling. Anything
    /// else, and anything the quick reading does not take (a missing or mistyped
    /// field, a header that is not an object), is read by the derived
    /// `Deserialize`, so that errors and edge cases are exactly its own.
    pub fn from_header(header: &[u8]) -> serde_json::Result<Self> {
        match Hot::read(header) {
            Some(message) => Ok(message),
            None => serde_json::from_slice(header),
        }
    }
}

/// The fields of the frequent messages, flat: one pass, no buffering.
#[derive(Deserialize)]
struct Hot<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<u64>,
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    #[serde(default, deserialize_with = "header_pairs::deserialize_some")]
    headers: Option<HeaderMap>,
    key: Option<String>,
    found: Option<bool>,
    existed: Option<bool>,
}

impl Hot<'_> {
    /// The message, when the header is a frequent one read without trouble.
    fn read(header: &[u8]) -> Option<Message> {
        // A derived struct also takes a JSON array; the enum takes only an object.
        if header.first() != Some(&b'{') {
            return None;
        }
        // UTF-8 checked once for the whole header, not again for each string: what
        // serde_json does reading from bytes (`from_slice`), not from a `str`.
        let hot: Hot<'_> = serde_json::from_str(std::str::from_utf8(header).ok()?).ok()?;
        let id = hot.id?;
        Some(match hot.kind {
            "http_request" => Message::HttpRequest {
                id,
                method: hot.method?,
                path: hot.path?,
                headers: hot.headers?,
            },
            "http_response" => Message::HttpResponse {
                id,
                status: hot.status?,
                headers: hot.headers?,
            },
            "kv_get" => Message::KvGet { id, key: hot.key? },
            "kv_set" => Message::KvSet { id, key: hot.key? },
            "kv_delete" => Message::KvDelete { id, key: hot.key? },
            "kv_value" => Message::KvValue {
                id,
                found: hot.found?,
            },
            "kv_ok" => Message::KvOk { id },
            "kv_deleted" => Message::KvDeleted {
                id,
                existed: hot.existed?,
            },
            "ping" => Message::Ping { id },
            "pong" => Message::Pong { id },
            "cancel" => Message::Cancel { id },
            _ => return None,
        })
    }
}

impl Message {
    /// The message's `type` on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Init { .. } => "init",
            Self::InitOk { .. } => "init_ok",
            Self::HttpRequest { .. } => "http_request",
            Self::HttpResponse { .. } => "http_response",
            Self::Cancel { .. } => "cancel",
            Self::Ping { .. } => "ping",
            Self::Pong { .. } => "pong",
            Self::Shutdown { .. } => "shutdown",
            Self::KvGet { .. } => "kv_get",
            Self::KvValue { .. } => "kv_value",
            Self::KvSet { .. } => "kv_set",
            Self::KvOk { .. } => "kv_ok",
            Self::KvDelete { .. } => "kv_delete",
            Self::KvDeleted { .. } => "kv_deleted",
            Self::KvList { .. } => "kv_list",
            Self::KvKeys { .. } => "kv_keys",
            Self::Error { .. } => "error",
        }
    }
}
