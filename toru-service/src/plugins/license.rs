//! Whether a plugin is licensed here: its metadata's vendor key, the licence
//! installed for it, this installation's instance id, and the time.

use chrono::{DateTime, NaiveDate, Utc};
use toru_plugin_api::PluginMetadata;
use toru_plugin_api::license::{License, LicenseError, PublicKey};

/// A licence ending within this many days is warned about.
pub(crate) const WARN_DAYS: i64 = 14;

/// The word the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LicenseState {
    /// Signed by the plugin's vendor, for this plugin and instance, not expired.
    Valid,
    /// The plugin requires one and none is installed.
    Missing,
    /// The installed one is not valid here.
    Invalid,
    /// The installed one is past its last day.
    Expired,
    /// The plugin requires none (and declares no vendor key, or none is installed).
    NotRequired,
}

impl LicenseState {
    /// `valid`, `missing`, ...
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::NotRequired => "not_required",
        }
    }
}

/// A plugin's licence as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LicenseStatus {
    /// Where it stands.
    pub(crate) state: LicenseState,
    /// To whom it was sold (as the licence says).
    pub(crate) licensee: Option<String>,
    /// Its last day.
    pub(crate) expires: Option<NaiveDate>,
    /// When it stops being valid.
    pub(crate) expires_at: Option<DateTime<Utc>>,
    /// Why it is not valid, or a note.
    pub(crate) error: Option<String>,
    /// Whether the plugin refuses to serve without a valid one.
    pub(crate) required: bool,
}

impl LicenseStatus {
    /// Why torud does not start the plugin, when it requires a licence it lacks.
    pub(crate) fn refusal(&self) -> Option<String> {
        if !self.required || self.state == LicenseState::Valid {
            return None;
        }
        Some(match (&self.state, &self.error) {
            (LicenseState::Missing, _) => {
                "it requires a licence, and none is installed (toructl license install)".to_owned()
            }
            (_, Some(error)) => format!("it requires a licence, and the installed one is {error}"),
            (state, None) => format!(
                "it requires a licence, and the installed one is {}",
                state.as_str()
            ),
        })
    }
}

/// What `line` (the installed licence) is worth for the plugin of `metadata` on
/// instance `instance_id` at `now`.
pub(crate) fn status(
    metadata: Option<&PluginMetadata>,
    line: Option<&str>,
    instance_id: &str,
    now: DateTime<Utc>,
) -> LicenseStatus {
    let spec = metadata.and_then(|m| m.license.as_ref());
    let required = spec.is_some_and(|s| s.required);
    let mut out = LicenseStatus {
        state: LicenseState::NotRequired,
        licensee: None,
        expires: None,
        expires_at: None,
        error: None,
        required,
    };
    let unverified = line.and_then(|l| License::read_unverified(l).ok());
    if let Some(license) = &unverified {
        out.licensee.clone_from(&license.claims.licensee);
        out.expires = license.claims.expires;
        out.expires_at = license.claims.expires_at();
    }
    let (Some(spec), Some(metadata)) = (spec, metadata) else {
        if line.is_some() {
            out.error = Some("kept unverified: the plugin declares no vendor key".to_owned());
        }
        return out;
    };
    let Some(line) = line else {
        out.state = if required {
            LicenseState::Missing
        } else {
            LicenseState::NotRequired
        };
        return out;
    };
    let key: PublicKey = match spec.public_key.parse() {
        Ok(key) => key,
        Err(e) => {
            out.state = LicenseState::Invalid;
            out.error = Some(format!("unverifiable: the plugin's key is {e}"));
            return out;
        }
    };
    match License::verify(line, &key, instance_id, &metadata.id, now) {
        Ok(_) => out.state = LicenseState::Valid,
        Err(e @ LicenseError::Expired(_)) => {
            out.state = LicenseState::Expired;
            out.error = Some(e.to_string());
        }
        Err(e) => {
            out.state = LicenseState::Invalid;
            out.error = Some(e.to_string());
        }
    }
    out
}

/// Checks `line` before it is installed for the plugin of `metadata`: refused when the
/// plugin declares a key and the licence is not valid here (an expired one too).
pub(crate) fn check_install(
    metadata: &PluginMetadata,
    line: &str,
    instance_id: &str,
    now: DateTime<Utc>,
) -> Result<(), LicenseError> {
    match &metadata.license {
        Some(spec) => {
            let key: PublicKey = spec.public_key.parse()?;
            License::verify(line, &key, instance_id, &metadata.id, now).map(drop)
        }
        // Kept unverified and handed over as it is: the first host's licences were
        // not in Toru's format, so any one line of text will do.
        None => one_line(line),
    }
}

/// A licence torud cannot verify must still be one line of printable text, not too long.
fn one_line(line: &str) -> Result<(), LicenseError> {
    let malformed = |why: String| Err(LicenseError::Malformed(why));
    if line.is_empty() {
        return malformed("it is empty".into());
    }
    if line.len() > toru_plugin_api::license::MAX_LEN {
        return malformed(format!(
            "{} bytes long, more than the {} a licence may be",
            line.len(),
            toru_plugin_api::license::MAX_LEN
        ));
    }
    if let Some(c) = line.chars().find(|c| c.is_control()) {
        return malformed(format!("it holds the control character {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use toru_plugin_api::license::Claims;
    use toru_plugin_api::license::vendor::SecretKey;

    use super::*;

    const HERE: &str = "c6f93da1-57db-4c4e-b6ac-ff35f41227c6";

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    fn line(key: &SecretKey, plugin: &str, expires: Option<&str>) -> String {
        key.sign(&Claims {
            plugin: plugin.into(),
            instance: HERE.into(),
            licensee: Some("ACME".into()),
            issued_at: "2026-11-01T00:00:00Z".parse().unwrap(),
            expires: expires.map(|d| d.parse().unwrap()),
            extra: serde_json::Map::new(),
        })
        .unwrap()
    }

    fn metadata(key: Option<&SecretKey>, required: bool) -> PluginMetadata {
        let m = PluginMetadata::new("reports", "Reports", "1.0.0", "/reports");
        match key {
            Some(key) => m.license(key.public().to_string(), required),
            None => m,
        }
    }

    #[test]
    fn each_state_and_whether_the_plugin_may_start() {
        let key = SecretKey::generate().unwrap();
        let required = metadata(Some(&key), true);
        let good = line(&key, "reports", Some("2027-06-30"));

        let valid = status(Some(&required), Some(&good), HERE, now());
        assert_eq!(valid.state, LicenseState::Valid);
        assert_eq!(valid.licensee.as_deref(), Some("ACME"));
        assert_eq!(valid.expires.unwrap().to_string(), "2027-06-30");
        assert_eq!(valid.refusal(), None);

        let missing = status(Some(&required), None, HERE, now());
        assert_eq!(missing.state, LicenseState::Missing);
        assert!(missing.refusal().unwrap().contains("none is installed"));

        let old = line(&key, "reports", Some("2026-11-30"));
        let expired = status(Some(&required), Some(&old), HERE, now());
        assert_eq!(expired.state, LicenseState::Expired);
        assert!(expired.refusal().unwrap().contains("2026-11-30"));

        let other = status(Some(&required), Some(&good), "another", now());
        assert_eq!(other.state, LicenseState::Invalid);
        assert!(other.error.unwrap().contains("not this one"));

        // Not required: the plugin starts whatever is installed.
        let optional = metadata(Some(&key), false);
        assert_eq!(
            status(Some(&optional), None, HERE, now()).state,
            LicenseState::NotRequired
        );
        let wrong = status(Some(&optional), Some(&old), HERE, now());
        assert_eq!(wrong.state, LicenseState::Expired);
        assert_eq!(wrong.refusal(), None);
    }

    #[test]
    fn without_a_vendor_key_a_licence_is_kept_but_never_valid() {
        let key = SecretKey::generate().unwrap();
        let plain = metadata(None, false);
        let signed = line(&key, "reports", None);
        let kept = status(Some(&plain), Some(&signed), HERE, now());
        assert_eq!(kept.state, LicenseState::NotRequired);
        assert_eq!(kept.licensee.as_deref(), Some("ACME"));
        assert!(kept.error.unwrap().contains("unverified"));
        // Any one line is handed over as it is: the first host's were not Toru's format.
        check_install(&plain, "3f2a-legacy-hmac-key", HERE, now()).unwrap();
        for bad in ["", "two\nlines", &"x".repeat(9000)] {
            assert!(matches!(
                check_install(&plain, bad, HERE, now()),
                Err(LicenseError::Malformed(_))
            ));
        }
    }

    #[test]
    fn installing_checks_everything() {
        let key = SecretKey::generate().unwrap();
        let meta = metadata(Some(&key), true);
        check_install(&meta, &line(&key, "reports", None), HERE, now()).unwrap();
        let other_key = SecretKey::generate().unwrap();
        assert_eq!(
            check_install(&meta, &line(&other_key, "reports", None), HERE, now()),
            Err(LicenseError::BadSignature)
        );
        assert!(matches!(
            check_install(&meta, &line(&key, "other", None), HERE, now()),
            Err(LicenseError::OtherPlugin { .. })
        ));
        assert!(matches!(
            check_install(
                &meta,
                &line(&key, "reports", Some("2026-01-01")),
                HERE,
                now()
            ),
            Err(LicenseError::Expired(_))
        ));
        let broken = metadata(None, true).license("ed25519:nope", true);
        assert!(matches!(
            check_install(&broken, &line(&key, "reports", None), HERE, now()),
            Err(LicenseError::BadKey(_))
        ));
        let unverifiable = status(Some(&broken), Some("x"), HERE, now());
        assert_eq!(unverifiable.state, LicenseState::Invalid);
        assert!(unverifiable.refusal().is_some());
    }
}
