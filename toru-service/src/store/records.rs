//! The plugin records and events the store keeps, and how they are encoded:
//! JSON, sealed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::seal::unseal;
use super::{StoreError, StoreResult};

/// Persisted state of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// Whether the plugin should run; plugins start out enabled.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Why the plugin was given up on, if it was.
    #[serde(default)]
    pub failed: Option<String>,
}

fn default_enabled() -> bool {
    true
}

impl Default for PluginRecord {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            failed: None,
        }
    }
}

/// What happened, in an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A plugin process was started.
    Started,
    /// A plugin process exited (code or signal in the detail).
    Exited,
    /// A plugin process was restarted.
    Restarted,
    /// A plugin was given up on.
    Failed,
    /// A plugin was enabled.
    Enabled,
    /// A plugin was disabled.
    Disabled,
    /// A plugin stopped responding.
    Hung,
    /// A new plugin was found.
    Discovered,
    /// A plugin disappeared.
    Removed,
    /// A plugin's file or metadata changed; it was restarted from the new one.
    Replaced,
    /// A plugin's manifest or files are invalid.
    Invalid,
    /// torud started.
    DaemonStarted,
    /// torud stopped.
    DaemonStopped,
    /// The administrator made a new instance id.
    InstanceRegenerated,
    /// A licence was installed for a plugin.
    LicenseInstalled,
    /// A plugin's licence was removed.
    LicenseRemoved,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When it happened.
    pub timestamp: DateTime<Utc>,
    /// The plugin concerned, or `None` for the daemon itself.
    pub plugin: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// Human-readable details.
    pub detail: String,
}

impl Event {
    /// An event that happens now.
    pub fn new(plugin: Option<&str>, kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            timestamp: Utc::now(),
            plugin: plugin.map(str::to_owned),
            kind,
            detail: detail.into(),
        }
    }
}

/// An [`Event`] with its sequence number in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// Position in the log; increases with every event and is never reused.
    pub seq: u64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

// Stored records that fail their seal or do not decode are damage, so they travel as redb's
// own variant.
pub(super) fn decode<T: serde::de::DeserializeOwned>(
    table: &str,
    key: &[&[u8]],
    stored: &[u8],
    what: &str,
) -> Result<T, redb::Error> {
    let bytes = unseal(table, key, stored)
        .map_err(|e| redb::Error::Corrupted(format!("record for {what}: {e}")))?;
    serde_json::from_slice(bytes)
        .map_err(|e| redb::Error::Corrupted(format!("undecodable record for {what}: {e}")))
}

pub(super) fn encode<T: Serialize>(value: &T, what: &str) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Database(format!("encoding {what}: {e}")))
}
