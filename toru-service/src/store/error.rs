//! What can go wrong with the store, said for a sysadmin: each damage error
//! ends with how to recover.

use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

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
    /// The database file is damaged or not a torud database.
    #[error(
        "database {} is damaged ({detail}); torud does not serve damaged data. {RECOVER}",
        .path.display()
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What was found wrong.
        detail: String,
    },
    /// The database is missing or empty while the installation it belongs to exists.
    #[error(
        "database {} is missing or empty, but this is installation {instance_id} (its id is in \
         instance-id beside it): its plugin data, states and events are gone. {RECOVER}",
        .path.display()
    )]
    Lost {
        /// The database file.
        path: PathBuf,
        /// The id in `instance-id`.
        instance_id: Uuid,
    },
    /// The database belongs to another installation than the state directory's `instance-id`.
    #[error(
        "database {} belongs to installation {in_database}, but instance-id beside it says \
         {in_file}. A database copied in by hand is not used; `torud --restore FILE` takes a \
         backup in and adopts its id. {RECOVER}",
        .path.display()
    )]
    Mismatch {
        /// The database file.
        path: PathBuf,
        /// The id in the database.
        in_database: Uuid,
        /// The id in `instance-id`.
        in_file: Uuid,
    },
    /// A stored value failed its checksum or could not be read: it is not served.
    #[error("{what} is damaged ({detail}) and is not served; {RECOVER}")]
    Damaged {
        /// `the value of key "k" of plugin "p"`.
        what: String,
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

/// What every damage error tells a sysadmin to do.
const RECOVER: &str = "To recover, stop torud and either restore a backup (`torud --restore FILE`, \
     a file made by `toructl store backup`) or start over with an empty store, keeping the \
     instance id (`torud --fresh-store`); see torud(8)";

impl StoreError {
    /// Whether the data itself is unusable (the exit status is then 65), as opposed to a
    /// busy or unreadable state directory.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::Corrupt { .. }
                | Self::Lost { .. }
                | Self::Mismatch { .. }
                | Self::Damaged { .. }
                | Self::SchemaTooNew { .. }
        )
    }
}

fn holder_text(pid: &Option<u32>) -> String {
    pid.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}"))
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

pub(super) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

pub(super) fn classify(path: &Path, op: &str, err: redb::Error) -> StoreError {
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
