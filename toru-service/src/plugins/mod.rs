//! The plugins torud runs: discovery, one supervisor per plugin, the
//! connection to each, their logs, and their storage.

/// What the administrator asks of a plugin.
pub mod command;
/// Finding plugin executables and reading their metadata.
pub mod discovery;
/// What torud knows of one plugin, shared with the API.
pub mod handle;
/// A plugin's namespaces: torud's state and other plugins' sockets hidden.
pub mod isolation;
/// Plugin processes an earlier torud left running.
pub mod leftovers;
/// Forwarding requests in protocol 1 or 2.
pub mod link;
/// Plugin output: ring buffer and journal events.
pub mod logs;
/// Starting and signalling plugin processes.
pub mod process;
/// Applying a rescan of the plugin folders (SIGHUP).
pub mod reload;
/// Forking children that die with torud.
pub mod spawner;
/// Keeping one plugin running.
pub mod supervisor;

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use toru_plugin_api::host::{KvBackend, KvFailure, KvReply, KvRequest};
use toru_plugin_api::protocol::v2::ErrorCode;
use tracing::warn;

use crate::cgroup::Cgroups;
use crate::config::{ResourceLimits, Settings};
use crate::store::{Event, EventKind, PluginRecord, Store};
use command::Command;
use discovery::Discovered;
use handle::PluginHandle;
use supervisor::supervise;

/// What every supervisor needs.
#[derive(Debug)]
pub struct Context {
    /// The configuration; replaced on reload.
    settings: RwLock<Arc<Settings>>,
    /// The database.
    pub store: Arc<Store>,
    /// Given to every plugin.
    pub instance_id: String,
    /// torud's cgroup, when it has a writable one; else plugins run in
    /// process groups only.
    pub cgroups: Option<Arc<Cgroups>>,
}

impl Context {
    /// A context for `settings`.
    pub fn new(
        settings: Arc<Settings>,
        store: Arc<Store>,
        instance_id: String,
        cgroups: Option<Arc<Cgroups>>,
    ) -> Self {
        Self {
            settings: RwLock::new(settings),
            store,
            instance_id,
            cgroups,
        }
    }

    /// The configuration in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts a re-read configuration in force.
    pub fn set_settings(&self, settings: Arc<Settings>) {
        *self
            .settings
            .write()
            .unwrap_or_else(PoisonError::into_inner) = settings;
    }

    /// The persisted record of `plugin` (enabled, not failed, when none).
    pub async fn record(&self, plugin: &str) -> PluginRecord {
        let (store, id) = (self.store.clone(), plugin.to_owned());
        match tokio::task::spawn_blocking(move || store.plugin_record(&id)).await {
            Ok(Ok(record)) => record.unwrap_or_default(),
            Ok(Err(e)) => {
                warn!(plugin, error = %e, "cannot read the plugin's state; assuming enabled");
                PluginRecord::default()
            }
            Err(e) => {
                warn!(plugin, error = %e, "cannot read the plugin's state; assuming enabled");
                PluginRecord::default()
            }
        }
    }

    /// Persists the administrator's choice (and `failed`), and records why.
    pub async fn persist(
        &self,
        plugin: &str,
        enabled: bool,
        failed: Option<String>,
        kind: EventKind,
        detail: &str,
    ) {
        let (store, id) = (self.store.clone(), plugin.to_owned());
        let record = PluginRecord { enabled, failed };
        let event = Event::new(Some(plugin), kind, detail);
        let result = tokio::task::spawn_blocking(move || {
            store.set_plugin_record(&id, &record)?;
            store.record_event(&event)
        })
        .await;
        if !matches!(result, Ok(Ok(_))) {
            warn!(plugin, ?result, "cannot persist the plugin's state");
        }
    }

    /// Records an event.
    pub async fn event(&self, plugin: &str, kind: EventKind, detail: impl Into<String>) {
        let store = self.store.clone();
        let event = Event::new(Some(plugin), kind, detail);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || store.record_event(&event)).await {
            warn!(plugin, error = %e, "cannot record event");
        }
    }

    /// The plugin's limits from `[plugins.<id>]`.
    pub fn limits(&self, plugin: &str) -> ResourceLimits {
        self.settings()
            .plugins
            .get(plugin)
            .map(|p| p.limits)
            .unwrap_or_default()
    }

    /// The plugin's settings from `[plugins.<id>.config]`.
    pub fn plugin_config(&self, plugin: &str) -> serde_json::Map<String, serde_json::Value> {
        self.settings()
            .plugins
            .get(plugin)
            .map(|p| p.config.clone())
            .unwrap_or_default()
    }
}

/// A plugin's KV calls, served from the store under that plugin's id only.
#[derive(Debug)]
pub struct StoreKv {
    store: Arc<Store>,
    plugin: String,
}

impl StoreKv {
    /// KV for `plugin`.
    pub fn new(store: Arc<Store>, plugin: &str) -> Self {
        Self {
            store,
            plugin: plugin.to_owned(),
        }
    }
}

impl KvBackend for StoreKv {
    async fn call(&self, request: KvRequest) -> Result<KvReply, KvFailure> {
        let (store, plugin) = (self.store.clone(), self.plugin.clone());
        let result = tokio::task::spawn_blocking(move || match request {
            KvRequest::Get { key } => store
                .kv_get(&plugin, &key)
                .map(|v| KvReply::Value(v.map(Bytes::from))),
            KvRequest::Set { key, value } => store
                .kv_set(&plugin, &key, &value)
                .map(|()| KvReply::Stored),
            KvRequest::Delete { key } => store.kv_delete(&plugin, &key).map(KvReply::Deleted),
            KvRequest::List {
                prefix,
                after,
                limit,
            } => store
                .kv_list(&plugin, &prefix, after.as_deref(), limit as usize)
                .map(|(keys, next)| KvReply::Keys { keys, next }),
        })
        .await;
        match result {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                // A damaged value was logged once, at ERROR, by the store.
                if !matches!(e, crate::store::StoreError::Damaged { .. }) {
                    warn!(plugin = %self.plugin, error = %e, "KV operation failed");
                }
                Err(KvFailure::new(ErrorCode::Storage, e.to_string()))
            }
            Err(e) => Err(KvFailure::new(ErrorCode::Internal, e.to_string())),
        }
    }
}

/// Every discovered plugin and its supervisor.
#[derive(Debug)]
pub struct Manager {
    ctx: Arc<Context>,
    plugins: RwLock<Vec<Arc<PluginHandle>>>,
    tasks: std::sync::Mutex<Vec<(Arc<PluginHandle>, JoinHandle<()>)>>,
}

impl Manager {
    /// An empty manager.
    pub fn new(ctx: Arc<Context>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            plugins: RwLock::new(Vec::new()),
            tasks: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The shared context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Takes over `found`: valid plugins get a supervisor (which starts them
    /// unless disabled or failed), invalid ones are only listed.
    pub fn load(&self, found: Vec<Discovered>) {
        let handles: Vec<_> = found.into_iter().map(|plugin| self.adopt(plugin)).collect();
        self.plugins
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(handles);
    }

    /// A handle for `plugin`, with its supervisor running when it is valid.
    fn adopt(&self, plugin: Discovered) -> Arc<PluginHandle> {
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
    pub async fn settled(&self) {
        for plugin in self.list() {
            plugin.settled().await;
        }
    }

    /// Every plugin, in discovery order.
    pub fn list(&self) -> Vec<Arc<PluginHandle>> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The ids and routes the valid plugins hold, for a rescan.
    pub fn held(&self) -> Vec<discovery::Held> {
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
    pub fn find(&self, id: &str) -> Option<Arc<PluginHandle>> {
        let plugins = self.plugins.read().unwrap_or_else(PoisonError::into_inner);
        plugins
            .iter()
            .find(|p| p.id == id && p.metadata.is_some())
            .or_else(|| plugins.iter().find(|p| p.id == id))
            .cloned()
    }

    /// The valid plugin serving `route` (`/name`).
    pub fn by_route(&self, route: &str) -> Option<Arc<PluginHandle>> {
        self.plugins
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|p| p.metadata.as_ref().is_some_and(|m| m.route == route))
            .cloned()
    }

    /// Stops `plugins` (concurrently) and waits for their supervisors.
    async fn stop(&self, plugins: &[Arc<PluginHandle>], timeout: Duration) {
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
        }
    }

    /// Stops every plugin (concurrently) and waits for their supervisors.
    pub async fn shutdown(&self, timeout: Duration) {
        self.stop(&self.list(), timeout).await;
    }
}
