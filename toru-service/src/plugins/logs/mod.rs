//! What plugins write on stdout and stderr: read for the plugin's whole
//! life ([`reader`]), kept in a ring per plugin for the API (bounded in lines
//! and in bytes), and emitted as tracing events carrying `toru_plugin` (the
//! journal's `TORU_PLUGIN`).

/// Reading a pipe to its end, with a length cap and a rate cap.
mod reader;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

pub(crate) use reader::spawn_reader;
use serde::Serialize;
use tracing::Level;

/// Lines kept per plugin for `GET /api/plugins/{id}/logs`...
pub(crate) const RING_LINES: usize = 1000;
/// ...and at most this many bytes of them (long lines count for more).
pub(crate) const RING_BYTES: usize = 2 * 1024 * 1024;

/// One line a plugin wrote .
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LogLine {
    /// When torud read it (RFC 3339).
    pub(crate) timestamp: String,
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub(crate) level: &'static str,
    /// The line, or its `message` field when the plugin wrote JSON.
    pub(crate) message: String,
}

/// A page of log lines, newest last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LogPage {
    /// The plugin.
    pub(crate) plugin: String,
    /// Lines of this page, oldest first.
    pub(crate) logs: Vec<LogLine>,
    /// Page number; 1 is the newest lines.
    pub(crate) page: usize,
    /// Lines per page.
    pub(crate) page_size: usize,
    /// Lines kept (after the level filter).
    pub(crate) total: usize,
}

/// Which lines of the ring are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogQuery {
    /// 1 = newest lines.
    pub(crate) page: usize,
    /// Lines per page (1 to 1000).
    pub(crate) page_size: usize,
    /// Only lines at this level or more severe.
    pub(crate) min_level: Option<&'static str>,
}

/// The recent lines of one plugin.
#[derive(Debug)]
pub(crate) struct PluginLogs {
    plugin: String,
    lines: Mutex<Ring>,
}

/// The lines and the bytes their messages hold.
#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl PluginLogs {
    /// An empty ring for `plugin`.
    pub(crate) fn new(plugin: &str) -> Arc<Self> {
        Arc::new(Self {
            plugin: plugin.to_owned(),
            lines: Mutex::new(Ring::default()),
        })
    }

    /// Keeps `line` and emits it as a tracing event.
    pub(crate) fn push(&self, level: &'static str, message: String) {
        emit(&self.plugin, level, &message);
        let line = LogLine {
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level,
            message,
        };
        let mut ring = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        ring.bytes += line.message.len();
        ring.lines.push_back(line);
        while ring.lines.len() > RING_LINES || (ring.bytes > RING_BYTES && ring.lines.len() > 1) {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.message.len();
            }
        }
    }

    /// Every kept message, oldest first.
    #[cfg(test)]
    pub(crate) fn messages(&self) -> Vec<String> {
        let ring = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        ring.lines.iter().map(|l| l.message.clone()).collect()
    }

    /// One page of lines, newest page first, lines oldest first within it.
    pub(crate) fn page(&self, query: &LogQuery) -> LogPage {
        let ring = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        let kept: Vec<&LogLine> = ring
            .lines
            .iter()
            .filter(|l| {
                query
                    .min_level
                    .is_none_or(|min| severity(l.level) <= severity(min))
            })
            .collect();
        let total = kept.len();
        let end = total.saturating_sub((query.page.max(1) - 1) * query.page_size);
        let start = end.saturating_sub(query.page_size);
        LogPage {
            plugin: self.plugin.clone(),
            logs: kept[start..end].iter().map(|l| (*l).clone()).collect(),
            page: query.page,
            page_size: query.page_size,
            total,
        }
    }
}

/// 0 is the most severe.
fn severity(level: &str) -> u8 {
    match level {
        "error" => 0,
        "warn" => 1,
        "info" => 2,
        "debug" => 3,
        _ => 4,
    }
}

/// A JSON line's level and message; a plain line is `info` as it is.
pub(crate) fn classify(line: &str) -> (&'static str, String) {
    let line = line.trim_end_matches('\r');
    if line.starts_with('{')
        && let Ok(serde_json::Value::Object(object)) = serde_json::from_str(line)
    {
        let level = object
            .get("level")
            .and_then(serde_json::Value::as_str)
            .map_or("info", level_name);
        let message = ["message", "msg"]
            .iter()
            .find_map(|k| object.get(*k).and_then(serde_json::Value::as_str))
            .or_else(|| object.get("fields")?.get("message")?.as_str())
            .map_or_else(|| line.to_owned(), str::to_owned);
        return (level, message);
    }
    ("info", line.to_owned())
}

/// Level names plugins use, to ours.
fn level_name(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "error" | "err" | "critical" | "crit" | "fatal" | "alert" | "emerg" | "panic" => "error",
        "warn" | "warning" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    }
}

fn emit(plugin: &str, level: &str, message: &str) {
    macro_rules! at {
        ($level:expr) => {
            tracing::event!(target: "plugin", $level, toru_plugin = plugin, "{message}")
        };
    }
    match level {
        "error" => at!(Level::ERROR),
        "warn" => at!(Level::WARN),
        "debug" => at!(Level::DEBUG),
        "trace" => at!(Level::TRACE),
        _ => at!(Level::INFO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_their_level_and_message() {
        let sdk = r#"{"timestamp":"t","level":"WARN","message":"disk low","target":"x"}"#;
        assert_eq!(classify(sdk), ("warn", "disk low".to_owned()));
        let python = r#"{"timestamp":"t","level":"error","plugin":"p","message":"boom"}"#;
        assert_eq!(classify(python), ("error", "boom".to_owned()));
        assert_eq!(classify("plain text"), ("info", "plain text".to_owned()));
        assert_eq!(classify("{not json"), ("info", "{not json".to_owned()));
        assert_eq!(classify(r#"{"level":"critical"}"#).0, "error");
    }

    #[test]
    fn pages_count_from_the_newest_and_filter_by_level() {
        let logs = PluginLogs::new("p");
        for i in 0..25 {
            logs.push(
                if i % 5 == 0 { "error" } else { "info" },
                format!("line {i}"),
            );
        }
        let query = |page, min_level| LogQuery {
            page,
            page_size: 10,
            min_level,
        };
        let newest = logs.page(&query(1, None));
        assert_eq!(newest.total, 25);
        assert_eq!(
            newest.logs.first().map(|l| l.message.as_str()),
            Some("line 15")
        );
        assert_eq!(
            newest.logs.last().map(|l| l.message.as_str()),
            Some("line 24")
        );
        let oldest = logs.page(&query(3, None));
        assert_eq!(oldest.logs.len(), 5);
        assert!(logs.page(&query(4, None)).logs.is_empty());
        let errors = logs.page(&query(1, Some("error")));
        assert_eq!(errors.total, 5);
    }

    #[test]
    fn the_ring_keeps_the_newest_lines() {
        let logs = PluginLogs::new("p");
        for i in 0..RING_LINES + 10 {
            logs.push("info", i.to_string());
        }
        let page = logs.page(&LogQuery {
            page: 1,
            page_size: 1000,
            min_level: None,
        });
        assert_eq!(page.total, RING_LINES);
        assert_eq!(
            page.logs.last().map(|l| l.message.clone()),
            Some((RING_LINES + 9).to_string())
        );
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_too() {
        let logs = PluginLogs::new("p");
        for i in 0..RING_LINES {
            logs.push("info", format!("{i:>16384}"));
        }
        let kept = logs.messages();
        assert!(kept.len() < RING_LINES);
        assert!(kept.iter().map(String::len).sum::<usize>() <= RING_BYTES);
        assert_eq!(kept.last().map(|m| m.trim()), Some("999"));
    }
}
