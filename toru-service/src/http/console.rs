//! The web console's files, embedded in torud at build time (`ui/` in the
//! crate): `/` redirects to `/ui/`, `/ui/` is the page, the rest its assets.
//! Every answer carries the console's security headers; assets are
//! revalidated with an `ETag`, so a new torud's files are seen at once.

use std::sync::OnceLock;

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, HeaderName, IF_NONE_MATCH,
    LOCATION, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::respond::{Body, full};

/// Scripts only from this origin (the console's and the plugins' bundles),
/// never inline, `data:` or `blob:`; styles may be injected (bundles built with
/// vite add `<style>` elements); nothing may frame the console.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// Under `/ui/`.
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    asset!("/ui/", "index.html", "text/html; charset=utf-8"),
    asset!("/ui/console.css", "console.css", "text/css; charset=utf-8"),
    asset!("/ui/icon.svg", "icon.svg", "image/svg+xml"),
    asset!("/ui/js/main.js", "js/main.js", JS),
    asset!("/ui/js/api.js", "js/api.js", JS),
    asset!("/ui/js/dom.js", "js/dom.js", JS),
    asset!("/ui/js/toast.js", "js/toast.js", JS),
    asset!("/ui/js/login.js", "js/login.js", JS),
    asset!("/ui/js/sidebar.js", "js/sidebar.js", JS),
    asset!("/ui/js/overview.js", "js/overview.js", JS),
    asset!("/ui/js/plugins.js", "js/plugins.js", JS),
    asset!("/ui/js/plugin.js", "js/plugin.js", JS),
    asset!("/ui/js/view.js", "js/view.js", JS),
];

/// Whether `path` is the console's (the root, or below `/ui/`).
pub(crate) fn is_console(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// The answer for a console path: the redirect, a file (or 304), or `None` for no such file.
pub(crate) fn answer(path: &str, request: &HeaderMap) -> Option<Response<Body>> {
    if path == "/" || path == "/ui" {
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::FOUND;
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static("/ui/"));
        secure(response.headers_mut());
        return Some(response);
    }
    let index = ASSETS.iter().position(|a| a.path == path)?;
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim() == etag.as_str() || t.trim() == "*")
        });
    let mut response = if fresh {
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        Response::new(full(asset.bytes))
    };
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(ETAG, etag);
    }
    // Kept, but asked about each time: a new torud's console is seen at once.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(headers);
    Some(response)
}

/// The headers every console answer carries.
pub(crate) fn secure(headers: &mut HeaderMap) {
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

/// A strong `ETag` per asset: its CRC-32 and length, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{:08x}-{:x}\"", crc32fast::hash(a.bytes), a.bytes.len()))
            .collect()
    })
}

/// Every asset as (path, bytes), for the benchmark's static server.
pub fn files() -> impl Iterator<Item = (&'static str, &'static str, &'static [u8])> {
    ASSETS.iter().map(|a| (a.path, a.content_type, a.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_redirects_and_files_carry_csp_and_etag() {
        let redirect = answer("/", &HeaderMap::new()).unwrap();
        assert_eq!(redirect.status(), StatusCode::FOUND);
        assert_eq!(redirect.headers()[LOCATION], "/ui/");

        let page = answer("/ui/", &HeaderMap::new()).unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(page.headers()[CONTENT_SECURITY_POLICY], CSP);
        let etag = page.headers()[ETAG].clone();

        let mut again = HeaderMap::new();
        again.insert(IF_NONE_MATCH, etag);
        assert_eq!(
            answer("/ui/", &again).unwrap().status(),
            StatusCode::NOT_MODIFIED
        );
        assert!(answer("/ui/nope.js", &HeaderMap::new()).is_none());
        assert!(answer("/ui/../Cargo.toml", &HeaderMap::new()).is_none());
    }

    #[test]
    fn scripts_come_from_this_origin_only() {
        let script = CSP
            .split(';')
            .find(|d| d.trim().starts_with("script-src"))
            .unwrap();
        assert_eq!(script.trim(), "script-src 'self'");
        assert!(!CSP.contains("unsafe-eval"));
        assert!(!CSP.contains("blob:") || !script.contains("blob:"));
    }

    #[test]
    fn every_file_is_served_with_its_type() {
        for (path, kind, bytes) in files() {
            assert!(!bytes.is_empty(), "{path}");
            let response = answer(path, &HeaderMap::new()).unwrap();
            assert_eq!(response.headers()[CONTENT_TYPE], kind, "{path}");
        }
    }
}
