//! Reading and writing the tool's files: secret keys (0600, never replaced),
//! public keys, and licences (bounded, from a file or standard input).

use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use toru_plugin_api::license::vendor::SecretKey;
use toru_plugin_api::license::{KEY_PREFIX, MAX_LEN, PublicKey};

use crate::Failure;

/// The most read from a key or licence file: more than any can be, less than harm.
const MAX_FILE: u64 = 2 * MAX_LEN as u64;

/// `text` in a new file at `path` with `mode`; an existing file is an error, kept as it is.
pub(crate) fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), Failure> {
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Failure::Failed(format!(
            "{} exists: it is kept as it is (a key is never replaced; name another file)",
            path.display()
        )),
        _ => Failure::Failed(format!("cannot write {}: {e}", path.display())),
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(failed)
}

/// `text` in the file at `path`, replacing it (licences: nothing secret).
pub(crate) fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, format!("{text}\n"))
        .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))
}

/// The text of `path` (`-`: standard input, which must not be a terminal), at most
/// [`MAX_FILE`] bytes.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String, Failure> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        if std::io::stdin().is_terminal() {
            return Err(Failure::Usage(format!(
                "name the {what} file, or pipe the {what} in"
            )));
        }
        std::io::stdin()
            .take(MAX_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
    };
    let name = || match path == Path::new("-") {
        true => "standard input".to_owned(),
        false => path.display().to_string(),
    };
    read.map_err(|e| Failure::Failed(format!("cannot read {}: {e}", name())))?;
    if text.len() as u64 > MAX_FILE {
        return Err(Failure::Failed(format!(
            "{} is larger than a {what} can be",
            name()
        )));
    }
    Ok(text.trim().to_owned())
}

/// The secret key in `path`; a warning when others may read it.
pub(crate) fn read_secret(path: &Path) -> Result<SecretKey, Failure> {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        eprintln!(
            "toru-license: warning: {} may be read by others (mode {:o}); \
             `chmod 600` it: whoever reads it can make licences",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = read_text(path, "key")?;
    SecretKey::from_text(&text)
        .map_err(|e| Failure::Failed(format!("{} is not a secret key: {e}", path.display())))
}

/// The public key `arg` is, or the one in the file it names.
pub(crate) fn read_public(arg: &str) -> Result<PublicKey, Failure> {
    let text = match arg.trim().starts_with(KEY_PREFIX) {
        true => arg.to_owned(),
        false => read_text(Path::new(arg), "key").map_err(|e| match e {
            Failure::Failed(why) => Failure::Failed(format!(
                "--public-key is neither a key (\"ed25519:...\") nor a readable file: {why}"
            )),
            usage => usage,
        })?,
    };
    text.parse()
        .map_err(|e| Failure::Failed(format!("--public-key: {e}")))
}
