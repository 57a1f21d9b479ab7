//! Licences end to end in the SDK: a licence made by hand from
//! `docs/LICENSES.md` (ed25519-dalek and base64 directly, not the SDK's
//! signing code) verifies; and the runtime, on a real Unix socket, refuses
//! `init` without a valid licence when the metadata requires one, and hands
//! the plugin its licence (or why it is not valid) when it does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signer, SigningKey};
use support::*;
use toru_plugin_api::license::{License, LicenseError, PublicKey};
use toru_plugin_api::protocol::v2::{ErrorCode, Frame, Message};
use toru_plugin_api::{
    HttpRequest, HttpResponse, PluginContext, PluginError, PluginMetadata, PluginResult, ToruPlugin,
};

/// The vendor's key, from a fixed seed.
fn vendor() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// `ed25519:` and the public key's 32 bytes, base64url without padding.
fn public_key_text() -> String {
    format!(
        "ed25519:{}",
        B64.encode(vendor().verifying_key().as_bytes())
    )
}

/// A licence line as the format document says to make one.
fn by_hand(key: &SigningKey, payload: &str) -> String {
    let signature = key.sign(payload.as_bytes());
    format!(
        "toru-license-v1.{}.{}",
        B64.encode(payload),
        B64.encode(signature.to_bytes())
    )
}

fn payload(plugin: &str, expires: &str) -> String {
    // Fields in another order than the SDK writes them, and one it does not know.
    format!(
        r#"{{"expires":{expires},"seats":25,"plugin":"{plugin}","licensee":"ACME Ltd","instance":"{INSTANCE}","issued_at":"2026-01-01T00:00:00Z"}}"#
    )
}

#[test]
fn a_licence_made_from_the_document_verifies() {
    let line = by_hand(&vendor(), &payload("test", "\"2099-12-31\""));
    let key: PublicKey = public_key_text().parse().unwrap();
    let now = chrono::Utc::now();
    let license = License::verify(&line, &key, INSTANCE, "test", now).unwrap();
    assert_eq!(license.claims.licensee.as_deref(), Some("ACME Ltd"));
    assert_eq!(license.claims.extra["seats"], 25);
    let forever = by_hand(&vendor(), &payload("test", "null"));
    assert_eq!(
        License::verify(&forever, &key, INSTANCE, "test", now)
            .unwrap()
            .claims
            .expires,
        None
    );
    // Signed by another key, or a payload not the one signed.
    let other = SigningKey::from_bytes(&[8; 32]);
    assert_eq!(
        License::verify(
            &by_hand(&other, &payload("test", "null")),
            &key,
            INSTANCE,
            "test",
            now
        ),
        Err(LicenseError::BadSignature)
    );
    let (_, signature) = forever.rsplit_once('.').unwrap();
    let swapped = format!(
        "toru-license-v1.{}.{signature}",
        B64.encode(payload("other", "null"))
    );
    assert_eq!(
        License::verify(&swapped, &key, INSTANCE, "test", now),
        Err(LicenseError::BadSignature)
    );
    // A signed payload that is not a licence's JSON is malformed, said so.
    let not_json = by_hand(&vendor(), "seats=25");
    assert!(matches!(
        License::verify(&not_json, &key, INSTANCE, "test", now),
        Err(LicenseError::Malformed(why)) if why.contains("not the JSON of a licence")
    ));
}

/// A plugin that requires a licence of [`vendor`] (or, `Optional`, only accepts one).
struct Required {
    ctx: Option<PluginContext>,
}

struct Optional {
    ctx: Option<PluginContext>,
}

fn describe(ctx: &PluginContext) -> String {
    match (ctx.license(), ctx.license_error()) {
        (Some(license), _) => format!("licensed to {:?}", license.claims.licensee),
        (None, Some(e)) => format!("invalid: {e}"),
        (None, None) => "none".to_owned(),
    }
}

impl ToruPlugin for Required {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("test", "Test", "0.0.0", "/test").license(public_key_text(), true)
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn handle_http(&self, _req: HttpRequest) -> PluginResult<HttpResponse> {
        let ctx = self
            .ctx
            .as_ref()
            .ok_or_else(|| PluginError::other("no init"))?;
        Ok(HttpResponse::text(describe(ctx)))
    }
}

impl ToruPlugin for Optional {
    fn metadata() -> PluginMetadata {
        PluginMetadata::new("test", "Test", "0.0.0", "/test").license(public_key_text(), false)
    }

    async fn init(&mut self, ctx: PluginContext) -> PluginResult<()> {
        self.ctx = Some(ctx);
        Ok(())
    }

    async fn handle_http(&self, _req: HttpRequest) -> PluginResult<HttpResponse> {
        let ctx = self
            .ctx
            .as_ref()
            .ok_or_else(|| PluginError::other("no init"))?;
        Ok(HttpResponse::text(describe(ctx)))
    }
}

fn init(license: Option<String>) -> Message {
    let params = init_params();
    Message::Init {
        id: 1,
        protocol: 2,
        instance_id: params.instance_id,
        plugin_id: params.plugin_id,
        config: params.config,
        limits: params.limits,
        license,
    }
}

async fn answer(peer: &mut RawPeer) -> String {
    peer.send(Message::HttpRequest {
        id: 2,
        method: "GET".into(),
        path: "/".into(),
        headers: Default::default(),
    })
    .await;
    match peer.recv().await.unwrap() {
        Frame {
            message: Message::HttpResponse { .. },
            body,
        } => String::from_utf8(body.to_vec()).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_required_licence_gates_init() {
    let good = by_hand(&vendor(), &payload("test", "null"));
    let running = start(Required { ctx: None }).await;
    let mut peer = RawPeer::connect(&running.path).await;
    peer.send(init(Some(good))).await;
    assert!(matches!(
        peer.recv().await.unwrap().message,
        Message::InitOk { id: 1, .. }
    ));
    assert_eq!(answer(&mut peer).await, "licensed to Some(\"ACME Ltd\")");

    let expired = by_hand(&vendor(), &payload("test", "\"2026-01-31\""));
    for (license, reason) in [
        (None, "none is installed"),
        (Some(expired), "expired"),
        (Some("toru-license-v1.AAAA".to_owned()), "no signature"),
    ] {
        let running = start(Required { ctx: None }).await;
        let mut peer = RawPeer::connect(&running.path).await;
        peer.send(init(license.clone())).await;
        let frame = peer.recv().await.unwrap();
        assert_eq!(
            error_code(&frame),
            Some((Some(1), ErrorCode::InitFailed)),
            "{license:?}"
        );
        let Message::Error { message, .. } = &frame.message else {
            unreachable!()
        };
        assert!(message.contains(reason), "{license:?}: {message}");
        // The server stops, with the error `run()` turns into exit 77.
        let stopped = tokio::time::timeout(LONG, running.server).await.unwrap();
        assert!(
            matches!(
                stopped.unwrap(),
                Err(PluginError::License(_) | PluginError::NoLicense)
            ),
            "{license:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_licence_is_handed_over_with_its_verdict() {
    for (license, said) in [
        (None, "none".to_owned()),
        (
            Some(by_hand(&vendor(), &payload("test", "null"))),
            "licensed to Some(\"ACME Ltd\")".to_owned(),
        ),
        (
            Some(by_hand(&vendor(), &payload("other", "null"))),
            "invalid: made for plugin \"other\", not \"test\"".to_owned(),
        ),
    ] {
        let running = start(Optional { ctx: None }).await;
        let mut peer = RawPeer::connect(&running.path).await;
        peer.send(init(license)).await;
        assert!(matches!(
            peer.recv().await.unwrap().message,
            Message::InitOk { .. }
        ));
        assert_eq!(answer(&mut peer).await, said);
    }
}
