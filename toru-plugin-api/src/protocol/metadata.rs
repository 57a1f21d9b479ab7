//! What a plugin says about itself when run with `--metadata`.

use serde::{Deserialize, Serialize};

use crate::error::{PluginError, PluginResult};

/// The longest plugin id accepted.
pub const MAX_ID_LEN: usize = 64;
/// The longest `name` or `author` accepted (characters), as the first host allowed.
pub const MAX_NAME_LEN: usize = 100;

/// A plugin's identity, printed as JSON by `PLUGIN --metadata`.
///
/// `protocol` absent means 1: the host then speaks the legacy protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginMetadata {
    /// ASCII letters, digits and `-`, 1 to 64 characters; unique per host.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Who wrote it.
    #[serde(default)]
    pub author: Option<String>,
    /// An emoji or icon name shown beside the name.
    #[serde(default)]
    pub icon: String,
    /// `/` and one path segment; requests below it are forwarded here.
    pub route: String,
    /// Protocol version the plugin speaks; absent = 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u32>,
    /// The licences the plugin accepts: its vendor's public key, and whether it
    /// serves without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<LicenseSpec>,
}

/// `"license": {"public_key": "ed25519:...", "required": true}` in the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSpec {
    /// The vendor's public key, as `toru-license keygen` prints it.
    pub public_key: String,
    /// Whether the plugin refuses to serve without a valid licence.
    #[serde(default)]
    pub required: bool,
}

impl PluginMetadata {
    /// Metadata for a protocol-2 plugin built on this SDK.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        route: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            author: None,
            icon: String::new(),
            route: route.into(),
            protocol: Some(super::PROTOCOL_VERSION),
            license: None,
        }
    }

    /// Accepts licences signed by the vendor key `public_key` (`ed25519:...`); with
    /// `required`, the plugin does not serve without a valid one.
    pub fn license(mut self, public_key: impl Into<String>, required: bool) -> Self {
        self.license = Some(LicenseSpec {
            public_key: public_key.into(),
            required,
        });
        self
    }

    /// Sets `author`.
    pub fn author(mut self, author: impl Into<String>) -> Self {
        self.author = Some(author.into());
        self
    }

    /// Sets `icon`.
    pub fn icon(mut self, icon: impl Into<String>) -> Self {
        self.icon = icon.into();
        self
    }

    /// The protocol version the host must speak: 1 when absent.
    pub fn protocol_version(&self) -> u32 {
        self.protocol.unwrap_or(1)
    }

    /// Checks every field; the error names each problem found.
    pub fn validate(&self) -> PluginResult<()> {
        let mut problems = Vec::new();
        if let Err(e) = validate_id(&self.id) {
            problems.push(e);
        }
        if let Err(e) = validate_route(&self.route) {
            problems.push(e);
        }
        if self.name.trim().is_empty() {
            problems.push("name is empty".to_owned());
        }
        if self.name.chars().count() > MAX_NAME_LEN {
            problems.push(format!("name is longer than {MAX_NAME_LEN} characters"));
        }
        if self.version.trim().is_empty() {
            problems.push("version is empty".to_owned());
        }
        if let Some(author) = &self.author
            && author.chars().count() > MAX_NAME_LEN
        {
            problems.push(format!("author is longer than {MAX_NAME_LEN} characters"));
        }
        match self.protocol {
            None | Some(1) | Some(2) => {}
            Some(p) => problems.push(format!("protocol {p} is not supported (1 or 2)")),
        }
        if let Some(spec) = &self.license
            && let Err(e) = spec.public_key.parse::<crate::license::PublicKey>()
        {
            problems.push(format!("license.public_key: {e}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PluginError::InvalidMetadata(problems.join("; ")))
        }
    }
}

/// Checks a plugin id: ASCII letters, digits and `-`, 1 to 64 characters.
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!(
            "id must be 1 to {MAX_ID_LEN} characters, got {}",
            id.len()
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "id {id:?} may only hold ASCII letters, digits and '-'"
        ));
    }
    // `/api/plugins/route/...` forwards to plugins: a plugin with this id
    // could never be managed through the API.
    if id == "route" {
        return Err("id \"route\" is reserved".to_owned());
    }
    Ok(())
}

/// Checks a route: `/` followed by one segment of letters, digits, `-`, `_`, `.`; not `..`.
pub fn validate_route(route: &str) -> Result<(), String> {
    let Some(segment) = route.strip_prefix('/') else {
        return Err(format!("route {route:?} must start with '/'"));
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if segment.is_empty() || segment.len() > 128 || !segment.bytes().all(allowed) {
        return Err(format!(
            "route {route:?} must be '/' and one segment (1 to 128 of letters, digits, '-', '_', '.')"
        ));
    }
    if segment == ".." || segment == "." {
        return Err(format!("route {route:?} may not be '.' or '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("hello-py").is_ok());
        assert!(validate_id(&"a".repeat(64)).is_ok());
        assert!(validate_id(&"a".repeat(65)).is_err());
        assert!(validate_id("").is_err());
        assert!(validate_id("a_b").is_err());
        assert!(validate_id("a/b").is_err());
        assert!(validate_id("é").is_err());
        assert!(validate_id("route").is_err());
    }

    #[test]
    fn routes() {
        for ok in ["/hello", "/a.b_c-d", "/x1"] {
            assert!(validate_route(ok).is_ok(), "{ok}");
        }
        for bad in ["hello", "/", "/a/b", "/..", "/.", "/a b", "/%2e", ""] {
            assert!(validate_route(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_lists_every_problem() {
        let mut m = PluginMetadata::new("bad id", "", "1", "nope");
        m.protocol = Some(9);
        let err = m.validate().unwrap_err().to_string();
        for needle in ["id", "route", "name", "protocol 9"] {
            assert!(err.contains(needle), "{err} lacks {needle}");
        }
    }

    #[test]
    fn absent_protocol_means_one() {
        let m: PluginMetadata = serde_json::from_str(
            r#"{"id":"a","name":"A","version":"1","author":null,"icon":"x","route":"/a"}"#,
        )
        .unwrap();
        assert_eq!(m.protocol_version(), 1);
        assert!(m.validate().is_ok());
    }
}
