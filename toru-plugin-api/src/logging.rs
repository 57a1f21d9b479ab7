//! Structured logs on stderr: one JSON object per line, which the host reads
//! and maps to journald priorities by `level`.
//!
//! ```text
//! {"timestamp":"2026-01-02T03:04:05.678901Z","level":"INFO","message":"listening","socket":"/run/toru/plugins/hello.sock","target":"toru_plugin_api::runtime"}
//! ```
//!
//! The level is `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`; `RUST_LOG`
//! (`info`, `debug`, `my_plugin=trace,info`, ...) sets which are written.

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

/// Installs the JSON logger and a panic hook that logs through it.
/// Does nothing if a global logger is already set.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_writer(std::io::stderr);
    let subscriber = tracing_subscriber::registry().with(json).with(filter);
    if tracing::subscriber::set_global_default(subscriber).is_ok() {
        std::panic::set_hook(Box::new(|info| {
            tracing::error!(panic = %info, "panic");
        }));
    }
}
