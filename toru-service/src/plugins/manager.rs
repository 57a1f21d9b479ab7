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
                    fingerprint: p.fingerprint,
                    metadata: Some(m.clone()),
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

    /// The valid plugin whose route is `/segment` (the first path segment of a gateway URL),
    /// without making the string.
    pub(crate) fn by_route_segment(&self, segment: &str) -> Option<Arc<PluginHandle>> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|p| {
                p.metadata
                    .as_ref()
                    .is_some_and(|m| m.route.strip_prefix('/') == Some(segment))
            })
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

    /// Puts the limits of the settings in force on every running plugin's cgroup, live;
    /// what changed, as `spin: cpu_max 20% -> 50%`. A limit the kernel refuses is
    /// logged with the plugin and key, and the plugin keeps its old ones.
    pub(crate) async fn apply_limits(&self) -> Vec<String> {
        let Some(cgroups) = self.ctx.cgroups.clone() else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for plugin in self.list() {
            let Some(group) = plugin.group() else {
                continue;
            };
            let (cgroups, id, limits) = (
                cgroups.clone(),
                plugin.id.clone(),
                self.ctx.limits(&plugin.id),
            );
            let updated = tokio::task::spawn_blocking(move || cgroups.update(&group, &id, &limits))
                .await
                .map_err(std::io::Error::other)
                .and_then(|updated| updated);
            match updated {
                Ok(changes) if changes.is_empty() => {}
                Ok(changes) => {
                    let changes = changes.join(", ");
                    tracing::info!(plugin = %plugin.id, %changes, "limits changed on the running plugin");
                    all.push(format!("{}: {changes}", plugin.id));
                }
                Err(e) => {
                    warn!(plugin = %plugin.id, error = %e, "limits not changed");
                }
            }
        }
        all
    }

    /// Stops every plugin (concurrently) and waits for their supervisors.
    pub(crate) async fn shutdown(&self, timeout: Duration) {
        self.stop(&self.list(), timeout).await;
    }
}
