//! Licences with the real torud, toructl and toru-license: the `licensed`
//! example refuses to serve without a licence of its vendor's key, serves
//! once one is installed, stops when it is removed or the instance id is
//! regenerated; bad licences are refused with the reason and nothing is
//! stored; protocol-1 plugins get theirs in `TORU_LICENSE_KEY`; a new
//! machine id is noticed and never changes the instance id by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ctl;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use chrono::Utc;
use ctl::*;
use support::*;
use toru_plugin_api::license::Claims;
use toru_plugin_api::license::vendor::SecretKey;

/// A setup with the `licensed` example and a machine id of its own.
fn licensed_setup() -> Setup {
    let mut setup = Setup::empty();
    std::os::unix::fs::symlink(licensed_binary(), setup.plugins.join("licensed")).unwrap();
    let machine_id = setup.dir.path().join("machine-id");
    std::fs::write(&machine_id, "0123456789abcdef0123456789abcdef\n").unwrap();
    setup.top = format!("machine_id_file = \"{}\"", machine_id.display());
    setup
}

/// `toru-license sign` with the test key; the licence's file.
fn sign(dir: &Path, name: &str, key: &Path, plugin: &str, instance: &str, days: i64) -> PathBuf {
    let expires = (Utc::now() + chrono::Duration::days(days))
        .date_naive()
        .to_string();
    let out = dir.join(name);
    let run = Command::new(toru_license_binary())
        .arg("sign")
        .arg("--key")
        .arg(key)
        .args(["--plugin", plugin, "--instance", instance])
        .args(["--expires", &expires, "--licensee", "ACME Ltd", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    out
}

fn instance_id(torud: &Torud) -> String {
    ctl(torud, &["instance-id"]).ok().stdout.trim().to_owned()
}

/// `GET /licensed/` through the gateway.
async fn served(torud: &Torud) -> Answer {
    torud.get("/api/plugins/route/licensed/").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_licensed_plugin_serves_only_with_a_valid_licence() {
    let setup = licensed_setup();
    let mut torud = setup.start().await;
    torud.wait_ready().await;
    let dir = setup.dir.path();
    let instance = instance_id(&torud);

    // No licence: not started, and said why.
    let plugin = torud.plugin("licensed").await;
    assert_eq!(plugin["state"], "failed", "{plugin}");
    assert_eq!(plugin["license"]["status"], "missing", "{plugin}");
    assert_eq!(plugin["license"]["required"], true);
    assert!(
        plugin["error"]
            .as_str()
            .unwrap()
            .contains("requires a licence")
    );
    assert_eq!(served(&torud).await.status, 503);

    // A licence made by the vendor's tool, installed by the sysadmin's.
    // (The test key is in git with mode 0644: toru-license warns, and signs.)
    let key = dir.join("vendor.key");
    std::fs::copy(test_vendor_key(), &key).unwrap();
    let good = sign(dir, "good.lic", &key, "licensed", &instance, 30);
    let run = ctl(
        &torud,
        &["license", "install", "licensed", good.to_str().unwrap()],
    )
    .ok();
    assert!(
        run.stdout.contains("installed the licence of licensed"),
        "{run:?}"
    );
    assert!(run.stdout.contains("valid"), "{run:?}");
    // toructl waited for the restart: the plugin serves when it returns.
    assert!(run.stdout.contains("licensed is running (pid "), "{run:?}");
    assert_eq!(torud.plugin("licensed").await["state"], "running");
    let plugin = torud.wait_state("licensed", "running").await;
    assert_eq!(plugin["license"]["status"], "valid");
    assert_eq!(plugin["license"]["licensee"], "ACME Ltd");
    assert_eq!(plugin["error"], serde_json::Value::Null);
    let answer = served(&torud).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["licensee"], "ACME Ltd");
    assert_eq!(answer.json()["instance_id"], instance.as_str());
    let pid = plugin["pid"].clone();

    // Every way to see it.
    let shown = ctl(&torud, &["license", "show", "licensed"]).ok().stdout;
    assert!(shown.contains("status     valid"), "{shown}");
    assert!(shown.contains("licensee   ACME Ltd"), "{shown}");
    let table = ctl(&torud, &["license", "show"]).ok().stdout;
    let row = table.lines().find(|l| l.starts_with("licensed ")).unwrap();
    assert!(row.contains("valid") && row.contains("ACME Ltd"), "{table}");
    let json = ctl(&torud, &["--json", "license", "show"]).ok().json();
    assert_eq!(json["licensed"]["status"], "valid");
    let show = ctl(&torud, &["plugins", "show", "licensed"]).ok().stdout;
    assert!(show.contains("valid (ACME Ltd, until "), "{show}");
    let metrics = torud.get("/metrics").await.text();
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("toru_plugin_license_expiry_seconds{plugin=\"licensed\"}"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let seconds: f64 = gauge.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        seconds > 29.0 * 86_400.0 && seconds < 32.0 * 86_400.0,
        "{gauge}"
    );

    // Another vendor's key: refused by toructl (through torud), nothing stored, and the
    // plugin keeps running on the licence it has.
    let other = dir.join("other.key");
    let keygen = Command::new(toru_license_binary())
        .arg("keygen")
        .arg(&other)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let forged = sign(dir, "forged.lic", &other, "licensed", &instance, 30);
    ctl(
        &torud,
        &["license", "install", "licensed", forged.to_str().unwrap()],
    )
    .fails(1, "signature");
    let elsewhere = sign(
        dir,
        "elsewhere.lic",
        &key,
        "licensed",
        "00000000-0000-4000-8000-000000000000",
        30,
    );
    ctl(
        &torud,
        &[
            "license",
            "install",
            "licensed",
            elsewhere.to_str().unwrap(),
        ],
    )
    .fails(1, "not this one");
    let plugin = torud.plugin("licensed").await;
    assert_eq!(plugin["license"]["status"], "valid");
    assert_eq!(plugin["pid"], pid, "the plugin was not restarted");

    // Kept across a restart of torud.
    torud.stop();
    let mut torud = setup.start().await;
    torud.wait_state("licensed", "running").await;
    assert_eq!(served(&torud).await.status, 200);

    // Removed: the plugin stops serving.
    let run = ctl(&torud, &["license", "remove", "licensed"]).ok();
    assert!(
        run.stdout.contains("removed the licence of licensed"),
        "{run:?}"
    );
    let plugin = torud.wait_state("licensed", "failed").await;
    assert_eq!(plugin["license"]["status"], "missing");
    assert_eq!(served(&torud).await.status, 503);
    ctl(&torud, &["license", "remove", "licensed"]).fails(1, "no licence installed");

    // Installed again from stdin, then the instance id is regenerated: the licence
    // was for the old id.
    let piped = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(["license", "install", "licensed", "-"])
        .stdin(std::fs::File::open(&good).unwrap())
        .output()
        .unwrap();
    finish(piped).ok();
    torud.wait_state("licensed", "running").await;
    ctl(&torud, &["instance-id", "--regenerate"]).fails(2, "--yes");
    assert_eq!(
        instance_id(&torud),
        instance,
        "nothing changed without --yes"
    );
    let run = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(["instance-id", "--regenerate", "--yes"])
        .output()
        .unwrap();
    let run = finish(run);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("no longer apply"), "{run:?}");
    let new = run.stdout.trim().to_owned();
    assert_ne!(new, instance);
    assert_eq!(instance_id(&torud), new);
    let plugin = torud.wait_state("licensed", "failed").await;
    assert_eq!(plugin["license"]["status"], "invalid", "{plugin}");
    assert!(
        plugin["license"]["error"]
            .as_str()
            .unwrap()
            .contains("not this one")
    );
    assert_eq!(served(&torud).await.status, 503);
    let events = ctl(&torud, &["events"]).ok().stdout;
    assert!(events.contains(&format!("{instance} -> {new}")), "{events}");
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_licences_are_refused_with_the_reason_and_nothing_is_stored() {
    let setup = licensed_setup();
    let mut torud = setup.start().await;
    torud.wait_ready().await;
    let instance = instance_id(&torud);
    let key = SecretKey::from_text(&std::fs::read_to_string(test_vendor_key()).unwrap()).unwrap();
    let claims = |plugin: &str, instance: &str, expires: Option<&str>| Claims {
        plugin: plugin.into(),
        instance: instance.into(),
        licensee: Some("ACME Ltd".into()),
        issued_at: Utc::now() - chrono::Duration::days(400),
        expires: expires.map(|d| d.parse().unwrap()),
        extra: serde_json::Map::new(),
    };
    let good = key.sign(&claims("licensed", &instance, None)).unwrap();
    let (head, signature) = good.rsplit_once('.').unwrap();
    let mut flipped = good.clone().into_bytes();
    let at = flipped.len() / 2;
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let not_json = format!("toru-license-v1.bm90IGpzb24.{signature}");
    let cases: Vec<(String, &str)> = vec![
        (String::from_utf8(flipped).unwrap(), "signature"),
        ("toru-license-v1.!!!.AAAA".into(), "not base64url"),
        // The signature is checked before the payload is read.
        (not_json, "signature"),
        (format!("{head}.AAAA"), "not 64"),
        ("hello".into(), "does not start with"),
        (
            key.sign(&claims("hello", &instance, None)).unwrap(),
            "made for plugin \"hello\"",
        ),
        (
            key.sign(&claims("licensed", &instance, Some("2025-01-31")))
                .unwrap(),
            "expired",
        ),
        (
            format!("toru-license-v1.{}.AAAA", "A".repeat(10_000)),
            "more than",
        ),
    ];
    for (line, reason) in cases {
        let answer = torud
            .unix("PUT", "/api/plugins/licensed/license", line.clone())
            .await;
        assert_eq!(answer.status, 400, "{line:.60}: {}", answer.text());
        let error = answer.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains(reason), "{line:.60}: {error}");
        let now = torud.get("/api/plugins/licensed/license").await.json();
        assert_eq!(now["status"], "missing", "{line:.60}");
        assert_eq!(now["installed"], false, "{line:.60}");
    }
    // A megabyte is not read at all; an unknown plugin is a 404; a GET on a plugin
    // without a licence says so.
    let huge = torud
        .unix(
            "PUT",
            "/api/plugins/licensed/license",
            Bytes::from(vec![b'A'; 1 << 20]),
        )
        .await;
    assert_eq!(huge.status, 413, "{}", huge.text());
    let unknown = torud
        .unix("PUT", "/api/plugins/nope/license", good.clone())
        .await;
    assert_eq!(unknown.status, 404);
    let not_text = torud
        .unix(
            "PUT",
            "/api/plugins/licensed/license",
            Bytes::from_static(b"\xff\xfe"),
        )
        .await;
    assert_eq!(not_text.status, 400);
    let regenerate = torud.unix("POST", "/api/instance/regenerate", "{}").await;
    assert_eq!(regenerate.status, 400);
    assert!(regenerate.text().contains("confirm"));
    assert_eq!(instance_id(&torud), instance);
    // The good one, finally, over the same route.
    let answer = torud
        .unix("PUT", "/api/plugins/licensed/license", good.clone())
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json()["status"], "valid");
    assert_eq!(answer.json()["expires"], serde_json::Value::Null);
    torud.wait_state("licensed", "running").await;
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_licence_ending_soon_is_a_warning() {
    let setup = licensed_setup();
    let mut torud = setup.start().await;
    torud.wait_ready().await;
    let dir = setup.dir.path();
    let key = dir.join("vendor.key");
    std::fs::copy(test_vendor_key(), &key).unwrap();
    let soon = sign(dir, "soon.lic", &key, "licensed", &instance_id(&torud), 5);
    ctl(
        &torud,
        &["license", "install", "licensed", soon.to_str().unwrap()],
    )
    .ok();
    torud.wait_state("licensed", "running").await;
    let status = ctl(&torud, &["status"]).ok().stdout;
    assert!(
        status.contains("warning    the licence of licensed ends after"),
        "{status}"
    );
    let json = ctl(&torud, &["--json", "status"]).ok().json();
    assert_eq!(json["warnings"].as_array().unwrap().len(), 1, "{json}");
    // When the plugin starts, and among torud's warnings (looked at every 10 s) in the
    // journal (here torud's stderr).
    assert!(
        torud
            .log_text()
            .contains("the plugin's licence expires soon")
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !torud
        .log_text()
        .contains("the licence of licensed ends after")
    {
        assert!(std::time::Instant::now() < deadline, "{}", torud.log_text());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let log = torud.log_text();
    assert_eq!(
        log.matches("the licence of licensed ends after").count(),
        1,
        "{log}"
    );
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_1_plugins_get_the_licence_in_the_environment() {
    let setup = Setup::empty();
    let seen = setup.dir.path().join("seen");
    // A protocol-1 plugin as deployed: no vendor key in its metadata. It writes what it
    // got, then idles (it never answers, which does not matter here).
    script_plugin(
        &setup.plugins,
        "legacy",
        &metadata("legacy", "/legacy", 1),
        &format!(
            "printf '%s\\n' \"${{TORU_LICENSE_KEY-unset}}\" >> {}\nexec sleep 60",
            seen.display()
        ),
    );
    let mut torud = setup.start().await;
    let deadline = std::time::Instant::now() + LONG;
    while std::fs::read_to_string(&seen)
        .unwrap_or_default()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&seen).unwrap().lines().next(),
        Some("unset")
    );
    // The first host's licences were not Toru's: any one line is kept unverified.
    let answer = torud
        .unix("PUT", "/api/plugins/legacy/license", "LEGACY-3f2a9c-HMAC\n")
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let view = answer.json();
    assert_eq!(view["status"], "not_required");
    assert_eq!(view["installed"], true);
    assert!(view["error"].as_str().unwrap().contains("unverified"));
    // Restarted with it (it was restarted before too: it never answers).
    let deadline = std::time::Instant::now() + LONG;
    while !std::fs::read_to_string(&seen)
        .unwrap()
        .lines()
        .any(|l| l == "LEGACY-3f2a9c-HMAC")
    {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let two_lines = torud
        .unix("PUT", "/api/plugins/legacy/license", "a\nb")
        .await;
    assert_eq!(two_lines.status, 400);
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_machine_id_is_noticed_and_the_instance_id_kept() {
    let setup = licensed_setup();
    let machine_id = setup.dir.path().join("machine-id");
    let mut torud = setup.start().await;
    let instance = instance_id(&torud);
    let answer = torud.get("/api/instance").await.json();
    assert_eq!(answer["machine_id_changed"], false);
    torud.stop();

    // The disk, cloned to another machine.
    std::fs::write(&machine_id, "fedcba9876543210fedcba9876543210\n").unwrap();
    let mut torud = setup.start().await;
    let answer = torud.get("/api/instance").await.json();
    assert_eq!(
        answer["instance_id"],
        instance.as_str(),
        "never changed silently"
    );
    assert_eq!(answer["machine_id_changed"], true);
    let status = ctl(&torud, &["status"]).ok().stdout;
    assert!(status.contains("the machine id changed"), "{status}");
    let run = finish(
        command()
            .arg("--socket")
            .arg(&torud.unix)
            .arg("instance-id")
            .output()
            .unwrap(),
    );
    assert_eq!(run.stdout.trim(), instance);
    assert!(run.stderr.contains("machine id changed"), "{run:?}");
    let log = torud.log_text();
    assert!(log.contains("the machine id changed"), "{log}");
    assert!(log.contains("made_on") && log.contains("now_on"), "{log}");

    // The sysadmin makes a new id; the new machine is the one it is tied to from now.
    let new =
        ctl(&torud, &["--json", "instance-id", "--regenerate", "--yes"]).json()["instance_id"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_ne!(new, instance);
    assert_eq!(
        torud.get("/api/instance").await.json()["machine_id_changed"],
        false
    );
    torud.stop();
    let mut torud = setup.start().await;
    let answer = torud.get("/api/instance").await.json();
    assert_eq!(answer["instance_id"], new.as_str());
    assert_eq!(answer["machine_id_changed"], false);
    torud.stop();
}

/// `metadata` with a `license` object spliced in.
fn metadata_with_license(id: &str, protocol: u32, license: &str) -> String {
    let plain = metadata(id, &format!("/{id}"), protocol);
    format!("{},\"license\":{license}}}", plain.trim_end_matches('}'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_1_plugin_declaring_a_key_gets_only_verified_licences() {
    let setup = Setup::empty();
    let public = std::fs::read_to_string(test_vendor_key().with_extension("key.pub")).unwrap();
    let seen = setup.dir.path().join("seen");
    // A protocol-1 plugin whose metadata names the vendor key and requires a licence: it
    // writes what it got, then idles.
    script_plugin(
        &setup.plugins,
        "sold",
        &metadata_with_license(
            "sold",
            1,
            &format!(r#"{{"public_key":"{}","required":true}}"#, public.trim()),
        ),
        &format!(
            "printf '%s\\n' \"${{TORU_LICENSE_KEY-unset}}\" >> {}\nexec sleep 60",
            seen.display()
        ),
    );
    // A malformed key makes the plugin invalid, with the reason, and never started.
    script_plugin(
        &setup.plugins,
        "badkey",
        &metadata_with_license(
            "badkey",
            1,
            r#"{"public_key":"ed25519:short","required":true}"#,
        ),
        "exec sleep 60",
    );
    let mut torud = setup.start().await;

    let badkey = torud.plugin("badkey").await;
    assert_eq!(badkey["state"], "invalid", "{badkey}");
    let reason = badkey["error"].as_str().unwrap();
    assert!(reason.contains("public key"), "{reason}");

    // Refused without a licence: never started, so it saw nothing.
    let sold = torud.wait_state("sold", "failed").await;
    assert!(
        sold["error"]
            .as_str()
            .unwrap()
            .contains("requires a licence"),
        "{sold}"
    );
    assert!(!seen.exists());
    // A licence of the vendor's key for this instance: started with it in its environment.
    let instance = instance_id(&torud);
    let line = sign(
        setup.dir.path(),
        "sold.lic",
        &test_vendor_key(),
        "sold",
        &instance,
        30,
    );
    let installed = ctl(
        &torud,
        &["license", "install", "sold", line.to_str().unwrap()],
    )
    .ok();
    assert!(
        installed.stdout.contains("status     valid"),
        "{}",
        installed.stdout
    );
    let expected = std::fs::read_to_string(&line).unwrap().trim().to_owned();
    let deadline = std::time::Instant::now() + LONG;
    while !std::fs::read_to_string(&seen)
        .unwrap_or_default()
        .lines()
        .any(|l| l == expected)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never started with it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Any other text is refused: the key makes torud check.
    let other = torud
        .unix("PUT", "/api/plugins/sold/license", "LEGACY-3f2a9c-HMAC")
        .await;
    assert_eq!(other.status, 400, "{}", other.text());
    torud.stop();
}
