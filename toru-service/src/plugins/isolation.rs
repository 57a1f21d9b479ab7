//! A plugin's own view of the filesystem, so that plugins, which run as
//! torud's user, cannot read torud's state or reach each other.
//!
//! Between fork and exec the child enters a user namespace (mapping torud's
//! uid and gid to themselves: files are reached exactly as before) and a
//! mount namespace of its own, in which
//!
//! * `runtime_dir` is an empty read-only tmpfs but for the plugin's own
//!   socket folder, bound back in (other plugins' sockets and torud's own
//!   admin socket are out of sight);
//! * `state_dir` is an empty read-only tmpfs (the database with every
//!   plugin's data, and the admin token);
//! * the admin token, when it lives elsewhere, is `/dev/null`.
//!
//! It then enters a second, nested pair of namespaces: mounts inherited from
//! a more privileged namespace are locked, so even a plugin that is root
//! inside its namespace cannot unmount them to see what they cover. After
//! exec, a non-root plugin has no capability left in either namespace.
//!
//! Everything the hook needs is built before the fork; the hook itself only
//! makes system calls (async-signal-safe: no allocation, no lock).

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tokio::process::Command;

use crate::config::Settings;

/// A plugin's namespaces, ready to be applied in the child.
#[derive(Debug)]
pub(crate) struct Isolation {
    runtime_dir: CString,
    state_dir: CString,
    /// The token file when it is outside `state_dir`.
    token_file: Option<CString>,
    /// The folders from `runtime_dir` down to the socket folder, made anew
    /// in the tmpfs; the last is the socket folder.
    socket_dirs: Vec<CString>,
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
}

impl Isolation {
    /// The namespaces of a plugin whose socket is in `socket_dir`, a folder
    /// below `settings.runtime_dir`.
    pub(crate) fn new(settings: &Settings, socket_dir: &Path) -> io::Result<Self> {
        let relative = socket_dir
            .strip_prefix(&settings.runtime_dir)
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is not below runtime_dir {}",
                        socket_dir.display(),
                        settings.runtime_dir.display()
                    ),
                )
            })?;
        let mut socket_dirs = Vec::new();
        let mut dir = settings.runtime_dir.clone();
        for part in relative.components() {
            dir.push(part);
            socket_dirs.push(c_path(&dir)?);
        }
        if socket_dirs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a plugin's socket folder must be below runtime_dir",
            ));
        }
        let token_file = if settings.admin_token_file.starts_with(&settings.state_dir) {
            None
        } else {
            Some(c_path(&settings.admin_token_file)?)
        };
        let uid = nix::unistd::geteuid();
        let gid = nix::unistd::getegid();
        Ok(Self {
            runtime_dir: c_path(&settings.runtime_dir)?,
            state_dir: c_path(&settings.state_dir)?,
            token_file,
            socket_dirs,
            uid_map: format!("{uid} {uid} 1\n").into_bytes(),
            gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        })
    }

    /// Has the child enter the namespaces between fork and exec (after the
    /// hooks already set, such as joining its cgroup). Spawning fails, and
    /// nothing runs, when any step fails.
    #[allow(unsafe_code)]
    pub(crate) fn apply_before_exec(self, command: &mut Command) {
        // SAFETY: the hook runs in the child between fork and exec, where only
        // async-signal-safe work is sound: it makes system calls on buffers
        // built before the fork (owned by the closure), formats one number
        // into a stack buffer, and reads errno. It neither allocates nor locks.
        unsafe {
            command.pre_exec(move || self.enter());
        }
    }

    /// The steps, in the child.
    fn enter(&self) -> io::Result<()> {
        self.new_namespaces()?;
        // Nothing mounted here may propagate back to torud's namespace.
        mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;

        // The socket folder, held open before the tmpfs covers it.
        let Some(socket_dir) = self.socket_dirs.last() else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        let held = open_path(socket_dir)?;
        let mut source = [0u8; 32];
        let source = proc_fd_path(held, &mut source)?;

        let hidden = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        mount(
            Some(c"toru"),
            &self.runtime_dir,
            Some(c"tmpfs"),
            hidden,
            Some(c"mode=0755,size=64k"),
        )?;
        for dir in &self.socket_dirs {
            mkdir(dir)?;
        }
        mount(Some(source), socket_dir, None, libc::MS_BIND, None)?;
        close(held);
        mount(
            None,
            &self.runtime_dir,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | hidden,
            None,
        )?;
        mount(
            Some(c"toru"),
            &self.state_dir,
            Some(c"tmpfs"),
            libc::MS_RDONLY | hidden,
            Some(c"mode=0,size=4k"),
        )?;
        if let Some(token) = &self.token_file {
            mount(Some(c"/dev/null"), token, None, libc::MS_BIND, None)?;
        }

        // Locks every mount above: they now come from a more privileged
        // namespace, and cannot be unmounted one by one.
        self.new_namespaces()?;
        chdir(socket_dir)
    }

    /// A user namespace mapping our uid and gid to themselves, and a mount
    /// namespace owned by it.
    #[allow(unsafe_code)]
    fn new_namespaces(&self) -> io::Result<()> {
        // SAFETY: unshare(2) has no memory arguments.
        check(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) })?;
        write_file(c"/proc/self/setgroups", b"deny")?;
        write_file(c"/proc/self/uid_map", &self.uid_map)?;
        write_file(c"/proc/self/gid_map", &self.gid_map)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[allow(unsafe_code)]
fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    let ptr = |s: Option<&CStr>| s.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: every pointer is null or a NUL-terminated string that outlives
    // the call.
    check(unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    })
}

#[allow(unsafe_code)]
fn write_file(path: &CStr, contents: &[u8]) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd)?;
    // SAFETY: `contents` is a live buffer of the given length.
    let written = unsafe { libc::write(fd, contents.as_ptr().cast(), contents.len()) };
    let result = if usize::try_from(written).ok() == Some(contents.len()) {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    };
    close(fd);
    result
}

#[allow(unsafe_code)]
fn open_path(path: &CStr) -> io::Result<libc::c_int> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    check(fd).map(|()| fd)
}

#[allow(unsafe_code)]
fn close(fd: libc::c_int) {
    // SAFETY: `fd` was opened by the caller and is not used afterwards.
    unsafe {
        libc::close(fd);
    }
}

#[allow(unsafe_code)]
fn mkdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    check(unsafe { libc::mkdir(path.as_ptr(), 0o700) })
}

#[allow(unsafe_code)]
fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) })
}

/// `/proc/self/fd/<fd>` as a C string in `buf`, without allocating.
fn proc_fd_path(fd: libc::c_int, buf: &mut [u8; 32]) -> io::Result<&CStr> {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    let mut digits = [0u8; 10];
    let mut n = u32::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    for i in 0..len {
        buf[PREFIX.len() + i] = digits[len - 1 - i];
    }
    buf[PREFIX.len() + len] = 0;
    CStr::from_bytes_until_nul(&buf[..]).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_path_is_formatted_without_allocating() {
        let mut buf = [0u8; 32];
        assert_eq!(proc_fd_path(7, &mut buf).unwrap(), c"/proc/self/fd/7");
        assert_eq!(
            proc_fd_path(2_147_483_647, &mut buf).unwrap(),
            c"/proc/self/fd/2147483647"
        );
        assert!(proc_fd_path(-1, &mut buf).is_err());
    }

    #[test]
    fn the_socket_folder_must_be_below_the_runtime_folder() {
        let settings = crate::config::parse(
            "state_dir = \"/srv/state\"\nruntime_dir = \"/srv/run\"",
            &crate::config::SystemdDirs::default(),
        )
        .unwrap();
        let isolation = Isolation::new(&settings, Path::new("/srv/run/plugins/hello")).unwrap();
        assert_eq!(
            isolation.socket_dirs,
            [
                c"/srv/run/plugins".to_owned(),
                c"/srv/run/plugins/hello".to_owned()
            ]
        );
        assert!(isolation.token_file.is_none(), "the token is in state_dir");
        assert!(Isolation::new(&settings, Path::new("/elsewhere/hello")).is_err());
        assert!(Isolation::new(&settings, Path::new("/srv/run")).is_err());
    }
}
