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
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::process::Child;
use toru_plugin_api::conformance;
use toru_plugin_api::host::{HostConnection, InitParams, MemoryKv};
use toru_plugin_api::{HttpRequest, PluginMetadata};

use super::error::CliError;
use super::output::{Out, Paint};
use crate::plugins::discovery::read_metadata;
use crate::plugins::isolation::Isolation;
use crate::plugins::link::LegacyLink;
use crate::plugins::process::{PluginEnv, kill_group, spawn};

/// The instance id the checker gives the plugin unless told another.
pub(crate) const INSTANCE: &str = "00000000-0000-4000-8000-00000000c4ec";
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

/// How to run the plugin under test.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The protocol to hold it to; by default what its metadata says.
    pub(crate) protocol: Option<u32>,
    /// The licence line to give it, as torud gives an installed one.
    pub(crate) license: Option<String>,
    /// The instance id it is told.
    pub(crate) instance: String,
    /// Whether it runs in the namespaces torud gives plugins with
    /// `isolate_plugins = true`.
    pub(crate) isolate: bool,
}

/// Runs every rule against the executable at `path`.
pub(crate) async fn check(path: &Path, options: &Options) -> Report {
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
    report.protocol = options.protocol.unwrap_or(metadata.protocol.unwrap_or(1));
    let Ok(dir) = tempfile::Builder::new().prefix("toru-check-").tempdir() else {
        report.fail("socket", "cannot make a temporary folder");
        return report;
    };
    if report.protocol >= 2 {
        check_v2(path, &metadata, options, dir.path(), &mut report).await;
    } else {
        check_v1(path, &metadata, options, dir.path(), &mut report).await;
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
    options: &Options,
    dir: &Path,
    report: &mut Report,
) -> Option<Running> {
    use std::os::unix::fs::DirBuilderExt;
    // As torud lays it out: RUNTIME_DIR/plugins/ID/ID.sock, the state elsewhere.
    let home = dir.join("run").join("plugins").join(&metadata.id);
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
        instance_id: &options.instance,
        home: &home,
        license: options.license.as_deref(),
        checked: true,
    };
    let isolation = if options.isolate {
        match isolation(dir, &home) {
            Ok(isolation) => Some(isolation),
            Err(e) => {
                report.fail("socket", format!("cannot isolate the plugin: {e}"));
                return None;
            }
        }
    } else {
        None
    };
    let mut child = match spawn(path, &env, None, isolation).await {
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

/// torud's namespaces for a plugin (`isolate_plugins`), with the check's `run` folder
/// as torud's runtime folder and an empty `state` folder beside it.
fn isolation(dir: &Path, home: &Path) -> Result<Isolation, String> {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).map_err(|e| format!("{}: {e}", state.display()))?;
    let runtime = dir.join("run");
    let mut table = toml::Table::new();
    for (key, path) in [
        ("runtime_dir", runtime.as_path()),
        ("state_dir", state.as_path()),
    ] {
        let path = path
            .to_str()
            .ok_or("the temporary folder's name is not UTF-8")?;
        table.insert(key.into(), path.into());
    }
    let settings = crate::config::parse(&table.to_string(), &crate::config::SystemdDirs::default())
        .map_err(|e| e.to_string())?;
    Isolation::new(&settings, home).map_err(|e| e.to_string())
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

async fn check_v2(
    path: &Path,
    metadata: &PluginMetadata,
    options: &Options,
    dir: &Path,
    report: &mut Report,
) {
    let Some(mut running) = start(path, metadata, options, dir, report).await else {
        return;
    };
    let kv = Arc::new(MemoryKv::default());
    let init = InitParams {
        instance_id: options.instance.clone(),
        plugin_id: metadata.id.clone(),
        license: options.license.clone(),
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
            report.fail(
                "init",
                format!(
                    "expected `init_ok`; got: {e}{}",
                    license_hint(metadata, options)
                ),
            );
            return;
        }
    };

    let host = Arc::new(host);
    // What the scenarios' `init` frames say instead of their own.
    let replayed_init = serde_json::json!({
        "plugin_id": metadata.id,
        "instance_id": options.instance,
        "license": options.license,
    });
    let conventions = exchanges(&host, &kv, &running.socket, &replayed_init, report).await;

    // `shutdown` with a deadline: the request in flight finished, exit 0 within it,
    // socket gone. Without the echo convention there is no request to keep in flight.
    let started = Instant::now();
    let sent = if conventions.contains(&"echo") {
        replay_bounded(&running.socket, &replayed_init, &SHUTDOWN)
            .await
            .map_err(|e| format!("conformance/shutdown.jsonl: {e}"))
    } else {
        host.shutdown(SHUTDOWN_DEADLINE)
            .await
            .map_err(|e| format!("cannot send `shutdown`: {e}"))
    };
    match sent {
        Ok(()) => {
            exited(&mut running, "shutdown", SHUTDOWN_DEADLINE, started, report).await;
            if conventions.contains(&"echo") {
                for finding in &mut report.findings {
                    if finding.rule == "shutdown" && finding.verdict != Verdict::Fail {
                        finding.detail = format!(
                            "conformance/shutdown.jsonl replayed (the request in flight answered, new ones refused, pings answered); {}",
                            finding.detail
                        );
                    }
                }
            }
        }
        Err(e) => {
            report.fail("shutdown", e);
            // Whatever became of it, what it left behind is still a rule.
            let mut after = Report::default();
            exited(
                &mut running,
                "shutdown",
                SHUTDOWN_DEADLINE,
                started,
                &mut after,
            )
            .await;
            report
                .findings
                .extend(after.findings.into_iter().filter(|f| f.rule == "leftovers"));
        }
    }
    drop(host);
    drop(running);

    // SIGTERM on a fresh start: as a `shutdown` with a 10 s deadline.
    let mut quiet = Report::default();
    let Some(mut running) = start(path, metadata, options, dir, &mut quiet).await else {
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

/// The rules spoken over the host connection, in order; the checker's conventions
/// the plugin answers. A plugin that stops answering `ping` ends them: the rest are
/// reported not run, rather than each waiting out its own timeout.
async fn exchanges(
    host: &Arc<HostConnection>,
    kv: &MemoryKv,
    socket: &Path,
    init: &serde_json::Value,
    report: &mut Report,
) -> Vec<&'static str> {
    let mut conventions = Vec::new();
    let answer = host
        .http(HttpRequest::new("GET", "/"), ANSWER_TIMEOUT)
        .await
        .map_err(|e| said(host, &e));
    http_rule(answer, report);
    if let Some(why) = unresponsive(host).await {
        return not_run(report, &why, conventions);
    }

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
        Ok(answer) if answer.status == 200 && answer.body == body => {
            conventions.push("echo");
            report.pass(
                "http.binary",
                "4096 bytes of every byte value came back intact",
            );
        }
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
        Err(e) => report.fail(
            "http.binary",
            format!("expected an answer; got: {}", said(host, &e)),
        ),
    }

    if let Some(why) = unresponsive(host).await {
        return not_run(report, &why, conventions);
    }

    // Many at once, and a ping among them: answered by the reader, at once.
    let started = Instant::now();
    let calls: Vec<_> = (0..IN_FLIGHT)
        .map(|i| {
            let host = Arc::clone(host);
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
            Ok(Err(e)) => failed = Some(said(host, &e)),
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

    if let Some(why) = unresponsive(host).await {
        return not_run(report, &why, conventions);
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
                conventions.push("kv");
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
        Err(e) => report.fail("kv", format!("expected an answer; got: {}", said(host, &e))),
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

    if let Some(why) = unresponsive(host).await {
        return not_run(report, &why, conventions);
    }
    bad_input(socket, init, report).await;
    replays(socket, init, &conventions, report).await;
    conventions
}

/// The rules of [`exchanges`], in order.
const EXCHANGES: [&str; 11] = [
    "http",
    "http.binary",
    "ping",
    "concurrency",
    "kv",
    "cancel",
    "bad_input",
    "replay.http_echo",
    "replay.kv",
    "replay.duplicate_id",
    "replay.cancel",
];

/// Why the plugin no longer answers on `host`, if it does not: it does not answer a
/// `ping` in time, or the connection is gone.
async fn unresponsive(host: &HostConnection) -> Option<String> {
    let e = host.ping(PING_TIMEOUT).await.err()?;
    Some(format!(
        "the plugin stopped answering (`ping`: {})",
        said(host, &e)
    ))
}

/// Reports the rules of [`exchanges`] not reached yet as not run, saying why.
fn not_run(report: &mut Report, why: &str, conventions: Vec<&'static str>) -> Vec<&'static str> {
    let mut said = false;
    for rule in EXCHANGES {
        if !report.findings.iter().any(|f| f.rule == rule) {
            let detail = if said {
                "not run (as above)".to_owned()
            } else {
                format!("not run: {why}")
            };
            report.add(rule, Verdict::NotExercised, detail);
            said = true;
        }
    }
    conventions
}

/// An error from a call to the plugin, with what was wrong with its frames if anything.
fn said(host: &HostConnection, e: &toru_plugin_api::PluginError) -> String {
    match host.trouble() {
        Some(trouble) => format!("{e} ({trouble})"),
        None => e.to_string(),
    }
}

/// For a plugin that declares a licence key and was given no licence: how to give one.
fn license_hint(metadata: &PluginMetadata, options: &Options) -> String {
    match &metadata.license {
        Some(spec) if spec.required && options.license.is_none() => format!(
            " (the plugin requires a licence: give one with --license FILE, made for instance {})",
            options.instance
        ),
        _ => String::new(),
    }
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
        Err(_) => {
            report.fail(
                rule,
                format!("expected an exit within {within:?}; it still ran (killed now)"),
            );
            kill_group(pid);
            if rule == "shutdown" {
                report.add(
                    "leftovers",
                    Verdict::NotExercised,
                    "not checked: the plugin did not exit by itself, so its process group was killed",
                );
            }
            return;
        }
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

/// A conformance scenario (conformance/ at the top of the repository): the exact
/// frames both sides send, replayed on a connection of its own.
struct Scenario {
    name: &'static str,
    text: &'static str,
}

macro_rules! scenario {
    ($name:literal) => {
        Scenario {
            name: $name,
            text: include_str!(concat!("../../../conformance/", $name, ".jsonl")),
        }
    };
}

/// What the rule `bad_input` replays: no route of the plugin's is needed.
const BAD_INPUT: [Scenario; 3] = [
    scenario!("init"),
    scenario!("bad_input"),
    scenario!("first_message"),
];

/// Replayed each as a rule of its own, `replay.NAME`, when the plugin answers the
/// convention the scenario's first line `requires`.
const REPLAYED: [(&str, Scenario); 4] = [
    ("replay.http_echo", scenario!("http_echo")),
    ("replay.kv", scenario!("kv")),
    ("replay.duplicate_id", scenario!("duplicate_id")),
    ("replay.cancel", scenario!("cancel")),
];

/// Replayed last, as the rule `shutdown`: it stops the plugin.
const SHUTDOWN: Scenario = scenario!("shutdown");

/// Replays every scenario; the rule `bad_input` says how they went.
async fn bad_input(socket: &Path, init: &serde_json::Value, report: &mut Report) {
    let mut wrong = Vec::new();
    for scenario in &BAD_INPUT {
        if let Err(e) = replay_bounded(socket, init, scenario).await {
            wrong.push(format!("{}: {e}", scenario.name));
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

/// The scenarios that need the checker's conventions, each a rule; `answered` says
/// which conventions the plugin answers.
async fn replays(socket: &Path, init: &serde_json::Value, answered: &[&str], report: &mut Report) {
    for (rule, scenario) in &REPLAYED {
        let requires = conformance::requires(scenario.text);
        if let Some(convention) = requires.as_deref().filter(|c| !answered.contains(c)) {
            report.add(
                rule,
                Verdict::NotExercised,
                format!(
                    "conformance/{}.jsonl needs the {convention} convention, which the plugin does not answer",
                    scenario.name
                ),
            );
            continue;
        }
        match replay_bounded(socket, init, scenario).await {
            Ok(()) => report.pass(
                rule,
                format!(
                    "conformance/{}.jsonl replayed frame for frame",
                    scenario.name
                ),
            ),
            Err(e) => report.fail(rule, format!("conformance/{}.jsonl: {e}", scenario.name)),
        }
    }
}

async fn replay_bounded(
    socket: &Path,
    init: &serde_json::Value,
    scenario: &Scenario,
) -> Result<(), String> {
    let replayed = async {
        let mut stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        conformance::replay(&mut stream, init, scenario.text)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, replayed).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!("no answer within {ANSWER_TIMEOUT:?}")),
    }
}

async fn check_v1(
    path: &Path,
    metadata: &PluginMetadata,
    options: &Options,
    dir: &Path,
    report: &mut Report,
) {
    let Some(mut running) = start(path, metadata, options, dir, report).await else {
        return;
    };
    let link = match LegacyLink::init(&running.socket, &options.instance, ANSWER_TIMEOUT).await {
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
                "{}  {:<19} {}",
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
