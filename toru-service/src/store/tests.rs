#![allow(clippy::unwrap_used)]

use super::*;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    (tmp, dir)
}

/// Writes many keys in one transaction, so large fixtures do not cost one fsync per key.
fn bulk_set(store: &Store, plugin: &str, keys: &[String]) {
    store
        .write("bulk_set", |txn| {
            let mut table = txn.open_table(KV)?;
            for key in keys {
                let sealed = seal("kv", &[plugin.as_bytes(), key.as_bytes()], key.as_bytes());
                table.insert((plugin, key.as_str()), sealed.as_slice())?;
            }
            Ok(())
        })
        .unwrap();
}

fn all_keys(store: &Store, plugin: &str) -> Vec<String> {
    let (keys, next) = store.kv_list(plugin, "", None, usize::MAX).unwrap();
    assert_eq!(next, None);
    keys
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn instance_id_made_once_and_kept() {
    let (_tmp, dir) = state_dir();
    let store = Store::open(&dir).unwrap();
    let id = store.instance_id();
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(store.path(), dir.join("toru.redb"));
    drop(store);
    for _ in 0..2 {
        assert_eq!(Store::open(&dir).unwrap().instance_id(), id);
    }
    let (_tmp2, other) = state_dir();
    assert_ne!(Store::open(&other).unwrap().instance_id(), id);
}

#[test]
fn kv_round_trip_binary_values() {
    let (_tmp, dir) = state_dir();
    let store = Store::open(&dir).unwrap();
    let every_byte: Vec<u8> = (0..=255).collect();
    let big: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
    assert_eq!(store.kv_get("p", "bytes").unwrap(), None);
    store.kv_set("p", "bytes", &every_byte).unwrap();
    store.kv_set("p", "big", &big).unwrap();
    store.kv_set("p", "empty", b"").unwrap();
    assert_eq!(store.kv_get("p", "bytes").unwrap().unwrap(), every_byte);
    assert_eq!(store.kv_get("p", "big").unwrap().unwrap(), big);
    assert_eq!(store.kv_get("p", "empty").unwrap().unwrap(), b"");
    store.kv_set("p", "bytes", b"overwritten").unwrap();
    assert_eq!(store.kv_get("p", "bytes").unwrap().unwrap(), b"overwritten");
    assert_eq!(store.kv_count("p").unwrap(), 3);
    assert!(store.kv_delete("p", "bytes").unwrap());
    assert!(!store.kv_delete("p", "bytes").unwrap());
    assert_eq!(store.kv_get("p", "bytes").unwrap(), None);
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.kv_get("p", "big").unwrap().unwrap(), big);
    assert_eq!(store.kv_count("p").unwrap(), 2);
}

#[test]
fn plugins_never_see_each_others_keys() {
    let (_tmp, dir) = state_dir();
    let store = Store::open(&dir).unwrap();
    let plugins = ["", "a", "a-b", "ab", "b", "a\0b"];
    let keys = ["", "x", "-b", "b", "b/x", "a-b", "\0", "\u{10ffff}"];
    for plugin in plugins {
        for key in keys {
            store
                .kv_set(plugin, key, format!("{plugin}|{key}").as_bytes())
                .unwrap();
        }
        store.kv_set(plugin, &format!("own-{plugin}"), b"").unwrap();
    }
    for plugin in plugins {
        let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        expected.push(format!("own-{plugin}"));
        expected.sort();
        assert_eq!(all_keys(&store, plugin), expected, "plugin {plugin:?}");
        assert_eq!(store.kv_count(plugin).unwrap(), expected.len() as u64);
        for key in keys {
            let value = store.kv_get(plugin, key).unwrap().unwrap();
            assert_eq!(value, format!("{plugin}|{key}").as_bytes());
        }
        for other in plugins.iter().filter(|o| **o != plugin) {
            assert_eq!(store.kv_get(plugin, &format!("own-{other}")).unwrap(), None);
            let (page, _) = store.kv_list(plugin, "own-", None, 100).unwrap();
            assert_eq!(page, vec![format!("own-{plugin}")]);
        }
    }
    assert_eq!(all_keys(&store, "c"), Vec::<String>::new());
    assert_eq!(store.kv_count("a-").unwrap(), 0);
    // Deleting everything of one plugin leaves its neighbours whole.
    for key in all_keys(&store, "a") {
        assert!(store.kv_delete("a", &key).unwrap());
    }
    assert_eq!(store.kv_count("a").unwrap(), 0);
    assert_eq!(store.kv_count("a-b").unwrap(), keys.len() as u64 + 1);
    assert_eq!(store.kv_count("").unwrap(), keys.len() as u64 + 1);
}

#[test]
fn kv_list_pages() {
    let (_tmp, dir) = state_dir();
    let store = Store::open(&dir).unwrap();
    let keys: Vec<String> = (0..2500).map(|i| format!("key-{i:04}")).collect();
    bulk_set(&store, "p", &keys);
    bulk_set(&store, "p", &["kex".into(), "kez".into(), "other".into()]);
    bulk_set(&store, "p-", &["key-9999".into()]);
    bulk_set(&store, "o", &["key-0000".into()]);

    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store.kv_list("p", "key-", after.as_deref(), 1000).unwrap();
        pages.push(page);
        match next {
            Some(cursor) => {
                assert_eq!(Some(&cursor), pages.last().unwrap().last());
                after = Some(cursor);
            }
            None => break,
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    assert_eq!(pages.concat(), keys);

    let page = |prefix, after, limit| store.kv_list("p", prefix, after, limit).unwrap();
    let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // `after` is exclusive, also when it names a missing key.
    assert_eq!(
        page("key-", Some("key-0005"), 3),
        (
            owned(&["key-0006", "key-0007", "key-0008"]),
            Some("key-0008".into())
        )
    );
    assert_eq!(page("key-", Some("key-0005x"), 1).0, owned(&["key-0006"]));
    // An exactly full last page says there is nothing more.
    assert_eq!(
        page("key-", Some("key-2497"), 2),
        (owned(&["key-2498", "key-2499"]), None)
    );
    // `after` below or beyond the prefix range.
    assert_eq!(
        page("key-", Some("a"), 2).0,
        owned(&["key-0000", "key-0001"])
    );
    assert_eq!(page("key-", Some("kez"), 10), (vec![], None));
    assert_eq!(page("key-", Some("key-2499"), 10), (vec![], None));
    // Prefix filtering and the whole namespace.
    assert_eq!(page("key-01", None, 1000).0.len(), 100);
    assert_eq!(page("ke", None, 10_000).0.len(), 2502);
    assert_eq!(page("k", Some("key-2499"), 10), (owned(&["kez"]), None));
    assert_eq!(page("zzz", None, 10), (vec![], None));
    assert_eq!(page("", Some("other"), 10), (vec![], None));
    // A zero limit still makes progress.
    assert_eq!(
        page("key-", None, 0),
        (owned(&["key-0000"]), Some("key-0000".into()))
    );
}

#[test]
fn plugin_records_persist_and_default_to_enabled() {
    let (_tmp, dir) = state_dir();
    assert!(PluginRecord::default().enabled);
    assert_eq!(
        serde_json::from_str::<PluginRecord>("{}").unwrap(),
        PluginRecord::default()
    );
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.plugin_record("a").unwrap(), None);
    assert!(store.plugin_records().unwrap().is_empty());
    let failed = PluginRecord {
        enabled: false,
        failed: Some("crashed 5 times in 60s".into()),
    };
    store.set_plugin_record("a", &failed).unwrap();
    store
        .set_plugin_record("b", &PluginRecord::default())
        .unwrap();
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.plugin_record("a").unwrap(), Some(failed.clone()));
    let all = store.plugin_records().unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["a"], failed);
    assert!(all["b"].enabled && all["b"].failed.is_none());
}

#[test]
fn events_order_filter_and_limit() {
    let (_tmp, dir) = state_dir();
    let store = Store::open(&dir).unwrap();
    let recorded = [
        Event::new(None, EventKind::DaemonStarted, "v1"),
        Event::new(Some("a"), EventKind::Started, "pid 10"),
        Event::new(Some("b"), EventKind::Started, "pid 11"),
        Event::new(Some("a"), EventKind::Exited, "code 1"),
        Event::new(Some("a"), EventKind::Restarted, ""),
        Event::new(Some("ab"), EventKind::Hung, ""),
    ];
    for (i, event) in recorded.iter().enumerate() {
        assert_eq!(store.record_event(event).unwrap(), i as u64 + 1);
    }
    let all = store.events(None, 100).unwrap();
    assert_eq!(
        all.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        all.iter().map(|e| &e.event).collect::<Vec<_>>(),
        recorded.iter().collect::<Vec<_>>()
    );
    let newest = store.events(None, 2).unwrap();
    assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), [5, 6]);
    let of_a = store.events(Some("a"), 100).unwrap();
    assert_eq!(of_a.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 4, 5]);
    let of_a = store.events(Some("a"), 2).unwrap();
    assert_eq!(of_a.iter().map(|e| e.seq).collect::<Vec<_>>(), [4, 5]);
    assert!(store.events(Some("c"), 100).unwrap().is_empty());
    assert!(store.events(None, 0).unwrap().is_empty());

    let json = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(json["seq"], 1);
    assert_eq!(json["kind"], "daemon_started");
    assert_eq!(json["plugin"], serde_json::Value::Null);
    assert_eq!(serde_json::from_value::<StoredEvent>(json).unwrap(), all[0]);
}

#[test]
fn events_pruned_to_newest() {
    let (_tmp, dir) = state_dir();
    let store = Store::open_with(&dir, 5).unwrap();
    for i in 1..=12 {
        let event = Event::new(Some("p"), EventKind::Started, i.to_string());
        assert_eq!(store.record_event(&event).unwrap(), i);
    }
    let events = store.events(None, 100).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [8, 9, 10, 11, 12]
    );
    assert_eq!(events[0].event.detail, "8");
    let stored = store
        .read("len", |txn| Ok(txn.open_table(EVENTS)?.len()?))
        .unwrap();
    assert_eq!(stored, 5);
    drop(store);
    // Sequence numbers keep increasing across restarts.
    let store = Store::open_with(&dir, 5).unwrap();
    let event = Event::new(None, EventKind::DaemonStarted, "");
    assert_eq!(store.record_event(&event).unwrap(), 13);
    assert_eq!(store.events(None, 100).unwrap()[0].seq, 9);
    assert_eq!(MAX_EVENTS, 10_000);
    assert_eq!(
        Store::open(dir.parent().unwrap()).unwrap().max_events,
        MAX_EVENTS
    );
}

#[test]
fn second_open_is_locked_until_first_dropped() {
    let (_tmp, dir) = state_dir();
    let first = Store::open(&dir).unwrap();
    let err = Store::open(&dir).unwrap_err();
    let pid = std::process::id();
    assert!(
        matches!(&err, StoreError::Locked { path, holder_pid: Some(p) } if *path == dir && *p == pid),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "state directory {} is in use by another torud (pid {pid})",
            dir.display()
        )
    );
    // The refused open must not have wiped the holder's pid.
    assert_eq!(
        fs::read_to_string(dir.join("torud.lock")).unwrap(),
        format!("{pid}\n")
    );
    let id = first.instance_id();
    drop(first);
    assert_eq!(Store::open(&dir).unwrap().instance_id(), id);
}

#[test]
fn corrupt_file_is_reported() {
    let (_tmp, dir) = state_dir();
    fs::create_dir_all(&dir).unwrap();
    let db = dir.join("toru.redb");
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(&db, &garbage).unwrap();
    let err = Store::open(&dir).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt { path, .. } if *path == db),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&db.display().to_string()), "{message}");
    assert!(message.contains("torud --restore FILE"), "{message}");
    assert!(message.contains("torud --fresh-store"), "{message}");
    assert_eq!(
        fs::read(&db).unwrap(),
        garbage,
        "a corrupt file must be left as it was"
    );
}

#[test]
fn newer_schema_is_refused() {
    let (_tmp, dir) = state_dir();
    drop(Store::open(&dir).unwrap());
    {
        let db = Database::create(dir.join("toru.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("schema_version", "3")
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Store::open(&dir).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("schema version 3"), "{err}");
}

#[test]
fn unusable_state_dir_is_io_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let dir = file.join("state");
    let err = Store::open(&dir).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io { path, .. } if *path == dir),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&dir.display().to_string()),
        "{err}"
    );
}

#[test]
fn files_are_private() {
    let (_tmp, parent) = state_dir();
    let dir = parent.join("nested");
    let store = Store::open(&dir).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o777;
    assert_eq!(mode(&parent), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(store.path()), 0o600);
    assert_eq!(mode(&dir.join("torud.lock")), 0o600);
    drop(store);
    // A file someone else loosened is tightened on the next open.
    fs::set_permissions(dir.join("toru.redb"), fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&dir).unwrap();
    assert_eq!(mode(store.path()), 0o600);
}

const CHILD_ENV: &str = "TORU_STORE_TEST_CHILD_DIR";
const CHILD_MARKER: &str = "child-writer: set";

/// Runs only when re-executed by `acknowledged_write_survives_sigkill`; a no-op otherwise.
#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = Store::open(Path::new(&dir)).unwrap();
    store.kv_set("crash", "acked", b"durable").unwrap();
    println!("{CHILD_MARKER}");
    io::stdout().flush().unwrap();
    // Keep committing so the kill lands mid-write; the deadline stops an orphaned child.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0u64;
    while Instant::now() < deadline {
        store
            .kv_set("crash", &format!("spin-{i}"), &[7; 4096])
            .unwrap();
        i += 1;
    }
}

#[test]
fn acknowledged_write_survives_sigkill() {
    let (_tmp, dir) = state_dir();
    // Test names leave out the crate, which heads module_path!().
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{module}::child_writer"), "--nocapture"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = io::BufReader::new(child.stdout.take().unwrap());
    let acked = stdout
        .lines()
        .any(|line| line.unwrap().contains(CHILD_MARKER));
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(acked, "child never reported its write");

    let started = Instant::now();
    let store = Store::open(&dir).unwrap();
    let elapsed = started.elapsed();
    eprintln!("reopen after SIGKILL took {elapsed:?}");
    assert_eq!(store.kv_get("crash", "acked").unwrap().unwrap(), b"durable");
    let spins = store.kv_count("crash").unwrap() - 1;
    eprintln!("child committed {spins} further writes before the kill");
    assert!(elapsed < Duration::from_secs(2), "reopen took {elapsed:?}");
    store.kv_set("crash", "after", b"ok").unwrap();
    assert_eq!(store.kv_get("crash", "after").unwrap().unwrap(), b"ok");
}

#[test]
fn damaged_pages_are_errors_not_panics() {
    let mut corrupt_reports = 0;
    for page in 1..48 {
        let (_tmp, dir) = state_dir();
        let store = Store::open(&dir).unwrap();
        let keys: Vec<String> = (0..2000).map(|i| format!("key-{i:04}")).collect();
        bulk_set(&store, "p", &keys);
        store
            .set_plugin_record("a", &PluginRecord::default())
            .unwrap();
        store
            .record_event(&Event::new(None, EventKind::DaemonStarted, ""))
            .unwrap();
        drop(store);
        let db = dir.join("toru.redb");
        let mut bytes = fs::read(&db).unwrap();
        let Some(damaged) = bytes.get_mut(page * 4096..page * 4096 + 512) else {
            break;
        };
        damaged.iter_mut().for_each(|b| *b ^= 0x5a);
        fs::write(&db, &bytes).unwrap();

        let outcome = std::panic::catch_unwind(|| {
            let store = match Store::open(&dir) {
                Ok(store) => store,
                Err(e) => return vec![Err(e)],
            };
            vec![
                store.kv_list("p", "", None, 5000).map(drop),
                store.kv_count("p").map(drop),
                store.kv_set("p", "new", b"x"),
                store.plugin_records().map(drop),
                store.events(None, 10).map(drop),
            ]
        });
        for result in outcome.expect("a store call panicked") {
            match result {
                Ok(()) | Err(StoreError::Database(_)) => {}
                Err(StoreError::Corrupt { path, .. }) if path == db => corrupt_reports += 1,
                Err(e) => panic!("page {page}: unexpected error {e:?}"),
            }
        }
    }
    assert!(corrupt_reports > 0, "no damage was ever detected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_each_is_answered_for_itself() {
    let (_tmp, dir) = state_dir();
    let handle = Handle::new(Store::open(&dir).unwrap()).unwrap();
    // 8 "plugins", 32 writes each, all in flight at once.
    let writes =
        (0..8).flat_map(|p| (0..32).map(move |k| (format!("plugin-{p}"), format!("key-{k:02}"))));
    let sets = writes.clone().map(|(plugin, key)| {
        let handle = handle.clone();
        tokio::spawn(async move {
            let value = format!("{plugin}/{key}").into_bytes();
            handle.kv_set(&plugin, &key, value).await
        })
    });
    for set in futures_util::future::join_all(sets).await {
        set.unwrap().unwrap();
    }
    for (plugin, key) in writes.clone() {
        let value = handle.kv_get(&plugin, &key).await.unwrap();
        assert_eq!(value, Some(format!("{plugin}/{key}").into_bytes()));
    }
    let counts = handle.commit_counts();
    assert_eq!(counts.writes, 256);
    assert!(counts.commits < 256, "{counts:?}");
    // Deletes in the same batches say, each, whether their key existed.
    let deletes = ["key-00", "never-set", "key-01"].map(|key| {
        let handle = handle.clone();
        tokio::spawn(async move { handle.kv_delete("plugin-0", key).await })
    });
    let existed: Vec<bool> = futures_util::future::join_all(deletes)
        .await
        .into_iter()
        .map(|d| d.unwrap().unwrap())
        .collect();
    assert_eq!(existed, [true, false, true]);
    assert_eq!(handle.kv_get("plugin-0", "key-00").await.unwrap(), None);

    // The last handle gone, the committing thread is done and the store closed: it
    // opens again at once, with every write.
    drop(handle);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.kv_count("plugin-7").unwrap(), 32);
    assert!(store.last_stop_was_clean());
}
