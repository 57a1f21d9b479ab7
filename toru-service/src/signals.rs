//! Signals into [`Control`] messages: SIGTERM and SIGINT stop torud,
//! SIGHUP reloads (through the [`Reloader`], as `POST /api/reload` does).

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::Control;
use crate::reload::Reloader;

/// Forwards signals to `control` until a stop signal; SIGHUP has `reloader`
/// re-read the configuration and reload (a broken one is logged and the old one
/// kept).
pub async fn forward(control: mpsc::Sender<Control>, reloader: Arc<Reloader>) {
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
                // Apart, so that a stop signal is heard while the reload runs.
                let reloader = reloader.clone();
                tokio::spawn(async move {
                    if let Err(e @ (crate::reload::ReloadError::Starting
                    | crate::reload::ReloadError::Stopping)) = reloader.reload().await
                    {
                        tracing::warn!("reload not done: {e}");
                    }
                });
            }
        }
    }
    let _ = control.send(Control::Shutdown).await;
}
