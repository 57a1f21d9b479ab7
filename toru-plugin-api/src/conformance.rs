//! The conformance scenarios (`conformance/` in the Toru repository): the exact frames
//! a host and a plugin send each other, one JSON object per line, replayed here with
//! the caller as the host. `toructl plugins check` replays them against any plugin;
//! the SDK's tests replay them against its runtime; a plugin's own tests may too
//! (serve it with [`PluginServer::answering_checker_conventions`]).
//!
//! A line is one of:
//! * `{"from": "host", "header": {...}, "body_hex": "..."}`: a frame to send; an
//!   `"id": "$name"` in it stands for the id the plugin used where a line said
//!   `"id_as": "name"`;
//! * `{"from": "host", "raw_hex": "..."}`: bytes to send as they are;
//! * `{"from": "host", "wait_ms": N}`: a pause;
//! * `{"from": "plugin", "header": {...}, "body_hex": "...", "id_as": "name"}`: the
//!   next frame the plugin must send: every field given equal (an `error`'s
//!   `message` need only be a string), the body equal when given;
//! * `{"from": "plugin", "closes": true}`: the plugin closes the connection;
//! * anything else (`{"note": ...}`) is for the reader. The first line may say
//!   `"requires": "echo"` (or `"kv"`): the checker's convention the scenario uses.
//!
//! [`PluginServer::answering_checker_conventions`]: crate::PluginServer::answering_checker_conventions

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::MAX_FRAME_LEN;

/// How long a plugin may take to close the connection where a scenario says it does.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a replay went wrong: the scenario's line (from 1) and what happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ReplayError {
    /// The scenario's line, counting from 1.
    pub line: usize,
    /// What was expected and what came.
    pub message: String,
}

/// The convention (`echo`, `kv`) a scenario's first line says it `requires`.
#[must_use]
pub fn requires(scenario: &str) -> Option<String> {
    let first = scenario.lines().next()?;
    let first: Value = serde_json::from_str(first).ok()?;
    first["requires"].as_str().map(str::to_owned)
}

/// Replays `scenario` on `stream`, a fresh connection to the plugin, with the caller
/// as the host. `init` is an object whose fields replace those of the scenario's
/// `init` frames: at least `plugin_id`, and `instance_id` and `license` for a
/// licensed plugin. Bound it in time: a plugin that never answers leaves it waiting.
///
/// # Errors
/// The first line where the plugin's frames differ from the scenario's, the
/// connection broke, or the scenario itself cannot be read.
pub async fn replay<S>(stream: &mut S, init: &Value, scenario: &str) -> Result<(), ReplayError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The ids the plugin chose, by the names the scenario gives them.
    let mut ids = HashMap::<String, Value>::new();
    for (index, line) in scenario.lines().enumerate() {
        let fail = |message: String| ReplayError {
            line: index + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        let mut step: Value =
            serde_json::from_str(line).map_err(|e| fail(format!("not JSON: {e}")))?;
        let body = match step["body_hex"].as_str() {
            Some(hex) => Some(from_hex(hex).ok_or_else(|| fail("bad body_hex".to_owned()))?),
            None => None,
        };
        match step["from"].as_str() {
            Some("host") if step["wait_ms"].is_u64() => {
                let ms = step["wait_ms"].as_u64().unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Some("host") => {
                let bytes = match step["raw_hex"].as_str() {
                    Some(hex) => from_hex(hex).ok_or_else(|| fail("bad raw_hex".to_owned()))?,
                    None => {
                        let header = &mut step["header"];
                        if header["type"] == "init"
                            && let (Some(header), Some(init)) =
                                (header.as_object_mut(), init.as_object())
                        {
                            header.extend(init.clone());
                        }
                        if let Some(name) = header["id"].as_str().and_then(|n| n.strip_prefix('$'))
                        {
                            header["id"] = ids
                                .get(name)
                                .cloned()
                                .ok_or_else(|| fail(format!("no id was named {name:?}")))?;
                        }
                        frame(header, body.as_deref().unwrap_or_default())
                    }
                };
                stream
                    .write_all(&bytes)
                    .await
                    .map_err(|e| fail(format!("the connection broke: {e}")))?;
            }
            Some("plugin") if step["closes"] == true => {
                match tokio::time::timeout(CLOSE_TIMEOUT, read_frame(stream)).await {
                    Ok(Err(_)) => {}
                    Ok(Ok((got, _))) => {
                        return Err(fail(format!("expected the connection closed; got {got}")));
                    }
                    Err(_) => {
                        return Err(fail(
                            "expected the connection closed; it stayed open".into(),
                        ));
                    }
                }
            }
            Some("plugin") => {
                let expected = &step["header"];
                let (got, got_body) = read_frame(stream)
                    .await
                    .map_err(|e| fail(format!("expected {expected}; {e}")))?;
                let same = expected
                    .as_object()
                    .is_some_and(|fields| fields.iter().all(|(k, v)| &got[k] == v))
                    && (got["type"] != "error" || got["message"].is_string());
                if !same {
                    return Err(fail(format!("expected {expected}; got {got}")));
                }
                if let Some(body) = body.filter(|b| *b != got_body) {
                    return Err(fail(format!(
                        "expected {expected} with {} body bytes; got {} bytes that differ",
                        body.len(),
                        got_body.len()
                    )));
                }
                if let Some(name) = step["id_as"].as_str() {
                    if !got["id"].is_u64() {
                        return Err(fail(format!("expected a request id in {got}")));
                    }
                    ids.insert(name.to_owned(), got["id"].clone());
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A frame of protocol 2 (section 3): N, H, the header, the body.
fn frame(header: &Value, body: &[u8]) -> Vec<u8> {
    let head = header.to_string().into_bytes();
    let n = u32::try_from(4 + head.len() + body.len()).unwrap_or(u32::MAX);
    let h = u32::try_from(head.len()).unwrap_or(u32::MAX);
    [&n.to_be_bytes()[..], &h.to_be_bytes()[..], &head, body].concat()
}

/// The next frame's header and body; a length over 16 MiB is refused unread.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<(Value, Vec<u8>)> {
    let n = stream.read_u32().await? as usize;
    if !(4..=MAX_FRAME_LEN).contains(&n) {
        return Err(std::io::Error::other(format!(
            "got a frame length of {n}, not between 4 and 16 MiB"
        )));
    }
    let mut payload = vec![0u8; n];
    stream.read_exact(&mut payload).await?;
    let h = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    let end = h
        .checked_add(4)
        .filter(|end| *end <= n)
        .ok_or_else(|| std::io::Error::other("got a header length past the frame"))?;
    let header = serde_json::from_slice(&payload[4..end])
        .map_err(|e| std::io::Error::other(format!("got a header that is not JSON: {e}")))?;
    Ok((header, payload.split_off(end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_read_strictly() {
        assert_eq!(from_hex("00ff7a"), Some(vec![0, 255, 0x7a]));
        assert_eq!(from_hex("0"), None);
        assert_eq!(from_hex("zz"), None);
    }

    #[test]
    fn a_scenario_names_what_it_requires() {
        assert_eq!(
            requires("{\"note\": \"x\", \"requires\": \"kv\"}\n{}"),
            Some("kv".into())
        );
        assert_eq!(requires("{\"note\": \"x\"}"), None);
    }

    #[tokio::test]
    async fn a_differing_frame_names_its_line() {
        let (mut host, mut plugin) = tokio::io::duplex(1024);
        let scenario = "{\"note\": \"n\"}\n{\"from\": \"plugin\", \"header\": {\"type\": \"pong\", \"id\": 2}}\n";
        plugin
            .write_all(&frame(&serde_json::json!({"type": "pong", "id": 3}), b""))
            .await
            .unwrap();
        let err = replay(&mut host, &serde_json::json!({"plugin_id": "t"}), scenario)
            .await
            .unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.message.contains("\"id\":3"), "{err}");
    }

    #[tokio::test]
    async fn a_huge_length_prefix_is_refused_unread() {
        let (mut host, mut plugin) = tokio::io::duplex(1024);
        plugin.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        let scenario = "{\"from\": \"plugin\", \"header\": {\"type\": \"pong\"}}";
        let err = replay(&mut host, &serde_json::json!({"plugin_id": "t"}), scenario)
            .await
            .unwrap_err();
        assert!(err.message.contains("4294967295"), "{err}");
    }
}
