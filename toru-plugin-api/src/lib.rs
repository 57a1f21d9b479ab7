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
//! (see [`codec`]); protocol 1, for plugins of the first host, is one JSON
//! document per length-prefixed frame. `docs/PROTOCOL.md` specifies both.
//!
//! # Layout
//!
//! * [`protocol`] — message types: [`protocol::v1`] (legacy shapes, kept byte
//!   for byte), [`protocol::v2`], and [`PluginMetadata`].
//! * [`codec`] — framing on `tokio_util`'s `LengthDelimitedCodec`, [`codec::MAX_FRAME_LEN`].
//! * `runtime` — [`run`] and [`PluginServer`]: the plugin's side of a connection.
//! * [`host`] — the host's side of a protocol-2 connection (torud, tests, benches).
//! * `kv` — [`PluginKvStore`], the plugin's storage calls to the host.
//! * [`logging`] — JSON log lines on stderr.
//! * [`error`] — [`PluginError`].

#![forbid(unsafe_code)]

/// Framing shared by both protocol versions.
pub mod codec;
/// The SDK's error type.
pub mod error;
/// The host's end of a protocol-2 connection.
pub mod host;
/// The plugin's key-value storage client.
mod kv;
/// Writer task and pending-request table shared by both ends.
mod link;
/// JSON log lines on stderr.
pub mod logging;
/// The `ToruPlugin` trait.
mod plugin;
/// Message types of both protocol versions, and plugin metadata.
pub mod protocol;
/// Runs a plugin: arguments, socket, connections, shutdown.
mod runtime;
/// Requests, responses, config and context handed to plugins.
mod types;

pub use error::{PluginError, PluginResult};
pub use kv::{KV_TIMEOUT, KvPage, PluginKvStore};
pub use plugin::ToruPlugin;
pub use protocol::v1::{LifecycleInitPayload, Message, MessagePayload};
pub use protocol::{PROTOCOL_VERSION, PluginMetadata, PluginProtocol};
pub use runtime::{PluginServer, SIGNAL_SHUTDOWN_DEADLINE, SOCKET_ENV, run};
pub use types::{HttpRequest, HttpResponse, KvOp, PluginConfig, PluginContext};

/// Re-exported for header names and status codes.
pub use http;
/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// Re-exported so plugins log through the same `tracing` the SDK sets up.
pub use tracing;
