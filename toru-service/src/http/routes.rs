//! Which endpoint a request is for, whether it may ask, and the handlers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http::header::SET_COOKIE;
use http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use super::access::{self, Caller};
use super::auth::AdminToken;
use super::name::is_name;
use super::respond::{self, Body};
use super::session::{self, LoginRefused, Sessions};
use super::{body, console, forward, kv, query};
use crate::api::{ApiError, Backend};

/// The most a login body may hold (a token is 64 characters).
const MAX_LOGIN_BYTES: usize = 4096;

/// What a connection arrived on: only TCP clients must present the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// Anyone who can reach the port.
    Tcp,
    /// Whoever the socket file's mode lets in.
    Unix,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Gateway<B> {
    backend: Arc<B>,
    token: Arc<AdminToken>,
    sessions: Sessions,
    max_body_bytes: usize,
}

/// A plugin operation without a body.
#[derive(Debug, Clone, Copy)]
enum Action {
    Enable,
    Disable,
    Restart,
}

/// A known path, with the plugin id or route taken from it.
#[derive(Debug, Clone, Copy)]
enum Endpoint<'a> {
    Health,
    Instance,
    Status,
    Plugins,
    Events,
    Metrics,
    Backup,
    Session,
    Regenerate,
    Reload,
    License(&'a str),
    Plugin(&'a str),
    Action(&'a str, Action),
    Logs(&'a str),
    Kv(&'a str),
    Bundle(&'a str),
    /// `rest` starts with `/`.
    Forward {
        route: &'a str,
        rest: &'a str,
    },
}

/// `Allow` of the read-only endpoints.
const GET: &str = "GET, HEAD";
/// `Allow` of the endpoints that change something.
const POST: &str = "POST";
/// `Allow` of the session: whether there is one, log in, log out.
const SESSION: &str = "GET, HEAD, POST, DELETE";
/// `Allow` of a plugin's licence: show, install, remove.
const LICENSE: &str = "GET, HEAD, PUT, DELETE";
/// The most a licence body may hold (a licence is at most 8 KiB).
const MAX_LICENSE_BYTES: usize = 16 * 1024;

impl<'a> Endpoint<'a> {
    /// The endpoint of `path`, matched on raw (not percent-decoded) segments;
    /// `None` for an unknown path or an id outside `[A-Za-z0-9._-]`.
    fn parse(path: &'a str) -> Option<Self> {
        if path == "/metrics" {
            return Some(Self::Metrics);
        }
        let api = path.strip_prefix("/api/")?;
        if let Some(target) = api.strip_prefix("plugins/route/") {
            let (route, rest) = match target.find('/') {
                Some(slash) => target.split_at(slash),
                None => (target, "/"),
            };
            return is_name(route).then_some(Self::Forward { route, rest });
        }
        let segments: Vec<&str> = api.split('/').collect();
        let endpoint = match segments.as_slice() {
            ["health"] => Self::Health,
            ["session"] => Self::Session,
            ["instance"] => Self::Instance,
            ["instance", "regenerate"] => Self::Regenerate,
            ["status"] => Self::Status,
            ["events"] => Self::Events,
            ["store", "backup"] => Self::Backup,
            ["reload"] => Self::Reload,
            ["plugins"] => Self::Plugins,
            ["plugins", id] => Self::Plugin(id),
            ["plugins", id, "enable"] => Self::Action(id, Action::Enable),
            ["plugins", id, "disable"] => Self::Action(id, Action::Disable),
            ["plugins", id, "restart"] => Self::Action(id, Action::Restart),
            ["plugins", id, "logs"] => Self::Logs(id),
            ["plugins", id, "kv"] => Self::Kv(id),
            ["plugins", id, "bundle.js"] => Self::Bundle(id),
            ["plugins", id, "license"] => Self::License(id),
            _ => return None,
        };
        endpoint.named().is_none_or(is_name).then_some(endpoint)
    }

    /// The methods it answers; `None` for any.
    fn allowed(self) -> Option<&'static str> {
        match self {
            Self::Action(..) | Self::Kv(_) | Self::Regenerate | Self::Reload => Some(POST),
            Self::Session => Some(SESSION),
            Self::License(_) => Some(LICENSE),
            Self::Forward { .. } => None,
            _ => Some(GET),
        }
    }

    /// The plugin id or route it names.
    fn named(self) -> Option<&'a str> {
        match self {
            Self::Plugin(id)
            | Self::Action(id, _)
            | Self::Logs(id)
            | Self::Kv(id)
            | Self::Bundle(id)
            | Self::License(id)
            | Self::Forward { route: id, .. } => Some(id),
            _ => None,
        }
    }

    /// The plugin route a forwarded request went to, for the metrics: a plugin's traffic
    /// is what its clients sent it, not what the administrator asked torud about it.
    fn subject(self) -> Option<&'a str> {
        match self {
            Self::Forward { route, .. } => Some(route),
            _ => None,
        }
    }
}

impl<B: Backend> Gateway<B> {
    /// The gateway over `backend`.
    pub(crate) fn new(
        backend: Arc<B>,
        token: Arc<AdminToken>,
        sessions: Sessions,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            backend,
            token,
            sessions,
            max_body_bytes,
        }
    }

    /// Answers one request and reports it to [`Backend::observe`].
    pub(crate) async fn handle(
        self: Arc<Self>,
        transport: Transport,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, Infallible> {
        let started = Instant::now();
        let method = request.method().clone();
        // Shares the request's bytes (no copy): routing borrows the path from it.
        let uri = request.uri().clone();
        let (response, subject) = self.answer(transport, uri.path(), request).await;
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        // The path only: a query string may carry what a plugin considers secret.
        tracing::debug!(%method, path = uri.path(), status, ?elapsed, ?transport, "answered");
        self.backend.observe(subject, status, elapsed);
        Ok(response)
    }

    /// The response, and the plugin it was about when the backend knew it
    /// (unknown names stay out of the metrics, so clients cannot mint labels).
    async fn answer<'a>(
        &self,
        transport: Transport,
        path: &'a str,
        request: Request<Incoming>,
    ) -> (Response<Body>, Option<&'a str>) {
        if console::is_console(path) {
            let response = if matches!(*request.method(), Method::GET | Method::HEAD) {
                console::answer(path, request.headers()).unwrap_or_else(|| {
                    respond::error(&ApiError::NotFound(format!("no such path: {path}")))
                })
            } else {
                respond::error(&ApiError::MethodNotAllowed("GET, HEAD"))
            };
            return (response, None);
        }
        // Credentials come before routing: without them, a client learns
        // nothing, not even which paths exist.
        let caller = access::caller(transport, request.headers(), &self.token, &self.sessions);
        if let Err(err) =
            access::check(transport, caller, request.method(), path, request.headers())
        {
            return (respond::error(&err), None);
        }
        let Some(endpoint) = Endpoint::parse(path) else {
            let err = ApiError::NotFound(format!("no such path: {path}"));
            return (respond::error(&err), None);
        };
        if let Some(allow) = endpoint.allowed() {
            let method = request.method();
            let fits = allow.split(", ").any(|m| m == method.as_str());
            if !fits {
                return (respond::error(&ApiError::MethodNotAllowed(allow)), None);
            }
        }
        let subject = endpoint.subject();
        match self.dispatch(endpoint, request, caller).await {
            Ok(response) => (response, subject),
            Err(err @ ApiError::NotFound(_)) => (respond::error(&err), None),
            Err(err) => (respond::error(&err), subject),
        }
    }

    async fn dispatch(
        &self,
        endpoint: Endpoint<'_>,
        request: Request<Incoming>,
        caller: Caller,
    ) -> Result<Response<Body>, ApiError> {
        match endpoint {
            Endpoint::Forward { route, rest } => self.forward(route, rest, request).await,
            // The administrator's calls, boxed: a future is as large as its largest
            // state, and the session, backup or reload ones would make every forwarded
            // request's future (moved at each level it is awaited through) kilobytes
            // larger.
            endpoint => Box::pin(self.administer(endpoint, request, caller)).await,
        }
    }

    /// A client's request to a plugin's route, and the plugin's answer.
    async fn forward(
        &self,
        route: &str,
        rest: &str,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, ApiError> {
        let (parts, body) = request.into_parts();
        let body = body::read(body, &parts.headers, self.max_body_bytes).await?;
        let request = forward::plugin_request(parts, rest, body);
        forward::client_response(self.backend.forward(route, request).await?)
    }

    /// Every endpoint (a forwarded request is taken by [`Gateway::dispatch`] first).
    async fn administer(
        &self,
        endpoint: Endpoint<'_>,
        request: Request<Incoming>,
        caller: Caller,
    ) -> Result<Response<Body>, ApiError> {
        let backend = &*self.backend;
        Ok(match endpoint {
            Endpoint::Health => respond::ok(&serde_json::json!({ "status": "ok" })),
            Endpoint::Session => self.session(request, caller).await?,
            Endpoint::Instance => respond::ok(&backend.instance()),
            Endpoint::Regenerate => {
                let (parts, body) = request.into_parts();
                let body = body::read(body, &parts.headers, MAX_LOGIN_BYTES).await?;
                let confirmed = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("confirm").and_then(serde_json::Value::as_bool))
                    == Some(true);
                if !confirmed {
                    return Err(ApiError::BadRequest(
                        "a new instance id ends every licence of this installation: send \
                         {\"confirm\": true} to make one"
                            .into(),
                    ));
                }
                respond::ok(&backend.regenerate_instance().await?)
            }
            Endpoint::License(id) => match *request.method() {
                Method::PUT => {
                    let (parts, body) = request.into_parts();
                    let body = body::read(body, &parts.headers, MAX_LICENSE_BYTES).await?;
                    let line = std::str::from_utf8(&body).map_err(|_| {
                        ApiError::BadRequest("a licence is one line of text".into())
                    })?;
                    respond::ok(&backend.install_license(id, line).await?)
                }
                Method::DELETE => respond::ok(&backend.remove_license(id).await?),
                _ => respond::ok(&backend.license(id)?),
            },
            Endpoint::Status => respond::ok(&backend.status()),
            Endpoint::Plugins => respond::ok(&backend.plugins()),
            Endpoint::Plugin(id) => respond::ok(&backend.plugin(id)?),
            Endpoint::Action(id, action) => {
                match action {
                    Action::Enable => backend.enable(id).await?,
                    Action::Disable => backend.disable(id).await?,
                    Action::Restart => backend.restart(id).await?,
                }
                respond::ok(&serde_json::json!({ "success": true }))
            }
            Endpoint::Logs(id) => {
                let query = query::logs(request.uri().query())?;
                respond::ok(&backend.logs(id, &query)?)
            }
            Endpoint::Events => {
                let (plugin, limit) = query::events(request.uri().query())?;
                let events = backend.events(plugin.as_deref(), limit).await?;
                respond::ok(&serde_json::json!({ "events": events }))
            }
            Endpoint::Kv(id) => {
                let (parts, body) = request.into_parts();
                let body = body::read(body, &parts.headers, self.max_body_bytes).await?;
                respond::ok(&backend.kv(id, kv::parse(&body)?).await?)
            }
            Endpoint::Bundle(id) => forward::bundle_response(backend.bundle(id).await?)?,
            Endpoint::Forward { route, rest } => self.forward(route, rest, request).await?,
            Endpoint::Metrics => respond::metrics(backend.metrics()),
            Endpoint::Reload => respond::ok(&backend.reload().await?),
            Endpoint::Backup => {
                let backup = backend.backup().await?;
                let date = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
                let name = format!("toru-{}-{date}.redb", backup.counts.instance_id);
                respond::file(backup.file, &name)
            }
        })
    }
}

impl<B: Backend> Gateway<B> {
    /// `GET /api/session`: how this request is authenticated; `POST`: log in with
    /// `{"token": ...}`; `DELETE`: log out.
    async fn session(
        &self,
        request: Request<Incoming>,
        caller: Caller,
    ) -> Result<Response<Body>, ApiError> {
        let policy = self.sessions.policy();
        let state = |caller: Caller| {
            serde_json::json!({
                "authenticated": caller != Caller::Nobody,
                "by": caller.as_str(),
                "idle_timeout_seconds": policy.idle_timeout.as_secs(),
                "lifetime_seconds": policy.lifetime.as_secs(),
            })
        };
        match *request.method() {
            Method::POST => {
                let (parts, body) = request.into_parts();
                let body = body::read(body, &parts.headers, MAX_LOGIN_BYTES).await?;
                let presented = login_token(&body)?;
                let cookie = self
                    .sessions
                    .login(self.token.matches(&presented))
                    .map_err(|refused| match refused {
                        LoginRefused::WrongToken => ApiError::WrongToken,
                        LoginRefused::Throttled(wait) => ApiError::TooManyRequests(wait),
                    })?;
                tracing::info!("browser session opened");
                let mut response = respond::ok(&state(Caller::Session));
                set_cookie(&mut response, Some(&cookie), policy);
                Ok(response)
            }
            Method::DELETE => {
                self.sessions.logout(request.headers());
                let mut response = respond::ok(&state(Caller::Nobody));
                set_cookie(&mut response, None, policy);
                Ok(response)
            }
            _ => Ok(respond::ok(&state(caller))),
        }
    }
}

/// The token of a login body `{"token": "..."}`.
fn login_token(body: &[u8]) -> Result<String, ApiError> {
    let bad = |message: &str| ApiError::BadRequest(message.to_owned());
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| bad("a login is a JSON object: {\"token\": \"<the admin token>\"}"))?;
    match value.get("token") {
        Some(serde_json::Value::String(token)) if !token.trim().is_empty() => Ok(token.clone()),
        Some(serde_json::Value::String(_)) => Err(bad("the token is empty")),
        _ => Err(bad(
            "a login is a JSON object: {\"token\": \"<the admin token>\"}",
        )),
    }
}

fn set_cookie(response: &mut Response<Body>, value: Option<&str>, policy: session::SessionPolicy) {
    if let Ok(cookie) = HeaderValue::from_str(&session::set_cookie(value, policy)) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_endpoints() {
        assert!(matches!(
            Endpoint::parse("/api/health"),
            Some(Endpoint::Health)
        ));
        assert!(matches!(
            Endpoint::parse("/metrics"),
            Some(Endpoint::Metrics)
        ));
        assert!(matches!(
            Endpoint::parse("/api/plugins/a.b_c-1"),
            Some(Endpoint::Plugin("a.b_c-1"))
        ));
        assert!(matches!(
            Endpoint::parse("/api/plugins/route/hello"),
            Some(Endpoint::Forward {
                route: "hello",
                rest: "/"
            })
        ));
        assert!(matches!(
            Endpoint::parse("/api/plugins/route/hello/a/%2F/b"),
            Some(Endpoint::Forward {
                route: "hello",
                rest: "/a/%2F/b"
            })
        ));
        for unknown in [
            "/",
            "/api",
            "/api/",
            "/api/health/",
            "/api/plugins/",
            "/api/plugins/a%20b",
            "/api/plugins/../kv",
            "/api/plugins/x/y",
            "/api/plugins/route/",
            "/api/plugins/route//x",
            "/api/plugins/route/a%2Fb/x",
            "/metrics/",
        ] {
            assert!(Endpoint::parse(unknown).is_none(), "{unknown}");
        }
    }

    #[test]
    fn token_needed_everywhere_but_health() {
        use super::access::needs_auth as needs_token;
        assert!(!needs_token("/api/health"));
        assert!(!needs_token("/"));
        assert!(needs_token("/api/health/"));
        assert!(needs_token("/api/nope"));
        assert!(needs_token("/metrics"));
    }
}
