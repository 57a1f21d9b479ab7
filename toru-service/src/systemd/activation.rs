//! Socket activation: the listeners systemd passes (`LISTEN_FDS`), told
//! apart by `FileDescriptorName=` (`http`, `admin`).
//!
//! [`take`](crate::systemd::activation::take) must run before any thread exists: it reads and unsets the
//! `LISTEN_*` variables (so plugins never inherit them).

use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, SockType, SockaddrLike, SockaddrStorage, getsockname, getsockopt, sockopt,
};

use crate::Error;
use crate::http::Listener;

/// One passed file descriptor and its name.
#[derive(Debug)]
pub struct Passed {
    /// The descriptor, owned from now on.
    pub fd: OwnedFd,
    /// Its `FileDescriptorName=`, `unknown` when unnamed.
    pub name: String,
}

/// Takes the descriptors systemd passed, if any, and unsets `LISTEN_*`.
/// Variables meant for another process (`LISTEN_PID` not ours) are ignored,
/// as sd_listen_fds(3) says, even when they are inconsistent.
#[allow(unsafe_code)]
pub fn take() -> std::io::Result<Vec<Passed>> {
    let ours = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    // SAFETY: called from `main` before the tokio runtime or any other
    // thread exists, as unsetting environment variables requires.
    let fds = unsafe { sd_notify::listen_fds_with_names_and_unset_env() };
    if !ours {
        return Ok(Vec::new());
    }
    let fds = fds?;
    Ok(fds
        .map(|(raw, name)| Passed {
            // SAFETY: systemd passed these descriptors to this process for
            // it to own (LISTEN_PID matched); nothing else in the process
            // refers to them, and each is taken exactly once.
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
            name,
        })
        .collect())
}

/// Turns passed descriptors into listeners; refuses any that is not a
/// listening stream socket, naming it. Must run inside the tokio runtime.
pub fn into_listeners(passed: Vec<Passed>) -> Result<Vec<Listener>, Error> {
    passed
        .into_iter()
        .map(|Passed { fd, name }| {
            let what = format!("passed descriptor {:?} ({name})", fd);
            let refuse = |why: String| Error::Listen {
                addr: what.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, why),
            };
            let io = |source| Error::Listen {
                addr: what.clone(),
                source,
            };
            let kind = getsockopt(&fd.as_fd(), sockopt::SockType)
                .map_err(|e| refuse(format!("not a socket: {e}")))?;
            if kind != SockType::Stream {
                return Err(refuse(format!("a {kind:?} socket, not a stream socket")));
            }
            if !getsockopt(&fd.as_fd(), sockopt::AcceptConn).map_err(|e| refuse(e.to_string()))? {
                return Err(refuse("a socket that is not listening".to_owned()));
            }
            let address: SockaddrStorage = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd))
                .map_err(|e| refuse(e.to_string()))?;
            let listener = match address.family() {
                Some(AddressFamily::Inet | AddressFamily::Inet6) => {
                    let std = std::net::TcpListener::from(fd);
                    std.set_nonblocking(true).map_err(io)?;
                    Listener::Tcp(tokio::net::TcpListener::from_std(std).map_err(io)?)
                }
                Some(AddressFamily::Unix) => {
                    let std = std::os::unix::net::UnixListener::from(fd);
                    std.set_nonblocking(true).map_err(io)?;
                    Listener::Unix(tokio::net::UnixListener::from_std(std).map_err(io)?)
                }
                other => return Err(refuse(format!("of address family {other:?}"))),
            };
            tracing::info!(name = %name, listener = %crate::listen::describe(&listener), "socket-activated listener");
            Ok(listener)
        })
        .collect()
}
