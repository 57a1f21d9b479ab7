//! `hello`: the example Toru plugin, speaking protocol 2 through the SDK.
//!
//! | request           | answer                                          |
//! |-------------------|-------------------------------------------------|
//! | `GET /`           | JSON greeting with the host's instance id       |
//! | `POST /echo`      | the request body, byte for byte                 |
//! | `PUT /kv/{key}`   | stores the body under `key` in the host's KV    |
//! | `GET /kv/{key}`   | the stored value, or 404                        |
//! | `GET /bundle.js`  | the front-end script                            |
//! | `GET /slow?ms=N`  | answers after N ms (at most 60 s)               |
//! | `GET /log?level=L&msg=M` | logs M at L (`error`, `warn`, `info`, `debug`, `trace`), or writes it to stderr as it is (`plain`) |

use std::process::ExitCode;
use std::time::Duration;

use toru_plugin_api::{
    ContextCell, HttpRequest, HttpResponse, PluginContext, PluginError, PluginMetadata,
    PluginResult, ToruPlugin, tracing,
};

/// The front end the Toru console mounts in hello's view.
const BUNDLE: &str = include_str!("bundle.js");

#[derive(Default)]
struct Hello {
    ctx: ContextCell,
}

impl ToruPlugin for Hello {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("hello", "Hello", env!("CARGO_PKG_VERSION"), "/hello")
            .author("The Toru developers")
            .icon("👋")
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        tracing::info!(instance_id = %ctx.instance_id, "hello initialized");
        self.ctx.set(ctx)
    }

    async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
        let ctx = self.ctx.get()?;
        let path = req.path_only();
        match (req.method.as_str(), path) {
            ("GET", "/") => Ok(HttpResponse::json(&serde_json::json!({
                "message": "Hello from Toru!",
                "plugin": "hello",
                "instance_id": ctx.instance_id,
            }))),
            ("POST", "/echo") => {
                let content_type = req
                    .header("content-type")
                    .unwrap_or("application/octet-stream");
                let mut response = HttpResponse::new(200);
                response.body = req.body.clone();
                Ok(response.with_header(toru_plugin_api::http::header::CONTENT_TYPE, content_type))
            }
            ("GET", "/bundle.js") => Ok(HttpResponse::bytes("application/javascript", BUNDLE)),
            ("GET", "/slow") => {
                let ms: u64 = req
                    .query_param("ms")
                    .map(|v| v.parse())
                    .transpose()
                    .map_err(|_| PluginError::http(400, "ms must be a whole number"))?
                    .unwrap_or(100);
                tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
                Ok(HttpResponse::json(
                    &serde_json::json!({ "slept_ms": ms.min(60_000) }),
                ))
            }
            ("GET", "/log") => {
                let msg = req.query_param("msg").unwrap_or_default();
                match req.query_param("level").as_deref().unwrap_or("info") {
                    "error" => tracing::error!("{msg}"),
                    "warn" => tracing::warn!("{msg}"),
                    "info" => tracing::info!("{msg}"),
                    "debug" => tracing::debug!("{msg}"),
                    "trace" => tracing::trace!("{msg}"),
                    // What a plugin that knows nothing of levels writes.
                    "plain" => eprintln!("{msg}"),
                    _ => return Err(PluginError::http(400, "unknown level")),
                }
                Ok(HttpResponse::new(204))
            }
            (method, path) if path.starts_with("/kv/") => {
                let key = &path["/kv/".len()..];
                match method {
                    "PUT" => {
                        ctx.kv.set(key, &req.body).await?;
                        Ok(HttpResponse::new(204))
                    }
                    "GET" => match ctx.kv.get_bytes(key).await? {
                        Some(value) => Ok(HttpResponse::bytes("application/octet-stream", value)),
                        None => Ok(HttpResponse::not_found()),
                    },
                    "DELETE" => match ctx.kv.delete(key).await? {
                        true => Ok(HttpResponse::new(204)),
                        false => Ok(HttpResponse::not_found()),
                    },
                    _ => Err(PluginError::http(405, "use GET, PUT or DELETE")),
                }
            }
            _ => Ok(HttpResponse::not_found()),
        }
    }
}

fn main() -> ExitCode {
    toru_plugin_api::run(Hello::default())
}

/// The SDK README's way: a plugin in `main.rs` tested in `main.rs`, in-process.
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use toru_plugin_api::host::TestHost;

    #[tokio::test]
    async fn greets_and_keeps_values() {
        let host = TestHost::start(super::Hello::default()).await.unwrap();
        let greeting = host.get("/").await.unwrap();
        let json: serde_json::Value = serde_json::from_slice(&greeting.body).unwrap();
        assert_eq!(json["plugin"], "hello");
        let mut put = toru_plugin_api::HttpRequest::new("PUT", "/kv/colour");
        put.body = "blue".into();
        assert_eq!(host.request(put).await.unwrap().status, 204);
        assert_eq!(host.kv().snapshot()["colour"], "blue");
        assert_eq!(host.get("/kv/colour").await.unwrap().body, "blue");
        assert_eq!(host.get("/nosuch").await.unwrap().status, 404);
    }
}
