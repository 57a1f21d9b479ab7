//! Binding the configured listeners (when not socket-activated).

use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::Error;
use crate::config::ListenAddr;
use crate::http::Listener;

/// Mode of a Unix listener torud binds itself: owner and group may connect.
const UNIX_SOCKET_MODE: u32 = 0o660;

/// Binds every address; must run inside the tokio runtime.
pub fn bind(addrs: &[ListenAddr]) -> Result<Vec<Listener>, Error> {
    addrs
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
                ListenAddr::Unix(path) => bind_unix(path).map(Listener::Unix).map_err(err),
            }
        })
        .collect()
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
