//! `toructl license`: the licences installed for plugins, and `instance-id --regenerate`.

use std::io::{IsTerminal, Read};
use std::path::Path;

use serde_json::{Value, json};

use super::LicenseCommand;
use super::commands::{Session, plugin_path};
use super::error::CliError;
use super::output::{self, Paint};

/// The most a licence file may hold; torud takes no more either.
const MAX_FILE: u64 = 16 * 1024;

impl Session<'_> {
    /// Runs a `license` command.
    pub(super) async fn license(&self, command: &LicenseCommand) -> Result<(), CliError> {
        match command {
            LicenseCommand::Show { id: Some(id) } => {
                let answer = self.client.get(&plugin_path(id, "/license")?).await?;
                self.print_one(id, &answer)
            }
            LicenseCommand::Show { id: None } => self.licenses().await,
            LicenseCommand::Install { id, file } => {
                let line = read_license(file)?;
                let before = self.client.get(&plugin_path(id, "")?).await?;
                let answer = self
                    .client
                    .put_text(&plugin_path(id, "/license")?, &line)
                    .await?;
                let after = self.restarted(id, &before).await?;
                if self.json {
                    return Ok(self.out.json(&answer)?);
                }
                self.out
                    .line(&format!("installed the licence of {id}{after}"))?;
                self.print_one(id, &answer)
            }
            LicenseCommand::Remove { id } => {
                let before = self.client.get(&plugin_path(id, "")?).await?;
                let answer = self.client.delete(&plugin_path(id, "/license")?).await?;
                let after = self.restarted(id, &before).await?;
                if self.json {
                    return Ok(self.out.json(&answer)?);
                }
                self.out
                    .line(&format!("removed the licence of {id}{after}"))?;
                self.print_one(id, &answer)
            }
        }
    }

    /// torud restarts a plugin whose licence changed, unless it is stopped,
    /// disabled or invalid: this waits for that restart to be over, so that
    /// the plugin serves (or has been refused) when the command returns, and
    /// says where it got.
    async fn restarted(&self, id: &str, before: &Value) -> Result<String, CliError> {
        if matches!(
            before["state"].as_str(),
            Some("disabled" | "invalid" | "stopped")
        ) {
            return Ok(format!("; {id} is {}", output::text(&before["state"])));
        }
        let path = plugin_path(id, "")?;
        let now = self
            .settle(&path, |p| super::commands::restarted(before, p))
            .await?;
        let state = output::text(&now["state"]);
        let painted = self.out.paint(&state, Paint::for_state(&state));
        Ok(match &now["pid"] {
            Value::Null => format!("; {id} is {painted}"),
            pid => format!("; {id} is {painted} (pid {})", output::text(pid)),
        })
    }

    /// Every plugin and the state of its licence.
    async fn licenses(&self) -> Result<(), CliError> {
        let plugins = self.client.get("/api/plugins").await?;
        let plugins = plugins.as_array().cloned().unwrap_or_default();
        if self.json {
            let all: serde_json::Map<String, Value> = plugins
                .iter()
                .map(|p| (output::text(&p["id"]), p["license"].clone()))
                .collect();
            return Ok(self.out.json(&Value::Object(all))?);
        }
        if plugins.is_empty() {
            return Ok(self.out.line("no plugins")?);
        }
        let rows: Vec<Vec<(String, Paint)>> = plugins
            .iter()
            .map(|p| {
                let license = &p["license"];
                let status = output::text(&license["status"]);
                vec![
                    (output::text(&p["id"]), Paint::Plain),
                    (status.clone(), paint(&status)),
                    (output::text(&license["licensee"]), Paint::Plain),
                    (expires(license), Paint::Plain),
                    (note(license), Paint::Plain),
                ]
            })
            .collect();
        Ok(self
            .out
            .table(&["ID", "LICENCE", "LICENSEE", "EXPIRES", "NOTE"], &rows)?)
    }

    fn print_one(&self, id: &str, license: &Value) -> Result<(), CliError> {
        if self.json {
            return Ok(self.out.json(license)?);
        }
        let status = output::text(&license["status"]);
        let mut fields = vec![
            ("plugin", id.to_owned(), Paint::Plain),
            ("status", status.clone(), paint(&status)),
            ("required", output::text(&license["required"]), Paint::Plain),
            (
                "installed",
                output::text(&license["installed"]),
                Paint::Plain,
            ),
            ("licensee", output::text(&license["licensee"]), Paint::Plain),
            ("expires", expires(license), Paint::Plain),
        ];
        if !license["error"].is_null() {
            fields.push(("error", output::text(&license["error"]), Paint::Red));
        }
        Ok(self.out.fields(&fields)?)
    }

    /// `instance-id --regenerate --yes`.
    pub(super) async fn regenerate(&self, yes: bool) -> Result<(), CliError> {
        if !yes {
            return Err(CliError::Usage(
                "a new instance id ends every licence of this installation and every \
                 plugin restarts; add --yes to make one"
                    .into(),
            ));
        }
        let answer = self
            .client
            .post(
                "/api/instance/regenerate",
                Some(&json!({ "confirm": true })),
            )
            .await?;
        if self.json {
            return Ok(self.out.json(&answer)?);
        }
        self.out.line(&output::text(&answer["instance_id"]))?;
        super::warn("new instance id: licences made for the old one no longer apply");
        Ok(())
    }
}

/// The licence in `file` (`-`: stdin), trimmed; refused here when it cannot be one.
pub(crate) fn read_license(file: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if file == Path::new("-") {
        if std::io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "pipe the licence in, or name its file".into(),
            ));
        }
        std::io::stdin()
            .take(MAX_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
    };
    read.map_err(|e| CliError::Failed(format!("cannot read {}: {e}", file.display())))?;
    if text.len() as u64 > MAX_FILE {
        return Err(CliError::Failed(format!(
            "{} is larger than a licence can be ({MAX_FILE} bytes)",
            file.display()
        )));
    }
    let line = text.trim();
    if line.is_empty() {
        return Err(CliError::Failed(format!("{} is empty", file.display())));
    }
    Ok(line.to_owned())
}

fn paint(status: &str) -> Paint {
    match status {
        "valid" => Paint::Green,
        "missing" | "invalid" | "expired" => Paint::Red,
        _ => Paint::Dim,
    }
}

/// `2027-01-31 (in 61d 3h)`, `never`, or `-` without a licence.
fn expires(license: &Value) -> String {
    match (&license["expires"], license["expires_in_seconds"].as_i64()) {
        (Value::String(day), Some(left)) if left >= 0 => {
            format!("{day} (in {})", output::duration(left.unsigned_abs()))
        }
        (Value::String(day), _) => format!("{day} (ended)"),
        _ if license["licensee"].is_string() => "never".to_owned(),
        _ => "-".to_owned(),
    }
}

/// Why a licence is not valid, or whether the plugin needs one.
fn note(license: &Value) -> String {
    match &license["error"] {
        Value::Null if license["required"] == true => "required".to_owned(),
        Value::Null => String::new(),
        error => output::text(error),
    }
}
