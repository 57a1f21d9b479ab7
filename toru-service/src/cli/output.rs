//! How `toructl` prints: aligned tables, colour only for a terminal (and
//! never with `NO_COLOR`), and pretty JSON for `--json`.

use std::io::{IsTerminal, Write};

use serde_json::Value;

/// Where output goes and whether it may be coloured.
#[derive(Debug)]
pub(crate) struct Out {
    colour: bool,
    stdout: std::io::Stdout,
}

/// Colours used for plugin states and log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Paint {
    /// As it is.
    Plain,
    /// Fine.
    Green,
    /// In between.
    Yellow,
    /// Wrong.
    Red,
    /// Not in play.
    Dim,
}

impl Paint {
    /// The colour of a plugin state or health.
    pub(crate) fn for_state(state: &str) -> Self {
        match state {
            "running" | "healthy" => Self::Green,
            "starting" | "stopping" | "backoff" | "unhealthy" => Self::Yellow,
            "failed" | "invalid" => Self::Red,
            "stopped" | "disabled" => Self::Dim,
            _ => Self::Plain,
        }
    }

    /// The colour of a log level.
    pub(crate) fn for_level(level: &str) -> Self {
        match level {
            "error" => Self::Red,
            "warn" => Self::Yellow,
            "debug" | "trace" => Self::Dim,
            _ => Self::Plain,
        }
    }

    fn code(self) -> Option<&'static str> {
        match self {
            Self::Plain => None,
            Self::Green => Some("32"),
            Self::Yellow => Some("33"),
            Self::Red => Some("31"),
            Self::Dim => Some("2"),
        }
    }
}

impl Out {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty
    /// (<https://no-color.org>).
    pub(crate) fn new() -> Self {
        let stdout = std::io::stdout();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: stdout.is_terminal() && !no_color,
            stdout,
        }
    }

    /// `text` in `paint`, when colour is on.
    pub(crate) fn paint(&self, text: &str, paint: Paint) -> String {
        match paint.code() {
            Some(code) if self.colour => format!("\x1b[{code}m{text}\x1b[0m"),
            _ => text.to_owned(),
        }
    }

    /// One line.
    pub(crate) fn line(&self, text: &str) -> std::io::Result<()> {
        let mut out = self.stdout.lock();
        writeln!(out, "{text}")?;
        out.flush()
    }

    /// `bytes` as they are: no newline added.
    pub(crate) fn raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut out = self.stdout.lock();
        out.write_all(bytes)?;
        out.flush()
    }

    /// Whether stdout is a terminal (a person reads it, not a program).
    pub(crate) fn is_terminal(&self) -> bool {
        self.stdout.is_terminal()
    }

    /// `value` as pretty JSON.
    pub(crate) fn json(&self, value: &Value) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
        self.line(&text)
    }

    /// `value` as one line of JSON (for streams such as `logs -f --json`).
    pub(crate) fn json_line(&self, value: &Value) -> std::io::Result<()> {
        self.line(&value.to_string())
    }

    /// A table: a header row, then the rows, columns padded to line up. A
    /// cell is (text, paint); padding is computed on the text, so colours
    /// do not upset the alignment. The last column is not padded.
    pub(crate) fn table(
        &self,
        header: &[&str],
        rows: &[Vec<(String, Paint)>],
    ) -> std::io::Result<()> {
        let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
        for row in rows {
            for (i, (text, _)) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(width(text));
                }
            }
        }
        let header: Vec<(String, Paint)> = header
            .iter()
            .map(|h| ((*h).to_owned(), Paint::Plain))
            .collect();
        let mut out = self.stdout.lock();
        for row in std::iter::once(&header).chain(rows) {
            let mut line = String::new();
            for (i, (text, paint)) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                line.push_str(&self.paint(text, *paint));
                if !last {
                    let pad = widths
                        .get(i)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(width(text))
                        + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        out.flush()
    }

    /// `key  value` lines, keys padded to line up.
    pub(crate) fn fields(&self, fields: &[(&str, String, Paint)]) -> std::io::Result<()> {
        let key_width = fields.iter().map(|(k, _, _)| width(k)).max().unwrap_or(0);
        let mut out = self.stdout.lock();
        for (key, value, paint) in fields {
            let pad = " ".repeat(key_width.saturating_sub(width(key)) + 2);
            writeln!(out, "{key}{pad}{}", self.paint(value, *paint))?;
        }
        out.flush()
    }
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

/// Columns `text` takes on a terminal: one per character. Tables leave out
/// the plugins' icons (emoji, two columns wide) so that this holds.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// A JSON field as text: strings as they are, null as `-`.
pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 timestamp to the millisecond, as log lines have them.
pub(crate) fn timestamp(value: &Value) -> String {
    value
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(
            || text(value),
            |t| {
                t.with_timezone(&chrono::Utc)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            },
        )
}

/// "1 byte", "5 bytes".
pub(crate) fn count_bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".to_owned()
    } else {
        format!("{n} bytes")
    }
}

/// Bytes as `512 B`, `1.5 KiB`, `12.3 MiB`, `1.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Seconds as `3d 4h`, `2h 5m`, `5m 12s` or `12s`.
pub(crate) fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_uptime() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(61), "1m 1s");
        assert_eq!(duration(3 * 3600 + 120), "3h 2m");
        assert_eq!(duration(2 * 86_400 + 3600), "2d 1h");
    }

    #[test]
    fn states_have_colours() {
        assert_eq!(Paint::for_state("running"), Paint::Green);
        assert_eq!(Paint::for_state("backoff"), Paint::Yellow);
        assert_eq!(Paint::for_state("starting"), Paint::Yellow);
        assert_eq!(Paint::for_state("failed"), Paint::Red);
        assert_eq!(Paint::for_state("invalid"), Paint::Red);
        assert_eq!(Paint::for_state("disabled"), Paint::Dim);
        assert_eq!(Paint::for_state("stopped"), Paint::Dim);
    }

    #[test]
    fn text_of_json() {
        assert_eq!(text(&Value::Null), "-");
        assert_eq!(text(&serde_json::json!("a")), "a");
        assert_eq!(text(&serde_json::json!(3)), "3");
        assert_eq!(
            timestamp(&serde_json::json!("2026-11-25T05:36:58.626365038Z")),
            "2026-11-25T05:36:58.626Z"
        );
        assert_eq!(timestamp(&serde_json::json!("soon")), "soon");
    }
}
