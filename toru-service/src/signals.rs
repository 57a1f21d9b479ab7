//! Signals into [`Control`] messages: SIGTERM and SIGINT stop torud,
//! SIGHUP re-reads the configuration (through `load`) and reloads.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::Control;
use crate::config::{ConfigError, Settings};

/// Forwards signals to `control` until a stop signal; `load` re-reads the
/// configuration on SIGHUP (a broken one is logged and the old one kept).
pub async fn forward<F>(control: mpsc::Sender<Control>, load: F)
where
    F: Fn() -> Result<Settings, ConfigError> + Send + 'static,
{
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot watch for signals; stop torud with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT");
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                match load() {
                    Ok(settings) => {
                        if control.send(Control::Reload(Box::new(settings))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        for problem in &e.problems {
                            tracing::error!("reload refused: config: {problem}");
                        }
                        crate::systemd::notify::status(&format!(
                            "reload refused: {} configuration error(s); still running the previous configuration",
                            e.problems.len()
                        ));
                    }
                }
            }
        }
    }
    let _ = control.send(Control::Shutdown).await;
}
