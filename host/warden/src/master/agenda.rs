//! Which services the master's round looks at.
//!
//! The round used to visit every configured service ten times a second,
//! asking each one's scaling policy (a plugin call) and refreshing its
//! gauges: an idle master with 10,000 services spent most of a core on
//! services with nothing to do. The [`Agenda`] holds the services that
//! need the next round — something happened to them (an event reached
//! them, or their last round left work: processes to start, connections
//! waiting, a channel to flush) — and a timer per service for what its own
//! clock brings (a throttle ending, an idle-kill round, a first-report
//! deadline, an idle exit's next step). A service with nothing to do and
//! nothing due is not visited at all, so an idle master's work does not
//! grow with the services it has.
//!
//! It only remembers; the master decides what touches a service and what
//! a service's next time is. A timer left from a state that changed
//! (a throttle ended early by a reload) costs one visit that finds nothing,
//! never a missed one.

use std::collections::BTreeSet;
use std::time::Instant;

/// The services the round visits now, and when the others are due.
#[derive(Debug, Default)]
pub(super) struct Agenda {
    /// Services to visit at the next round, by place in the table.
    next_round: BTreeSet<usize>,
    /// Services to visit once their time has come.
    timers: BTreeSet<(Instant, usize)>,
}

impl Agenda {
    /// The service at `index` needs the next round.
    pub(super) fn touch(&mut self, index: usize) {
        self.next_round.insert(index);
    }

    /// The service at `index` needs a round once `at` has come.
    pub(super) fn wake_at(&mut self, at: Instant, index: usize) {
        self.timers.insert((at, index));
    }

    /// Forgets everything and marks the first `count` services for the
    /// next round: the service table was replaced, so every place is new.
    pub(super) fn reset(&mut self, count: usize) {
        self.timers.clear();
        self.next_round = (0..count).collect();
    }

    /// The services to visit at `now`, each once and in table order; they
    /// leave the agenda until something puts them back.
    pub(super) fn due(&mut self, now: Instant) -> BTreeSet<usize> {
        let mut due = std::mem::take(&mut self.next_round);
        while let Some(&(at, index)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            due.insert(index);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_touched_services_and_those_whose_time_came_are_due() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut agenda = Agenda::default();
        agenda.reset(3);
        assert_eq!(agenda.due(at(0)), BTreeSet::from([0, 1, 2]));
        assert_eq!(agenda.due(at(100)), BTreeSet::new(), "nothing happened");
        agenda.touch(2);
        agenda.touch(2);
        agenda.wake_at(at(1_000), 1);
        agenda.wake_at(at(500), 0);
        assert_eq!(agenda.due(at(200)), BTreeSet::from([2]));
        assert_eq!(agenda.due(at(600)), BTreeSet::from([0]));
        assert_eq!(agenda.due(at(700)), BTreeSet::new());
        assert_eq!(agenda.due(at(1_000)), BTreeSet::from([1]));
        agenda.wake_at(at(5_000), 1);
        agenda.reset(1);
        assert_eq!(agenda.due(at(9_000)), BTreeSet::from([0]), "old timers go");
    }
}
