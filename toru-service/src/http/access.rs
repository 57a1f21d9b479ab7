//! Who is asking, and whether they may.
//!
//! Over the admin Unix socket the file's mode is the access control. Over
//! TCP, every `/api/*` path but `/api/health` and `/api/session`, and
//! `/metrics`, needs the admin token (`Authorization: Bearer`) or a browser
//! session's cookie. A request authenticated by the cookie alone must show
//! that it comes from the console's own origin, or it is refused: the browser
//! sends the cookie whoever made the page, also a page on another port of
//! this host, which is the same *site* for `SameSite=Strict`.

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
    if caller == Caller::Session && !allowed_with_cookie(headers, changes) {
        return Err(ApiError::Forbidden(
            "a request made with the session cookie must come from the console's own page \
             (same origin)"
                .into(),
        ));
    }
    Ok(())
}

/// Whether a request carrying only the session cookie may go on. A browser says where a
/// request comes from in `Sec-Fetch-Site`: `same-origin` always may, `none` (the user typed
/// the address) may read, anything else (another site, or another port of this host: the
/// same *site*) may not. Without that header (an older browser, or a program with a cookie
/// jar) a change needs an `Origin` naming this very host.
fn allowed_with_cookie(headers: &HeaderMap, changes: bool) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match header("sec-fetch-site") {
        Some("same-origin") => true,
        Some("none") => !changes,
        Some(_) => false,
        None if !changes => true,
        None => match (header(ORIGIN.as_str()), header(HOST.as_str())) {
            (Some(origin), Some(host)) => origin.strip_prefix("http://") == Some(host),
            _ => false,
        },
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
        // Reading: from this origin, a typed address, or a program without the header.
        let get = |pairs: &[(&'static str, &'static str)]| {
            check(
                Transport::Tcp,
                Caller::Session,
                &Method::GET,
                "/api/plugins/route/x/y",
                &headers(pairs),
            )
        };
        assert!(get(&[]).is_ok());
        assert!(get(&[("sec-fetch-site", "same-origin")]).is_ok());
        assert!(get(&[("sec-fetch-site", "none")]).is_ok());
        // Not from a page elsewhere, not even on another port of this host.
        for site in ["same-site", "cross-site"] {
            assert!(
                matches!(
                    get(&[("sec-fetch-site", site)]),
                    Err(ApiError::Forbidden(_))
                ),
                "{site}"
            );
        }
        assert!(matches!(
            post(&[("sec-fetch-site", "none")]),
            Err(ApiError::Forbidden(_))
        ));
    }
}
