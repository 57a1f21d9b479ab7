//! What the instance id is tied to: the machine it was made on, known by a
//! hash of `/etc/machine-id` (the file itself is never stored). A disk image
//! cloned to another machine, or a backup restored on one, keeps its instance
//! id and its licences: torud says so, and never changes the id by itself.

use std::path::Path;

use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::store;

/// Where the instance id stands against this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Machine {
    /// `sha256:<hex>` of the machine id now, when it can be read.
    pub(crate) hash: Option<String>,
    /// Whether it differs from the one the instance id was made on; `None` when unknown.
    pub(crate) changed: Option<bool>,
}

/// `sha256:<hex>` of the machine id in `path`, trimmed; `None` when unreadable or empty.
pub(crate) fn hash_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let id = text.trim();
    if id.is_empty() {
        return None;
    }
    let digest = Sha256::digest(id.as_bytes());
    Some(format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// Compares the machine in `path` with the one `store` recorded; records it when none was.
pub(crate) async fn check(store: &store::Handle, path: &Path) -> Machine {
    let Some(hash) = hash_of(path) else {
        info!(path = %path.display(), "no machine id to tie the instance id to");
        return Machine {
            hash: None,
            changed: None,
        };
    };
    let changed = match store.machine_hash().await {
        Ok(Some(recorded)) if recorded == hash => Some(false),
        Ok(Some(recorded)) => {
            warn!(
                instance_id = %store.instance_id(),
                made_on = %recorded,
                now_on = %hash,
                "the machine id changed since the instance id was made (a cloned disk, or a \
                 backup restored on another machine?): the instance id, and its licences, are \
                 kept; `toructl instance-id --regenerate` makes a new one"
            );
            Some(true)
        }
        Ok(None) => match store.set_machine_hash(&hash).await {
            Ok(()) => Some(false),
            Err(e) => {
                warn!(error = %e, "cannot record the machine id's hash");
                None
            }
        },
        Err(e) => {
            warn!(error = %e, "cannot read the recorded machine id's hash");
            None
        }
    };
    Machine {
        hash: Some(hash),
        changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_of_the_trimmed_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("machine-id");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").unwrap();
        let hash = hash_of(&path).unwrap();
        assert!(
            hash.starts_with("sha256:") && hash.len() == 7 + 64,
            "{hash}"
        );
        std::fs::write(&path, "0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(hash_of(&path), Some(hash));
        std::fs::write(&path, "\n").unwrap();
        assert_eq!(hash_of(&path), None);
        assert_eq!(hash_of(&dir.path().join("none")), None);
    }
}
