//! The store as async code uses it. Plugin KV writes go to the group-commit thread
//! (`commit.rs`); plugin KV reads run on the caller's thread (a read from redb's
//! cache costs less than a hop); everything else, which waits on the disk or an
//! fsync, runs on tokio's blocking pool. This is the only place in torud that hands
//! redb work to `spawn_blocking`.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::commit::{CommitCounts, Committer, KvWrite};
use super::{Counts, Event, PluginRecord, Store, StoreError, StoreResult, StoredEvent};

/// A shared, cheap-to-clone handle on the open store.
#[derive(Debug, Clone)]
pub struct Handle {
    store: Arc<Store>,
    /// Dropped with the last handle: its thread finishes what was queued first.
    commits: Arc<Committer>,
}

impl Handle {
    /// The handle of `store`, and its group-commit thread.
    pub fn new(store: Store) -> StoreResult<Self> {
        let store = Arc::new(store);
        let commits = Arc::new(Committer::start(store.clone())?);
        Ok(Self { store, commits })
    }

    /// Opens the store of `state_dir` (see [`Store::open_verifying`]) on the blocking pool.
    pub async fn open(state_dir: &Path, verify: crate::config::VerifyOnStart) -> StoreResult<Self> {
        let dir = state_dir.to_owned();
        blocking(move || Store::open_verifying(&dir, verify))
            .await
            .and_then(Self::new)
    }

    /// The KV writes committed so far, and the transactions that held them (no I/O).
    pub fn commit_counts(&self) -> CommitCounts {
        self.commits.counts()
    }

    /// This installation's identity (no I/O).
    pub fn instance_id(&self) -> Uuid {
        self.store.instance_id()
    }

    /// The database file (no I/O).
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// The value of `plugin`'s `key`. Read here, on the caller's thread: a read
    /// transaction is cheap and never waits for a writer, and the pages a plugin reads
    /// are mostly in redb's cache, so a hop to the blocking pool would cost more than
    /// the read (a cold page is one `pread`).
    pub async fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.store.kv_get(plugin, key)
    }

    /// Stores `value` under `plugin`'s `key`; durable when this returns. Committed
    /// together with the other writes that arrive meanwhile.
    pub async fn kv_set(&self, plugin: &str, key: &str, value: Vec<u8>) -> StoreResult<()> {
        let write = KvWrite::Set {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            value,
        };
        self.commits.write(write, self.path()).await.map(drop)
    }

    /// Removes `plugin`'s `key`; whether it existed. Durable when this returns.
    pub async fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool> {
        let write = KvWrite::Delete {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
        };
        self.commits.write(write, self.path()).await?.existed()
    }

    /// One page of `plugin`'s keys with `prefix` (see [`Store::kv_list`]).
    pub async fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, Option<String>)> {
        let (plugin, prefix) = (plugin.to_owned(), prefix.to_owned());
        let after = after.map(str::to_owned);
        self.run(move |s| s.kv_list(&plugin, &prefix, after.as_deref(), limit))
            .await
    }

    /// The persisted record of `plugin`, if any.
    pub async fn plugin_record(&self, plugin: &str) -> StoreResult<Option<PluginRecord>> {
        let plugin = plugin.to_owned();
        self.run(move |s| s.plugin_record(&plugin)).await
    }

    /// Saves `record` for `plugin` and appends `event`, each durable.
    pub async fn set_plugin_record(
        &self,
        plugin: &str,
        record: PluginRecord,
        event: Event,
    ) -> StoreResult<()> {
        let plugin = plugin.to_owned();
        self.run(move |s| {
            s.set_plugin_record(&plugin, &record)?;
            s.record_event(&event).map(drop)
        })
        .await
    }

    /// Every saved plugin record.
    pub async fn plugin_records(&self) -> StoreResult<BTreeMap<String, PluginRecord>> {
        self.run(|s| s.plugin_records()).await
    }

    /// Appends `event`; its sequence number.
    pub async fn record_event(&self, event: Event) -> StoreResult<u64> {
        self.run(move |s| s.record_event(&event)).await
    }

    /// The newest `limit` events (of `plugin` only, if given), oldest first.
    pub async fn events(
        &self,
        plugin: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let plugin = plugin.map(str::to_owned);
        self.run(move |s| s.events(plugin.as_deref(), limit)).await
    }

    /// A backup of the whole store in an unnamed file in `dir` (on the store's file system),
    /// read from its start.
    pub async fn backup(&self, dir: &Path) -> StoreResult<(File, Counts)> {
        let dir: PathBuf = dir.to_owned();
        self.run(move |s| {
            use std::io::Seek;
            let io = |source| StoreError::Io {
                path: dir.clone(),
                source,
            };
            let mut file = tempfile::tempfile_in(&dir).map_err(io)?;
            let counts = s.backup(&file)?;
            file.rewind().map_err(io)?;
            Ok((file, counts))
        })
        .await
    }

    /// `plugin`'s licence line.
    pub async fn license(&self, plugin: &str) -> StoreResult<Option<String>> {
        let plugin = plugin.to_owned();
        self.run(move |s| s.license(&plugin)).await
    }

    /// Installs `line` as `plugin`'s licence.
    pub async fn set_license(&self, plugin: &str, line: &str) -> StoreResult<()> {
        let (plugin, line) = (plugin.to_owned(), line.to_owned());
        self.run(move |s| s.set_license(&plugin, &line)).await
    }

    /// Removes `plugin`'s licence; whether there was one.
    pub async fn remove_license(&self, plugin: &str) -> StoreResult<bool> {
        let plugin = plugin.to_owned();
        self.run(move |s| s.remove_license(&plugin)).await
    }

    /// The recorded machine-id hash.
    pub async fn machine_hash(&self) -> StoreResult<Option<String>> {
        self.run(|s| s.machine_hash()).await
    }

    /// Records the machine-id hash.
    pub async fn set_machine_hash(&self, hash: &str) -> StoreResult<()> {
        let hash = hash.to_owned();
        self.run(move |s| s.set_machine_hash(&hash)).await
    }

    /// A new instance id (see [`Store::regenerate_instance_id`]).
    pub async fn regenerate_instance_id(&self, hash: Option<&str>) -> StoreResult<Uuid> {
        let hash = hash.map(str::to_owned);
        self.run(move |s| s.regenerate_instance_id(hash.as_deref()))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Store) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let store = self.store.clone();
        blocking(move || work(&store)).await
    }
}

/// What the store file at `path` (a backup) holds, every value checked (see
/// [`super::inspect`]), on the blocking pool.
pub async fn inspect(path: &Path) -> StoreResult<Counts> {
    let path = path.to_owned();
    blocking(move || super::inspect(&path)).await
}

/// Runs `work` on the blocking pool; a panic that escaped the store's own shield (none
/// should) is reported as a database error, not propagated.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(StoreError::Database(format!("a store task failed: {e}"))))
}
