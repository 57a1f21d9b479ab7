//! torud's own logs and its plugins' lines: native journal entries when
//! stderr is the journal, human-readable lines on stderr otherwise;
//! `RUST_LOG` filters both.
//!
//! In the journal, every field of an event is a journal field of the same
//! name upper-cased, without prefix: `plugin` -> `PLUGIN` (torud's lines
//! about a plugin), `toru_plugin` -> `TORU_PLUGIN` (the lines a plugin wrote).
//! A plugin's lines have `TARGET=plugin`; their `CODE_FILE` and `CODE_LINE`
//! are torud's, where the line is re-emitted.

use tracing::Level;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::systemd::journal;

/// Installs the logger; does nothing if one is already installed.
pub fn init() {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO));
    let (native, unreachable) = match journal::stderr_is_journal().then(journal_layer) {
        Some(Ok(layer)) => (Some(layer), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let stderr = native.is_none().then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    let installed = tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(native)
            .with(stderr)
            .with(filter),
    );
    if let (Ok(()), Some(e)) = (installed, unreachable) {
        tracing::warn!(
            error = %e,
            "stderr is the journal but /run/systemd/journal/socket is not; logging to stderr"
        );
    }
}

/// The native journal protocol, so fields stay fields.
///
/// tracing-journald maps INFO to `notice` (5) and DEBUG to `info` (6) by
/// default; we use the syslog meanings instead, which is also what a
/// plugin's own `level` means: `info` (6) for routine lines, so that
/// `journalctl -p notice` is not flooded by them, and both DEBUG and TRACE
/// to `debug` (7).
fn journal_layer() -> std::io::Result<tracing_journald::Layer> {
    Ok(tracing_journald::layer()?
        .with_field_prefix(None)
        .with_syslog_identifier("torud".to_owned())
        .with_priority_mappings(PriorityMappings {
            error: Priority::Error,
            warn: Priority::Warning,
            info: Priority::Informational,
            debug: Priority::Debug,
            trace: Priority::Debug,
        }))
}
