//! `toru-license`: the plugin vendor's tool. It makes an Ed25519 key pair
//! (the secret half stays with the vendor; the public half goes into the
//! plugin's metadata), signs licences for one Toru installation, and shows
//! and checks licences. The format and the signing code are the SDK's
//! (`toru_plugin_api::license`), the very code plugins and torud verify with;
//! `docs/LICENSES.md` specifies it.
//!
//! Exit status: 0 success (for `verify`: the licence is valid), 1 the
//! operation failed or the licence is not valid, 2 usage.

#![forbid(unsafe_code)]

mod commands;
mod files;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Make and check licences for Toru plugins.
#[derive(Debug, Parser)]
#[command(
    name = "toru-license",
    version,
    after_help = "Exit status: 0 success (for verify: the licence is valid), 1 the operation \
                  failed or the licence is not valid, 2 usage."
)]
struct Cli {
    /// Print JSON instead of text (inspect, verify, sign).
    #[arg(long, global = true)]
    json: bool,
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new vendor key pair. The secret key goes into FILE (mode 0600;
    /// an existing file is never replaced), the public key into FILE.pub and
    /// on standard output, in the form a plugin's metadata takes
    /// (`"license": {"public_key": "ed25519:...", "required": true}`).
    Keygen {
        /// Where to write the secret key.
        file: PathBuf,
    },
    /// Print the public key of a secret key file.
    PublicKey {
        /// The secret key file `keygen` wrote.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
    /// Sign a licence for plugin ID on the Toru installation whose instance
    /// id is UUID (`toructl instance-id` prints it there). The licence, one
    /// line, goes to standard output (or --out); the sysadmin installs it
    /// with `toructl license install ID FILE`.
    Sign {
        /// The vendor's secret key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The plugin's id, as in its metadata.
        #[arg(long, value_name = "ID")]
        plugin: String,
        /// The installation's instance id.
        #[arg(long, value_name = "UUID")]
        instance: String,
        /// The last day the licence is valid (UTC, inclusive); for ever when absent.
        #[arg(long, value_name = "YYYY-MM-DD")]
        expires: Option<String>,
        /// To whom it is sold, as the sysadmin will see it.
        #[arg(long, value_name = "NAME")]
        licensee: Option<String>,
        /// Write the licence to FILE instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show what a licence says, without checking its signature.
    Inspect {
        /// The licence file, `-` for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// Check a licence: its signature against the vendor's public key, and,
    /// when given, the plugin and instance it must be for; its dates always.
    Verify {
        /// The licence file, `-` for standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
        /// The vendor's public key (`ed25519:...`), or a file holding it
        /// (the FILE.pub of keygen).
        #[arg(long, value_name = "KEY|FILE")]
        public_key: String,
        /// The plugin it must be for.
        #[arg(long, value_name = "ID")]
        plugin: Option<String>,
        /// The instance it must be for.
        #[arg(long, value_name = "UUID")]
        instance: Option<String>,
        /// Check it as of this day (UTC noon) instead of now.
        #[arg(long, value_name = "YYYY-MM-DD")]
        at: Option<String>,
    },
    /// Print a shell completion script (e.g. `toru-license completions bash`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of toru-license into DIR (used by packaging).
    #[command(hide = true)]
    GenerateMan {
        /// Where to write `toru-license.1` and one page per subcommand.
        dir: PathBuf,
    },
}

/// A failure: the message, and whether it was the user's usage.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The operation failed, or the licence is not valid (exit 1).
    Failed(String),
    /// Bad arguments (exit 2).
    Usage(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when a write fails (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "toru-license", &mut script);
            let mut stdout = std::io::stdout();
            match stdout.write_all(&script).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                written => written.map_err(|e| Failure::Failed(format!("cannot write: {e}"))),
            }
        }
        Command::GenerateMan { dir } => generate_man(dir),
        command => commands::run(command, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Failed(message)) => {
            eprintln!("toru-license: {message}");
            ExitCode::FAILURE
        }
        Err(Failure::Usage(message)) => {
            eprintln!("toru-license: {message}");
            ExitCode::from(2)
        }
    }
}

/// `toru-license generate-man DIR`: `toru-license.1` and `toru-license-<command>.1`.
fn generate_man(dir: &std::path::Path) -> Result<(), Failure> {
    let failed = |e: std::io::Error| Failure::Failed(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
