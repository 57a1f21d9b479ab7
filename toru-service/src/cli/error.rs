//! What can go wrong in `toructl`, each kind with its exit code, and clap's
//! usage errors folded into one line.

use std::path::PathBuf;

/// The operation failed (torud said no, or a local step failed).
pub(crate) const EXIT_FAILED: u8 = 1;
/// Bad usage (clap's own code).
pub(crate) const EXIT_USAGE: u8 = 2;
/// sysexits' EX_UNAVAILABLE: torud cannot be reached.
pub(crate) const EXIT_UNAVAILABLE: u8 = 69;
/// sysexits' EX_NOPERM: the socket (or token) does not let us in.
pub(crate) const EXIT_NOPERM: u8 = 77;

/// A failure of one `toructl` run; its `Display` is the one line printed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// torud answered with an error (`{"error": ".."}`) or the operation
    /// cannot be done as asked.
    #[error("{0}")]
    Failed(String),
    /// Nobody answers at `target`.
    #[error("cannot reach torud at {target}: {reason} (is it running? try: systemctl status toru)")]
    Unreachable {
        /// The socket path or URL.
        target: String,
        /// What the OS or the connection said.
        reason: String,
    },
    /// The socket's mode does not let this user connect.
    #[error(
        "permission denied on {}: the admin socket is for root (run toructl as root, e.g. with sudo)",
        .0.display()
    )]
    SocketPermission(PathBuf),
    /// torud refused the admin token (TCP only).
    #[error("torud at {url} refused the token from {}: {message}", token_file.display())]
    TokenRefused {
        /// The URL.
        url: String,
        /// The token file used.
        token_file: PathBuf,
        /// torud's message.
        message: String,
    },
    /// The token file cannot be read for lack of permission.
    #[error("permission denied reading the admin token {} (run toructl as root, or pass --token-file)", .0.display())]
    TokenPermission(PathBuf),
    /// A bad invocation found after parsing.
    #[error("{0}")]
    Usage(String),
    /// Writing to stdout failed (other than a closed pipe).
    #[error("cannot write the output: {0}")]
    Output(std::io::Error),
}

impl CliError {
    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Failed(_) | Self::Output(_) => EXIT_FAILED,
            Self::Usage(_) => EXIT_USAGE,
            Self::Unreachable { .. } => EXIT_UNAVAILABLE,
            Self::SocketPermission(_) | Self::TokenRefused { .. } | Self::TokenPermission(_) => {
                EXIT_NOPERM
            }
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        Self::Output(e)
    }
}

/// A clap usage error as one line: what is wrong, then the usage, then
/// clap's tip if it has one.
pub(crate) fn usage_line(error: &clap::Error) -> String {
    // `StyledStr`'s Display is the plain text, without ANSI styles.
    let text = error.render().to_string();
    let mut what = Vec::new();
    let mut usage = None;
    let mut tips = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with("For more information") {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("error: ") {
            what.push(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("Usage: ") {
            usage = Some(rest.to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("tip: ") {
            tips.push(rest.to_owned());
        } else {
            what.push(trimmed.to_owned());
        }
    }
    let mut line = what.join(" ");
    if let Some(usage) = usage {
        line.push_str(&format!(" (usage: {usage})"));
    }
    for tip in tips {
        line.push_str(&format!("; {tip}"));
    }
    line
}
