//! The settings in force: one `Arc<Settings>` behind a `tokio::sync::watch`,
//! which every part of torud reads (or subscribes to), and what a reload may
//! change of it.
//!
//! Some keys are read once, when torud starts: a reload that changes one
//! keeps the value in force and says that the change waits for a restart.
//! Every other key takes effect at once, for what happens next (the next
//! request, plugin start, restart decision or shutdown); docs/CONFIGURATION.md
//! has the table.

use std::sync::Arc;

use tokio::sync::watch;

use super::Settings;

/// Whether a key differs between two settings.
type Differs = fn(&Settings, &Settings) -> bool;

/// The keys whose change needs a restart of torud, and how to tell one.
const AT_START: &[(&str, Differs)] = &[
    ("listen", |a, b| a.listen != b.listen),
    ("state_dir", |a, b| a.state_dir != b.state_dir),
    ("runtime_dir", |a, b| a.runtime_dir != b.runtime_dir),
    ("admin_token_file", |a, b| {
        a.admin_token_file != b.admin_token_file
    }),
    ("max_body_bytes", |a, b| {
        a.max_body_bytes != b.max_body_bytes
    }),
    ("max_header_bytes", |a, b| {
        a.max_header_bytes != b.max_header_bytes
    }),
    ("max_connections", |a, b| {
        a.max_connections != b.max_connections
    }),
    ("header_read_timeout", |a, b| {
        a.header_read_timeout != b.header_read_timeout
    }),
    ("store.verify_on_start", |a, b| a.store != b.store),
    ("machine_id_file", |a, b| {
        a.machine_id_file != b.machine_id_file
    }),
    ("sessions.idle_timeout", |a, b| {
        a.sessions.idle_timeout != b.sessions.idle_timeout
    }),
    ("sessions.lifetime", |a, b| {
        a.sessions.lifetime != b.sessions.lifetime
    }),
];

/// The names of the keys read only at start.
pub fn read_at_start() -> impl Iterator<Item = &'static str> {
    AT_START.iter().map(|(key, _)| *key)
}

/// The settings in force, shared by all of torud.
#[derive(Debug)]
pub struct LiveSettings {
    tx: watch::Sender<Arc<Settings>>,
}

impl LiveSettings {
    /// Puts `settings` in force.
    pub fn new(settings: Settings) -> Self {
        Self {
            tx: watch::Sender::new(Arc::new(settings)),
        }
    }

    /// The settings in force now.
    pub fn current(&self) -> Arc<Settings> {
        self.tx.borrow().clone()
    }

    /// A reader that always sees the settings in force.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Settings>> {
        self.tx.subscribe()
    }

    /// Puts a re-read configuration in force, but for the keys read only at start, which
    /// keep their value; returns those that `new` would have changed.
    pub fn reload(&self, new: Settings) -> Vec<&'static str> {
        let (settings, waiting) = merge(&self.current(), new);
        self.tx.send_replace(Arc::new(settings));
        waiting
    }
}

/// `new`, with the keys read at start taken from `old`; and which of them differed.
fn merge(old: &Settings, mut new: Settings) -> (Settings, Vec<&'static str>) {
    let waiting = AT_START
        .iter()
        .filter(|(_, changed)| changed(old, &new))
        .map(|(key, _)| *key)
        .collect();
    new.listen = old.listen.clone();
    new.state_dir = old.state_dir.clone();
    new.runtime_dir = old.runtime_dir.clone();
    new.admin_token_file = old.admin_token_file.clone();
    new.max_body_bytes = old.max_body_bytes;
    new.max_header_bytes = old.max_header_bytes;
    new.max_connections = old.max_connections;
    new.header_read_timeout = old.header_read_timeout;
    new.store = old.store.clone();
    new.machine_id_file = old.machine_id_file.clone();
    new.sessions = old.sessions;
    (new, waiting)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SystemdDirs, parse};

    fn settings(text: &str) -> Settings {
        parse(text, &SystemdDirs::default()).unwrap()
    }

    #[test]
    fn keys_read_at_start_wait_and_the_others_apply() {
        let live = LiveSettings::new(settings(""));
        let mut reader = live.subscribe();
        let waiting = live.reload(settings(
            "listen = [\"127.0.0.1:9\"]\nmax_connections = 5\nshutdown_timeout = \"1s\"\n\
             request_timeout = \"2s\"\n[store]\nverify_on_start = \"after-crash\"\n[restart]\nmax_failures = 9",
        ));
        assert_eq!(
            waiting,
            ["listen", "max_connections", "store.verify_on_start"]
        );
        assert!(reader.has_changed().unwrap());
        let now = reader.borrow_and_update().clone();
        assert_eq!(now.listen, settings("").listen);
        assert_eq!(now.max_connections, 1024);
        assert_eq!(now.store, settings("").store);
        assert_eq!(now.shutdown_timeout, std::time::Duration::from_secs(1));
        assert_eq!(now.request_timeout, std::time::Duration::from_secs(2));
        assert_eq!(now.restart.max_failures, 9);
        assert_eq!(live.current(), now);
    }

    #[test]
    fn every_key_read_at_start_is_kept_by_merge() {
        // A configuration differing in every key read at start: each is named and kept.
        let old = settings("");
        let new = settings(
            "listen = [\"127.0.0.1:9\"]\nstate_dir = \"/s\"\nruntime_dir = \"/r\"\n\
             admin_token_file = \"/t\"\nmax_body_bytes = 10\nmax_header_bytes = 9000\n\
             max_connections = 5\nheader_read_timeout = \"1s\"\nmachine_id_file = \"/m\"\n\
             [store]\nverify_on_start = \"after-crash\"\n[sessions]\nidle_timeout = \"1m\"\nlifetime = \"2m\"",
        );
        let (merged, waiting) = merge(&old, new);
        assert_eq!(waiting, read_at_start().collect::<Vec<_>>());
        assert_eq!(merged, old);
    }

    #[test]
    fn the_documentation_says_which_keys_wait_for_a_restart() {
        let docs = include_str!("../../../docs/CONFIGURATION.md");
        let table = docs
            .split("## What a reload changes")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .unwrap();
        for key in read_at_start() {
            let name = key.rsplit('.').next().unwrap();
            let row = table
                .lines()
                .find(|line| line.contains(&format!("{name}`")))
                .unwrap_or_else(|| panic!("{key} is not in the table"));
            assert!(row.contains("next start of torud"), "{key}: {row}");
        }
    }
}
