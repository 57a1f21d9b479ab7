//! Browser sessions and the console's files, against the real gateway: login,
//! cookie authentication, the same-origin rule, throttling, forged cookies.

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use hyper::Request;

use super::support::*;

/// A request without the token, with `headers`.
fn bare(
    server: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder().method(method).uri(server.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// Logs in with the right token; the `name=value` of the session cookie.
async fn log_in(server: &TestServer) -> String {
    let body = format!(r#"{{"token": "{TOKEN}"}}"#);
    let answer = send(bare(server, Method::POST, "/api/session", &[], &body)).await;
    assert_eq!(answer.status(), 200, "{answer:?}");
    let cookie = answer.header("set-cookie").unwrap().to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert_eq!(answer.json()["by"], "session");
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_session_cookie_authenticates_like_the_token() {
    let server = TestServer::start(options()).await;
    let none = send(bare(&server, Method::GET, "/api/session", &[], "")).await;
    assert_eq!(none.json()["authenticated"], false);
    assert_eq!(
        send(bare(&server, Method::GET, "/api/plugins", &[], ""))
            .await
            .status(),
        401
    );
    let cookie = log_in(&server).await;
    let with = |path| bare(&server, Method::GET, path, &[("cookie", &cookie)], "");
    assert_eq!(send(with("/api/plugins")).await.status(), 200);
    assert_eq!(send(with("/metrics")).await.status(), 200);
    assert_eq!(send(with("/api/session")).await.json()["by"], "session");
    // Plugin routes too, for bundles' own fetch calls.
    let forwarded = send(with("/api/plugins/route/hello/x")).await;
    assert!(forwarded.status() < 300, "{forwarded:?}");

    // Logging out ends it.
    let out = send(bare(
        &server,
        Method::DELETE,
        "/api/session",
        &[("cookie", &cookie), ("sec-fetch-site", "same-origin")],
        "",
    ))
    .await;
    assert_eq!(out.status(), 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(send(with("/api/plugins")).await.status(), 401);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_cookie_borne_change_from_another_origin_is_refused() {
    let server = TestServer::start(options()).await;
    let cookie = log_in(&server).await;
    let host = server.addr.to_string();
    let origin = format!("http://{host}");
    let enable = |headers: &[(&str, &str)]| {
        let mut all = vec![("cookie", cookie.as_str())];
        all.extend_from_slice(headers);
        send(bare(
            &server,
            Method::POST,
            "/api/plugins/hello/enable",
            &all,
            "",
        ))
    };
    for refused in [
        vec![],
        vec![("origin", "http://evil.example")],
        vec![("origin", "null")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let answer = enable(&refused).await;
        assert_eq!(answer.status(), 403, "{refused:?}: {answer:?}");
        assert!(answer.error(403).contains("same origin"));
    }
    assert_eq!(enable(&[("origin", &origin)]).await.status(), 200);
    assert_eq!(
        enable(&[("sec-fetch-site", "same-origin")]).await.status(),
        200
    );
    // The token needs no such proof: a browser never adds it by itself.
    assert_eq!(
        server.post("/api/plugins/hello/enable", "").await.status(),
        200
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_logins_are_refused_and_throttled() {
    let server = TestServer::start(options()).await;
    let login = |body: &str| send(bare(&server, Method::POST, "/api/session", &[], body));
    for (body, status) in [
        ("not json", 400),
        (r#"{"token": ""}"#, 400),
        (r#"{"token": 5}"#, 400),
        (r#"{}"#, 400),
        (r#"["token"]"#, 400),
    ] {
        let answer = login(body).await;
        assert_eq!(answer.status(), status, "{body}");
        assert!(answer.header("set-cookie").is_none());
    }
    let huge = format!(r#"{{"token": "{}"}}"#, "x".repeat(10_000));
    assert_eq!(login(&huge).await.status(), 413);
    for _ in 0..5 {
        let answer = login(r#"{"token": "wrong"}"#).await;
        assert_eq!(answer.status(), 401);
        assert!(answer.header("set-cookie").is_none());
    }
    let throttled = login(r#"{"token": "wrong"}"#).await;
    assert_eq!(throttled.status(), 429);
    assert!(throttled.header("retry-after").is_some());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn forged_and_truncated_cookies_are_401_not_500() {
    let server = TestServer::start(options()).await;
    let cookie = log_in(&server).await;
    let value = cookie.split_once('=').unwrap().1;
    for forged in [
        "toru_session=".to_owned(),
        "toru_session=abc".to_owned(),
        format!("toru_session={}", &value[..value.len() - 2]),
        format!("toru_session={}ff", &value[..value.len() - 2]),
        format!("toru_session={}.{}", "0".repeat(32), "0".repeat(64)),
        "toru_session=%00%ff".to_owned(),
    ] {
        let answer = send(bare(
            &server,
            Method::GET,
            "/api/plugins",
            &[("cookie", &forged)],
            "",
        ))
        .await;
        assert_eq!(answer.status(), 401, "{forged}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_console_is_public_and_locked_down() {
    let server = TestServer::start(options()).await;
    let page = send(bare(&server, Method::GET, "/ui/", &[], "")).await;
    assert_eq!(page.status(), 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert!(
        String::from_utf8_lossy(&page.body)
            .contains("<script type=\"module\" src=\"/ui/js/main.js\">")
    );
    let etag = page.header("etag").unwrap().to_owned();
    let again = send(bare(
        &server,
        Method::GET,
        "/ui/",
        &[("if-none-match", &etag)],
        "",
    ))
    .await;
    assert_eq!(again.status(), 304);
    let script = send(bare(&server, Method::GET, "/ui/js/main.js", &[], "")).await;
    assert_eq!(
        script.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(
        send(bare(&server, Method::POST, "/ui/", &[], ""))
            .await
            .status(),
        405
    );
    server.stop().await.unwrap();
}
