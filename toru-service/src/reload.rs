//! A reload, however it is asked for (SIGHUP, `systemctl reload`, `POST
//! /api/reload`, `toructl reload`): re-read the configuration, hand it to the
//! running torud, and wait for what it changed.

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::Control;
use crate::config::{ConfigError, Settings};

/// Reads the configuration again (the same way torud read it at start).
pub type Load = Box<dyn Fn() -> Result<Settings, ConfigError> + Send + Sync>;

/// Re-reads the configuration and has the running torud apply it.
pub struct Reloader {
    load: Load,
    control: mpsc::Sender<Control>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reloaded {
    /// Plugins found for the first time, and started.
    pub added: Vec<String>,
    /// Plugins whose file or metadata changed, restarted from it.
    pub replaced: Vec<String>,
    /// Plugins whose file is gone, stopped.
    pub removed: Vec<String>,
    /// Limits put in force on running plugins: `spin: cpu_max 20% -> 50%`.
    pub limits_changed: Vec<String>,
    /// Changed keys that only a restart of torud puts in force.
    pub restart_needed: Vec<String>,
    /// What is usable but probably not meant (a missing plugin folder).
    pub warnings: Vec<String>,
    /// torud's status line afterwards: "serving 3/3 plugins".
    pub status: String,
}

/// Why a reload was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The configuration has errors; the one in force stays.
    #[error(
        "the configuration has {} error(s); still running the previous one:\n{}",
        .0.len(),
        .0.join("\n")
    )]
    Config(Vec<String>),
    /// torud is still starting its plugins.
    #[error("torud is still starting; reload once it is ready")]
    Starting,
    /// torud is stopping.
    #[error("torud is stopping")]
    Stopping,
}

impl Reloader {
    /// A reloader reading the configuration with `load` and asking `control`.
    pub fn new(load: Load, control: mpsc::Sender<Control>) -> Self {
        Self { load, control }
    }

    /// Re-reads the configuration and waits until torud has applied it (plugins
    /// rescanned, new ones started or failed). A broken configuration is refused,
    /// logged with every problem, and the one in force kept.
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        let settings = match (self.load)() {
            Ok(settings) => settings,
            Err(e) => {
                for problem in &e.problems {
                    tracing::error!("reload refused: config: {problem}");
                }
                crate::systemd::notify::status(&format!(
                    "reload refused: {} configuration error(s); still running the previous configuration",
                    e.problems.len()
                ));
                return Err(ReloadError::Config(e.problems));
            }
        };
        let (done, outcome) = oneshot::channel();
        self.control
            .send(Control::Reload {
                settings: Box::new(settings),
                done,
            })
            .await
            .map_err(|_| ReloadError::Stopping)?;
        outcome.await.unwrap_or(Err(ReloadError::Stopping))
    }
}
