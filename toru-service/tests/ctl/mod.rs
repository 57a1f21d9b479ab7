//! Running the real `toructl` binary against a torud of `support`.
//!
//! The tests end with `torud.stop()`: a graceful stop takes the plugins
//! down with torud, where the kill of `Torud`'s drop leaves them running.

#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output, Stdio};

use crate::support::Torud;

pub const TORUCTL: &str = env!("CARGO_BIN_EXE_toructl");

/// What one run of toructl did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit 0, and nothing on stderr.
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        assert!(self.stderr.is_empty(), "unexpected stderr: {self:#?}");
        self
    }

    /// Exit `code` with one `toructl: ...` line on stderr containing `text`.
    pub fn fails(self, code: i32, text: &str) -> Self {
        assert_eq!(self.code, code, "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("toructl: "), "{self:#?}");
        assert!(self.stderr.contains(text), "expected {text:?}: {self:#?}");
        assert!(!self.stderr.contains("panicked"), "{self:#?}");
        self
    }

    /// As [`Run::fails`] for a `--json` run: stderr is one JSON object, its `error`
    /// containing `text`, its `exit_code` the status.
    pub fn fails_json(self, code: i32, text: &str) -> Self {
        assert_eq!(self.code, code, "{self:#?}");
        let error: serde_json::Value = serde_json::from_str(self.stderr.trim())
            .unwrap_or_else(|e| panic!("stderr is not one JSON object ({e}): {self:#?}"));
        assert!(
            error["error"].as_str().is_some_and(|e| e.contains(text)),
            "expected {text:?}: {self:#?}"
        );
        assert_eq!(error["exit_code"], code, "{self:#?}");
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// toructl with none of the caller's TORU_* or NO_COLOR settings.
pub fn command() -> Command {
    let mut command = Command::new(TORUCTL);
    for var in ["TORU_SOCKET", "TORU_URL", "TORU_TOKEN_FILE", "NO_COLOR"] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

pub fn finish(output: Output) -> Run {
    Run {
        code: output.status.code().expect("toructl exited, not killed"),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// toructl `args` over torud's admin Unix socket.
pub fn ctl(torud: &Torud, args: &[&str]) -> Run {
    let output = command()
        .arg("--socket")
        .arg(&torud.unix)
        .args(args)
        .output()
        .expect("toructl runs");
    finish(output)
}

/// toructl `args` over TCP with the admin token.
pub fn ctl_tcp(torud: &Torud, args: &[&str]) -> Run {
    let output = command()
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", torud.port))
        .arg("--token-file")
        .arg(&torud.token_file)
        .args(args)
        .output()
        .expect("toructl runs");
    finish(output)
}

/// toructl `args` with no socket or URL given (the caller adds them).
pub fn bare(args: &[&str]) -> Run {
    finish(command().args(args).output().expect("toructl runs"))
}

/// The column where `word` starts in `line`.
pub fn column(line: &str, word: &str) -> usize {
    line.find(word)
        .unwrap_or_else(|| panic!("{word:?} not in {line:?}"))
}
