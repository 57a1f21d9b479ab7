//! Being a good systemd citizen: socket activation, readiness and liveness
//! notifications. Everything here degrades to nothing outside systemd.

/// Listening sockets passed by systemd.
pub mod activation;
/// sd_notify: READY, STATUS, RELOADING, STOPPING, WATCHDOG.
pub mod notify;
