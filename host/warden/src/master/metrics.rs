//! The master's metrics, in OpenMetrics text for Prometheus.
//!
//! The families are kept with `prometheus-client`, which also writes the
//! exposition format. The endpoint is a minimal HTTP/1.1 responder written
//! here, because all it ever does is answer any request with the current
//! text and close; a full HTTP stack would be the largest dependency of the
//! supervisor for that. It reads at most a few kilobytes of request, for at
//! most a few seconds, and gives the client as long to take the answer, so
//! a client cannot make it hold more; and a failed accept (a full
//! descriptor table) is logged and retried after a rest, so the endpoint
//! serves again as soon as descriptors are free.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use warden_policy::runtime::{CALL_BUCKETS, HookTimes};
use warden_policy::stats::{MetricKind, PluginMetrics, Value};

use super::ACCEPT_BACKOFF;
use crate::config::MetricsListen;

/// Labels naming a service.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ServiceLabel {
    /// The service's name.
    pub service: String,
}

/// Labels of an exit.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ExitLabels {
    /// The service's name.
    pub service: String,
    /// `clean`, `failure`, `signal`, or `asked` (idle kill, reload, stop).
    pub cause: String,
}

/// Labels of a reload.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReloadLabels {
    /// `ok`, or `failed` (the running configuration stayed).
    pub result: String,
}

/// Labels of a refused connection.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RejectLabels {
    /// The service's name.
    pub service: String,
    /// Why: the admission policy's reason, or the PROXY rule broken.
    pub reason: String,
}

/// Labels naming a policy plugin.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginLabel {
    /// The plugin's name.
    pub plugin: String,
}

/// A plugin's call figures as last published, so the counters go on
/// rising across a reload that made the plugin afresh.
#[derive(Debug, Default, Clone, Copy)]
struct Published {
    calls: u64,
    failures: u64,
}

/// Each loaded plugin's hooks' call times, as last published: plugin,
/// hook, times.
type PublishedTimes = Arc<Mutex<Vec<(String, String, HookTimes)>>>;

/// Writes `warden_policy_call_seconds`, a histogram of call times per
/// plugin and hook, from what was last published.
#[derive(Debug)]
struct CallTimes(PublishedTimes);

impl Collector for CallTimes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let times = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut metric = encoder.encode_descriptor(
            "policy_call_seconds",
            "Time of the calls to each hook of the policy plugin since it was loaded",
            None,
            MetricType::Histogram,
        )?;
        for (plugin, hook, times) in times.iter() {
            let buckets: Vec<(f64, u64)> = CALL_BUCKETS
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(times.buckets.iter().copied())
                .collect();
            let labels = [("plugin", plugin.as_str()), ("hook", hook.as_str())];
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(times.seconds, times.calls, &buckets, None)?;
        }
        Ok(())
    }
}

/// Writes each plugin's metrics as the families it declared, from its
/// last report: `warden_plugin_PLUGIN_METRIC` (each character of the
/// plugin's name a metric name cannot hold written `_`), each sample
/// labelled as the plugin declared. A histogram's observations are
/// written as a histogram of their count and sum alone (one `+Inf`
/// bucket). Names and labels were checked when the plugin declared them,
/// and values at each report; two plugins whose families would share a
/// name were refused at load.
#[derive(Debug)]
struct PluginFamilies(Arc<Mutex<Vec<PluginMetrics>>>);

impl Collector for PluginFamilies {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for report in reports.iter() {
            for (metric, samples) in &report.metrics {
                let name = warden_policy::stats::family(&report.plugin, &metric.name);
                let kind = match metric.kind {
                    MetricKind::Counter => MetricType::Counter,
                    MetricKind::Gauge => MetricType::Gauge,
                    MetricKind::Histogram => MetricType::Histogram,
                };
                let mut family = encoder.encode_descriptor(&name, &metric.help, None, kind)?;
                for sample in samples {
                    let labels: Vec<(&str, &str)> = metric
                        .labels
                        .iter()
                        .map(String::as_str)
                        .zip(sample.labels.iter().map(String::as_str))
                        .collect();
                    let mut series = family.encode_family(&labels)?;
                    match (metric.kind, sample.value) {
                        (MetricKind::Counter, Value::Plain(value)) => {
                            series.encode_counter::<NoLabelSet, f64, f64>(&value, None)?;
                        }
                        (_, Value::Plain(value)) => series.encode_gauge(&value)?,
                        (_, Value::Observed { count, sum }) => series
                            .encode_histogram::<NoLabelSet>(
                                sum,
                                count,
                                &[(f64::INFINITY, count)],
                                None,
                            )?,
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every metric the master keeps.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    /// Processes of each service now.
    pub processes: Family<ServiceLabel, Gauge>,
    /// Each service's `process_limit`, for saturation.
    pub process_limit: Family<ServiceLabel, Gauge>,
    /// The master's resident memory, in bytes.
    pub resident: Gauge,
    /// Connections each service can take now without a new process.
    pub available_slots: Family<ServiceLabel, Gauge>,
    /// Clients of each service now, as its processes report them.
    pub connections: Family<ServiceLabel, Gauge>,
    /// Processes started.
    pub spawns: Family<ServiceLabel, Counter>,
    /// Processes ended, by cause.
    pub exits: Family<ExitLabels, Counter>,
    /// Whether each service is throttled now.
    pub throttled: Family<ServiceLabel, Gauge>,
    /// Times each service was throttled.
    pub throttles: Family<ServiceLabel, Counter>,
    /// Connections dropped because the service was at `process_limit`.
    pub dropped: Family<ServiceLabel, Counter>,
    /// Connections refused before they reached a process, by reason.
    pub rejected: Family<RejectLabels, Counter>,
    /// Connections of a full login service closed to make room.
    pub evicted: Family<ServiceLabel, Counter>,
    /// Dovecot status records ignored: from an unknown pid, or with a
    /// generation not given to that pid.
    pub ignored_status: Counter,
    /// Reloads, by result.
    pub reloads: Family<ReloadLabels, Counter>,
    /// When the configuration was last loaded (start or reload), in
    /// seconds since the epoch.
    pub last_reload: Gauge,
    /// Calls made to each policy plugin.
    plugin_calls: Family<PluginLabel, Counter>,
    /// Calls to each policy plugin that failed, and fell back.
    plugin_failures: Family<PluginLabel, Counter>,
    /// Whether each policy plugin is quarantined now.
    plugin_quarantined: Family<PluginLabel, Gauge>,
    /// The mean time of each plugin's recent calls.
    plugin_call_mean: Family<PluginLabel, Gauge<f64, AtomicU64>>,
    /// The 99th percentile of each plugin's recent calls.
    plugin_call_p99: Family<PluginLabel, Gauge<f64, AtomicU64>>,
    /// What was last published of each plugin's calls.
    published: Mutex<HashMap<String, Published>>,
    /// Each plugin's hooks' call times, for `warden_policy_call_seconds`.
    call_times: PublishedTimes,
    /// Each plugin's own metrics, as it last reported them.
    plugin_reports: Arc<Mutex<Vec<PluginMetrics>>>,
}

impl Metrics {
    /// The metrics, and a registry that encodes them.
    pub(super) fn new() -> (Arc<Metrics>, Arc<Registry>) {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::with_prefix("warden");
        registry.register(
            "processes",
            "Processes of the service",
            metrics.processes.clone(),
        );
        registry.register(
            "process_limit",
            "The service's process_limit: processes over it is its saturation",
            metrics.process_limit.clone(),
        );
        registry.register(
            "master_resident_memory_bytes",
            "The master's resident memory",
            metrics.resident.clone(),
        );
        registry.register(
            "available_slots",
            "Connections the service can take now without a new process",
            metrics.available_slots.clone(),
        );
        registry.register(
            "connections",
            "Clients of the service, as its processes report them",
            metrics.connections.clone(),
        );
        registry.register("spawns", "Processes started", metrics.spawns.clone());
        registry.register("exits", "Processes ended, by cause", metrics.exits.clone());
        registry.register(
            "throttled",
            "1 while the service is throttled after failures",
            metrics.throttled.clone(),
        );
        registry.register(
            "throttles",
            "Times the service was throttled",
            metrics.throttles.clone(),
        );
        registry.register(
            "dropped_connections",
            "Connections dropped because the service was at process_limit",
            metrics.dropped.clone(),
        );
        registry.register(
            "rejected_connections",
            "Connections refused before they reached a process, by reason",
            metrics.rejected.clone(),
        );
        registry.register(
            "evicted_connections",
            "Connections of a full login service closed to make room",
            metrics.evicted.clone(),
        );
        registry.register(
            "build",
            "The warden binary",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register(
            "reloads",
            "Reloads of the configuration, by result (a failed one keeps the running configuration)",
            metrics.reloads.clone(),
        );
        registry.register(
            "last_reload_timestamp_seconds",
            "When the running configuration was loaded, at start or by a reload, in seconds since the epoch",
            metrics.last_reload.clone(),
        );
        // Both results exist from the start, for alerts on a rate.
        for result in ["ok", "failed"] {
            drop(metrics.reloads.get_or_create(&ReloadLabels {
                result: result.to_owned(),
            }));
        }
        metrics.loaded_now();
        registry.register(
            "policy_calls",
            "Calls made to the policy plugin",
            metrics.plugin_calls.clone(),
        );
        registry.register(
            "policy_failures",
            "Calls to the policy plugin that failed (trap, deadline, memory cap, invalid answer) and fell back",
            metrics.plugin_failures.clone(),
        );
        registry.register(
            "policy_quarantined",
            "Whether the policy plugin is quarantined until the next reload",
            metrics.plugin_quarantined.clone(),
        );
        registry.register(
            "policy_call_mean_seconds",
            "The mean time of the policy plugin's last 1024 calls",
            metrics.plugin_call_mean.clone(),
        );
        registry.register(
            "policy_call_p99_seconds",
            "The 99th percentile time of the policy plugin's last 1024 calls",
            metrics.plugin_call_p99.clone(),
        );
        registry.register_collector(Box::new(CallTimes(Arc::clone(&metrics.call_times))));
        registry.register_collector(Box::new(PluginFamilies(Arc::clone(
            &metrics.plugin_reports,
        ))));
        registry.register(
            "dovecot_ignored_status_records",
            "Status records of dovecot-interface services ignored: unknown pid or wrong generation",
            metrics.ignored_status.clone(),
        );
        (metrics, Arc::new(registry))
    }
}

impl super::Master {
    /// Records why the host should get no traffic now, or that it should,
    /// for `/ready` and in the status line systemd shows.
    pub(super) fn set_unready(&self, why: Option<String>) {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(
            &self.status_line(why.as_deref()),
        )]);
        *self.unready.lock().unwrap_or_else(PoisonError::into_inner) = why;
    }

    /// The status line systemd shows (`STATUS=`): how many services run,
    /// or why the host is not ready.
    pub(super) fn status_line(&self, unready: Option<&str>) -> String {
        match unready {
            Some(why) => format!("not ready: {why}"),
            None => format!(
                "{} services",
                self.services.iter().filter(|s| s.runs).count()
            ),
        }
    }
}

impl Metrics {
    /// Records that a configuration was loaded now.
    pub(super) fn loaded_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        self.last_reload.set(i64::try_from(now).unwrap_or(i64::MAX));
    }

    /// Publishes each loaded plugin's calls, failures, quarantine and
    /// call times.
    pub(super) fn plugins_now(&self, plugins: &[warden_policy::Plugin]) {
        let mut published = self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut call_times = self
            .call_times
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        call_times.clear();
        for plugin in plugins {
            let name = &plugin.identity().name;
            let label = PluginLabel {
                plugin: name.clone(),
            };
            let stats = plugin.stats();
            call_times.extend(
                stats
                    .hooks()
                    .iter()
                    .map(|(hook, times)| (name.clone(), hook.clone(), times.clone())),
            );
            let last = published.entry(name.clone()).or_default();
            // A plugin made afresh (a reload, a new file) counts from 0
            // again: what it counted since is all new.
            let rise = |now: u64, before: u64| if now >= before { now - before } else { now };
            self.plugin_calls
                .get_or_create(&label)
                .inc_by(rise(stats.calls, last.calls));
            self.plugin_failures
                .get_or_create(&label)
                .inc_by(rise(stats.failures, last.failures));
            *last = Published {
                calls: stats.calls,
                failures: stats.failures,
            };
            self.plugin_quarantined
                .get_or_create(&label)
                .set(i64::from(plugin.quarantined()));
            self.plugin_call_mean
                .get_or_create(&label)
                .set(stats.mean().as_secs_f64());
            self.plugin_call_p99
                .get_or_create(&label)
                .set(stats.p99().as_secs_f64());
        }
    }

    /// Makes every series of `service` whose labels are known in advance
    /// exist, at 0 until something happens: an alert on a rate or an
    /// absence sees the service from its start. Refusals are labelled by
    /// reasons that come with them, so they appear with the first. Called
    /// as the service is set up, at start and at each reload, with its
    /// `process_limit`.
    pub(super) fn service_present(&self, service: &ServiceLabel, process_limit: u32) {
        self.process_limit
            .get_or_create(service)
            .set(i64::from(process_limit));
        for family in [&self.spawns, &self.throttles, &self.dropped, &self.evicted] {
            drop(family.get_or_create(service));
        }
        drop(self.throttled.get_or_create(service));
        for cause in ["clean", "failure", "signal", "asked"] {
            drop(self.exits.get_or_create(&ExitLabels {
                service: service.service.clone(),
                cause: cause.to_owned(),
            }));
        }
    }

    /// Keeps the plugins' latest `reports` for the metrics page.
    pub(super) fn plugins_reported(&self, reports: Vec<PluginMetrics>) {
        *self
            .plugin_reports
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = reports;
    }

    /// Counts a reload that ended `ok` or not.
    pub(super) fn reloaded(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.to_owned(),
            })
            .inc();
        if ok {
            self.loaded_now();
        }
    }
}

/// The master's resident memory, from `/proc/self/status`; `None` where
/// there is no such file.
pub(super) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The label of `service`.
pub(super) fn label(service: &str) -> ServiceLabel {
    ServiceLabel {
        service: service.to_owned(),
    }
}

/// The most request bytes read before answering.
const MAX_REQUEST: usize = 8192;

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why the master should get no traffic now, if so: what `/ready`
/// answers 503 with (stopping, a service given up).
pub(super) type Unready = Arc<Mutex<Option<String>>>;

/// Serves the metrics on `listen` until the task is aborted: the master's
/// own and the plugins', from `registry`. Only binding can
/// fail; a failed accept (out of descriptors, most often) is logged and
/// waited out, and the endpoint goes on.
pub(super) async fn serve(
    listen: MetricsListen,
    registry: Arc<Registry>,
    unready: Unready,
) -> std::io::Result<()> {
    match listen {
        MetricsListen::Inet(address) => {
            let listener = tokio::net::TcpListener::bind(address).await?;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, Arc::clone(&registry), Arc::clone(&unready)));
                    }
                    Err(error) => rest_after(&error).await,
                }
            }
        }
        MetricsListen::Unix(path) => {
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)?;
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(answer(stream, Arc::clone(&registry), Arc::clone(&unready)));
                    }
                    Err(error) => rest_after(&error).await,
                }
            }
        }
    }
}

/// Logs a failed accept and rests for [`ACCEPT_BACKOFF`]: one line per
/// rest, so the loop neither spins nor floods the log while the cause (a
/// full descriptor table) lasts.
async fn rest_after(error: &std::io::Error) {
    tracing::error!(
        %error,
        "the metrics endpoint cannot accept a connection; retrying in {}ms (raise the descriptor limit, ulimit -n, if it says too many open files)",
        ACCEPT_BACKOFF.as_millis()
    );
    tokio::time::sleep(ACCEPT_BACKOFF).await;
}

/// The master's metrics and the plugins', in OpenMetrics text.
pub(super) fn render(registry: &Registry) -> String {
    let mut body = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode_registry(&mut body, registry);
    let _ = prometheus_client::encoding::text::encode_eof(&mut body);
    body
}

/// Reads the request head (or what fits) and answers with the metrics.
/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// `GET` or `HEAD` of `/metrics` (or `/`).
    Metrics,
    /// `GET` or `HEAD` of `/ready`: whether to send the host traffic.
    Ready,
    /// Another path.
    NotFound,
    /// Another method.
    NotAllowed,
}

/// The route of the request whose head is `request`.
fn route(request: &[u8]) -> Route {
    let line = request
        .split(|&b| b == b'\r' || b == b'\n')
        .next()
        .unwrap_or_default();
    let mut words = line.split(|&b| b == b' ');
    let (method, target) = (
        words.next().unwrap_or_default(),
        words.next().unwrap_or_default(),
    );
    if method != b"GET" && method != b"HEAD" {
        return Route::NotAllowed;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    match path {
        b"/metrics" | b"/" => Route::Metrics,
        b"/ready" => Route::Ready,
        _ => Route::NotFound,
    }
}

/// Whether the request's `Accept` header asks for the Prometheus text
/// format (0.0.4) and not for OpenMetrics: what older scrapers and tools
/// send. Without the header, or with OpenMetrics or `*/*` in it, the
/// answer is OpenMetrics.
fn wants_prometheus_text(request: &[u8]) -> bool {
    let request = String::from_utf8_lossy(request);
    let Some(accept) = request.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("accept")
            .then(|| value.to_ascii_lowercase())
    }) else {
        return false;
    };
    accept.contains("text/plain")
        && !accept.contains("application/openmetrics-text")
        && !accept.contains("*/*")
}

/// The OpenMetrics text `open` in the Prometheus text format 0.0.4: a
/// counter's family named with its `_total`, an info family as a gauge of
/// its `_info` sample, and no `# UNIT` or `# EOF` lines.
fn prometheus_text(open: &str) -> String {
    let mut out = String::with_capacity(open.len());
    // Each renamed family: its name in 0.0.4 and its type there, from its
    // `# TYPE` line, for its `# HELP` line too, which comes first.
    let mut renamed: HashMap<&str, (String, &str)> = HashMap::new();
    for line in open.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((family, kind)) = rest.split_once(' ')
        {
            let new = match kind {
                "counter" => (format!("{family}_total"), "counter"),
                "info" => (format!("{family}_info"), "gauge"),
                _ => continue,
            };
            renamed.insert(family, new);
        }
    }
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed_line = ["TYPE", "HELP"].into_iter().find_map(|comment| {
            let rest = line
                .strip_prefix("# ")?
                .strip_prefix(comment)?
                .strip_prefix(' ')?;
            let (family, text) = rest.split_once(' ')?;
            let (name, kind) = renamed.get(family)?;
            Some(match comment {
                "TYPE" => format!("# TYPE {name} {kind}"),
                _ => format!("# HELP {name} {text}"),
            })
        });
        out.push_str(renamed_line.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

async fn answer(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    registry: Arc<Registry>,
    unready: Unready,
) {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = async {
        while request.len() < MAX_REQUEST && !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(read) => request.extend_from_slice(chunk.get(..read).unwrap_or_default()),
            }
        }
    };
    // A client that sends nothing does not keep its connection open.
    if tokio::time::timeout(REQUEST_TIMEOUT, head).await.is_err() {
        return;
    }
    let (status, kind, body) = match route(&request) {
        Route::Metrics if wants_prometheus_text(&request) => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            prometheus_text(&render(&registry)),
        ),
        Route::Metrics => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            render(&registry),
        ),
        Route::Ready => {
            let why = unready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            match why {
                None => ("200 OK", "text/plain; charset=utf-8", "ready\n".to_owned()),
                Some(why) => (
                    "503 Service Unavailable",
                    "text/plain; charset=utf-8",
                    format!("not ready: {why}\n"),
                ),
            }
        }
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "not found; the metrics are at /metrics, readiness at /ready\n".to_owned(),
        ),
        Route::NotAllowed => (
            "405 Method Not Allowed\r\nAllow: GET, HEAD",
            "text/plain; charset=utf-8",
            "only GET and HEAD\n".to_owned(),
        ),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // A HEAD request gets the head only.
    let body = if request.starts_with(b"HEAD ") {
        String::new()
    } else {
        body
    };
    // Nor does one that asks and then does not read the answer.
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_routed_by_method_and_path() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"HEAD /metrics HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /?x=1 HTTP/1.1\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /favicon.ico HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(route(b"GET /ready HTTP/1.1\r\n\r\n"), Route::Ready);
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::NotAllowed);
        assert_eq!(route(b""), Route::NotAllowed);
    }

    #[test]
    fn the_prometheus_text_format_is_given_to_who_asks_for_it_alone() {
        let asking = |accept: &str| {
            wants_prometheus_text(format!("GET /metrics HTTP/1.1\r\n{accept}\r\n\r\n").as_bytes())
        };
        assert!(asking("Accept: text/plain;version=0.0.4"));
        assert!(asking("accept: text/plain"));
        assert!(!asking(""));
        assert!(!asking("Accept: */*"));
        assert!(!asking(
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        ));
        let open = "\
# HELP warden_spawns Processes started.
# TYPE warden_spawns counter
warden_spawns_total{service=\"imap\"} 3
# HELP warden_build The warden binary.
# TYPE warden_build info
warden_build_info{version=\"0.1.0\"} 1
# HELP warden_processes Processes of the service.
# TYPE warden_processes gauge
warden_processes{service=\"imap\"} 1
# EOF
";
        assert_eq!(
            prometheus_text(open),
            "\
# HELP warden_spawns_total Processes started.
# TYPE warden_spawns_total counter
warden_spawns_total{service=\"imap\"} 3
# HELP warden_build_info The warden binary.
# TYPE warden_build_info gauge
warden_build_info{version=\"0.1.0\"} 1
# HELP warden_processes Processes of the service.
# TYPE warden_processes gauge
warden_processes{service=\"imap\"} 1
"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_read_the_answer_is_let_go_after_the_deadline() {
        let registry = Metrics::new().1;
        // Room for the request, not for the answer.
        let (mut client, server) = tokio::io::duplex(64);
        client
            .write_all(b"GET /metrics HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let served = tokio::time::timeout(
            REQUEST_TIMEOUT * 2,
            answer(server, registry, Unready::default()),
        )
        .await;
        assert!(served.is_ok(), "the answer waited on past its deadline");
        drop(client);
    }
}
