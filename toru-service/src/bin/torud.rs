//! `torud`: parse arguments, load the configuration, build the runtime,
//! bind, run until SIGTERM/SIGINT, exit with a meaningful code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use toru_service::config::{self, SystemdDirs};
use toru_service::{NoLifecycle, listen, logging};

/// sysexits' EX_CONFIG: the configuration is unusable.
const EX_CONFIG: u8 = 78;

/// The Toru plugin host.
#[derive(Debug, Parser)]
#[command(name = "torud", version, about)]
struct Args {
    /// Configuration file [default: /etc/toru/toru.toml, built-in defaults when missing].
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Validate the configuration, print every error, and exit (0, or 78).
    #[arg(long)]
    check_config: bool,
    /// Run from a source checkout: the example plugins in examples/plugins,
    /// state under target/toru-dev, listening on 127.0.0.1:7070.
    #[arg(long, conflicts_with = "config")]
    dev: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loaded = if args.dev {
        std::env::current_dir()
            .map_err(|e| config::ConfigError {
                problems: vec![format!("cannot tell the current folder: {e}")],
            })
            .and_then(|cwd| config::dev(&cwd))
    } else {
        config::load(args.config.as_deref(), &SystemdDirs::from_env())
    };
    let settings = match loaded {
        Ok(settings) => settings,
        Err(e) => {
            for problem in &e.problems {
                eprintln!("torud: config: {problem}");
            }
            return ExitCode::from(EX_CONFIG);
        }
    };
    if args.check_config {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let listeners = listen::bind(&settings.listen)?;
        toru_service::run(
            settings,
            listeners,
            shutdown_signal(),
            Arc::new(NoLifecycle),
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut chain = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !chain.contains(&cause) {
                    chain.push_str(": ");
                    chain.push_str(&cause);
                }
                source = cause_of(source);
            }
            tracing::error!("{chain}");
            eprintln!("torud: {chain}");
            ExitCode::FAILURE
        }
    }
}

fn cause_of<'a>(
    error: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    error.and_then(std::error::Error::source)
}

/// Resolves at the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot watch for signals; stop torud with SIGKILL");
            std::future::pending::<()>().await;
        }
    }
}
