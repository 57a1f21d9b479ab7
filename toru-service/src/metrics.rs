//! `/metrics`: Prometheus text exposition, through `prometheus-client`.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::PluginView;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    plugin: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    plugin: String,
    state: String,
}

/// The status classes requests are counted by; `other` past 9xx.
const CLASSES: [&str; 11] = [
    "0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx", "other",
];

/// One plugin's (or the API's) request meters, taken from their families the first
/// time they count and kept beside the plugin: counting a request is then an atomic
/// add and a histogram bucket, with no label set built, hashed or looked up.
#[derive(Debug, Default)]
pub(crate) struct Meters {
    requests: [OnceLock<Counter>; CLASSES.len()],
    latency: OnceLock<Histogram>,
}

/// torud's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<PluginLabels, Histogram>,
    restarts: Family<PluginLabels, Gauge>,
    oom_kills: Family<PluginLabels, Gauge>,
    state: Family<StateLabels, Gauge>,
    memory: Family<PluginLabels, Gauge>,
    license_expiry: Family<PluginLabels, Gauge>,
    cpu: Family<PluginLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    resident: Gauge,
    open_fds: Gauge,
    kv_writes: Counter,
    kv_commits: Counter,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
    started: Instant,
    /// The requests torud answered itself.
    api: Meters,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~26 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 19,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("toru");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<PluginLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let restarts = Family::<PluginLabels, Gauge>::default();
        let oom_kills = Family::<PluginLabels, Gauge>::default();
        let state = Family::<StateLabels, Gauge>::default();
        let memory = Family::<PluginLabels, Gauge>::default();
        let license_expiry = Family::<PluginLabels, Gauge>::default();
        let cpu = Family::<PluginLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        let resident = Gauge::default();
        let open_fds = Gauge::default();
        let kv_writes = Counter::default();
        let kv_commits = Counter::default();
        let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "http_requests",
            "Answered HTTP requests by plugin (or `api`) and status class",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by plugin (or `api`)",
            latency.clone(),
        );
        registry.register(
            "plugin_restarts",
            "Restarts of each plugin since torud started",
            restarts.clone(),
        );
        registry.register(
            "plugin_oom_kills",
            "Runs of each plugin the kernel's OOM killer ended (its memory limit) since torud started",
            oom_kills.clone(),
        );
        registry.register(
            "plugin_state",
            "1 for the state each plugin is in",
            state.clone(),
        );
        registry.register(
            "plugin_memory_bytes",
            "Memory used by each running plugin's cgroup (memory.current), where the kernel says",
            memory.clone(),
        );
        registry.register(
            "plugin_license_expiry_seconds",
            "Seconds until each licensed plugin's licence expires (negative once expired)",
            license_expiry.clone(),
        );
        registry.register(
            "plugin_cpu_seconds",
            "CPU time used by each running plugin's cgroup in its current run (cpu.stat)",
            cpu.clone(),
        );
        registry.register(
            "process_resident_memory_bytes",
            "torud's resident memory",
            resident.clone(),
        );
        registry.register(
            "process_open_fds",
            "torud's open file descriptors",
            open_fds.clone(),
        );
        registry.register(
            "kv_writes",
            "Plugin KV writes (sets and deletes) committed",
            kv_writes.clone(),
        );
        registry.register(
            "kv_commits",
            "Write transactions that committed plugin KV writes: writes arriving together share one (group commit)",
            kv_commits.clone(),
        );
        registry.register(
            "uptime_seconds",
            "Seconds since torud started",
            uptime.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            latency,
            restarts,
            oom_kills,
            state,
            memory,
            license_expiry,
            cpu,
            resident,
            open_fds,
            kv_writes,
            kv_commits,
            uptime,
            started: Instant::now(),
            api: Meters::default(),
        }
    }

    /// Counts one answered request.
    /// `plugin` is its id and its [`Meters`]; none for a request torud answered itself.
    pub(crate) fn observe(&self, plugin: Option<(&str, &Meters)>, status: u16, elapsed: Duration) {
        let (plugin, meters) = plugin.unwrap_or(("api", &self.api));
        let class = usize::from(status / 100).min(CLASSES.len() - 1);
        meters.requests[class]
            .get_or_init(|| {
                let labels = RequestLabels {
                    plugin: plugin.to_owned(),
                    class: CLASSES[class],
                };
                self.requests.get_or_create(&labels).clone()
            })
            .inc();
        meters
            .latency
            .get_or_init(|| {
                let labels = PluginLabels {
                    plugin: plugin.to_owned(),
                };
                self.latency.get_or_create(&labels).clone()
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The exposition text, with plugin, store and process figures taken now.
    pub(crate) fn render(
        &self,
        plugins: &[PluginView],
        store: crate::store::CommitCounts,
    ) -> String {
        // The store counts; the counters catch up with it.
        self.kv_writes
            .inc_by(store.writes.saturating_sub(self.kv_writes.get()));
        self.kv_commits
            .inc_by(store.commits.saturating_sub(self.kv_commits.get()));
        self.state.clear();
        self.memory.clear();
        self.license_expiry.clear();
        self.cpu.clear();
        for plugin in plugins {
            let labels = PluginLabels {
                plugin: plugin.id.clone(),
            };
            self.restarts
                .get_or_create(&labels)
                .set(i64::from(plugin.restarts));
            self.oom_kills
                .get_or_create(&labels)
                .set(i64::from(plugin.oom_kills));
            self.state
                .get_or_create(&StateLabels {
                    plugin: plugin.id.clone(),
                    state: plugin.state.to_owned(),
                })
                .set(1);
            if let Some(bytes) = plugin.memory_bytes {
                self.memory
                    .get_or_create(&labels)
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(seconds) = plugin.license.expires_in_seconds {
                self.license_expiry.get_or_create(&labels).set(seconds);
            }
            if let Some(usec) = plugin.cpu_usec {
                self.cpu.get_or_create(&labels).set(usec as f64 / 1e6);
            }
        }
        if let Some(rss) = resident_bytes() {
            self.resident.set(rss);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as i64);
        }
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut text = String::new();
        let registry = self
            .registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(error = %e, "cannot encode metrics");
        }
        text
    }
}

/// Resident set size from `/proc/self/statm` (pages × page size).
fn resident_bytes() -> Option<i64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: i64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()?;
    Some(pages * page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, memory_bytes: Option<u64>, cpu_usec: Option<u64>) -> PluginView {
        PluginView {
            id: id.into(),
            name: id.into(),
            version: "1".into(),
            author: None,
            icon: String::new(),
            route: format!("/{id}"),
            protocol: 2,
            path: String::new(),
            enabled: true,
            running: true,
            health: "healthy",
            state: "running",
            pid: Some(1),
            restarts: 0,
            manual_restarts: 0,
            oom_kills: 0,
            last_exit: None,
            running_since: None,
            state_since: String::new(),
            error: None,
            socket_path: String::new(),
            cgroup: None,
            memory_bytes,
            cpu_usec,
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

    #[test]
    fn plugin_usage_is_shown_where_known() {
        let metrics = Metrics::new();
        let counts = crate::store::CommitCounts {
            writes: 7,
            commits: 3,
        };
        let text = metrics.render(
            &[
                view("a", Some(4096), Some(1_500_000)),
                view("b", None, None),
            ],
            counts,
        );
        assert!(text.contains("toru_kv_writes_total 7"), "{text}");
        assert!(text.contains("toru_kv_commits_total 3"), "{text}");
        assert!(
            text.contains("toru_plugin_memory_bytes{plugin=\"a\"} 4096"),
            "{text}"
        );
        assert!(
            text.contains("toru_plugin_cpu_seconds{plugin=\"a\"} 1.5"),
            "{text}"
        );
        assert!(!text.contains("memory_bytes{plugin=\"b\"}"), "{text}");
        // A plugin that stopped is no longer shown.
        let text = metrics.render(&[view("a", None, None)], counts);
        assert!(!text.contains("toru_plugin_cpu_seconds{"), "{text}");
    }
}
