//! Who is asking, and whether they may.
//!
//! Over the admin Unix socket the file's mode is the access control. Over
//! TCP, every `/api/*` path but `/api/health` and `/api/session`, and
//! `/metrics`, needs the admin token (`Authorization: Bearer`) or a browser
//! session's cookie. A request that changes something and is authenticated
//! by the cookie alone must show that it comes from the console's own origin
//! (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to this host), or it
//! is refused: the cookie is sent by the browser whoever made the page.

use http::header::{AUTHORIZATION, HOST, ORIGIN};
use http::{HeaderMap, Method};

use super::auth::AdminToken;
use super::routes::Transport;
use super::session::Sessions;
use crate::api::ApiError;

/// How a request is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Caller {
    /// Over the admin Unix socket.
    Socket,
    /// With the admin token.
    Token,
    /// With a browser session's cookie.
    Session,
    /// Not at all.
    Nobody,
}

impl Caller {
    /// How the API says it.
    pub(crate) fn as_str(self) -> Option<&'static str> {
        match self {
            Self::Socket => Some("socket"),
            Self::Token => Some("token"),
            Self::Session => Some("session"),
            Self::Nobody => None,
        }
    }
}

/// Who sent `headers` over `transport`.
pub(crate) fn caller(
    transport: Transport,
    headers: &HeaderMap,
    token: &AdminToken,
    sessions: &Sessions,
) -> Caller {
    if transport == Transport::Unix {
        Caller::Socket
    } else if token.verify(headers.get(AUTHORIZATION)) {
        Caller::Token
    } else if sessions.check(headers) {
        Caller::Session
    } else {
        Caller::Nobody
    }
}

/// Whether a TCP client must be authenticated for `path`.
pub(crate) fn needs_auth(path: &str) -> bool {
    path == "/metrics"
        || (path.starts_with("/api/") && path != "/api/health" && path != "/api/session")
}

/// Refuses what `caller` may not do: 401 without credentials where they are
/// needed, 403 for a cookie-borne change from another origin.
pub(crate) fn check(
    transport: Transport,
    caller: Caller,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    if transport == Transport::Tcp && caller == Caller::Nobody && needs_auth(path) {
        return Err(ApiError::Unauthorized);
    }
    let changes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if caller == Caller::Session && changes && !same_origin(headers) {
        return Err(ApiError::Forbidden(
            "a request that changes something, made with the session cookie, must come from the \
             console's own page (same origin)"
                .into(),
        ));
    }
    Ok(())
}

/// `Sec-Fetch-Site: same-origin`, or `Origin` naming this very host over http.
fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("sec-fetch-site") == Some("same-origin") {
        return true;
    }
    match (
        headers.get(ORIGIN).and_then(|v| v.to_str().ok()),
        header(HOST.as_str()),
    ) {
        (Some(origin), Some(host)) => origin.strip_prefix("http://") == Some(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn what_needs_credentials_over_tcp() {
        assert!(!needs_auth("/api/health"));
        assert!(!needs_auth("/api/session"));
        assert!(!needs_auth("/"));
        assert!(!needs_auth("/ui/js/main.js"));
        assert!(needs_auth("/api/plugins"));
        assert!(needs_auth("/api/session/x"));
        assert!(needs_auth("/metrics"));
        let none = HeaderMap::new();
        assert_eq!(
            check(
                Transport::Tcp,
                Caller::Nobody,
                &Method::GET,
                "/api/plugins",
                &none
            ),
            Err(ApiError::Unauthorized)
        );
        assert!(
            check(
                Transport::Unix,
                Caller::Socket,
                &Method::POST,
                "/api/plugins/x/enable",
                &none
            )
            .is_ok()
        );
        assert!(
            check(
                Transport::Tcp,
                Caller::Token,
                &Method::POST,
                "/api/plugins/x/enable",
                &none
            )
            .is_ok()
        );
    }

    #[test]
    fn a_cookie_borne_change_must_come_from_this_origin() {
        let post = |pairs: &[(&'static str, &'static str)]| {
            check(
                Transport::Tcp,
                Caller::Session,
                &Method::POST,
                "/api/plugins/x/enable",
                &headers(pairs),
            )
        };
        assert!(post(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(
            post(&[
                ("origin", "http://127.0.0.1:7070"),
                ("host", "127.0.0.1:7070")
            ])
            .is_ok()
        );
        for refused in [
            &[][..],
            &[
                ("origin", "http://evil.example"),
                ("host", "127.0.0.1:7070"),
            ][..],
            &[("origin", "null"), ("host", "127.0.0.1:7070")][..],
            &[("sec-fetch-site", "cross-site")][..],
            &[("sec-fetch-site", "same-site"), ("host", "127.0.0.1:7070")][..],
            &[
                ("origin", "https://127.0.0.1:7070"),
                ("host", "127.0.0.1:7070"),
            ][..],
        ] {
            assert!(
                matches!(post(refused), Err(ApiError::Forbidden(_))),
                "{refused:?}"
            );
        }
        // Reading needs no proof: SameSite=Strict keeps the cookie from other sites' pages.
        assert!(
            check(
                Transport::Tcp,
                Caller::Session,
                &Method::GET,
                "/api/plugins",
                &HeaderMap::new()
            )
            .is_ok()
        );
    }
}
