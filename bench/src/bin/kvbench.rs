//! `kvbench`: a protocol-2 plugin (built on the SDK) that times its own KV
//! calls through the host.
//!
//! `GET /?op=set&n=N&size=S` does N sequential `kv.set`s of S-byte values
//! (keys `k0` .. `kN-1`, S defaults to 100); `op=get&n=N&keys=K` does N
//! sequential `kv.get`s of `k0` .. `kK-1` round and round (K defaults to N;
//! run `set` first so they exist). The answer is
//! `{"op", "n", "elapsed_ms", "ops_per_s"}`.
//!
//! One binary serves any number of copies: torud scopes KV by the id that
//! `--metadata` printed, so wrappers that print other ids get their own keys.

use std::process::ExitCode;
use std::time::Instant;

use toru_plugin_api::{
    HttpRequest, HttpResponse, PluginContext, PluginError, PluginMetadata, PluginResult, ToruPlugin,
};

/// Most calls one request may ask for: keeps a request within torud's
/// request timeout even on a slow disk.
const MAX_N: u64 = 100_000;

#[derive(Default)]
struct KvBench {
    ctx: Option<PluginContext>,
}

fn number(req: &HttpRequest, name: &str, default: u64) -> PluginResult<u64> {
    req.query_param(name)
        .map(|v| v.parse())
        .transpose()
        .map_err(|_| PluginError::http(400, format!("{name} must be a whole number")))
        .map(|v| v.unwrap_or(default))
}

impl ToruPlugin for KvBench {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("kvbench", "KV bench", env!("CARGO_PKG_VERSION"), "/kvbench")
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
        let kv = &self
            .ctx
            .as_ref()
            .ok_or_else(|| PluginError::other("not initialized"))?
            .kv;
        let n = number(&req, "n", 1000)?.min(MAX_N);
        let size = usize::try_from(number(&req, "size", 100)?)
            .map_err(|_| PluginError::http(400, "size too large"))?;
        let value = vec![b'v'; size];
        let op = req.query_param("op").unwrap_or_default();
        let started = Instant::now();
        match op.as_str() {
            "set" => {
                for i in 0..n {
                    kv.set(&format!("k{i}"), &value).await?;
                }
            }
            "get" => {
                let keys = number(&req, "keys", n)?.max(1);
                for i in 0..n {
                    let key = format!("k{}", i % keys);
                    if kv.get_bytes(&key).await?.is_none() {
                        return Err(PluginError::http(409, format!("{key} is unset: set first")));
                    }
                }
            }
            _ => return Err(PluginError::http(400, "op must be set or get")),
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ops_per_s = n as f64 / elapsed.max(f64::MIN_POSITIVE);
        Ok(HttpResponse::json(&serde_json::json!({
            "op": op,
            "n": n,
            "elapsed_ms": elapsed * 1000.0,
            "ops_per_s": ops_per_s,
        })))
    }
}

fn main() -> ExitCode {
    toru_plugin_api::run(KvBench::default())
}
