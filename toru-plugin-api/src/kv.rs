//! The plugin's key-value storage: calls to the host over the connection.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;

use crate::error::{PluginError, PluginResult};
use crate::link::Link;
use crate::protocol::v2::Message;

/// How long a KV call waits for the host before failing with a timeout.
pub const KV_TIMEOUT: Duration = Duration::from_secs(30);

/// One page of [`PluginKvStore::list_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvPage {
    /// Keys in byte order.
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; `None` on the last.
    pub next: Option<String>,
}

/// The plugin's own key-value storage, kept durably by the host.
///
/// Cheap to clone; every clone reaches the same storage. Keys are text,
/// values are bytes (`get` offers them as text for convenience). Each plugin
/// sees only its own keys: the host scopes every call to the calling plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginKvStore {
    /// Host connections, oldest first; calls go over the newest still open.
    links: Arc<RwLock<Vec<Arc<Link>>>>,
}

impl PluginKvStore {
    /// The value of `key` as UTF-8 text, `None` when unset.
    pub async fn get(&self, key: &str) -> PluginResult<Option<String>> {
        match self.get_bytes(key).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|_| {
                PluginError::other(format!("value of {key:?} is not UTF-8; use get_bytes"))
            }),
        }
    }

    /// The value of `key`, `None` when unset.
    pub async fn get_bytes(&self, key: &str) -> PluginResult<Option<Bytes>> {
        let key = key.to_owned();
        let answer = self
            .call(|id| Message::KvGet { id, key }, Bytes::new())
            .await?;
        match answer.message {
            Message::KvValue { found: true, .. } => Ok(Some(answer.body)),
            Message::KvValue { found: false, .. } => Ok(None),
            other => Err(unexpected("kv_value", &other)),
        }
    }

    /// Stores `value` under `key`; returns once the host has committed it.
    pub async fn set(&self, key: &str, value: impl AsRef<[u8]>) -> PluginResult<()> {
        let key = key.to_owned();
        let value = Bytes::copy_from_slice(value.as_ref());
        let answer = self.call(|id| Message::KvSet { id, key }, value).await?;
        match answer.message {
            Message::KvOk { .. } => Ok(()),
            other => Err(unexpected("kv_ok", &other)),
        }
    }

    /// Removes `key`; true when it existed.
    pub async fn delete(&self, key: &str) -> PluginResult<bool> {
        let key = key.to_owned();
        let answer = self
            .call(|id| Message::KvDelete { id, key }, Bytes::new())
            .await?;
        match answer.message {
            Message::KvDeleted { existed, .. } => Ok(existed),
            other => Err(unexpected("kv_deleted", &other)),
        }
    }

    /// Every key starting with `prefix`, in byte order (fetched page by page).
    pub async fn list(&self, prefix: &str) -> PluginResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut after = None;
        loop {
            let page = self.list_page(prefix, after.as_deref(), None).await?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// One page of keys starting with `prefix` and after `after`; `limit`
    /// defaults to (and is capped at) the host's `max_list_keys`.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> PluginResult<KvPage> {
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        let answer = self
            .call(
                |id| Message::KvList {
                    id,
                    prefix,
                    after,
                    limit,
                },
                Bytes::new(),
            )
            .await?;
        match answer.message {
            Message::KvKeys { keys, next, .. } => Ok(KvPage { keys, next }),
            other => Err(unexpected("kv_keys", &other)),
        }
    }

    /// Adds a host connection; calls use it while it is the newest open one.
    pub(crate) fn connect(&self, link: Arc<Link>) {
        let mut links = self.links.write().unwrap_or_else(PoisonError::into_inner);
        links.retain(|l| !l.is_closed());
        links.push(link);
    }

    /// Forgets a connection that closed.
    pub(crate) fn disconnect(&self, link: &Arc<Link>) {
        self.links
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|l| !Arc::ptr_eq(l, link));
    }

    async fn call(
        &self,
        request: impl FnOnce(u64) -> Message,
        body: Bytes,
    ) -> PluginResult<crate::protocol::v2::Frame> {
        let link = self
            .links
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|l| !l.is_closed())
            .cloned()
            .ok_or(PluginError::NotConnected)?;
        link.call(request, body, KV_TIMEOUT, None).await
    }
}

fn unexpected(wanted: &str, got: &Message) -> PluginError {
    PluginError::Protocol(format!(
        "host answered a KV call with {got:?}, not {wanted}"
    ))
}
