//! The running daemon as the HTTP gateway sees it: [`Backend`] over the
//! plugin manager, the store and the metrics. This is the one adapter from
//! torud's domain to its API: domain errors become [`ApiError`]s in
//! `errors`, domain state becomes views in `views`.

/// A plugin's front end from disk, where the plugin serves none.
mod bundle;
/// Domain errors to API errors, and the log line of each failed forward.
mod errors;
/// Plugin views.
mod views;

use std::sync::Arc;
use std::time::{Duration, Instant};

use toru_plugin_api::host::validate_key;
use toru_plugin_api::protocol::v2::Limits;
use toru_plugin_api::{HttpRequest, HttpResponse};

use crate::api::{AdminKv, ApiError, Backend, Backup, LogPage, LogQuery, PluginView, StatusView};
use crate::metrics::Metrics;
use crate::plugins::{Command, Manager, PluginHandle};
use crate::store::{self, StoreResult};

/// Most keys the admin KV endpoint lists at once.
const ADMIN_LIST_LIMIT: usize = 10_000;

/// torud, seen from its API.
#[derive(Debug)]
pub(crate) struct Daemon {
    /// The plugins.
    pub(crate) manager: Arc<Manager>,
    /// The database.
    pub(crate) store: store::Handle,
    /// The metrics.
    pub(crate) metrics: Metrics,
    /// What torud serves on, for `/api/status`.
    pub(crate) listeners: Vec<String>,
    started: Instant,
}

impl Daemon {
    /// Puts the parts together.
    pub(crate) fn new(manager: Arc<Manager>, store: store::Handle, listeners: Vec<String>) -> Self {
        Self {
            manager,
            store,
            metrics: Metrics::new(),
            listeners,
            started: Instant::now(),
        }
    }

    fn find(&self, id: &str) -> Result<Arc<PluginHandle>, ApiError> {
        self.manager
            .find(id)
            .ok_or_else(|| ApiError::NotFound(format!("no plugin {id:?}")))
    }

    fn request_timeout(&self) -> Duration {
        self.manager.context().settings().request_timeout
    }

    async fn command(&self, id: &str, command: Command) -> Result<(), ApiError> {
        self.find(id)?
            .command(command)
            .await
            .map_err(|e| errors::command(&e))
    }

    /// Forwards `request` to `plugin`, saying what failed.
    async fn forward_to(
        &self,
        plugin: &PluginHandle,
        request: HttpRequest,
    ) -> Result<HttpResponse, ApiError> {
        let path = request.path.clone();
        plugin
            .forward(request, self.request_timeout())
            .await
            .map_err(|e| errors::forward(&plugin.id, &path, &e))
    }
}

/// A store result as the API answers it.
fn stored<T>(result: StoreResult<T>) -> Result<T, ApiError> {
    result.map_err(|e| errors::store(&e))
}

impl Backend for Daemon {
    fn instance_id(&self) -> String {
        self.store.instance_id().to_string()
    }

    fn status(&self) -> StatusView {
        let mut plugins = std::collections::BTreeMap::new();
        for plugin in self.manager.list() {
            *plugins
                .entry(plugin.state().as_str().to_owned())
                .or_insert(0) += 1;
        }
        StatusView {
            instance_id: self.instance_id(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: self.started.elapsed().as_secs(),
            listeners: self.listeners.clone(),
            plugins,
        }
    }

    fn plugins(&self) -> Vec<PluginView> {
        self.manager
            .list()
            .iter()
            .map(|p| views::plugin(p))
            .collect()
    }

    fn plugin(&self, id: &str) -> Result<PluginView, ApiError> {
        self.find(id).map(|p| views::plugin(&p))
    }

    async fn enable(&self, id: &str) -> Result<(), ApiError> {
        self.command(id, Command::Enable).await
    }

    async fn disable(&self, id: &str) -> Result<(), ApiError> {
        self.command(id, Command::Disable).await
    }

    async fn restart(&self, id: &str) -> Result<(), ApiError> {
        self.command(id, Command::Restart).await
    }

    fn logs(&self, id: &str, query: &LogQuery) -> Result<LogPage, ApiError> {
        Ok(self.find(id)?.logs.page(query))
    }

    async fn events(
        &self,
        plugin: Option<&str>,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        let events = stored(self.store.events(plugin, limit).await)?;
        events
            .iter()
            .map(|e| serde_json::to_value(e).map_err(|e| ApiError::Internal(e.to_string())))
            .collect()
    }

    async fn kv(&self, id: &str, op: AdminKv) -> Result<serde_json::Value, ApiError> {
        let plugin = self.find(id)?;
        if plugin.metadata.is_none() {
            return Err(ApiError::NotFound(format!(
                "plugin {id:?} is invalid and has no storage"
            )));
        }
        let limits = Limits::default();
        let check =
            |key: &str| validate_key(key, &limits).map_err(|e| ApiError::BadRequest(e.message));
        let id = plugin.id.clone();
        match op {
            AdminKv::Get(key) => {
                check(&key)?;
                let value = stored(self.store.kv_get(&id, &key).await)?;
                Ok(value_json(value))
            }
            AdminKv::Set(key, value) => {
                check(&key)?;
                if value.len() > limits.max_value_len as usize {
                    return Err(ApiError::BadRequest(format!(
                        "value of {} bytes exceeds the limit of {} bytes",
                        value.len(),
                        limits.max_value_len
                    )));
                }
                stored(
                    self.store
                        .kv_set(&id, &key, value.clone().into_bytes())
                        .await,
                )?;
                Ok(serde_json::json!({ "value": value }))
            }
            AdminKv::Delete(key) => {
                check(&key)?;
                let existed = stored(self.store.kv_delete(&id, &key).await)?;
                Ok(serde_json::json!({ "value": null, "existed": existed }))
            }
            AdminKv::List(prefix) => {
                let (keys, more) = stored(
                    self.store
                        .kv_list(&id, &prefix, None, ADMIN_LIST_LIMIT)
                        .await,
                )?;
                Ok(serde_json::json!({ "keys": keys, "truncated": more.is_some() }))
            }
        }
    }

    async fn forward(&self, route: &str, request: HttpRequest) -> Result<HttpResponse, ApiError> {
        let plugin = self
            .manager
            .by_route(&format!("/{route}"))
            .ok_or_else(|| ApiError::NotFound(format!("no plugin serves the route /{route}")))?;
        self.forward_to(&plugin, request).await
    }

    async fn backup(&self) -> Result<Backup, ApiError> {
        // Beside the store: the same file system, which torud may write.
        let dir = self.manager.context().settings().state_dir.clone();
        let (file, counts) = stored(self.store.backup(&dir).await)?;
        tracing::info!(
            keys = counts.keys,
            events = counts.events,
            "store backup taken"
        );
        Ok(Backup { file, counts })
    }

    async fn bundle(&self, id: &str) -> Result<HttpResponse, ApiError> {
        let plugin = self.find(id)?;
        // The plugin first; where it has none, the file beside it, as the first host read it.
        let asked = plugin
            .forward(
                HttpRequest::new("GET", "/bundle.js"),
                self.request_timeout(),
            )
            .await;
        if let Ok(answer) = &asked
            && (200..300).contains(&answer.status)
        {
            return asked.map_err(|e| errors::forward(&plugin.id, "/bundle.js", &e));
        }
        if let Some(file) = bundle::from_disk(&plugin).await? {
            return Ok(file);
        }
        asked.map_err(|e| errors::forward(&plugin.id, "/bundle.js", &e))
    }

    fn metrics(&self) -> String {
        self.metrics.render(&self.plugins())
    }

    fn observe(&self, plugin: Option<&str>, status: u16, elapsed: Duration) {
        self.metrics.observe(plugin, status, elapsed);
    }
}

/// `{"value": text}`; a value that is not UTF-8 comes as hex with `"encoding": "hex"`.
fn value_json(value: Option<Vec<u8>>) -> serde_json::Value {
    match value {
        None => serde_json::json!({ "value": null }),
        Some(bytes) => match String::from_utf8(bytes) {
            Ok(text) => serde_json::json!({ "value": text }),
            Err(e) => {
                let hex: String = e.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
                serde_json::json!({ "value": hex, "encoding": "hex" })
            }
        },
    }
}
