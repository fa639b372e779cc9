//! A scenario written from a [`Recording`] of a running master: the
//! service as the policy saw it, and one step per call, expecting exactly
//! the answer the master acted on.

use warden_policy::decide::{Admission, ExitCause, Lifecycle};
use warden_policy::record::{Call, RecordedService, Recording};
use warden_policy::{ConnectionView, ListenerKind, ListenerView, PeerView, ProcessView};

use super::{
    ConnectionSpec, ExitSpec, Expect, Hook, ListenerSpec, PeerSpec, PluginSpec, ProcessSpec,
    Scenario, ServiceSpec, Step, action_text,
};
use crate::config::value::Duration;

impl Scenario {
    /// The scenario of `recording`: its service and one step per call,
    /// each expecting what the master decided.
    pub fn from_recording(recording: &Recording) -> Scenario {
        let service = recording.settings.as_ref().map_or_else(
            || ServiceSpec {
                name: recording.service.clone(),
                kind: String::new(),
                protocol: String::new(),
                client_limit: super::default_client_limit(),
                process_limit: super::default_process_limit(),
                process_min_avail: 0,
                service_count: 0,
                idle_kill: None,
                per_source_limit: 0,
                per_source_rate: 0,
            },
            service_spec,
        );
        Scenario {
            plugin: PluginSpec::default(),
            service,
            steps: recording
                .calls
                .iter()
                .map(|c| step(c.at_ms, &c.call))
                .collect(),
            dir: std::path::PathBuf::new(),
        }
    }

    /// The scenario as TOML, headed by `comment` (each line prefixed with
    /// `# `).
    pub fn to_toml(&self, comment: &str) -> String {
        let mut text: String = comment.lines().map(|line| format!("# {line}\n")).collect();
        text.push('\n');
        // Every field is a string, a number, a bool or a table of those:
        // the serializer has nothing it could refuse.
        text.push_str(&toml::to_string(self).unwrap_or_default());
        text
    }
}

fn time(ms: u64) -> String {
    Duration::from_millis(ms).to_string()
}

fn service_spec(service: &RecordedService) -> ServiceSpec {
    ServiceSpec {
        name: service.name.clone(),
        kind: service.kind.as_str().to_owned(),
        protocol: service.protocol.clone(),
        client_limit: service.client_limit,
        process_limit: service.process_limit,
        process_min_avail: service.process_min_avail,
        service_count: service.service_count.unwrap_or(0),
        idle_kill: Some(
            service
                .idle_kill_ms
                .map_or_else(|| "infinite".to_owned(), time),
        ),
        per_source_limit: service.per_source_limit.unwrap_or(0),
        per_source_rate: service.per_source_rate.unwrap_or(0),
    }
}

/// A step with only the clock and the hook set.
fn bare(at_ms: u64, hook: Hook, expect: Expect) -> Step {
    Step {
        at: Some(time(at_ms)),
        hook,
        processes: Vec::new(),
        at_startup: false,
        busy: false,
        lowwater: 0,
        exit: None,
        connection: None,
        concurrent: 0,
        last_second: 0,
        candidates: Vec::new(),
        waiting: 0,
        listener: None,
        peer: None,
        expect,
    }
}

fn step(at_ms: u64, call: &Call) -> Step {
    match call {
        Call::Scaling {
            processes,
            at_startup,
            busy,
            start,
        } => Step {
            processes: processes.iter().map(process_spec).collect(),
            at_startup: *at_startup,
            busy: *busy,
            ..bare(
                at_ms,
                Hook::Scaling,
                Expect {
                    start: Some(*start),
                    ..Expect::default()
                },
            )
        },
        Call::Idle {
            processes,
            lowwater,
            actions,
        } => Step {
            processes: processes.iter().map(process_spec).collect(),
            lowwater: *lowwater,
            ..bare(
                at_ms,
                Hook::Idle,
                Expect {
                    actions: Some(actions.iter().map(action_text).collect()),
                    ..Expect::default()
                },
            )
        },
        Call::Lifecycle { exit, decision } => Step {
            exit: Some(ExitSpec {
                pid: exit.pid,
                code: match exit.cause {
                    ExitCause::Code(code) => Some(code),
                    ExitCause::Signal(_) => None,
                },
                signal: match exit.cause {
                    ExitCause::Signal(signal) => Some(signal),
                    ExitCause::Code(_) => None,
                },
                age: Some(time(exit.age_ms)),
                was_ready: exit.was_ready,
                was_asked: exit.was_asked,
                service_proven: exit.service_proven,
                failures_in_last_second: exit.failures_in_last_second,
                last_throttle: Some(time(exit.last_throttle_ms)),
            }),
            ..bare(
                at_ms,
                Hook::Lifecycle,
                Expect {
                    decision: Some(match decision {
                        Lifecycle::Continue => "continue".to_owned(),
                        Lifecycle::Throttle { ms } => format!("throttle {ms}"),
                        Lifecycle::GiveUp { reason } => format!("give-up {reason}"),
                    }),
                    ..Expect::default()
                },
            )
        },
        Call::Typing {
            listener,
            peer,
            client_type,
        } => Step {
            listener: Some(listener_spec(listener)),
            peer: peer.as_ref().map(peer_spec),
            ..bare(
                at_ms,
                Hook::Typing,
                Expect {
                    decision: Some(client_type.name.clone()),
                    ..Expect::default()
                },
            )
        },
        Call::Admission {
            connection,
            counts,
            decision,
        } => Step {
            connection: Some(connection_spec(connection)),
            concurrent: counts.concurrent,
            last_second: counts.last_second,
            ..bare(
                at_ms,
                Hook::Admission,
                Expect {
                    decision: Some(match decision {
                        Admission::Accept => "accept".to_owned(),
                        Admission::Reject(reason) => format!("reject {reason}"),
                        Admission::Delay(ms) => format!("delay {ms}"),
                    }),
                    ..Expect::default()
                },
            )
        },
        Call::Eviction {
            candidates,
            waiting,
            victims,
        } => Step {
            candidates: candidates.iter().map(connection_spec).collect(),
            waiting: *waiting,
            ..bare(
                at_ms,
                Hook::Eviction,
                Expect {
                    victims: Some(victims.clone()),
                    ..Expect::default()
                },
            )
        },
    }
}

fn process_spec(process: &ProcessView) -> ProcessSpec {
    ProcessSpec {
        pid: process.pid,
        started: Some(time(process.started_ms)),
        ready: process.ready,
        clients: process.clients,
        idle_since: process.idle_since_ms.map(time),
        asked_to_exit: process.asked_to_exit_ms.map(time),
        retired: process.retired,
    }
}

fn connection_spec(connection: &ConnectionView) -> ConnectionSpec {
    ConnectionSpec {
        id: connection.id,
        listener: connection.listener.clone(),
        address: connection.peer.address.clone(),
        port: connection.peer.port,
        uid: connection.peer.uid,
        gid: connection.peer.gid,
        peer_pid: connection.peer.pid,
        accepted: Some(time(connection.accepted_ms)),
        authenticated: connection.authenticated,
        pid: connection.pid,
    }
}

fn peer_spec(peer: &PeerView) -> PeerSpec {
    PeerSpec {
        address: peer.address.clone(),
        port: peer.port,
        uid: peer.uid,
        gid: peer.gid,
        pid: peer.pid,
    }
}

fn listener_spec(listener: &ListenerView) -> ListenerSpec {
    ListenerSpec {
        name: listener.name.clone(),
        kind: match listener.kind {
            ListenerKind::Unix => "unix",
            ListenerKind::Fifo => "fifo",
            ListenerKind::Inet => "inet",
        }
        .to_owned(),
        path: listener.path.clone(),
        mode: listener.mode,
        owner_uid: listener.owner_uid,
        owner_gid: listener.owner_gid,
        configured_type: listener.configured_type.clone(),
        ssl: listener.ssl,
        haproxy: listener.haproxy,
    }
}
