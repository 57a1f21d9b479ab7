//! Binding the configured listeners (when not socket-activated).

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Error;
use crate::config::ListenAddr;
use crate::http::Listener;

/// Mode of a Unix listener torud binds itself: the admin API without a token, so
/// its owner's alone (as toru-admin.socket makes it under systemd).
const UNIX_SOCKET_MODE: u32 = 0o600;

/// A socket file torud made; [`OwnedSocket::remove`] takes it away at exit, unless
/// it has been replaced since.
#[derive(Debug)]
pub struct OwnedSocket {
    path: PathBuf,
    identity: (u64, u64),
}

impl OwnedSocket {
    /// Removes the file if it is still the one torud bound.
    pub fn remove(&self) {
        let same = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && (m.dev(), m.ino()) == self.identity);
        if same && let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket");
        }
    }
}

/// Binds every address; must run inside the tokio runtime. The socket files it
/// made come back too, for removal at exit.
pub fn bind(addrs: &[ListenAddr]) -> Result<(Vec<Listener>, Vec<OwnedSocket>), Error> {
    let mut owned = Vec::new();
    let listeners = addrs
        .iter()
        .map(|addr| {
            let err = |source| Error::Listen {
                addr: addr.to_string(),
                source,
            };
            match addr {
                ListenAddr::Tcp(socket) => {
                    let listener = std::net::TcpListener::bind(socket).map_err(err)?;
                    listener.set_nonblocking(true).map_err(err)?;
                    tokio::net::TcpListener::from_std(listener)
                        .map(Listener::Tcp)
                        .map_err(err)
                }
                ListenAddr::Unix(path) => {
                    let listener = bind_unix(path).map_err(err)?;
                    let meta = std::fs::symlink_metadata(path).map_err(err)?;
                    owned.push(OwnedSocket {
                        path: path.clone(),
                        identity: (meta.dev(), meta.ino()),
                    });
                    Ok(Listener::Unix(listener))
                }
            }
        })
        .collect::<Result<Vec<_>, Error>>()?;
    Ok((listeners, owned))
}

/// Binds `path`, replacing a socket file nobody listens on any more, but
/// never one in use nor anything that is not a socket.
fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another process is serving on this socket",
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a file that is not a socket is in the way",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))?;
    Ok(listener)
}

/// `127.0.0.1:7070` or `unix:/run/toru/toru.sock`, for status lines.
pub fn describe(listener: &Listener) -> String {
    match listener {
        Listener::Tcp(l) => l
            .local_addr()
            .map_or_else(|_| "tcp".to_owned(), |a| a.to_string()),
        Listener::Unix(l) => l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
            .unwrap_or_else(|| "unix".to_owned()),
    }
}
