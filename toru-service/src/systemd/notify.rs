//! sd_notify behind named helpers that log instead of failing: a lost
//! notification must never take torud down.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::Lifecycle;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// `STATUS=` for a person reading `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Tells systemd about torud's life (`Type=notify`).
#[derive(Debug, Default)]
pub struct Systemd;

impl Lifecycle for Systemd {
    fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    fn status(&self, status: &str) {
        self::status(status);
    }

    fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the monotonic clock");
                send(&[NotifyState::Reloading, NotifyState::Status("reloading")]);
            }
        }
    }

    fn extend_timeout(&self, by: Duration) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        send(&[NotifyState::ExtendTimeoutUsec(usec)]);
    }

    fn watchdog_interval(&self) -> Option<Duration> {
        watchdog_interval()
    }

    fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }

    fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }
}
