//! Reloading: a rescan of the plugin folders applied to the running set.
//! Unchanged plugins keep running untouched; a replaced binary or changed
//! metadata restarts its plugin; removed ones are stopped; new ones start.

use std::sync::{Arc, PoisonError};

use tracing::info;

use super::Manager;
use super::discovery::Discovered;
use super::handle::PluginHandle;
use crate::store::EventKind;

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    /// Plugins started for the first time.
    pub(crate) added: Vec<String>,
    /// Plugins stopped and started from a new binary or metadata.
    pub(crate) replaced: Vec<String>,
    /// Plugins stopped because their file is gone.
    pub(crate) removed: Vec<String>,
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} replaced, {} removed",
            self.added.len(),
            self.replaced.len(),
            self.removed.len()
        )
    }
}

/// True when `found` is the very plugin `handle` runs.
fn same(handle: &PluginHandle, found: &Discovered) -> bool {
    handle.path == found.path
        && handle.fingerprint == found.fingerprint
        && match &found.metadata {
            Ok(metadata) => handle.metadata.as_ref() == Some(metadata),
            Err(reason) => handle.invalid_reason().as_deref() == Some(reason.as_str()),
        }
}

impl Manager {
    /// Applies a new scan; waits for stopped plugins to be gone before
    /// starting their successors (they may share an id and a socket).
    pub(crate) async fn reload(&self, found: Vec<Discovered>) -> Changes {
        let current = self.list();
        let mut changes = Changes::default();
        let mut keep: Vec<Option<Arc<PluginHandle>>> = Vec::with_capacity(found.len());
        for plugin in &found {
            keep.push(current.iter().find(|h| same(h, plugin)).cloned());
        }
        let going: Vec<Arc<PluginHandle>> = current
            .iter()
            .filter(|h| !keep.iter().flatten().any(|k| Arc::ptr_eq(k, h)))
            .cloned()
            .collect();
        for handle in &going {
            let replaced = found.iter().any(|f| f.path == handle.path);
            if replaced {
                changes.replaced.push(handle.id.clone());
                self.ctx
                    .event(
                        &handle.id,
                        EventKind::Replaced,
                        format!("{} changed", handle.path.display()),
                    )
                    .await;
            } else {
                changes.removed.push(handle.id.clone());
                self.ctx
                    .event(
                        &handle.id,
                        EventKind::Removed,
                        handle.path.display().to_string(),
                    )
                    .await;
            }
        }
        self.stop(
            &going,
            self.ctx.settings().shutdown_timeout + std::time::Duration::from_secs(5),
        )
        .await;

        let mut next = Vec::with_capacity(found.len());
        for (plugin, kept) in found.into_iter().zip(keep) {
            match kept {
                Some(handle) => next.push(handle),
                None => {
                    let replaced = going.iter().any(|h| h.path == plugin.path);
                    let handle = self.adopt(plugin);
                    if !replaced {
                        changes.added.push(handle.id.clone());
                        self.ctx
                            .event(
                                &handle.id,
                                EventKind::Discovered,
                                handle.path.display().to_string(),
                            )
                            .await;
                    }
                    next.push(handle);
                }
            }
        }
        *self.plugins.write().unwrap_or_else(PoisonError::into_inner) = next;
        info!(%changes, "plugins reloaded");
        changes
    }
}
