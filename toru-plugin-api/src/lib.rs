//! # toru-plugin-api
//!
//! The SDK for Toru plugins: programs that `torud` starts, talks to over a
//! Unix socket, and forwards HTTP requests to.
//!
//! A plugin implements [`ToruPlugin`] and calls [`run`] from `main`; `run`
//! answers `--metadata`, listens on `$TORU_PLUGIN_SOCKET`, speaks protocol 2
//! with the host (every request on a task of its own), logs JSON lines to
//! stderr, and shuts down gracefully on the host's `shutdown` or SIGTERM.
//!
//! ```no_run
//! use toru_plugin_api::{HttpRequest, HttpResponse, PluginMetadata, PluginResult, ToruPlugin};
//!
//! struct Hello;
//!
//! impl ToruPlugin for Hello {
//!     fn metadata() -> PluginMetadata {
//!         PluginMetadata::new("hello", "Hello", "1.0.0", "/hello")
//!     }
//!
//!     async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
//!         Ok(HttpResponse::text(format!("you asked for {}", req.path)))
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     toru_plugin_api::run(Hello)
//! }
//! ```
//!
//! # Wire
//!
//! ```text
//!  torud                                   plugin (listens on $TORU_PLUGIN_SOCKET)
//!    | ---- connect ------------------------> |
//!    | ---- init {id, protocol: 2, ...} ----> |
//!    | <--- init_ok {id} -------------------- |
//!    | ---- http_request {id: 1} + body ----> |   many in flight,
//!    | ---- http_request {id: 2} + body ----> |   answered in any order
//!    | <--- kv_get {id: 1, key} ------------- |   plugin -> host calls,
//!    | ---- kv_value {id: 1} + value -------> |   ids of the plugin's own
//!    | <--- http_response {id: 2} + body ---- |
//!    | <--- http_response {id: 1} + body ---- |
//!    | ---- shutdown {deadline_ms} ---------> |   drain, then exit 0
//! ```
//!
//! Every frame is `u32 big-endian length | u32 header length | JSON header | body`
//! (the `codec` module, feature `host`); protocol 1, for plugins of the first host, is one JSON
//! document per length-prefixed frame. `docs/PROTOCOL.md` specifies both.
//!
//! # Layout
//!
//! What a plugin author uses is at the crate root: [`ToruPlugin`], [`run`],
//! [`PluginMetadata`], [`PluginContext`] with [`PluginKvStore`] and
//! [`PluginConfig`], [`HttpRequest`], [`HttpResponse`], [`PluginError`].
//!
//! * [`compat`] — protocol 1, for code written against SDK 0.1 and for
//!   plugins of the first host: its message types and [`PluginProtocol`].
//! * [`logging`] — JSON log lines on stderr (what [`run`] sets up).
//! * `host` (feature `host`) — the host's side of a protocol-2 connection:
//!   torud, and a plugin's own tests (`host::MemoryKv` as their storage).
//! * `conformance` (feature `host`) — replays the scenarios of `conformance/`
//!   (the exact frames of both sides) against a plugin.
//! * `protocol`, `codec` (feature `host`) — the wire: message types of both
//!   versions, and framing on `tokio_util`'s `LengthDelimitedCodec`.
//! * `runtime`, `kv`, `link`, `types`, `plugin` — inside: the plugin's side
//!   of a connection, its storage calls, the writer task both ends share.

#![forbid(unsafe_code)]

/// Framing shared by both protocol versions.
#[cfg(feature = "host")]
pub mod codec;
#[cfg(not(feature = "host"))]
#[allow(unreachable_pub, dead_code)]
mod codec;
/// Protocol 1, as SDK 0.1 and the first host spoke it.
pub mod compat;
/// Replaying the conformance scenarios, as the host.
#[cfg(feature = "host")]
pub mod conformance;
/// The SDK's error type.
mod error;
/// The host's end of a protocol-2 connection.
#[cfg(feature = "host")]
pub mod host;
/// The plugin's key-value storage client.
mod kv;
/// Licences: verifying (and, with the feature `vendor`, signing) them.
pub mod license;
/// Writer task and pending-request table shared by both ends.
mod link;
/// JSON log lines on stderr.
pub mod logging;
/// The `ToruPlugin` trait.
mod plugin;
/// Message types of both protocol versions, and plugin metadata.
#[cfg(feature = "host")]
pub mod protocol;
#[cfg(not(feature = "host"))]
#[allow(unreachable_pub, dead_code)]
mod protocol;
/// Runs a plugin: arguments, socket, connections, shutdown.
mod runtime;
/// Requests, responses, config and context handed to plugins.
mod types;

pub use compat::{LifecycleInitPayload, MessagePayload, PluginProtocol};
pub use error::{PluginError, PluginResult};
pub use kv::{KV_TIMEOUT, KvPage, PluginKvStore};
pub use license::{License, LicenseError};
pub use plugin::ToruPlugin;
pub use protocol::LicenseSpec;
pub use protocol::v2::{ErrorCode, Limits};
pub use protocol::{PROTOCOL_VERSION, PluginMetadata};
pub use runtime::{
    CHECK_ENV, EXIT_NO_LICENSE, PluginServer, SIGNAL_SHUTDOWN_DEADLINE, SOCKET_ENV, run,
};
pub use types::{ContextCell, HttpRequest, HttpResponse, KvOp, PluginConfig, PluginContext};

/// The protocol-1 message of SDK 0.1, kept so that its code still builds.
#[deprecated(
    since = "0.2.0",
    note = "this is protocol 1's message: name it `toru_plugin_api::compat::Message`"
)]
pub type Message = compat::Message;

/// Re-exported for header names and status codes.
pub use http;
/// The README's examples, compiled as doctests so they stay true (the
/// testing example needs the `host` feature).
#[doc = include_str!("../README.md")]
#[cfg(all(doctest, feature = "host"))]
pub struct ReadmeDoctests;

/// Re-exported so plugins log through the same `tracing` the SDK sets up.
pub use tracing;
