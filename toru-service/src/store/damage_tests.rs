//! A damaged, lost or foreign database is found and said; backups, restores
//! and starting afresh.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;

use super::*;

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    (tmp, dir)
}

/// The value of key `i`: different for every key, so a value moved to
/// another key is a wrong value.
fn value(i: usize) -> Vec<u8> {
    format!("value {i:04} ").repeat(1 + i % 7).into_bytes()
}

fn read_write(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .unwrap()
}

fn filled(dir: &Path, keys: usize) -> Uuid {
    let store = Store::open(dir).unwrap();
    for i in 0..keys {
        store
            .kv_set("p", &format!("key-{i:04}"), &value(i))
            .unwrap();
    }
    store.instance_id()
}

#[test]
fn the_instance_id_is_kept_beside_the_database_too() {
    let (_tmp, dir) = state_dir();
    let id = filled(&dir, 1);
    let file = dir.join("instance-id");
    assert_eq!(fs::read_to_string(&file).unwrap(), format!("{id}\n"));
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A store of an earlier torud (no file) gets one from its database.
    fs::remove_file(&file).unwrap();
    assert_eq!(Store::open(&dir).unwrap().instance_id(), id);
    assert_eq!(fs::read_to_string(&file).unwrap(), format!("{id}\n"));
}

#[test]
fn an_emptied_or_deleted_database_is_refused_not_made_anew() {
    let (_tmp, dir) = state_dir();
    let id = filled(&dir, 10);
    let db = dir.join("toru.redb");
    fs::File::create(&db).unwrap(); // truncated to 0 bytes
    let err = Store::open(&dir).unwrap_err();
    assert!(
        matches!(&err, StoreError::Lost { instance_id, .. } if *instance_id == id),
        "{err:?}"
    );
    assert!(err.is_damage());
    let message = err.to_string();
    for needle in [
        "missing or empty",
        &id.to_string(),
        "torud --restore FILE",
        "torud --fresh-store",
    ] {
        assert!(message.contains(needle), "{needle} missing from {message}");
    }
    assert_eq!(
        fs::metadata(&db).unwrap().len(),
        0,
        "the refused open wrote to the file"
    );
    fs::remove_file(&db).unwrap();
    assert!(matches!(Store::open(&dir), Err(StoreError::Lost { .. })));
}

#[test]
fn starting_afresh_keeps_the_instance_id_and_sets_the_old_file_aside() {
    let (_tmp, dir) = state_dir();
    let id = filled(&dir, 10);
    let fresh = start_afresh(&dir).unwrap();
    assert_eq!(fresh.instance_id, id);
    let aside = fresh.set_aside.unwrap();
    assert!(
        aside.to_string_lossy().contains("toru.redb.set-aside-"),
        "{aside:?}"
    );
    assert!(fs::metadata(&aside).unwrap().len() > 0);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.instance_id(), id);
    assert_eq!(store.kv_count("p").unwrap(), 0);
    drop(store);
    // After a loss, too.
    fs::File::create(dir.join("toru.redb")).unwrap();
    let fresh = start_afresh(&dir).unwrap();
    assert_eq!((fresh.instance_id, fresh.set_aside), (id, None));
}

#[test]
fn a_database_of_another_installation_is_refused() {
    let (_tmp, dir) = state_dir();
    let (_other_tmp, other) = state_dir();
    let id = filled(&dir, 1);
    let other_id = filled(&other, 1);
    fs::copy(other.join("toru.redb"), dir.join("toru.redb")).unwrap();
    let err = Store::open(&dir).unwrap_err();
    assert!(
        matches!(&err, StoreError::Mismatch { in_database, in_file, .. }
            if *in_database == other_id && *in_file == id),
        "{err:?}"
    );
    assert!(err.to_string().contains("torud --restore FILE"), "{err}");
}

#[test]
fn an_unclean_stop_is_noticed_and_a_clean_one_recorded() {
    let (_tmp, dir) = state_dir();
    drop(Store::open(&dir).unwrap());
    assert_eq!(fs::read_to_string(dir.join("torud.lock")).unwrap(), "");
    let store = Store::open(&dir).unwrap();
    assert!(store.last_stop_was_clean());
    // What a torud killed while running leaves.
    std::mem::forget(store);
    let (_tmp2, dir2) = state_dir();
    fs::create_dir_all(&dir2).unwrap();
    fs::copy(dir.join("toru.redb"), dir2.join("toru.redb")).unwrap();
    fs::copy(dir.join("instance-id"), dir2.join("instance-id")).unwrap();
    fs::write(dir2.join("torud.lock"), "4242\n").unwrap();
    let store = Store::open_verifying(&dir2, VerifyOnStart::AfterCrash).unwrap();
    assert!(!store.last_stop_was_clean());
}

/// Bytes overwritten in the middle of a store of a few hundred keys: with
/// the whole file verified at start the open is refused; without it, each
/// key answers its exact value or an error, never a wrong value.
#[test]
fn damage_in_the_middle_is_refused_at_start_or_never_served() {
    let (_tmp, dir) = state_dir();
    let keys = 400;
    filled(&dir, keys);
    let db = dir.join("toru.redb");
    let pristine = fs::read(&db).unwrap();
    let pages = pristine.len() / 4096;
    let (mut refused, mut errors, mut exact) = (0, 0, 0);
    for page in 1..pages {
        for at in [16, 1000, 3000] {
            let mut bytes = pristine.clone();
            let start = page * 4096 + at;
            bytes[start..start + 24].iter_mut().for_each(|b| *b ^= 0xa5);
            fs::write(&db, &bytes).unwrap();
            match Store::open(&dir) {
                Err(StoreError::Corrupt { .. }) => refused += 1,
                Err(e) => panic!("page {page}+{at}: {e:?}"),
                Ok(store) => {
                    // Damage in free space: nothing to refuse, everything exact.
                    for i in 0..keys {
                        let got = store.kv_get("p", &format!("key-{i:04}")).unwrap();
                        assert_eq!(got, Some(value(i)), "page {page}+{at}: key {i}");
                    }
                }
            }
            // The same file, not verified at start (a clean stop under "after-crash").
            fs::write(&db, &bytes).unwrap();
            fs::write(dir.join("torud.lock"), "").unwrap();
            let store = match Store::open_verifying(&dir, VerifyOnStart::AfterCrash) {
                Ok(store) => store,
                Err(e) => {
                    assert!(e.is_damage(), "page {page}+{at}: {e:?}");
                    continue;
                }
            };
            for i in 0..keys {
                match store.kv_get("p", &format!("key-{i:04}")) {
                    Ok(Some(got)) if got == value(i) => exact += 1,
                    Ok(got) => panic!("page {page}+{at}: key {i} answered {got:?}"),
                    Err(StoreError::Damaged { what, .. }) => {
                        assert!(what.contains(&format!("key-{i:04}")), "{what}");
                        errors += 1;
                    }
                    Err(e) => panic!("page {page}+{at}: key {i}: {e:?}"),
                }
            }
        }
    }
    fs::write(&db, &pristine).unwrap();
    eprintln!(
        "{pages} pages: {refused} damaged files refused at start; unverified: {exact} exact values, {errors} errors"
    );
    assert!(refused > 0 && errors > 0, "the damage was never noticed");
}

#[test]
fn a_schema_1_store_is_upgraded_and_its_values_sealed() {
    let (_tmp, dir) = state_dir();
    fs::create_dir_all(&dir).unwrap();
    {
        let db = Database::create(dir.join("toru.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            meta.insert("schema_version", "1").unwrap();
            meta.insert("instance_id", "c6f93da1-57db-4c4e-b6ac-ff35f41227c6")
                .unwrap();
            let mut kv = txn.open_table(KV).unwrap();
            kv.insert(("p", "k"), &b"bare"[..]).unwrap();
            let mut plugins = txn.open_table(PLUGINS).unwrap();
            plugins.insert("p", &br#"{"enabled":false}"#[..]).unwrap();
            let mut events = txn.open_table(EVENTS).unwrap();
            let event =
                serde_json::to_vec(&Event::new(None, EventKind::DaemonStarted, "old")).unwrap();
            events.insert(1, event.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = Store::open(&dir).unwrap();
    assert_eq!(
        store.instance_id().to_string(),
        "c6f93da1-57db-4c4e-b6ac-ff35f41227c6"
    );
    assert_eq!(store.kv_get("p", "k").unwrap().unwrap(), b"bare");
    assert!(!store.plugin_record("p").unwrap().unwrap().enabled);
    assert_eq!(store.events(None, 10).unwrap()[0].event.detail, "old");
    drop(store);
    assert_eq!(
        Store::open(&dir)
            .unwrap()
            .kv_get("p", "k")
            .unwrap()
            .unwrap(),
        b"bare"
    );
}

#[test]
fn a_backup_is_a_store_of_its_own_and_restores_into_place() {
    let (_tmp, dir) = state_dir();
    let id = filled(&dir, 50);
    let store = Store::open(&dir).unwrap();
    store
        .set_plugin_record(
            "p",
            &PluginRecord {
                enabled: false,
                failed: None,
            },
        )
        .unwrap();
    store
        .record_event(&Event::new(Some("p"), EventKind::Disabled, "x"))
        .unwrap();
    let backup_path = dir.parent().unwrap().join("backup.redb");
    let file = read_write(&backup_path);
    let counts = store.backup(&file).unwrap();
    drop(file);
    // Written after the backup: not in it.
    store.kv_set("p", "later", b"x").unwrap();
    drop(store);
    assert_eq!(counts.keys, 50);
    assert_eq!((counts.plugins, counts.records, counts.events), (1, 1, 1));
    assert_eq!(counts.instance_id, id.to_string());
    assert_eq!(inspect(&backup_path).unwrap(), counts);

    // Into a new state directory: the backup's instance id comes with it.
    let (_tmp2, other) = state_dir();
    let other_id = filled(&other, 3);
    let restored = restore(&other, &backup_path).unwrap();
    assert_eq!(restored.counts, counts);
    assert_eq!(restored.replaced_instance, Some(other_id));
    assert!(restored.set_aside.is_some());
    let store = Store::open(&other).unwrap();
    assert_eq!(store.instance_id(), id);
    for i in 0..50 {
        assert_eq!(
            store.kv_get("p", &format!("key-{i:04}")).unwrap(),
            Some(value(i))
        );
    }
    assert_eq!(store.kv_get("p", "later").unwrap(), None);
    assert!(!store.plugin_record("p").unwrap().unwrap().enabled);
    // A restore needs torud stopped.
    assert!(matches!(
        restore(&other, &backup_path),
        Err(StoreError::Locked { .. })
    ));
}

#[test]
fn a_damaged_backup_is_refused_and_nothing_is_replaced() {
    let (_tmp, dir) = state_dir();
    let id = filled(&dir, 200);
    let backup_path = dir.parent().unwrap().join("backup.redb");
    {
        let store = Store::open(&dir).unwrap();
        store.backup(&read_write(&backup_path)).unwrap();
    }
    let mut bytes = fs::read(&backup_path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64]
        .iter_mut()
        .for_each(|b| *b ^= 0xff);
    fs::write(&backup_path, &bytes).unwrap();
    let err = restore(&dir, &backup_path).unwrap_err();
    assert!(err.is_damage(), "{err:?}");
    assert!(!dir.join("toru.redb.restoring").exists());
    let store = Store::open(&dir).unwrap();
    assert_eq!(
        (store.instance_id(), store.kv_count("p").unwrap()),
        (id, 200)
    );
}
