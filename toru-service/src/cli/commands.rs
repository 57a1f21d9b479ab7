//! Each command: the request it makes, and how its answer reads for a
//! person. With `--json` every command prints torud's answer as it is.

use serde_json::Value;

use super::client::Client;
use super::error::CliError;
use super::follow::Follow;
use super::output::{self, Out, Paint};
use super::{Command, LogsArgs, PluginsCommand};

/// How long `enable`/`restart`/`disable` wait for the plugin to settle;
/// torud bounds a start and a stop by its own timeouts, well within this.
const SETTLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// How many of its latest lines `plugins show` prints.
const SHOW_LOG_LINES: usize = 5;
/// How often they look.
const SETTLE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// The session of one command.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    /// torud.
    pub client: &'a Client,
    /// stdout.
    pub out: &'a Out,
    /// `--json`.
    pub json: bool,
}

impl Session<'_> {
    /// Runs `command` (not the local ones: man pages and completions).
    pub(crate) async fn run(&self, command: &Command) -> Result<(), CliError> {
        match command {
            Command::Status => self.status().await,
            Command::Reload => self.reload().await,
            Command::InstanceId {
                regenerate: true,
                yes,
            } => self.regenerate(*yes).await,
            Command::InstanceId { .. } => self.instance_id().await,
            Command::License(license) => self.license(license).await,
            Command::Plugins(args) => match &args.command {
                None | Some(PluginsCommand::List) => self.list().await,
                Some(PluginsCommand::Show { id }) => self.show(id).await,
                // Handled before any connection to torud (cli::run).
                Some(PluginsCommand::Check { .. }) => Ok(()),
                Some(PluginsCommand::Enable { id }) => self.action(id, "enable", "enabled").await,
                Some(PluginsCommand::Disable { id }) => {
                    self.action(id, "disable", "disabled").await
                }
                Some(PluginsCommand::Restart { id }) => {
                    self.action(id, "restart", "restarted").await
                }
                Some(PluginsCommand::Logs(args)) => self.logs(args).await,
            },
            Command::Kv(kv) => self.kv(kv).await,
            Command::Store(store) => self.store(store).await,
            Command::Events { id, limit } => self.events(id.as_deref(), *limit).await,
            Command::GenerateMan { .. } | Command::Completions { .. } => Err(CliError::Usage(
                "this command does not talk to torud".into(),
            )),
        }
    }

    async fn status(&self) -> Result<(), CliError> {
        let status = self.client.get("/api/status").await?;
        if self.json {
            return Ok(self.out.json(&status)?);
        }
        let listeners: Vec<String> = status["listeners"]
            .as_array()
            .map(|l| l.iter().map(output::text).collect())
            .unwrap_or_default();
        let mut plugins = Vec::new();
        let mut total = 0;
        if let Some(states) = status["plugins"].as_object() {
            for (state, count) in states {
                let count = count.as_u64().unwrap_or(0);
                total += count;
                let text = format!("{count} {state}");
                plugins.push(self.out.paint(&text, Paint::for_state(state)));
            }
        }
        let plugins = match total {
            0 => "none".to_owned(),
            _ => format!("{total} ({})", plugins.join(", ")),
        };
        let uptime = status["uptime_seconds"]
            .as_u64()
            .map_or_else(|| output::text(&status["uptime_seconds"]), output::duration);
        let mut fields = vec![
            (
                "instance",
                output::text(&status["instance_id"]),
                Paint::Plain,
            ),
            ("version", output::text(&status["version"]), Paint::Plain),
            ("uptime", uptime, Paint::Plain),
            ("listeners", listeners.join(", "), Paint::Plain),
            // Already painted piece by piece.
            ("plugins", plugins, Paint::Plain),
        ];
        for warning in status["warnings"].as_array().into_iter().flatten() {
            fields.push(("warning", output::text(warning), Paint::Yellow));
        }
        Ok(self.out.fields(&fields)?)
    }

    async fn instance_id(&self) -> Result<(), CliError> {
        let answer = self.client.get("/api/instance").await?;
        if self.json {
            return Ok(self.out.json(&answer)?);
        }
        if answer["machine_id_changed"] == true {
            super::warn(
                "the machine id changed since this id was made (a cloned disk?); \
                 `toructl instance-id --regenerate --yes` makes a new one",
            );
        }
        Ok(self.out.line(&output::text(&answer["instance_id"]))?)
    }

    async fn list(&self) -> Result<(), CliError> {
        let plugins = self.client.get("/api/plugins").await?;
        if self.json {
            return Ok(self.out.json(&plugins)?);
        }
        let plugins = plugins.as_array().cloned().unwrap_or_default();
        if plugins.is_empty() {
            return Ok(self.out.line("no plugins")?);
        }
        let with_errors = plugins.iter().any(|p| !p["error"].is_null());
        let mut header = vec![
            "ID", "STATE", "HEALTH", "PID", "RESTARTS", "PROTO", "VERSION", "ROUTE",
        ];
        if with_errors {
            header.push("ERROR");
        }
        let rows: Vec<Vec<(String, Paint)>> = plugins
            .iter()
            .map(|p| {
                let state = output::text(&p["state"]);
                let health = output::text(&p["health"]);
                let mut row = vec![
                    (output::text(&p["id"]), Paint::Plain),
                    (state.clone(), Paint::for_state(&state)),
                    (health.clone(), Paint::for_state(&health)),
                    (output::text(&p["pid"]), Paint::Plain),
                    (output::text(&p["restarts"]), Paint::Plain),
                    (output::text(&p["protocol"]), Paint::Plain),
                    (output::text(&p["version"]), Paint::Plain),
                    (output::text(&p["route"]), Paint::Plain),
                ];
                if with_errors {
                    let error = match &p["error"] {
                        Value::Null => String::new(),
                        e => output::text(e),
                    };
                    row.push((error, Paint::Red));
                }
                row
            })
            .collect();
        Ok(self.out.table(&header, &rows)?)
    }

    /// `plugins show ID`: what `systemctl status` tells of a unit, for a plugin.
    async fn show(&self, id: &str) -> Result<(), CliError> {
        let plugin = self.client.get(&plugin_path(id, "")?).await?;
        if self.json {
            return Ok(self.out.json(&plugin)?);
        }
        let field = |key: &'static str| (key, output::text(&plugin[key]), Paint::Plain);
        let state = output::text(&plugin["state"]);
        let error = (
            "error",
            output::text(&plugin["error"]),
            match plugin["error"] {
                Value::Null => Paint::Plain,
                _ => Paint::Red,
            },
        );
        let mut fields = vec![
            field("id"),
            field("name"),
            field("version"),
            field("author"),
            field("icon"),
            field("route"),
            field("protocol"),
            (
                "state",
                since(&state, &plugin["state_since"]),
                Paint::for_state(&state),
            ),
            (
                "health",
                output::text(&plugin["health"]),
                Paint::for_state(&output::text(&plugin["health"])),
            ),
            field("enabled"),
            field("pid"),
            ("restarts", restarts(&plugin), Paint::Plain),
            ("last exit", last_exit(&plugin["last_exit"]), Paint::Plain),
            error,
            ("license", license_summary(&plugin["license"]), Paint::Plain),
            field("path"),
            field("socket_path"),
        ];
        if !plugin["cgroup"].is_null() {
            fields.push(field("cgroup"));
        }
        if let Some(bytes) = plugin["memory_bytes"].as_u64() {
            fields.push(("memory", output::bytes(bytes), Paint::Plain));
        }
        self.out.fields(&fields)?;
        // The last lines it wrote, as `systemctl status` ends with the journal's.
        if plugin["state"] != "invalid" {
            let page = self
                .client
                .get(&plugin_path(
                    id,
                    &format!("/logs?page_size={SHOW_LOG_LINES}"),
                )?)
                .await?;
            let lines = page["logs"].as_array().cloned().unwrap_or_default();
            self.out.line("")?;
            if lines.is_empty() {
                self.out.line("(no output yet)")?;
            }
            for line in &lines {
                self.out.line(&log_line(self.out, line))?;
            }
        }
        Ok(())
    }

    /// `enable`, `disable` or `restart`. torud takes the command and
    /// answers at once; this waits (a bounded time) for the plugin to get
    /// there, so that the command's exit code says whether it did.
    async fn action(&self, id: &str, action: &str, done: &str) -> Result<(), CliError> {
        let path = plugin_path(id, "")?;
        let before = self.client.get(&path).await?;
        let answer = self
            .client
            .post(&plugin_path(id, &format!("/{action}"))?, None)
            .await?;
        let plugin = self
            .settle(&path, |p| match action {
                "disable" => p["state"] == "disabled",
                "restart" => restarted(&before, p),
                _ => settled(p),
            })
            .await?;
        if self.json {
            self.out.json(&answer)?;
        }
        let state = output::text(&plugin["state"]);
        let should_run = action != "disable";
        if should_run && state != "running" {
            let why = match &plugin["error"] {
                Value::Null => String::new(),
                error => format!(": {}", output::text(error)),
            };
            return Err(CliError::Failed(format!(
                "{id} did not start: it is {state}{why}"
            )));
        }
        if self.json {
            return Ok(());
        }
        if action == "disable" {
            return Ok(self.out.line(&format!("{done} {id}"))?);
        }
        let painted = self.out.paint(&state, Paint::for_state(&state));
        let pid = match &plugin["pid"] {
            Value::Null => String::new(),
            pid => format!(" (pid {})", output::text(pid)),
        };
        Ok(self.out.line(&format!("{done} {id}: {painted}{pid}"))?)
    }

    /// The plugin at `path` once `arrived` says so, or as it is after
    /// [`SETTLE_TIMEOUT`].
    pub(super) async fn settle(
        &self,
        path: &str,
        arrived: impl Fn(&Value) -> bool,
    ) -> Result<Value, CliError> {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        loop {
            let plugin = self.client.get(path).await?;
            if arrived(&plugin) || tokio::time::Instant::now() >= deadline {
                return Ok(plugin);
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
    }

    /// `reload`: torud answers once the plugins it found are started (or failed).
    async fn reload(&self) -> Result<(), CliError> {
        let answer = self.client.post("/api/reload", None).await?;
        if self.json {
            return Ok(self.out.json(&answer)?);
        }
        let names = |key: &str| -> Vec<String> {
            answer[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(output::text)
                .collect()
        };
        let (added, replaced, removed) = (names("added"), names("replaced"), names("removed"));
        if added.is_empty() && replaced.is_empty() && removed.is_empty() {
            self.out.line("reloaded: no plugin changed")?;
        } else {
            self.out.line("reloaded:")?;
            for (what, ids) in [
                ("added", &added),
                ("replaced", &replaced),
                ("removed", &removed),
            ] {
                if !ids.is_empty() {
                    self.out.line(&format!("  {what:<9} {}", ids.join(", ")))?;
                }
            }
        }
        for change in names("limits_changed") {
            self.out.line(&format!("  limits    {change}"))?;
        }
        for key in names("restart_needed") {
            self.out.line(&format!(
                "  `{key}` changed: it takes effect when torud restarts"
            ))?;
        }
        for warning in names("warnings") {
            self.out
                .line(&format!("  {}", self.out.paint(&warning, Paint::Yellow)))?;
        }
        Ok(self.out.line(&output::text(&answer["status"]))?)
    }

    async fn logs(&self, args: &LogsArgs) -> Result<(), CliError> {
        let path = plugin_path(&args.id, "/logs")?;
        let level = args.level.as_deref();
        let print = |out: &Out, line: &Value| {
            if self.json {
                out.json_line(line)
            } else {
                out.line(&log_line(out, line))
            }
        };
        if args.follow {
            let follow = Follow {
                id: &args.id,
                lines: args.lines,
                level,
            };
            return follow.run(self.client, self.out, print).await;
        }
        if args.lines == 0 {
            // None asked for: nothing printed, but a plugin that does not exist is an error.
            self.client.get(&plugin_path(&args.id, "")?).await?;
            return Ok(());
        }
        let mut query = format!("{path}?page_size={}", args.lines);
        if let Some(level) = level {
            query.push_str(&format!("&level={level}"));
        }
        let page = self.client.get(&query).await?;
        if self.json {
            return Ok(self.out.json(&page)?);
        }
        for line in page["logs"].as_array().into_iter().flatten() {
            print(self.out, line)?;
        }
        Ok(())
    }

    async fn events(&self, id: Option<&str>, limit: usize) -> Result<(), CliError> {
        if limit == 0 {
            // As `plugins logs -n 0`: nothing printed; a plugin that does not exist is an error.
            if let Some(id) = id {
                self.client.get(&plugin_path(id, "")?).await?;
            }
            return Ok(());
        }
        let mut path = format!("/api/events?limit={limit}");
        if let Some(id) = id {
            check_id(id)?;
            path.push_str(&format!("&plugin={id}"));
        }
        let answer = self.client.get(&path).await?;
        let events = answer["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty()
            && let Some(id) = id
        {
            // No events and no such plugin: most likely a typo.
            self.client.get(&plugin_path(id, "")?).await?;
        }
        if self.json {
            return Ok(self.out.json(&answer)?);
        }
        if events.is_empty() {
            return Ok(self.out.line("no events")?);
        }
        let rows: Vec<Vec<(String, Paint)>> = events
            .iter()
            .map(|e| {
                let kind = output::text(&e["kind"]);
                let paint = match kind.as_str() {
                    "failed" | "hung" | "invalid" => Paint::Red,
                    "exited" | "restarted" => Paint::Yellow,
                    _ => Paint::Plain,
                };
                let plugin = match &e["plugin"] {
                    Value::Null => "(torud)".to_owned(),
                    p => output::text(p),
                };
                vec![
                    (output::timestamp(&e["timestamp"]), Paint::Plain),
                    (plugin, Paint::Plain),
                    (kind, paint),
                    (output::text(&e["detail"]), Paint::Plain),
                ]
            })
            .collect();
        Ok(self
            .out
            .table(&["TIME", "PLUGIN", "EVENT", "DETAIL"], &rows)?)
    }
}

/// `valid (Acme Ltd, until 2027-01-31)`, `not_required`, `missing`...
/// A line of a plugin's output: time, level, message, its fields.
fn log_line(out: &Out, line: &Value) -> String {
    let level = output::text(&line["level"]);
    let fields = match line["fields"].as_object() {
        Some(fields) if !fields.is_empty() => {
            format!("  {}", crate::plugins::logs::key_values(fields))
        }
        _ => String::new(),
    };
    format!(
        "{}  {}  {}{fields}",
        output::text(&line["timestamp"]),
        out.paint(&format!("{level:<5}"), Paint::for_level(&level)),
        output::text(&line["message"]),
    )
}

/// "running since 2026-12-01T14:20:06.123Z (3m 20s ago)".
fn since(state: &str, at: &Value) -> String {
    let Some(at) = at
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    else {
        return state.to_owned();
    };
    let ago = (chrono::Utc::now() - at.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    format!(
        "{state} since {} ({} ago)",
        output::timestamp(&Value::String(at.to_rfc3339())),
        output::duration(ago.unsigned_abs())
    )
}

/// Restarts after a crash, as systemd counts them (`NRestarts`), with the ones asked
/// for apart: "2", "2 (and 1 by request)".
fn restarts(plugin: &Value) -> String {
    let automatic = output::text(&plugin["restarts"]);
    match plugin["manual_restarts"].as_u64() {
        Some(manual) if manual > 0 => format!("{automatic} (and {manual} by request)"),
        _ => automatic,
    }
}

/// "2026-12-01T14:18:00.000Z: exited with code 3".
fn last_exit(exit: &Value) -> String {
    if exit.is_null() {
        return "-".to_owned();
    }
    format!(
        "{}: {}",
        output::timestamp(&exit["at"]),
        output::text(&exit["reason"])
    )
}

fn license_summary(license: &Value) -> String {
    let status = output::text(&license["status"]);
    match (&license["licensee"], &license["expires"]) {
        (Value::String(to), Value::String(day)) => format!("{status} ({to}, until {day})"),
        (Value::String(to), _) => format!("{status} ({to})"),
        _ => status,
    }
}

/// Whether a plugin is done starting or stopping: running, or given up on for now.
fn settled(plugin: &Value) -> bool {
    matches!(
        plugin["state"].as_str(),
        Some("running" | "backoff" | "failed" | "invalid")
    )
}

/// Whether `now` is the plugin `before` was, started again (or given up on)
/// since: its state changed meanwhile, and it has settled.
pub(super) fn restarted(before: &Value, now: &Value) -> bool {
    settled(now) && (now["state_since"] != before["state_since"] || now["pid"] != before["pid"])
}

/// `/api/plugins/{id}{rest}`, for an id torud could know.
pub(super) fn plugin_path(id: &str, rest: &str) -> Result<String, CliError> {
    check_id(id)?;
    Ok(format!("/api/plugins/{id}{rest}"))
}

/// An id outside torud's alphabet cannot name a plugin; said the way torud
/// says it for an unknown one.
fn check_id(id: &str) -> Result<(), CliError> {
    if crate::http::is_name(id) {
        Ok(())
    } else {
        Err(CliError::Failed(format!("no plugin {id:?}")))
    }
}
