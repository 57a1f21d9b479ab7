//! torud's own logs and its plugins' lines: native journal entries when
//! stderr is the journal, human-readable lines on stderr otherwise;
//! `RUST_LOG` filters both.
//!
//! In the journal, every field of torud's own events is a journal field of
//! the same name upper-cased, without prefix: `plugin` -> `PLUGIN` (torud's
//! lines about a plugin).
//!
//! A line a plugin wrote ([`plugin_line`]) is an entry of its own, sent with the
//! native protocol: `TORU_PLUGIN=<id>`, `TARGET=plugin`, `SYSLOG_IDENTIFIER=torud`,
//! and each field of the plugin's JSON line as `TORU_FIELD_<NAME>` (upper-cased,
//! anything but `A-Z0-9_` made `_`, at most 64 characters): the prefix keeps a
//! plugin's fields apart from torud's and from journald's trusted `_` fields.

use std::sync::OnceLock;

use tracing::Level;
use tracing_journald::{Priority, PriorityMappings};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;

use crate::plugins::logs::{Fields, key_values};
use crate::systemd::journal;

/// The prefix of a plugin's own fields in the journal.
pub const PLUGIN_FIELD_PREFIX: &str = "TORU_FIELD_";
/// The longest field name journald takes.
const MAX_FIELD_NAME: usize = 64;

/// Whether torud writes to the journal natively (set once, by [`init`]).
static NATIVE: OnceLock<bool> = OnceLock::new();

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
    let is_native = native.is_some();
    let installed = tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(native)
            .with(stderr)
            .with(filter),
    );
    if installed.is_ok() {
        let _ = NATIVE.set(is_native);
    }
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

/// Logs a line plugin `plugin` wrote, at its `level`, with its `fields`: in the journal
/// as an entry of its own (fields and all, see the module's text), elsewhere as one of
/// torud's lines with the fields after the message (`stored note note=n1`). `RUST_LOG`
/// filters both, by the target `plugin`.
pub(crate) fn plugin_line(plugin: &str, level: &str, message: &str, fields: &Fields) {
    macro_rules! at {
        ($level:expr, $priority:expr) => {{
            if !tracing::enabled!(target: "plugin", $level) {
                return;
            }
            if NATIVE.get() == Some(&true) {
                // If the journal refuses it, torud's stderr is the journal's stream: say it there.
                if journal_line(plugin, $priority, message, fields).is_ok() {
                    return;
                }
            }
            if fields.is_empty() {
                tracing::event!(target: "plugin", $level, toru_plugin = plugin, "{message}");
            } else {
                let fields = key_values(fields);
                tracing::event!(target: "plugin", $level, toru_plugin = plugin, "{message} {fields}");
            }
        }};
    }
    use libsystemd::logging::Priority as P;
    match level {
        "error" => at!(Level::ERROR, P::Error),
        "warn" => at!(Level::WARN, P::Warning),
        "debug" => at!(Level::DEBUG, P::Debug),
        "trace" => at!(Level::TRACE, P::Debug),
        _ => at!(Level::INFO, P::Info),
    }
}

/// One native journal entry for a plugin's line.
fn journal_line(
    plugin: &str,
    priority: libsystemd::logging::Priority,
    message: &str,
    fields: &Fields,
) -> Result<(), libsystemd::errors::SdError> {
    let own = [
        ("TORU_PLUGIN".to_owned(), plugin.to_owned()),
        ("TARGET".to_owned(), "plugin".to_owned()),
        ("SYSLOG_IDENTIFIER".to_owned(), "torud".to_owned()),
    ];
    let theirs = fields.iter().map(|(key, value)| {
        let text = match value {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        (journal_field_name(key), text)
    });
    libsystemd::logging::journal_send(priority, message, own.into_iter().chain(theirs))
}

/// A plugin's field name as a journal field: `TORU_FIELD_` and the name upper-cased,
/// anything but `A-Z0-9_` made `_`, cut to journald's 64 characters.
pub fn journal_field_name(key: &str) -> String {
    let mut name = String::from(PLUGIN_FIELD_PREFIX);
    name.extend(key.chars().map(|c| match c.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9' | '_') => c,
        _ => '_',
    }));
    name.truncate(MAX_FIELD_NAME);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_fields_get_a_prefix_and_journal_characters() {
        assert_eq!(journal_field_name("note"), "TORU_FIELD_NOTE");
        assert_eq!(journal_field_name("http.path"), "TORU_FIELD_HTTP_PATH");
        assert_eq!(journal_field_name("_PID"), "TORU_FIELD__PID");
        assert_eq!(journal_field_name("été"), "TORU_FIELD__T_");
        let long = journal_field_name(&"x".repeat(100));
        assert_eq!(long.len(), MAX_FIELD_NAME);
        assert!(long.starts_with("TORU_FIELD_XXX"));
    }
}
