//! Metrics the plugins define: their declarations, checked once at load,
//! and their samples, checked at each report.

use crate::bindings::exports::warden::policy::stats as wit;

/// The most metrics one plugin may declare.
const MAX_METRICS: usize = 64;

/// The most labels one metric may have.
const MAX_LABELS: usize = 8;

/// The most samples one report may hold.
const MAX_SAMPLES: usize = 10_000;

/// The longest help text or label value.
const MAX_TEXT: usize = 256;

/// What kind of metric a plugin declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations; warden keeps their count and sum.
    Histogram,
}

/// A metric a plugin declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// Its name, without warden's prefix.
    pub name: String,
    /// One line of help.
    pub help: String,
    /// Its kind.
    pub kind: MetricKind,
    /// The names of its labels.
    pub labels: Vec<String>,
}

/// A value of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The label values, in the declared order.
    pub labels: Vec<String>,
    /// The value; for a histogram, the count and sum of its observations.
    pub value: Value,
}

/// A sample's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// A counter's or gauge's value.
    Plain(f64),
    /// A histogram's observations so far.
    Observed {
        /// How many.
        count: u64,
        /// Their sum.
        sum: f64,
    },
}

/// One plugin's metrics and their samples.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginMetrics {
    /// The plugin's name.
    pub plugin: String,
    /// Each metric with its samples.
    pub metrics: Vec<(Metric, Vec<Sample>)>,
}

/// Something that happened in a service, told to its plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A process started.
    Spawned(u32),
    /// A process ended.
    Exited(u32),
    /// A connection was accepted.
    Accepted(u64),
    /// A connection closed.
    Closed(u64),
    /// A connection was evicted.
    Evicted(u64),
    /// A connection's client logged in.
    Authenticated(u64),
    /// Every process was full at the process limit.
    Full,
    /// The service was throttled for this long.
    Throttled(u64),
    /// An idle process was asked to exit.
    IdleAsked(u32),
}

impl Event {
    /// The contract's form.
    pub(crate) fn wit(self) -> wit::Event {
        match self {
            Event::Spawned(pid) => wit::Event::Spawned(pid),
            Event::Exited(pid) => wit::Event::Exited(pid),
            Event::Accepted(id) => wit::Event::Accepted(id),
            Event::Closed(id) => wit::Event::Closed(id),
            Event::Evicted(id) => wit::Event::Evicted(id),
            Event::Authenticated(id) => wit::Event::Authenticated(id),
            Event::Full => wit::Event::Full,
            Event::Throttled(ms) => wit::Event::Throttled(ms),
            Event::IdleAsked(pid) => wit::Event::IdleAsked(pid),
        }
    }
}

/// Whether `name` is `[a-z_][a-z0-9_]*` and at most 64 bytes.
fn metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks a `declare` answer.
pub(crate) fn check_declared(metrics: Vec<wit::Metric>) -> Result<Vec<Metric>, String> {
    if metrics.len() > MAX_METRICS {
        return Err(format!(
            "{} metrics, more than {MAX_METRICS}",
            metrics.len()
        ));
    }
    let mut checked: Vec<Metric> = Vec::with_capacity(metrics.len());
    for metric in metrics {
        if !metric_name(&metric.name) {
            return Err(format!(
                "the metric name {:?}; names are [a-z_][a-z0-9_]*, at most 64 bytes",
                metric.name
            ));
        }
        if checked.iter().any(|m| m.name == metric.name) {
            return Err(format!("the metric {} twice", metric.name));
        }
        if metric.help.len() > MAX_TEXT || metric.help.contains('\n') {
            return Err(format!(
                "help for {} that is not one line of at most {MAX_TEXT} bytes",
                metric.name
            ));
        }
        let repeated = metric.labels.iter().enumerate().any(|(place, label)| {
            metric
                .labels
                .get(..place)
                .is_some_and(|b| b.contains(label))
        });
        let reserved = metric.labels.iter().any(|l| l == "quantile" || l == "le");
        if metric.labels.len() > MAX_LABELS
            || !metric.labels.iter().all(|l| metric_name(l))
            || repeated
            || reserved
        {
            return Err(format!(
                "labels {:?} for {}; at most {MAX_LABELS}, each [a-z_][a-z0-9_]* once, not quantile or le",
                metric.labels, metric.name
            ));
        }
        checked.push(Metric {
            name: metric.name,
            help: metric.help,
            kind: match metric.kind {
                wit::MetricKind::Counter => MetricKind::Counter,
                wit::MetricKind::Gauge => MetricKind::Gauge,
                wit::MetricKind::Histogram => MetricKind::Histogram,
            },
            labels: metric.labels,
        });
    }
    Ok(checked)
}

/// Checks a `report` answer against the declarations: each sample of a
/// declared metric, with its labels, and a finite value.
pub(crate) fn check_samples(
    declared: &[Metric],
    samples: Vec<wit::Sample>,
) -> Result<Vec<(usize, Vec<String>, f64)>, String> {
    if samples.len() > MAX_SAMPLES {
        return Err(format!(
            "{} samples, more than {MAX_SAMPLES}",
            samples.len()
        ));
    }
    samples
        .into_iter()
        .map(|sample| {
            let index = declared
                .iter()
                .position(|m| m.name == sample.metric)
                .ok_or_else(|| {
                    format!("a sample of {:?}, which it did not declare", sample.metric)
                })?;
            let expected = declared.get(index).map_or(0, |m| m.labels.len());
            if sample.labels.len() != expected {
                return Err(format!(
                    "{} label values for {}, which has {expected} labels",
                    sample.labels.len(),
                    sample.metric
                ));
            }
            if sample.labels.iter().any(|l| l.len() > MAX_TEXT) {
                return Err(format!(
                    "a label value of {} longer than {MAX_TEXT} bytes",
                    sample.metric
                ));
            }
            if !sample.value.is_finite() {
                return Err(format!("the value {} for {}", sample.value, sample.metric));
            }
            Ok((index, sample.labels, sample.value))
        })
        .collect()
}
