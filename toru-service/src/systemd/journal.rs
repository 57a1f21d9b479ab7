//! Whether systemd connected stderr to the journal (`StandardError=journal`,
//! the default for services): `JOURNAL_STREAM` names the device and inode
//! of that stream. The variable alone is not enough: it is inherited by
//! children whose stderr went elsewhere.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

/// Whether fd 2 is the stream `JOURNAL_STREAM` names.
pub fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var("JOURNAL_STREAM")
        .ok()
        .and_then(|v| parse_stream(&v))
    else {
        return false;
    };
    std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .and_then(|fd| std::fs::File::from(fd).metadata())
        .is_ok_and(|meta| (meta.dev(), meta.ino()) == stream)
}

/// `JOURNAL_STREAM`'s `DEV:INODE`, both decimal.
fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("9:395130"), Some((9, 395_130)));
        assert_eq!(parse_stream("9"), None);
        assert_eq!(parse_stream(":1"), None);
        assert_eq!(parse_stream("9:x"), None);
        assert_eq!(parse_stream("9:1:2"), None);
    }
}
