//! A [`Backend`] with canned answers that records what the gateway asked.
//!
//! Plugins `hello` and `slow` exist. Forwarding by route: `hello` echoes the
//! body with 201 and headers a proxy must keep or drop, `slow` answers after
//! 500 ms, `down` is 503 (retry after 4.2 s), `gone` 502, `late` 504, `weird`
//! answers status 42; any other route is 404.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use http::header::SET_COOKIE;
use toru_plugin_api::{HttpRequest, HttpResponse};

use crate::api::{AdminKv, ApiError, Backend, LogPage, LogQuery, PluginView, StatusView};
use crate::plugins::logs::LogLine;

/// Canned answers, and a record of what the gateway asked.
#[derive(Debug, Default)]
pub(super) struct FakeBackend {
    pub(super) enabled: AtomicUsize,
    pub(super) disabled: AtomicUsize,
    pub(super) restarted: AtomicUsize,
    pub(super) observed: Mutex<Vec<(Option<String>, u16)>>,
    pub(super) forwarded: Mutex<Vec<(String, HttpRequest)>>,
    pub(super) log_queries: Mutex<Vec<LogQuery>>,
    pub(super) events_asked: Mutex<Vec<(Option<String>, usize)>>,
    pub(super) kv: Mutex<HashMap<String, String>>,
}

fn view(id: &str) -> PluginView {
    PluginView {
        id: id.into(),
        name: format!("The {id} plugin"),
        version: "1.0.0".into(),
        author: None,
        icon: "🔌".into(),
        route: format!("/{id}"),
        protocol: 2,
        path: format!("/usr/lib/toru/plugins/{id}"),
        enabled: true,
        running: true,
        health: "healthy",
        state: "running",
        pid: Some(42),
        restarts: 0,
        running_since: None,
        state_since: String::new(),
        manual_restarts: 0,
        oom_kills: 0,
        last_exit: None,
        error: None,
        socket_path: format!("/run/toru/{id}.sock"),
        cgroup: Some(format!("/system.slice/toru.service/plugins/{id}")),
        memory_bytes: Some(4 << 20),
        cpu_usec: Some(1500),
        license: crate::api::LicenseView {
            status: "not_required",
            licensee: None,
            expires: None,
            expires_in_seconds: None,
            error: None,
            required: false,
            installed: false,
        },
    }
}

fn known(id: &str) -> Result<(), ApiError> {
    match id {
        "hello" | "slow" => Ok(()),
        _ => Err(ApiError::NotFound(format!("no such plugin: {id}"))),
    }
}

impl Backend for FakeBackend {
    fn instance_id(&self) -> String {
        "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into()
    }

    fn status(&self) -> StatusView {
        StatusView {
            instance_id: self.instance_id(),
            version: "0.2.0".into(),
            uptime_seconds: 7,
            listeners: vec!["127.0.0.1:0".into()],
            plugins: BTreeMap::from([("running".into(), 2)]),
            warnings: Vec::new(),
        }
    }

    fn plugins(&self) -> Vec<PluginView> {
        vec![view("hello"), view("slow")]
    }

    fn plugin(&self, id: &str) -> Result<PluginView, ApiError> {
        known(id).map(|()| view(id))
    }

    async fn enable(&self, id: &str) -> Result<(), ApiError> {
        known(id)?;
        self.enabled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn disable(&self, id: &str) -> Result<(), ApiError> {
        known(id)?;
        self.disabled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn restart(&self, id: &str) -> Result<(), ApiError> {
        known(id)?;
        self.restarted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn logs(&self, id: &str, query: &LogQuery) -> Result<LogPage, ApiError> {
        known(id)?;
        self.log_queries.lock().unwrap().push(query.clone());
        Ok(LogPage {
            plugin: id.into(),
            logs: vec![LogLine {
                timestamp: "2025-12-30T12:00:00Z".into(),
                level: "info",
                message: "started".into(),
                fields: Default::default(),
            }],
            page: query.page,
            page_size: query.page_size,
            total: 1,
        })
    }

    async fn events(
        &self,
        plugin: Option<&str>,
        limit: usize,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        self.events_asked
            .lock()
            .unwrap()
            .push((plugin.map(str::to_owned), limit));
        Ok(vec![
            serde_json::json!({"kind": "started", "plugin": "hello"}),
        ])
    }

    async fn kv(&self, id: &str, op: AdminKv) -> Result<serde_json::Value, ApiError> {
        known(id)?;
        let mut kv = self.kv.lock().unwrap();
        Ok(match op {
            AdminKv::Get(key) => serde_json::json!({ "value": kv.get(&key) }),
            AdminKv::Set(key, value) => serde_json::json!({ "value": kv.insert(key, value) }),
            AdminKv::Delete(key) => serde_json::json!({ "value": kv.remove(&key) }),
            AdminKv::List(prefix) => {
                let mut keys: Vec<&String> = kv.keys().filter(|k| k.starts_with(&prefix)).collect();
                keys.sort();
                serde_json::json!({ "keys": keys })
            }
        })
    }

    async fn forward(&self, route: &str, request: HttpRequest) -> Result<HttpResponse, ApiError> {
        self.forwarded
            .lock()
            .unwrap()
            .push((route.to_owned(), request.clone()));
        match route {
            // Echoes the body, with headers a proxy must keep or drop.
            "hello" => {
                let mut answer = HttpResponse::bytes("application/octet-stream", request.body);
                let headers = &mut answer.headers;
                headers.append(SET_COOKIE, HeaderValue::from_static("a=1"));
                headers.append(SET_COOKIE, HeaderValue::from_static("b=2"));
                headers.append("connection", HeaderValue::from_static("x-private"));
                headers.append("x-private", HeaderValue::from_static("secret"));
                headers.append("keep-alive", HeaderValue::from_static("timeout=5"));
                headers.append("x-plugin", HeaderValue::from_static("yes"));
                headers.append("content-length", HeaderValue::from_static("999999"));
                Ok(answer.with_status(201))
            }
            "slow" => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                Ok(HttpResponse::text("slow done"))
            }
            "down" => Err(ApiError::Unavailable {
                message: "plugin down is in backoff".into(),
                retry_after: Some(Duration::from_millis(4200)),
            }),
            "gone" => Err(ApiError::BadGateway(
                "plugin gone closed the connection".into(),
            )),
            "late" => Err(ApiError::Timeout(Duration::from_secs(30))),
            "weird" => Ok(HttpResponse::new(42)),
            _ => Err(ApiError::NotFound(format!("no plugin serves /{route}"))),
        }
    }

    fn instance(&self) -> crate::api::InstanceView {
        crate::api::InstanceView {
            instance_id: self.instance_id(),
            machine_id_changed: Some(false),
        }
    }

    async fn reload(&self) -> Result<crate::reload::Reloaded, ApiError> {
        Err(ApiError::Conflict("the fake has no configuration".into()))
    }

    async fn regenerate_instance(&self) -> Result<crate::api::InstanceView, ApiError> {
        Err(ApiError::Internal("the fake keeps its id".into()))
    }

    fn license(&self, id: &str) -> Result<crate::api::LicenseView, ApiError> {
        known(id)?;
        Ok(crate::api::LicenseView {
            status: "not_required",
            licensee: None,
            expires: None,
            expires_in_seconds: None,
            error: None,
            required: false,
            installed: false,
        })
    }

    async fn install_license(
        &self,
        id: &str,
        _line: &str,
    ) -> Result<crate::api::LicenseView, ApiError> {
        known(id)?;
        Err(ApiError::BadRequest("the fake takes no licence".into()))
    }

    async fn remove_license(&self, id: &str) -> Result<crate::api::LicenseView, ApiError> {
        known(id)?;
        Err(ApiError::NotFound("no licence".into()))
    }

    async fn backup(&self) -> Result<crate::api::Backup, ApiError> {
        Err(ApiError::Internal("the fake has no store".to_owned()))
    }

    async fn bundle(&self, id: &str) -> Result<HttpResponse, ApiError> {
        match id {
            "hello" => Ok(HttpResponse {
                body: Bytes::from_static(b"window.ToruPlugins={};"),
                ..HttpResponse::new(200)
            }),
            "slow" => Ok(HttpResponse::bytes("text/javascript", "1;")),
            _ => Err(ApiError::NotFound(format!("no such plugin: {id}"))),
        }
    }

    fn metrics(&self) -> String {
        "# TYPE toru_up gauge\ntoru_up 1\n".into()
    }

    fn observe(&self, route: Option<&str>, status: u16, _elapsed: Duration) {
        self.observed
            .lock()
            .unwrap()
            .push((route.map(str::to_owned), status));
    }
}
