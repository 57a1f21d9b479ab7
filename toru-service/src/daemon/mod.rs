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

use crate::api::{
    AdminKv, ApiError, Backend, Backup, InstanceView, LicenseView, LogPage, LogQuery, PluginView,
    StatusView,
};
use crate::machine::Machine;
use crate::metrics::Metrics;
use crate::plugins::license::{LicenseState, WARN_DAYS, check_install};
use crate::plugins::{Command, Manager, PluginHandle, State};
use crate::reload::{ReloadError, Reloaded, Reloader};
use crate::store::{self, Event, EventKind, StoreResult};

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
    /// The machine the instance id is tied to.
    machine: std::sync::Mutex<Machine>,
    started: Instant,
    /// What `POST /api/reload` asks.
    reloader: Option<Arc<Reloader>>,
}

impl Daemon {
    /// Puts the parts together.
    pub(crate) fn new(
        manager: Arc<Manager>,
        store: store::Handle,
        listeners: Vec<String>,
        machine: Machine,
        reloader: Option<Arc<Reloader>>,
    ) -> Self {
        Self {
            manager,
            store,
            metrics: Metrics::new(),
            listeners,
            machine: std::sync::Mutex::new(machine),
            started: Instant::now(),
            reloader,
        }
    }

    fn machine(&self) -> Machine {
        self.machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Restarts `plugin` so it sees a new licence or instance id, unless it is not to run.
    async fn reapply(&self, plugin: &PluginHandle) -> Result<(), ApiError> {
        match plugin.state() {
            State::Disabled | State::Invalid | State::Stopped => Ok(()),
            _ => plugin
                .command(Command::Restart)
                .await
                .map_err(|e| errors::command(&e)),
        }
    }

    /// What the sysadmin should know now: licences ending within 14 days, a new machine.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let instance = self.instance_id();
        let mut warnings = Vec::new();
        for plugin in self.manager.list() {
            let status = plugin.license_status(&instance);
            if let (LicenseState::Valid, Some(at), Some(day)) =
                (status.state, status.expires_at, status.expires)
            {
                let left = at - chrono::Utc::now();
                if left < chrono::Duration::days(WARN_DAYS) {
                    warnings.push(format!(
                        "the licence of {} ends after {day} (in {} days)",
                        plugin.id,
                        left.num_days()
                    ));
                }
            }
        }
        if self.machine().changed == Some(true) {
            warnings.push(
                "the machine id changed since the instance id was made: a cloned disk? \
                 (toructl instance-id --regenerate makes a new id, which ends its licences)"
                    .to_owned(),
            );
        }
        warnings
    }

    /// Records an event of `plugin`; a store that cannot is said in the journal.
    async fn event(&self, plugin: &str, kind: EventKind, detail: impl Into<String>) {
        if let Err(e) = self
            .store
            .record_event(Event::new(Some(plugin), kind, detail))
            .await
        {
            tracing::warn!(error = %e, "cannot record event");
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
    async fn reload(&self) -> Result<Reloaded, ApiError> {
        let Some(reloader) = &self.reloader else {
            return Err(ApiError::Unavailable {
                message: "this torud cannot reload".into(),
                retry_after: None,
            });
        };
        reloader.reload().await.map_err(|e| match e {
            ReloadError::Config(_) => ApiError::Conflict(e.to_string()),
            ReloadError::Starting => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: Some(Duration::from_secs(1)),
            },
            ReloadError::Stopping => ApiError::Unavailable {
                message: e.to_string(),
                retry_after: None,
            },
        })
    }

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
            warnings: self.warnings(),
        }
    }

    fn plugins(&self) -> Vec<PluginView> {
        self.manager
            .list()
            .iter()
            .map(|p| views::plugin(p, &self.instance_id()))
            .collect()
    }

    fn plugin(&self, id: &str) -> Result<PluginView, ApiError> {
        self.find(id)
            .map(|p| views::plugin(&p, &self.instance_id()))
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
            .by_route_segment(route)
            .ok_or_else(|| ApiError::NotFound(format!("no plugin serves the route /{route}")))?;
        self.forward_to(&plugin, request).await
    }

    fn instance(&self) -> InstanceView {
        InstanceView {
            instance_id: self.instance_id(),
            machine_id_changed: self.machine().changed,
        }
    }

    async fn regenerate_instance(&self) -> Result<InstanceView, ApiError> {
        let hash = self.machine().hash;
        let old = self.instance_id();
        let new = stored(self.store.regenerate_instance_id(hash.as_deref()).await)?;
        {
            let mut machine = self
                .machine
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if machine.hash.is_some() {
                machine.changed = Some(false);
            }
        }
        tracing::warn!(%old, %new, "new instance id: licences made for the old one no longer apply");
        let event = Event::new(
            None,
            EventKind::InstanceRegenerated,
            format!("{old} -> {new}"),
        );
        if let Err(e) = self.store.record_event(event).await {
            tracing::warn!(error = %e, "cannot record event");
        }
        for plugin in self.manager.list() {
            self.reapply(&plugin).await?;
        }
        Ok(self.instance())
    }

    fn license(&self, id: &str) -> Result<LicenseView, ApiError> {
        let plugin = self.find(id)?;
        let status = plugin.license_status(&self.instance_id());
        Ok(views::license(&status, plugin.license().is_some()))
    }

    async fn install_license(&self, id: &str, line: &str) -> Result<LicenseView, ApiError> {
        let plugin = self.find(id)?;
        let Some(metadata) = &plugin.metadata else {
            return Err(ApiError::BadRequest(format!(
                "plugin {id:?} is invalid: no licence can be installed for it"
            )));
        };
        let line = line.trim();
        check_install(metadata, line, &self.instance_id(), chrono::Utc::now())
            .map_err(|e| ApiError::BadRequest(format!("licence refused: {e}")))?;
        stored(self.store.set_license(&plugin.id, line).await)?;
        plugin.set_license(Some(line.to_owned()));
        let view = self.license(id)?;
        let detail = match (&view.licensee, &view.expires) {
            (Some(to), Some(day)) => format!("{}: {to}, until {day}", view.status),
            (Some(to), None) => format!("{}: {to}, no end", view.status),
            _ => view.status.to_owned(),
        };
        tracing::info!(plugin = %plugin.id, %detail, "licence installed");
        self.event(&plugin.id, EventKind::LicenseInstalled, detail)
            .await;
        self.reapply(&plugin).await?;
        self.license(id)
    }

    async fn remove_license(&self, id: &str) -> Result<LicenseView, ApiError> {
        let plugin = self.find(id)?;
        let existed = stored(self.store.remove_license(&plugin.id).await)?;
        if !existed {
            return Err(ApiError::NotFound(format!(
                "plugin {id:?} has no licence installed"
            )));
        }
        plugin.set_license(None);
        tracing::info!(plugin = %plugin.id, "licence removed");
        self.event(
            &plugin.id,
            EventKind::LicenseRemoved,
            "removed by the administrator",
        )
        .await;
        self.reapply(&plugin).await?;
        self.license(id)
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
        self.metrics
            .render(&self.plugins(), self.store.commit_counts())
    }

    fn observe(&self, route: Option<&str>, status: u16, elapsed: Duration) {
        // Labelled with the plugin's id; a route nobody serves stays out (clients cannot
        // mint labels).
        let plugin = route.and_then(|route| self.manager.by_route_segment(route));
        match (route, plugin) {
            (Some(_), None) => {}
            (_, plugin) => {
                self.metrics.observe(
                    plugin.as_ref().map(|p| (p.id.as_str(), &p.meters)),
                    status,
                    elapsed,
                );
            }
        }
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
