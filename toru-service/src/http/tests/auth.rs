use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Method, Request};
use http_body_util::Full;

use super::support::{TOKEN, TestServer, options, send, send_unix};
use crate::http::AdminToken;

fn without_token(
    server: &TestServer,
    path: &str,
    authorization: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut request = Request::get(server.url(path));
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn tcp_needs_the_token() {
    let server = TestServer::start(options()).await;
    for path in [
        "/api/plugins",
        "/api/instance",
        "/metrics",
        "/api/nothing",
        "/api/health/",
    ] {
        for authorization in [
            None,
            Some("Bearer wrong"),
            Some(TOKEN),
            Some("Basic czNjcmV0LXRva2Vu"),
            Some("Bearer "),
        ] {
            let answer = send(without_token(&server, path, authorization)).await;
            assert_eq!(
                answer.error(401),
                "missing or invalid bearer token",
                "{path} {authorization:?}"
            );
            assert_eq!(answer.header("www-authenticate"), Some("Bearer"));
        }
    }
    // The scheme is case-insensitive; the token is not.
    let answer = send(without_token(
        &server,
        "/api/plugins",
        Some(&format!("bearer {TOKEN}")),
    ))
    .await;
    assert_eq!(answer.status(), 200);
    let upper = TOKEN.to_uppercase();
    let answer = send(without_token(
        &server,
        "/api/plugins",
        Some(&format!("Bearer {upper}")),
    ))
    .await;
    assert_eq!(answer.status(), 401);
    // Rejected requests reach no handler.
    assert!(server.backend.forwarded.lock().unwrap().is_empty());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_needs_no_token() {
    let server = TestServer::start(options()).await;
    let answer = send(without_token(&server, "/api/health", None)).await;
    assert_eq!(answer.status(), 200);
    // Unknown paths outside /api say 404 to anyone.
    assert_eq!(
        send(without_token(&server, "/favicon.ico", None))
            .await
            .status(),
        404
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unix_socket_needs_no_token() {
    let server = TestServer::start(options()).await;
    let plugins = send_unix(&server.socket, Method::GET, "/api/plugins").await;
    assert_eq!(plugins.status(), 200);
    assert_eq!(plugins.json()[0]["id"], "hello");
    assert_eq!(
        send_unix(&server.socket, Method::GET, "/metrics")
            .await
            .status(),
        200
    );
    assert_eq!(
        send_unix(&server.socket, Method::POST, "/api/plugins/hello/restart")
            .await
            .status(),
        200
    );
    server.stop().await.unwrap();
}

#[test]
fn token_file_is_created_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/nested/admin.token");
    let created = AdminToken::load_or_create(&path).unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.len(), 65, "{text:?}");
    assert!(text.ends_with('\n'));
    assert!(text.trim_end().bytes().all(|b| b.is_ascii_hexdigit()));
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);

    let header = HeaderValue::from_str(&format!("Bearer {}", text.trim_end())).unwrap();
    assert!(created.verify(Some(&header)));
    let again = AdminToken::load_or_create(&path).unwrap();
    assert!(again.verify(Some(&header)));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "never rewritten"
    );

    let other = AdminToken::load_or_create(&dir.path().join("other.token")).unwrap();
    assert!(!other.verify(Some(&header)), "every token is new");
}

#[test]
fn token_file_written_by_hand_is_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin.token");
    std::fs::write(&path, "  hand-made \n\n").unwrap();
    let token = AdminToken::load_or_create(&path).unwrap();
    assert!(token.verify(Some(&HeaderValue::from_static("Bearer hand-made"))));
}

#[test]
fn empty_or_unreadable_token_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, " \n").unwrap();
    let err = AdminToken::load_or_create(&empty).unwrap_err();
    assert!(err.to_string().contains(&*empty.to_string_lossy()), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");

    // A directory where the file should be cannot be read.
    let err = AdminToken::load_or_create(dir.path()).unwrap_err();
    assert!(
        err.to_string().contains(&*dir.path().to_string_lossy()),
        "{err}"
    );
}

#[test]
fn an_empty_secret_accepts_nobody() {
    let token = AdminToken::from_secret("  ");
    assert!(!token.verify(Some(&HeaderValue::from_static("Bearer "))));
    assert!(!token.verify(Some(&HeaderValue::from_static("Bearer"))));
    assert!(!token.verify(None));
    let token = AdminToken::from_secret("abc");
    assert!(!token.verify(None));
    assert!(!token.verify(Some(&HeaderValue::from_static("Bearer abcd"))));
    assert!(!token.verify(Some(&HeaderValue::from_static("Bearerabc"))));
    assert!(token.verify(Some(&HeaderValue::from_static("Bearer abc"))));
    assert_eq!(format!("{token:?}"), "AdminToken(<redacted>)");
}

#[test]
fn a_token_differing_in_any_byte_or_in_length_is_refused() {
    // Lengths around the eight-byte steps of the comparison, and the real one (64).
    for len in (1..=25).chain([64]) {
        let secret: String = (0..len)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let token = AdminToken::from_secret(&secret);
        let bearer =
            |presented: &str| HeaderValue::from_str(&format!("Bearer {presented}")).unwrap();
        assert!(token.verify(Some(&bearer(&secret))), "{len}");
        assert!(token.matches(&secret), "{len}");
        for at in 0..len as usize {
            let mut other = secret.clone().into_bytes();
            other[at] = b'Z';
            let other = String::from_utf8(other).unwrap();
            assert!(!token.verify(Some(&bearer(&other))), "{len}, byte {at}");
            assert!(!token.matches(&other), "{len}, byte {at}");
        }
        assert!(
            !token.verify(Some(&bearer(&secret[..len as usize - 1]))),
            "{len}"
        );
        assert!(!token.verify(Some(&bearer(&format!("{secret}a")))), "{len}");
        assert!(!token.matches(&format!("{secret}a")), "{len}");
    }
}
