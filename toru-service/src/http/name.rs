//! What may stand for a plugin id or route in a path.

/// Whether `s` can be a plugin id or route segment: `[A-Za-z0-9._-]+`, not `.` or `..`.
pub(crate) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
