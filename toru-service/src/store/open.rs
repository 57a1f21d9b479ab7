//! Opening the state directory: its lock, the instance identity kept beside
//! the database, the database itself (verified when that is due), and the
//! schema.
//!
//! # Files
//!
//! | file          | what                                                        |
//! |---------------|-------------------------------------------------------------|
//! | `torud.lock`  | flock held while open; the holder's pid, emptied on a clean stop |
//! | `instance-id` | the instance id, written once (0600); survives the database |
//! | `toru.redb`   | the database                                                |
//!
//! A `torud.lock` that still names a pid when it is taken means the last
//! torud did not stop cleanly; the whole file is then verified whatever
//! `verify_on_start` says.

use std::fs::{self, DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use redb::backends::FileBackend;
use redb::{Builder, Database, DatabaseError, ReadableTable, WriteTransaction};
use tracing::{info, warn};
use uuid::Uuid;

use super::seal::seal;
use super::{
    CACHE_BYTES, EVENTS, INSTANCE_FILE, KV, LICENSES, LOCK_FILE, META, PLUGINS, SCHEMA_VERSION,
    StoreError, StoreResult, classify, io_error,
};
use crate::config::VerifyOnStart;

/// The state directory's lock; dropping it after the database records a
/// clean stop.
#[derive(Debug)]
pub(super) struct Lock {
    file: File,
    path: PathBuf,
    /// Whether the last holder stopped cleanly.
    pub(super) was_clean: bool,
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Runs after the database is closed (field order in `Store`).
        if let Err(e) = self.file.set_len(0) {
            warn!(path = %self.path.display(), error = %e, "cannot record a clean stop");
        }
    }
}

/// Takes the lock of `state_dir` (made 0700 if missing).
pub(super) fn lock(state_dir: &Path) -> StoreResult<Lock> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io_error(state_dir))?;
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
    let mut content = String::new();
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
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
    file.read_to_string(&mut content).map_err(io_error(&path))?;
    let was_clean = content.trim().is_empty();
    file.set_len(0)
        .and_then(|()| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .and_then(|()| file.sync_all())
        .map_err(io_error(&path))?;
    Ok(Lock {
        file,
        path,
        was_clean,
    })
}

/// The id in `state_dir/instance-id`, if the file exists.
pub(super) fn read_instance_file(state_dir: &Path) -> StoreResult<Option<Uuid>> {
    let path = state_dir.join(INSTANCE_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => Uuid::parse_str(text.trim())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: path.clone(),
                detail: format!("{:?} is not an instance id: {e}", text.trim()),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io { path, source }),
    }
}

/// Writes `id` to `state_dir/instance-id` (0600), durably, replacing what is there.
pub(super) fn write_instance_file(state_dir: &Path, id: Uuid) -> StoreResult<()> {
    let path = state_dir.join(INSTANCE_FILE);
    let partial = state_dir.join(format!("{INSTANCE_FILE}.partial"));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&partial)?;
        file.write_all(format!("{id}\n").as_bytes())?;
        file.sync_all()?;
        fs::rename(&partial, &path)?;
        File::open(state_dir)?.sync_all()
    };
    write().map_err(io_error(&path))
}

/// Whether `path` holds no database yet: missing or empty.
pub(super) fn is_empty(path: &Path) -> StoreResult<bool> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(metadata.len() == 0),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Opens (creating if empty) the database at `path`; with `verify`, every
/// page of it is checked first and damage refuses the open.
pub(super) fn database(path: &Path, verify: bool) -> StoreResult<Database> {
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
    let size = file.metadata().map_err(io_error(path))?.len();
    let open_error = |e: DatabaseError| match e {
        // Only a process that ignores torud.lock can get here; it has no pid to report.
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.parent().unwrap_or(path).to_owned(),
            holder_pid: None,
        },
        other => classify(path, "opening", other.into()),
    };
    let backend = FileBackend::new(file).map_err(open_error)?;
    let started = Instant::now();
    let db = Builder::new()
        .set_cache_size(CACHE_BYTES)
        .set_check_integrity_on_open(verify && size > 0)
        .create_with_backend(backend)
        .map_err(open_error)?;
    if verify && size > 0 {
        info!(
            path = %path.display(),
            mib = size / (1024 * 1024),
            ms = started.elapsed().as_millis() as u64,
            "every page of the store verified"
        );
    }
    Ok(db)
}

/// Whether this open verifies the whole file.
pub(super) fn verifies(policy: VerifyOnStart, lock: &Lock, path: &Path) -> bool {
    match policy {
        VerifyOnStart::Always => true,
        VerifyOnStart::AfterCrash if !lock.was_clean => {
            warn!(path = %path.display(), "torud did not stop cleanly: verifying every page of the store");
            true
        }
        VerifyOnStart::AfterCrash => false,
    }
}

/// Creates the tables, checks (and upgrades) the schema, and settles the
/// instance id against `known` (from `instance-id`): the database's and the
/// file's must agree; a new database takes the file's, or a new one.
pub(super) fn initialise(db: &Database, path: &Path, known: Option<Uuid>) -> StoreResult<Uuid> {
    // The inner `Err` carries a schema version too new to touch.
    let run = || -> Result<Result<Uuid, u32>, redb::Error> {
        let mut txn = db.begin_write()?;
        txn.set_quick_repair(true);
        let found = txn
            .open_table(META)?
            .get("schema_version")?
            .map(|v| v.value().to_owned());
        match found {
            None => set_meta(&txn, "schema_version", &SCHEMA_VERSION.to_string())?,
            Some(found) => {
                let found: u32 = found.parse().map_err(|_| {
                    redb::Error::Corrupted(format!("schema_version {found:?} is not a number"))
                })?;
                if found > SCHEMA_VERSION {
                    // Returning drops `txn` uncommitted, so a newer database is left untouched.
                    return Ok(Err(found));
                }
                if found < 2 {
                    seal_every_value(&txn)?;
                    info!(
                        from = found,
                        to = SCHEMA_VERSION,
                        "store schema upgraded: every value sealed"
                    );
                }
                if found < SCHEMA_VERSION {
                    set_meta(&txn, "schema_version", &SCHEMA_VERSION.to_string())?;
                }
            }
        }
        let stored = txn
            .open_table(META)?
            .get("instance_id")?
            .map(|v| v.value().to_owned());
        let id = match stored {
            Some(stored) => Uuid::parse_str(&stored)
                .map_err(|e| redb::Error::Corrupted(format!("instance_id {stored:?}: {e}")))?,
            None => {
                let id = known.unwrap_or_else(Uuid::new_v4);
                set_meta(&txn, "instance_id", &id.to_string())?;
                if known.is_none() {
                    info!(instance_id = %id, "new instance id");
                }
                id
            }
        };
        // Creating the other tables up front lets read transactions assume they exist.
        txn.open_table(KV)?;
        txn.open_table(PLUGINS)?;
        txn.open_table(EVENTS)?;
        txn.open_table(LICENSES)?;
        txn.commit()?;
        Ok(Ok(id))
    };
    let id = match run() {
        Ok(Ok(id)) => id,
        Ok(Err(found)) => {
            return Err(StoreError::SchemaTooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Err(e) => return Err(classify(path, "initialising", e)),
    };
    match known {
        Some(known) if known != id => Err(StoreError::Mismatch {
            path: path.to_owned(),
            in_database: id,
            in_file: known,
        }),
        _ => Ok(id),
    }
}

fn set_meta(txn: &WriteTransaction, key: &str, value: &str) -> Result<(), redb::Error> {
    txn.open_table(META)?.insert(key, value)?;
    Ok(())
}

/// Schema 1 stored values bare: seals each one, in the same transaction.
fn seal_every_value(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let mut kv = txn.open_table(KV)?;
    let mut all = Vec::new();
    for entry in kv.iter()? {
        let (key, value) = entry?;
        let (plugin, key) = key.value();
        all.push((plugin.to_owned(), key.to_owned(), value.value().to_vec()));
    }
    for (plugin, key, value) in all {
        let sealed = seal("kv", &[plugin.as_bytes(), key.as_bytes()], &value);
        kv.insert((plugin.as_str(), key.as_str()), sealed.as_slice())?;
    }
    let mut plugins = txn.open_table(PLUGINS)?;
    let mut all = Vec::new();
    for entry in plugins.iter()? {
        let (plugin, value) = entry?;
        all.push((plugin.value().to_owned(), value.value().to_vec()));
    }
    for (plugin, value) in all {
        let sealed = seal("plugins", &[plugin.as_bytes()], &value);
        plugins.insert(plugin.as_str(), sealed.as_slice())?;
    }
    let mut events = txn.open_table(EVENTS)?;
    let mut all = Vec::new();
    for entry in events.iter()? {
        let (seq, value) = entry?;
        all.push((seq.value(), value.value().to_vec()));
    }
    for (seq, value) in all {
        let sealed = seal("events", &[&seq.to_be_bytes()], &value);
        events.insert(seq, sealed.as_slice())?;
    }
    Ok(())
}

/// Tightens a pre-existing file that something else left readable by others.
pub(super) fn restrict_mode(file: &File, path: &Path) -> StoreResult<()> {
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
