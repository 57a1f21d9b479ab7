//! A protocol-2 plugin's KV calls, served from the store under that
//! plugin's id only: no key a plugin names can reach another's data.

use bytes::Bytes;
use toru_plugin_api::host::{KvBackend, KvFailure, KvReply, KvRequest};
use toru_plugin_api::protocol::v2::ErrorCode;
use tracing::warn;

use crate::store::{self, StoreError};

/// One plugin's storage.
#[derive(Debug)]
pub(crate) struct StoreKv {
    store: store::Handle,
    plugin: String,
}

impl StoreKv {
    /// KV for `plugin`.
    pub(crate) fn new(store: store::Handle, plugin: &str) -> Self {
        Self {
            store,
            plugin: plugin.to_owned(),
        }
    }
}

impl KvBackend for StoreKv {
    async fn call(&self, request: KvRequest) -> Result<KvReply, KvFailure> {
        let (store, plugin) = (&self.store, self.plugin.as_str());
        let result = match request {
            KvRequest::Get { key } => store
                .kv_get(plugin, &key)
                .await
                .map(|v| KvReply::Value(v.map(Bytes::from))),
            KvRequest::Set { key, value } => store
                .kv_set(plugin, &key, value.to_vec())
                .await
                .map(|()| KvReply::Stored),
            KvRequest::Delete { key } => store.kv_delete(plugin, &key).await.map(KvReply::Deleted),
            KvRequest::List {
                prefix,
                after,
                limit,
            } => store
                .kv_list(plugin, &prefix, after.as_deref(), limit as usize)
                .await
                .map(|(keys, next)| KvReply::Keys { keys, next }),
        };
        result.map_err(|e| {
            // A damaged value was logged once, at ERROR, by the store.
            if !matches!(e, StoreError::Damaged { .. }) {
                warn!(plugin, error = %e, "KV operation failed");
            }
            KvFailure::new(ErrorCode::Storage, e.to_string())
        })
    }
}
