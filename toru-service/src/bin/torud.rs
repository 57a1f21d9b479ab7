//! `torud`: take systemd's sockets, parse arguments, load the configuration,
//! build the runtime, serve until SIGTERM/SIGINT, exit with a meaningful code.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use toru_service::reload::Reloader;
use toru_service::systemd::{activation, notify};
use toru_service::torud_args::{TorudArgs, offline};
use toru_service::{listen, logging, signals};

/// sysexits' EX_CONFIG: the configuration is unusable.
const EX_CONFIG: u8 = 78;
/// sysexits' EX_OSERR: the sockets systemd passed are unusable.
const EX_OSERR: u8 = 71;

fn main() -> ExitCode {
    // Before anything else, and before any thread exists: the descriptors
    // systemd passed, with LISTEN_* removed from the environment.
    let passed = match activation::take() {
        Ok(passed) => passed,
        Err(e) => {
            eprintln!("torud: cannot take the sockets systemd passed: {e}");
            return ExitCode::from(EX_OSERR);
        }
    };
    let args = TorudArgs::parse();
    let settings = match args.load() {
        Ok(settings) => settings,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("torud: config: {problem}");
            }
            notify::status(&format!("configuration error: {}", e.problems.join("; ")));
            return ExitCode::from(EX_CONFIG);
        }
    };
    if let Some(offline) = args.offline() {
        return offline::run(&offline, &settings);
    }
    if args.check_config {
        for warning in settings.warnings() {
            eprintln!("torud: config: warning: {warning}");
        }
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    logging::init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    match worker_threads() {
        Ok(Some(threads)) => {
            builder.worker_threads(threads);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(EX_CONFIG);
        }
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    // The socket files torud makes itself (not systemd's), removed at exit.
    let mut owned = Vec::new();
    let result = runtime.block_on(async {
        let listeners = if passed.is_empty() {
            let (listeners, sockets) = listen::bind(&settings.listen)?;
            owned = sockets;
            listeners
        } else {
            activation::into_listeners(passed)?
        };
        let (control, commands) = tokio::sync::mpsc::channel(4);
        let reload_args = args.clone();
        let reloader = Arc::new(Reloader::new(
            Box::new(move || reload_args.load()),
            control.clone(),
        ));
        tokio::spawn(signals::forward(control, reloader.clone()));
        let lifecycle = Arc::new(toru_service::systemd::notify::Systemd);
        toru_service::run(settings, listeners, commands, Some(reloader), lifecycle).await
    });
    for socket in &owned {
        socket.remove();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: the logger writes to stderr, or to the journal that stderr is.
            let chain = toru_service::report::chain(&e);
            tracing::error!("{chain}");
            notify::status(&format!("failed: {chain}"));
            ExitCode::from(e.exit_code())
        }
    }
}

/// `TOKIO_WORKER_THREADS`, checked: tokio reads it too, and panics on a value that
/// is not a whole number from 1 up.
fn worker_threads() -> Result<Option<usize>, String> {
    const NAME: &str = "TOKIO_WORKER_THREADS";
    let Some(value) = std::env::var_os(NAME) else {
        return Ok(None);
    };
    match value.to_str().and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(threads) if threads > 0 => Ok(Some(threads)),
        _ => Err(format!(
            "{NAME}={} is not a number of threads (a whole number from 1 up)",
            value.to_string_lossy()
        )),
    }
}
