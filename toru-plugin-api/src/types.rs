//! What a plugin's handlers see: requests, responses, and the context `init` gets.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{PluginError, PluginResult};
use crate::kv::PluginKvStore;
use crate::license::{License, LicenseError};
use crate::protocol::v2::Limits;

pub use crate::protocol::v1::KvOp;

/// An HTTP request forwarded by the host.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path below the plugin's route, always starting with `/`, query kept:
    /// `GET /api/plugins/route/hello/kv/a?x=1` arrives as `/kv/a?x=1`.
    pub path: String,
    /// Request headers; names are case-insensitive and may repeat.
    pub headers: HeaderMap,
    /// The body, byte for byte (empty when there is none).
    pub body: Bytes,
}

impl HttpRequest {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            ..Self::default()
        }
    }

    /// The path without its query string.
    pub fn path_only(&self) -> &str {
        self.path.split_once('?').map_or(&self.path, |(p, _)| p)
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.path.split_once('?').map(|(_, q)| q)
    }

    /// The first query parameter named `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The first value of header `name`, if it is valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as UTF-8 text; a 400 error when it is not.
    pub fn body_text(&self) -> PluginResult<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|_| PluginError::http(400, "request body is not valid UTF-8"))
    }

    /// The body parsed as JSON; a 400 error naming the problem when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> PluginResult<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| PluginError::http(400, format!("invalid JSON body: {e}")))
    }
}

/// A plugin's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    /// HTTP status, 100 to 999.
    pub status: u16,
    /// Response headers; a name may repeat (`set-cookie`).
    pub headers: HeaderMap,
    /// The body, byte for byte.
    pub body: Bytes,
}

impl Default for HttpResponse {
    fn default() -> Self {
        Self::new(200)
    }
}

impl HttpResponse {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// 200 with `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::bytes("application/json", body),
            Err(e) => Self::error(500, format!("response could not be encoded as JSON: {e}")),
        }
    }

    /// 200 with a UTF-8 text body.
    pub fn text(body: impl Into<String>) -> Self {
        Self::bytes("text/plain; charset=utf-8", body.into())
    }

    /// 200 with `body` as `content_type`.
    pub fn bytes(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        let mut response = Self::new(200);
        response
            .headers
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response.body = body.into();
        response
    }

    /// `status` with `{"error": message}`, the shape the host uses for errors.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self::json(&serde_json::json!({ "error": message.into() })).with_status(status)
    }

    /// 404 `{"error": "not found"}`.
    pub fn not_found() -> Self {
        Self::error(404, "not found")
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a header; a value that is not valid in HTTP is left out and logged.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(value) => {
                self.headers.append(name, value);
            }
            Err(_) => tracing::warn!(header = %name, "invalid header value left out"),
        }
        self
    }
}

/// The plugin's own settings, from the host's configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginConfig {
    values: serde_json::Map<String, serde_json::Value>,
}

impl PluginConfig {
    /// Settings from a JSON object.
    pub fn new(values: serde_json::Map<String, serde_json::Value>) -> Self {
        Self { values }
    }

    /// The setting `key` as `T`; `None` when unset, an error when of the wrong type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> PluginResult<Option<T>> {
        self.values
            .get(key)
            .map(|v| T::deserialize(v))
            .transpose()
            .map_err(|e| PluginError::other(format!("config key {key:?}: {e}")))
    }

    /// All settings as one struct of the plugin's own.
    pub fn deserialize<T: DeserializeOwned>(&self) -> PluginResult<T> {
        T::deserialize(serde_json::Value::Object(self.values.clone()))
            .map_err(|e| PluginError::other(format!("plugin config: {e}")))
    }

    /// The raw settings.
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.values
    }
}

/// What [`ToruPlugin::init`](crate::ToruPlugin::init) receives.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PluginContext {
    /// The host's instance id (a UUID), stable across restarts and upgrades.
    pub instance_id: String,
    /// The id the host knows this plugin by.
    pub plugin_id: String,
    /// The plugin's settings.
    pub config: PluginConfig,
    /// The plugin's own key-value storage, kept by the host.
    pub kv: PluginKvStore,
    /// The host's limits (frame, key and value sizes).
    pub limits: Limits,
    /// The licence line the host handed over, and what checking it against the
    /// metadata's key found (`None`: no key declared, or no licence).
    pub(crate) license: Option<String>,
    pub(crate) license_check: Option<Result<License, LicenseError>>,
}

impl PluginContext {
    /// The licence, when the metadata declares a vendor key and the installed licence is
    /// valid for this plugin and installation.
    pub fn license(&self) -> Option<&License> {
        self.license_check.as_ref().and_then(|c| c.as_ref().ok())
    }

    /// Why the installed licence is not valid, when one is installed and is not.
    pub fn license_error(&self) -> Option<&LicenseError> {
        self.license_check.as_ref().and_then(|c| c.as_ref().err())
    }

    /// The licence line as installed, checked or not (a plugin that declares no key
    /// may check it itself).
    pub fn license_text(&self) -> Option<&str> {
        self.license.as_deref()
    }
}
