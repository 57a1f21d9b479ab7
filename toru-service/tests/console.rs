//! The web console in a real headless Chromium against the real torud with
//! the example plugins: login, the plugin list and its buttons, hello's
//! view mounting its bundle and storing a value through the plugin, unmount,
//! a throwing and an oversized bundle, a name that is HTML, a cross-site POST.
//! Screenshots of each main page go to `target/console-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod browser;
mod support;

use std::io::{Read, Write};
use std::path::Path;

use browser::{Browser, available};
use serde_json::json;
use support::*;

/// `examples/python/hello_v1.py` as plugin `id` with no bundle of its own
/// (so torud serves `<dir>/<id>/bundle.js`, written here).
fn legacy_copy(setup: &Setup, id: &str, bundle: &[u8]) {
    let source = std::fs::read_to_string(python_plugin()).unwrap();
    let copy = source
        .replace("PLUGIN_ID = \"hello-py\"", &format!("PLUGIN_ID = \"{id}\""))
        .replace("\"route\": \"/hello-py\"", &format!("\"route\": \"/{id}\""))
        .replace(
            "if method == \"GET\" and path == \"/bundle.js\":",
            "if False:",
        );
    assert_ne!(copy, source);
    let path = setup.plugins.join(format!("{id}.py"));
    std::fs::write(&path, copy).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(setup.plugins.join(id)).unwrap();
    std::fs::write(setup.plugins.join(id).join("bundle.js"), bundle).unwrap();
}

/// A page of another origin (another port of the same host: the same *site*,
/// so the SameSite cookie goes along) whose script posts to torud.
fn attacker(target: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let page = format!(
            "<!doctype html><title>elsewhere</title><script>\
             fetch('{target}/api/plugins/hello/disable', {{method: 'POST', credentials: 'include'}})\
               .then(r => r.text()).then(t => document.title = 'answered: ' + t)\
               .catch(e => document.title = 'failed: ' + e.message);\
             </script>"
        );
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    port
}

async fn log_in(browser: &Browser, torud: &Torud) {
    browser.type_into("#token", &torud.token()).await;
    browser.click("#login button[type=submit]").await;
    browser
        .wait_until("the login form went", "!document.getElementById('login')")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sysadmin_s_session_in_the_console() {
    if !available() {
        return;
    }
    let setup = Setup::new();
    // A plugin whose name is HTML, one whose bundle throws in mount, one whose
    // bundle is 10 MB.
    script_plugin(
        &setup.plugins,
        "xss",
        r#"{"id":"xss","name":"<img src=x onerror=alert(1)>","version":"1.0","icon":"<b>i</b>","route":"/xss","protocol":2}"#,
        &format!("exec {}", hello_binary().display()),
    );
    legacy_copy(
        &setup,
        "thrower",
        br#"window.ToruPlugins = window.ToruPlugins || {};
window.ToruPlugins.thrower = { mount() { throw new Error("thrower's mount broke"); }, unmount() {} };"#,
    );
    legacy_copy(&setup, "bigbundle", &vec![b'/'; 10 * 1024 * 1024]);
    let torud = setup.start().await;
    let base = format!("http://127.0.0.1:{}", torud.port);
    let browser = Browser::start(1280, 900).await;

    // The root leads to the console, which asks for the token.
    browser.open(&format!("{base}/")).await;
    browser.wait_text("main h1", "Log in to Toru").await;
    browser.screenshot("login").await;
    browser.type_into("#token", "not the token").await;
    browser.click("#login button[type=submit]").await;
    browser
        .wait_text("#login [role=alert]", "not the admin token")
        .await;
    let cookie = browser.client.get_named_cookie("toru_session").await;
    assert!(cookie.is_err(), "a wrong token gave a session: {cookie:?}");
    log_in(&browser, &torud).await;
    browser.wait_text("main h1", "Overview").await;
    let session = browser
        .client
        .get_named_cookie("toru_session")
        .await
        .unwrap();
    assert_eq!(session.http_only(), Some(true));
    browser.wait_text("main", "Latest events").await;
    browser.screenshot("overview").await;

    // Every plugin with its state in words; the HTML name is text.
    browser.open(&format!("{base}/ui/#/plugins")).await;
    browser
        .wait_text("#plugins tr[data-plugin=hello] .plugin-state", "running")
        .await;
    browser
        .wait_text("#plugins tr[data-plugin=hello-py] .plugin-state", "running")
        .await;
    browser
        .wait_text(
            "#plugins tr[data-plugin=xss]",
            "<img src=x onerror=alert(1)>",
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('img[src=x]').length;")
            .await,
        json!(0),
        "the plugin's name became an element"
    );
    assert!(
        browser.client.get_alert_text().await.is_err(),
        "a script ran"
    );
    browser.screenshot("plugins").await;

    // Disable then enable hello from the page, without a reload.
    browser
        .click("#plugins tr[data-plugin=hello] button[data-action=disable]")
        .await;
    browser.wait_text(".toast.success", "Hello: disabled").await;
    browser
        .wait_text("#plugins tr[data-plugin=hello] .plugin-state", "disabled")
        .await;
    assert_eq!(torud.plugin("hello").await["state"], "disabled");
    browser
        .click("#plugins tr[data-plugin=hello] button[data-action=enable]")
        .await;
    browser
        .wait_text("#plugins tr[data-plugin=hello] .plugin-state", "running")
        .await;
    assert_eq!(torud.plugin("hello").await["state"], "running");

    // A plugin's page: metadata, its output followed, its keys.
    browser.open(&format!("{base}/ui/#/plugins/hello")).await;
    browser.wait_text("main dl", "/hello").await;
    browser.wait_text("#logs", "hello initialized").await;
    torud
        .get("/api/plugins/route/hello/log?level=warn&msg=followed%20while%20open")
        .await;
    browser.wait_text("#logs", "followed while open").await;
    browser.screenshot("plugin-page").await;

    // hello's view: the bundle mounts, a click stores a value through the plugin.
    browser.click("#plugin-links a[href='#/view/hello']").await;
    browser
        .wait_text("#hello-greeting", "Hello from Toru!")
        .await;
    let instance = torud.get("/api/instance").await.json()["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.wait_text("#hello-instance", &instance).await;
    browser.type_into("#hello-value", "green").await;
    browser.click("#hello-store").await;
    browser.wait_text("#hello-stored", "stored: green").await;
    let stored = torud.get("/api/plugins/route/hello/kv/console-note").await;
    assert_eq!(stored.text(), "green");
    browser.screenshot("hello-view").await;
    // Leaving the view unmounts it.
    assert_eq!(
        browser
            .eval("return window.ToruPlugins.hello.mounted;")
            .await,
        json!(true)
    );
    browser.click(".sections a[href='#/']").await;
    browser.wait_text("main h1", "Overview").await;
    assert_eq!(
        browser
            .eval("return window.ToruPlugins.hello.mounted;")
            .await,
        json!(false)
    );

    // The other convention, and a bundle calling its plugin with the page's own fetch.
    browser.open(&format!("{base}/ui/#/view/hello-py")).await;
    browser
        .wait_text("#hello-py-greeting", "Hello from Python plugin!")
        .await;

    // A bundle that throws, and one too large: said in the page, the console goes on.
    browser.open(&format!("{base}/ui/#/view/thrower")).await;
    browser
        .wait_text("#view-problem", "thrower's mount broke")
        .await;
    browser
        .wait_text("#view-problem a", "its state and logs")
        .await;
    browser.screenshot("throwing-bundle").await;
    browser.open(&format!("{base}/ui/#/view/bigbundle")).await;
    browser.wait_text("#view-problem", "no front end").await;
    browser.click(".sections a[href='#/plugins']").await;
    browser
        .wait_text("#plugins tr[data-plugin=hello] .plugin-state", "running")
        .await;

    // A cross-site POST with the session cookie is refused.
    let evil = attacker(base.clone());
    browser.open(&format!("http://127.0.0.1:{evil}/")).await;
    browser
        .wait_until(
            "the attack answered",
            "document.title.startsWith('answered') || document.title.startsWith('failed')",
        )
        .await;
    assert_eq!(
        torud.plugin("hello").await["state"],
        "running",
        "the cross-site POST disabled hello"
    );
    let title = browser.eval("return document.title;").await;
    assert!(
        title.as_str().unwrap().contains("same origin")
            || title.as_str().unwrap().starts_with("failed"),
        "{title}"
    );

    // Phone width, then log out.
    let narrow = Browser::start(360, 740).await;
    narrow.open(&format!("{base}/ui/#/plugins")).await;
    narrow.wait_text("main h1", "Log in to Toru").await;
    log_in(&narrow, &torud).await;
    narrow.open(&format!("{base}/ui/#/plugins")).await;
    narrow
        .wait_text("#plugins tr[data-plugin=hello] .plugin-state", "running")
        .await;
    narrow.screenshot("plugins-360px").await;
    assert_eq!(
        narrow
            .eval("return document.documentElement.scrollWidth <= window.innerWidth;")
            .await,
        json!(true),
        "the page is wider than 360 px"
    );
    browser.open(&format!("{base}/ui/")).await;
    browser.click("#logout").await;
    browser.wait_text("main h1", "Log in to Toru").await;
    let after = torud.get("/api/session").await;
    assert_eq!(after.json()["by"], "socket");

    let shots = browser::screenshots();
    for name in [
        "login",
        "overview",
        "plugins",
        "plugin-page",
        "hello-view",
        "throwing-bundle",
        "plugins-360px",
    ] {
        assert!(
            Path::new(&shots.join(format!("{name}.png"))).exists(),
            "{name}"
        );
    }
    narrow.close().await;
    browser.close().await;
    let mut torud = torud;
    torud.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licences_in_the_console() {
    if !available() {
        return;
    }
    use toru_plugin_api::license::Claims;
    use toru_plugin_api::license::vendor::SecretKey;

    let setup = Setup::new();
    std::os::unix::fs::symlink(licensed_binary(), setup.plugins.join("licensed")).unwrap();
    let torud = setup.start().await;
    torud.wait_ready().await;
    let instance = torud.get("/api/instance").await.json()["instance_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sign = |key: &SecretKey, days: i64| {
        key.sign(&Claims {
            plugin: "licensed".into(),
            instance: instance.clone(),
            licensee: Some("ACME <b>Ltd</b>".into()),
            issued_at: chrono::Utc::now() - chrono::Duration::hours(1),
            expires: Some((chrono::Utc::now() + chrono::Duration::days(days)).date_naive()),
            extra: serde_json::Map::new(),
        })
        .unwrap()
    };
    let vendor =
        SecretKey::from_text(&std::fs::read_to_string(test_vendor_key()).unwrap()).unwrap();
    let soon = sign(&vendor, 5);
    let forged = sign(&SecretKey::generate().unwrap(), 300);

    let base = format!("http://127.0.0.1:{}", torud.port);
    let browser = Browser::start(1280, 900).await;
    browser.open(&format!("{base}/ui/#/plugins")).await;
    log_in(&browser, &torud).await;
    browser.open(&format!("{base}/ui/#/plugins")).await;
    browser
        .wait_text(
            "#plugins tr[data-plugin=licensed] .plugin-license",
            "missing",
        )
        .await;
    browser
        .wait_text("#plugins tr[data-plugin=licensed]", "requires a licence")
        .await;

    // Installed from its page.
    browser.open(&format!("{base}/ui/#/plugins/licensed")).await;
    browser.wait_text("#license-status", "missing").await;
    browser.type_into("#license-text", &forged).await;
    browser.click("#license-install").await;
    browser.wait_text(".toast.error", "signature").await;
    assert_eq!(
        torud.plugin("licensed").await["license"]["status"],
        "missing"
    );
    browser.type_into("#license-text", &soon).await;
    browser.click("#license-install").await;
    browser
        .wait_text(".toast.success", "licence installed")
        .await;
    browser.wait_text("#license-status", "valid until").await;
    // The licensee is text, not markup.
    browser.wait_text("#license", "ACME <b>Ltd</b>").await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('#license b').length;")
            .await,
        json!(0)
    );
    assert_eq!(
        torud.wait_state("licensed", "running").await["license"]["status"],
        "valid"
    );
    browser.screenshot("plugin-licence").await;

    // Ending within 14 days: the overview says so.
    browser.open(&format!("{base}/ui/#/")).await;
    browser
        .wait_text("#warnings", "the licence of licensed ends after")
        .await;
    browser.screenshot("overview-warning").await;

    // Removed, after a confirmation.
    browser.open(&format!("{base}/ui/#/plugins/licensed")).await;
    browser.click("#license-remove").await;
    browser.client.accept_alert().await.unwrap();
    browser.wait_text(".toast.success", "licence removed").await;
    browser.wait_text("#license-status", "missing").await;
    assert_eq!(
        torud.plugin("licensed").await["license"]["installed"],
        false
    );

    browser.close().await;
    let mut torud = torud;
    torud.stop();
}
