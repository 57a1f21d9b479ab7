//! Finding plugins: executables directly inside the plugin folders, asked
//! for their metadata with `PLUGIN --metadata` (bounded in time and output).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use toru_plugin_api::PluginMetadata;
use tracing::{debug, warn};

/// The most `--metadata` may print before it is cut off and refused.
const MAX_METADATA_BYTES: u64 = 64 * 1024;

/// One executable found in a plugin folder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Discovered {
    /// The executable.
    pub(crate) path: PathBuf,
    /// Its metadata, or why it cannot be used.
    pub(crate) metadata: Result<PluginMetadata, String>,
    /// Which file it was, to tell a replaced binary on reload.
    pub(crate) fingerprint: Fingerprint,
}

/// Identity and version of an executable (through symlinks): device, inode,
/// size and modification time. A changed fingerprint means a new binary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Fingerprint {
    /// The fingerprint of `path` now; all zero when it cannot be read.
    pub(crate) fn of(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).map_or_else(
            |_| Self::default(),
            |m| Self {
                dev: m.dev(),
                ino: m.ino(),
                size: m.size(),
                mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            },
        )
    }
}

impl Discovered {
    /// The id to list it under: its metadata id, else its file name.
    pub(crate) fn key(&self) -> String {
        match &self.metadata {
            Ok(m) => m.id.clone(),
            Err(_) => self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

/// A plugin that holds its id and route already (on reload, one torud runs):
/// a newcomer claiming either is the one refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Held {
    /// Its id.
    pub(crate) id: String,
    /// Its executable.
    pub(crate) path: PathBuf,
    /// Its file as it was when it started, and the metadata it gave then.
    pub(crate) fingerprint: Fingerprint,
    pub(crate) metadata: Option<PluginMetadata>,
}

/// Every plugin in `dirs`, in folder order then file name order, asked for
/// its metadata; then the collisions settled by [`settle_claims`].
pub(crate) async fn discover(
    dirs: &[PathBuf],
    timeout: Duration,
    held: &[Held],
) -> Vec<Discovered> {
    let mut paths = Vec::new();
    for dir in dirs {
        paths.extend(executables(dir));
    }
    let probes = paths.into_iter().map(|path| async move {
        let fingerprint = Fingerprint::of(&path);
        // A running plugin whose file has not changed has the metadata it had: asking
        // again costs a process per plugin, and a slow answer (a loaded machine) would
        // make it look invalid and stop it.
        let unchanged = held
            .iter()
            .find(|h| {
                h.path == path
                    && h.fingerprint == fingerprint
                    && fingerprint != Fingerprint::default()
            })
            .and_then(|h| h.metadata.clone());
        let metadata = match unchanged {
            Some(metadata) => Ok(metadata),
            None => read_metadata(&path, timeout).await,
        };
        Discovered {
            path,
            metadata,
            fingerprint,
        }
    });
    let mut found = futures_util::future::join_all(probes).await;
    settle_claims(&mut found, held);
    found
}

/// Marks invalid each plugin whose id or route another one has, naming it.
///
/// A plugin in `held` (running, on a reload) keeps its id and route when its
/// file still claims them: a newcomer never takes over. Among the others the
/// first in folder order, then file name order, wins; so at first start the
/// choice depends only on the folders and names, and every loser is listed
/// with the reason.
pub(crate) fn settle_claims(found: &mut [Discovered], held: &[Held]) {
    let holds = |plugin: &Discovered| {
        plugin
            .metadata
            .as_ref()
            .is_ok_and(|m| held.iter().any(|h| h.path == plugin.path && h.id == m.id))
    };
    let order: Vec<usize> = (0..found.len())
        .filter(|&i| holds(&found[i]))
        .chain((0..found.len()).filter(|&i| !holds(&found[i])))
        .collect();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    let mut routes: HashMap<String, PathBuf> = HashMap::new();
    for i in order {
        let plugin = &mut found[i];
        let Ok(metadata) = &plugin.metadata else {
            continue;
        };
        let collision = if let Some(other) = ids.get(&metadata.id) {
            Some(format!(
                "id {:?} is already used by {}",
                metadata.id,
                other.display()
            ))
        } else {
            routes.get(&metadata.route).map(|other| {
                format!(
                    "route {:?} is already used by {}",
                    metadata.route,
                    other.display()
                )
            })
        };
        match collision {
            Some(reason) => {
                warn!(plugin = %metadata.id, path = %plugin.path.display(), %reason, "plugin not started");
                plugin.metadata = Err(reason);
            }
            None => {
                ids.insert(metadata.id.clone(), plugin.path.clone());
                routes.insert(metadata.route.clone(), plugin.path.clone());
            }
        }
    }
}

/// Regular executable files directly in `dir` (symlinks followed), hidden
/// ones left out, sorted by name.
fn executables(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(dir = %dir.display(), error = %e, "cannot read plugin folder");
            }
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .map(|entry| entry.path())
        .filter(|path| {
            std::fs::metadata(path)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .collect();
    paths.sort();
    paths
}

/// Runs `path --metadata` with a clean environment, no stdin, a time limit
/// and an output cap, and checks what it prints.
pub(crate) async fn read_metadata(
    path: &Path,
    timeout: Duration,
) -> Result<PluginMetadata, String> {
    let mut command = super::spawner::command(path);
    command
        .arg("--metadata")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = super::spawner::spawn(command)
        .await
        .map_err(|e| format!("cannot run --metadata: {e}"))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err("cannot read the output of --metadata".to_owned());
    };
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(MAX_METADATA_BYTES + 1);
        let mut stderr = stderr.take(4096);
        // stdout first, alone: a plugin still writing past the cap keeps
        // stderr open too, and waiting for either to end would never return.
        stdout
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("reading --metadata output: {e}"))?;
        if out.len() as u64 > MAX_METADATA_BYTES {
            return Err(format!(
                "--metadata printed more than {MAX_METADATA_BYTES} bytes"
            ));
        }
        let (status, _) = tokio::join!(child.wait(), stderr.read_to_end(&mut err));
        let status = status.map_err(|e| format!("waiting for --metadata: {e}"))?;
        Ok((status, out, err))
    };
    let outcome = tokio::time::timeout(timeout, run).await;
    let (status, out, err) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(reason)) => {
            super::process::kill_group(child.id());
            return Err(reason);
        }
        Err(_) => {
            super::process::kill_group(child.id());
            return Err(format!("--metadata did not finish within {timeout:?}"));
        }
    };
    if !status.success() {
        let err = String::from_utf8_lossy(&err);
        return Err(format!("--metadata exited with {status}: {}", err.trim()));
    }
    let metadata: PluginMetadata = serde_json::from_slice(&out)
        .map_err(|e| format!("--metadata printed no valid metadata JSON: {e}"))?;
    metadata.validate().map_err(|e| e.to_string())?;
    debug!(plugin = %metadata.id, path = %path.display(), protocol = metadata.protocol_version(), "plugin found");
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(path: &str, id: &str, route: &str) -> Discovered {
        let metadata = serde_json::from_value(serde_json::json!({
            "id": id, "name": id, "version": "1", "icon": "x", "route": route, "protocol": 2
        }))
        .unwrap();
        Discovered {
            path: path.into(),
            metadata: Ok(metadata),
            fingerprint: Fingerprint::default(),
        }
    }

    fn outcome(found: &[Discovered]) -> Vec<(String, Result<String, String>)> {
        found
            .iter()
            .map(|p| {
                let name = p.path.display().to_string();
                (
                    name,
                    p.metadata
                        .as_ref()
                        .map(|m| m.id.clone())
                        .map_err(Clone::clone),
                )
            })
            .collect()
    }

    #[test]
    fn at_first_start_the_first_file_wins_and_the_others_are_listed() {
        let mut found = vec![
            plugin("/a/dupe", "x", "/one"),
            plugin("/a/x", "x", "/two"),
            plugin("/b/other", "y", "/one"),
        ];
        settle_claims(&mut found, &[]);
        assert_eq!(
            outcome(&found),
            [
                ("/a/dupe".to_owned(), Ok("x".to_owned())),
                (
                    "/a/x".to_owned(),
                    Err("id \"x\" is already used by /a/dupe".to_owned())
                ),
                (
                    "/b/other".to_owned(),
                    Err("route \"/one\" is already used by /a/dupe".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn on_reload_the_running_plugin_keeps_its_id_and_route() {
        let held = [Held {
            id: "x".into(),
            path: "/a/x".into(),
            fingerprint: Fingerprint::default(),
            metadata: None,
        }];
        // The newcomer sorts first, and claims the id; another the route.
        let mut found = vec![
            plugin("/a/dupe", "x", "/dupe"),
            plugin("/a/route", "r", "/x"),
            plugin("/a/x", "x", "/x"),
        ];
        settle_claims(&mut found, &held);
        assert_eq!(
            outcome(&found),
            [
                (
                    "/a/dupe".to_owned(),
                    Err("id \"x\" is already used by /a/x".to_owned())
                ),
                (
                    "/a/route".to_owned(),
                    Err("route \"/x\" is already used by /a/x".to_owned())
                ),
                ("/a/x".to_owned(), Ok("x".to_owned())),
            ]
        );
        // Once the running plugin's file is gone, the id is free again.
        let mut found = vec![plugin("/a/dupe", "x", "/dupe")];
        settle_claims(&mut found, &held);
        assert!(found[0].metadata.is_ok());
    }
}
