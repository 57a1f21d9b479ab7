//! The real `toru-license` binary: keys, signing, and what the SDK makes of
//! what it signs; every bad argument a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use toru_plugin_api::license::{License, LicenseError, PublicKey};

const TOOL: &str = env!("CARGO_BIN_EXE_toru-license");
const INSTANCE: &str = "c6f93da1-57db-4c4e-b6ac-ff35f41227c6";

fn tool(dir: &Path, args: &[&str]) -> Output {
    Command::new(TOOL)
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn fails(output: &Output, code: i32, text: &str) {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("toru-license: "), "{stderr}");
    assert!(stderr.contains(text), "expected {text:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

fn in_a_year() -> String {
    (chrono::Utc::now() + chrono::Duration::days(365))
        .date_naive()
        .to_string()
}

#[test]
fn keygen_writes_a_private_key_and_prints_the_public_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = tool(dir.path(), &["keygen", "vendor.key"]);
    let public = stdout(&out).trim().to_owned();
    let key: PublicKey = public.parse().unwrap();
    let mode = std::fs::metadata(dir.path().join("vendor.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let pub_file = std::fs::read_to_string(dir.path().join("vendor.key.pub")).unwrap();
    assert_eq!(pub_file.trim(), public);
    let again = tool(dir.path(), &["public-key", "--key", "vendor.key"]);
    assert_eq!(stdout(&again).trim().parse::<PublicKey>().unwrap(), key);
    // Never replaced.
    let before = std::fs::read(dir.path().join("vendor.key")).unwrap();
    fails(&tool(dir.path(), &["keygen", "vendor.key"]), 1, "exists");
    assert_eq!(
        std::fs::read(dir.path().join("vendor.key")).unwrap(),
        before
    );
    fails(
        &tool(dir.path(), &["public-key", "--key", "vendor.key.pub"]),
        1,
        "not a secret key",
    );
}

#[test]
fn what_it_signs_the_sdk_accepts_and_another_key_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let public = stdout(&tool(dir.path(), &["keygen", "a.key"]));
    let key: PublicKey = public.trim().parse().unwrap();
    let other: PublicKey = stdout(&tool(dir.path(), &["keygen", "b.key"]))
        .trim()
        .parse()
        .unwrap();
    let expires = in_a_year();
    let line = stdout(&tool(
        dir.path(),
        &[
            "sign",
            "--key",
            "a.key",
            "--plugin",
            "reports",
            // Upper case is the same id; it is written as toructl prints it.
            "--instance",
            &INSTANCE.to_uppercase(),
            "--expires",
            &expires,
            "--licensee",
            "ACME Ltd",
        ],
    ));
    let line = line.trim();
    assert_eq!(line.lines().count(), 1);
    let now = chrono::Utc::now();
    let license = License::verify(line, &key, INSTANCE, "reports", now).unwrap();
    assert_eq!(license.claims.instance, INSTANCE);
    assert_eq!(license.claims.licensee.as_deref(), Some("ACME Ltd"));
    assert_eq!(license.claims.expires.unwrap().to_string(), expires);
    assert_eq!(
        License::verify(line, &other, INSTANCE, "reports", now),
        Err(LicenseError::BadSignature)
    );

    // verify and inspect, on a file and on stdin.
    std::fs::write(dir.path().join("x.lic"), line).unwrap();
    let ok = stdout(&tool(
        dir.path(),
        &[
            "verify",
            "x.lic",
            "--public-key",
            "a.key.pub",
            "--plugin",
            "reports",
            "--instance",
            INSTANCE,
        ],
    ));
    assert!(ok.contains("valid      yes"), "{ok}");
    fails(
        &tool(
            dir.path(),
            &["verify", "x.lic", "--public-key", "b.key.pub"],
        ),
        1,
        "not valid: the signature",
    );
    fails(
        &tool(
            dir.path(),
            &[
                "verify",
                "x.lic",
                "--public-key",
                public.trim(),
                "--plugin",
                "other",
            ],
        ),
        1,
        "made for plugin \"reports\"",
    );
    let after = (chrono::Utc::now() + chrono::Duration::days(400))
        .date_naive()
        .to_string();
    fails(
        &tool(
            dir.path(),
            &[
                "verify",
                "x.lic",
                "--public-key",
                "a.key.pub",
                "--at",
                &after,
            ],
        ),
        1,
        "expired",
    );
    let json: serde_json::Value = serde_json::from_str(&stdout(&tool(
        dir.path(),
        &["--json", "verify", "x.lic", "--public-key", "a.key.pub"],
    )))
    .unwrap();
    assert_eq!(json["valid"], true);
    let inspected = Command::new(TOOL)
        .args(["inspect", "-"])
        .stdin(std::fs::File::open(dir.path().join("x.lic")).unwrap())
        .output()
        .unwrap();
    let text = stdout(&inspected);
    assert!(text.contains("licensee   ACME Ltd"), "{text}");
    assert!(text.contains("not checked"), "{text}");

    // --out writes the file.
    stdout(&tool(
        dir.path(),
        &[
            "sign",
            "--key",
            "a.key",
            "--plugin",
            "reports",
            "--instance",
            INSTANCE,
            "--out",
            "y.lic",
        ],
    ));
    let written = std::fs::read_to_string(dir.path().join("y.lic")).unwrap();
    let forever = License::verify(written.trim(), &key, INSTANCE, "reports", now).unwrap();
    assert_eq!(forever.claims.expires, None);
}

#[test]
fn bad_arguments_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&tool(dir.path(), &["keygen", "a.key"]));
    let sign = |extra: &[&str]| {
        let mut args = vec!["sign", "--key", "a.key"];
        args.extend_from_slice(extra);
        tool(dir.path(), &args)
    };
    fails(
        &sign(&["--plugin", "Not An Id", "--instance", INSTANCE]),
        2,
        "--plugin",
    );
    fails(
        &sign(&["--plugin", "reports", "--instance", "12345"]),
        2,
        "is not an instance id",
    );
    fails(
        &sign(&[
            "--plugin",
            "reports",
            "--instance",
            INSTANCE,
            "--expires",
            "31/12/2027",
        ]),
        2,
        "YYYY-MM-DD",
    );
    fails(
        &sign(&[
            "--plugin",
            "reports",
            "--instance",
            INSTANCE,
            "--expires",
            "2020-01-01",
        ]),
        2,
        "in the past",
    );
    fails(
        &sign(&[
            "--plugin",
            "reports",
            "--instance",
            INSTANCE,
            "--licensee",
            "  ",
        ]),
        2,
        "--licensee",
    );
    fails(
        &tool(
            dir.path(),
            &[
                "sign",
                "--key",
                "missing.key",
                "--plugin",
                "reports",
                "--instance",
                INSTANCE,
            ],
        ),
        1,
        "cannot read missing.key",
    );
    std::fs::write(dir.path().join("junk.lic"), "toru-license-v1.!!!.AAAA").unwrap();
    fails(
        &tool(dir.path(), &["inspect", "junk.lic"]),
        1,
        "not base64url",
    );
    std::fs::write(dir.path().join("big.lic"), vec![b'A'; 1 << 20]).unwrap();
    fails(
        &tool(dir.path(), &["inspect", "big.lic"]),
        1,
        "larger than a licence can be",
    );
    fails(
        &tool(
            dir.path(),
            &["verify", "junk.lic", "--public-key", "ed25519:short"],
        ),
        1,
        "--public-key",
    );
    // A world-readable key still signs, with a warning.
    std::fs::set_permissions(
        dir.path().join("a.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let warned = sign(&["--plugin", "reports", "--instance", INSTANCE]);
    assert!(warned.status.success());
    assert!(String::from_utf8_lossy(&warned.stderr).contains("chmod 600"));
}

#[test]
fn man_pages_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    stdout(&tool(dir.path(), &["generate-man", "man"]));
    for page in [
        "toru-license.1",
        "toru-license-sign.1",
        "toru-license-keygen.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join("man").join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
    let bash = stdout(&tool(dir.path(), &["completions", "bash"]));
    assert!(bash.contains("toru-license"));
}
