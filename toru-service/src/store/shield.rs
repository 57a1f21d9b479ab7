//! redb panics on some damaged pages: a store call runs shielded, its panic
//! caught and answered as damage, without the default message on stderr.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::Once;

use super::{StoreError, StoreResult};

thread_local! {
    /// Set while a store call runs under [`shielded`]: its panics are reported by it.
    static SHIELDED: Cell<bool> = const { Cell::new(false) };
}

/// Keeps the default panic message (and backtrace) for panics under [`shielded`] out of
/// stderr and the journal: the error they become says what happened, once.
pub(super) fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !SHIELDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `body`, turning a panic into [`StoreError::Corrupt`].
///
/// redb panics instead of erroring on some damaged pages (always in debug builds, and at some
/// sites in release builds too), and only finds them when it reads them; a daemon must report
/// that as a damaged file rather than die. redb poisons what the panic left half done, so later
/// calls fail cleanly instead of seeing a broken state.
pub(super) fn shielded<T>(path: &Path, body: impl FnOnce() -> StoreResult<T>) -> StoreResult<T> {
    let outer = SHIELDED.with(|s| s.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(body));
    SHIELDED.with(|s| s.set(outer));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: format!("the database engine failed an internal check: {message}"),
        })
    })
}
