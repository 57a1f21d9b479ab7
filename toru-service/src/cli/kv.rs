//! `toructl kv`: a plugin's stored data through torud's admin KV endpoint.

use std::io::{IsTerminal, Read};

use serde_json::{Value, json};

use super::KvCommand;
use super::commands::{Session, plugin_path};
use super::error::CliError;
use super::output;

impl Session<'_> {
    /// `kv get|set|delete|list`. A missing key is a failure (exit 1) for
    /// `get`, in both forms, so scripts can tell; deleting one is not.
    pub(super) async fn kv(&self, command: &KvCommand) -> Result<(), CliError> {
        let (id, body) = match command {
            KvCommand::Get { id, key } => (id, json!({ "action": "get", "key": key })),
            KvCommand::Set { id, key, value } => {
                let value = match value.as_deref() {
                    None if std::io::stdin().is_terminal() => {
                        return Err(CliError::Usage(
                            "missing VALUE (give it, or pipe it in with `-`)".into(),
                        ));
                    }
                    None | Some("-") => read_stdin()?,
                    Some(value) => value.to_owned(),
                };
                (id, json!({ "action": "set", "key": key, "value": value }))
            }
            KvCommand::Delete { id, key } => (id, json!({ "action": "delete", "key": key })),
            KvCommand::List { id, prefix } => (
                id,
                json!({ "action": "list", "prefix": prefix.as_deref().unwrap_or("") }),
            ),
        };
        let answer = self
            .client
            .post(&plugin_path(id, "/kv")?, Some(&body))
            .await?;
        let missing = |key: &str| CliError::Failed(format!("{id} has no key {key:?}"));
        if self.json {
            self.out.json(&answer)?;
            if let KvCommand::Get { key, .. } = command
                && answer["value"].is_null()
            {
                return Err(missing(key));
            }
            return Ok(());
        }
        match command {
            KvCommand::Get { key, .. } => {
                if answer["value"].is_null() {
                    return Err(missing(key));
                }
                let text = output::text(&answer["value"]);
                let hex = answer["encoding"] == "hex";
                if !self.out.is_terminal() {
                    // For a program or a file: the stored bytes exactly.
                    let bytes = if hex {
                        from_hex(&text).ok_or_else(|| {
                            CliError::Failed("torud sent a hex value that is not hex".into())
                        })?
                    } else {
                        text.into_bytes()
                    };
                    return Ok(self.out.raw(&bytes)?);
                }
                if hex {
                    super::warn("the value is not UTF-8 text; shown as hex");
                }
                Ok(self.out.line(&text)?)
            }
            KvCommand::Set { key, .. } => {
                let len = answer["value"].as_str().map_or(0, str::len);
                let plugin = self.client.get(&plugin_path(id, "")?).await?;
                if plugin["protocol"] == 1 {
                    super::warn(&format!(
                        "{id} speaks protocol 1, which has no storage: it cannot read what is \
                         stored for it (only toructl and the API can)"
                    ));
                }
                Ok(self
                    .out
                    .line(&format!("set {id} {key:?} ({})", output::count_bytes(len)))?)
            }
            KvCommand::Delete { key, .. } => Ok(self.out.line(&match answer["existed"] {
                Value::Bool(false) => format!("{id} had no key {key:?}: nothing to delete"),
                _ => format!("deleted {id} {key:?}"),
            })?),
            KvCommand::List { .. } => {
                for key in answer["keys"].as_array().into_iter().flatten() {
                    self.out.line(&output::text(key))?;
                }
                if answer["truncated"] == true {
                    super::warn("more keys exist than torud lists at once; narrow the prefix");
                }
                Ok(())
            }
        }
    }
}

/// The value of `kv set` when it is not on the command line.
fn read_stdin() -> Result<String, CliError> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Failed(format!("cannot read the value from stdin: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| CliError::Failed("the value on stdin is not UTF-8 text".into()))
}

/// `"6869"` → `b"hi"`.
fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_reads_back() {
        assert_eq!(super::from_hex("00ff6869"), Some(vec![0, 255, b'h', b'i']));
        assert_eq!(super::from_hex("abc"), None);
        assert_eq!(super::from_hex("zz"), None);
    }
}
