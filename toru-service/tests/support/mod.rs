//! Test support: the real `torud` binary on temporary directories, with the
//! example plugins (and misbehaving ones written as shell scripts), and a
//! small HTTP client for its TCP and Unix listeners.

#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

pub const TORUD: &str = env!("CARGO_BIN_EXE_torud");
pub const LONG: Duration = Duration::from_secs(30);

/// The workspace's target folder (where `hello` is built).
fn target_dir() -> PathBuf {
    Path::new(TORUD)
        .parent()
        .expect("torud lives in a folder")
        .to_owned()
}

/// The `hello` example binary, built on demand when only this package's
/// tests were built.
pub fn hello_binary() -> PathBuf {
    workspace_binary("hello", "hello")
}

/// The `licensed` example binary (its metadata requires a licence of the test key pair).
pub fn licensed_binary() -> PathBuf {
    workspace_binary("licensed", "licensed")
}

/// The vendor's `toru-license` binary.
pub fn toru_license_binary() -> PathBuf {
    workspace_binary("toru-license", "toru-license")
}

/// The test key pair's secret key (`examples/licensed/test-keys/vendor.key`).
pub fn test_vendor_key() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/licensed/test-keys/vendor.key")
}

/// Binary `bin` of workspace package `package`, built on demand when `cargo test` built
/// only this package.
fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let path = target_dir().join(bin);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", bin])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building {bin} failed");
    }
    path
}

pub fn python_plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python/hello_v1.py")
}

/// A plugin written as a shell script: `--metadata` prints `metadata`,
/// otherwise `body` runs.
pub fn script_plugin(dir: &Path, name: &str, metadata: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = \"--metadata\" ]; then\ncat <<'EOF'\n{metadata}\nEOF\nexit 0\nfi\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Metadata JSON for a script plugin.
pub fn metadata(id: &str, route: &str, protocol: u32) -> String {
    format!(
        r#"{{"id":"{id}","name":"{id}","version":"1.0","author":null,"icon":"x","route":"{route}","protocol":{protocol}}}"#
    )
}

/// A temporary Toru installation: config, state, runtime and plugin folders.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub plugins: PathBuf,
    pub state: PathBuf,
    pub runtime: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    /// Top-level keys added to the config.
    pub top: String,
    /// Keys added to its `[restart]` table.
    pub extra: String,
}

impl Setup {
    /// With `hello` and `hello-py` installed.
    pub fn new() -> Self {
        let setup = Self::empty();
        std::os::unix::fs::symlink(hello_binary(), setup.plugins.join("hello")).unwrap();
        std::os::unix::fs::symlink(python_plugin(), setup.plugins.join("hello-py.py")).unwrap();
        setup
    }

    /// With no plugins.
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins).unwrap();
        let port = free_port();
        Self {
            plugins,
            state: dir.path().join("state"),
            runtime: dir.path().join("run"),
            config: dir.path().join("toru.toml"),
            port,
            top: String::new(),
            extra: String::new(),
            dir,
        }
    }

    /// The config file torud gets.
    pub fn write_config(&self) {
        let text = format!(
            r#"{top}
listen = ["127.0.0.1:{port}", "unix:{run}/toru.sock"]
state_dir = "{state}"
runtime_dir = "{run}"
plugin_dirs = ["{plugins}"]
shutdown_timeout = "5s"
[restart]
backoff_initial = "50ms"
backoff_max = "500ms"
{extra}
"#,
            port = self.port,
            run = self.runtime.display(),
            state = self.state.display(),
            plugins = self.plugins.display(),
            extra = self.extra,
            top = self.top,
        );
        std::fs::write(&self.config, text).unwrap();
    }

    /// Runs torud on this setup when it is expected not to start: waits
    /// for it to exit and returns (code, stderr).
    pub fn run_to_exit(&self) -> (Option<i32>, String) {
        self.write_config();
        let mut child = Command::new(TORUD)
            .arg("--config")
            .arg(&self.config)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_exit(&mut child)
    }

    /// Starts torud and waits until it serves and its plugins settled.
    pub async fn start(&self) -> Torud {
        self.write_config();
        let mut command = Command::new(TORUD);
        command.arg("--config").arg(&self.config);
        self.launch(command).await
    }

    /// Starts torud inside `cgroup` (it moves there before exec, as under
    /// systemd's `Delegate=yes`), and waits as [`Setup::start`] does.
    pub async fn start_in(&self, cgroup: &TestCgroup) -> Torud {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$1/cgroup.procs" && exec "$0" --config "$2""#)
            .arg(TORUD)
            .arg(&cgroup.dir)
            .arg(&self.config);
        self.write_config();
        self.launch(command).await
    }

    /// Runs `command` (which starts torud on this setup's config, perhaps
    /// through a wrapper) and waits until torud serves and plugins settled.
    pub async fn launch(&self, mut command: Command) -> Torud {
        // A file, not a pipe: a pipe nobody reads until the end fills up
        // with debug lines and blocks torud.
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.dir.path().join(format!("torud-{run}.log"));
        let child = command
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let torud = Torud {
            child: Some(child),
            port: self.port,
            unix: self.runtime.join("toru.sock"),
            token_file: self.state.join("admin.token"),
            log: Some(log),
        };
        torud.wait_ready().await;
        torud
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running torud; killed when dropped.
pub struct Torud {
    pub child: Option<Child>,
    pub port: u16,
    pub unix: PathBuf,
    pub token_file: PathBuf,
    /// Where its stderr goes, when it is not a pipe of the child.
    pub log: Option<PathBuf>,
}

impl Drop for Torud {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_with_plugins(&mut child);
        }
    }
}

/// SIGKILL to torud and to the process group of each of its children: the
/// plugins lead their own groups and would outlive torud otherwise. torud is
/// stopped first so that it starts no plugin while its children are listed.
pub fn kill_with_plugins(torud: &mut Child) {
    use nix::sys::signal::{Signal, kill, killpg};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(torud.id() as i32);
    let _ = kill(pid, Signal::SIGSTOP);
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"));
    let children: Vec<i32> = tasks
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    let _ = torud.kill();
    let _ = torud.wait();
    for child in children {
        let _ = killpg(Pid::from_raw(child), Signal::SIGKILL);
    }
}

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Torud {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap()
    }

    /// A second handle on the same torud that does not own the process.
    pub fn probe(&self) -> Torud {
        Torud {
            child: None,
            port: self.port,
            unix: self.unix.clone(),
            token_file: self.token_file.clone(),
            log: None,
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A request over the Unix socket (no token needed).
    pub async fn unix(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Answer {
        let stream = tokio::net::UnixStream::connect(&self.unix).await.unwrap();
        send(stream, request(method, path, body.into(), None)).await
    }

    /// [`Torud::unix`] that may fail: `None` when the connection or the exchange
    /// breaks (torud killed mid-request) or no answer comes within 30 s.
    pub async fn try_unix(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Option<Answer> {
        let stream = tokio::net::UnixStream::connect(&self.unix).await.ok()?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(connection);
        let request = request(method, path, body.into(), None);
        let response = tokio::time::timeout(LONG, sender.send_request(request))
            .await
            .ok()?
            .ok()?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.ok()?.to_bytes();
        Some(Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }

    /// A request over TCP with the admin token.
    pub async fn tcp(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Answer {
        let token = self.token();
        self.tcp_with(request(method, path, body.into(), Some(&token)))
            .await
    }

    /// Any request over TCP.
    pub async fn tcp_with(&self, request: http::Request<Full<Bytes>>) -> Answer {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        send(stream, request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.unix("GET", path, Bytes::new()).await
    }

    pub async fn plugin(&self, id: &str) -> serde_json::Value {
        self.get(&format!("/api/plugins/{id}")).await.json()
    }

    /// Polls until plugin `id` is in `state` (or 30 s pass).
    pub async fn wait_state(&self, id: &str, state: &str) -> serde_json::Value {
        let deadline = Instant::now() + LONG;
        loop {
            let plugin = self.plugin(id).await;
            if plugin["state"] == state {
                return plugin;
            }
            assert!(
                Instant::now() < deadline,
                "{id} never reached {state}: {plugin}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until torud serves on its Unix socket and no plugin is `starting`.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + LONG;
        loop {
            if let Ok(stream) = tokio::net::UnixStream::connect(&self.unix).await {
                let answer = send(stream, request("GET", "/api/plugins", Bytes::new(), None)).await;
                let settled = answer.status == 200
                    && answer
                        .json()
                        .as_array()
                        .unwrap()
                        .iter()
                        .all(|p| p["state"] != "starting");
                if settled {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "torud did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for the exit; returns (code, stderr). The child
    /// stays owned until it exited, so a panic here still kills it on drop.
    pub fn stop(&mut self) -> (Option<i32>, String) {
        signal(self.pid(), "TERM");
        let (code, stderr) = wait_exit(self.child.as_mut().unwrap());
        self.child = None;
        (code, stderr + &self.log_text())
    }

    /// SIGKILL, then waits for the exit; returns stderr.
    pub fn kill(&mut self) -> String {
        let mut child = self.child.take().unwrap();
        signal(child.id(), "KILL");
        wait_exit(&mut child).1 + &self.log_text()
    }

    /// What it wrote to its stderr so far, when that is a file.
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|log| std::fs::read_to_string(log).ok())
            .unwrap_or_default()
    }
}

/// A fresh cgroup under the real cgroup2 mount, for a torud to own. Dropping
/// it kills everything inside (`cgroup.kill`), waits for it to empty, and
/// removes it and every group below, bottom-up, also when a test fails.
#[derive(Debug)]
pub struct TestCgroup {
    /// Its directory.
    pub dir: PathBuf,
    /// Its name in `/proc/PID/cgroup` (`/toru-test-...` under the mount's root).
    pub name: String,
}

impl TestCgroup {
    /// `None` (after saying so) only when no cgroup2 file system is mounted.
    pub fn new() -> Option<Self> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mount = mountinfo.lines().find_map(|line| {
            let (head, tail) = line.split_once(" - ")?;
            let fields: Vec<_> = head.split(' ').collect();
            (tail.starts_with("cgroup2 ")).then(|| (fields[3].to_owned(), PathBuf::from(fields[4])))
        });
        let Some((root, mount)) = mount else {
            println!("SKIPPED: no cgroup2 file system is mounted on this machine");
            return None;
        };
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let leaf = format!(
            "toru-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let dir = mount.join(&leaf);
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let name = format!("{}/{leaf}", root.trim_end_matches('/'));
        Some(Self { dir, name })
    }

    /// The controllers the kernel offers this group.
    pub fn controllers(&self) -> String {
        std::fs::read_to_string(self.dir.join("cgroup.controllers")).unwrap()
    }

    /// The groups below `plugins/`.
    pub fn plugin_groups(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("plugins")) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(self.dir.join("cgroup.events"))
            .is_ok_and(|events| events.contains("populated 1"))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut groups = vec![self.dir.clone()];
        let mut i = 0;
        while let Some(group) = groups.get(i).cloned() {
            for entry in std::fs::read_dir(&group).into_iter().flatten().flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    groups.push(entry.path());
                }
            }
            i += 1;
        }
        for group in groups.iter().rev() {
            if let Err(e) = std::fs::remove_dir(group) {
                eprintln!("cannot remove test cgroup {}: {e}", group.display());
            }
        }
    }
}

/// The cgroup2 path of process `pid` (`0::` line of `/proc/PID/cgroup`).
pub fn cgroup_of(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or_else(|| panic!("{pid} is in no cgroup2 group: {text}"))
        .to_owned()
}

/// Gone, or a zombie waiting for its new parent to reap it: not running.
pub fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Waits (30 s at most) and returns (code, stderr).
pub fn wait_exit(child: &mut Child) -> (Option<i32>, String) {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use std::io::Read;
                let _ = pipe.read_to_string(&mut stderr);
            }
            return (status.code(), stderr);
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn request(
    method: &str,
    path: &str,
    body: Bytes,
    token: Option<&str>,
) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(Full::new(body)).unwrap()
}

async fn send<S>(stream: S, request: http::Request<Full<Bytes>>) -> Answer
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = tokio::time::timeout(LONG, sender.send_request(request))
        .await
        .expect("an answer within 30 s")
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}
