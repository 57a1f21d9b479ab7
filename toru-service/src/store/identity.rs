//! Licences kept per plugin, and what the installation's identity is tied
//! to: the hash of the machine id it was made on.

use tracing::info;
use uuid::Uuid;

use super::seal::{seal, unseal};
use super::{LICENSES, META, PoisonError, Store, StoreResult, open};

impl Store {
    /// The licence line installed for `plugin`.
    pub fn license(&self, plugin: &str) -> StoreResult<Option<String>> {
        self.read("license", |txn| {
            let table = txn.open_table(LICENSES)?;
            let Some(stored) = table.get(plugin)? else {
                return Ok(None);
            };
            let bytes = unseal("licenses", &[plugin.as_bytes()], stored.value()).map_err(|e| {
                redb::Error::Corrupted(format!("the licence of plugin {plugin:?}: {e}"))
            })?;
            String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                redb::Error::Corrupted(format!("the licence of plugin {plugin:?} is not text"))
            })
        })
    }

    /// Installs `line` as `plugin`'s licence (replacing any); durable when this returns.
    pub fn set_license(&self, plugin: &str, line: &str) -> StoreResult<()> {
        let sealed = seal("licenses", &[plugin.as_bytes()], line.as_bytes());
        self.write("set_license", |txn| {
            txn.open_table(LICENSES)?
                .insert(plugin, sealed.as_slice())?;
            Ok(())
        })
    }

    /// Removes `plugin`'s licence; whether there was one.
    pub fn remove_license(&self, plugin: &str) -> StoreResult<bool> {
        self.write("remove_license", |txn| {
            Ok(txn.open_table(LICENSES)?.remove(plugin)?.is_some())
        })
    }

    /// The machine-id hash recorded with the instance id, if any.
    pub fn machine_hash(&self) -> StoreResult<Option<String>> {
        self.read("machine_hash", |txn| {
            Ok(txn
                .open_table(META)?
                .get("machine_id_hash")?
                .map(|v| v.value().to_owned()))
        })
    }

    /// Records `hash` as the machine the instance id belongs to.
    pub fn set_machine_hash(&self, hash: &str) -> StoreResult<()> {
        self.write("set_machine_hash", |txn| {
            txn.open_table(META)?.insert("machine_id_hash", hash)?;
            Ok(())
        })
    }

    /// Makes a new instance id, in the database and `instance-id`, tied to the machine
    /// `hash` (when known). Every licence made for the old id stops being valid.
    pub fn regenerate_instance_id(&self, hash: Option<&str>) -> StoreResult<Uuid> {
        let id = Uuid::new_v4();
        let text = id.to_string();
        self.write("regenerate_instance_id", |txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert("instance_id", text.as_str())?;
            if let Some(hash) = hash {
                meta.insert("machine_id_hash", hash)?;
            }
            Ok(())
        })?;
        open::write_instance_file(&self.dir, id)?;
        let old = std::mem::replace(
            &mut *self
                .instance_id
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            id,
        );
        info!(old = %old, new = %id, "instance id regenerated");
        Ok(id)
    }
}
