//! The store under the real torud: a database emptied, damaged or of another
//! installation is refused at start (exit 65) with what to do; damage not
//! caught at start is never served; a backup taken under write load
//! restores every acknowledged write; starting afresh keeps the instance id.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ctl::*;
use support::*;

/// `torud --config CONFIG ARGS` of `setup`, to its end: (code, stdout, stderr).
fn offline(setup: &Setup, args: &[&str]) -> (Option<i32>, String, String) {
    setup.write_config();
    let output = Command::new(TORUD)
        .arg("--config")
        .arg(&setup.config)
        .args(args)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts torud on `setup`: its exit (code, stderr) if it refuses to run; if it
/// serves instead, it is stopped, and the code is that of the stop (0).
fn run_or_refuse(setup: &Setup) -> (Option<i32>, String) {
    setup.write_config();
    let log = setup.dir.path().join("run.log");
    let mut child = Command::new(TORUD)
        .arg("--config")
        .arg(&setup.config)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + LONG;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::os::unix::net::UnixStream::connect(setup.runtime.join("toru.sock")).is_ok() {
            signal(child.id(), "TERM");
            break child.wait().unwrap().code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "torud neither ran nor exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(&log).unwrap_or_default())
}

fn value(i: u64) -> String {
    format!("value {i:05} ").repeat(1 + (i % 5) as usize)
}

/// A store of hello's with `keys` keys set through hello's own KV, then a clean stop.
async fn filled(setup: &Setup, keys: u64) -> String {
    let mut torud = setup.start().await;
    for i in 0..keys {
        let answer = torud
            .unix(
                "PUT",
                &format!("/api/plugins/route/hello/kv/k{i:05}"),
                value(i),
            )
            .await;
        assert_eq!(answer.status, 204, "{}", answer.text());
    }
    let instance = torud.get("/api/instance").await.json()["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, stderr) = torud.stop();
    assert_eq!(code, Some(0), "{stderr}");
    instance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_store_is_refused_and_a_fresh_one_keeps_the_instance_id() {
    let setup = Setup::new();
    let instance = filled(&setup, 3).await;
    std::fs::File::create(setup.state.join("toru.redb")).unwrap();

    let (code, stderr) = setup.run_to_exit();
    assert_eq!(code, Some(65), "{stderr}");
    for needle in [
        "missing or empty",
        &instance,
        "torud --restore FILE",
        "torud --fresh-store",
    ] {
        assert!(stderr.contains(needle), "{needle} missing from {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Starting afresh is asked for, and said.
    let (code, stdout, stderr) = offline(&setup, &["--fresh-store"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("an empty store for instance {instance}")),
        "{stdout}"
    );
    let mut torud = setup.start().await;
    let id = torud.get("/api/instance").await.json()["instance_id"].clone();
    assert_eq!(id, instance.as_str());
    assert_eq!(
        torud.get("/api/plugins/route/hello/kv/k00000").await.status,
        404
    );
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_another_installation_is_refused() {
    let setup = Setup::new();
    let ours = filled(&setup, 1).await;
    let other = Setup::new();
    let theirs = filled(&other, 1).await;
    std::fs::copy(other.state.join("toru.redb"), setup.state.join("toru.redb")).unwrap();
    let (code, stderr) = setup.run_to_exit();
    assert_eq!(code, Some(65), "{stderr}");
    assert!(
        stderr.contains(&format!("belongs to installation {theirs}"))
            && stderr.contains(&format!("instance-id beside it says {ours}")),
        "{stderr}"
    );
}

/// Bytes overwritten in the middle of a store of 300 keys: torud refuses to
/// start, saying so; told not to verify at start, it serves each key's exact
/// value or an error, never a wrong value, and logs each damaged key once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_in_the_middle_is_refused_at_start_or_answered_as_an_error() {
    let mut setup = Setup::new();
    let keys = 300;
    filled(&setup, keys).await;
    let db = setup.state.join("toru.redb");
    let pristine = std::fs::read(&db).unwrap();

    // Damage somewhere in the middle that torud's check at start finds.
    let damaged = (pristine.len() / 8192..pristine.len() / 4096)
        .map(|page| {
            let mut bytes = pristine.clone();
            let at = page * 4096 + 1024;
            bytes[at..at + 32].iter_mut().for_each(|b| *b ^= 0x5a);
            bytes
        })
        .find(|bytes| {
            std::fs::write(&db, bytes).unwrap();
            let (code, stderr) = run_or_refuse(&setup);
            assert!(!stderr.contains("panicked"), "{stderr}");
            if code == Some(65) {
                assert!(stderr.contains("is damaged"), "{stderr}");
                assert!(stderr.contains("torud --restore FILE"), "{stderr}");
            }
            // Otherwise the damage was in unused space and torud served.
            code == Some(65)
        })
        .expect("no damage in the middle was found at start");

    // The same file, the check at start off: nothing damaged is served.
    std::fs::write(&db, &damaged).unwrap();
    setup.extra = "[store]\nverify_on_start = \"after-crash\"".to_owned();
    let mut torud = setup.start().await;
    let (mut exact, mut errors) = (0, 0);
    for i in 0..keys {
        let answer = torud
            .get(&format!("/api/plugins/route/hello/kv/k{i:05}"))
            .await;
        match answer.status {
            200 if answer.text() == value(i) => exact += 1,
            500 => errors += 1,
            status => panic!("key {i}: {status} {:?}", answer.text()),
        }
        // The admin API says the same.
        let admin = torud
            .unix(
                "POST",
                "/api/plugins/hello/kv",
                format!(r#"{{"action":"get","key":"k{i:05}"}}"#),
            )
            .await;
        match admin.status {
            200 => assert_eq!(admin.json()["value"], value(i).as_str(), "key {i}"),
            500 => assert!(
                admin.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("is damaged")
            ),
            status => panic!("admin key {i}: {status}"),
        }
    }
    let (_, stderr) = torud.stop();
    eprintln!("{exact} keys exact, {errors} answered as errors");
    assert!(errors > 0, "the damage was not noticed: {exact} exact");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let reported = stderr
        .lines()
        .filter(|l| l.contains("damaged value in the store"))
        .count();
    assert_eq!(
        reported, errors,
        "each damaged key is logged once:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .filter(|l| l.contains("damaged value in the store"))
            .all(|l| l.contains("ERROR") && l.contains("plugin") && l.contains("key")),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_write_load_restores_every_acknowledged_write() {
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let writer = torud.probe();
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (acked, stop) = (acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 1;
            while !stop.load(Ordering::SeqCst) {
                let path = format!("/api/plugins/route/hello/kv/k{i:05}");
                let answer = writer.unix("PUT", &path, value(i)).await;
                assert_eq!(answer.status, 204, "{}", answer.text());
                acked.store(i, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = acked.load(Ordering::SeqCst);
    let file = setup.dir.path().join("backup.redb");
    let backup = {
        let (unix, file) = (torud.unix.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            finish(
                command()
                    .arg("--socket")
                    .arg(&unix)
                    .args(["store", "backup"])
                    .arg(&file)
                    .output()
                    .unwrap(),
            )
        })
        .await
        .unwrap()
        .ok()
    };
    let after = acked.load(Ordering::SeqCst);
    assert!(backup.stdout.contains("backup of instance"), "{backup:#?}");
    assert!(after > before, "the writes stopped during the backup");
    // Written once the backup was done: not in it.
    while acked.load(Ordering::SeqCst) < after + 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let last = acked.load(Ordering::SeqCst);
    // An existing file is not replaced.
    ctl(&torud, &["store", "backup", file.to_str().unwrap()]).fails(1, "exists");
    let (code, stderr) = torud.stop();
    assert_eq!(code, Some(0), "{stderr}");

    // A restore needs torud stopped...
    let running = setup.start().await;
    let (code, _, stderr) = offline(&setup, &["--restore", file.to_str().unwrap()]);
    assert_eq!(code, Some(75), "{stderr}");
    assert!(stderr.contains("systemctl stop toru"), "{stderr}");
    drop(running);

    let (code, stdout, stderr) = offline(&setup, &["--restore", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("restored"), "{stdout}");
    assert!(stdout.contains("toru.redb.before-restore-"), "{stdout}");
    let mut torud = setup.start().await;
    for i in 1..=before {
        let answer = torud
            .get(&format!("/api/plugins/route/hello/kv/k{i:05}"))
            .await;
        assert_eq!(
            answer.status, 200,
            "acknowledged write {i} (of {before}) lost"
        );
        assert_eq!(answer.text(), value(i), "key {i}");
    }
    let answer = torud
        .get(&format!("/api/plugins/route/hello/kv/k{last:05}"))
        .await;
    assert_eq!(answer.status, 404, "a write after the backup is in it");
    eprintln!(
        "backup: {before} writes acknowledged before it, {after} when it ended, {last} in all"
    );
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_during_a_burst_of_concurrent_sets_loses_none_acknowledged() {
    // Many sets in flight at once: torud commits them together (group commit), and
    // answers each only once its commit is durable.
    let setup = Setup::new();
    let mut torud = setup.start().await;
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let (torud, acked, stop) = (torud.probe(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("w{w:02}-{i:05}");
                    let path = format!("/api/plugins/route/hello/kv/{key}");
                    let answer = torud.try_unix("PUT", &path, value(i)).await;
                    // Once torud is killed, requests fail: only a 204 is an acknowledgement.
                    if answer.is_some_and(|a| a.status == 204) {
                        acked.lock().unwrap().push(key);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 800 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The commits were shared: far fewer than one per write.
    let metrics = torud.get("/metrics").await.text();
    let figure = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let (writes, commits) = (
        figure("toru_kv_writes_total"),
        figure("toru_kv_commits_total"),
    );
    assert!(
        writes >= 800 && commits * 2 < writes,
        "{writes} writes in {commits} commits"
    );
    support::kill_with_plugins(torud.child.as_mut().unwrap());
    torud.child = None;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let torud = setup.start().await;
    let mut missing = Vec::new();
    for key in &acked {
        let answer = torud
            .get(&format!("/api/plugins/route/hello/kv/{key}"))
            .await;
        if answer.status != 200 {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged sets lost: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
    eprintln!(
        "{} acknowledged sets survived a kill -9 ({writes} writes in {commits} commits before it)",
        acked.len()
    );
}
