//! Licences: a vendor sells a plugin for one Toru installation by signing,
//! with a private Ed25519 key that never leaves them, a licence naming the
//! plugin and the installation's instance id. The plugin (and torud) verify
//! it with the public key alone, offline. `docs/LICENSES.md` specifies the
//! format:
//!
//! ```text
//! toru-license-v1.<payload>.<signature>
//! ```
//!
//! `payload` is a JSON object, `signature` the Ed25519 signature of exactly
//! the payload's bytes; both base64url without padding. The payload holds
//! `plugin`, `instance`, `licensee`, `issued_at` (RFC 3339) and `expires`
//! (`YYYY-MM-DD`, the last day it is valid, or `null`); other fields are kept
//! and ignored.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Days, NaiveDate, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What every licence starts with.
pub const PREFIX: &str = "toru-license-v1.";
/// What a public key starts with, as metadata and `toru-license keygen` write it.
pub const KEY_PREFIX: &str = "ed25519:";
/// The longest licence line accepted.
pub const MAX_LEN: usize = 8 * 1024;
/// How far in the future `issued_at` may be (clocks differ).
const CLOCK_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// Why a licence is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LicenseError {
    /// Not a licence at all: the message says what is wrong.
    #[error("not a Toru licence: {0}")]
    Malformed(String),
    /// The signature does not match the payload and the plugin's public key.
    #[error("the signature is not the plugin vendor's (another key, or an altered licence)")]
    BadSignature,
    /// Made for another installation.
    #[error("made for instance {licensed}, not this one ({this})")]
    OtherInstance {
        /// The instance in the licence.
        licensed: String,
        /// This installation's.
        this: String,
    },
    /// Made for another plugin.
    #[error("made for plugin {licensed:?}, not {this:?}")]
    OtherPlugin {
        /// The plugin in the licence.
        licensed: String,
        /// This plugin's id.
        this: String,
    },
    /// Past its last day.
    #[error("expired: its last day was {0}")]
    Expired(NaiveDate),
    /// Issued in the future (a clock is wrong, or the licence is).
    #[error("not valid yet: issued at {0}")]
    NotYetValid(DateTime<Utc>),
    /// The public key is not one.
    #[error("not an Ed25519 public key ({0}): write \"ed25519:\" and 43 base64url characters")]
    BadKey(String),
}

/// The public key a plugin accepts licences from: `ed25519:<32 bytes base64url>`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", B64.encode(self.0.as_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = LicenseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| LicenseError::BadKey(why.to_owned());
        let encoded = text
            .trim()
            .strip_prefix(KEY_PREFIX)
            .ok_or_else(|| bad("it does not start with \"ed25519:\""))?;
        let bytes = B64
            .decode(encoded)
            .map_err(|e| LicenseError::BadKey(format!("not base64url: {e}")))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| LicenseError::BadKey(format!("{} bytes, not 32", b.len())))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| bad("not a point of the curve"))
    }
}

impl PublicKey {
    /// The key of these 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, LicenseError> {
        VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| LicenseError::BadKey("not a point of the curve".into()))
    }
}

/// What a licence says (its payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The plugin's id.
    pub plugin: String,
    /// The instance id of the installation it is for.
    pub instance: String,
    /// To whom it was sold.
    #[serde(default)]
    pub licensee: Option<String>,
    /// When it was made.
    pub issued_at: DateTime<Utc>,
    /// The last day it is valid (UTC), or `None` for ever.
    #[serde(default)]
    pub expires: Option<NaiveDate>,
    /// Fields of a later format: kept, ignored.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// The instant it stops being valid: the end of its last day.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        let next = self.expires?.checked_add_days(Days::new(1))?;
        Some(next.and_hms_opt(0, 0, 0)?.and_utc())
    }
}

/// A licence read from its text: the claims, and the text itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct License {
    /// What it says.
    pub claims: Claims,
    text: String,
}

impl License {
    /// Reads `text` and checks it wholly: the signature against `key`, then that it is
    /// for `instance_id` and `plugin_id`, and valid at `now`.
    pub fn verify(
        text: &str,
        key: &PublicKey,
        instance_id: &str,
        plugin_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, LicenseError> {
        let (payload, signature) = split(text)?;
        key.0
            .verify_strict(&payload, &signature)
            .map_err(|_| LicenseError::BadSignature)?;
        let license = Self::from_payload(text, &payload)?;
        let claims = &license.claims;
        if claims.plugin != plugin_id {
            return Err(LicenseError::OtherPlugin {
                licensed: claims.plugin.clone(),
                this: plugin_id.to_owned(),
            });
        }
        if !claims.instance.eq_ignore_ascii_case(instance_id) {
            return Err(LicenseError::OtherInstance {
                licensed: claims.instance.clone(),
                this: instance_id.to_owned(),
            });
        }
        if claims.issued_at > now + CLOCK_SKEW {
            return Err(LicenseError::NotYetValid(claims.issued_at));
        }
        if let (Some(last), Some(end)) = (claims.expires, claims.expires_at())
            && now >= end
        {
            return Err(LicenseError::Expired(last));
        }
        Ok(license)
    }

    /// Reads `text` without checking its signature or what it is for: to show a licence
    /// (`toru-license inspect`), never to trust it.
    pub fn read_unverified(text: &str) -> Result<Self, LicenseError> {
        let (payload, _) = split(text)?;
        Self::from_payload(text, &payload)
    }

    fn from_payload(text: &str, payload: &[u8]) -> Result<Self, LicenseError> {
        let claims = serde_json::from_slice(payload).map_err(|e| {
            LicenseError::Malformed(format!("the payload is not the JSON of a licence: {e}"))
        })?;
        Ok(Self {
            claims,
            text: text.trim().to_owned(),
        })
    }

    /// The licence line.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The payload's bytes and the signature of a licence line.
fn split(text: &str) -> Result<(Vec<u8>, Signature), LicenseError> {
    let malformed = |why: String| LicenseError::Malformed(why);
    let text = text.trim();
    if text.len() > MAX_LEN {
        return Err(malformed(format!(
            "{} bytes long, more than the {MAX_LEN} a licence may be",
            text.len()
        )));
    }
    let body = text
        .strip_prefix(PREFIX)
        .ok_or_else(|| malformed(format!("it does not start with {PREFIX:?}")))?;
    let (payload, signature) = body
        .split_once('.')
        .ok_or_else(|| malformed("no signature after the payload".into()))?;
    let payload = B64
        .decode(payload)
        .map_err(|e| malformed(format!("the payload is not base64url: {e}")))?;
    let signature = B64
        .decode(signature)
        .map_err(|e| malformed(format!("the signature is not base64url: {e}")))?;
    let signature = Signature::from_slice(&signature).map_err(|_| {
        malformed(format!(
            "the signature is {} bytes, not 64",
            signature.len()
        ))
    })?;
    Ok((payload, signature))
}

/// The vendor's side: keys and signing (feature `vendor`).
#[cfg(any(test, feature = "vendor"))]
pub mod vendor {
    use base64::Engine as _;
    use ed25519_dalek::{Signer, SigningKey};

    use super::{B64, Claims, LicenseError, PREFIX, PublicKey};

    /// What a secret key file starts with.
    pub const SECRET_PREFIX: &str = "ed25519-secret:";

    /// A vendor's private key: `ed25519-secret:<32 bytes base64url>` in its file.
    pub struct SecretKey(SigningKey);

    impl std::fmt::Debug for SecretKey {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("SecretKey(<secret>)")
        }
    }

    impl SecretKey {
        /// A new key from 32 random bytes of the OS.
        pub fn generate() -> Result<Self, getrandom::Error> {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)?;
            Ok(Self(SigningKey::from_bytes(&seed)))
        }

        /// The key written as [`SecretKey::to_text`] writes it.
        pub fn from_text(text: &str) -> Result<Self, LicenseError> {
            let bad = |why: String| LicenseError::BadKey(why);
            let encoded = text
                .trim()
                .strip_prefix(SECRET_PREFIX)
                .ok_or_else(|| bad(format!("a secret key starts with {SECRET_PREFIX:?}")))?;
            let bytes = B64
                .decode(encoded)
                .map_err(|e| bad(format!("not base64url: {e}")))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| bad(format!("{} bytes, not 32", b.len())))?;
            Ok(Self(SigningKey::from_bytes(&bytes)))
        }

        /// `ed25519-secret:...`, for the key file.
        pub fn to_text(&self) -> String {
            format!("{SECRET_PREFIX}{}", B64.encode(self.0.to_bytes()))
        }

        /// The public key that verifies what this key signs.
        pub fn public(&self) -> PublicKey {
            PublicKey(self.0.verifying_key())
        }

        /// The licence line of `claims`, signed.
        pub fn sign(&self, claims: &Claims) -> Result<String, serde_json::Error> {
            let payload = serde_json::to_vec(claims)?;
            let signature = self.0.sign(&payload);
            Ok(format!(
                "{PREFIX}{}.{}",
                B64.encode(&payload),
                B64.encode(signature.to_bytes())
            ))
        }
    }
}

#[cfg(test)]
mod tests;
