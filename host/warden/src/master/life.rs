//! A process's life as the master drives it: started, told ready by its
//! reports, stopped and continued by signals, and gone — its exit reaped,
//! logged, counted and decided on by the lifecycle policy (restart, throttle
//! or give up).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::mpsc;
use warden_policy::stats::Event as StatsEvent;
use warden_policy::{ExitCause, ExitView, Lifecycle, Policy};
use warden_sys::{Child, Exit, SpawnError};

use super::dovecot;
use super::launch::{self, Connection};
use super::listening::stop_watching;
use super::metrics::{ExitLabels, label};
use super::notify::Message;
use super::output::{self, Stream};
use super::process::{IdleStage, PROVEN_AFTER, Process};
use super::service::{Coming, LAST_EXITS, LastExit, ServiceState};
use super::starting::{Starting, Ticket};
use super::table::Slot;
use super::{Event, Master, Noise, Phase};
use super::{ROUND, native};
use crate::config::{Interface, ServiceCount, ServiceKind};

/// Forwards the exit of `child` as an event when its pidfd is readable.
pub(super) fn watch_exit(child: &Child, events: mpsc::UnboundedSender<Event>) {
    let pid = child.pid().as_raw();
    let watched = child
        .as_fd()
        .try_clone_to_owned()
        .and_then(warden_sys::watch::async_fd);
    match watched {
        Ok(pidfd) => {
            tokio::spawn(async move {
                let _ = pidfd.readable().await;
                let _ = events.send(Event::Exited { pid });
            });
        }
        Err(error) => {
            // Without the reactor, look at the pidfd ten times a second,
            // so the process is still reaped and stop still ends.
            tracing::warn!(pid, %error, "cannot watch a process's exit; looking for it periodically");
            let Ok(pidfd) = child.as_fd().try_clone_to_owned() else {
                tracing::error!(
                    pid,
                    "cannot keep a handle on the process; it will not be reaped"
                );
                return;
            };
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ROUND).await;
                    let mut polled = [nix::poll::PollFd::new(
                        pidfd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    if nix::poll::poll(&mut polled, nix::poll::PollTimeout::ZERO)
                        .is_ok_and(|n| n > 0)
                    {
                        let _ = events.send(Event::Exited { pid });
                        return;
                    }
                }
            });
        }
    }
}

/// Records a failed exit at `now` and returns how many the last second saw.
pub(super) fn record_failure(state: &mut ServiceState, now: Instant) -> u32 {
    state.failures.push_back(now);
    while state
        .failures
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) > Duration::from_secs(1))
    {
        state.failures.pop_front();
    }
    u32::try_from(state.failures.len()).unwrap_or(u32::MAX)
}

impl Master {
    /// Starts a process of service `index`, for `connection` if given: the
    /// plan is made here and carried out by the spawner, whose outcome
    /// comes back as [`Event::Spawned`]. Returns the ticket it comes back
    /// with; `None` when no process may start or the plan cannot be made.
    pub(super) fn spawn(&mut self, index: usize, connection: Option<Connection>) -> Option<Ticket> {
        let now = Instant::now();
        // What a Dovecot process is told of its neighbours; looked for only
        // then, not on every other interface's spawn (an inetd service
        // spawns per connection).
        let (stats_writer, log_runs) = if self
            .services
            .get(index)
            .is_some_and(|s| s.interface() == Interface::Dovecot)
        {
            let log_runs = self.services.iter().any(|s| {
                s.runs
                    && s.interface() == Interface::Dovecot
                    && s.config.kind.value == ServiceKind::Log
            });
            (dovecot::stats_writer(&self.services), log_runs)
        } else {
            (None, false)
        };
        let state = self.services.get_mut(index)?;
        if !state.below_limit(&self.processes) {
            // Whatever a policy asked for, process_limit holds.
            return None;
        }
        let service = &state.config;
        let base_dir = &self.config.globals.base_dir.value;
        let mut channel = None;
        let mut dovecot_generation = None;
        let peer = connection.as_ref().and_then(|c| native::source(&c.ends));
        let planned = match (service.interface.value, connection) {
            (Interface::Inetd, Some(connection)) => {
                launch::inetd(base_dir, service, state.identity.as_ref(), connection)
            }
            (Interface::Warden, _) => match native::channel_pair() {
                Ok((master_end, process_end)) => {
                    channel = Some(master_end);
                    launch::native(base_dir, service, state.identity.as_ref(), process_end)
                }
                Err(source) => Err(launch::LaunchError::Io {
                    service: service.name.to_string(),
                    what: "creating a control channel",
                    source,
                }),
            },
            (Interface::Dovecot, _) => {
                let generation = self.next_dovecot_generation;
                dovecot_generation = Some(generation);
                self.next_dovecot_generation = generation.wrapping_add(1).max(1);
                launch::dovecot(
                    state,
                    dovecot::Context {
                        generation,
                        anvil: self.anvil.as_mut(),
                        log: self.log_pipes.as_ref().filter(|_| log_runs),
                        base_dir: &self.config.globals.base_dir.value,
                        dovecot_config: &self.config.globals.dovecot_config.value,
                        stats_writer: stats_writer.as_deref(),
                    },
                )
            }
            (_, _) => launch::systemd(
                base_dir,
                service,
                state.identity.as_ref(),
                &state.listeners,
                &self.notify.address,
            ),
        };
        let (plan, output) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                // The whole chain: the OS error is what says why.
                let message = crate::error_chain(&error);
                tracing::error!(service = state.name(), "cannot start a process: {message}");
                self.after_failed_start(index, now);
                return None;
            }
        };
        let ticket = self.starting.insert(Starting {
            place: Some(index),
            service: state.name().to_owned(),
            asked: now,
            output,
            channel,
            peer,
            dovecot_generation,
            outcome: None,
        });
        if let Err(ticket) = self.spawner.spawn(ticket, plan) {
            self.starting.forget(ticket);
            tracing::error!(
                service = state.name(),
                "cannot start a process: the spawner threads are gone; this is a fault in warden (please report it), and restarting warden starts them again"
            );
            self.after_failed_start(index, now);
            return None;
        }
        state.starting += 1;
        self.spawned_this_round = true;
        Some(ticket)
    }

    /// The spawner's `outcome` for `starting`, asked for with `ticket`:
    /// the process is taken in, or the failure is logged and decided on.
    pub(super) fn spawned(
        &mut self,
        ticket: Ticket,
        starting: Starting,
        outcome: Result<Child, SpawnError>,
    ) {
        let now = Instant::now();
        let name = starting.service;
        let place = starting.place;
        if let Some(index) = place {
            self.agenda.touch(index);
        }
        if let Some(state) = place.and_then(|index| self.services.get_mut(index)) {
            state.starting = state.starting.saturating_sub(1);
            if state.spawn_pending == Some(Coming::Starting(ticket)) {
                state.spawn_pending = outcome
                    .as_ref()
                    .ok()
                    .map(|child| Coming::Started(child.pid().as_raw()));
            }
        }
        let child = match outcome {
            Ok(child) => child,
            Err(error) => {
                // The whole chain: the OS error is what says why.
                let message = crate::error_chain(&error);
                tracing::error!(service = name, "cannot start a process: {message}");
                if let Some(index) = place
                    && self.phase == Phase::Running
                {
                    self.after_failed_start(index, now);
                }
                return;
            }
        };
        let pid = child.pid().as_raw();
        let interface = place
            .and_then(|index| self.services.get(index))
            .map(|state| (state.interface(), state.config.kind.value));
        if let Some(stdout) = starting.output.stdout {
            output::capture(
                name.clone(),
                pid,
                Stream::Stdout,
                stdout,
                self.events.clone(),
            );
        }
        let stderr = match interface {
            Some((Interface::Dovecot, kind)) if kind != ServiceKind::Log => Stream::DovecotLog,
            _ => Stream::Stderr,
        };
        if let Some(output) = starting.output.stderr {
            output::capture(name.clone(), pid, stderr, output, self.events.clone());
        }
        watch_exit(&child, self.events.clone());
        let client_limit = place
            .and_then(|index| self.services.get(index))
            .map_or(1, |state| state.config.effective_client_limit());
        let mut process = Process::new(child, starting.asked, client_limit);
        process.peer = starting.peer;
        process.generation = starting.dovecot_generation;
        let (Some(index), Phase::Running) = (place, self.phase) else {
            // Its service was replaced, or the master is stopping, while it
            // started: it goes at once.
            tracing::debug!(service = name, pid, "process started too late; stopping it");
            let _ = process.stop(Signal::SIGTERM, now, true);
            match place {
                Some(index) => self.processes.add(pid, index, process),
                None => self.processes.add_draining(pid, &name, now, process),
            }
            return;
        };
        if let Some((Interface::Inetd, _)) = interface {
            // It serves its one connection from the start and takes no other.
            process.ready(now);
            process.clients = Some(1);
        }
        if let Some((_, ServiceKind::Anvil)) = interface
            && let Some(anvil) = starting.dovecot_generation.and(self.anvil.as_ref())
            && let Err(error) = anvil.greet()
        {
            tracing::warn!(service = name, pid, %error, "cannot greet anvil; it will refuse its clients' lines");
        }
        self.processes.add(pid, index, process);
        if let Some(state) = self.services.get_mut(index) {
            state.spawns += 1;
        }
        self.metrics.spawns.get_or_create(&label(&name)).inc();
        tracing::debug!(service = name, pid, "process started");
        if let Some(channel) = starting.channel {
            self.open_channel(index, pid, channel);
        }
        self.observe(index, StatsEvent::Spawned(pid.unsigned_abs()));
    }

    /// A process could not even be started: the policy decides, as for a
    /// process that died before it was ready.
    pub(super) fn after_failed_start(&mut self, index: usize, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let exit = ExitView {
            pid: 0,
            cause: ExitCause::Code(127),
            age_ms: 0,
            was_ready: false,
            was_asked: false,
            service_proven: state.proven,
            failures_in_last_second: record_failure(state, now),
            last_throttle_ms: state.throttle.last_ms,
        };
        let decision = self.policy.lifecycle(&state.view(), &exit);
        self.apply_lifecycle(index, decision, now, "its process could not be started");
    }

    pub(super) fn exited(&mut self, pid: i32) {
        let now = Instant::now();
        let Some((slot, entry)) = self.processes.remove(pid) else {
            return;
        };
        let (index, name) = match (slot, entry.drain) {
            (Slot::Service(index), _) => (
                Some(index),
                self.services
                    .get(index)
                    .map_or_else(String::new, |s| s.name().to_owned()),
            ),
            (Slot::Draining, drain) => (None, drain.map(|d| d.service).unwrap_or_default()),
        };
        let process = entry.process;
        // The pidfd is readable, so the exit is there to collect at once.
        let exit = match process.child.try_wait() {
            Ok(Some(exit)) => exit,
            Ok(None) => {
                tracing::error!(
                    service = name,
                    pid,
                    "a process's pidfd woke warden, but it has not exited; it is no longer watched"
                );
                return;
            }
            Err(error) => {
                tracing::error!(service = name, pid, %error, "cannot reap a process");
                return;
            }
        };
        let asked = process.life().asked_to_go();
        self.log_exit(&name, pid, exit, asked, index);
        if let Some(log) = &self.log_pipes
            && process.generation.is_some()
        {
            log.gone(&name, pid, &exit);
        }
        let cause = match exit {
            _ if asked => "asked",
            Exit::Code(0) => "clean",
            Exit::Code(_) => "failure",
            Exit::Signal { .. } => "signal",
        };
        self.metrics
            .exits
            .get_or_create(&ExitLabels {
                service: name,
                cause: cause.to_owned(),
            })
            .inc();
        if let Some(index) = index {
            self.observe(index, StatsEvent::Exited(pid.unsigned_abs()));
        }
        self.forget_connections(pid, index);
        let (Some(index), Phase::Running) = (index, self.phase) else {
            return;
        };
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if state.spawn_pending == Some(Coming::Started(pid)) {
            state.spawn_pending = None;
        }
        state.exits += 1;
        // Its stderr may have closed before its exit was heard.
        let stderr = self
            .tails
            .iter()
            .position(|(tailed, _)| *tailed == pid)
            .and_then(|at| self.tails.remove(at))
            .map(|(_, lines)| lines)
            .unwrap_or_default();
        if !asked {
            state.last_exits.push_front(LastExit {
                pid,
                how: exit.to_string(),
                at: now,
                stderr,
            });
            state.last_exits.truncate(LAST_EXITS);
        }
        if exit.success() {
            state.proven = true;
            state.throttle.last_ms = 0;
        }
        if process
            .ready_at()
            .is_some_and(|ready| now.saturating_duration_since(ready) >= PROVEN_AFTER)
        {
            state.proven = true;
        }
        let mut view = ExitView {
            pid: pid.unsigned_abs(),
            cause: match exit {
                Exit::Code(code) => ExitCause::Code(code),
                Exit::Signal { signal, .. } => ExitCause::Signal(signal),
            },
            age_ms: u64::try_from(now.saturating_duration_since(process.started).as_millis())
                .unwrap_or(u64::MAX),
            was_ready: process.ready_at().is_some(),
            was_asked: asked,
            service_proven: state.proven,
            failures_in_last_second: 0,
            last_throttle_ms: state.throttle.last_ms,
        };
        if view.failed() {
            view.failures_in_last_second = record_failure(state, now);
        }
        let decision = self.policy.lifecycle(&state.view(), &view);
        let dovecot = state.interface() == Interface::Dovecot;
        let reason = if view.was_ready {
            format!("process {pid} {exit}")
        } else {
            format!("process {pid} {exit} before it was ready")
        };
        self.apply_lifecycle(index, decision, now, &reason);
        if dovecot {
            self.react(index, now);
        }
    }

    pub(super) fn apply_lifecycle(
        &mut self,
        index: usize,
        decision: Lifecycle,
        now: Instant,
        reason: &str,
    ) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let name = state.name().to_owned();
        match decision {
            Lifecycle::Continue => {}
            // One failure event steps the throttle once. Processes that
            // fail together (a broken binary, several started in one
            // round) report their exits one by one; those that come while
            // the throttle they caused is in force are part of the same
            // event, as Dovecot ignores failures while throttled. Without
            // this, five processes dying in the same millisecond would
            // double the throttle four more times.
            Lifecycle::Throttle { .. } if state.throttle.until.is_some_and(|until| now < until) => {
                tracing::debug!(service = name, "already throttled: {reason}");
            }
            Lifecycle::Throttle { ms } => {
                state.throttle.until = Some(now + Duration::from_millis(ms));
                state.throttle.last_ms = ms;
                state.throttle.reason = Some(reason.to_owned());
                stop_watching(state);
                tracing::warn!(
                    service = name,
                    "throttling: no new process for {}: {reason}",
                    crate::config::value::Duration::from_millis(ms)
                );
                self.metrics.throttles.get_or_create(&label(&name)).inc();
                self.metrics.throttled.get_or_create(&label(&name)).set(1);
                self.observe(index, StatsEvent::Throttled(ms));
            }
            Lifecycle::GiveUp { reason: why } => {
                tracing::error!(service = name, "giving up until reload: {why} ({reason})");
                state.given_up = Some(why.clone());
                stop_watching(state);
                self.set_unready(Some(format!("service {name} given up: {why}")));
            }
        }
    }

    pub(super) fn log_exit(
        &self,
        name: &str,
        pid: i32,
        exit: Exit,
        asked: bool,
        index: Option<usize>,
    ) {
        let state = index.and_then(|i| self.services.get(i));
        let vsz = state.map(|s| s.config.vsz_limit.value);
        // A process that serves a connection and goes (inetd, or a
        // limited service_count) ends cleanly once per connection: a busy
        // service would write a line per connection, as Dovecot does not.
        let per_connection = state.is_some_and(|s| {
            s.interface() == Interface::Inetd
                || matches!(s.config.service_count.value, ServiceCount::Limited(_))
        });
        match exit {
            _ if asked => tracing::info!(service = name, pid, "process {exit} as asked"),
            Exit::Code(0) if per_connection => {
                tracing::debug!(service = name, pid, "process {exit}");
            }
            Exit::Code(0) => tracing::info!(service = name, pid, "process {exit}"),
            Exit::Code(83) => {
                let limit = match vsz {
                    Some(crate::config::VszLimit::Bytes(size)) => size.to_string(),
                    _ => "unlimited".to_owned(),
                };
                tracing::error!(
                    service = name,
                    pid,
                    "process {exit}: out of memory (vsz_limit = {limit}); raise service.{name}.vsz_limit"
                );
            }
            Exit::Signal {
                signal: libc::SIGKILL,
                ..
            } if matches!(vsz, Some(crate::config::VszLimit::Bytes(_))) => tracing::error!(
                service = name,
                pid,
                "process {exit}; if it ran out of memory, raise service.{name}.vsz_limit"
            ),
            _ => tracing::error!(service = name, pid, "process {exit}"),
        }
    }

    pub(super) fn notified(&mut self, pid: Pid, message: Message) {
        let now = Instant::now();
        let raw = pid.as_raw();
        let Some((service, process)) = self.named_process_mut(raw) else {
            // Anyone on the machine can send these: rate-limited.
            if self.noise.allow(&Noise::Stranger, now, || raw.to_string()) {
                tracing::warn!(
                    pid = raw,
                    "ignoring a notify message from pid {raw}, which is not one of warden's processes"
                );
            }
            return;
        };
        if message.ready || message.clients.is_some() || message.watchdog {
            process.ready(now);
        }
        if message.clients.is_some() && process.busy() == Some(IdleStage::Ignoring) {
            tracing::info!(
                service,
                pid = raw,
                "process {raw} reported its clients after all; it takes connections again"
            );
        }
        let reported = message
            .clients
            .map(|clients| (clients, process.reported_clients(clients, now)));
        if let Some((clients, reported)) = reported
            && reported.over_limit
        {
            let limit = process.client_limit;
            tracing::warn!(
                service,
                pid = raw,
                reported = clients,
                "process reported {clients} clients, more than its client_limit ({limit}); counting {limit}. A process must stop accepting at WARDEN_CLIENT_LIMIT: fix the service, or raise service.{service}.client_limit (warned once per process)"
            );
        }
        if message.stopping {
            process.retire();
        }
        if let Some(status) = message.status {
            process.status = Some(status);
        }
        if let Some((_, reported)) = reported
            && let Some(index) = self.processes.place(raw)
            && let Some(state) = self.services.get_mut(index)
        {
            state.connections += u64::from(reported.gained);
        }
    }

    /// SIGCHLD: some child may have been stopped or continued. A stopped
    /// process takes no connections and is not counted available, so the
    /// service starts another if it needs one; it is not killed (someone
    /// may be debugging it) unless an idle exit it ignored runs its course.
    /// Each stop and continue is logged once.
    pub(super) fn stops_changed(&mut self) {
        let now = Instant::now();
        loop {
            let (pid, change) = match warden_sys::next_stop_change() {
                Ok(Some(changed)) => changed,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "cannot ask which processes were stopped or continued");
                    return;
                }
            };
            let raw = pid.as_raw();
            if let Some(index) = self.processes.place(raw) {
                self.agenda.touch(index);
            }
            let Some((service, process)) = self.named_process_mut(raw) else {
                continue;
            };
            match change {
                warden_sys::StopChange::Stopped { signal } => {
                    if process.held.is_none() {
                        process.held = Some(now);
                        let signal = Signal::try_from(signal).map_or("a signal", Signal::as_str);
                        tracing::warn!(
                            service,
                            pid = raw,
                            "process {raw} was stopped by {signal}; it takes no connections until it is continued (SIGCONT), and warden leaves it be"
                        );
                    }
                }
                warden_sys::StopChange::Continued => {
                    if let Some(since) = process.held.take() {
                        tracing::info!(
                            service,
                            pid = raw,
                            "process {raw} was continued after {}s stopped; it takes connections again",
                            now.saturating_duration_since(since).as_secs()
                        );
                    }
                }
            }
        }
    }

    /// The process `pid`, with the name of its service, whether it runs or
    /// drains.
    pub(super) fn named_process_mut(&mut self, pid: i32) -> Option<(String, &mut Process)> {
        let slot = self.processes.slot(pid)?;
        let entry = self.processes.entry_mut(pid)?;
        let service = match slot {
            Slot::Service(index) => self.services.get(index).map(|s| s.name().to_owned()),
            Slot::Draining => entry.drain.as_ref().map(|d| d.service.clone()),
        }
        .unwrap_or_default();
        Some((service, &mut entry.process))
    }
}
