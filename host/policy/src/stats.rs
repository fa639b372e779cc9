//! Metrics the plugins define: their declarations, checked once at load,
//! and their samples, checked at each report.

use crate::bindings::exports::warden::policy::stats as wit;

/// The family a plugin's metric is shown as on the metrics endpoint:
/// `plugin_PLUGIN_METRIC`, with every character of the plugin's name that
/// a metric name cannot hold written `_` (warden adds its `warden_`).
pub fn family(plugin: &str, metric: &str) -> String {
    let plugin = plugin.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    format!("plugin_{plugin}_{metric}")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_named_apart_can_share_a_family_which_is_why_it_is_checked() {
        assert_eq!(family("auth-worker", "spawns"), "plugin_auth_worker_spawns");
        assert_eq!(
            family("auth_worker", "spawns"),
            family("auth-worker", "spawns")
        );
        assert_eq!(family("a", "b_c"), family("a_b", "c"));
    }
}
