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

    /// The path without its query string, percent-decoded: `/notes/my%20note` is
    /// `/notes/my note`. A 400 error when the decoded bytes are not UTF-8.
    pub fn decoded_path(&self) -> PluginResult<String> {
        percent_encoding::percent_decode_str(self.path_only())
            .decode_utf8()
            .map(std::borrow::Cow::into_owned)
            .map_err(|_| PluginError::http(400, "the request path is not valid UTF-8"))
    }

    /// What follows `prefix` in the path, percent-decoded: for `/notes/my%20note`,
    /// `path_after("/notes/")` is `Some("my note")`; `None` when the path does not
    /// start with `prefix` or does not decode to UTF-8. `prefix` is matched on the
    /// path as sent, before decoding, so `%2F` in a name never splits it.
    pub fn path_after(&self, prefix: &str) -> Option<String> {
        let rest = self.path_only().strip_prefix(prefix)?;
        percent_encoding::percent_decode_str(rest)
            .decode_utf8()
            .ok()
            .map(std::borrow::Cow::into_owned)
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

    /// 200 with `body` as `content_type` (`"text/csv"`, or a `String` made at run
    /// time); a content type that is not a valid header value is left out and logged.
    pub fn bytes(content_type: impl AsRef<str>, body: impl Into<Bytes>) -> Self {
        let mut response = Self::new(200).with_header(CONTENT_TYPE, content_type);
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

    /// Adds a header (a repeated name adds a value: `set-cookie`). The name is a
    /// [`HeaderName`] or text (`"x-request-id"`, a `String`); a name or value that is
    /// not valid in HTTP is left out and logged.
    pub fn with_header<N>(mut self, name: N, value: impl AsRef<str>) -> Self
    where
        N: TryInto<HeaderName>,
    {
        let Ok(name) = name.try_into() else {
            tracing::warn!("invalid header name left out");
            return self;
        };
        match HeaderValue::from_str(value.as_ref()) {
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

/// Where a plugin keeps the context `init` gave it, for its handlers:
///
/// ```
/// use toru_plugin_api::{ContextCell, HttpRequest, HttpResponse, PluginContext, PluginResult};
///
/// #[derive(Default)]
/// struct Notes {
///     ctx: ContextCell,
/// }
///
/// impl Notes {
///     async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
///         self.ctx.set(ctx)
///     }
///
///     async fn handle_http(&self, _req: HttpRequest) -> PluginResult<HttpResponse> {
///         let ctx = self.ctx.get()?; // a 500 "not initialized" before init, never a panic
///         Ok(HttpResponse::text(ctx.instance_id.clone()))
///     }
/// }
/// ```
#[derive(Debug, Default)]
pub struct ContextCell(std::sync::OnceLock<PluginContext>);

impl ContextCell {
    /// Keeps `ctx`; an error if a context is kept already (`init` runs once).
    pub fn set(&self, ctx: PluginContext) -> PluginResult<()> {
        self.0
            .set(ctx)
            .map_err(|_| PluginError::other("the plugin context was set twice"))
    }

    /// The context; an error (500 to the client) before `init` has run.
    pub fn get(&self) -> PluginResult<&PluginContext> {
        self.0
            .get()
            .ok_or_else(|| PluginError::other("not initialized"))
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
