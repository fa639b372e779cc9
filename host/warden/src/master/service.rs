//! What the master knows of each service and each of its processes.
//!
//! A [`ServiceState`] holds a service's effective configuration, its open
//! listeners, its processes and the bookkeeping Dovecot's master keeps:
//! throttling after failures, whether the service has proven itself, the
//! low-water mark of idle processes, connections waiting at
//! `process_limit`. It also turns itself into the plain views a
//! [`Policy`](warden_policy::Policy) decides on.
//!
//! Each of its processes is a [`Process`], whose life is a state machine
//! of its own ([`super::process`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use warden_policy::{ProcessView, ServiceView};
use warden_sys::Identity;

use super::dovecot;
use super::launch::Connection;
use super::process::{FirstReport, Life, PROVEN_AFTER, Process, escalate};
use super::starting::Ticket;
use super::table::ProcessTable;
use crate::config::{IdleKill, Interface, Service};
use crate::listen::OpenListener;

/// A service's throttle: after failures, no process is started until it ends.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// Until when, if throttled now.
    pub until: Option<Instant>,
    /// The length of the last throttle, 0 after a success; the next one
    /// doubles it.
    pub last_ms: u64,
    /// Why it was last throttled.
    pub reason: Option<String>,
}

/// A process the master started for waiting connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coming {
    /// Handed to the spawner, under this ticket.
    Starting(Ticket),
    /// Started, with this pid, and not ready yet.
    Started(i32),
}

/// How many exits of a service `warden status` shows.
pub(super) const LAST_EXITS: usize = 5;

/// An exit of a process that warden did not ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LastExit {
    /// The process.
    pub pid: i32,
    /// How it ended: `exited with status 1`, `killed by SIGSEGV`…
    pub how: String,
    /// When.
    pub at: Instant,
    /// Its last lines on stderr, oldest first.
    pub stderr: Vec<String>,
}

/// What the master knows of one service.
#[derive(Debug)]
pub(super) struct ServiceState {
    /// The effective configuration.
    pub config: Service,
    /// Whether the service runs (its protocol is enabled).
    pub runs: bool,
    /// The identity its processes take, resolved once.
    pub identity: Option<Identity>,
    /// Its open listeners.
    pub listeners: Vec<OpenListener>,
    /// Its place in the service table, where its processes are found in
    /// the [`ProcessTable`].
    pub place: usize,
    /// Failure throttling.
    pub throttle: Throttle,
    /// Why the service was given up, if a policy gave it up.
    pub given_up: Option<String>,
    /// Whether a process of it ever exited cleanly or lived long enough.
    pub proven: bool,
    /// When its recent failed exits happened (the last second's).
    pub failures: VecDeque<Instant>,
    /// Tasks watching its listeners for a connection no process can take.
    pub watchers: Vec<tokio::task::JoinHandle<()>>,
    /// A process started for a waiting connection, until it is ready.
    pub spawn_pending: Option<Coming>,
    /// Its processes handed to the spawner that have not started yet.
    pub starting: u32,
    /// Since when connections have waited at `process_limit`.
    pub waiting_since: Option<Instant>,
    /// Whether connections are dropped as they come (they waited too long).
    pub dropping: bool,
    /// When the last "connections are being dropped" line was logged.
    pub last_drop_warning: Option<Instant>,
    /// When the last "connections wait" line was logged.
    pub last_wait_warning: Option<Instant>,
    /// The fewest idle processes seen at once since the last idle round.
    pub idle_lowwater: Option<u32>,
    /// When the next idle round is.
    pub next_idle_round: Option<Instant>,
    /// Whether the startup round of scaling has run.
    pub started: bool,
    /// Connections accepted for an inetd or native service, waiting for a
    /// slot.
    pub queue: VecDeque<(Connection, Instant)>,
    /// Client addresses of its recent connections, for `per_source_rate`.
    pub recent: RecentSources,
    /// Connections the admission policy delayed, by client address, for
    /// `per_source_limit`.
    pub delayed: BTreeMap<IpAddr, u32>,
    /// Tasks accepting connections for an inetd or native service.
    pub acceptors: Vec<tokio::task::JoinHandle<()>>,
    /// Processes started since the service was set up.
    pub spawns: u64,
    /// Processes ended since the service was set up.
    pub exits: u64,
    /// Connections it got since it was set up: accepted by the master
    /// (inetd and native interfaces), or new clients its processes
    /// reported (dovecot and systemd interfaces).
    pub connections: u64,
    /// Connections dropped at `process_limit`.
    pub dropped: u64,
    /// The pipes a `dovecot`-interface service's processes share.
    pub dovecot: Option<dovecot::Pipes>,
    /// Whether an operator stopped it (`warden stop SERVICE`): no process
    /// starts until `warden start SERVICE` or a reload.
    pub stopped: bool,
    /// Its processes' last exits warden did not ask for, newest first; at
    /// most [`LAST_EXITS`].
    pub last_exits: VecDeque<LastExit>,
}

impl Drop for ServiceState {
    fn drop(&mut self) {
        for task in self.watchers.drain(..).chain(self.acceptors.drain(..)) {
            task.abort();
        }
    }
}

/// The client addresses of a service's connections in the last second, for
/// `per_source_rate`: kept in the order they came, to forget each when its
/// second is over, and counted by address, so that asking about one source
/// costs the same however many connections others made. (Counting by
/// looking through them all made each connection cost as much as the
/// second's connections: a flood from many addresses made every
/// connection dearer.)
#[derive(Debug, Default)]
pub(super) struct RecentSources {
    arrivals: VecDeque<(Instant, IpAddr)>,
    counts: HashMap<IpAddr, u32>,
}

impl RecentSources {
    /// How long a connection counts toward its source's rate.
    const WINDOW: Duration = Duration::from_secs(1);

    /// Forgets the connections made [`Self::WINDOW`] or longer before
    /// `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(&(at, address)) = self.arrivals.front() {
            if now.saturating_duration_since(at) < Self::WINDOW {
                break;
            }
            self.arrivals.pop_front();
            if let Some(count) = self.counts.get_mut(&address) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.counts.remove(&address);
                }
            }
        }
    }

    /// Counts a connection from `address` at `now`.
    pub(super) fn record(&mut self, address: IpAddr, now: Instant) {
        self.arrivals.push_back((now, address));
        *self.counts.entry(address).or_default() += 1;
    }

    /// The connections from `address` that count now.
    pub(super) fn from(&self, address: IpAddr) -> u32 {
        self.counts.get(&address).copied().unwrap_or(0)
    }
}

impl ServiceState {
    pub(super) fn new(config: Service, runs: bool, place: usize) -> ServiceState {
        ServiceState {
            config,
            runs,
            place,
            identity: None,
            listeners: Vec::new(),
            throttle: Throttle::default(),
            given_up: None,
            proven: false,
            failures: VecDeque::new(),
            watchers: Vec::new(),
            spawn_pending: None,
            starting: 0,
            waiting_since: None,
            dropping: false,
            last_drop_warning: None,
            last_wait_warning: None,
            idle_lowwater: None,
            next_idle_round: None,
            started: false,
            queue: VecDeque::new(),
            recent: RecentSources::default(),
            delayed: BTreeMap::new(),
            acceptors: Vec::new(),
            spawns: 0,
            exits: 0,
            connections: 0,
            dropped: 0,
            dovecot: None,
            last_exits: VecDeque::new(),
            stopped: false,
        }
    }

    pub(super) fn name(&self) -> &str {
        self.config.name.as_str()
    }

    pub(super) fn interface(&self) -> Interface {
        self.config.interface.value
    }

    pub(super) fn idle_kill(&self) -> Option<Duration> {
        match self.config.idle_kill.value {
            IdleKill::Infinite => None,
            IdleKill::After(duration) => Some(duration.to_std()),
        }
    }

    /// Whether processes may be started now.
    pub(super) fn may_spawn(&self, now: Instant) -> bool {
        self.runs
            && !self.stopped
            && self.given_up.is_none()
            && self.throttle.until.is_none_or(|until| now >= until)
    }

    /// The round's care of the processes at `now`: flushes native
    /// channels, holds the interface's first-report deadline, moves
    /// unanswered idle exits along (each step logged), and notes when the
    /// service has proven itself.
    pub(super) fn tend(&mut self, processes: &mut ProcessTable<Process>, now: Instant) {
        let name = self.config.name.as_str();
        let first_report = FirstReport::of(self.config.interface.value);
        let grace = match self.config.idle_kill.value {
            IdleKill::Infinite => None,
            IdleKill::After(duration) => Some(duration.to_std()),
        };
        for (pid, process) in processes.of_mut(self.place) {
            if let Some(channel) = &mut process.channel {
                channel.congested = false;
                if let Err(error) = channel.flush() {
                    tracing::warn!(service = name, pid, %error, "cannot write to a process's control channel");
                }
            }
            if process.ready_at().is_none() {
                let waited = now.saturating_duration_since(process.started);
                match first_report {
                    FirstReport::AtStart => {}
                    FirstReport::Optional(after) => {
                        if waited >= after {
                            process.ready(now);
                        }
                    }
                    // A process held stopped is left be until continued.
                    FirstReport::Required {
                        within,
                        report,
                        then,
                    } => {
                        if waited >= within
                            && !process.life().asked_to_go()
                            && process.held.is_none()
                        {
                            tracing::error!(
                                service = name,
                                pid,
                                "the process did not {report} within {}s; sent {then}, and another may start in its place",
                                within.as_secs()
                            );
                            let _ = process.stop(then, now, true);
                            if self.spawn_pending == Some(Coming::Started(pid)) {
                                self.spawn_pending = None;
                            }
                        }
                    }
                }
            }
            if let Some(grace) = grace {
                escalate(name, pid, process, grace, now);
            }
            if process
                .ready_at()
                .is_some_and(|ready| now.saturating_duration_since(ready) >= PROVEN_AFTER)
            {
                self.proven = true;
            }
        }
        if let Some(Coming::Started(pid)) = self.spawn_pending
            && processes.get(pid).is_none_or(|p| p.ready_at().is_some())
        {
            self.spawn_pending = None;
        }
    }

    /// Whether the service's last round left work for the next one,
    /// whatever happens meanwhile: connections waiting (for a slot, or at
    /// `process_limit`), a process started for a connection not yet
    /// ready, or a native channel full or with messages queued.
    pub(super) fn has_work(&self, processes: &ProcessTable<Process>) -> bool {
        !self.queue.is_empty()
            || self.waiting_since.is_some()
            || self.spawn_pending.is_some()
            || processes
                .of(self.place)
                .filter_map(|(_, p)| p.channel.as_ref())
                .any(|c| c.congested || c.has_queued())
    }

    /// The earliest time the service's own clock brings something to do:
    /// its throttle ends, its next idle-kill round, a process's
    /// first-report deadline, the next step of an unanswered idle exit, or
    /// a process old enough to prove the service. `None` when nothing is
    /// coming; an event will bring the service back to the round.
    pub(super) fn next_wake(&self, processes: &ProcessTable<Process>) -> Option<Instant> {
        if !self.runs {
            return None;
        }
        let first_report = FirstReport::of(self.interface());
        let grace = self.idle_kill();
        let deadlines = processes.of(self.place).flat_map(|(_, p)| {
            let deadline = match (p.ready_at(), first_report) {
                (Some(_), _) | (None, FirstReport::AtStart) => None,
                (None, FirstReport::Optional(after)) => Some(p.started + after),
                (None, FirstReport::Required { within, .. }) => {
                    (!p.life().asked_to_go() && p.held.is_none()).then_some(p.started + within)
                }
            };
            let escalation = p
                .life()
                .idle_exit()
                .zip(grace)
                .and_then(|(exit, grace)| exit.next(grace))
                .map(|(_, due)| due);
            let proof = p
                .ready_at()
                .filter(|_| !self.proven)
                .map(|ready| ready + PROVEN_AFTER);
            [deadline, escalation, proof]
        });
        let idle_round = self
            .next_idle_round
            .filter(|_| processes.count(self.place) > 0);
        deadlines
            .chain([self.throttle.until, idle_round])
            .flatten()
            .min()
    }

    /// Processes that count toward `process_limit`.
    pub(super) fn active(&self, processes: &ProcessTable<Process>) -> u32 {
        self.count(processes, |p| p.life().counts_toward_limit())
    }

    /// Whether another process may exist under `process_limit`, counting
    /// those on their way.
    pub(super) fn below_limit(&self, processes: &ProcessTable<Process>) -> bool {
        self.active(processes).saturating_add(self.starting) < self.config.process_limit.value
    }

    /// Processes that can take a connection now.
    pub(super) fn available(&self, processes: &ProcessTable<Process>) -> u32 {
        self.count(processes, Process::has_room)
    }

    /// Whether a process is on its way that will take the connections
    /// waiting now: one the master started for them, one the spawner is
    /// starting, or, on Dovecot's
    /// interface, any that has not sent its first status yet, which
    /// Dovecot counts available from fork with its whole `CLIENT_LIMIT`.
    pub(super) fn one_coming(&self, processes: &ProcessTable<Process>) -> bool {
        self.spawn_pending.is_some()
            || self.starting > 0
            || (self.interface() == Interface::Dovecot
                && self.count(processes, |p| p.life() == Life::Starting) > 0)
    }

    /// Connections the service can take now without a new process.
    pub(super) fn available_slots(&self, processes: &ProcessTable<Process>) -> u64 {
        processes
            .of(self.place)
            .filter(|(_, p)| p.takes_connections())
            .map(|(_, p)| u64::from(p.client_limit.saturating_sub(p.clients.unwrap_or(0))))
            .sum()
    }

    /// Clients its processes report.
    pub(super) fn clients(&self, processes: &ProcessTable<Process>) -> u32 {
        processes
            .of(self.place)
            .filter_map(|(_, p)| p.clients)
            .fold(0, u32::saturating_add)
    }

    /// Processes with no clients now.
    pub(super) fn idle_count(&self, processes: &ProcessTable<Process>) -> u32 {
        self.count(processes, Process::is_idle)
    }

    /// How many of its processes `which` holds for.
    fn count(&self, processes: &ProcessTable<Process>, which: impl Fn(&Process) -> bool) -> u32 {
        let count = processes.of(self.place).filter(|(_, p)| which(p)).count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The service as a policy sees it.
    pub(super) fn view(&self) -> ServiceView<'_> {
        ServiceView {
            name: self.name(),
            kind: self.config.kind.value,
            protocol: &self.config.protocol.value,
            policies: &self.config.policies.value,
            service_count: self.config.service_count.value.limit(),
            client_limit: self.config.effective_client_limit(),
            process_limit: self.config.process_limit.value,
            process_min_avail: self.config.process_min_avail.value,
            idle_kill_ms: self
                .idle_kill()
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            per_source_limit: Some(self.config.per_source_limit.value).filter(|n| *n > 0),
            per_source_rate: Some(self.config.per_source_rate.value).filter(|n| *n > 0),
        }
    }

    /// The processes as a policy sees them, times in milliseconds since
    /// `origin`: those the master still decides about
    /// ([`Process::decided_about`]). The master holds `process_limit` over
    /// all of them whatever a policy counts.
    pub(super) fn process_views(
        &self,
        processes: &ProcessTable<Process>,
        origin: Instant,
    ) -> Vec<ProcessView> {
        processes
            .of(self.place)
            .filter(|(_, p)| p.decided_about())
            .map(|(pid, p)| p.view(pid, origin))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_counts_its_connections_of_the_last_second_only() {
        let start = Instant::now();
        let (one, other): (IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let mut recent = RecentSources::default();
        recent.record(one, start);
        recent.record(other, start);
        recent.record(one, start + Duration::from_millis(500));
        assert_eq!((recent.from(one), recent.from(other)), (2, 1));
        recent.expire(start + Duration::from_millis(999));
        assert_eq!((recent.from(one), recent.from(other)), (2, 1));
        recent.expire(start + Duration::from_secs(1));
        assert_eq!((recent.from(one), recent.from(other)), (1, 0));
        recent.expire(start + Duration::from_millis(1500));
        assert_eq!(recent.from(one), 0);
        assert!(recent.counts.is_empty() && recent.arrivals.is_empty());
    }
}
