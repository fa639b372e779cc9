//! Processes on their way: plans handed to the spawner threads whose
//! outcome has not come back yet.
//!
//! The master makes each spawn plan on its event loop and hands it to a
//! [`Spawner`](warden_sys::Spawner), so the loop goes on accepting and
//! reaping while the process is cloned and executes its program. What the
//! master needs to take the process in once it has started — its output
//! pipes, its control channel, the client it was started for — waits here
//! under a ticket, which the outcome comes back with. A reload that
//! replaces the service meanwhile marks the entry, and the process drains
//! as soon as it has started.
//!
//! With more than one spawner thread, outcomes may come back out of
//! order; they are taken in the order the master asked for the processes,
//! so the master learns of its processes in that order (Dovecot's: log,
//! config, anvil, then the rest), whichever exec finished first.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Instant;

use warden_sys::{Child, SpawnError};

use super::launch::Output;

/// The number an outcome comes back with.
pub(super) type Ticket = u64;

/// A process handed to the spawner.
#[derive(Debug)]
pub(super) struct Starting {
    /// The place of its service, or `None` once a reload replaced the
    /// service: the process drains as soon as it has started.
    pub place: Option<usize>,
    /// Its service's name.
    pub service: String,
    /// When the master asked for it.
    pub asked: Instant,
    /// The read ends of its output pipes.
    pub output: Output,
    /// The master's end of its native control channel.
    pub channel: Option<OwnedFd>,
    /// The client it was started for, if one.
    pub peer: Option<IpAddr>,
    /// Its `GENERATION` on Dovecot's interface.
    pub dovecot_generation: Option<u32>,
    /// The spawner's outcome, once it came back.
    pub outcome: Option<Result<Child, SpawnError>>,
}

/// Every process on its way, by ticket.
#[derive(Debug, Default)]
pub(super) struct StartingTable {
    entries: BTreeMap<Ticket, Starting>,
    next: Ticket,
}

impl StartingTable {
    /// Keeps `starting` until its outcome comes back with the returned
    /// ticket.
    pub(super) fn insert(&mut self, starting: Starting) -> Ticket {
        self.next = self.next.wrapping_add(1);
        self.entries.insert(self.next, starting);
        self.next
    }

    /// Forgets the process of `ticket`, which the spawner never took.
    pub(super) fn forget(&mut self, ticket: Ticket) {
        self.entries.remove(&ticket);
    }

    /// The spawner's `outcome` for `ticket` came back.
    pub(super) fn arrived(&mut self, ticket: Ticket, outcome: Result<Child, SpawnError>) {
        if let Some(starting) = self.entries.get_mut(&ticket) {
            starting.outcome = Some(outcome);
        }
    }

    /// The earliest process asked for and its outcome, once that has
    /// come back.
    pub(super) fn next_arrived(&mut self) -> Option<(Ticket, Starting, Result<Child, SpawnError>)> {
        let mut entry = self.entries.first_entry()?;
        let outcome = entry.get_mut().outcome.take()?;
        let (ticket, starting) = entry.remove_entry();
        Some((ticket, starting, outcome))
    }

    /// Whether no process is on its way.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A reload replaced the service table: a process on its way for a
    /// service kept with its processes goes to the service's new place
    /// (`moves`), every other one will drain.
    pub(super) fn replace_services(&mut self, moves: impl Fn(usize) -> Option<usize>) {
        for starting in self.entries.values_mut() {
            starting.place = starting.place.and_then(&moves);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starting(place: usize) -> Starting {
        Starting {
            place: Some(place),
            service: format!("service{place}"),
            asked: Instant::now(),
            output: Output {
                stdout: None,
                stderr: None,
            },
            channel: None,
            peer: None,
            dovecot_generation: None,
            outcome: None,
        }
    }

    fn failed() -> Result<Child, SpawnError> {
        Err(SpawnError::Plan {
            service: "test".to_owned(),
            problem: "a test".to_owned(),
        })
    }

    #[test]
    fn outcomes_are_taken_in_the_order_the_processes_were_asked_for() {
        let mut table = StartingTable::default();
        let first = table.insert(starting(0));
        let second = table.insert(starting(1));
        table.arrived(second, failed());
        assert!(
            table.next_arrived().is_none(),
            "the first is still on its way"
        );
        assert_eq!(table.entries.get(&first).and_then(|s| s.place), Some(0));
        table.arrived(first, failed());
        let taken: Vec<Ticket> = std::iter::from_fn(|| table.next_arrived())
            .map(|(ticket, _, _)| ticket)
            .collect();
        assert_eq!(taken, [first, second]);
        assert!(table.is_empty());
    }

    #[test]
    fn a_reload_moves_kept_services_and_drains_the_others() {
        let mut table = StartingTable::default();
        let kept = table.insert(starting(2));
        let replaced = table.insert(starting(0));
        table.replace_services(|old| (old == 2).then_some(0));
        assert_eq!(table.entries.get(&kept).and_then(|s| s.place), Some(0));
        assert_eq!(table.entries.get(&replaced).map(|s| s.place), Some(None));
        table.forget(kept);
        table.forget(replaced);
        assert!(table.is_empty());
    }
}
