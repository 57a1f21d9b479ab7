//! Persistent state of torud: one redb database at `state_dir/toru.redb`.
//!
//! # Tables
//!
//! | table     | key                       | value                                   |
//! |-----------|---------------------------|-----------------------------------------|
//! | `meta`    | `&str`                    | `&str`: `schema_version`, `instance_id`, `machine_id_hash` |
//! | `kv`      | `(&str plugin, &str key)` | the plugin's bytes, sealed              |
//! | `plugins` | `&str` plugin id          | JSON [`PluginRecord`](crate::store::PluginRecord), sealed           |
//! | `events`  | `u64` sequence number     | JSON [`Event`](crate::store::Event), sealed                  |
//!
//! Plugin data is keyed by a tuple, which redb encodes with a length prefix on the plugin id, so
//! no choice of key or prefix can make one plugin's keys collide with or sort into another's;
//! every scan also stops as soon as the plugin component changes.
//!
//! The event log keeps only the newest `MAX_EVENTS` entries: each append removes the oldest
//! surplus in the same transaction, so the log never exceeds its bound, even across crashes.
//!
//! # Durability
//!
//! Every mutating call is one redb write transaction committed with redb's default
//! `Durability::Immediate`: `commit` returns only after the data reached the disk (fsync), so a
//! call that returned `Ok` survives a crash or power loss, and one interrupted by a crash is
//! either wholly applied or not at all. Quick repair is turned on for every write, so reopening
//! after `kill -9` does not rebuild the allocator state by walking the whole file.
//!
//! Only one torud may use a state directory: [`Store::open`](crate::store::Store::open) takes an exclusive lock on
//! `state_dir/torud.lock` (holding the owner's pid) before it touches the database, and the
//! lock is released when the [`Store`](crate::store::Store) is dropped or the process dies.
//!
//! # Damage
//!
//! Damaged data is found and said, never served as good data:
//!
//! * the instance id is kept in `state_dir/instance-id` too, so a database that is gone or
//!   empty while the installation exists is refused ([`StoreError::Lost`](crate::store::StoreError::Lost)), not silently made
//!   anew, and a database of another installation is refused ([`StoreError::Mismatch`](crate::store::StoreError::Mismatch));
//! * at start (always, or after an unclean stop only: `[store] verify_on_start`) redb checks
//!   the checksum of every page, and damage refuses the open ([`StoreError::Corrupt`](crate::store::StoreError::Corrupt));
//! * every value carries a checksum of its own (`seal`), checked at each read; a value that
//!   fails it, or that redb cannot read, is [`StoreError::Damaged`](crate::store::StoreError::Damaged), logged once at ERROR with
//!   the plugin and key. redb panics on some damaged pages: that is caught (`shield`) and
//!   reported the same way, without a backtrace.
//!
//! Recovery: [`Store::backup`](crate::store::Store::backup) (a consistent copy taken while torud runs), [`restore`](crate::store::restore) and
//! [`start_afresh`](crate::store::start_afresh) (with torud stopped), in `copy.rs`.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use tracing::{debug, error, info};
use uuid::Uuid;

use crate::config::VerifyOnStart;
use seal::{seal, unseal};

/// Backups, restores, starting afresh.
/// Group commit of plugin KV writes.
mod commit;
mod copy;
/// Errors, each said for a sysadmin.
mod error;
/// The store for async code: every call on the blocking pool.
mod handle;
/// Licences and the instance's identity.
mod identity;
/// Lock, instance file, verification, schema.
mod open;
/// Plugin records and events, and their encoding.
mod records;
/// The checksum every value is stored with.
mod seal;
/// Catching the database engine's panics.
mod shield;
pub use commit::CommitCounts;
use commit::{KvWrite, KvWritten};
pub use copy::{Counts, Fresh, Restored, inspect, restore, start_afresh};
pub use error::{StoreError, StoreResult};
use error::{classify, io_error};
pub use handle::{Handle, inspect as inspect_async};
pub use records::{Event, EventKind, PluginRecord, StoredEvent};
use records::{decode, encode};
use shield::{install_panic_hook, shielded};

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
mod tests;

/// How many events the log keeps; older ones are pruned as new ones are recorded.
pub const MAX_EVENTS: u64 = 10_000;

/// Schema version this code writes and understands; a newer database is refused. Version 2
/// seals every value; a version 1 database is upgraded when opened.
const SCHEMA_VERSION: u32 = 2;
const DB_FILE: &str = "toru.redb";
const LOCK_FILE: &str = "torud.lock";
const INSTANCE_FILE: &str = "instance-id";
// The page cache is a ceiling, not an allocation; redb's 1 GiB default is far more than a
// daemon's bookkeeping needs.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");
const KV: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("kv");
const PLUGINS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("plugins");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");
const LICENSES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("licenses");

/// The open store. `Send + Sync`; share it with an `Arc`. Calls block on disk I/O.
pub struct Store {
    // Declared before `lock` so the database is closed before the lock is released (and the
    // clean stop recorded): fields drop in declaration order, and another torud must not open
    // the file while this one still has it.
    db: Database,
    path: PathBuf,
    instance_id: std::sync::RwLock<Uuid>,
    /// The state directory, where `instance-id` lives.
    dir: PathBuf,
    max_events: u64,
    /// Damaged values already logged, so each is said once.
    reported: Mutex<HashSet<String>>,
    lock: open::Lock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("instance_id", &self.instance_id())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, taking its lock first, and
    /// verifying every page.
    pub fn open(state_dir: &Path) -> StoreResult<Self> {
        Self::open_verifying(state_dir, VerifyOnStart::Always)
    }

    /// [`Store::open`], verifying every page as `verify` says.
    pub fn open_verifying(state_dir: &Path, verify: VerifyOnStart) -> StoreResult<Self> {
        let lock = open::lock(state_dir)?;
        Self::open_locked(state_dir, lock, verify, MAX_EVENTS, false)
    }

    /// [`Store::open`] with a different event log bound (at least 1), for tests.
    #[cfg(test)]
    pub(crate) fn open_with(state_dir: &Path, max_events: u64) -> StoreResult<Self> {
        let lock = open::lock(state_dir)?;
        Self::open_locked(state_dir, lock, VerifyOnStart::Always, max_events, false)
    }

    /// Opens with the lock taken; `afresh` lets a missing database be made anew although the
    /// installation exists (keeping its instance id).
    fn open_locked(
        state_dir: &Path,
        lock: open::Lock,
        verify: VerifyOnStart,
        max_events: u64,
        afresh: bool,
    ) -> StoreResult<Self> {
        install_panic_hook();
        let path = state_dir.join(DB_FILE);
        let known = open::read_instance_file(state_dir)?;
        let empty = open::is_empty(&path)?;
        if let (true, false, Some(instance_id)) = (empty, afresh, known) {
            return Err(StoreError::Lost { path, instance_id });
        }
        let verify = !empty && open::verifies(verify, &lock, &path);
        let (db, instance_id) = shielded(&path, || {
            let db = open::database(&path, verify)?;
            let instance_id = open::initialise(&db, &path, known)?;
            Ok((db, instance_id))
        })?;
        if known.is_none() {
            open::write_instance_file(state_dir, instance_id)?;
        }
        // The file's directory entry must itself be durable, or a power loss right after the
        // first start could lose the whole database despite every commit's fsync.
        File::open(state_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(state_dir))?;
        info!(path = %path.display(), %instance_id, "store opened");
        Ok(Self {
            db,
            path,
            instance_id: std::sync::RwLock::new(instance_id),
            dir: state_dir.to_owned(),
            max_events: max_events.max(1),
            reported: Mutex::new(HashSet::new()),
            lock,
        })
    }

    /// Whether the torud before this one stopped cleanly.
    pub fn last_stop_was_clean(&self) -> bool {
        self.lock.was_clean
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This installation's identity, made on first start; changed only when the
    /// administrator asks ([`Store::regenerate_instance_id`]).
    pub fn instance_id(&self) -> Uuid {
        *self
            .instance_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of `key` in `plugin`'s namespace. A value that is damaged is an error
    /// ([`StoreError::Damaged`]), logged once.
    pub fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        let found = self.read("kv_get", |txn| {
            let table = txn.open_table(KV)?;
            match table.get((plugin, key))? {
                Some(v) => Ok(Some(
                    unseal("kv", &[plugin.as_bytes(), key.as_bytes()], v.value())
                        .map(<[u8]>::to_vec),
                )),
                None => confirm_miss(&table, plugin, key).map(|()| None),
            }
        });
        match found {
            Ok(None) => Ok(None),
            Ok(Some(Ok(value))) => Ok(Some(value)),
            Ok(Some(Err(detail))) => Err(self.damaged(plugin, key, detail)),
            Err(StoreError::Corrupt { detail, .. }) => Err(self.damaged(plugin, key, detail)),
            Err(other) => Err(other),
        }
    }

    /// The error for a damaged value of `plugin`'s `key`, logged at ERROR the first time.
    fn damaged(&self, plugin: &str, key: &str, detail: String) -> StoreError {
        let what = format!("the stored value of key {key:?} of plugin {plugin:?}");
        let first = self
            .reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(format!("{plugin}\0{key}"));
        if first {
            error!(plugin, key, %detail, path = %self.path.display(), "damaged value in the store: answered as an error, not served");
        }
        StoreError::Damaged { what, detail }
    }

    /// Stores `value` under `key` in `plugin`'s namespace; durable when this returns.
    pub fn kv_set(&self, plugin: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.kv_write(&KvWrite::Set {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
            value: value.to_vec(),
        })
        .map(drop)
    }

    /// Applies `writes` in order in one write transaction: durable together, or not at
    /// all. What each did, in the same order.
    pub(crate) fn kv_write_all(&self, writes: &[&KvWrite]) -> StoreResult<Vec<KvWritten>> {
        let sealed: Vec<Option<Vec<u8>>> = writes
            .iter()
            .map(|write| match write {
                KvWrite::Set { plugin, key, value } => {
                    Some(seal("kv", &[plugin.as_bytes(), key.as_bytes()], value))
                }
                KvWrite::Delete { .. } => None,
            })
            .collect();
        self.write("kv_write", |txn| {
            let mut table = txn.open_table(KV)?;
            writes
                .iter()
                .zip(&sealed)
                .map(|(write, sealed)| match write {
                    KvWrite::Set { plugin, key, .. } => {
                        let sealed = sealed.as_deref().unwrap_or_default();
                        table.insert((plugin.as_str(), key.as_str()), sealed)?;
                        Ok(KvWritten::Set)
                    }
                    KvWrite::Delete { plugin, key } => Ok(KvWritten::Deleted(
                        table.remove((plugin.as_str(), key.as_str()))?.is_some(),
                    )),
                })
                .collect()
        })
    }

    /// [`Store::kv_write_all`] of one write.
    pub(crate) fn kv_write(&self, write: &KvWrite) -> StoreResult<KvWritten> {
        commit::write_one(self, write)
    }

    /// Removes `key` from `plugin`'s namespace; `true` if it existed.
    pub fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool> {
        let write = KvWrite::Delete {
            plugin: plugin.to_owned(),
            key: key.to_owned(),
        };
        self.kv_write(&write)?.existed()
    }

    /// One page of `plugin`'s keys that start with `prefix`, in byte order, strictly after
    /// `after` if given, at most `limit` of them (a `limit` of 0 counts as 1, so paging always
    /// progresses). The second value is the cursor for the next page: `Some(last key returned)`
    /// when more keys follow, `None` on the last page.
    pub fn kv_list(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, Option<String>)> {
        let limit = limit.max(1);
        // Keys with the prefix sort at or after the prefix itself, so an `after` below it
        // excludes nothing and the scan starts at the prefix.
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded((plugin, after)),
            _ => Bound::Included((plugin, prefix)),
        };
        self.read("kv_list", |txn| {
            let table = txn.open_table(KV)?;
            let mut keys = Vec::new();
            let mut more = false;
            for entry in table.range::<(&str, &str)>((start, Bound::Unbounded))? {
                let (entry_key, value) = entry?;
                let (owner, key) = entry_key.value();
                // Keys sharing a prefix are contiguous, so the first miss ends the range.
                if owner != plugin || !key.starts_with(prefix) {
                    break;
                }
                if keys.len() == limit {
                    more = true;
                    break;
                }
                // A damaged key would be listed under a name nobody wrote.
                if let Err(detail) =
                    unseal("kv", &[owner.as_bytes(), key.as_bytes()], value.value())
                {
                    return Err(redb::Error::Corrupted(format!(
                        "an entry after key {:?} of plugin {plugin:?}: {detail}",
                        keys.last().map_or("", String::as_str)
                    )));
                }
                keys.push(key.to_owned());
            }
            let next = if more { keys.last().cloned() } else { None };
            Ok((keys, next))
        })
    }

    /// How many keys `plugin` has stored.
    pub fn kv_count(&self, plugin: &str) -> StoreResult<u64> {
        self.read("kv_count", |txn| {
            let table = txn.open_table(KV)?;
            let mut count = 0;
            for entry in table.range::<(&str, &str)>((plugin, "")..)? {
                if entry?.0.value().0 != plugin {
                    break;
                }
                count += 1;
            }
            Ok(count)
        })
    }

    /// The persisted state of `plugin`, if any was saved.
    pub fn plugin_record(&self, plugin: &str) -> StoreResult<Option<PluginRecord>> {
        self.read("plugin_record", |txn| {
            let table = txn.open_table(PLUGINS)?;
            let value = table.get(plugin)?;
            value
                .map(|v| decode("plugins", &[plugin.as_bytes()], v.value(), plugin))
                .transpose()
        })
    }

    /// Saves the persisted state of `plugin`; durable when this returns.
    pub fn set_plugin_record(&self, plugin: &str, record: &PluginRecord) -> StoreResult<()> {
        let bytes = encode(record, "plugin record")?;
        let bytes = seal("plugins", &[plugin.as_bytes()], &bytes);
        self.write("set_plugin_record", |txn| {
            txn.open_table(PLUGINS)?.insert(plugin, bytes.as_slice())?;
            Ok(())
        })
    }

    /// Every saved plugin record, by plugin id.
    pub fn plugin_records(&self) -> StoreResult<BTreeMap<String, PluginRecord>> {
        self.read("plugin_records", |txn| {
            let table = txn.open_table(PLUGINS)?;
            let mut records = BTreeMap::new();
            for entry in table.iter()? {
                let (plugin, value) = entry?;
                let plugin = plugin.value();
                let record = decode("plugins", &[plugin.as_bytes()], value.value(), plugin)?;
                records.insert(plugin.to_owned(), record);
            }
            Ok(records)
        })
    }

    /// Appends `event` to the log and returns its sequence number, pruning the oldest entries
    /// beyond the bound in the same transaction; durable when this returns.
    pub fn record_event(&self, event: &Event) -> StoreResult<u64> {
        let bytes = encode(event, "event")?;
        self.write("record_event", |txn| {
            let mut table = txn.open_table(EVENTS)?;
            // The newest event is never pruned, so the last key keeps sequence numbers unique.
            let seq = match table.last()? {
                Some((last, _)) => last.value() + 1,
                None => 1,
            };
            let sealed = seal("events", &[&seq.to_be_bytes()], &bytes);
            table.insert(seq, sealed.as_slice())?;
            let surplus = table.len()?.saturating_sub(self.max_events);
            for _ in 0..surplus {
                table.pop_first()?;
            }
            if surplus > 0 {
                debug!(surplus, "pruned old events");
            }
            Ok(seq)
        })
    }

    /// The newest `limit` events (only `plugin`'s if given), oldest first.
    pub fn events(&self, plugin: Option<&str>, limit: usize) -> StoreResult<Vec<StoredEvent>> {
        self.read("events", |txn| {
            let table = txn.open_table(EVENTS)?;
            let mut events = Vec::new();
            // Walking back from the newest; the log's bound caps the cost of a sparse filter.
            for entry in table.iter()?.rev() {
                if events.len() >= limit {
                    break;
                }
                let (seq, value) = entry?;
                let seq = seq.value();
                let event: Event = decode(
                    "events",
                    &[&seq.to_be_bytes()],
                    value.value(),
                    &format!("event {seq}"),
                )?;
                if plugin.is_none_or(|p| event.plugin.as_deref() == Some(p)) {
                    events.push(StoredEvent { seq, event });
                }
            }
            events.reverse();
            Ok(events)
        })
    }

    fn read<T>(
        &self,
        op: &str,
        body: impl FnOnce(&ReadTransaction) -> Result<T, redb::Error>,
    ) -> StoreResult<T> {
        let run = || body(&self.db.begin_read()?);
        shielded(&self.path, || {
            run().map_err(|e| classify(&self.path, op, e))
        })
    }

    fn write<T>(
        &self,
        op: &str,
        body: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error>,
    ) -> StoreResult<T> {
        let run = || {
            let mut txn = self.db.begin_write()?;
            txn.set_quick_repair(true);
            // An error drops `txn` uncommitted, which aborts it.
            let out = body(&txn)?;
            txn.commit()?;
            Ok(out)
        };
        shielded(&self.path, || {
            run().map_err(|e| classify(&self.path, op, e))
        })
    }
}

/// A key not found may be one whose stored bytes are damaged, which redb cannot tell (it checks
/// page checksums only when verifying the whole file). So a miss counts only when its
/// neighbours, the entries just before and after where the key would be, are intact (their
/// seals cover their keys) and sort around it; otherwise it is damage.
fn confirm_miss<T: ReadableTable<(&'static str, &'static str), &'static [u8]>>(
    table: &T,
    plugin: &str,
    key: &str,
) -> Result<(), redb::Error> {
    let wanted = (plugin, key);
    let before = table.range::<(&str, &str)>(..wanted)?.next_back();
    let after = table.range::<(&str, &str)>(wanted..)?.next();
    for (neighbour, sorts_before) in [(before, true), (after, false)] {
        let Some(entry) = neighbour else { continue };
        let (found, value) = entry?;
        let (other_plugin, other_key) = found.value();
        let in_order = if sorts_before {
            (other_plugin, other_key) < wanted
        } else {
            (other_plugin, other_key) > wanted
        };
        let intact = unseal(
            "kv",
            &[other_plugin.as_bytes(), other_key.as_bytes()],
            value.value(),
        );
        if !in_order || intact.is_err() {
            return Err(redb::Error::Corrupted(format!(
                "the key is not found, and the entry where it would be is damaged ({})",
                intact.err().unwrap_or_else(|| "out of order".to_owned())
            )));
        }
    }
    Ok(())
}
