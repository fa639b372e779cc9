//! What the master knows of each service and each of its processes.
//!
//! A [`ServiceState`] holds a service's effective configuration, its open
//! listeners, its processes and the bookkeeping Dovecot's master keeps:
//! throttling after failures, whether the service has proven itself, the
//! low-water mark of idle processes, connections waiting at
//! `process_limit`. It also turns itself into the plain views a
//! [`Policy`](warden_policy::Policy) decides on.
//!
//! A [`Process`] answers the questions the master asks of it — does it
//! take connections, is it idle, what does `warden ps` call it — in one
//! place, from what it reported and what was done to it: started, ready,
//! its clients, stopped by a signal, asked to exit when idle and how far
//! that went ([`IdleExit`]), retired, told to stop. What each interface
//! expects of a new process before it counts as ready is
//! [`FirstReport`], one line per interface.

use std::collections::{BTreeMap, VecDeque};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use warden_child::protocol::ToService;

use nix::sys::signal::Signal;
use warden_policy::{ProcessView, ServiceKind, ServiceView};
use warden_sys::{Child, Identity};

use super::launch::Connection;
use crate::config::{IdleKill, Interface, Service, ServiceCount, ServiceType};
use crate::listen::OpenListener;

/// A process that has lived this long without saying so is taken to be
/// ready: not every daemon speaks `sd_notify`.
pub(super) const READY_WITHOUT_NOTICE: Duration = Duration::from_secs(1);

/// How long a native-interface process has to answer hello.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a process of Dovecot's own binaries has to send its first
/// status record (`SERVICE_FIRST_STATUS_TIMEOUT_SECS`).
pub(super) const FIRST_STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// What an interface expects of a new process before it counts as ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FirstReport {
    /// Nothing: it is ready from its start (an inetd process serves the
    /// connection it was started for).
    AtStart,
    /// A report if it can; one that has said nothing after this long is
    /// taken to be ready, since not every daemon reports.
    Optional(Duration),
    /// A report within `within`; one that has made none by then is sent
    /// `then`, and another may start in its place.
    Required {
        /// How long it has.
        within: Duration,
        /// What it must do, for the log: "answer warden's hello".
        report: &'static str,
        /// The signal it gets when it has not.
        then: Signal,
    },
}

impl FirstReport {
    /// The first report `interface` expects: the one place each
    /// interface's deadline is written.
    pub(super) fn of(interface: Interface) -> FirstReport {
        match interface {
            Interface::Inetd => FirstReport::AtStart,
            Interface::Systemd => FirstReport::Optional(READY_WITHOUT_NOTICE),
            Interface::Warden => FirstReport::Required {
                within: HELLO_TIMEOUT,
                report: "answer warden's hello",
                then: Signal::SIGTERM,
            },
            Interface::Dovecot => FirstReport::Required {
                within: FIRST_STATUS_TIMEOUT,
                report: "send its first status",
                then: Signal::SIGKILL,
            },
        }
    }
}

/// How far an idle process asked to exit has gone without exiting. Each
/// step follows the previous after a grace (the service's `idle_kill`),
/// unless the process exits or says it is busy first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdleStage {
    /// Asked (SIGINT, or `exit-if-idle`): it may exit, or say it is busy.
    Asked,
    /// It did neither within the grace: it is ignoring the request, and
    /// takes no connections, as Dovecot treats a process ignoring its
    /// idle SIGINT as busy.
    Ignoring,
    /// It was sent SIGTERM.
    Terminated,
    /// It was sent SIGKILL.
    Killed,
}

/// A process asked to exit because it was idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IdleExit {
    /// When it was first asked.
    pub asked: Instant,
    /// Where it is now.
    pub stage: IdleStage,
    /// Since when it has been there.
    pub since: Instant,
}

impl IdleExit {
    /// A request made at `now` that starts at `stage`.
    pub(super) fn at(stage: IdleStage, now: Instant) -> IdleExit {
        IdleExit {
            asked: now,
            stage,
            since: now,
        }
    }

    /// The stage after this one and when it is due, `grace` after this
    /// one began; `None` after SIGKILL.
    pub(super) fn next(&self, grace: Duration) -> Option<(IdleStage, Instant)> {
        let next = match self.stage {
            IdleStage::Asked => IdleStage::Ignoring,
            IdleStage::Ignoring => IdleStage::Terminated,
            IdleStage::Terminated => IdleStage::Killed,
            IdleStage::Killed => return None,
        };
        Some((next, self.since + grace))
    }

    /// Whether the process may still call the request off by saying it
    /// is busy: until it is sent SIGTERM.
    fn revocable(&self) -> bool {
        match self.stage {
            IdleStage::Asked | IdleStage::Ignoring => true,
            IdleStage::Terminated | IdleStage::Killed => false,
        }
    }
}

/// A process ready for this long proves its service
/// (`SERVICE_MIN_SUCCESSFUL_AGE_SECS`).
pub(super) const PROVEN_AFTER: Duration = Duration::from_secs(10);

/// One process of a service.
#[derive(Debug)]
pub(super) struct Process {
    /// The process, for signals and reaping.
    pub child: Child,
    /// When it was started.
    pub started: Instant,
    /// When it said it was ready (or was taken to be).
    pub ready_at: Option<Instant>,
    /// Its clients, as last reported and at most `client_limit`; `None`
    /// if it never reports them.
    pub clients: Option<u32>,
    /// The `client_limit` it was started with (`WARDEN_CLIENT_LIMIT`).
    pub client_limit: u32,
    /// Whether it reported more clients than `client_limit` (and was
    /// warned about, once).
    pub overreported: bool,
    /// Since when it has reported no clients.
    pub idle_since: Option<Instant>,
    /// Whether, when and how far it was asked to exit because it was idle.
    pub idle_exit: Option<IdleExit>,
    /// Since when a signal has held it stopped (SIGSTOP, SIGTSTP…), until
    /// SIGCONT.
    pub stopped: Option<Instant>,
    /// Whether it was told to stop (kick, reload, shutdown).
    pub told_to_stop: bool,
    /// Whether it takes no new connections (`STOPPING=1`, or an inetd
    /// process, which serves its one connection).
    pub retired: bool,
    /// Its last `STATUS=` line.
    pub status: Option<String>,
    /// warden's end of its control channel, for the native interface;
    /// `None` once the channel broke.
    pub channel: Option<OwnedFd>,
    /// The task reading its control channel.
    pub reader: Option<tokio::task::JoinHandle<()>>,
    /// Its control channel's serial, unique for the life of the master.
    pub channel_serial: u64,
    /// Connections handed to it in its life (native interface).
    pub handed: u32,
    /// Messages waiting for room in its channel (native interface).
    pub outbox: VecDeque<Vec<u8>>,
    /// Whether its channel was full at the last handover; it is passed
    /// over until the next round.
    pub congested: bool,
    /// The client address of the one connection an inetd process serves.
    pub peer: Option<std::net::IpAddr>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

impl Process {
    pub(super) fn new(child: Child, started: Instant, client_limit: u32) -> Process {
        Process {
            child,
            started,
            ready_at: None,
            clients: None,
            client_limit,
            overreported: false,
            idle_since: None,
            idle_exit: None,
            stopped: None,
            told_to_stop: false,
            retired: false,
            status: None,
            channel: None,
            reader: None,
            channel_serial: 0,
            handed: 0,
            outbox: VecDeque::new(),
            congested: false,
            peer: None,
        }
    }

    /// Sends a connection's `message` and its socket over the native
    /// interface's channel, at once or not at all: a process whose channel
    /// is full (`WouldBlock`) or still holds queued messages is given
    /// nothing now.
    pub(super) fn send_connection(
        &self,
        message: &ToService,
        socket: BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        if !self.outbox.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        warden_sys::fdpass::send(self.channel()?.as_fd(), &message.encode(), &[socket])
    }

    /// Sends `message` over the native interface's channel, queueing it
    /// behind earlier ones while the channel is full; [`Process::flush`]
    /// sends the queue.
    pub(super) fn send(&mut self, message: &ToService) -> std::io::Result<()> {
        self.outbox.push_back(message.encode());
        self.flush()
    }

    /// Sends the queued messages until the channel is full.
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        while let Some(packet) = self.outbox.front() {
            match warden_sys::fdpass::send(self.channel()?.as_fd(), packet, &[]) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn channel(&self) -> std::io::Result<&OwnedFd> {
        self.channel.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "its control channel is closed",
            )
        })
    }

    /// "Exit if you are idle": SIGINT, or `exit-if-idle` on the native
    /// interface.
    pub(super) fn ask_if_idle(&mut self) -> std::io::Result<()> {
        if self.channel.is_some() {
            self.send(&ToService::ExitIfIdle)
        } else {
            Ok(self.child.signal(Signal::SIGINT)?)
        }
    }

    /// "Take nothing more, finish what you have": SIGINT, or
    /// `stop-accepting` on the native interface.
    pub(super) fn stop_accepting(&mut self) -> std::io::Result<()> {
        self.retired = true;
        if self.channel.is_some() {
            self.send(&ToService::StopAccepting)
        } else {
            Ok(self.child.signal(Signal::SIGINT)?)
        }
    }

    /// Records the process's own report of `reported` clients at `now`,
    /// counting at most its `client_limit`: a process cannot claim more
    /// room than it has been given, nor make the master's sums overflow.
    /// Returns `true` the first time it reported more, so the master warns
    /// once per process however often it does.
    pub(super) fn reported_clients(&mut self, reported: u32, now: Instant) -> bool {
        self.report_clients(reported.min(self.client_limit), now);
        let first = reported > self.client_limit && !self.overreported;
        self.overreported |= first;
        first
    }

    /// Records a count of `clients` at `now`, from the process or (native
    /// interface) from what the master handed it.
    pub(super) fn report_clients(&mut self, clients: u32, now: Instant) {
        if clients == 0 {
            self.idle_since.get_or_insert(now);
        } else {
            self.idle_since = None;
        }
        self.clients = Some(clients);
    }

    /// Takes the next step with a request to exit that went unanswered
    /// for `grace` by `now` — it is ignoring it, SIGTERM, SIGKILL — and
    /// returns the step taken and whether its signal was sent.
    pub(super) fn escalate(
        &mut self,
        grace: Duration,
        now: Instant,
    ) -> Option<(IdleStage, std::io::Result<()>)> {
        let exit = self.idle_exit?;
        let (stage, due) = exit.next(grace)?;
        if now < due {
            return None;
        }
        let sent = match stage {
            IdleStage::Asked | IdleStage::Ignoring => Ok(()),
            IdleStage::Terminated => {
                self.told_to_stop = true;
                self.child.signal(Signal::SIGTERM)
            }
            IdleStage::Killed => self.child.signal(Signal::SIGKILL),
        };
        self.idle_exit = Some(IdleExit {
            stage,
            since: now,
            ..exit
        });
        Some((stage, sent))
    }

    /// The process said it is busy (a clients report, or the native
    /// `busy`): a request to exit because it was idle is off, as
    /// Dovecot's master takes any status update after its idle SIGINT.
    /// Returns the stage it was called off at, if it was.
    pub(super) fn busy(&mut self) -> Option<IdleStage> {
        let exit = self.idle_exit.filter(IdleExit::revocable)?;
        self.idle_exit = None;
        Some(exit.stage)
    }

    /// Whether it can be given connections: ready, not held stopped, not
    /// retired or told to stop, and not ignoring a request to exit.
    pub(super) fn takes_connections(&self) -> bool {
        self.ready_at.is_some() && !self.retired && !self.told_to_stop && !self.withheld()
    }

    /// Whether it takes connections and has room for one more (or does not
    /// report its clients, and so takes whatever comes).
    pub(super) fn has_room(&self) -> bool {
        self.takes_connections() && self.clients.is_none_or(|c| c < self.client_limit)
    }

    /// Whether it reports no clients and could be retired for it.
    pub(super) fn is_idle(&self) -> bool {
        self.idle_since.is_some() && !self.retired && !self.told_to_stop && !self.withheld()
    }

    /// Whether it is out of the master's hands for now, though it never
    /// said it would stop: held stopped by a signal, or ignoring a request
    /// to exit. It takes no connections, is not counted available, and
    /// policies are not shown it.
    pub(super) fn withheld(&self) -> bool {
        self.stopped.is_some() || self.idle_exit.is_some_and(|e| e.stage != IdleStage::Asked)
    }

    /// The state word `warden ps` shows.
    pub(super) fn state(&self) -> &'static str {
        if self.stopped.is_some() {
            "stopped"
        } else if self.told_to_stop {
            "stopping"
        } else if let Some(exit) = self.idle_exit {
            match exit.stage {
                IdleStage::Asked => "asked-to-exit",
                IdleStage::Ignoring => "ignoring-exit",
                IdleStage::Terminated | IdleStage::Killed => "stopping",
            }
        } else if self.retired {
            "retired"
        } else if self.ready_at.is_none() {
            "starting"
        } else {
            match self.clients {
                None => "ready",
                Some(0) => "idle",
                Some(_) => "busy",
            }
        }
    }
}

/// Moves the idle exit of process `pid` of service `name` along when its
/// `grace` is over, and logs the step.
fn escalate(name: &str, pid: i32, process: &mut Process, grace: Duration, now: Instant) {
    let request = if process.channel.is_some() {
        "exit-if-idle request"
    } else {
        "idle SIGINT"
    };
    let Some((stage, sent)) = process.escalate(grace, now) else {
        return;
    };
    let grace = crate::config::value::Duration::from_millis(
        u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
    );
    if let Err(error) = sent {
        tracing::warn!(service = name, pid, %error, "cannot signal a process that ignores the {request}");
        return;
    }
    match stage {
        IdleStage::Asked => {}
        IdleStage::Ignoring => tracing::warn!(
            service = name,
            pid,
            "process {pid} is ignoring the {request}: it neither exited nor said it is busy within {grace}; it takes no connections now, and gets SIGTERM in {grace}"
        ),
        IdleStage::Terminated => tracing::warn!(
            service = name,
            pid,
            "process {pid} still ignores the {request}: sent SIGTERM; SIGKILL follows in {grace}"
        ),
        IdleStage::Killed => tracing::warn!(
            service = name,
            pid,
            "process {pid} ignored the {request} and SIGTERM: sent SIGKILL"
        ),
    }
}

/// A service's throttle: after failures, no process is started until it ends.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    /// Until when, if throttled now.
    pub until: Option<Instant>,
    /// The length of the last throttle, 0 after a success; the next one
    /// doubles it.
    pub last_ms: u64,
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
    /// Its processes, by pid.
    pub processes: BTreeMap<i32, Process>,
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
    pub spawn_pending: Option<i32>,
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
    pub recent: VecDeque<(Instant, std::net::IpAddr)>,
    /// Connections the admission policy delayed, by client address, for
    /// `per_source_limit`.
    pub delayed: BTreeMap<std::net::IpAddr, u32>,
    /// Tasks accepting connections for an inetd or native service.
    pub acceptors: Vec<tokio::task::JoinHandle<()>>,
    /// Processes started since the master started.
    pub spawns: u64,
    /// Connections dropped at `process_limit`.
    pub dropped: u64,
}

impl Drop for ServiceState {
    fn drop(&mut self) {
        for task in self.watchers.drain(..).chain(self.acceptors.drain(..)) {
            task.abort();
        }
    }
}

impl ServiceState {
    pub(super) fn new(config: Service, runs: bool) -> ServiceState {
        ServiceState {
            config,
            runs,
            identity: None,
            listeners: Vec::new(),
            processes: BTreeMap::new(),
            throttle: Throttle::default(),
            given_up: None,
            proven: false,
            failures: VecDeque::new(),
            watchers: Vec::new(),
            spawn_pending: None,
            waiting_since: None,
            dropping: false,
            last_drop_warning: None,
            last_wait_warning: None,
            idle_lowwater: None,
            next_idle_round: None,
            started: false,
            queue: VecDeque::new(),
            recent: VecDeque::new(),
            delayed: BTreeMap::new(),
            acceptors: Vec::new(),
            spawns: 0,
            dropped: 0,
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
        self.runs && self.given_up.is_none() && self.throttle.until.is_none_or(|until| now >= until)
    }

    /// The round's care of the processes at `now`: flushes native
    /// channels, holds the interface's first-report deadline, moves
    /// unanswered idle exits along (each step logged), and notes when the
    /// service has proven itself.
    pub(super) fn tend(&mut self, now: Instant) {
        let name = self.config.name.as_str();
        let first_report = FirstReport::of(self.config.interface.value);
        let grace = match self.config.idle_kill.value {
            IdleKill::Infinite => None,
            IdleKill::After(duration) => Some(duration.to_std()),
        };
        for (&pid, process) in &mut self.processes {
            if process.channel.is_some() {
                process.congested = false;
                if let Err(error) = process.flush() {
                    tracing::warn!(service = name, pid, %error, "cannot write to a process's control channel");
                }
            }
            if process.ready_at.is_none() {
                let waited = now.saturating_duration_since(process.started);
                match first_report {
                    FirstReport::AtStart => {}
                    FirstReport::Optional(after) => {
                        if waited >= after {
                            process.ready_at = Some(now);
                        }
                    }
                    // A process held stopped is left be until continued.
                    FirstReport::Required {
                        within,
                        report,
                        then,
                    } => {
                        if waited >= within && !process.told_to_stop && process.stopped.is_none() {
                            tracing::error!(
                                service = name,
                                pid,
                                "the process did not {report} within {}s; sent {then}, and another may start in its place",
                                within.as_secs()
                            );
                            process.told_to_stop = true;
                            process.retired = true;
                            let _ = process.child.signal(then);
                            if self.spawn_pending == Some(pid) {
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
                .ready_at
                .is_some_and(|ready| now.saturating_duration_since(ready) >= PROVEN_AFTER)
            {
                self.proven = true;
            }
        }
        if let Some(pid) = self.spawn_pending
            && self
                .processes
                .get(&pid)
                .is_none_or(|p| p.ready_at.is_some())
        {
            self.spawn_pending = None;
        }
    }

    /// Whether the service's last round left work for the next one,
    /// whatever happens meanwhile: connections waiting (for a slot, or at
    /// `process_limit`), a process started for a connection not yet
    /// ready, or a native channel full or with messages queued.
    pub(super) fn has_work(&self) -> bool {
        !self.queue.is_empty()
            || self.waiting_since.is_some()
            || self.spawn_pending.is_some()
            || self
                .processes
                .values()
                .any(|p| p.congested || !p.outbox.is_empty())
    }

    /// The earliest time the service's own clock brings something to do:
    /// its throttle ends, its next idle-kill round, a process's
    /// first-report deadline, the next step of an unanswered idle exit, or
    /// a process old enough to prove the service. `None` when nothing is
    /// coming; an event will bring the service back to the round.
    pub(super) fn next_wake(&self) -> Option<Instant> {
        if !self.runs {
            return None;
        }
        let first_report = FirstReport::of(self.interface());
        let grace = self.idle_kill();
        let processes = self.processes.values().flat_map(|p| {
            let deadline = match (p.ready_at, first_report) {
                (Some(_), _) | (None, FirstReport::AtStart) => None,
                (None, FirstReport::Optional(after)) => Some(p.started + after),
                (None, FirstReport::Required { within, .. }) => {
                    (!p.told_to_stop && p.stopped.is_none()).then_some(p.started + within)
                }
            };
            let escalation = p
                .idle_exit
                .zip(grace)
                .and_then(|(exit, grace)| exit.next(grace))
                .map(|(_, due)| due);
            let proof = p
                .ready_at
                .filter(|_| !self.proven)
                .map(|ready| ready + PROVEN_AFTER);
            [deadline, escalation, proof]
        });
        let idle_round = self.next_idle_round.filter(|_| !self.processes.is_empty());
        processes
            .chain([self.throttle.until, idle_round])
            .flatten()
            .min()
    }

    /// Processes that count toward `process_limit`: all but the retired.
    pub(super) fn active(&self) -> u32 {
        let active = self.processes.values().filter(|p| !p.retired).count();
        u32::try_from(active).unwrap_or(u32::MAX)
    }

    /// Whether another process may exist under `process_limit`.
    pub(super) fn below_limit(&self) -> bool {
        self.active() < self.config.process_limit.value
    }

    /// Processes that can take a connection now.
    pub(super) fn available(&self) -> u32 {
        let available = self.processes.values().filter(|p| p.has_room()).count();
        u32::try_from(available).unwrap_or(u32::MAX)
    }

    /// Connections the service can take now without a new process.
    pub(super) fn available_slots(&self) -> u64 {
        self.processes
            .values()
            .filter(|p| p.takes_connections())
            .map(|p| u64::from(p.client_limit.saturating_sub(p.clients.unwrap_or(0))))
            .sum()
    }

    /// Clients its processes report.
    pub(super) fn clients(&self) -> u32 {
        self.processes
            .values()
            .filter_map(|p| p.clients)
            .fold(0, u32::saturating_add)
    }

    /// Processes with no clients now.
    pub(super) fn idle_count(&self) -> u32 {
        let idle = self.processes.values().filter(|p| p.is_idle()).count();
        u32::try_from(idle).unwrap_or(u32::MAX)
    }

    /// The service as a policy sees it.
    pub(super) fn view(&self) -> ServiceView<'_> {
        ServiceView {
            name: self.name(),
            kind: match self.config.kind.value {
                ServiceType::Default => ServiceKind::Default,
                ServiceType::Startup => ServiceKind::Startup,
                ServiceType::Login => ServiceKind::Login,
                ServiceType::Log => ServiceKind::Log,
                ServiceType::Config => ServiceKind::Config,
                ServiceType::Anvil => ServiceKind::Anvil,
                ServiceType::Worker => ServiceKind::Worker,
            },
            protocol: &self.config.protocol.value,
            policies: &self.config.policies.value,
            service_count: match self.config.service_count.value {
                ServiceCount::Limited(count) => Some(count.get()),
                ServiceCount::Unlimited => None,
            },
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
    /// `origin`: those the master may still decide about, so not those
    /// told to stop nor those [withheld](Process::withheld). The master
    /// holds `process_limit` over all of them whatever a policy counts.
    pub(super) fn process_views(&self, origin: Instant) -> Vec<ProcessView> {
        let millis = |at: Instant| {
            u64::try_from(at.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
        };
        self.processes
            .iter()
            .filter(|(_, p)| !p.told_to_stop && !p.withheld())
            .map(|(pid, p)| ProcessView {
                pid: pid.unsigned_abs(),
                started_ms: millis(p.started),
                ready: p.ready_at.is_some(),
                clients: p.clients,
                idle_since_ms: p.idle_since.map(millis),
                asked_to_exit_ms: p.idle_exit.map(|e| millis(e.asked)),
                retired: p.retired,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unanswered_idle_exit_steps_to_ignoring_then_sigterm_then_sigkill() {
        let asked = Instant::now();
        let grace = Duration::from_secs(2);
        let mut exit = IdleExit::at(IdleStage::Asked, asked);
        let mut steps = Vec::new();
        while let Some((stage, due)) = exit.next(grace) {
            steps.push((stage, due.saturating_duration_since(asked)));
            exit = IdleExit {
                stage,
                since: due,
                ..exit
            };
        }
        assert_eq!(
            steps,
            [
                (IdleStage::Ignoring, grace),
                (IdleStage::Terminated, grace * 2),
                (IdleStage::Killed, grace * 3),
            ]
        );
        assert_eq!(exit.asked, asked, "the first request's time is kept");
        assert!(IdleExit::at(IdleStage::Asked, asked).revocable());
        assert!(IdleExit::at(IdleStage::Ignoring, asked).revocable());
        assert!(!IdleExit::at(IdleStage::Terminated, asked).revocable());
    }

    #[test]
    fn each_interface_has_its_first_report_deadline() {
        assert_eq!(FirstReport::of(Interface::Inetd), FirstReport::AtStart);
        assert_eq!(
            FirstReport::of(Interface::Systemd),
            FirstReport::Optional(READY_WITHOUT_NOTICE)
        );
        assert!(matches!(
            FirstReport::of(Interface::Warden),
            FirstReport::Required {
                within: HELLO_TIMEOUT,
                then: Signal::SIGTERM,
                ..
            }
        ));
        assert!(matches!(
            FirstReport::of(Interface::Dovecot),
            FirstReport::Required {
                within: FIRST_STATUS_TIMEOUT,
                then: Signal::SIGKILL,
                ..
            }
        ));
    }
}
