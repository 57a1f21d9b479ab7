//! What a sysadmin recovers with: a backup taken while torud runs, a restore
//! of one, and starting over with an empty store. The last two run with
//! torud stopped (they take the state directory's lock).
//!
//! A backup is a redb database of its own, written from one read
//! transaction of the live store (a consistent snapshot: every write
//! acknowledged before it began is in it), every value checked on the way.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use redb::backends::FileBackend;
use redb::{Builder, ReadTransaction, ReadableDatabase, ReadableTable};
use serde::Serialize;
use tracing::warn;
use uuid::Uuid;

use super::seal::unseal;
use super::{
    DB_FILE, EVENTS, INSTANCE_FILE, KV, LICENSES, LOCK_FILE, MAX_EVENTS, META, PLUGINS,
    SCHEMA_VERSION, Store, StoreError, StoreResult, classify, io_error, open, shielded,
};
use crate::config::VerifyOnStart;

/// What a store (or a backup of one) holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// The installation it belongs to.
    pub instance_id: String,
    /// Plugin keys, all plugins together.
    pub keys: u64,
    /// Plugins with at least one key.
    pub plugins: u64,
    /// Plugin records (enabled, failed).
    pub records: u64,
    /// Events in the log.
    pub events: u64,
    /// Licences installed.
    pub licenses: u64,
}

/// What [`restore`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// What the restored store holds.
    pub counts: Counts,
    /// The instance id before, when it was another.
    pub replaced_instance: Option<Uuid>,
    /// Where the database that was in place went.
    pub set_aside: Option<PathBuf>,
}

/// What [`start_afresh`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fresh {
    /// The instance id, kept (or new, for a state directory that had none).
    pub instance_id: Uuid,
    /// Where the database that was in place went.
    pub set_aside: Option<PathBuf>,
}

impl Store {
    /// Writes a copy of the whole store, as one consistent snapshot, to `out` (a new or empty
    /// file open for reading and writing). Fails, naming it, on the first damaged value: a backup is
    /// faithful or not made.
    pub fn backup(&self, out: &File) -> StoreResult<Counts> {
        let target_path = Path::new("the backup");
        let copy = || -> StoreResult<Counts> {
            let file = out.try_clone().map_err(io_error(target_path))?;
            let backend =
                FileBackend::new(file).map_err(|e| classify(target_path, "creating", e.into()))?;
            let target = Builder::new()
                .create_with_backend(backend)
                .map_err(|e| classify(target_path, "creating", e.into()))?;
            let snapshot = self
                .db
                .begin_read()
                .map_err(|e| classify(&self.path, "backup", e.into()))?;
            let counts = check_all(&snapshot, &self.path)?;
            let copying = || -> Result<(), redb::Error> {
                let txn = target.begin_write()?;
                {
                    let mut meta = txn.open_table(META)?;
                    for entry in snapshot.open_table(META)?.iter()? {
                        let (key, value) = entry?;
                        meta.insert(key.value(), value.value())?;
                    }
                    let mut kv = txn.open_table(KV)?;
                    for entry in snapshot.open_table(KV)?.iter()? {
                        let (key, value) = entry?;
                        kv.insert(key.value(), value.value())?;
                    }
                    let mut plugins = txn.open_table(PLUGINS)?;
                    for entry in snapshot.open_table(PLUGINS)?.iter()? {
                        let (key, value) = entry?;
                        plugins.insert(key.value(), value.value())?;
                    }
                    let mut events = txn.open_table(EVENTS)?;
                    for entry in snapshot.open_table(EVENTS)?.iter()? {
                        let (key, value) = entry?;
                        events.insert(key.value(), value.value())?;
                    }
                    let mut licenses = txn.open_table(LICENSES)?;
                    if let Some(table) = optional(snapshot.open_table(LICENSES))? {
                        for entry in table.iter()? {
                            let (key, value) = entry?;
                            licenses.insert(key.value(), value.value())?;
                        }
                    }
                }
                txn.commit()?;
                Ok(())
            };
            copying().map_err(|e| classify(target_path, "writing the backup", e))?;
            Ok(counts)
        };
        shielded(&self.path, copy)
    }
}

/// Reads every value of the store in `snapshot` and checks its seal: the counts, or the
/// first damaged value.
fn check_all(snapshot: &ReadTransaction, path: &Path) -> StoreResult<Counts> {
    let mut counts = Counts::default();
    let damaged = |what: String, detail: String| StoreError::Damaged { what, detail };
    let db_error = |e: redb::Error| classify(path, "reading", e);
    let meta = snapshot.open_table(META).map_err(|e| db_error(e.into()))?;
    counts.instance_id = meta
        .get("instance_id")
        .map_err(|e| db_error(e.into()))?
        .map(|v| v.value().to_owned())
        .unwrap_or_default();
    let schema = meta
        .get("schema_version")
        .map_err(|e| db_error(e.into()))?
        .and_then(|v| v.value().parse::<u32>().ok())
        .unwrap_or(0);
    // Schema 1 stored values bare; they are sealed when the store is next opened.
    let sealed = schema >= 2;
    if schema > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    let mut last_plugin = String::new();
    for entry in snapshot
        .open_table(KV)
        .map_err(|e| db_error(e.into()))?
        .iter()
        .map_err(|e| db_error(e.into()))?
    {
        let (key, value) = entry.map_err(|e| db_error(e.into()))?;
        let (plugin, key) = key.value();
        if sealed
            && let Err(detail) = unseal("kv", &[plugin.as_bytes(), key.as_bytes()], value.value())
        {
            return Err(damaged(
                format!("the stored value of key {key:?} of plugin {plugin:?}"),
                detail,
            ));
        }
        counts.keys += 1;
        if plugin != last_plugin {
            counts.plugins += 1;
            last_plugin = plugin.to_owned();
        }
    }
    for entry in snapshot
        .open_table(PLUGINS)
        .map_err(|e| db_error(e.into()))?
        .iter()
        .map_err(|e| db_error(e.into()))?
    {
        let (plugin, value) = entry.map_err(|e| db_error(e.into()))?;
        let plugin = plugin.value();
        if sealed && let Err(detail) = unseal("plugins", &[plugin.as_bytes()], value.value()) {
            return Err(damaged(format!("the record of plugin {plugin:?}"), detail));
        }
        counts.records += 1;
    }
    for entry in snapshot
        .open_table(EVENTS)
        .map_err(|e| db_error(e.into()))?
        .iter()
        .map_err(|e| db_error(e.into()))?
    {
        let (seq, value) = entry.map_err(|e| db_error(e.into()))?;
        let seq = seq.value();
        if sealed && let Err(detail) = unseal("events", &[&seq.to_be_bytes()], value.value()) {
            return Err(damaged(format!("event {seq}"), detail));
        }
        counts.events += 1;
    }
    let licenses = optional(snapshot.open_table(LICENSES)).map_err(&db_error)?;
    for entry in licenses.iter().flat_map(|t| t.iter().into_iter().flatten()) {
        let (plugin, value) = entry.map_err(|e| db_error(e.into()))?;
        let plugin = plugin.value();
        if let Err(detail) = unseal("licenses", &[plugin.as_bytes()], value.value()) {
            return Err(damaged(format!("the licence of plugin {plugin:?}"), detail));
        }
        counts.licenses += 1;
    }
    Ok(counts)
}

/// A table that stores of an earlier torud may not have.
fn optional<T>(opened: Result<T, redb::TableError>) -> Result<Option<T>, redb::Error> {
    match opened {
        Ok(table) => Ok(Some(table)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What the backup (or any store file) at `path` holds, every value checked. The file is
/// only read.
pub fn inspect(path: &Path) -> StoreResult<Counts> {
    super::install_panic_hook();
    shielded(path, || {
        let db = Builder::new()
            .open_read_only(path)
            .map_err(|e| classify(path, "opening", e.into()))?;
        let snapshot = db
            .begin_read()
            .map_err(|e| classify(path, "reading", e.into()))?;
        check_all(&snapshot, path)
    })
}

/// Puts the backup `from` in place of the store of `state_dir` (torud must be stopped): the
/// backup is checked whole first (every page, every value) on a copy in `state_dir`; the
/// database in place, if any, is set aside, not deleted; the instance id becomes the backup's.
pub fn restore(state_dir: &Path, from: &Path) -> StoreResult<Restored> {
    let counts = inspect(from)?;
    let lock = open::lock(state_dir)?;
    let incoming = state_dir.join(format!("{DB_FILE}.restoring"));
    let copied = copy_private(from, &incoming).map_err(io_error(&incoming));
    let checked = copied.and_then(|()| {
        shielded(&incoming, || {
            // Every page verified, the schema upgraded if it is older.
            let db = open::database(&incoming, true)?;
            open::initialise(&db, &incoming, None)
        })
    });
    let backup_id = match checked {
        Ok(id) => id,
        Err(e) => {
            let _ = fs::remove_file(&incoming);
            return Err(e);
        }
    };
    let before = open::read_instance_file(state_dir).ok().flatten();
    let path = state_dir.join(DB_FILE);
    let set_aside = set_aside(&path, "before-restore")?;
    fs::rename(&incoming, &path).map_err(io_error(&path))?;
    open::write_instance_file(state_dir, backup_id)?;
    fs::File::open(state_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_error(state_dir))?;
    give_to_owner(state_dir);
    drop(lock);
    Ok(Restored {
        counts,
        replaced_instance: before.filter(|id| *id != backup_id),
        set_aside,
    })
}

/// Sets the database of `state_dir` aside (torud must be stopped) and makes an empty one with
/// the instance id of `instance-id`: every plugin's data, state and the events are gone.
pub fn start_afresh(state_dir: &Path) -> StoreResult<Fresh> {
    let lock = open::lock(state_dir)?;
    let path = state_dir.join(DB_FILE);
    let set_aside = set_aside(&path, "set-aside")?;
    let store = Store::open_locked(state_dir, lock, VerifyOnStart::Always, MAX_EVENTS, true)?;
    let instance_id = store.instance_id();
    drop(store);
    give_to_owner(state_dir);
    Ok(Fresh {
        instance_id,
        set_aside,
    })
}

/// Renames a non-empty `path` to `path.<what>-<UTC time>`; `None` when there was nothing.
fn set_aside(path: &Path, what: &str) -> StoreResult<Option<PathBuf>> {
    if open::is_empty(path)? {
        return Ok(None);
    }
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".{what}-{stamp}"));
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside).map_err(io_error(path))?;
    Ok(Some(aside))
}

/// Copies `from` to a new `to` (0600), durably.
fn copy_private(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(to)?;
    io::copy(&mut source, &mut target)?;
    target.sync_all()
}

/// Run by root for a state directory torud's user owns: the files made here go to that
/// user, or torud could not open them.
fn give_to_owner(state_dir: &Path) {
    let Ok(dir) = fs::metadata(state_dir) else {
        return;
    };
    if !nix::unistd::geteuid().is_root() || dir.uid() == 0 {
        return;
    }
    for name in [DB_FILE, INSTANCE_FILE, LOCK_FILE] {
        let path = state_dir.join(name);
        if path.exists()
            && let Err(e) = std::os::unix::fs::chown(&path, Some(dir.uid()), Some(dir.gid()))
        {
            warn!(path = %path.display(), error = %e, "cannot give the file to the state directory's owner");
        }
    }
}
