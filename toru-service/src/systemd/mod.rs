//! Being a good systemd citizen: socket activation, readiness and liveness
//! notifications, the journal. Everything here degrades to nothing outside systemd.

/// Listening sockets passed by systemd.
pub mod activation;
/// `JOURNAL_STREAM`: is stderr the journal?
pub mod journal;
/// sd_notify: READY, STATUS, RELOADING, STOPPING, WATCHDOG.
pub mod notify;
