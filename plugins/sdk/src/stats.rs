//! The figures a built-in plugin reports for its services, tallied from the
//! events warden tells it of.
//!
//! Each plugin picks the [`Figure`]s that matter for its service; the
//! [`Tally`] keeps them per service. A tally lives in the plugin's
//! instance, so it starts again from zero when warden replaces the
//! instance (after a failed call, or on reload); Prometheus reads that as a
//! counter reset.

use std::collections::{BTreeMap, BTreeSet};

/// Something that happened in a service.
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
    /// The service was throttled for this many milliseconds.
    Throttled(u64),
    /// An idle process was asked to exit.
    IdleAsked(u32),
}

/// What kind of metric a figure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// A figure a plugin can report, one metric each, labelled by service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Processes started.
    Started,
    /// Processes ended.
    Exited,
    /// Connections accepted.
    Accepted,
    /// Connections open that have not logged in.
    Waiting,
    /// Connections evicted to make room.
    Evicted,
    /// Connections whose client logged in.
    LoggedIn,
    /// Times every process was full at the process limit, at most once a
    /// second.
    Full,
    /// Times the service was throttled.
    Throttled,
    /// Idle processes asked to exit.
    IdleAsked,
}

impl Figure {
    /// The metric's name, help and kind.
    pub fn metric(self) -> (&'static str, &'static str, MetricKind) {
        match self {
            Figure::Started => (
                "processes_started",
                "Processes started",
                MetricKind::Counter,
            ),
            Figure::Exited => ("processes_exited", "Processes ended", MetricKind::Counter),
            Figure::Accepted => (
                "connections_accepted",
                "Connections accepted",
                MetricKind::Counter,
            ),
            Figure::Waiting => (
                "connections_waiting",
                "Open connections whose client has not logged in",
                MetricKind::Gauge,
            ),
            Figure::Evicted => (
                "connections_evicted",
                "Connections closed to make room in a full service",
                MetricKind::Counter,
            ),
            Figure::LoggedIn => (
                "connections_logged_in",
                "Connections whose client logged in",
                MetricKind::Counter,
            ),
            Figure::Full => (
                "full",
                "Times every process was full at process_limit (at most once a second)",
                MetricKind::Counter,
            ),
            Figure::Throttled => (
                "throttled",
                "Times the service was throttled",
                MetricKind::Counter,
            ),
            Figure::IdleAsked => (
                "idle_asked",
                "Idle processes asked to exit",
                MetricKind::Counter,
            ),
        }
    }
}

/// The most open connections a tally remembers per service; past it, new
/// connections are counted but not tracked as waiting.
const MAX_TRACKED: usize = 1 << 20;

/// One service's figures.
#[derive(Debug, Clone, Default)]
struct Counts {
    started: u64,
    exited: u64,
    accepted: u64,
    waiting: BTreeSet<u64>,
    evicted: u64,
    logged_in: u64,
    full: u64,
    throttled: u64,
    idle_asked: u64,
}

impl Counts {
    fn value(&self, figure: Figure) -> f64 {
        let count = match figure {
            Figure::Started => self.started,
            Figure::Exited => self.exited,
            Figure::Accepted => self.accepted,
            Figure::Waiting => u64::try_from(self.waiting.len()).unwrap_or(u64::MAX),
            Figure::Evicted => self.evicted,
            Figure::LoggedIn => self.logged_in,
            Figure::Full => self.full,
            Figure::Throttled => self.throttled,
            Figure::IdleAsked => self.idle_asked,
        };
        // Figures stay far below 2^53, where f64 is exact.
        #[allow(clippy::cast_precision_loss, reason = "counts stay below 2^53")]
        let value = count as f64;
        value
    }
}

/// The figures of every service a plugin was told about.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    services: BTreeMap<String, Counts>,
}

impl Tally {
    /// Counts `event` for `service`.
    pub fn observe(&mut self, service: &str, event: Event) {
        let counts = self.services.entry(service.to_owned()).or_default();
        match event {
            Event::Spawned(_) => counts.started += 1,
            Event::Exited(_) => counts.exited += 1,
            Event::Accepted(id) => {
                counts.accepted += 1;
                if counts.waiting.len() < MAX_TRACKED {
                    counts.waiting.insert(id);
                }
            }
            Event::Closed(id) => {
                counts.waiting.remove(&id);
            }
            Event::Evicted(id) => {
                counts.evicted += 1;
                counts.waiting.remove(&id);
            }
            Event::Authenticated(id) => {
                counts.logged_in += 1;
                counts.waiting.remove(&id);
            }
            Event::Full => counts.full += 1,
            Event::Throttled(_) => counts.throttled += 1,
            Event::IdleAsked(_) => counts.idle_asked += 1,
        }
    }

    /// `(metric, service, value)` of each of `figures` for each service.
    pub fn report(&self, figures: &[Figure]) -> Vec<(&'static str, String, f64)> {
        self.services
            .iter()
            .flat_map(|(service, counts)| {
                figures
                    .iter()
                    .map(|figure| (figure.metric().0, service.clone(), counts.value(*figure)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_counts_open_connections_not_logged_in() {
        let mut tally = Tally::default();
        for id in 1..=4 {
            tally.observe("imap-login", Event::Accepted(id));
        }
        tally.observe("imap-login", Event::Authenticated(1));
        tally.observe("imap-login", Event::Evicted(2));
        tally.observe("imap-login", Event::Closed(3));
        tally.observe("imap-login", Event::Closed(1));
        let report = tally.report(&[Figure::Waiting, Figure::Evicted, Figure::LoggedIn]);
        assert_eq!(
            report,
            [
                ("connections_waiting", "imap-login".to_owned(), 1.0),
                ("connections_evicted", "imap-login".to_owned(), 1.0),
                ("connections_logged_in", "imap-login".to_owned(), 1.0),
            ]
        );
    }
}
