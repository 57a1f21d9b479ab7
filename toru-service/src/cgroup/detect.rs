//! Where torud's own cgroup is: its path from `/proc/self/cgroup` (`0::/path`)
//! under the cgroup2 mount found in `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

/// A cgroup2 file system mounted at `point`, showing the hierarchy from `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The cgroup shown at the mount point (`/` unless bind-mounted).
    pub(crate) root: String,
    /// Where it is mounted.
    pub(crate) point: PathBuf,
}

/// Every cgroup2 mount listed in `mountinfo` text, in order.
pub(crate) fn cgroup2_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let (head, tail) = line.split_once(" - ")?;
            if tail.split(' ').next()? != "cgroup2" {
                return None;
            }
            let mut fields = head.split(' ');
            let root = unescape(fields.nth(3)?);
            let point = unescape(fields.next()?);
            Some(Mount {
                root,
                point: point.into(),
            })
        })
        .collect()
}

/// The first cgroup2 mount of this process's mount namespace, if any.
#[cfg(test)]
pub(crate) fn cgroup2_mount() -> std::io::Result<Option<PathBuf>> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(cgroup2_mounts(&mountinfo)
        .into_iter()
        .next()
        .map(|m| m.point))
}

/// The cgroup2 path (`/system.slice/toru.service`) in `/proc/PID/cgroup` text.
pub(crate) fn unified_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.strip_suffix(" (deleted)").unwrap_or(path))
}

/// The directory of cgroup `path` under one of `mounts`.
pub(crate) fn locate(path: &str, mounts: &[Mount]) -> Option<PathBuf> {
    mounts.iter().find_map(|mount| {
        let below = if mount.root == "/" {
            path.strip_prefix('/')
        } else {
            path.strip_prefix(mount.root.as_str())
                .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                .map(|rest| rest.trim_start_matches('/'))
        }?;
        let dir = if below.is_empty() {
            mount.point.clone()
        } else {
            mount.point.join(below)
        };
        // Never climb out of the mount through `..` in a hostile path.
        (!Path::new(below)
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_))))
        .then_some(dir)
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
90 22 0:38 /system.slice /srv/my\\040cg rw - cgroup2 cgroup2 rw
";

    #[test]
    fn cgroup2_mounts_are_found_whatever_their_place() {
        let mounts = cgroup2_mounts(MOUNTINFO);
        assert_eq!(
            mounts,
            vec![
                Mount {
                    root: "/".into(),
                    point: "/sys/fs/cgroup/unified".into()
                },
                Mount {
                    root: "/system.slice".into(),
                    point: "/srv/my cg".into()
                },
            ]
        );
        assert!(cgroup2_mounts("31 23 0:28 / /x rw - tmpfs tmpfs rw\n").is_empty());
    }

    #[test]
    fn the_unified_line_of_proc_cgroup() {
        let text = "9:name=systemd:/\n4:memory:/a\n0::/system.slice/toru.service\n";
        assert_eq!(unified_path(text), Some("/system.slice/toru.service"));
        assert_eq!(unified_path("0::/gone (deleted)\n"), Some("/gone"));
        assert_eq!(unified_path("4:memory:/a\n"), None);
    }

    #[test]
    fn a_path_is_located_under_a_mount_showing_it() {
        let mounts = cgroup2_mounts(MOUNTINFO);
        assert_eq!(
            locate("/system.slice/toru.service", &mounts[..1]),
            Some("/sys/fs/cgroup/unified/system.slice/toru.service".into())
        );
        assert_eq!(
            locate("/", &mounts[..1]),
            Some("/sys/fs/cgroup/unified".into())
        );
        assert_eq!(
            locate("/system.slice/toru.service", &mounts[1..]),
            Some("/srv/my cg/toru.service".into())
        );
        assert_eq!(locate("/user.slice", &mounts[1..]), None);
        assert_eq!(locate("/system.slicex", &mounts[1..]), None);
        assert_eq!(locate("/a/../../etc", &mounts), None);
    }
}
