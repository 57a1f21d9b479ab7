//! The legacy admin KV body:
//! `{"action": "get"|"set"|"delete"|"list", "key": K, "value": V, "prefix": P}`.

use serde_json::{Map, Value};

use crate::api::{AdminKv, ApiError};

/// Parses a KV request body; a 400 saying what is wrong when it is malformed.
pub(crate) fn parse(body: &[u8]) -> Result<AdminKv, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad(format!("request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(bad("request body must be a JSON object".into()));
    };
    let action = required(&fields, "action")?;
    // The first SDK wrote actions capitalized ("Get"); accept any case.
    match action.to_ascii_lowercase().as_str() {
        "get" => Ok(AdminKv::Get(required(&fields, "key")?)),
        "set" => Ok(AdminKv::Set(
            required(&fields, "key")?,
            required(&fields, "value")?,
        )),
        "delete" => Ok(AdminKv::Delete(required(&fields, "key")?)),
        "list" => Ok(AdminKv::List(
            optional(&fields, "prefix")?.unwrap_or_default(),
        )),
        _ => Err(bad(format!(
            "unknown action {action:?}: expected \"get\", \"set\", \"delete\" or \"list\""
        ))),
    }
}

/// A string field that must be present.
fn required(fields: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    optional(fields, name)?.ok_or_else(|| bad(format!("missing {name:?} (a string)")))
}

/// A string field that may be absent or null.
fn optional(fields: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("{name:?} must be a string"))),
    }
}

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        assert_eq!(
            parse(br#"{"action":"get","key":"a"}"#),
            Ok(AdminKv::Get("a".into()))
        );
        assert_eq!(
            parse(br#"{"action":"Set","key":"a","value":"b"}"#),
            Ok(AdminKv::Set("a".into(), "b".into()))
        );
        assert_eq!(
            parse(br#"{"action":"delete","key":"a","value":null}"#),
            Ok(AdminKv::Delete("a".into()))
        );
        assert_eq!(
            parse(br#"{"action":"list"}"#),
            Ok(AdminKv::List(String::new()))
        );
        assert_eq!(
            parse(br#"{"action":"list","prefix":"p/"}"#),
            Ok(AdminKv::List("p/".into()))
        );
    }

    #[test]
    fn explains_what_is_wrong() {
        let message = |body: &[u8]| match parse(body) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected 400, got {other:?}"),
        };
        assert!(message(b"{").contains("not valid JSON"));
        assert!(message(b"[]").contains("JSON object"));
        assert!(message(br#"{"key":"a"}"#).contains("\"action\""));
        assert!(message(br#"{"action":"frob","key":"a"}"#).contains("unknown action"));
        assert!(message(br#"{"action":"get"}"#).contains("\"key\""));
        assert!(message(br#"{"action":"set","key":"a"}"#).contains("\"value\""));
        assert!(message(br#"{"action":"set","key":"a","value":1}"#).contains("must be a string"));
        assert!(message(br#"{"action":"list","prefix":[]}"#).contains("\"prefix\""));
    }
}
