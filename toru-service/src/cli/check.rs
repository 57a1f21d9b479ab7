//! `toructl plugins check PATH`: runs a plugin executable as torud would and acts as
//! its host, checking each rule of docs/PROTOCOL.md a plugin must keep. Each rule
//! passes, fails, warns or is not exercised, with what was expected and what came.
//! Every step is bounded in time, and the plugin's process group is killed at the end
//! whatever it did, so a broken plugin cannot hang the check or outlive it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::process::Child;
use toru_plugin_api::host::{HostConnection, InitParams, MemoryKv};
use toru_plugin_api::{HttpRequest, PluginMetadata};

use super::error::CliError;
use super::output::{Out, Paint};
use crate::plugins::discovery::read_metadata;
use crate::plugins::link::LegacyLink;
use crate::plugins::process::{PluginEnv, kill_group, spawn};

/// The instance id the checker gives the plugin.
const INSTANCE: &str = "00000000-0000-4000-8000-00000000c4ec";
/// How long `--metadata` may take (torud's default).
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the socket may take to accept (torud's default start timeout).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one answer may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// A ping is answered by the reader at once: this is generous.
const PING_TIMEOUT: Duration = Duration::from_secs(1);
/// The deadline given with `shutdown`.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// How many requests are sent at once.
const IN_FLIGHT: usize = 64;
/// The conventions a plugin may implement for the checker (docs/PROTOCOL.md 9.3); the
/// SDKs do, when `TORU_CHECK=1` is in their environment.
const ECHO_PATH: &str = "/.well-known/toru-check/echo";
const KV_PATH: &str = "/.well-known/toru-check/kv";

/// What became of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Verdict {
    Pass,
    Fail,
    Warn,
    NotExercised,
}

/// One rule and its outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Finding {
    pub(crate) rule: &'static str,
    pub(crate) verdict: Verdict,
    pub(crate) detail: String,
}

/// The findings of one run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) plugin: String,
    pub(crate) protocol: u32,
    pub(crate) findings: Vec<Finding>,
}

impl Report {
    fn add(&mut self, rule: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.findings.push(Finding {
            rule,
            verdict,
            detail: detail.into(),
        });
    }

    fn pass(&mut self, rule: &'static str, detail: impl Into<String>) {
        self.add(rule, Verdict::Pass, detail);
    }

    fn fail(&mut self, rule: &'static str, detail: impl Into<String>) {
        self.add(rule, Verdict::Fail, detail);
    }

    /// Whether no rule failed.
    pub(crate) fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.verdict != Verdict::Fail)
    }
}

/// Runs every rule against the executable at `path`.
pub(crate) async fn check(path: &Path, protocol: Option<u32>) -> Report {
    let mut report = Report::default();
    // torud runs plugins by absolute path, from their own folder.
    let path = match std::fs::canonicalize(path) {
        Ok(path) => path,
        Err(e) => {
            report.fail("metadata", format!("{}: {e}", path.display()));
            return report;
        }
    };
    let path = path.as_path();
    let started = Instant::now();
    let metadata = match read_metadata(path, METADATA_TIMEOUT).await {
        Ok(metadata) => {
            report.pass(
                "metadata",
                format!(
                    "`--metadata` valid in {} ms: id {:?}, route {:?}, protocol {}",
                    started.elapsed().as_millis(),
                    metadata.id,
                    metadata.route,
                    metadata.protocol.unwrap_or(1)
                ),
            );
            metadata
        }
        Err(reason) => {
            report.fail("metadata", reason);
            return report;
        }
    };
    report.plugin.clone_from(&metadata.id);
    report.protocol = protocol.unwrap_or(metadata.protocol.unwrap_or(1));
    let Ok(dir) = tempfile::Builder::new().prefix("toru-check-").tempdir() else {
        report.fail("socket", "cannot make a temporary folder");
        return report;
    };
    if report.protocol >= 2 {
        check_v2(path, &metadata, dir.path(), &mut report).await;
    } else {
        check_v1(path, &metadata, dir.path(), &mut report).await;
    }
    report
}

/// The plugin process as torud runs it, its output drained.
struct Running {
    child: Child,
    socket: PathBuf,
    /// How long its socket took to accept.
    accepting: Duration,
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_group(self.child.id());
    }
}

/// Starts the plugin and waits for its socket, checking its mode.
async fn start(
    path: &Path,
    metadata: &PluginMetadata,
    dir: &Path,
    report: &mut Report,
) -> Option<Running> {
    use std::os::unix::fs::DirBuilderExt;
    let home = dir.join("plugins").join(&metadata.id);
    let _ = std::fs::remove_dir_all(&home);
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&home)
        .is_err()
    {
        report.fail("socket", format!("cannot make {}", home.display()));
        return None;
    }
    let socket = home.join(format!("{}.sock", metadata.id));
    let env = PluginEnv {
        socket: &socket,
        plugin_id: &metadata.id,
        instance_id: INSTANCE,
        home: &home,
        license: None,
        checked: true,
    };
    let mut child = match spawn(path, &env, None, None).await {
        Ok(child) => child,
        Err(e) => {
            report.fail("socket", format!("cannot start {}: {e}", path.display()));
            return None;
        }
    };
    // Whatever it writes is read and dropped: a flood must not block it.
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(async move {
            let mut pipe = pipe;
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(pipe.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
    let mut running = Running {
        child,
        socket,
        accepting: Duration::ZERO,
    };
    let started = Instant::now();
    loop {
        if UnixStream::connect(&running.socket).await.is_ok() {
            break;
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            report.fail(
                "socket",
                format!(
                    "expected a socket at $TORU_PLUGIN_SOCKET; the plugin {} first",
                    crate::plugins::process::describe_exit(&status)
                ),
            );
            return None;
        }
        if started.elapsed() > START_TIMEOUT {
            report.fail(
                "socket",
                format!("expected the socket to accept within {START_TIMEOUT:?}; it did not"),
            );
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let accepting = started.elapsed();
    running.accepting = accepting;
    // Read once it has initialized too: a plugin loosening its socket later is as wrong.
    if report.protocol >= 2 {
        report.pass(
            "socket",
            format!("accepting in {} ms", accepting.as_millis()),
        );
    } else {
        socket_mode(&running.socket, accepting, report);
    }
    Some(running)
}

/// The socket's mode, as the rule `socket` says it.
fn socket_mode(socket: &Path, accepting: Duration, report: &mut Report) {
    use std::os::unix::fs::PermissionsExt;
    report.findings.retain(|f| f.rule != "socket");
    let mode = std::fs::metadata(socket).map(|m| m.permissions().mode() & 0o777);
    match mode {
        Ok(0o600) => report.pass(
            "socket",
            format!("accepting in {} ms, mode 0600", accepting.as_millis()),
        ),
        // The first host did not ask it of protocol-1 plugins: they make it with their umask.
        Ok(mode) if report.protocol < 2 => report.add(
            "socket",
            Verdict::Warn,
            format!("mode {mode:04o}: 0600 (the owner's alone) is better; protocol 1 does not require it"),
        ),
        Ok(mode) => report.fail(
            "socket",
            format!("expected mode 0600 (the owner's alone); it is {mode:04o}"),
        ),
        Err(e) => report.fail("socket", format!("cannot read the socket's mode: {e}")),
    }
}

async fn check_v2(path: &Path, metadata: &PluginMetadata, dir: &Path, report: &mut Report) {
    let Some(mut running) = start(path, metadata, dir, report).await else {
        return;
    };
    let kv = Arc::new(MemoryKv::default());
    let init = InitParams {
        instance_id: INSTANCE.to_owned(),
        plugin_id: metadata.id.clone(),
        ..InitParams::default()
    };
    let host = match UnixStream::connect(&running.socket).await {
        Ok(stream) => HostConnection::connect(stream, init, kv.clone(), ANSWER_TIMEOUT).await,
        Err(e) => Err(e.into()),
    };
    let host = match host {
        Ok(host) => {
            report.pass("init", "`init` answered `init_ok` for protocol 2");
            socket_mode(&running.socket, running.accepting, report);
            host
        }
        Err(e) => {
            report.fail("init", format!("expected `init_ok`; got: {e}"));
            return;
        }
    };

    let answer = host
        .http(HttpRequest::new("GET", "/"), ANSWER_TIMEOUT)
        .await
        .map_err(|e| e.to_string());
    http_rule(answer, report);

    let body: Bytes = (0..=255u8).cycle().take(4096).collect::<Vec<u8>>().into();
    let mut echo = HttpRequest::new("POST", ECHO_PATH);
    echo.body = body.clone();
    if let Ok(name) = http::HeaderName::try_from("x-toru-check") {
        echo.headers
            .append(name.clone(), http::HeaderValue::from_static("a"));
        echo.headers
            .append(name, http::HeaderValue::from_static("b"));
    }
    match host.http(echo, ANSWER_TIMEOUT).await {
        Ok(answer) if answer.status == 404 => report.add(
            "http.binary",
            Verdict::NotExercised,
            format!("the plugin does not answer {ECHO_PATH} (the checker's echo convention)"),
        ),
        Ok(answer) if answer.status == 200 && answer.body == body => report.pass(
            "http.binary",
            "4096 bytes of every byte value came back intact",
        ),
        Ok(answer) => report.fail(
            "http.binary",
            format!(
                "expected 200 and the 4096 bytes sent; got {} with {} bytes{}",
                answer.status,
                answer.body.len(),
                if answer.body.len() == body.len() {
                    " that differ"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => report.fail("http.binary", format!("expected an answer; got: {e}")),
    }

    // Many at once, and a ping among them: answered by the reader, at once.
    let host = Arc::new(host);
    let started = Instant::now();
    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                host.http(
                    HttpRequest::new("GET", format!("/?toru-check={i}")),
                    ANSWER_TIMEOUT,
                )
                .await
            })
        })
        .collect();
    match host.ping(PING_TIMEOUT).await {
        Ok(took) => report.pass(
            "ping",
            format!(
                "answered in {} ms with {IN_FLIGHT} requests in flight",
                took.as_millis()
            ),
        ),
        Err(e) => report.fail(
            "ping",
            format!("expected `pong` within {PING_TIMEOUT:?} while busy; got: {e}"),
        ),
    }
    let mut answered = 0;
    let mut failed = None;
    for call in calls {
        match call.await {
            Ok(Ok(_)) => answered += 1,
            Ok(Err(e)) => failed = Some(e.to_string()),
            Err(e) => failed = Some(e.to_string()),
        }
    }
    match failed {
        None => report.pass(
            "concurrency",
            format!(
                "{IN_FLIGHT} requests in flight, each answered with its own id, in {} ms",
                started.elapsed().as_millis()
            ),
        ),
        Some(e) => report.fail(
            "concurrency",
            format!("expected {IN_FLIGHT} answers; {answered} came, then: {e}"),
        ),
    }

    let mut kv_call = HttpRequest::new("POST", KV_PATH);
    kv_call.body = Bytes::from_static(b"toru-check value");
    match host.http(kv_call, ANSWER_TIMEOUT).await {
        Ok(answer) if answer.status == 404 => report.add(
            "kv",
            Verdict::NotExercised,
            format!("the plugin does not answer {KV_PATH} (the checker's storage convention)"),
        ),
        Ok(answer) if answer.status < 300 => {
            let stored = kv.snapshot().get("toru-check").cloned();
            if stored.as_deref() == Some(&b"toru-check value"[..])
                && answer.body == "toru-check value"
            {
                report.pass(
                    "kv",
                    "set, get, list and delete answered from the host's store",
                );
            } else {
                report.fail(
                    "kv",
                    format!(
                        "expected the key `toru-check` to hold the body and the body back; the store has {stored:?}, the answer {} bytes",
                        answer.body.len()
                    ),
                );
            }
        }
        Ok(answer) => report.fail("kv", format!("expected 2xx; got {}", answer.status)),
        Err(e) => report.fail("kv", format!("expected an answer; got: {e}")),
    }

    // A request given up on at once: the plugin gets `cancel`, and goes on.
    let _ = host
        .http(HttpRequest::new("GET", "/"), Duration::from_millis(1))
        .await;
    match host.ping(PING_TIMEOUT).await {
        Ok(_) => report.pass("cancel", "a `cancel` was tolerated: ping answered after it"),
        Err(e) => report.fail(
            "cancel",
            format!("expected the plugin to go on after `cancel`; got: {e}"),
        ),
    }

    bad_input(&running.socket, metadata, report).await;

    // `shutdown` with a deadline: exit 0 within it, socket gone.
    let started = Instant::now();
    if let Err(e) = host.shutdown(SHUTDOWN_DEADLINE).await {
        report.fail("shutdown", format!("cannot send `shutdown`: {e}"));
    } else {
        exited(&mut running, "shutdown", SHUTDOWN_DEADLINE, started, report).await;
    }
    drop(host);
    drop(running);

    // SIGTERM on a fresh start: as a `shutdown` with a 10 s deadline.
    let mut quiet = Report::default();
    let Some(mut running) = start(path, metadata, dir, &mut quiet).await else {
        report.fail("sigterm", "the plugin did not start a second time");
        return;
    };
    let started = Instant::now();
    crate::plugins::process::signal_group(running.child.id(), nix::sys::signal::Signal::SIGTERM);
    exited(
        &mut running,
        "sigterm",
        Duration::from_secs(10),
        started,
        report,
    )
    .await;
}

/// The rule `http`: `GET /` answered with a final status.
fn http_rule(answer: Result<toru_plugin_api::HttpResponse, String>, report: &mut Report) {
    match answer {
        Ok(answer) if (200..=999).contains(&answer.status) => report.pass(
            "http",
            format!(
                "GET / answered {} with {} body bytes",
                answer.status,
                answer.body.len()
            ),
        ),
        Ok(answer) => report.fail(
            "http",
            format!(
                "expected a final status (200 to 999); got {}",
                answer.status
            ),
        ),
        Err(e) => report.fail("http", format!("expected an answer to GET /; got: {e}")),
    }
}

/// Waits for the plugin to exit after a stop; checks status, time and leftovers.
async fn exited(
    running: &mut Running,
    rule: &'static str,
    within: Duration,
    started: Instant,
    report: &mut Report,
) {
    let pid = running.child.id();
    match tokio::time::timeout(within + Duration::from_secs(1), running.child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            let socket_left = running.socket.exists();
            report.add(
                rule,
                if socket_left {
                    Verdict::Warn
                } else {
                    Verdict::Pass
                },
                format!(
                    "exited 0 in {} ms{}",
                    started.elapsed().as_millis(),
                    if socket_left {
                        ", but left its socket file"
                    } else {
                        ", socket removed"
                    }
                ),
            );
        }
        Ok(Ok(status)) => report.fail(
            rule,
            format!(
                "expected exit status 0; it {}",
                crate::plugins::process::describe_exit(&status)
            ),
        ),
        Ok(Err(e)) => report.fail(rule, format!("cannot wait for it: {e}")),
        Err(_) => report.fail(
            rule,
            format!("expected an exit within {within:?}; it still ran"),
        ),
    }
    let left = pid
        .and_then(|p| i32::try_from(p).ok())
        .is_some_and(|p| nix::sys::signal::killpg(nix::unistd::Pid::from_raw(p), None).is_ok());
    if left {
        report.fail(
            "leftovers",
            "processes of its group still ran after it exited (killed now)",
        );
        kill_group(pid);
    } else if rule == "shutdown" {
        report.pass(
            "leftovers",
            "nothing of its process group left after its exit",
        );
    }
}

/// The conformance scenarios (conformance/ at the top of the repository) the checker
/// replays, each on a connection of its own: the exact frames both sides send.
const SCENARIOS: [(&str, &str); 3] = [
    (
        "init.jsonl",
        include_str!("../../../conformance/init.jsonl"),
    ),
    (
        "bad_input.jsonl",
        include_str!("../../../conformance/bad_input.jsonl"),
    ),
    (
        "first_message.jsonl",
        include_str!("../../../conformance/first_message.jsonl"),
    ),
];

/// Replays every scenario; the rule `bad_input` says how they went.
async fn bad_input(socket: &Path, metadata: &PluginMetadata, report: &mut Report) {
    let mut wrong = Vec::new();
    for (name, text) in SCENARIOS {
        let outcome =
            tokio::time::timeout(ANSWER_TIMEOUT, replay(socket, &metadata.id, text)).await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => wrong.push(format!("{name}: {e}")),
            Err(_) => wrong.push(format!("{name}: no answer within {ANSWER_TIMEOUT:?}")),
        }
    }
    if wrong.is_empty() {
        report.pass(
            "bad_input",
            "conformance/init, bad_input and first_message replayed frame for frame (section 6.2)",
        );
    } else {
        report.fail("bad_input", wrong.join("; "));
    }
}

/// One scenario on a new connection; the first frame that differs, as an error.
async fn replay(socket: &Path, plugin_id: &str, scenario: &str) -> Result<(), String> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    for line in scenario.lines().filter(|l| !l.trim().is_empty()) {
        let mut step: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("scenario line {line:?}: {e}"))?;
        match step["from"].as_str() {
            Some("host") => {
                let bytes = match step["raw_hex"].as_str() {
                    Some(hex) => from_hex(hex).ok_or_else(|| format!("bad hex in {line}"))?,
                    None => {
                        if step["header"]["type"] == "init" {
                            step["header"]["plugin_id"] = plugin_id.into();
                        }
                        frame(&step["header"])
                    }
                };
                stream
                    .write_all(&bytes)
                    .await
                    .map_err(|e| format!("the connection broke: {e}"))?;
            }
            Some("plugin") if step["closes"] == true => {
                match tokio::time::timeout(PING_TIMEOUT * 5, read_frame(&mut stream)).await {
                    Ok(Err(_)) => {}
                    Ok(Ok(got)) => {
                        return Err(format!("expected the connection closed; got {got}"));
                    }
                    Err(_) => {
                        return Err("expected the connection closed; it stayed open".to_owned());
                    }
                }
            }
            Some("plugin") => {
                let got = read_frame(&mut stream)
                    .await
                    .map_err(|e| format!("expected {}; {e}", step["header"]))?;
                let expected = step["header"].as_object().cloned().unwrap_or_default();
                let same = expected.iter().all(|(k, v)| &got[k] == v)
                    && (got["type"] != "error" || got["message"].is_string());
                if !same {
                    return Err(format!("expected {}; got {got}", step["header"]));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

fn frame(header: &serde_json::Value) -> Vec<u8> {
    let head = header.to_string().into_bytes();
    let n = u32::try_from(4 + head.len()).unwrap_or(u32::MAX);
    let h = u32::try_from(head.len()).unwrap_or(u32::MAX);
    [&n.to_be_bytes()[..], &h.to_be_bytes()[..], &head].concat()
}

/// The next frame's header (bodies are dropped); an error for one over 16 MiB.
async fn read_frame(stream: &mut UnixStream) -> std::io::Result<serde_json::Value> {
    let n = stream.read_u32().await? as usize;
    if !(4..=16 * 1024 * 1024).contains(&n) {
        return Err(std::io::Error::other(format!("a frame of length {n}")));
    }
    let mut payload = vec![0u8; n];
    stream.read_exact(&mut payload).await?;
    let h = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) as usize;
    let head = payload
        .get(4..4 + h)
        .ok_or_else(|| std::io::Error::other("header length past the frame"))?;
    serde_json::from_slice(head)
        .map_err(|e| std::io::Error::other(format!("header is not JSON: {e}")))
}

async fn check_v1(path: &Path, metadata: &PluginMetadata, dir: &Path, report: &mut Report) {
    let Some(mut running) = start(path, metadata, dir, report).await else {
        return;
    };
    let link = match LegacyLink::init(&running.socket, INSTANCE, ANSWER_TIMEOUT).await {
        Ok(link) => {
            report.pass("init", "the lifecycle `init` message was taken");
            link
        }
        Err(e) => {
            report.fail(
                "init",
                format!("expected the socket to take `init`; got: {e}"),
            );
            return;
        }
    };
    let link = crate::plugins::link::PluginLink::V1(link);
    let answer = link
        .forward(HttpRequest::new("GET", "/"), ANSWER_TIMEOUT)
        .await
        .map_err(|e| e.to_string());
    http_rule(answer, report);
    let started = Instant::now();
    let mut failed = None;
    for i in 0..16 {
        if let Err(e) = link
            .forward(
                HttpRequest::new("GET", format!("/?toru-check={i}")),
                ANSWER_TIMEOUT,
            )
            .await
        {
            failed = Some(e.to_string());
            break;
        }
    }
    match failed {
        None => report.pass(
            "connections",
            format!(
                "16 requests, a connection each, answered in {} ms",
                started.elapsed().as_millis()
            ),
        ),
        Some(e) => report.fail("connections", format!("expected 16 answers; then: {e}")),
    }
    let started = Instant::now();
    if let crate::plugins::link::PluginLink::V1(legacy) = &link {
        legacy.shutdown().await;
    }
    exited(&mut running, "shutdown", SHUTDOWN_DEADLINE, started, report).await;
}

/// Prints `report` as lines (`PASS  rule  detail`) or JSON.
pub(crate) fn print(report: &Report, out: &Out, json: bool) -> Result<(), CliError> {
    if json {
        let value = serde_json::to_value(report).map_err(|e| CliError::Failed(e.to_string()))?;
        out.json(&value)?;
    } else {
        for finding in &report.findings {
            let (word, paint) = match finding.verdict {
                Verdict::Pass => ("PASS", Paint::Green),
                Verdict::Fail => ("FAIL", Paint::Red),
                Verdict::Warn => ("WARN", Paint::Yellow),
                Verdict::NotExercised => ("SKIP", Paint::Dim),
            };
            out.line(&format!(
                "{}  {:<12} {}",
                out.paint(word, paint),
                finding.rule,
                finding.detail
            ))?;
        }
        let failed = report
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .count();
        out.line(&format!(
            "{}: protocol {}, {} rules, {failed} failed",
            if report.plugin.is_empty() {
                "plugin"
            } else {
                &report.plugin
            },
            report.protocol,
            report.findings.len()
        ))?;
    }
    if report.passed() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} does not keep the protocol",
            if report.plugin.is_empty() {
                "the plugin"
            } else {
                &report.plugin
            }
        )))
    }
}
