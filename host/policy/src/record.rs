//! Recording a service's decisions as they are made, so that a situation
//! met in production can be replayed against another plugin before it is
//! deployed (`warden policy record`, then `warden policy test`).
//!
//! A [`Recorder`] wraps the master's [`Policy`] and passes every call
//! through unchanged. While a [`Recording`] is running, each call for its
//! service is kept with its inputs and the answer the master acted on,
//! whichever plugin (or the fallback) gave it.

use std::ops::{Deref, DerefMut};
use std::time::Instant;

use crate::decide::{
    Admission, ClientType, ConnectionView, ExitView, IdleAction, Lifecycle, ListenerView, Millis,
    PeerView, Policy, ProcessView, ServiceKind, ServiceView, SourceCounts,
};

/// The most calls one recording keeps; later calls are counted, not kept.
pub const MAX_CALLS: usize = 100_000;

/// A service's settings as the policy saw them on the first recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedService {
    /// The service's name.
    pub name: String,
    /// Its `type`.
    pub kind: ServiceKind,
    /// Its `protocol`.
    pub protocol: String,
    /// Connections a process serves in its life; `None` is unlimited.
    pub service_count: Option<u32>,
    /// Connections one process serves at once.
    pub client_limit: u32,
    /// Processes the service may have.
    pub process_limit: u32,
    /// Processes to keep ready for connections.
    pub process_min_avail: u32,
    /// How long an idle process may live; `None` is never.
    pub idle_kill_ms: Option<Millis>,
    /// Connections one client address may have open at once.
    pub per_source_limit: Option<u32>,
    /// Connections one client address may open per second.
    pub per_source_rate: Option<u32>,
}

impl From<&ServiceView<'_>> for RecordedService {
    fn from(view: &ServiceView<'_>) -> Self {
        RecordedService {
            name: view.name.to_owned(),
            kind: view.kind,
            protocol: view.protocol.to_owned(),
            service_count: view.service_count,
            client_limit: view.client_limit,
            process_limit: view.process_limit,
            process_min_avail: view.process_min_avail,
            idle_kill_ms: view.idle_kill_ms,
            per_source_limit: view.per_source_limit,
            per_source_rate: view.per_source_rate,
        }
    }
}

/// One call and the answer the master acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `scaling`.
    Scaling {
        /// The processes shown.
        processes: Vec<ProcessView>,
        /// Whether it was the service's first round.
        at_startup: bool,
        /// Whether other processes were started since the last round.
        busy: bool,
        /// How many processes to start.
        start: u32,
    },
    /// `idle`.
    Idle {
        /// The processes shown.
        processes: Vec<ProcessView>,
        /// The fewest idle at once since the last round.
        lowwater: u32,
        /// What to do with which.
        actions: Vec<IdleAction>,
    },
    /// `lifecycle`.
    Lifecycle {
        /// The exit.
        exit: ExitView,
        /// What to do after it.
        decision: Lifecycle,
    },
    /// `typing`.
    Typing {
        /// The listener.
        listener: ListenerView,
        /// The peer, when the master accepted the connection.
        peer: Option<PeerView>,
        /// The client type.
        client_type: ClientType,
    },
    /// `admission`.
    Admission {
        /// The connection.
        connection: ConnectionView,
        /// How busy its source was.
        counts: SourceCounts,
        /// What happened to it.
        decision: Admission,
    },
    /// `eviction`.
    Eviction {
        /// The connections that could be closed.
        candidates: Vec<ConnectionView>,
        /// How many connections were waiting.
        waiting: u32,
        /// The ids to close.
        victims: Vec<u64>,
    },
}

/// A call on the master's clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// When, in milliseconds since the master started: the clock every
    /// time in the call's inputs is on.
    pub at_ms: Millis,
    /// The call.
    pub call: Call,
}

/// The calls for one service over a span of time.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The service recorded.
    pub service: String,
    /// Its settings, from the first call.
    pub settings: Option<RecordedService>,
    /// The calls, in order, at most [`MAX_CALLS`].
    pub calls: Vec<Recorded>,
    /// Calls made after [`MAX_CALLS`] were kept.
    pub dropped: u64,
    /// The master's clock: its start.
    origin: Instant,
    /// When the recording ends by itself.
    until: Instant,
}

impl Recording {
    /// A recording of `service` until `until`, on the clock that starts
    /// at `origin`.
    pub fn new(service: &str, origin: Instant, until: Instant) -> Recording {
        Recording {
            service: service.to_owned(),
            settings: None,
            calls: Vec::new(),
            dropped: 0,
            origin,
            until,
        }
    }

    /// Whether the recording has ended by itself.
    pub fn ended(&self, now: Instant) -> bool {
        now >= self.until
    }

    fn now_ms(&self) -> Millis {
        let since = Instant::now().saturating_duration_since(self.origin);
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Keeps `call`, made for `service` at `at_ms` (or now), if it is one
    /// this recording wants.
    fn keep(
        &mut self,
        service: &ServiceView<'_>,
        at_ms: Option<Millis>,
        call: impl FnOnce() -> Call,
    ) {
        if service.name != self.service || self.ended(Instant::now()) {
            return;
        }
        if self.calls.len() >= MAX_CALLS {
            self.dropped += 1;
            return;
        }
        if self.settings.is_none() {
            self.settings = Some(RecordedService::from(service));
        }
        let at_ms = at_ms.unwrap_or_else(|| self.now_ms());
        self.calls.push(Recorded {
            at_ms,
            call: call(),
        });
    }
}

/// A policy whose calls may be recorded; otherwise the policy it wraps.
#[derive(Debug, Default)]
pub struct Recorder<P> {
    policy: P,
    recording: Option<Recording>,
}

impl<P> Recorder<P> {
    /// `policy`, recording nothing yet.
    pub fn new(policy: P) -> Recorder<P> {
        Recorder {
            policy,
            recording: None,
        }
    }

    /// Starts `recording`, replacing one under way.
    pub fn start(&mut self, recording: Recording) {
        self.recording = Some(recording);
    }

    /// The recording of `service`, which ends; `None` when none was
    /// started for it.
    pub fn take(&mut self, service: &str) -> Option<Recording> {
        self.recording
            .take_if(|recording| recording.service == service)
    }

    /// Drops a recording that ended and was never taken, once it is
    /// `stale` past its end, so a client that went away does not leave
    /// its calls in memory.
    pub fn expire(&mut self, now: Instant, stale: std::time::Duration) {
        self.recording
            .take_if(|recording| now.saturating_duration_since(recording.until) > stale);
    }
}

impl<P> Deref for Recorder<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.policy
    }
}

impl<P> DerefMut for Recorder<P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.policy
    }
}

impl<P: Policy> Policy for Recorder<P> {
    fn scaling(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        busy: bool,
    ) -> u32 {
        let start = self.policy.scaling(service, processes, at_startup, busy);
        if let Some(recording) = &mut self.recording {
            recording.keep(service, None, || Call::Scaling {
                processes: processes.to_vec(),
                at_startup,
                busy,
                start,
            });
        }
        start
    }

    fn idle(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        lowwater: u32,
        now_ms: Millis,
    ) -> Vec<IdleAction> {
        let actions = self.policy.idle(service, processes, lowwater, now_ms);
        if let Some(recording) = &mut self.recording {
            recording.keep(service, Some(now_ms), || Call::Idle {
                processes: processes.to_vec(),
                lowwater,
                actions: actions.clone(),
            });
        }
        actions
    }

    fn lifecycle(&mut self, service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle {
        let decision = self.policy.lifecycle(service, exit);
        if let Some(recording) = &mut self.recording {
            recording.keep(service, None, || Call::Lifecycle {
                exit: exit.clone(),
                decision: decision.clone(),
            });
        }
        decision
    }

    fn typing(
        &mut self,
        service: &ServiceView<'_>,
        listener: &ListenerView,
        peer: Option<&PeerView>,
    ) -> ClientType {
        let client_type = self.policy.typing(service, listener, peer);
        if let Some(recording) = &mut self.recording {
            recording.keep(service, None, || Call::Typing {
                listener: listener.clone(),
                peer: peer.cloned(),
                client_type: client_type.clone(),
            });
        }
        client_type
    }

    fn admit(
        &mut self,
        service: &ServiceView<'_>,
        connection: &ConnectionView,
        counts: SourceCounts,
        now_ms: Millis,
    ) -> Admission {
        let decision = self.policy.admit(service, connection, counts, now_ms);
        if let Some(recording) = &mut self.recording {
            recording.keep(service, Some(now_ms), || Call::Admission {
                connection: connection.clone(),
                counts,
                decision: decision.clone(),
            });
        }
        decision
    }

    fn evict(
        &mut self,
        service: &ServiceView<'_>,
        candidates: &[ConnectionView],
        waiting: u32,
        now_ms: Millis,
    ) -> Vec<u64> {
        let victims = self.policy.evict(service, candidates, waiting, now_ms);
        if let Some(recording) = &mut self.recording {
            recording.keep(service, Some(now_ms), || Call::Eviction {
                candidates: candidates.to_vec(),
                waiting,
                victims: victims.clone(),
            });
        }
        victims
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::decide::Fallback;

    fn service<'a>(name: &'a str, policies: &'a [String]) -> ServiceView<'a> {
        ServiceView {
            name,
            kind: ServiceKind::Default,
            protocol: "",
            policies,
            service_count: None,
            client_limit: 1,
            process_limit: 10,
            process_min_avail: 2,
            idle_kill_ms: Some(60_000),
            per_source_limit: None,
            per_source_rate: None,
        }
    }

    #[test]
    fn only_the_recorded_service_is_kept_and_answers_pass_through() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(Fallback);
        recorder.start(Recording::new(
            "imap",
            origin,
            origin + Duration::from_secs(60),
        ));
        let policies = Vec::new();
        let imap = service("imap", &policies);
        let pop3 = service("pop3", &policies);
        let started = recorder.scaling(&imap, &[], true, false);
        assert_eq!(started, Fallback.scaling(&imap, &[], true, false));
        recorder.scaling(&pop3, &[], true, false);
        let recording = recorder.take("imap").expect("a recording of imap");
        assert_eq!(recording.calls.len(), 1);
        assert_eq!(recording.settings, Some(RecordedService::from(&imap)));
        assert!(matches!(
            recording.calls[0].call,
            Call::Scaling { start, at_startup: true, .. } if start == started
        ));
        assert!(recorder.take("imap").is_none(), "taken once");
    }

    #[test]
    fn a_recording_stops_at_its_end_and_is_dropped_when_left() {
        let origin = Instant::now();
        let mut recorder = Recorder::new(Fallback);
        recorder.start(Recording::new("imap", origin, origin));
        let policies = Vec::new();
        recorder.scaling(&service("imap", &policies), &[], true, false);
        recorder.expire(origin + Duration::from_secs(120), Duration::from_secs(60));
        assert!(recorder.take("imap").is_none());
    }
}
