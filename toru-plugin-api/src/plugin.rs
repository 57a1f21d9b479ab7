//! The trait a plugin implements.

use std::future::Future;

use crate::error::{PluginError, PluginResult};
use crate::protocol::PluginMetadata;
use crate::types::{HttpRequest, HttpResponse, KvOp, PluginContext};

/// A Toru plugin. Implement it and hand a value to [`crate::run`].
///
/// Handlers are plain `async fn`s in the impl. `handle_http` runs on a task
/// of its own for every request, so many run at once: keep shared state
/// behind `&self` (use atomics or locks for what changes).
pub trait ToruPlugin: Send + Sync + 'static {
    /// Who the plugin is; printed by `PLUGIN --metadata`.
    fn metadata() -> PluginMetadata
    where
        Self: Sized;

    /// Called once, before the first request, with the host's context.
    /// An error stops the plugin (the host shows it as failed, with the message).
    fn init(&mut self, ctx: PluginContext) -> impl Future<Output = PluginResult<()>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Answers one HTTP request. `Err(PluginError::http(404, "..."))` answers
    /// with that status; any other error, or a panic, answers 500.
    fn handle_http(
        &self,
        req: HttpRequest,
    ) -> impl Future<Output = PluginResult<HttpResponse>> + Send;

    /// Kept for source compatibility with SDK 0.1; Toru hosts never call it.
    /// Plugins reach their storage through [`PluginContext::kv`] instead.
    fn handle_kv(&mut self, op: KvOp) -> impl Future<Output = PluginResult<Option<String>>> + Send {
        let _ = op;
        async {
            Err(PluginError::other(
                "handle_kv is not used in protocol 2; use PluginContext::kv",
            ))
        }
    }
}
