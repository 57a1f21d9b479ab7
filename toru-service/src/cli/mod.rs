//! `toructl`, the sysadmin's command line for torud: the clap definition,
//! and [`main`](crate::cli::main), which the binary calls.
//!
//! toructl talks to torud's HTTP API over the admin Unix socket
//! (`/run/toru/toru.sock`, the path of `toru-admin.socket`; `--socket` or
//! `TORU_SOCKET` to change it), or over TCP with `--url`/`TORU_URL` and the
//! admin token from `--token-file`. The token is only ever sent over TCP.
//!
//! Exit codes: 0 success, 1 the operation failed, 2 usage, 69 torud
//! unreachable, 77 permission denied.
//!
//! # Layout
//!
//! * `client` — HTTP/1.1 over the socket or TCP; errors to exit codes.
//! * `commands` — one method per command: request, then human output.
//! * `follow` — `plugins logs -f`: polling and lining up new lines.
//! * `kv` — `kv get|set|delete|list`.
//! * `license` — `license show|install|remove`, `instance-id --regenerate`.
//! * `store` — `store backup`.
//! * `output` — tables, colour, JSON.
//! * `error` — `CliError` and the exit codes.

/// `plugins check PATH`: the conformance checker.
pub(crate) mod check;
/// HTTP to torud.
pub(crate) mod client;
/// The commands.
pub(crate) mod commands;
/// Failures and exit codes.
pub(crate) mod error;
/// Following a plugin's log.
pub(crate) mod follow;
/// `toructl kv`.
pub(crate) mod kv;
/// `toructl license`.
pub(crate) mod license;
/// The sections of toructl's man pages clap does not know.
mod man_sections;
/// Printing.
pub(crate) mod output;
/// `toructl store`.
pub(crate) mod store;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::builder::TypedValueParser;
use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use client::{BaseUrl, Client, Target};
use error::{CliError, EXIT_USAGE};

/// The admin socket of `toru-admin.socket`.
pub(crate) const DEFAULT_SOCKET: &str = "/run/toru/toru.sock";
/// `admin_token_file`'s default.
pub(crate) const DEFAULT_TOKEN_FILE: &str = "/var/lib/toru/admin.token";

/// Control torud, the Toru plugin host.
#[derive(Debug, Parser)]
#[command(
    name = "toructl",
    version,
    after_help = "Exit status: 0 success, 1 the operation failed, 2 usage, \
                  69 torud unreachable, 77 permission denied."
)]
pub(crate) struct Cli {
    /// torud's admin Unix socket.
    #[arg(
        long,
        global = true,
        env = "TORU_SOCKET",
        value_name = "PATH",
        default_value = DEFAULT_SOCKET
    )]
    pub socket: PathBuf,
    /// Talk to torud over TCP instead, at http://HOST:PORT, with the admin token.
    #[arg(long, global = true, env = "TORU_URL", value_name = "URL", value_parser = client::parse_url)]
    pub url: Option<BaseUrl>,
    /// The admin token, for --url.
    #[arg(
        long,
        global = true,
        env = "TORU_TOKEN_FILE",
        value_name = "PATH",
        default_value = DEFAULT_TOKEN_FILE
    )]
    pub token_file: PathBuf,
    /// Print torud's JSON answer (stable field names) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `toructl store ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// Write a consistent copy of the whole store (every plugin's data and
    /// state, the events) to FILE, `-` for standard output. Every write
    /// acknowledged before it began is in it. Put it back, with torud
    /// stopped, with `torud --restore FILE`.
    Backup {
        /// Where to write it (mode 0600); an existing file is kept unless --force.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `toructl license ...`.
#[derive(Debug, Subcommand)]
pub(crate) enum LicenseCommand {
    /// The licence of plugin ID, or of every plugin.
    Show {
        /// The plugin id; every plugin when absent.
        id: Option<String>,
    },
    /// Install the licence in FILE (`-` for standard input) for plugin ID.
    /// torud checks it first (signature, instance, plugin, dates) and keeps
    /// it in the store; the plugin restarts with it.
    Install {
        /// The plugin id.
        id: String,
        /// The licence file the vendor sent.
        file: PathBuf,
    },
    /// Remove the licence of plugin ID; the plugin restarts without it.
    Remove {
        /// The plugin id.
        id: String,
    },
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Instance id, version, uptime, listeners, and plugins by state.
    Status,
    /// Re-read the configuration and rescan the plugin folders, as `systemctl
    /// reload toru` (SIGHUP) does, and say what changed. A broken configuration
    /// is refused with every error, and the one in force kept.
    Reload,
    /// List, inspect and control plugins (`plugins` alone lists them).
    Plugins(PluginsArgs),
    /// A plugin's stored key-value data.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Print this installation's instance id (or make a new one).
    InstanceId {
        /// Make a new instance id. Every licence made for the old one stops
        /// applying and every plugin restarts: for a cloned disk, say.
        #[arg(long)]
        regenerate: bool,
        /// Confirm --regenerate.
        #[arg(long, requires = "regenerate")]
        yes: bool,
    },
    /// The licences of plugins that need one.
    #[command(subcommand)]
    License(LicenseCommand),
    /// The store: backups taken while torud runs.
    #[command(subcommand)]
    Store(StoreCommand),
    /// What happened lately (starts, exits, restarts, failures), oldest first.
    Events {
        /// Only events of this plugin.
        id: Option<String>,
        /// How many of the most recent events (0: none, as `plugins logs -n 0`).
        #[arg(short = 'n', long = "limit", value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u16).range(0..=10_000).map(usize::from))]
        limit: usize,
    },
    /// Print a shell completion script (e.g. `toructl completions bash`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write the manual pages of toructl and torud into DIR (used by packaging).
    #[command(hide = true)]
    GenerateMan {
        /// Where to write `toructl.1`, one page per subcommand, and `torud.8`.
        dir: PathBuf,
    },
}

/// `toructl plugins [COMMAND]`.
#[derive(Debug, Args)]
pub(crate) struct PluginsArgs {
    /// What to do; `list` when absent.
    #[command(subcommand)]
    pub command: Option<PluginsCommand>,
}

/// The plugin commands.
#[derive(Debug, Subcommand)]
pub(crate) enum PluginsCommand {
    /// Every plugin, its state, pid and restarts.
    List,
    /// Everything torud knows about one plugin.
    Show {
        /// The plugin id.
        id: String,
    },
    /// Check that the plugin executable at PATH keeps the protocol: runs it as
    /// torud would (its own socket, environment and process group, no torud
    /// needed), acts as its host, and says of each rule of docs/PROTOCOL.md
    /// PASS, FAIL, WARN or SKIP (not exercised), with what was expected and what
    /// came. Exit 0 when no rule fails, 1 otherwise.
    Check {
        /// The plugin's executable.
        path: PathBuf,
        /// The protocol to hold it to [default: what its metadata says].
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2))]
        protocol: Option<u32>,
        /// A licence to give the plugin, as torud gives an installed one (`-`: stdin);
        /// it must be made for the instance id the check uses (--instance).
        #[arg(long, value_name = "FILE")]
        license: Option<PathBuf>,
        /// The instance id to tell the plugin [default: 00000000-0000-4000-8000-00000000c4ec].
        #[arg(long, value_name = "UUID")]
        instance: Option<uuid::Uuid>,
        /// Run it in the namespaces torud gives plugins with `isolate_plugins = true`
        /// (its own socket folder, no state folder); off by default.
        #[arg(long)]
        isolate: bool,
    },
    /// Enable a plugin and start it (also clears a crash-loop "failed").
    Enable {
        /// The plugin id.
        id: String,
    },
    /// Stop a plugin and keep it stopped, across restarts of torud.
    Disable {
        /// The plugin id.
        id: String,
    },
    /// Stop a plugin and start it again.
    Restart {
        /// The plugin id.
        id: String,
    },
    /// A plugin's recent output (what it wrote on stdout and stderr).
    Logs(LogsArgs),
}

/// `toructl plugins logs ID [-n N] [-f] [--level L]`.
#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The plugin id.
    pub id: String,
    /// How many of the most recent lines (0: none; with -f, only new ones).
    #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u16).range(0..=1000).map(usize::from))]
    pub lines: usize,
    /// Keep printing new lines as the plugin writes them, until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines at this level or more severe.
    #[arg(long, value_name = "LEVEL",
          value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub level: Option<String>,
}

/// The key-value commands.
#[derive(Debug, Subcommand)]
pub(crate) enum KvCommand {
    /// Print the value of KEY (exit 1 when there is none).
    Get {
        /// The plugin id.
        id: String,
        /// The key.
        key: String,
    },
    /// Store VALUE under KEY.
    Set {
        /// The plugin id.
        id: String,
        /// The key.
        key: String,
        /// The value; `-` (or nothing, when piped) reads it from stdin, as is.
        value: Option<String>,
    },
    /// Remove KEY.
    Delete {
        /// The plugin id.
        id: String,
        /// The key.
        key: String,
    },
    /// List the keys, optionally only those starting with PREFIX.
    List {
        /// The plugin id.
        id: String,
        /// Only keys starting with this.
        prefix: Option<String>,
    },
}

/// Runs toructl with the process's arguments; the exit code.
pub fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return clap_exit(&e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    let explicit = |id| matches.value_source(id) == Some(ValueSource::CommandLine);
    match run(&cli, explicit("socket"), explicit("url")) {
        Ok(()) => ExitCode::SUCCESS,
        // `toructl ... | head`: the reader has what it wanted.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.exit_code();
            if cli.json {
                json_error(&e.to_string(), code);
            } else {
                warn(&e.to_string());
            }
            ExitCode::from(code)
        }
    }
}

/// With `--json`, an error is JSON too, on stderr: `{"error": "...", "exit_code": 1}`.
fn json_error(message: &str, code: u8) {
    let error = serde_json::json!({ "error": message, "exit_code": code });
    let _ = writeln!(std::io::stderr(), "{error}");
}

/// Help and version as clap prints them; usage errors as one line.
fn clap_exit(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Help goes where clap sends it, with its exit code (2 when a
            // subcommand was missing).
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE))
        }
        _ => {
            // Parsing failed, so `--json` is looked for in the words as given.
            if std::env::args_os().any(|a| a == "--json") {
                json_error(&error::usage_line(error), EXIT_USAGE);
            } else {
                warn(&error::usage_line(error));
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// One line on stderr, prefixed with `toructl: `.
pub(crate) fn warn(message: &str) {
    let _ = writeln!(std::io::stderr(), "toructl: {message}");
}

/// Runs the parsed command. A `--socket` on the command line wins over
/// `TORU_URL`, as `--url` on the command line wins over `TORU_SOCKET`.
fn run(cli: &Cli, socket_given: bool, url_given: bool) -> Result<(), CliError> {
    let out = output::Out::new();
    match &cli.command {
        Command::GenerateMan { dir } => return generate_man(dir, &out),
        Command::Plugins(PluginsArgs {
            command:
                Some(PluginsCommand::Check {
                    path,
                    protocol,
                    license,
                    instance,
                    isolate,
                }),
        }) => {
            let options = check::Options {
                protocol: *protocol,
                license: license.as_deref().map(license::read_license).transpose()?,
                instance: instance.map_or_else(|| check::INSTANCE.to_owned(), |i| i.to_string()),
                isolate: *isolate,
            };
            // Local: the plugin is run here, torud is not asked.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
            let report = runtime.block_on(check::check(path, &options));
            return check::print(&report, &out, cli.json);
        }
        Command::Completions { shell } => {
            // Into memory first: clap_complete panics when a write fails, and
            // `toructl completions bash | head` closes the pipe early.
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "toructl", &mut script);
            return Ok(out.raw(&script)?);
        }
        _ => {}
    }
    let target = match (&cli.url, socket_given, url_given) {
        (Some(_), true, true) => {
            return Err(CliError::Usage(
                "--socket and --url cannot be used together".into(),
            ));
        }
        (Some(url), false, _) => Target::Tcp {
            url: url.clone(),
            token_file: cli.token_file.clone(),
        },
        _ => Target::Unix(cli.socket.clone()),
    };
    let client = Client::new(target);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    let session = commands::Session {
        client: &client,
        out: &out,
        json: cli.json,
    };
    runtime.block_on(session.run(&cli.command))
}

/// `toructl generate-man DIR`: one page per (sub)command, named the way
/// `man` looks them up (`toructl.1`, `toructl-plugins-logs.1`, ...), and
/// `torud.8`.
fn generate_man(dir: &std::path::Path, out: &output::Out) -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::Failed(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(failed)?;
    crate::man::write_pages(Cli::command(), dir, "1", &man_sections::extra).map_err(failed)?;
    let torud = crate::torud_args::man_page().map_err(failed)?;
    std::fs::write(dir.join("torud.8"), torud).map_err(failed)?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .map_err(failed)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| (name.starts_with("toructl") && name.ends_with(".1")) || name == "torud.8")
        .collect();
    pages.sort();
    for page in pages {
        out.line(&dir.join(page).display().to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_are_one_line() {
        let error = Cli::command()
            .try_get_matches_from(["toructl", "plugins", "show"])
            .unwrap_err();
        let line = error::usage_line(&error);
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("<ID>"), "{line}");
        assert!(line.contains("usage: toructl plugins show <ID>"), "{line}");
    }
}
