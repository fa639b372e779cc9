//! The questions the master asks, and the answers it falls back on.
//!
//! The master keeps the mechanics — processes, listeners, timers — and at
//! each decision point describes the situation in plain values and asks a
//! [`Policy`]. The policy plugins answer (Dovecot's own behaviour is the
//! built-in `dovecot` plugin); when none can, [`Fallback`] does. Time
//! reaches a policy only as arguments (milliseconds on the supervisor's
//! monotonic clock), so every answer is a pure function of its inputs and
//! can be replayed.

use warden_plugin_sdk::{admission, dovecot, login};

/// Milliseconds on the supervisor's monotonic clock.
pub type Millis = u64;

/// A service's `type`, as policies see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// `""`.
    Default,
    /// `startup`.
    Startup,
    /// `login`.
    Login,
    /// `log`.
    Log,
    /// `config`.
    Config,
    /// `anvil`.
    Anvil,
    /// `worker`.
    Worker,
}

impl ServiceKind {
    /// The name as a configuration writes it (`type = "login"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Default => "",
            ServiceKind::Startup => "startup",
            ServiceKind::Login => "login",
            ServiceKind::Log => "log",
            ServiceKind::Config => "config",
            ServiceKind::Anvil => "anvil",
            ServiceKind::Worker => "worker",
        }
    }

    /// Every kind, in the order a configuration's message lists them.
    pub const ALL: [ServiceKind; 7] = [
        ServiceKind::Default,
        ServiceKind::Startup,
        ServiceKind::Login,
        ServiceKind::Log,
        ServiceKind::Config,
        ServiceKind::Anvil,
        ServiceKind::Worker,
    ];
}

/// What the policy is told about a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView<'a> {
    /// The service's name.
    pub name: &'a str,
    /// Its `type`.
    pub kind: ServiceKind,
    /// Its `protocol`.
    pub protocol: &'a str,
    /// The plugins its `policies` setting names, asked first.
    pub policies: &'a [String],
    /// Connections a process serves in its life; `None` is unlimited.
    pub service_count: Option<u32>,
    /// Connections one process serves at once.
    pub client_limit: u32,
    /// Processes the service may have.
    pub process_limit: u32,
    /// Processes to keep ready for connections.
    pub process_min_avail: u32,
    /// How long an idle process may live; `None` is never idle-killed.
    pub idle_kill_ms: Option<Millis>,
    /// Connections one client address may have open at once; `None` is no
    /// limit.
    pub per_source_limit: Option<u32>,
    /// Connections one client address may open per second; `None` is no
    /// limit.
    pub per_source_rate: Option<u32>,
}

impl ServiceView<'_> {
    /// The service as the shared rules see it.
    pub fn model(&self) -> dovecot::Service {
        dovecot::Service {
            startup: self.kind == ServiceKind::Startup,
            client_limit: self.client_limit,
            process_limit: self.process_limit,
            process_min_avail: self.process_min_avail,
            idle_kill_ms: self.idle_kill_ms,
        }
    }
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
    /// The process as the shared rules see it: [`dovecot::Process`] answers
    /// whether it has room and whether it takes a connection, for the
    /// master and every plugin alike.
    pub fn model(&self) -> dovecot::Process {
        dovecot::Process {
            pid: self.pid,
            ready: self.ready,
            clients: self.clients,
            idle_since_ms: self.idle_since_ms,
            asked_to_exit_ms: self.asked_to_exit_ms,
            retired: self.retired,
        }
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

/// What a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// A unix stream socket.
    Unix,
    /// A fifo.
    Fifo,
    /// A TCP socket.
    Inet,
}

/// What the policy is told about a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerView {
    /// An inet listener's name, or the file name of a socket's path.
    pub name: String,
    /// What it is.
    pub kind: ListenerKind,
    /// The full path of a socket or fifo.
    pub path: Option<String>,
    /// The file mode of a socket or fifo.
    pub mode: Option<u32>,
    /// The owner of a socket or fifo.
    pub owner_uid: Option<u32>,
    /// The group of a socket or fifo.
    pub owner_gid: Option<u32>,
    /// The `type` the configuration gives it; empty when unset.
    pub configured_type: String,
    /// Whether connections speak TLS from the start.
    pub ssl: bool,
    /// Whether a PROXY protocol header comes first.
    pub haproxy: bool,
}

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerView {
    /// The client's address, for TCP.
    pub address: Option<String>,
    /// The client's port, for TCP.
    pub port: Option<u16>,
    /// The peer's user, for unix sockets.
    pub uid: Option<u32>,
    /// The peer's group, for unix sockets.
    pub gid: Option<u32>,
    /// The peer's process, for unix sockets.
    pub pid: Option<u32>,
}

/// A listener's client type: what a connection on it may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientType {
    /// The type's name.
    pub name: String,
    /// When set, the peer may only look up users with this uid.
    pub restricted_to_uid: Option<u32>,
}

/// What the policy is told about a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    /// Its id, unique for the life of the supervisor.
    pub id: u64,
    /// The name of the listener it came in on.
    pub listener: String,
    /// Who is at the other end.
    pub peer: PeerView,
    /// When it was accepted.
    pub accepted_ms: Millis,
    /// Whether the process reported its client logged in.
    pub authenticated: bool,
    /// The process serving it.
    pub pid: u32,
}

/// How busy a connection's source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceCounts {
    /// Connections from the same address open now, this one included.
    pub concurrent: u32,
    /// Connections from the same address in the last second, this one
    /// included.
    pub last_second: u32,
}

/// What happens to a connection the master accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It goes to a process.
    Accept,
    /// It is closed; the reason is logged and counted.
    Reject(String),
    /// It waits this long, then is decided again.
    Delay(Millis),
}

/// The decisions the master delegates.
pub trait Policy {
    /// How many processes to start now, beyond those connections ask for.
    /// `at_startup` is true on the first round after the service was set
    /// up; `busy` is true when the master started other processes since the
    /// last round.
    fn scaling(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        busy: bool,
    ) -> u32;

    /// Which processes to retire on an idle-kill round. `lowwater` is the
    /// fewest processes that were idle at once since the last round.
    fn idle(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        lowwater: u32,
        now_ms: Millis,
    ) -> Vec<IdleAction>;

    /// What to do after a process exited.
    fn lifecycle(&mut self, service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle;

    /// The client type of `listener`; `peer` when the master accepted the
    /// connection itself.
    fn typing(
        &mut self,
        service: &ServiceView<'_>,
        listener: &ListenerView,
        peer: Option<&PeerView>,
    ) -> ClientType;

    /// Whether `connection`, just accepted, may reach a process.
    fn admit(
        &mut self,
        service: &ServiceView<'_>,
        connection: &ConnectionView,
        counts: SourceCounts,
        now_ms: Millis,
    ) -> Admission;

    /// Which connections to close in a full login service, among
    /// `candidates` (those not logged in), for `waiting` connections.
    fn evict(
        &mut self,
        service: &ServiceView<'_>,
        candidates: &[ConnectionView],
        waiting: u32,
        now_ms: Millis,
    ) -> Vec<u64>;
}

/// The decisions the master falls back on when no plugin answers: the
/// least that keeps services alive and the machine safe. Each is a rule of
/// `warden_plugin_sdk`, the crate the built-in plugins decide with too, so
/// it is written once.
///
/// - scaling: Dovecot's prefork — keep `process_min_avail` processes with
///   room (ten started per round at most) and start a `startup` service's
///   one process;
/// - idle: retire nothing;
/// - lifecycle: throttle a service whose process failed before it was
///   ready, 2 s doubling to 60 s, so a broken program cannot fork in a loop;
/// - typing: the configured type, else the listener's name;
/// - admission: the service's `per_source_limit` and `per_source_rate`;
/// - eviction: the oldest connections not logged in, one per waiting
///   connection, so a full login service keeps taking new clients.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fallback;

impl Policy for Fallback {
    fn scaling(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        _busy: bool,
    ) -> u32 {
        let processes: Vec<dovecot::Process> = processes.iter().map(ProcessView::model).collect();
        // Dovecot's prefork, without holding back while the master is busy.
        dovecot::scaling(&service.model(), &processes, at_startup, false)
    }

    fn idle(
        &mut self,
        _service: &ServiceView<'_>,
        _processes: &[ProcessView],
        _lowwater: u32,
        _now_ms: Millis,
    ) -> Vec<IdleAction> {
        Vec::new()
    }

    fn lifecycle(&mut self, _service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle {
        if !exit.failed() || exit.was_ready {
            return Lifecycle::Continue;
        }
        Lifecycle::Throttle {
            ms: dovecot::next_throttle(exit.last_throttle_ms),
        }
    }

    fn typing(
        &mut self,
        _service: &ServiceView<'_>,
        listener: &ListenerView,
        _peer: Option<&PeerView>,
    ) -> ClientType {
        let name = if listener.configured_type.is_empty() {
            &listener.name
        } else {
            &listener.configured_type
        };
        ClientType {
            name: name.clone(),
            restricted_to_uid: None,
        }
    }

    fn admit(
        &mut self,
        service: &ServiceView<'_>,
        _connection: &ConnectionView,
        counts: SourceCounts,
        _now_ms: Millis,
    ) -> Admission {
        let limits = admission::Limits {
            concurrent: service.per_source_limit,
            per_second: service.per_source_rate,
        };
        let source = admission::Source {
            concurrent: counts.concurrent,
            last_second: counts.last_second,
        };
        match admission::per_source(&limits, &source) {
            admission::Verdict::Accept => Admission::Accept,
            admission::Verdict::Reject(reason) => Admission::Reject(reason.to_owned()),
            admission::Verdict::Delay(ms) => Admission::Delay(ms),
        }
    }

    fn evict(
        &mut self,
        _service: &ServiceView<'_>,
        candidates: &[ConnectionView],
        waiting: u32,
        _now_ms: Millis,
    ) -> Vec<u64> {
        let candidates: Vec<login::Connection> = candidates
            .iter()
            .map(|c| login::Connection {
                id: c.id,
                accepted_ms: c.accepted_ms,
                authenticated: c.authenticated,
            })
            .collect();
        login::evict_oldest(&candidates, waiting)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(kind: ServiceKind, min_avail: u32) -> ServiceView<'static> {
        ServiceView {
            name: "echo",
            kind,
            protocol: "",
            policies: &[],
            service_count: None,
            client_limit: 10,
            process_limit: 20,
            process_min_avail: min_avail,
            idle_kill_ms: Some(60_000),
            per_source_limit: None,
            per_source_rate: None,
        }
    }

    fn idle_process(pid: u32) -> ProcessView {
        ProcessView {
            pid,
            started_ms: 0,
            ready: true,
            clients: Some(0),
            idle_since_ms: Some(0),
            asked_to_exit_ms: None,
            retired: false,
        }
    }

    #[test]
    fn the_fallback_keeps_min_avail_and_starts_startup_services() {
        let mut fallback = Fallback;
        assert_eq!(
            fallback.scaling(&service(ServiceKind::Default, 15), &[], false, true),
            10
        );
        let three: Vec<ProcessView> = (1..=3).map(idle_process).collect();
        assert_eq!(
            fallback.scaling(&service(ServiceKind::Default, 4), &three, false, false),
            1
        );
        assert_eq!(
            fallback.scaling(&service(ServiceKind::Startup, 0), &[], true, false),
            1
        );
        assert_eq!(
            fallback.scaling(&service(ServiceKind::Startup, 0), &[], false, false),
            0
        );
    }

    #[test]
    fn the_fallback_never_idle_kills() {
        let three: Vec<ProcessView> = (1..=3).map(idle_process).collect();
        assert_eq!(
            Fallback.idle(&service(ServiceKind::Default, 0), &three, 3, 1 << 40),
            []
        );
    }

    #[test]
    fn the_fallback_throttles_only_failures_before_ready() {
        let exit = ExitView {
            pid: 1,
            cause: ExitCause::Code(1),
            age_ms: 5,
            was_ready: false,
            was_asked: false,
            service_proven: false,
            failures_in_last_second: 1,
            last_throttle_ms: 4_000,
        };
        let s = service(ServiceKind::Default, 0);
        assert_eq!(
            Fallback.lifecycle(&s, &exit),
            Lifecycle::Throttle { ms: 8_000 }
        );
        let ready = ExitView {
            was_ready: true,
            ..exit
        };
        assert_eq!(Fallback.lifecycle(&s, &ready), Lifecycle::Continue);
        let clean = ExitView {
            cause: ExitCause::Code(0),
            ..exit
        };
        assert_eq!(Fallback.lifecycle(&s, &clean), Lifecycle::Continue);
    }
}
