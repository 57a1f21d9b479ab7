//! What plugins write on stdout and stderr: read for the plugin's whole
//! life ([`reader`]), kept in a ring per plugin for the API (bounded in lines
//! and in bytes), and passed on to torud's log ([`crate::logging::plugin_line`]:
//! the journal's `TORU_PLUGIN`, each field of a JSON line as `TORU_FIELD_<NAME>`).

/// Reading a pipe to its end, with a length cap and a rate cap.
mod reader;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

pub(crate) use reader::spawn_reader;
use serde::Serialize;
use serde_json::{Map, Value};

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
    /// The other fields of a JSON line (`{"note": "n1", "count": 3}`), as written;
    /// empty for a plain line.
    pub(crate) fields: Fields,
}

/// A JSON line's own fields, by name.
pub(crate) type Fields = Map<String, Value>;

/// At most this many fields of one line are kept; the rest are dropped.
pub(crate) const MAX_FIELDS: usize = 64;

/// What a line says: its level, its message, its other fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// `error`, `warn`, `info`, `debug` or `trace`.
    pub(crate) level: &'static str,
    /// The message.
    pub(crate) message: String,
    /// The rest.
    pub(crate) fields: Fields,
}

impl LogLine {
    /// The bytes it holds, for the ring's bound.
    fn size(&self) -> usize {
        self.message.len()
            + self
                .fields
                .iter()
                .map(|(k, v)| k.len() + v.as_str().map_or_else(|| v.to_string().len(), str::len))
                .sum::<usize>()
    }
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

    /// Keeps a line of torud's own about the plugin's output (no fields), and logs it.
    pub(crate) fn push(&self, level: &'static str, message: String) {
        self.push_entry(Entry {
            level,
            message,
            fields: Fields::new(),
        });
    }

    /// Keeps `entry` and logs it.
    pub(crate) fn push_entry(&self, entry: Entry) {
        crate::logging::plugin_line(&self.plugin, entry.level, &entry.message, &entry.fields);
        let line = LogLine {
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            level: entry.level,
            message: entry.message,
            fields: entry.fields,
        };
        let size = line.size();
        let mut ring = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        ring.bytes += size;
        ring.lines.push_back(line);
        while ring.lines.len() > RING_LINES || (ring.bytes > RING_BYTES && ring.lines.len() > 1) {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.size();
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

/// The keys of a JSON line that say what the line is rather than being fields of it:
/// the SDK's (tracing's JSON format) and the usual ones of other languages' loggers.
const NOT_FIELDS: [&str; 9] = [
    "timestamp",
    "time",
    "ts",
    "level",
    "message",
    "msg",
    "target",
    "span",
    "spans",
];

/// A JSON line's level, message and other fields; a plain line is `info` as it is.
pub(crate) fn classify(line: &str) -> Entry {
    let line = line.trim_end_matches('\r');
    if line.starts_with('{')
        && let Ok(Value::Object(mut object)) = serde_json::from_str(line)
    {
        // tracing's JSON format without `flatten_event` nests the event's fields.
        let nested = match object.remove("fields") {
            Some(Value::Object(nested)) => nested,
            Some(other) => Map::from_iter([("fields".to_owned(), other)]),
            None => Map::new(),
        };
        let level = object
            .get("level")
            .and_then(Value::as_str)
            .map_or("info", level_name);
        let message = ["message", "msg"]
            .iter()
            .find_map(|k| object.get(*k).and_then(Value::as_str))
            .or_else(|| nested.get("message")?.as_str())
            .map_or_else(|| line.to_owned(), str::to_owned);
        let fields = object
            .into_iter()
            .chain(nested)
            .filter(|(k, _)| !NOT_FIELDS.contains(&k.as_str()))
            .take(MAX_FIELDS)
            .collect();
        return Entry {
            level,
            message,
            fields,
        };
    }
    Entry {
        level: "info",
        message: line.to_owned(),
        fields: Fields::new(),
    }
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

/// `note=n1 count=3 why="disk full"`: fields as a person reads them after a message.
/// A value is written as it is when it holds no space, quote, `=` or control
/// character, and as a JSON string otherwise; a value that is not a string, as JSON.
pub(crate) fn key_values(fields: &Fields) -> String {
    let mut out = String::new();
    for (key, value) in fields {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        match value {
            Value::String(text) if is_bare(text) => out.push_str(text),
            Value::String(text) => out.push_str(&Value::String(text.clone()).to_string()),
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

fn is_bare(text: &str) -> bool {
    !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_give_their_level_and_message() {
        let level_message = |line: &str| {
            let entry = classify(line);
            (entry.level, entry.message)
        };
        let sdk = r#"{"timestamp":"t","level":"WARN","message":"disk low","target":"x"}"#;
        assert_eq!(level_message(sdk), ("warn", "disk low".to_owned()));
        let python = r#"{"timestamp":"t","level":"error","plugin":"p","message":"boom"}"#;
        assert_eq!(level_message(python), ("error", "boom".to_owned()));
        assert_eq!(
            level_message("plain text"),
            ("info", "plain text".to_owned())
        );
        assert_eq!(level_message("{not json"), ("info", "{not json".to_owned()));
        assert_eq!(classify(r#"{"level":"critical"}"#).level, "error");
    }

    #[test]
    fn every_other_field_of_a_json_line_is_kept() {
        // The SDK's format (tracing's, flattened), with an SDK error's reason.
        let sdk = r#"{"timestamp":"t","level":"WARN","message":"request failed","error":"invalid_key: key of 1105 bytes","id":7,"target":"toru_plugin_api::runtime"}"#;
        let entry = classify(sdk);
        assert_eq!(entry.message, "request failed");
        assert_eq!(
            Value::Object(entry.fields.clone()),
            serde_json::json!({"error": "invalid_key: key of 1105 bytes", "id": 7})
        );
        assert_eq!(
            key_values(&entry.fields),
            r#"error="invalid_key: key of 1105 bytes" id=7"#
        );
        // tracing's nested format, and another logger's `msg`.
        let nested = classify(
            r#"{"level":"INFO","fields":{"message":"stored note","note":"n1"},"target":"x"}"#,
        );
        assert_eq!(nested.message, "stored note");
        assert_eq!(key_values(&nested.fields), "note=n1");
        let other = classify(r#"{"msg":"hi","ok":true,"tags":["a","b"],"empty":""}"#);
        assert_eq!(
            key_values(&other.fields),
            r#"empty="" ok=true tags=["a","b"]"#
        );
        assert!(classify("plain text").fields.is_empty());
        // Bounded.
        let many: Map<String, Value> = (0..100)
            .map(|i| (format!("k{i:03}"), Value::from(i)))
            .collect();
        let line = serde_json::to_string(&Value::Object(many)).unwrap();
        assert_eq!(classify(&line).fields.len(), MAX_FIELDS);
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
