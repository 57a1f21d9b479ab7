//! `toru.toml` as written: the plain structs serde fills, and the problems
//! found on the way, each with the line it is on.
//!
//! Reading never stops at the first problem. The TOML parser recovers from
//! syntax errors and lists them all; a section that is not a table is
//! reported and left out; every value is first taken as it is (a
//! [`Lenient`]) and its type checked afterwards, so a wrong type is one more
//! problem rather than the end of the listing; unknown keys are collected by
//! `serde_ignored` wherever they are.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listen: Lenient<Vec<String>>,
    #[serde(default)]
    pub(super) state_dir: Lenient<PathBuf>,
    #[serde(default)]
    pub(super) runtime_dir: Lenient<PathBuf>,
    #[serde(default)]
    pub(super) plugin_dirs: Lenient<Vec<PathBuf>>,
    #[serde(default)]
    pub(super) request_timeout: Lenient<String>,
    #[serde(default)]
    pub(super) admin_token_file: Lenient<PathBuf>,
    #[serde(default)]
    pub(super) shutdown_timeout: Lenient<String>,
    #[serde(default)]
    pub(super) max_body_bytes: Lenient<usize>,
    #[serde(default)]
    pub(super) max_header_bytes: Lenient<usize>,
    #[serde(default)]
    pub(super) max_connections: Lenient<usize>,
    #[serde(default)]
    pub(super) header_read_timeout: Lenient<String>,
    #[serde(default)]
    pub(super) isolate_plugins: Lenient<bool>,
    #[serde(default)]
    pub(super) machine_id_file: Lenient<PathBuf>,
    #[serde(default)]
    pub(super) restart: RawRestart,
    #[serde(default)]
    pub(super) health: RawHealth,
    #[serde(default)]
    pub(super) store: RawStore,
    #[serde(default)]
    pub(super) sessions: RawSessions,
    #[serde(default)]
    pub(super) plugins: BTreeMap<String, RawPlugin>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRestart {
    #[serde(default)]
    pub(super) backoff_initial: Lenient<String>,
    #[serde(default)]
    pub(super) backoff_max: Lenient<String>,
    #[serde(default)]
    pub(super) stable_after: Lenient<String>,
    #[serde(default)]
    pub(super) max_failures: Lenient<u32>,
    #[serde(default)]
    pub(super) failure_window: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawHealth {
    #[serde(default)]
    pub(super) start_timeout: Lenient<String>,
    #[serde(default)]
    pub(super) metadata_timeout: Lenient<String>,
    #[serde(default)]
    pub(super) ping_interval: Lenient<String>,
    #[serde(default)]
    pub(super) ping_timeout: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawStore {
    #[serde(default)]
    pub(super) verify_on_start: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawSessions {
    #[serde(default)]
    pub(super) idle_timeout: Lenient<String>,
    #[serde(default)]
    pub(super) lifetime: Lenient<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RawPlugin {
    #[serde(default)]
    pub(super) config: Lenient<toml::Table>,
    pub(super) memory_max: Option<toml::Value>,
    pub(super) memory_swap_max: Option<toml::Value>,
    pub(super) pids_max: Option<toml::Value>,
    pub(super) cpu_max: Option<toml::Value>,
}

/// The sections of the file: each must be a table.
const SECTIONS: &[&str] = &["restart", "health", "store", "sessions", "plugins"];

/// A value as written, its type checked only when it is used (see
/// [`Problems::take`]).
#[derive(Debug, Default)]
pub(super) enum Lenient<T> {
    /// Not in the file.
    #[default]
    Absent,
    /// Of the right type.
    Given(T),
    /// Of another type: what serde said of it.
    Wrong(String),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Any TOML value is a `toml::Value`, so this never fails the document.
        let value = toml::Value::deserialize(deserializer)?;
        let shown = value.to_string();
        Ok(match T::deserialize(value) {
            Ok(value) => Self::Given(value),
            Err(e) => Self::Wrong(format!(
                "{shown} is of the wrong type ({})",
                e.to_string().trim()
            )),
        })
    }
}

/// The problems found, each said with its line when the key is in the file.
#[derive(Debug)]
pub(super) struct Problems<'t> {
    text: &'t str,
    doc: DeTable<'t>,
    list: Vec<(Option<usize>, String)>,
}

impl<'t> Problems<'t> {
    /// Every problem, in the order of the lines they are on.
    pub(super) fn into_list(mut self) -> Vec<String> {
        self.list
            .sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
        self.list.into_iter().map(|(_, problem)| problem).collect()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A problem with `key` (dotted: `restart.max_failures`).
    pub(super) fn at(&mut self, key: &str, problem: impl std::fmt::Display) {
        let line = self.line_of(key);
        self.push(line, problem);
    }

    /// A problem with no key of its own.
    pub(super) fn general(&mut self, problem: impl std::fmt::Display) {
        self.push(None, problem);
    }

    fn push(&mut self, line: Option<usize>, problem: impl std::fmt::Display) {
        let text = match line {
            Some(line) => format!("line {line}: {problem}"),
            None => problem.to_string(),
        };
        self.list.push((line, text));
    }

    /// The value of `key`: absent, given, or (said here) of the wrong type.
    pub(super) fn take<T>(&mut self, key: &str, value: Lenient<T>) -> Option<T> {
        self.take_hinted(key, value, "")
    }

    /// [`Problems::take`], with `hint` said after a wrong type.
    pub(super) fn take_hinted<T>(&mut self, key: &str, value: Lenient<T>, hint: &str) -> Option<T> {
        match value {
            Lenient::Absent => None,
            Lenient::Given(value) => Some(value),
            Lenient::Wrong(why) => {
                let hint = if hint.is_empty() {
                    String::new()
                } else {
                    format!("; {hint}")
                };
                self.at(key, format!("`{key}` = {why}{hint}"));
                None
            }
        }
    }

    /// The line on which dotted `key` is written, if it is.
    fn line_of(&self, key: &str) -> Option<usize> {
        let mut table = &self.doc;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let (name, value) = table.get_key_value(part)?;
            if parts.peek().is_none() {
                return Some(line_at(self.text, name.span().start));
            }
            table = match value.get_ref() {
                DeValue::Table(inner) => inner,
                _ => return Some(line_at(self.text, name.span().start)),
            };
        }
        None
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

/// Reads `text`; the problems found so far come back with it, the raw
/// config is `None` only when the TOML itself is broken.
pub(super) fn read(text: &str) -> (Option<RawConfig>, Problems<'_>) {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    let mut problems = Problems {
        text,
        doc: doc.get_ref().clone(),
        list: Vec::new(),
    };
    if !syntax.is_empty() {
        for error in syntax {
            let line = error.span().map(|span| line_at(text, span.start));
            problems.push(line, format!("invalid TOML: {}", error.message().trim()));
        }
        return (None, problems);
    }
    let doc = without_misplaced_sections(doc, &mut problems);
    let mut unknown = Vec::new();
    let raw = serde_ignored::deserialize(toml::de::Deserializer::from(doc), |path| {
        unknown.push(path.to_string());
    });
    for key in unknown {
        problems.at(&key, format!("unknown key `{key}`"));
    }
    match raw {
        Ok(raw) => (Some(raw), problems),
        Err(e) => {
            // Not expected (every value is taken leniently), but said if it happens.
            problems.general(e.message().trim());
            (None, problems)
        }
    }
}

/// The document without the sections that are not tables (`restart = 5`,
/// `plugins.hello = "x"`), each one reported.
fn without_misplaced_sections<'t>(
    mut doc: Spanned<DeTable<'t>>,
    problems: &mut Problems<'t>,
) -> Spanned<DeTable<'t>> {
    let table = doc.get_mut();
    for section in SECTIONS {
        if table
            .get(*section)
            .is_some_and(|v| !matches!(v.get_ref(), DeValue::Table(_)))
        {
            let kind = table.get(*section).map_or("", |v| v.get_ref().type_str());
            problems.at(
                section,
                format!(
                    "`{section}` must be a table (`[{section}]`), not {}",
                    a(kind)
                ),
            );
            table.remove(*section);
        }
    }
    if let Some(plugins) = table.get_mut("plugins")
        && let DeValue::Table(plugins) = plugins.get_mut()
    {
        let misplaced: Vec<String> = plugins
            .iter()
            .filter(|(_, v)| !matches!(v.get_ref(), DeValue::Table(_)))
            .map(|(k, _)| k.get_ref().to_string())
            .collect();
        for id in misplaced {
            let kind = plugins
                .get(id.as_str())
                .map_or("", |v| v.get_ref().type_str());
            problems.at(
                &format!("plugins.{id}"),
                format!(
                    "`plugins.{id}` must be a table (`[plugins.{id}]`), not {}",
                    a(kind)
                ),
            );
            plugins.remove(id.as_str());
        }
    }
    doc
}

/// "a string", "an integer".
fn a(kind: &str) -> String {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {kind}")
}
