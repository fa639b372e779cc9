//! The questions the master asks, and Dovecot's answers to them.
//!
//! The master keeps the mechanics — processes, listeners, timers — and at
//! each decision point describes the situation in plain values and asks a
//! [`Policy`]. [`Dovecot`] answers as Dovecot's master does; plugins will
//! answer through the same trait. Time reaches a policy only as arguments
//! (milliseconds on the supervisor's monotonic clock), so every answer is a
//! pure function of its inputs and can be replayed.

/// Milliseconds on the supervisor's monotonic clock.
pub type Millis = u64;

/// Dovecot's shortest throttle after a failure (`SERVICE_STARTUP_FAILURE_THROTTLE_MIN_MSECS`).
pub const THROTTLE_MIN_MS: Millis = 2_000;

/// Dovecot's longest throttle (`SERVICE_STARTUP_FAILURE_THROTTLE_MAX_MSECS`).
pub const THROTTLE_MAX_MS: Millis = 60_000;

/// Failures within one second that throttle a service that has not proven
/// itself (`SERVICE_MAX_EXIT_FAILURES_IN_SEC`).
pub const MAX_FAILURES_IN_SECOND: u32 = 10;

/// Processes started by one prefork round at most (`SERVICE_PREFORK_MAX_AT_ONCE`).
pub const PREFORK_MAX_AT_ONCE: u32 = 10;

/// What the policy is told about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView<'a> {
    /// The service's name.
    pub name: &'a str,
    /// Whether it is `type = startup`.
    pub startup: bool,
    /// Connections one process serves at once.
    pub client_limit: u32,
    /// Processes the service may have.
    pub process_limit: u32,
    /// Processes to keep ready for connections.
    pub process_min_avail: u32,
    /// How long an idle process may live; `None` is never idle-killed.
    pub idle_kill_ms: Option<Millis>,
}

/// What the policy is told about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessView {
    /// Its process id.
    pub pid: u32,
    /// When it was started.
    pub started_ms: Millis,
    /// Whether it has said it is ready.
    pub ready: bool,
    /// How many clients it last reported; `None` if it never reports.
    pub clients: Option<u32>,
    /// Since when it has had no clients, if it reports and has none.
    pub idle_since_ms: Option<Millis>,
    /// When it was asked to exit because it was idle, if it was.
    pub asked_to_exit_ms: Option<Millis>,
    /// Whether it takes no new connections (it reached `service_count`, or
    /// said it is stopping).
    pub retired: bool,
}

impl ProcessView {
    /// Whether the process can take another connection now: it is not
    /// retired and is below `client_limit`, or does not report its clients
    /// (a single long-running daemon, which takes whatever comes).
    pub fn available(&self, client_limit: u32) -> bool {
        !self.retired && self.clients.is_none_or(|clients| clients < client_limit)
    }
}

/// What to do with a process on an idle-kill round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleAction {
    /// Ask it to exit if it is still doing nothing (SIGINT).
    AskToExit(u32),
    /// Tell it to stop (SIGTERM).
    Terminate(u32),
    /// Kill it (SIGKILL).
    Kill(u32),
}

/// How a process ended, for the lifecycle decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCause {
    /// It exited with this status.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

/// What the policy is told about an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitView {
    /// The process that ended.
    pub pid: u32,
    /// How it ended.
    pub cause: ExitCause,
    /// How long it lived.
    pub age_ms: Millis,
    /// Whether it had said it was ready.
    pub was_ready: bool,
    /// Whether it was asked to exit (idle kill, reload, stop).
    pub was_asked: bool,
    /// Whether the service has ever proven itself (a clean exit, or a
    /// process that lived long enough after it was ready).
    pub service_proven: bool,
    /// Failed exits of this service in the last second, this one included.
    pub failures_in_last_second: u32,
    /// The throttle the service had last, 0 if none since its last success.
    pub last_throttle_ms: Millis,
}

impl ExitView {
    /// Whether the exit counts as a failure: a non-zero status or a signal,
    /// unless the process was asked to exit.
    pub fn failed(&self) -> bool {
        !self.was_asked && self.cause != ExitCause::Code(0)
    }
}

/// What to do after an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Nothing special: new processes start as connections and
    /// `process_min_avail` need them.
    Continue,
    /// Start no process of the service for this long.
    Throttle {
        /// How long.
        ms: Millis,
    },
    /// Start no process of the service again until reload.
    GiveUp {
        /// Why, for the log.
        reason: String,
    },
}

/// The decisions the master delegates.
pub trait Policy {
    /// How many processes to start now, beyond those connections ask for.
    /// `at_startup` is true on the first round after the service was set
    /// up; `busy` is true when the master started other processes since the
    /// last round.
    fn scaling(
        &self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        busy: bool,
    ) -> u32;

    /// Which processes to retire on an idle-kill round. `lowwater` is the
    /// fewest processes that were idle at once since the last round.
    fn idle(
        &self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        lowwater: u32,
        now_ms: Millis,
    ) -> Vec<IdleAction>;

    /// What to do after a process exited.
    fn lifecycle(&self, service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle;
}

/// Dovecot's master, as a policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dovecot;

impl Policy for Dovecot {
    /// Prefork until `process_min_avail` processes can take a connection, at
    /// most [`PREFORK_MAX_AT_ONCE`] per round and none while the master is
    /// busy; a `startup` service gets its one process at startup.
    fn scaling(
        &self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        busy: bool,
    ) -> u32 {
        let active = processes.iter().filter(|p| !p.retired).count();
        let active = u32::try_from(active).unwrap_or(u32::MAX);
        let room = service.process_limit.saturating_sub(active);
        let available = processes
            .iter()
            .filter(|p| p.available(service.client_limit))
            .count();
        let available = u32::try_from(available).unwrap_or(u32::MAX);
        let mut wanted = service.process_min_avail.saturating_sub(available);
        if service.startup && at_startup && processes.is_empty() {
            wanted = wanted.max(1);
        }
        // One process is started right away even when busy, so a service
        // with nothing available gets something; the rest wait a round.
        let per_round = if busy && available > 0 {
            0
        } else if busy {
            1
        } else {
            PREFORK_MAX_AT_ONCE
        };
        wanted.min(room).min(per_round)
    }

    /// The low-water algorithm: as many of the longest-idle processes as
    /// were idle at once all along, less `process_min_avail`. A process
    /// already asked is asked again only once it has had a full interval.
    fn idle(
        &self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        lowwater: u32,
        now_ms: Millis,
    ) -> Vec<IdleAction> {
        let Some(interval) = service.idle_kill_ms else {
            return Vec::new();
        };
        let to_kill = lowwater.saturating_sub(service.process_min_avail);
        let mut idle: Vec<&ProcessView> = processes
            .iter()
            .filter(|p| p.idle_since_ms.is_some() && !p.retired)
            .filter(|p| {
                p.asked_to_exit_ms
                    .is_none_or(|asked| now_ms.saturating_sub(asked) >= interval)
            })
            .collect();
        idle.sort_by_key(|p| (p.idle_since_ms, p.pid));
        idle.into_iter()
            .take(usize::try_from(to_kill).unwrap_or(usize::MAX))
            .map(|p| IdleAction::AskToExit(p.pid))
            .collect()
    }

    /// Throttle a process that died before it was ready, or a service that
    /// has never proven itself and failed more than ten times in a second:
    /// 2 s, doubling to 60 s. A proven service is never throttled by its own
    /// crashes, so a client that can crash its session cannot take the
    /// service down.
    fn lifecycle(&self, _service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle {
        if !exit.failed() {
            return Lifecycle::Continue;
        }
        let throttle = !exit.was_ready
            || (!exit.service_proven && exit.failures_in_last_second > MAX_FAILURES_IN_SECOND);
        if !throttle {
            return Lifecycle::Continue;
        }
        let ms = exit
            .last_throttle_ms
            .saturating_mul(2)
            .clamp(THROTTLE_MIN_MS, THROTTLE_MAX_MS);
        Lifecycle::Throttle { ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> ServiceView<'static> {
        ServiceView {
            name: "imap-login",
            startup: false,
            client_limit: 10,
            process_limit: 20,
            process_min_avail: 0,
            idle_kill_ms: Some(60_000),
        }
    }

    fn process(pid: u32, clients: Option<u32>, idle_since_ms: Option<Millis>) -> ProcessView {
        ProcessView {
            pid,
            started_ms: 0,
            ready: true,
            clients,
            idle_since_ms,
            asked_to_exit_ms: None,
            retired: false,
        }
    }

    #[test]
    fn prefork_fills_min_avail_ten_at_a_time_within_the_limit() {
        let mut s = service();
        s.process_min_avail = 15;
        assert_eq!(Dovecot.scaling(&s, &[], false, false), 10);
        let five: Vec<ProcessView> = (1..=5).map(|pid| process(pid, Some(0), Some(0))).collect();
        assert_eq!(Dovecot.scaling(&s, &five, false, false), 10);
        let ten: Vec<ProcessView> = (1..=10).map(|pid| process(pid, Some(0), Some(0))).collect();
        assert_eq!(Dovecot.scaling(&s, &ten, false, false), 5);
        s.process_limit = 12;
        assert_eq!(Dovecot.scaling(&s, &ten, false, false), 2);
    }

    #[test]
    fn full_processes_do_not_count_as_available() {
        let mut s = service();
        s.process_min_avail = 2;
        let full = vec![process(1, Some(10), None), process(2, Some(10), None)];
        assert_eq!(Dovecot.scaling(&s, &full, false, false), 2);
        // One that never reports its clients takes whatever comes.
        let silent = vec![process(1, None, None), process(2, None, None)];
        assert_eq!(Dovecot.scaling(&s, &silent, false, false), 0);
    }

    #[test]
    fn a_busy_master_starts_one_only_when_nothing_is_available() {
        let mut s = service();
        s.process_min_avail = 4;
        assert_eq!(Dovecot.scaling(&s, &[], false, true), 1);
        let one = vec![process(1, Some(0), Some(0))];
        assert_eq!(Dovecot.scaling(&s, &one, false, true), 0);
    }

    #[test]
    fn a_startup_service_gets_one_process_at_startup_only() {
        let mut s = service();
        s.startup = true;
        assert_eq!(Dovecot.scaling(&s, &[], true, false), 1);
        assert_eq!(Dovecot.scaling(&s, &[], false, false), 0);
    }

    #[test]
    fn idle_kill_retires_lowwater_less_min_avail_longest_idle_first() {
        let mut s = service();
        s.process_min_avail = 1;
        let processes = vec![
            process(1, Some(0), Some(500)),
            process(2, Some(3), None),
            process(3, Some(0), Some(100)),
            process(4, Some(0), Some(300)),
        ];
        assert_eq!(
            Dovecot.idle(&s, &processes, 3, 70_000),
            [IdleAction::AskToExit(3), IdleAction::AskToExit(4)]
        );
        assert_eq!(Dovecot.idle(&s, &processes, 1, 70_000), []);
        s.idle_kill_ms = None;
        assert_eq!(Dovecot.idle(&s, &processes, 3, 70_000), []);
    }

    #[test]
    fn a_process_asked_recently_is_not_asked_again() {
        let s = service();
        let mut asked = process(1, Some(0), Some(0));
        asked.asked_to_exit_ms = Some(50_000);
        assert_eq!(Dovecot.idle(&s, &[asked.clone()], 1, 60_000), []);
        assert_eq!(
            Dovecot.idle(&s, &[asked], 1, 110_000),
            [IdleAction::AskToExit(1)]
        );
    }

    fn exit(cause: ExitCause) -> ExitView {
        ExitView {
            pid: 9,
            cause,
            age_ms: 100,
            was_ready: true,
            was_asked: false,
            service_proven: false,
            failures_in_last_second: 1,
            last_throttle_ms: 0,
        }
    }

    #[test]
    fn a_process_dying_before_ready_throttles_doubling_to_a_minute() {
        let mut e = exit(ExitCause::Code(1));
        e.was_ready = false;
        assert_eq!(
            Dovecot.lifecycle(&service(), &e),
            Lifecycle::Throttle { ms: 2_000 }
        );
        e.last_throttle_ms = 2_000;
        assert_eq!(
            Dovecot.lifecycle(&service(), &e),
            Lifecycle::Throttle { ms: 4_000 }
        );
        e.last_throttle_ms = 40_000;
        assert_eq!(
            Dovecot.lifecycle(&service(), &e),
            Lifecycle::Throttle { ms: 60_000 }
        );
    }

    #[test]
    fn many_failures_throttle_only_an_unproven_service() {
        let mut e = exit(ExitCause::Signal(11));
        e.failures_in_last_second = 11;
        assert_eq!(
            Dovecot.lifecycle(&service(), &e),
            Lifecycle::Throttle { ms: 2_000 }
        );
        e.service_proven = true;
        assert_eq!(Dovecot.lifecycle(&service(), &e), Lifecycle::Continue);
        e.service_proven = false;
        e.failures_in_last_second = 10;
        assert_eq!(Dovecot.lifecycle(&service(), &e), Lifecycle::Continue);
    }

    #[test]
    fn clean_and_requested_exits_never_throttle() {
        let mut e = exit(ExitCause::Code(0));
        e.was_ready = false;
        assert_eq!(Dovecot.lifecycle(&service(), &e), Lifecycle::Continue);
        let mut asked = exit(ExitCause::Signal(2));
        asked.was_asked = true;
        asked.was_ready = false;
        assert_eq!(Dovecot.lifecycle(&service(), &asked), Lifecycle::Continue);
    }
}
