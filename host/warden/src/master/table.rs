//! Every process the master has, in one table.
//!
//! A process belongs to a running service, by the service's place in the
//! service table, or drains: it is left from an earlier configuration and
//! finishes its clients. The table owns each process from its spawn to its
//! exit, finds one by pid whichever it is, walks a service's processes in
//! pid order, and moves them all at once when a reload replaces the
//! service table. It knows nothing of what a process is, so it is tested
//! here with plain values.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Where a process belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Slot {
    /// To the running service at this place.
    Service(usize),
    /// To no running service: it drains.
    Draining,
}

/// What the master keeps of a process that drains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Drain {
    /// The name of the service it belonged to.
    pub service: String,
    /// When it began to drain.
    pub since: Instant,
    /// Whether it was sent SIGKILL already.
    pub killed: bool,
}

/// A process and, if it drains, what the master keeps of that.
#[derive(Debug)]
pub(super) struct Entry<P> {
    /// The process.
    pub process: P,
    /// Set while it drains.
    pub drain: Option<Drain>,
}

/// The processes, by where they belong and their pid.
#[derive(Debug)]
pub(super) struct ProcessTable<P> {
    entries: BTreeMap<(Slot, i32), Entry<P>>,
    /// Where each pid belongs.
    slots: HashMap<i32, Slot>,
}

impl<P> Default for ProcessTable<P> {
    fn default() -> Self {
        ProcessTable {
            entries: BTreeMap::new(),
            slots: HashMap::new(),
        }
    }
}

impl<P> ProcessTable<P> {
    /// Adds the process `pid`, just started for the service at `index`.
    pub(super) fn add(&mut self, pid: i32, index: usize, process: P) {
        let slot = Slot::Service(index);
        self.slots.insert(pid, slot);
        self.entries.insert(
            (slot, pid),
            Entry {
                process,
                drain: None,
            },
        );
    }

    /// Adds the process `pid`, just started for a service of `service`'s
    /// name that a reload has replaced meanwhile: it drains from `now`.
    pub(super) fn add_draining(&mut self, pid: i32, service: &str, now: Instant, process: P) {
        self.slots.insert(pid, Slot::Draining);
        self.entries.insert(
            (Slot::Draining, pid),
            Entry {
                process,
                drain: Some(Drain {
                    service: service.to_owned(),
                    since: now,
                    killed: false,
                }),
            },
        );
    }

    /// Removes the process `pid`, which exited; `None` if it is not here.
    pub(super) fn remove(&mut self, pid: i32) -> Option<(Slot, Entry<P>)> {
        let slot = self.slots.remove(&pid)?;
        self.entries.remove(&(slot, pid)).map(|entry| (slot, entry))
    }

    /// Where `pid` belongs, if it is here.
    pub(super) fn slot(&self, pid: i32) -> Option<Slot> {
        self.slots.get(&pid).copied()
    }

    /// The place of the running service `pid` belongs to, if it does.
    pub(super) fn place(&self, pid: i32) -> Option<usize> {
        match self.slot(pid)? {
            Slot::Service(index) => Some(index),
            Slot::Draining => None,
        }
    }

    /// The process `pid` and what the table keeps with it.
    pub(super) fn entry_mut(&mut self, pid: i32) -> Option<&mut Entry<P>> {
        let slot = self.slot(pid)?;
        self.entries.get_mut(&(slot, pid))
    }

    /// The process `pid`.
    pub(super) fn get(&self, pid: i32) -> Option<&P> {
        let slot = self.slot(pid)?;
        self.entries.get(&(slot, pid)).map(|entry| &entry.process)
    }

    /// The process `pid`, to change.
    pub(super) fn get_mut(&mut self, pid: i32) -> Option<&mut P> {
        self.entry_mut(pid).map(|entry| &mut entry.process)
    }

    /// The processes of the service at `index`, in pid order.
    pub(super) fn of(&self, index: usize) -> impl Iterator<Item = (i32, &P)> {
        let slot = Slot::Service(index);
        self.entries
            .range((slot, i32::MIN)..=(slot, i32::MAX))
            .map(|((_, pid), entry)| (*pid, &entry.process))
    }

    /// The processes of the service at `index`, in pid order, to change.
    pub(super) fn of_mut(&mut self, index: usize) -> impl Iterator<Item = (i32, &mut P)> {
        let slot = Slot::Service(index);
        self.entries
            .range_mut((slot, i32::MIN)..=(slot, i32::MAX))
            .map(|((_, pid), entry)| (*pid, &mut entry.process))
    }

    /// How many processes the service at `index` has.
    pub(super) fn count(&self, index: usize) -> usize {
        self.of(index).count()
    }

    /// The processes that drain, in pid order, to change.
    pub(super) fn draining_mut(&mut self) -> impl Iterator<Item = (i32, &mut Drain, &mut P)> {
        self.entries
            .range_mut((Slot::Draining, i32::MIN)..=(Slot::Draining, i32::MAX))
            .filter_map(|((_, pid), entry)| {
                let drain = entry.drain.as_mut()?;
                Some((*pid, drain, &mut entry.process))
            })
    }

    /// Whether the table holds no process at all.
    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every process, with where it belongs.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, i32, &Entry<P>)> {
        self.entries
            .iter()
            .map(|((slot, pid), entry)| (*slot, *pid, entry))
    }

    /// Every process, with where it belongs, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (Slot, i32, &mut P)> {
        self.entries
            .iter_mut()
            .map(|((slot, pid), entry)| (*slot, *pid, &mut entry.process))
    }

    /// A reload replaced the service table: the processes of the service
    /// that was at each place move to where `moves` says — the place of
    /// the same service in the new table (a service kept with its
    /// processes), or draining, named after their service by `name` and
    /// draining since `now` — and are returned as `(pid, process)` as they
    /// drain, for the caller to tell them.
    pub(super) fn replace_services(
        &mut self,
        moves: impl Fn(usize) -> Option<usize>,
        name: impl Fn(usize) -> String,
        now: Instant,
    ) -> Vec<i32> {
        let mut drained = Vec::new();
        let entries = std::mem::take(&mut self.entries);
        for ((slot, pid), mut entry) in entries {
            let slot = match slot {
                Slot::Service(index) => match moves(index) {
                    Some(place) => Slot::Service(place),
                    None => {
                        entry.drain = Some(Drain {
                            service: name(index),
                            since: now,
                            killed: false,
                        });
                        drained.push(pid);
                        Slot::Draining
                    }
                },
                Slot::Draining => Slot::Draining,
            };
            self.slots.insert(pid, slot);
            self.entries.insert((slot, pid), entry);
        }
        drained
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ProcessTable<&'static str> {
        let mut table = ProcessTable::default();
        table.add(30, 1, "imap b");
        table.add(10, 0, "log");
        table.add(20, 1, "imap a");
        table.add(40, 2, "anvil");
        table
    }

    #[test]
    fn a_process_is_found_by_pid_and_each_service_walks_its_own_in_pid_order() {
        let table = table();
        assert_eq!(table.get(20), Some(&"imap a"));
        assert_eq!(table.place(40), Some(2));
        assert_eq!(table.get(99), None);
        let imap: Vec<(i32, &&str)> = table.of(1).collect();
        assert_eq!(imap, [(20, &"imap a"), (30, &"imap b")]);
        assert_eq!(table.count(0), 1);
        assert_eq!(table.count(3), 0);
    }

    #[test]
    fn an_exit_removes_the_process_from_its_service() {
        let mut table = table();
        let (slot, entry) = table.remove(30).expect("it was there");
        assert_eq!((slot, entry.process), (Slot::Service(1), "imap b"));
        assert!(table.remove(30).is_none(), "once");
        assert_eq!(table.count(1), 1);
        assert_eq!(table.slot(30), None);
    }

    #[test]
    fn a_reload_drains_replaced_services_and_moves_kept_ones() {
        let mut table = table();
        let now = Instant::now();
        // The new table keeps anvil (was 2, now 0); log and imap are new
        // services, so their old processes drain.
        let drained = table.replace_services(
            |index| (index == 2).then_some(0),
            |index| ["log", "imap", "anvil"][index].to_owned(),
            now,
        );
        assert_eq!(drained, [10, 20, 30]);
        assert_eq!(table.place(40), Some(0));
        assert_eq!(table.of(0).map(|(pid, _)| pid).collect::<Vec<_>>(), [40]);
        assert_eq!(table.count(1), 0);
        let draining: Vec<(i32, String)> = table
            .draining_mut()
            .map(|(pid, drain, _)| (pid, drain.service.clone()))
            .collect();
        assert_eq!(
            draining,
            [
                (10, "log".to_owned()),
                (20, "imap".to_owned()),
                (30, "imap".to_owned())
            ]
        );
        // A process started for a replaced service drains as it arrives.
        table.add_draining(50, "imap", now, "imap late");
        assert_eq!(table.slot(50), Some(Slot::Draining));
        // A drained process's exit finds it still.
        let (slot, entry) = table.remove(20).expect("it drains");
        assert_eq!(slot, Slot::Draining);
        assert_eq!(entry.drain.map(|d| d.since), Some(now));
        // Another reload leaves those draining where they are.
        let again = table.replace_services(|_| None, |_| "anvil".to_owned(), now);
        assert_eq!(again, [40]);
        assert_eq!(table.place(10), None);
        assert_eq!(table.slot(10), Some(Slot::Draining));
    }
}
