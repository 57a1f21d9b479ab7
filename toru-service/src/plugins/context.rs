//! What every supervisor needs: the settings in force, the store, the
//! instance id and torud's cgroup.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

use crate::cgroup::Cgroups;
use crate::config::{ResourceLimits, Settings};
use crate::store::{self, Event, EventKind, PluginRecord};

/// Shared by the manager and every supervisor.
#[derive(Debug)]
pub(crate) struct Context {
    /// The settings in force (see [`crate::config::LiveSettings`]).
    settings: watch::Receiver<Arc<Settings>>,
    /// The database.
    pub(crate) store: store::Handle,
    /// torud's cgroup, when it has a writable one; else plugins run in
    /// process groups only.
    pub(crate) cgroups: Option<Arc<Cgroups>>,
}

impl Context {
    /// A context reading the settings from `settings`.
    pub(crate) fn new(
        settings: watch::Receiver<Arc<Settings>>,
        store: store::Handle,
        cgroups: Option<Arc<Cgroups>>,
    ) -> Self {
        Self {
            settings,
            store,
            cgroups,
        }
    }

    /// This installation's instance id, as it is now (the administrator may make a new one).
    pub(crate) fn instance_id(&self) -> String {
        self.store.instance_id().to_string()
    }

    /// The settings in force.
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    /// The persisted record of `plugin` (enabled, not failed, when none or unreadable).
    pub(crate) async fn record(&self, plugin: &str) -> PluginRecord {
        match self.store.plugin_record(plugin).await {
            Ok(record) => record.unwrap_or_default(),
            Err(e) => {
                warn!(plugin, error = %e, "cannot read the plugin's state; assuming enabled");
                PluginRecord::default()
            }
        }
    }

    /// Persists the administrator's choice (and `failed`), and records why.
    pub(crate) async fn persist(
        &self,
        plugin: &str,
        enabled: bool,
        failed: Option<String>,
        kind: EventKind,
        detail: &str,
    ) {
        let record = PluginRecord { enabled, failed };
        let event = Event::new(Some(plugin), kind, detail);
        if let Err(e) = self.store.set_plugin_record(plugin, record, event).await {
            warn!(plugin, error = %e, "cannot persist the plugin's state");
        }
    }

    /// Records an event about `plugin`.
    pub(crate) async fn event(&self, plugin: &str, kind: EventKind, detail: impl Into<String>) {
        let event = Event::new(Some(plugin), kind, detail);
        if let Err(e) = self.store.record_event(event).await {
            warn!(plugin, error = %e, "cannot record event");
        }
    }

    /// The plugin's limits from `[plugins.<id>]`.
    pub(crate) fn limits(&self, plugin: &str) -> ResourceLimits {
        self.settings()
            .plugins
            .get(plugin)
            .map(|p| p.limits)
            .unwrap_or_default()
    }

    /// The plugin's settings from `[plugins.<id>.config]`.
    pub(crate) fn plugin_config(&self, plugin: &str) -> serde_json::Map<String, serde_json::Value> {
        self.settings()
            .plugins
            .get(plugin)
            .map(|p| p.config.clone())
            .unwrap_or_default()
    }
}
