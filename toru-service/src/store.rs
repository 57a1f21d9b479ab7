//! Persistent state of torud: one redb database at `state_dir/toru.redb`.
//!
//! # Tables
//!
//! | table     | key                       | value                                   |
//! |-----------|---------------------------|-----------------------------------------|
//! | `meta`    | `&str`                    | `&str`: `schema_version`, `instance_id` |
//! | `kv`      | `(&str plugin, &str key)` | the plugin's raw bytes                  |
//! | `plugins` | `&str` plugin id          | JSON [`PluginRecord`]                   |
//! | `events`  | `u64` sequence number     | JSON [`Event`]                          |
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
//! Only one torud may use a state directory: [`Store::open`] takes an exclusive lock on
//! `state_dir/torud.lock` (holding the owner's pid) before it touches the database, and the
//! lock is released when the [`Store`] is dropped or the process dies.
//!
//! # Errors
//!
//! Nothing here panics on bad input or a bad file (given the default `panic = "unwind"`). A damaged file is reported as
//! [`StoreError::Corrupt`], including when redb itself panics on a damaged page, which it only
//! finds when it reads that page: so a call long after a successful open can still report it.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use redb::backends::FileBackend;
use redb::{
    Builder, Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use uuid::Uuid;

#[cfg(test)]
mod tests;

/// How many events the log keeps; older ones are pruned as new ones are recorded.
pub const MAX_EVENTS: u64 = 10_000;

/// Schema version this code writes and understands; a newer database is refused.
const SCHEMA_VERSION: u32 = 1;
const DB_FILE: &str = "toru.redb";
const LOCK_FILE: &str = "torud.lock";
// The page cache is a ceiling, not an allocation; redb's 1 GiB default is far more than a
// daemon's bookkeeping needs.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const META: TableDefinition<'_, &str, &str> = TableDefinition::new("meta");
const KV: TableDefinition<'_, (&str, &str), &[u8]> = TableDefinition::new("kv");
const PLUGINS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("plugins");
const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events");

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the state directory's lock.
    #[error("state directory {} is in use by another torud ({})", .path.display(), holder_text(.holder_pid))]
    Locked {
        /// The state directory.
        path: PathBuf,
        /// Pid written into the lock file by the holder, if it could be read.
        holder_pid: Option<u32>,
    },
    /// The state directory, lock file or database file could not be created, read or written.
    #[error("cannot use {}: {source}", .path.display())]
    Io {
        /// The file or directory that failed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The database file is not a readable torud database.
    #[error(
        "database {} is corrupt ({detail}); move it aside to start afresh; plugin data in it would be lost",
        .path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The database was written by a newer torud whose schema this one does not know.
    #[error(
        "database {} has schema version {found} but this torud understands only up to {supported}; run a newer torud (or move the file aside to start afresh; plugin data in it would be lost)",
        .path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Schema version found in the file.
        found: u32,
        /// Newest schema version this code understands.
        supported: u32,
    },
    /// Any other database failure, with the operation that hit it.
    #[error("database error: {0}")]
    Database(String),
}

fn holder_text(pid: &Option<u32>) -> String {
    pid.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}"))
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

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
    /// A plugin's manifest or files are invalid.
    Invalid,
    /// torud started.
    DaemonStarted,
    /// torud stopped.
    DaemonStopped,
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

/// The open store. `Send + Sync`; share it with an `Arc`. Calls block on disk I/O.
pub struct Store {
    // Declared before `_lock` so the database is closed before the lock is released: fields drop
    // in declaration order, and another torud must not open the file while this one still has it.
    db: Database,
    path: PathBuf,
    instance_id: Uuid,
    max_events: u64,
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("instance_id", &self.instance_id)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `state_dir`, taking its lock first.
    pub fn open(state_dir: &Path) -> StoreResult<Self> {
        Self::open_with(state_dir, MAX_EVENTS)
    }

    /// [`Store::open`] with a different event log bound (at least 1), for tests.
    pub(crate) fn open_with(state_dir: &Path, max_events: u64) -> StoreResult<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(io_error(state_dir))?;
        let lock = acquire_lock(state_dir)?;
        let path = state_dir.join(DB_FILE);
        let (db, instance_id) = shielded(&path, || {
            let db = open_database(&path)?;
            let instance_id = initialise(&db, &path)?;
            Ok((db, instance_id))
        })?;
        // The file's directory entry must itself be durable, or a power loss right after the
        // first start could lose the whole database despite every commit's fsync.
        File::open(state_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(state_dir))?;
        info!(path = %path.display(), %instance_id, "store opened");
        Ok(Self {
            db,
            path,
            instance_id,
            max_events: max_events.max(1),
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This installation's identity, made on first start and never changed.
    pub fn instance_id(&self) -> Uuid {
        self.instance_id
    }

    /// The value of `key` in `plugin`'s namespace.
    pub fn kv_get(&self, plugin: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.read("kv_get", |txn| {
            let table = txn.open_table(KV)?;
            Ok(table.get((plugin, key))?.map(|v| v.value().to_vec()))
        })
    }

    /// Stores `value` under `key` in `plugin`'s namespace; durable when this returns.
    pub fn kv_set(&self, plugin: &str, key: &str, value: &[u8]) -> StoreResult<()> {
        self.write("kv_set", |txn| {
            txn.open_table(KV)?.insert((plugin, key), value)?;
            Ok(())
        })
    }

    /// Removes `key` from `plugin`'s namespace; `true` if it existed.
    pub fn kv_delete(&self, plugin: &str, key: &str) -> StoreResult<bool> {
        self.write("kv_delete", |txn| {
            Ok(txn.open_table(KV)?.remove((plugin, key))?.is_some())
        })
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
                let (entry_key, _) = entry?;
                let (owner, key) = entry_key.value();
                // Keys sharing a prefix are contiguous, so the first miss ends the range.
                if owner != plugin || !key.starts_with(prefix) {
                    break;
                }
                if keys.len() == limit {
                    more = true;
                    break;
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
            value.map(|v| decode(v.value(), plugin)).transpose()
        })
    }

    /// Saves the persisted state of `plugin`; durable when this returns.
    pub fn set_plugin_record(&self, plugin: &str, record: &PluginRecord) -> StoreResult<()> {
        let bytes = encode(record, "plugin record")?;
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
                records.insert(plugin.to_owned(), decode(value.value(), plugin)?);
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
            table.insert(seq, bytes.as_slice())?;
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
                let event: Event = decode(value.value(), &format!("event {seq}"))?;
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

/// Runs `body`, turning a panic into [`StoreError::Corrupt`].
///
/// redb panics instead of erroring on some damaged pages (always in debug builds, and at some
/// sites in release builds too), and only finds them when it reads them; a daemon must report
/// that as a corrupt file rather than die. redb poisons what the panic left half done, so later
/// calls fail cleanly instead of seeing a broken state.
fn shielded<T>(path: &Path, body: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("the database engine failed an internal check: {message}"),
        })
    })
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn classify(path: &Path, op: &str, err: redb::Error) -> StoreError {
    match err {
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: path.to_owned(),
            detail,
        },
        // redb reports a file that is not a redb database (bad magic number) as InvalidData.
        redb::Error::Io(source) if source.kind() == io::ErrorKind::InvalidData => {
            StoreError::Corrupt {
                path: path.to_owned(),
                detail: source.to_string(),
            }
        }
        redb::Error::Io(source) => StoreError::Io {
            path: path.to_owned(),
            source,
        },
        other => StoreError::Database(format!("{op} on {}: {other}", path.display())),
    }
}

// Stored records that fail to decode are corruption, so they travel as redb's own variant.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, redb::Error> {
    serde_json::from_slice(bytes)
        .map_err(|e| redb::Error::Corrupted(format!("undecodable record for {what}: {e}")))
}

fn encode<T: Serialize>(value: &T, what: &str) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Database(format!("encoding {what}: {e}")))
}

/// Tightens a pre-existing file that something else left readable by others.
fn restrict_mode(file: &File, path: &Path) -> StoreResult<()> {
    let mode = file
        .metadata()
        .map_err(io_error(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        warn!(path = %path.display(), mode = format!("{mode:o}"), "tightening mode to 0600");
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_error(path))?;
    }
    Ok(())
}

fn acquire_lock(state_dir: &Path) -> StoreResult<File> {
    let path = state_dir.join(LOCK_FILE);
    // No truncation on open: until the lock is ours the content is the holder's pid.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut content = String::new();
            let holder_pid = file
                .read_to_string(&mut content)
                .ok()
                .and_then(|_| content.trim().parse().ok());
            return Err(StoreError::Locked {
                path: state_dir.to_owned(),
                holder_pid,
            });
        }
        Err(TryLockError::Error(source)) => return Err(StoreError::Io { path, source }),
    }
    restrict_mode(&file, &path)?;
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io_error(&path))?;
    Ok(file)
}

fn open_database(path: &Path) -> StoreResult<Database> {
    // Created here rather than by redb so the mode is 0600 from the first byte.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    restrict_mode(&file, path)?;
    let open_error = |e: DatabaseError| match e {
        // Only a process that ignores torud.lock can get here; it has no pid to report.
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.parent().unwrap_or(path).to_owned(),
            holder_pid: None,
        },
        other => classify(path, "opening", other.into()),
    };
    let backend = FileBackend::new(file).map_err(open_error)?;
    let warned = AtomicBool::new(false);
    let shown = path.display().to_string();
    Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_repair_callback(move |session| {
            if !warned.swap(true, Ordering::Relaxed) {
                warn!(path = %shown, progress = session.progress(), "repairing after an unclean shutdown");
            }
        })
        .create_with_backend(backend)
        .map_err(open_error)
}

/// Creates the tables, checks the schema version and returns the instance id, making both on
/// first start.
fn initialise(db: &Database, path: &Path) -> StoreResult<Uuid> {
    // The inner `Err` carries a schema version too new to touch.
    let run = || -> Result<Result<Uuid, u32>, redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        let mut meta = txn.open_table(META)?;
        let found = meta.get("schema_version")?.map(|v| v.value().to_owned());
        if let Some(found) = found {
            let found: u32 = found.parse().map_err(|_| {
                redb::Error::Corrupted(format!("schema_version {found:?} is not a number"))
            })?;
            if found > SCHEMA_VERSION {
                // Returning drops `txn` uncommitted, so a newer database is left untouched.
                return Ok(Err(found));
            }
        } else {
            meta.insert("schema_version", SCHEMA_VERSION.to_string().as_str())?;
        }
        let stored = meta.get("instance_id")?.map(|v| v.value().to_owned());
        let id = match stored {
            Some(stored) => Uuid::parse_str(&stored)
                .map_err(|e| redb::Error::Corrupted(format!("instance_id {stored:?}: {e}")))?,
            None => {
                let id = Uuid::new_v4();
                meta.insert("instance_id", id.to_string().as_str())?;
                info!(instance_id = %id, "new instance id");
                id
            }
        };
        drop(meta);
        // Creating the other tables up front lets read transactions assume they exist.
        txn.open_table(KV)?;
        txn.open_table(PLUGINS)?;
        txn.open_table(EVENTS)?;
        txn.commit()?;
        Ok(Ok(id))
    };
    match run() {
        Ok(Ok(id)) => Ok(id),
        Ok(Err(found)) => Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
        Err(e) => Err(classify(path, "initialising", e)),
    }
}
