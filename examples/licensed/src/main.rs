//! `licensed`: an example Toru plugin sold per installation. Its metadata
//! names the vendor's public key and says a licence is required; the SDK
//! does the rest: it verifies the licence torud hands over in `init`
//! (signature, plugin, instance, dates) and, without a valid one, refuses
//! to serve and exits with [`toru_plugin_api::EXIT_NO_LICENSE`] (77).
//!
//! | request  | answer                                                    |
//! |----------|-----------------------------------------------------------|
//! | `GET /`  | JSON: to whom this installation's licence was sold, until when |
//!
//! The key below is the public half of `test-keys/vendor.key`, a pair made
//! for Toru's tests and this example: never sell with it. `README.md` shows
//! the vendor's whole workflow with a key of one's own.

use std::process::ExitCode;

use toru_plugin_api::{
    ContextCell, HttpRequest, HttpResponse, PluginContext, PluginMetadata, PluginResult, ToruPlugin,
};

/// The vendor's public key, as `toru-license keygen` printed it.
const VENDOR_KEY: &str = "ed25519:fAuNr_SOZT8gS9aM2uaVvzLXSFmKipBP2fb3lR8Czsc";

#[derive(Default)]
struct Licensed {
    ctx: ContextCell,
}

impl ToruPlugin for Licensed {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new(
            "licensed",
            "Licensed example",
            env!("CARGO_PKG_VERSION"),
            "/licensed",
        )
        .author("Example Vendor")
        .icon("🔑")
        // One line: the SDK and torud check every licence against this key, and the
        // plugin does not serve without a valid one.
        .license(VENDOR_KEY, true)
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        self.ctx.set(ctx)
    }

    async fn handle_http(&self, req: HttpRequest) -> PluginResult<HttpResponse> {
        let ctx = self.ctx.get()?;
        match (req.method.as_str(), req.path_only()) {
            ("GET", "/") => {
                // Always there: `run()` refused to serve otherwise.
                let claims = ctx.license().map(|l| &l.claims);
                Ok(HttpResponse::json(&serde_json::json!({
                    "message": "This installation is licensed.",
                    "licensee": claims.and_then(|c| c.licensee.clone()),
                    "expires": claims.and_then(|c| c.expires).map(|d| d.to_string()),
                    "instance_id": ctx.instance_id,
                })))
            }
            _ => Ok(HttpResponse::not_found()),
        }
    }
}

fn main() -> ExitCode {
    toru_plugin_api::run(Licensed::default())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_is_the_test_pair_s() {
        let public = include_str!("../test-keys/vendor.key.pub").trim();
        assert_eq!(super::VENDOR_KEY, public);
    }
}
