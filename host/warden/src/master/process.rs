//! One process of a service, and its life as a state machine.
//!
//! A process's life is one [`Life`]: starting, ready, asked to exit because
//! it was idle (and how far that went), retired, or told to stop. Every
//! change of it is a transition written as a `match` over the state, with
//! no arm that catches the rest, so a new state must be thought through
//! everywhere it matters. The questions the master asks of a process —
//! does it take a connection, does it count toward `process_limit`, was
//! its end asked for, what does `warden ps` call it — are answered here
//! once. Whether it takes a connection is the shared rule of
//! `warden_plugin_sdk` (through the process's policy view), the same the
//! built-in plugins decide with.
//!
//! Beside its life a process has what it reports (its clients, a status
//! line), what the kernel says of it (held stopped by a signal), and, on
//! the native interface, its control channel ([`Channel`]).

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_child::protocol::ToService;
use warden_policy::ProcessView;
use warden_sys::Child;

use crate::config::Interface;

/// A process that has lived this long without saying so is taken to be
/// ready: not every daemon speaks `sd_notify`.
pub(super) const READY_WITHOUT_NOTICE: Duration = Duration::from_secs(1);

/// How long a native-interface process has to answer hello.
pub(super) const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a process of Dovecot's own binaries has to send its first
/// status record (`SERVICE_FIRST_STATUS_TIMEOUT_SECS`).
pub(super) const FIRST_STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// A process ready for this long proves its service
/// (`SERVICE_MIN_SUCCESSFUL_AGE_SECS`).
pub(super) const PROVEN_AFTER: Duration = Duration::from_secs(10);

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

/// What a process's report of its clients changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reported {
    /// Clients it has that it did not have at its last report: the
    /// connections it took since.
    pub gained: u32,
    /// Whether it reported more than its `client_limit`, for the first
    /// time.
    pub over_limit: bool,
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

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Life {
    /// Started; it has not made the first report its interface expects.
    Starting,
    /// Ready since `since`: it takes connections as its room allows.
    Ready {
        /// When it became ready.
        since: Instant,
    },
    /// Asked to exit because it was idle (a native process counts as idle
    /// from its start, so it may be asked before it is ready).
    AskedToExit {
        /// When it became ready, if it did.
        ready: Option<Instant>,
        /// How far the request went.
        exit: IdleExit,
    },
    /// It takes no new connections and finishes those it has: it said it
    /// is stopping, served its `service_count`, was drained by a reload,
    /// or its control channel closed. It no longer counts toward
    /// `process_limit`.
    Retired {
        /// When it became ready, if it did.
        ready: Option<Instant>,
    },
    /// Told to stop (a kick, a stop, a drain's grace over, no first
    /// report, a broken control channel).
    Stopping {
        /// When it became ready, if it did.
        ready: Option<Instant>,
        /// When it was told.
        since: Instant,
        /// Whether another process may start in its place at once: it no
        /// longer counts toward `process_limit`.
        replaced: bool,
    },
}

impl Life {
    /// It made its first report at `now`.
    #[must_use]
    pub(super) fn readied(self, now: Instant) -> Life {
        match self {
            Life::Starting => Life::Ready { since: now },
            Life::AskedToExit { ready: None, exit } => Life::AskedToExit {
                ready: Some(now),
                exit,
            },
            Life::Retired { ready: None } => Life::Retired { ready: Some(now) },
            Life::Stopping {
                ready: None,
                since,
                replaced,
            } => Life::Stopping {
                ready: Some(now),
                since,
                replaced,
            },
            Life::Ready { .. }
            | Life::AskedToExit { ready: Some(_), .. }
            | Life::Retired { ready: Some(_) }
            | Life::Stopping { ready: Some(_), .. } => self,
        }
    }

    /// It was asked at `now` to exit if idle, the request starting at
    /// `stage` (an idle policy may go straight to SIGTERM or SIGKILL). A
    /// request already made keeps the time it was first made.
    #[must_use]
    pub(super) fn asked_to_exit(self, stage: IdleStage, now: Instant) -> Life {
        match self {
            Life::Starting => Life::AskedToExit {
                ready: None,
                exit: IdleExit::at(stage, now),
            },
            Life::Ready { since } => Life::AskedToExit {
                ready: Some(since),
                exit: IdleExit::at(stage, now),
            },
            Life::AskedToExit { ready, exit } => Life::AskedToExit {
                ready,
                exit: IdleExit {
                    stage,
                    since: now,
                    ..exit
                },
            },
            // It takes nothing new and finishes its own, or was told to
            // stop: the request changes nothing of its life.
            Life::Retired { .. } | Life::Stopping { .. } => self,
        }
    }

    /// Its unanswered idle exit moved on to `stage` at `now`.
    #[must_use]
    pub(super) fn escalated(self, stage: IdleStage, now: Instant) -> Life {
        match self {
            Life::AskedToExit { ready, exit } => Life::AskedToExit {
                ready,
                exit: IdleExit {
                    stage,
                    since: now,
                    ..exit
                },
            },
            Life::Starting | Life::Ready { .. } | Life::Retired { .. } | Life::Stopping { .. } => {
                self
            }
        }
    }

    /// It said it is busy: a request to exit because it was idle is off,
    /// until it was sent SIGTERM, as Dovecot's master takes any status
    /// update after its idle SIGINT.
    #[must_use]
    pub(super) fn busy(self) -> Life {
        match self {
            Life::AskedToExit {
                ready: Some(since),
                exit,
            } if exit.revocable() => Life::Ready { since },
            Life::AskedToExit { ready: None, exit } if exit.revocable() => Life::Starting,
            Life::AskedToExit { .. }
            | Life::Starting
            | Life::Ready { .. }
            | Life::Retired { .. }
            | Life::Stopping { .. } => self,
        }
    }

    /// It takes no new connections from now on.
    #[must_use]
    pub(super) fn retired(self) -> Life {
        match self {
            Life::Starting => Life::Retired { ready: None },
            Life::Ready { since } => Life::Retired { ready: Some(since) },
            Life::AskedToExit { ready, .. } => Life::Retired { ready },
            Life::Retired { .. } | Life::Stopping { .. } => self,
        }
    }

    /// It was told to stop at `now`; with `replaced`, another may start in
    /// its place at once.
    #[must_use]
    pub(super) fn stopped(self, now: Instant, replaced: bool) -> Life {
        match self {
            Life::Starting
            | Life::Ready { .. }
            | Life::AskedToExit { .. }
            | Life::Retired { .. } => Life::Stopping {
                ready: self.ready_at(),
                since: now,
                replaced,
            },
            Life::Stopping {
                ready,
                since,
                replaced: before,
            } => Life::Stopping {
                ready,
                since,
                replaced: before || replaced,
            },
        }
    }

    /// When it became ready, if it did.
    pub(super) fn ready_at(self) -> Option<Instant> {
        match self {
            Life::Starting => None,
            Life::Ready { since } => Some(since),
            Life::AskedToExit { ready, .. }
            | Life::Retired { ready }
            | Life::Stopping { ready, .. } => ready,
        }
    }

    /// Whether its life lets it take connections (its room and the
    /// kernel decide the rest): ready, or asked to exit and not yet
    /// ignoring it.
    pub(super) fn takes_connections(self) -> bool {
        match self {
            Life::Ready { .. } => true,
            Life::AskedToExit { ready, exit } => ready.is_some() && exit.stage == IdleStage::Asked,
            Life::Starting | Life::Retired { .. } | Life::Stopping { .. } => false,
        }
    }

    /// Whether it counts toward `process_limit`.
    pub(super) fn counts_toward_limit(self) -> bool {
        match self {
            Life::Starting | Life::Ready { .. } | Life::AskedToExit { .. } => true,
            Life::Retired { .. } => false,
            Life::Stopping { replaced, .. } => !replaced,
        }
    }

    /// Whether warden asked it to go: its end is no failure of its own.
    pub(super) fn asked_to_go(self) -> bool {
        match self {
            Life::AskedToExit { .. } | Life::Stopping { .. } => true,
            Life::Starting | Life::Ready { .. } | Life::Retired { .. } => false,
        }
    }

    /// Whether the master still decides about it: policies see it, and it
    /// may be idle-killed. Not once told to stop, nor while it ignores a
    /// request to exit.
    pub(super) fn decided_about(self) -> bool {
        match self {
            Life::Starting | Life::Ready { .. } | Life::Retired { .. } => true,
            Life::AskedToExit { exit, .. } => exit.stage == IdleStage::Asked,
            Life::Stopping { .. } => false,
        }
    }

    /// Whether it is retired: it takes nothing new, as policies are told.
    pub(super) fn is_retired(self) -> bool {
        match self {
            Life::Retired { .. } => true,
            Life::Stopping { replaced, .. } => replaced,
            Life::Starting | Life::Ready { .. } | Life::AskedToExit { .. } => false,
        }
    }

    /// The request to exit it was asked, if it was.
    pub(super) fn idle_exit(self) -> Option<IdleExit> {
        match self {
            Life::AskedToExit { exit, .. } => Some(exit),
            Life::Starting | Life::Ready { .. } | Life::Retired { .. } | Life::Stopping { .. } => {
                None
            }
        }
    }
}

/// warden's end of a native-interface process's control channel.
#[derive(Debug)]
pub(super) struct Channel {
    /// The socket; `None` once the channel broke.
    socket: Option<OwnedFd>,
    /// The task reading it.
    reader: Option<tokio::task::JoinHandle<()>>,
    /// Its serial, unique for the life of the master: a message from a
    /// channel of an earlier process with the same pid is not this one's.
    pub serial: u64,
    /// Connections handed over it in its life.
    pub handed: u32,
    /// Messages waiting for room in it.
    outbox: VecDeque<Vec<u8>>,
    /// Whether it was full at the last handover; the process is passed
    /// over until the next round.
    pub congested: bool,
}

impl Drop for Channel {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }
}

impl Channel {
    /// The channel `socket` with serial `serial`, read by `reader`.
    pub(super) fn new(
        socket: OwnedFd,
        serial: u64,
        reader: tokio::task::JoinHandle<()>,
    ) -> Channel {
        Channel {
            socket: Some(socket),
            reader: Some(reader),
            serial,
            handed: 0,
            outbox: VecDeque::new(),
            congested: false,
        }
    }

    /// Whether the channel still works.
    pub(super) fn is_open(&self) -> bool {
        self.socket.is_some()
    }

    /// Whether messages wait for room in it.
    pub(super) fn has_queued(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Closes warden's end and stops reading it.
    pub(super) fn close(&mut self) {
        self.socket = None;
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
    }

    fn socket(&self) -> std::io::Result<&OwnedFd> {
        self.socket.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "its control channel is closed",
            )
        })
    }

    /// Sends a connection's `message` and its socket, at once or not at
    /// all: a channel that is full (`WouldBlock`) or still holds queued
    /// messages takes nothing now.
    pub(super) fn send_connection(
        &self,
        message: &ToService,
        socket: BorrowedFd<'_>,
    ) -> std::io::Result<()> {
        if !self.outbox.is_empty() {
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        warden_sys::fdpass::send(self.socket()?.as_fd(), &message.encode(), &[socket])
    }

    /// Sends `message`, queueing it behind earlier ones while the channel
    /// is full; [`Channel::flush`] sends the queue.
    pub(super) fn send(&mut self, message: &ToService) -> std::io::Result<()> {
        self.outbox.push_back(message.encode());
        self.flush()
    }

    /// Sends the queued messages until the channel is full.
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        while let Some(packet) = self.outbox.front() {
            match warden_sys::fdpass::send(self.socket()?.as_fd(), packet, &[]) {
                Ok(()) => {
                    self.outbox.pop_front();
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// One process of a service.
#[derive(Debug)]
pub(super) struct Process {
    /// The process, for signals and reaping.
    pub child: Child,
    /// When it was started.
    pub started: Instant,
    /// Where it is in its life.
    life: Life,
    /// Its clients, as last reported and at most `client_limit`; `None`
    /// if it never reports them.
    pub clients: Option<u32>,
    /// The `client_limit` it was started with.
    pub client_limit: u32,
    /// Whether it reported more clients than `client_limit` (and was
    /// warned about, once).
    overreported: bool,
    /// Since when it has reported no clients.
    pub idle_since: Option<Instant>,
    /// Since when a signal has held it stopped (SIGSTOP, SIGTSTP…), until
    /// SIGCONT.
    pub held: Option<Instant>,
    /// Its last `STATUS=` line.
    pub status: Option<String>,
    /// Its control channel, on the native interface.
    pub channel: Option<Channel>,
    /// The client address of the one connection an inetd process serves.
    pub peer: Option<std::net::IpAddr>,
    /// The `GENERATION` a `dovecot`-interface process was given; its
    /// status records must carry it.
    pub generation: Option<u32>,
}

impl Process {
    /// A process just started as `child` at `started`, with the
    /// `client_limit` it was given.
    pub(super) fn new(child: Child, started: Instant, client_limit: u32) -> Process {
        Process {
            child,
            started,
            life: Life::Starting,
            clients: None,
            client_limit,
            overreported: false,
            idle_since: None,
            held: None,
            status: None,
            channel: None,
            peer: None,
            generation: None,
        }
    }

    /// Where it is in its life.
    pub(super) fn life(&self) -> Life {
        self.life
    }

    /// When it became ready, if it did.
    pub(super) fn ready_at(&self) -> Option<Instant> {
        self.life.ready_at()
    }

    /// It made its first report (or counts as having made it) at `now`.
    pub(super) fn ready(&mut self, now: Instant) {
        self.life = self.life.readied(now);
    }

    /// It takes no new connections from now on.
    pub(super) fn retire(&mut self) {
        self.life = self.life.retired();
    }

    /// Tells it to stop with `signal` at `now`; with `replaced`, another
    /// may start in its place at once.
    pub(super) fn stop(
        &mut self,
        signal: Signal,
        now: Instant,
        replaced: bool,
    ) -> std::io::Result<()> {
        self.life = self.life.stopped(now, replaced);
        self.child.signal(signal)
    }

    /// "Exit if you are idle", at `now`: SIGINT, or `exit-if-idle` on the
    /// native interface.
    pub(super) fn ask_if_idle(&mut self, now: Instant) -> std::io::Result<()> {
        let asked = match &mut self.channel {
            Some(channel) => channel.send(&ToService::ExitIfIdle),
            None => Ok(self.child.signal(Signal::SIGINT)?),
        };
        if asked.is_ok() {
            self.life = self.life.asked_to_exit(IdleStage::Asked, now);
        }
        asked
    }

    /// An idle policy's harder request at `now`: `signal` (SIGTERM or
    /// SIGKILL) at once, as the idle exit's stage `stage`. A process that
    /// is retired is told to stop instead.
    pub(super) fn force_idle_exit(
        &mut self,
        stage: IdleStage,
        signal: Signal,
        now: Instant,
    ) -> std::io::Result<()> {
        self.child.signal(signal)?;
        self.life = match self.life {
            Life::Starting | Life::Ready { .. } | Life::AskedToExit { .. } => {
                self.life.asked_to_exit(stage, now)
            }
            Life::Retired { .. } | Life::Stopping { .. } => self.life.stopped(now, false),
        };
        Ok(())
    }

    /// "Take nothing more, finish what you have": SIGINT, or
    /// `stop-accepting` on the native interface.
    pub(super) fn stop_accepting(&mut self) -> std::io::Result<()> {
        self.life = self.life.retired();
        match &mut self.channel {
            Some(channel) => channel.send(&ToService::StopAccepting),
            None => Ok(self.child.signal(Signal::SIGINT)?),
        }
    }

    /// Records the process's own report of `reported` clients at `now`,
    /// counting at most its `client_limit`: a process cannot claim more
    /// room than it has been given, nor make the master's sums overflow.
    /// Returns how many clients it gained, and whether this is the first
    /// time it reported more than its limit, so the master warns once per
    /// process however often it does.
    pub(super) fn reported_clients(&mut self, reported: u32, now: Instant) -> Reported {
        let before = self.clients.unwrap_or(0);
        let counted = reported.min(self.client_limit);
        self.report_clients(counted, now);
        let over_limit = reported > self.client_limit && !self.overreported;
        self.overreported |= over_limit;
        Reported {
            gained: counted.saturating_sub(before),
            over_limit,
        }
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
        let (stage, due) = self.life.idle_exit()?.next(grace)?;
        if now < due {
            return None;
        }
        let sent = match stage {
            IdleStage::Asked | IdleStage::Ignoring => Ok(()),
            IdleStage::Terminated => self.child.signal(Signal::SIGTERM),
            IdleStage::Killed => self.child.signal(Signal::SIGKILL),
        };
        self.life = self.life.escalated(stage, now);
        Some((stage, sent))
    }

    /// The process said it is busy (a clients report, or the native
    /// `busy`): a request to exit because it was idle is off, until it was
    /// sent SIGTERM. Returns the stage it was called off at, if it was.
    pub(super) fn busy(&mut self) -> Option<IdleStage> {
        let before = self.life.idle_exit()?;
        self.life = self.life.busy();
        self.life.idle_exit().is_none().then_some(before.stage)
    }

    /// Whether it is out of the master's hands for now, though it never
    /// said it would stop: held stopped by a signal, or ignoring a request
    /// to exit. It takes no connections, is not counted available, and
    /// policies are not shown it.
    pub(super) fn withheld(&self) -> bool {
        self.held.is_some()
            || self
                .life
                .idle_exit()
                .is_some_and(|exit| exit.stage != IdleStage::Asked)
    }

    /// The process as a policy sees it, times in milliseconds since
    /// `origin`.
    pub(super) fn view(&self, pid: i32, origin: Instant) -> ProcessView {
        let millis = |at: Instant| {
            u64::try_from(at.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
        };
        ProcessView {
            pid: pid.unsigned_abs(),
            started_ms: millis(self.started),
            ready: self.ready_at().is_some(),
            clients: self.clients,
            idle_since_ms: self.idle_since.map(millis),
            asked_to_exit_ms: self.life.idle_exit().map(|exit| millis(exit.asked)),
            retired: self.life.is_retired(),
        }
    }

    /// Whether the master still decides about it (policies see it): see
    /// [`Life::decided_about`]; and not while held stopped.
    pub(super) fn decided_about(&self) -> bool {
        self.life.decided_about() && self.held.is_none()
    }

    /// Whether it can be given connections: its life allows, and the
    /// kernel does not hold it stopped.
    pub(super) fn takes_connections(&self) -> bool {
        self.life.takes_connections() && self.held.is_none()
    }

    /// Whether it can take one more connection now: it takes connections,
    /// and by the shared rule it is ready with room (or does not report
    /// its clients, and so takes whatever comes).
    pub(super) fn has_room(&self) -> bool {
        self.takes_connections()
            && self
                .view(0, self.started)
                .model()
                .takes_connection(self.client_limit)
    }

    /// Whether it reports no clients and could be retired for it.
    pub(super) fn is_idle(&self) -> bool {
        self.idle_since.is_some() && self.life.decided_about() && !self.withheld()
    }

    /// The state word `warden ps` shows.
    pub(super) fn state(&self) -> &'static str {
        if self.held.is_some() {
            return "stopped";
        }
        match self.life {
            Life::Stopping { .. } => "stopping",
            Life::AskedToExit { exit, .. } => match exit.stage {
                IdleStage::Asked => "asked-to-exit",
                IdleStage::Ignoring => "ignoring-exit",
                IdleStage::Terminated | IdleStage::Killed => "stopping",
            },
            Life::Retired { .. } => "retired",
            Life::Starting => "starting",
            Life::Ready { .. } => match self.clients {
                None => "ready",
                Some(0) => "idle",
                Some(_) => "busy",
            },
        }
    }
}

/// Moves the idle exit of process `pid` of service `name` along when its
/// `grace` is over, and logs the step.
pub(super) fn escalate(name: &str, pid: i32, process: &mut Process, grace: Duration, now: Instant) {
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

    #[test]
    fn a_process_takes_connections_only_once_ready_and_until_it_goes() {
        let now = Instant::now();
        let starting = Life::Starting;
        assert!(!starting.takes_connections());
        assert!(starting.counts_toward_limit());
        let ready = starting.readied(now);
        assert_eq!(ready, Life::Ready { since: now });
        assert!(ready.takes_connections());
        assert_eq!(
            ready.readied(now + Duration::from_secs(1)),
            ready,
            "ready once"
        );
        let retired = ready.retired();
        assert!(!retired.takes_connections());
        assert!(!retired.counts_toward_limit());
        assert!(retired.is_retired());
        assert_eq!(retired.ready_at(), Some(now));
        let stopping = ready.stopped(now, false);
        assert!(!stopping.takes_connections());
        assert!(
            stopping.counts_toward_limit(),
            "its slot is freed by its exit"
        );
        assert!(stopping.asked_to_go());
        assert!(!stopping.decided_about());
        let replaced = Life::Starting.stopped(now, true);
        assert!(
            !replaced.counts_toward_limit(),
            "another may start in its place"
        );
        assert_eq!(replaced.retired(), replaced, "told to stop stays so");
    }

    #[test]
    fn an_idle_exit_may_be_called_off_until_sigterm() {
        let now = Instant::now();
        let ready = Life::Starting.readied(now);
        let asked = ready.asked_to_exit(IdleStage::Asked, now);
        assert!(asked.takes_connections(), "it may still take a client");
        assert!(asked.asked_to_go());
        assert_eq!(asked.busy(), ready, "busy calls it off");
        let ignoring = asked.escalated(IdleStage::Ignoring, now);
        assert!(!ignoring.takes_connections());
        assert!(!ignoring.decided_about());
        assert_eq!(ignoring.busy(), ready, "still revocable while ignoring");
        let terminated = ignoring.escalated(IdleStage::Terminated, now);
        assert_eq!(terminated.busy(), terminated, "not after SIGTERM");
        assert_eq!(
            terminated.idle_exit().map(|exit| exit.asked),
            Some(now),
            "the first request's time is kept"
        );
        let early = Life::Starting.asked_to_exit(IdleStage::Asked, now);
        assert!(!early.takes_connections(), "not before it is ready");
        assert_eq!(early.busy(), Life::Starting);
        assert_eq!(
            early.readied(now).busy(),
            ready,
            "ready while asked, then busy"
        );
    }
}
