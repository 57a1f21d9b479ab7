//! Every discovered plugin, and its supervisor: loading a scan, finding a
//! plugin by id or route, stopping them.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use super::command::Command;
use super::context::Context;
use super::discovery::{self, Discovered};
use super::handle::PluginHandle;
use super::supervisor::supervise;

/// Every discovered plugin and its supervisor.
#[derive(Debug)]
pub(crate) struct Manager {
    pub(super) ctx: Arc<Context>,
    pub(super) plugins: RwLock<Vec<Arc<PluginHandle>>>,
    tasks: std::sync::Mutex<Vec<(Arc<PluginHandle>, JoinHandle<()>)>>,
}

impl Manager {
    /// An empty manager.
    pub(crate) fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            plugins: RwLock::new(Vec::new()),
            tasks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The shared context.
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Takes over `found`: valid plugins get a supervisor (which starts them
    /// unless disabled or failed), invalid ones are only listed.
    pub(crate) fn load(&self, found: Vec<Discovered>) {
        let handles: Vec<_> = found.into_iter().map(|plugin| self.adopt(plugin)).collect();
        self.plugins
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(handles);
    }

    /// A handle for `plugin`, with its supervisor running when it is valid.
    pub(super) fn adopt(&self, plugin: Discovered) -> Arc<PluginHandle> {
        let key = plugin.key();
        match plugin.metadata {
            Ok(metadata) => {
                let (tx, rx) = mpsc::channel(16);
                let socket = self
                    .ctx
                    .settings()
                    .runtime_dir
                    .join("plugins")
                    .join(&metadata.id)
                    .join(format!("{}.sock", metadata.id));
                let handle = Arc::new(PluginHandle::valid(
                    metadata,
                    plugin.path,
                    plugin.fingerprint,
                    socket,
                    tx,
                ));
                let task = tokio::spawn(supervise(handle.clone(), self.ctx.clone(), rx));
                self.tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((handle.clone(), task));
                handle
            }
            Err(reason) => {
                let id = key;
                warn!(plugin = %id, path = %plugin.path.display(), %reason, "invalid plugin listed, not started");
                Arc::new(PluginHandle::invalid(
                    id,
                    plugin.path,
                    plugin.fingerprint,
                    reason,
                ))
            }
        }
    }

    /// Resolves when every plugin has started, failed, or is not to run.
    pub(crate) async fn settled(&self) {
        for plugin in self.list() {
            plugin.settled().await;
        }
    }

    /// Every plugin, in discovery order.
    pub(crate) fn list(&self) -> Vec<Arc<PluginHandle>> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The ids and routes the valid plugins hold, for a rescan.
    pub(crate) fn held(&self) -> Vec<discovery::Held> {
        self.list()
            .iter()
            .filter_map(|p| {
                p.metadata.as_ref().map(|m| discovery::Held {
                    id: m.id.clone(),
                    path: p.path.clone(),
                })
            })
            .collect()
    }

    /// The plugin with `id` (a valid one first).
    pub(crate) fn find(&self, id: &str) -> Option<Arc<PluginHandle>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins
            .iter()
            .find(|p| p.id == id && p.metadata.is_some())
            .or_else(|| plugins.iter().find(|p| p.id == id))
            .cloned()
    }

    /// The valid plugin serving `route` (`/name`).
    pub(crate) fn by_route(&self, route: &str) -> Option<Arc<PluginHandle>> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|p| p.metadata.as_ref().is_some_and(|m| m.route == route))
            .cloned()
    }

    /// Stops `plugins` (concurrently) and waits for their supervisors.
    pub(super) async fn stop(&self, plugins: &[Arc<PluginHandle>], timeout: Duration) {
        let stops = plugins.iter().map(|p| p.command(Command::Stop));
        futures_util::future::join_all(stops).await;
        let tasks: Vec<JoinHandle<()>> = {
            let mut all = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            let (stopped, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut *all)
                .into_iter()
                .partition(|(handle, _)| plugins.iter().any(|p| Arc::ptr_eq(p, handle)));
            *all = kept;
            stopped.into_iter().map(|(_, task)| task).collect()
        };
        if tokio::time::timeout(timeout, futures_util::future::join_all(tasks))
            .await
            .is_err()
        {
            warn!("some plugins did not stop in time");
            return;
        }
        // Gone: so are their folders under runtime_dir (made again if one starts anew).
        for plugin in plugins {
            super::process::remove_run_dir(plugin);
        }
    }

    /// Stops every plugin (concurrently) and waits for their supervisors.
    pub(crate) async fn shutdown(&self, timeout: Duration) {
        self.stop(&self.list(), timeout).await;
    }
}
