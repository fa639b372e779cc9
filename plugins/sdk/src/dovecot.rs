//! Dovecot's master, as decisions: how many processes to prefork, which
//! idle ones to retire, and what a failed exit means.

/// Milliseconds on the supervisor's monotonic clock.
pub type Millis = u64;

/// The shortest throttle after a failure (`SERVICE_STARTUP_FAILURE_THROTTLE_MIN_MSECS`).
pub const THROTTLE_MIN_MS: Millis = 2_000;

/// The longest throttle (`SERVICE_STARTUP_FAILURE_THROTTLE_MAX_MSECS`).
pub const THROTTLE_MAX_MS: Millis = 60_000;

/// Failures within one second that throttle a service that has not proven
/// itself (`SERVICE_MAX_EXIT_FAILURES_IN_SEC`).
pub const MAX_FAILURES_IN_SECOND: u32 = 10;

/// Processes one prefork round starts at most (`SERVICE_PREFORK_MAX_AT_ONCE`).
pub const PREFORK_MAX_AT_ONCE: u32 = 10;

/// What the decisions need to know of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// Whether it is `type = startup`.
    pub startup: bool,
    /// Connections one process serves at once.
    pub client_limit: u32,
    /// Processes the service may have.
    pub process_limit: u32,
    /// Processes to keep ready.
    pub process_min_avail: u32,
    /// How long an idle process may live; `None` is never idle-killed.
    pub idle_kill_ms: Option<Millis>,
}

/// What the decisions need to know of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Whether it has said it is ready (or lived long enough to be taken
    /// as ready).
    pub ready: bool,
    /// Its clients, if it reports them.
    pub clients: Option<u32>,
    /// Since when it has had no clients.
    pub idle_since_ms: Option<Millis>,
    /// When it was asked to exit for being idle.
    pub asked_to_exit_ms: Option<Millis>,
    /// Whether it takes no new connections.
    pub retired: bool,
}

impl Process {
    /// Whether it has room for another connection, now or once it is
    /// ready: not retired, and below the client limit or not reporting its
    /// clients (then it takes whatever comes, as a single long-running
    /// daemon does). Dovecot counts a process as available from fork on,
    /// so prefork does not start another while one is starting.
    pub fn has_room(&self, client_limit: u32) -> bool {
        !self.retired && self.clients.is_none_or(|clients| clients < client_limit)
    }

    /// Whether it can take a connection now: ready, and with room. Every
    /// interface hands connections by this, and nothing else.
    pub fn takes_connection(&self, client_limit: u32) -> bool {
        self.ready && self.has_room(client_limit)
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Prefork: start processes until `process_min_avail` can take a
/// connection, at most [`PREFORK_MAX_AT_ONCE`] per round, one only while
/// the master is busy and nothing is available, none while it is busy and
/// something is; a startup service gets its one process at startup.
pub fn scaling(service: &Service, processes: &[Process], at_startup: bool, busy: bool) -> u32 {
    let active = count(processes.iter().filter(|p| !p.retired).count());
    let room = service.process_limit.saturating_sub(active);
    let available = count(
        processes
            .iter()
            .filter(|p| p.has_room(service.client_limit))
            .count(),
    );
    let mut wanted = service.process_min_avail.saturating_sub(available);
    if service.startup && at_startup && processes.is_empty() {
        wanted = wanted.max(1);
    }
    let per_round = match (busy, available > 0) {
        (true, true) => 0,
        (true, false) => 1,
        (false, _) => PREFORK_MAX_AT_ONCE,
    };
    wanted.min(room).min(per_round)
}

/// A service of one process (`process_limit = 1`): never more than one,
/// whatever `process_limit` says. With `always`, that one runs from
/// startup and is replaced whenever it is gone, as the log and anvil
/// services must be; otherwise it starts like any other service.
pub fn singleton(
    service: &Service,
    processes: &[Process],
    at_startup: bool,
    busy: bool,
    always: bool,
) -> u32 {
    if processes.iter().any(|p| !p.retired) {
        return 0;
    }
    if always {
        return 1;
    }
    let one = Service {
        process_limit: 1,
        ..*service
    };
    scaling(&one, processes, at_startup, busy).min(1)
}

/// The low-water idle kill: ask as many of the longest-idle processes to
/// exit as were idle at once all interval long (`lowwater`), less
/// `process_min_avail`. A process asked within the last interval is not
/// asked again. Returns the pids to ask.
pub fn idle(service: &Service, processes: &[Process], lowwater: u32, now_ms: Millis) -> Vec<u32> {
    let Some(interval) = service.idle_kill_ms else {
        return Vec::new();
    };
    let to_kill = lowwater.saturating_sub(service.process_min_avail);
    let mut idle: Vec<&Process> = processes
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
        .map(|p| p.pid)
        .collect()
}

/// What the throttle decision needs to know of an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Whether it failed: a non-zero status or a signal, not asked for.
    pub failed: bool,
    /// Whether the process had said it was ready.
    pub was_ready: bool,
    /// Whether the service ever proved itself.
    pub service_proven: bool,
    /// Failed exits of the service in the last second.
    pub failures_in_last_second: u32,
    /// The service's last throttle, 0 if none since its last success.
    pub last_throttle_ms: Millis,
}

/// How long to throttle the service after `exit`, if at all: a process
/// that failed before it was ready, or an unproven service failing more
/// than ten times a second, throttles it for 2 s, doubling to 60 s. A
/// proven service is never throttled by its own crashes, so a client that
/// can crash its session cannot take the service down.
pub fn throttle(exit: &Exit) -> Option<Millis> {
    if !exit.failed {
        return None;
    }
    let throttle = !exit.was_ready
        || (!exit.service_proven && exit.failures_in_last_second > MAX_FAILURES_IN_SECOND);
    throttle.then(|| next_throttle(exit.last_throttle_ms))
}

/// The throttle after one that lasted `last_ms` (0 for none): 2 s, then
/// doubling to 60 s.
pub fn next_throttle(last_ms: Millis) -> Millis {
    last_ms
        .saturating_mul(2)
        .clamp(THROTTLE_MIN_MS, THROTTLE_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            startup: false,
            client_limit: 10,
            process_limit: 20,
            process_min_avail: 0,
            idle_kill_ms: Some(60_000),
        }
    }

    fn process(pid: u32, clients: Option<u32>, idle_since_ms: Option<Millis>) -> Process {
        Process {
            pid,
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
        assert_eq!(scaling(&s, &[], false, false), 10);
        let ten: Vec<Process> = (1..=10).map(|pid| process(pid, Some(0), Some(0))).collect();
        assert_eq!(scaling(&s, &ten, false, false), 5);
        s.process_limit = 12;
        assert_eq!(scaling(&s, &ten, false, false), 2);
    }

    #[test]
    fn full_processes_are_not_available_and_silent_ones_are() {
        let mut s = service();
        s.process_min_avail = 2;
        let full = [process(1, Some(10), None), process(2, Some(10), None)];
        assert_eq!(scaling(&s, &full, false, false), 2);
        let silent = [process(1, None, None), process(2, None, None)];
        assert_eq!(scaling(&s, &silent, false, false), 0);
    }

    #[test]
    fn a_busy_master_starts_one_only_when_nothing_is_available() {
        let mut s = service();
        s.process_min_avail = 4;
        assert_eq!(scaling(&s, &[], false, true), 1);
        assert_eq!(scaling(&s, &[process(1, Some(0), Some(0))], false, true), 0);
    }

    #[test]
    fn a_startup_service_gets_one_process_at_startup_only() {
        let mut s = service();
        s.startup = true;
        assert_eq!(scaling(&s, &[], true, false), 1);
        assert_eq!(scaling(&s, &[], false, false), 0);
    }

    #[test]
    fn a_singleton_never_has_more_than_one() {
        let mut s = service();
        s.process_min_avail = 4;
        assert_eq!(singleton(&s, &[], false, false, false), 1);
        let one = [process(1, Some(10), None)];
        assert_eq!(singleton(&s, &one, false, false, false), 0);
        s.process_min_avail = 0;
        assert_eq!(singleton(&s, &[], false, false, false), 0);
        assert_eq!(singleton(&s, &[], false, false, true), 1);
        assert_eq!(singleton(&s, &one, false, false, true), 0);
    }

    #[test]
    fn idle_kill_retires_lowwater_less_min_avail_longest_idle_first() {
        let mut s = service();
        s.process_min_avail = 1;
        let processes = [
            process(1, Some(0), Some(500)),
            process(2, Some(3), None),
            process(3, Some(0), Some(100)),
            process(4, Some(0), Some(300)),
        ];
        assert_eq!(idle(&s, &processes, 3, 70_000), [3, 4]);
        assert_eq!(idle(&s, &processes, 1, 70_000), Vec::<u32>::new());
        s.idle_kill_ms = None;
        assert_eq!(idle(&s, &processes, 3, 70_000), Vec::<u32>::new());
    }

    #[test]
    fn a_process_asked_recently_is_not_asked_again() {
        let s = service();
        let mut asked = process(1, Some(0), Some(0));
        asked.asked_to_exit_ms = Some(50_000);
        assert_eq!(idle(&s, &[asked], 1, 60_000), Vec::<u32>::new());
        assert_eq!(idle(&s, &[asked], 1, 110_000), [1]);
    }

    fn failure() -> Exit {
        Exit {
            failed: true,
            was_ready: true,
            service_proven: false,
            failures_in_last_second: 1,
            last_throttle_ms: 0,
        }
    }

    #[test]
    fn dying_before_ready_throttles_doubling_to_a_minute() {
        let mut e = failure();
        e.was_ready = false;
        assert_eq!(throttle(&e), Some(2_000));
        e.last_throttle_ms = 2_000;
        assert_eq!(throttle(&e), Some(4_000));
        e.last_throttle_ms = 40_000;
        assert_eq!(throttle(&e), Some(60_000));
    }

    #[test]
    fn many_failures_throttle_only_an_unproven_service() {
        let mut e = failure();
        e.failures_in_last_second = 11;
        assert_eq!(throttle(&e), Some(2_000));
        e.service_proven = true;
        assert_eq!(throttle(&e), None);
        e.service_proven = false;
        e.failures_in_last_second = 10;
        assert_eq!(throttle(&e), None);
    }

    #[test]
    fn clean_and_requested_exits_never_throttle() {
        let e = Exit {
            failed: false,
            was_ready: false,
            ..failure()
        };
        assert_eq!(throttle(&e), None);
    }
}
