//! The admin token: the secret a TCP client must present as
//! `Authorization: Bearer <token>`. It lives in a file torud creates at first
//! start, so an administrator can read it (`sudo cat`) and toructl can use it.

use std::fmt;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use http::HeaderValue;
use subtle::{Choice, ConstantTimeEq};

/// Random bytes in a new token (hex-encoded in the file).
const TOKEN_BYTES: usize = 32;

/// The secret that TCP clients of `/api/*` and `/metrics` must present.
pub(crate) struct AdminToken {
    secret: Box<[u8]>,
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, even in debug logs.
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// Reads the token from `path`, or creates that file with a new random
    /// token (mode 0600, its directory 0700 when missing) when it does not
    /// exist. An existing file is never overwritten. An empty or unreadable
    /// file is an error naming the file.
    pub(crate) fn load_or_create(path: &Path) -> io::Result<Self> {
        match read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        match create(path) {
            // Another torud (or an administrator) wrote it since we looked: theirs wins.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read(path),
            other => other,
        }
    }

    /// A token with a known secret (surrounding whitespace ignored). An empty
    /// secret accepts nobody.
    pub(crate) fn from_secret(secret: &str) -> Self {
        Self {
            secret: secret.trim().as_bytes().into(),
        }
    }

    /// Whether `presented` (surrounding whitespace ignored) is this token, compared in
    /// constant time. An empty secret accepts nobody.
    pub(crate) fn matches(&self, presented: &str) -> bool {
        !self.secret.is_empty() && same_secret(presented.trim().as_bytes(), &self.secret)
    }

    /// Whether `authorization` is `Bearer <this token>`. The scheme is
    /// case-insensitive (RFC 9110 §11.1); the token is compared in constant time.
    pub(crate) fn verify(&self, authorization: Option<&HeaderValue>) -> bool {
        if self.secret.is_empty() {
            return false;
        }
        let Some((scheme, presented)) =
            authorization.and_then(|v| v.as_bytes().split_at_checked(7))
        else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ") && same_secret(presented.trim_ascii(), &self.secret)
    }
}

/// Whether `presented` is `secret`, in a time that depends on their lengths only.
/// Eight bytes at a step: subtle's comparison of byte slices costs about 13
/// instructions a byte, a tenth of what torud spends on a forwarded request
/// besides.
fn same_secret(presented: &[u8], secret: &[u8]) -> bool {
    if presented.len() != secret.len() {
        return false;
    }
    let (words, rest) = presented.as_chunks::<8>();
    let (secret_words, secret_rest) = secret.as_chunks::<8>();
    let mut same = Choice::from(1);
    for (word, secret_word) in words.iter().zip(secret_words) {
        same &= u64::from_ne_bytes(*word).ct_eq(&u64::from_ne_bytes(*secret_word));
    }
    same &= rest.ct_eq(secret_rest);
    bool::from(same)
}

/// Reads an existing token file; `NotFound` keeps its kind so the caller can create it.
fn read(path: &Path) -> io::Result<AdminToken> {
    let text = fs::read_to_string(path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read admin token file {}: {e}", path.display()),
        )
    })?;
    let token = AdminToken::from_secret(&text);
    if token.secret.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("admin token file {} is empty", path.display()),
        ));
    }
    if let Ok(meta) = fs::metadata(path)
        && meta.mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format_args!("{:o}", meta.mode() & 0o777),
            "the admin token file is readable by other users"
        );
    }
    Ok(token)
}

/// Creates the token file with a fresh random token; fails with
/// `AlreadyExists` rather than replace a file.
fn create(path: &Path) -> io::Result<AdminToken> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot create directory {} for the admin token: {e}",
                        dir.display()
                    ),
                )
            })?;
    }
    let mut random = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut random)
        .map_err(|e| io::Error::other(format!("cannot generate an admin token: {e}")))?;
    let mut text: String = random.iter().map(|b| format!("{b:02x}")).collect();
    text.push('\n');

    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create admin token file {}: {e}", path.display()),
            )
        })?;
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        // A half-written file would make every later start fail as "empty".
        let _ = fs::remove_file(path);
        return Err(io::Error::new(
            e.kind(),
            format!("cannot write admin token file {}: {e}", path.display()),
        ));
    }
    tracing::info!(file = %path.display(), "created a new admin token");
    Ok(AdminToken::from_secret(&text))
}
