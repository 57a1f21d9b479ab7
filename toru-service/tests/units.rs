//! The unit files in systemd/: `systemd-analyze verify` finds nothing, and
//! `systemd-analyze security` rates toru.service at 3.0 or lower.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

const UNITS: [&str; 3] = ["toru.service", "toru.socket", "toru-admin.socket"];

fn units_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

#[test]
fn systemd_analyze_verify_is_clean() {
    // verify checks that ExecStart exists: point it at the binary just built.
    let dir = tempfile::tempdir().unwrap();
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).unwrap();
        let text = text.replace("/usr/sbin/torud", env!("CARGO_BIN_EXE_torud"));
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(UNITS.iter().map(|u| dir.path().join(u)))
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify:\n{said}"
    );
}

#[test]
fn the_service_is_hardened_to_3_or_lower() {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(units_dir().join("toru.service"))
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable: {line}"));
    assert!(level <= 3.0, "{line}");
}

#[test]
fn the_service_keeps_what_delegation_and_the_socket_need() {
    let service = std::fs::read_to_string(units_dir().join("toru.service")).unwrap();
    for needed in [
        "Type=notify",
        "NotifyAccess=main",
        "Delegate=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RuntimeDirectoryPreserve=yes",
        "StateDirectory=toru",
        "ConfigurationDirectory=toru",
        "KillMode=mixed",
    ] {
        assert!(
            service.lines().any(|l| l.trim() == needed),
            "toru.service lacks {needed}"
        );
    }
    assert!(service.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(
        !service.contains("ProtectControlGroups=yes"),
        "it breaks delegation"
    );
    let socket = std::fs::read_to_string(units_dir().join("toru.socket")).unwrap();
    assert!(socket.contains("FileDescriptorName=http"));
    let admin = std::fs::read_to_string(units_dir().join("toru-admin.socket")).unwrap();
    assert!(admin.contains("FileDescriptorName=admin") && admin.contains("SocketMode=0600"));
}
