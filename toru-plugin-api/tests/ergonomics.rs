//! What makes a plugin short to write and to test: `ContextCell` instead of
//! `Option<PluginContext>` and `ok_or_else`, decoded paths, response builders that
//! take strings made at run time, and `host::TestHost` for a plugin's own tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use toru_plugin_api::host::TestHost;
use toru_plugin_api::{
    ContextCell, HttpRequest, HttpResponse, PluginContext, PluginError, PluginMetadata,
    PluginResult, ToruPlugin,
};

#[derive(Default)]
struct Notes {
    ctx: ContextCell,
}

impl ToruPlugin for Notes {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("notes", "Notes", "0.1.0", "/notes")
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        self.ctx.set(ctx)
    }

    async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
        let ctx = self.ctx.get()?;
        if let Some(name) = req.path_after("/notes/") {
            return match req.method.as_str() {
                "PUT" => {
                    ctx.kv.set(&name, req.body_text()?).await?;
                    Ok(HttpResponse::new(204))
                }
                _ => match ctx.kv.get(&name).await? {
                    Some(text) => Ok(HttpResponse::text(text)
                        .with_header("x-note", name.clone())
                        .with_header(String::from("x-instance"), &ctx.instance_id)),
                    None => Err(PluginError::http(404, format!("no note {name:?}"))),
                },
            };
        }
        match req.path_only() {
            "/csv" => {
                let kind = format!("text/csv; header={}", "present");
                Ok(HttpResponse::bytes(kind, "a,b\n1,2\n"))
            }
            "/bad-header" => Ok(HttpResponse::text("x").with_header("bad name", "v")),
            _ => Ok(HttpResponse::text(req.decoded_path()?)),
        }
    }
}

#[tokio::test]
async fn a_plugin_is_tested_in_a_few_lines() {
    let host = TestHost::start(Notes::default()).await.unwrap();

    let mut put = HttpRequest::new("PUT", "/notes/my%20note");
    put.body = "buy milk".into();
    assert_eq!(host.request(put).await.unwrap().status, 204);
    assert_eq!(
        host.kv().snapshot().get("my note").map(|v| v.to_vec()),
        Some(b"buy milk".to_vec())
    );

    let got = host.get("/notes/my%20note").await.unwrap();
    assert_eq!(got.body, "buy milk");
    assert_eq!(got.headers["x-note"], "my note");
    assert_eq!(
        got.headers["x-instance"],
        "00000000-0000-4000-8000-000000000000"
    );
    assert_eq!(host.get("/notes/other").await.unwrap().status, 404);

    let csv = host.get("/csv").await.unwrap();
    assert_eq!(csv.headers["content-type"], "text/csv; header=present");
    let bad = host.get("/bad-header").await.unwrap();
    assert_eq!(bad.status, 200);
    assert_eq!(bad.body, "x");

    assert_eq!(host.get("/a%2Fb%20c").await.unwrap().body, "/a/b c");
    // `%2F` in a name is the name's, never a path separator.
    let mut slash = HttpRequest::new("PUT", "/notes/a%2Fb");
    slash.body = "s".into();
    assert_eq!(host.request(slash).await.unwrap().status, 204);
    assert!(host.kv().snapshot().contains_key("a/b"));
    // Bytes that are not UTF-8 once decoded: a 400, not a panic.
    assert_eq!(host.get("/%FF").await.unwrap().status, 400);
}

#[test]
fn the_context_cell_says_when_it_is_empty() {
    let cell = ContextCell::default();
    let error = cell.get().unwrap_err();
    assert!(error.to_string().contains("not initialized"), "{error}");
}

#[test]
fn request_path_helpers() {
    let req = HttpRequest::new("GET", "/notes/my%20note?x=1");
    assert_eq!(req.path_after("/notes/").as_deref(), Some("my note"));
    assert_eq!(req.path_after("/other/"), None);
    assert_eq!(req.decoded_path().unwrap(), "/notes/my note");
    assert_eq!(HttpRequest::new("GET", "/%FF").path_after("/"), None);
}
