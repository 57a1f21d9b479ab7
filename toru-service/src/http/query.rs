//! Query strings of `GET /api/plugins/{id}/logs` and `GET /api/events`.
//! An empty value (`?level=`) counts as absent, as HTML forms send them.

use std::ops::RangeInclusive;

use crate::api::{ApiError, LogQuery};

/// Lines per log page when the client does not say.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Allowed log page sizes.
const PAGE_SIZES: RangeInclusive<usize> = 1..=1000;
/// Events returned when the client does not say.
const DEFAULT_EVENT_LIMIT: usize = 100;
/// Allowed event limits.
const EVENT_LIMITS: RangeInclusive<usize> = 1..=10_000;

/// `?page=&page_size=&level=`.
pub(crate) fn logs(query: Option<&str>) -> Result<LogQuery, ApiError> {
    let min_level = match param(query, "level") {
        None => None,
        Some(level) => Some(parse_level(&level).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "invalid \"level\" {level:?}: expected error, warn, info, debug or trace"
            ))
        })?),
    };
    Ok(LogQuery {
        page: number(query, "page", 1, 1..=usize::MAX)?,
        page_size: number(query, "page_size", DEFAULT_PAGE_SIZE, PAGE_SIZES)?,
        min_level,
    })
}

/// `?plugin=&limit=`: the plugin to filter on, and how many events.
pub(crate) fn events(query: Option<&str>) -> Result<(Option<String>, usize), ApiError> {
    let plugin = param(query, "plugin");
    if let Some(id) = &plugin
        && !super::name::is_name(id)
    {
        return Err(ApiError::BadRequest(format!(
            "invalid \"plugin\" {id:?}: not a plugin id"
        )));
    }
    Ok((
        plugin,
        number(query, "limit", DEFAULT_EVENT_LIMIT, EVENT_LIMITS)?,
    ))
}

/// The canonical level name; the journal's "warning" spelling is accepted too.
fn parse_level(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_lowercase().as_str() {
        "error" => "error",
        "warn" | "warning" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => return None,
    })
}

/// Integer parameter `name` within `range`, `default` when absent.
fn number(
    query: Option<&str>,
    name: &str,
    default: usize,
    range: RangeInclusive<usize>,
) -> Result<usize, ApiError> {
    let Some(text) = param(query, name) else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ if *range.end() == usize::MAX => Err(ApiError::BadRequest(format!(
            "invalid {name:?} {text:?}: expected an integer of at least {}",
            range.start()
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "invalid {name:?} {text:?}: expected an integer from {} to {}",
            range.start(),
            range.end()
        ))),
    }
}

/// The first non-empty value of `name`, percent-decoded (`+` is a space).
fn param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key) == name).then(|| decode(value))
        })
        .find(|value| !value.is_empty())
}

/// `application/x-www-form-urlencoded` decoding; a malformed escape stays as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match (b, escaped) {
            (_, Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_parameters() {
        assert_eq!(param(Some("a=1&b=x%20y+z"), "b").as_deref(), Some("x y z"));
        assert_eq!(param(Some("a=&a=2"), "a").as_deref(), Some("2"));
        assert_eq!(param(Some("a"), "a"), None);
        assert_eq!(param(Some("p%61ge=3"), "page").as_deref(), Some("3"));
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn log_defaults_and_levels() {
        assert_eq!(
            logs(None),
            Ok(LogQuery {
                page: 1,
                page_size: 100,
                min_level: None
            })
        );
        assert_eq!(
            logs(Some("page=2&page_size=1000&level=WARNING")),
            Ok(LogQuery {
                page: 2,
                page_size: 1000,
                min_level: Some("warn")
            })
        );
        assert_eq!(logs(Some("level=")).map(|q| q.min_level), Ok(None));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (query, name) in [
            ("page=0", "\"page\""),
            ("page=-1", "\"page\""),
            ("page=x", "\"page\""),
            ("page_size=0", "\"page_size\""),
            ("page_size=1001", "\"page_size\""),
            ("level=loud", "\"level\""),
        ] {
            match logs(Some(query)) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(name), "{query}: {m}"),
                other => panic!("{query}: {other:?}"),
            }
        }
        assert!(events(Some("limit=10001")).is_err());
        assert!(events(Some("plugin=a%2Fb")).is_err());
        assert_eq!(
            events(Some("plugin=hello&limit=5")),
            Ok((Some("hello".into()), 5))
        );
    }
}
