//! Rate-limited logging of what outside parties can make happen.
//!
//! A stranger can send the notify socket a hundred thousand datagrams, or
//! open as many connections with a broken PROXY header or past the
//! admission policy; one log line each would let them fill the disk and
//! drown the lines that matter. [`LogLimiter`] lets the first event of a
//! kind through at once, in full, then counts the rest and lets through
//! one summary per [`INTERVAL`]: how many there were and one example.
//! A kind quiet for a whole interval is forgotten, so its next event is
//! again logged at once.
//!
//! It only decides; the master writes the lines (each kind has its own
//! wording and level) and still counts every event in its metrics. It
//! holds one entry per kind heard from in the last interval, so its size
//! is bounded by the kinds, which the configuration bounds, never by the
//! events.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often a kind of event is summarised while it goes on.
pub(super) const INTERVAL: Duration = Duration::from_secs(10);

/// What was held back of one kind in one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Summary {
    /// How many events were not logged.
    pub count: u64,
    /// The first of them, as the caller described it.
    pub example: String,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    held: u64,
    example: Option<String>,
}

/// Decides which events of each kind `K` are logged.
#[derive(Debug)]
pub(super) struct LogLimiter<K> {
    interval: Duration,
    windows: BTreeMap<K, Window>,
}

impl<K: Ord + Clone> LogLimiter<K> {
    /// A limiter that summarises each kind once per `interval`.
    pub(super) fn new(interval: Duration) -> LogLimiter<K> {
        LogLimiter {
            interval,
            windows: BTreeMap::new(),
        }
    }

    /// Whether an event of `kind` at `now` is to be logged now. When it is
    /// not, it is counted, and `example` describes it if it is the first
    /// held back in this interval.
    pub(super) fn allow(
        &mut self,
        kind: &K,
        now: Instant,
        example: impl FnOnce() -> String,
    ) -> bool {
        match self.windows.get_mut(kind) {
            Some(window) => {
                window.held += 1;
                if window.example.is_none() {
                    window.example = Some(example());
                }
                false
            }
            None => {
                self.windows.insert(
                    kind.clone(),
                    Window {
                        opened: now,
                        held: 0,
                        example: None,
                    },
                );
                true
            }
        }
    }

    /// The summaries of the intervals that ended by `now`, one per kind
    /// that had events held back. A kind that goes on gets a new interval;
    /// one that had none is forgotten.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(K, Summary)> {
        let mut summaries = Vec::new();
        let interval = self.interval;
        self.windows.retain(|kind, window| {
            if now.saturating_duration_since(window.opened) < interval {
                return true;
            }
            if window.held == 0 {
                return false;
            }
            summaries.push((
                kind.clone(),
                Summary {
                    count: window.held,
                    example: window.example.take().unwrap_or_default(),
                },
            ));
            *window = Window {
                opened: now,
                held: 0,
                example: None,
            };
            true
        });
        summaries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_passes_the_rest_are_summarised_once_per_interval() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut limiter = LogLimiter::new(Duration::from_secs(10));
        assert!(limiter.allow(&"stranger", at(0), || "first".into()));
        for n in 1..=1000 {
            assert!(!limiter.allow(&"stranger", at(n), || format!("event {n}")));
        }
        // Another kind has its own window.
        assert!(limiter.allow(&"proxy", at(5), String::new));
        assert_eq!(limiter.due(at(9_999)), []);
        assert_eq!(
            limiter.due(at(10_000)),
            [(
                "stranger",
                Summary {
                    count: 1000,
                    example: "event 1".into()
                }
            )]
        );
        // Still going: counted into the next interval, summarised after it.
        assert!(!limiter.allow(&"stranger", at(12_000), || "later".into()));
        assert_eq!(limiter.due(at(15_000)), []);
        assert_eq!(
            limiter.due(at(20_000)),
            [(
                "stranger",
                Summary {
                    count: 1,
                    example: "later".into()
                }
            )]
        );
        // Quiet for a whole interval: forgotten, so the next passes at once.
        assert_eq!(limiter.due(at(30_000)), []);
        assert!(limiter.allow(&"stranger", at(30_001), String::new));
        assert!(limiter.allow(&"proxy", at(30_002), String::new));
    }
}
