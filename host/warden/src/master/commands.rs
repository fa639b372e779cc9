//! The control socket's commands, as the master answers them: status,
//! ps, reload (answered once done), plugins, stop, stats, who, kick, and
//! the recording of a service's policy calls.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use super::Master;
use super::listening::stop_watching;
use super::metrics::{self};
use super::process::Process;
use super::reload::Loading;
use super::service::ServiceState;
use super::table::Slot;
use crate::control::{ExitStatus, ProcessStatus, Request, Response, ServiceStatus};
use crate::harness::Scenario;
use warden_policy::Recording;

pub(super) fn process_status(
    service: &str,
    pid: i32,
    process: &Process,
    now: Instant,
    state: Option<&str>,
) -> ProcessStatus {
    ProcessStatus {
        service: service.to_owned(),
        pid,
        state: state.unwrap_or(process.state()).to_owned(),
        clients: process.clients,
        age_secs: now.saturating_duration_since(process.started).as_secs(),
        status: process.status.clone(),
    }
}

/// The longest recording of a service's policy calls: past it, a
/// recording would hold more calls than it keeps, and a huge length would
/// overflow the clock.
const MAX_RECORDING: Duration = Duration::from_secs(3600);

/// What an operator asked of one service.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Stop,
    Start,
    Restart,
}

impl Master {
    /// Stops, starts or restarts the service `name`. Its processes are
    /// asked to take nothing more and finish their clients (SIGINT, or
    /// `stop-accepting` on the native interface), as after a reload; they
    /// no longer count toward `process_limit`, so on a restart new ones
    /// take the connections at once. Its listeners stay open throughout.
    fn service_command(&mut self, name: &str, operation: Operation) -> Response {
        let Some(index) = self.services.iter().position(|s| s.name() == name) else {
            return Response::Failed {
                message: format!("there is no service {name:?}"),
            };
        };
        let mut asked = 0;
        if matches!(operation, Operation::Stop | Operation::Restart) {
            for (_, process) in self.processes.of_mut(index) {
                if process.stop_accepting().is_ok() {
                    asked += 1;
                }
            }
        }
        let Some(state) = self.services.get_mut(index) else {
            return Response::Failed {
                message: format!("there is no service {name:?}"),
            };
        };
        let message = match operation {
            Operation::Stop => {
                state.stopped = true;
                stop_watching(state);
                format!(
                    "service {name} stopped: {asked} processes finish their clients and exit; none starts until warden start {name}"
                )
            }
            Operation::Start if std::mem::replace(&mut state.stopped, false) => {
                format!("service {name} started")
            }
            Operation::Start => format!("service {name} was not stopped"),
            Operation::Restart => format!(
                "service {name} restarting: {asked} processes finish their clients and exit, new ones take the connections"
            ),
        };
        tracing::info!(service = name, "{message}");
        self.agenda.touch(index);
        Response::Done { message }
    }

    /// Answers a control command on `reply`.
    pub(super) fn control(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let unknown = |service: &Option<String>| {
            service
                .as_deref()
                .filter(|name| !self.services.iter().any(|s| s.name() == *name))
                .map(|name| Response::UnknownService {
                    name: name.to_owned(),
                    services: self.services.iter().map(|s| s.name().to_owned()).collect(),
                })
        };
        let response = match request {
            Request::Ps { service } | Request::Who { service }
                if let Some(unknown) = unknown(&service) =>
            {
                unknown
            }
            Request::StopService { service }
            | Request::StartService { service }
            | Request::RestartService { service }
            | Request::Record { service, .. }
            | Request::Recorded { service }
                if let Some(unknown) = unknown(&Some(service.clone())) =>
            {
                unknown
            }
            Request::StopService { service } => self.service_command(&service, Operation::Stop),
            Request::StartService { service } => self.service_command(&service, Operation::Start),
            Request::RestartService { service } => {
                self.service_command(&service, Operation::Restart)
            }
            Request::Record { seconds, .. } if seconds > MAX_RECORDING.as_secs() => {
                Response::Failed {
                    message: format!(
                        "a recording lasts {} s at most; record for less, and again for more",
                        MAX_RECORDING.as_secs()
                    ),
                }
            }
            Request::Record { service, seconds } => {
                let until = Instant::now() + Duration::from_secs(seconds);
                self.policy
                    .start(Recording::new(&service, self.origin, until));
                Response::Done {
                    message: format!("recording the policy calls of {service} for {seconds} s"),
                }
            }
            Request::Recorded { service } => match self.policy.take(&service) {
                Some(recording) => {
                    let comment = format!(
                        "The policy calls of {service} recorded by warden, each step expecting\n\
                         what the master decided. Replay it against a plugin with\n\
                         warden policy test PLUGIN.wasm THIS-FILE"
                    );
                    Response::Recording {
                        scenario: Scenario::from_recording(&recording).to_toml(&comment),
                        calls: recording.calls.len(),
                        dropped: recording.dropped,
                    }
                }
                None => Response::Failed {
                    message: format!(
                        "no recording of {service} is under way; start one with warden policy record {service}"
                    ),
                },
            },
            Request::Status => Response::Status {
                services: self.services.iter().map(|s| self.status_of(s)).collect(),
            },
            Request::Ps { service } => {
                let now = Instant::now();
                let mut processes: Vec<ProcessStatus> = Vec::new();
                for (slot, pid, entry) in self.processes.iter() {
                    let (name, state) = match (slot, &entry.drain) {
                        (Slot::Service(index), _) => {
                            (self.services.get(index).map_or("", |s| s.name()), None)
                        }
                        (Slot::Draining, drain) => (
                            drain.as_ref().map_or("", |d| d.service.as_str()),
                            Some("draining"),
                        ),
                    };
                    if service.as_deref().is_none_or(|wanted| wanted == name) {
                        processes.push(process_status(name, pid, &entry.process, now, state));
                    }
                }
                Response::Ps { processes }
            }
            Request::Reload => {
                // Answered once the plugins are loaded and the
                // configuration with them.
                self.load_plugins(Loading {
                    reload: true,
                    replies: vec![reply],
                    ..Loading::default()
                });
                return;
            }
            Request::Plugins => Response::Plugins {
                plugins: self
                    .policy
                    .plugins()
                    .iter()
                    .map(|plugin| {
                        let (origin, sha256) = match plugin.origin() {
                            warden_policy::Origin::Builtin => ("built-in".to_owned(), None),
                            warden_policy::Origin::File { path, sha256 } => {
                                (path.clone(), Some(sha256.clone()))
                            }
                        };
                        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                        crate::control::PluginStatus {
                            name: plugin.identity().name.clone(),
                            version: plugin.identity().version.clone(),
                            origin,
                            sha256,
                            hooks: plugin
                                .hooks()
                                .names()
                                .into_iter()
                                .map(str::to_owned)
                                .collect(),
                            services: plugin.identity().services.clone(),
                            calls: plugin.stats().calls,
                            failures: plugin.stats().failures,
                            mean_us: micros(plugin.stats().mean()),
                            p99_us: micros(plugin.stats().p99()),
                            quarantined: plugin.quarantined(),
                            hook_times: plugin
                                .stats()
                                .hooks()
                                .iter()
                                .map(|(hook, times)| crate::control::HookStatus {
                                    hook: hook.clone(),
                                    calls: times.calls,
                                    failures: times.failures,
                                    mean_us: micros(times.mean()),
                                    p99_at_most_us: times.p99_at_most().map(micros),
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            },
            Request::Stop => {
                self.begin_stop("a stop command");
                Response::Done {
                    message: "stopping every service".to_owned(),
                }
            }
            Request::Stats => {
                self.plugin_metrics_at = None;
                self.report_plugin_metrics(Instant::now());
                Response::Stats {
                    text: metrics::render(&self.registry),
                }
            }
            Request::Who { service } => Response::Connections {
                connections: self.who(service.as_deref()),
            },
            Request::KickConnection { target } => match self.kick_connection(&target) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Failed { message },
            },
            Request::Kick { pid } => match self.process_mut(pid) {
                Some(process) => match process.stop(Signal::SIGTERM, Instant::now(), false) {
                    Ok(()) => Response::Done {
                        message: format!("sent SIGTERM to process {pid}"),
                    },
                    Err(error) => Response::Failed {
                        message: format!("cannot signal process {pid}: {error}"),
                    },
                },
                None => Response::Failed {
                    message: format!(
                        "process {pid} is not one of warden's; `warden ps` lists them"
                    ),
                },
            },
        };
        let _ = reply.send(response);
    }

    pub(super) fn status_of(&self, state: &ServiceState) -> ServiceStatus {
        let now = Instant::now();
        ServiceStatus {
            name: state.name().to_owned(),
            runs: state.runs,
            processes: u32::try_from(self.processes.count(state.place)).unwrap_or(u32::MAX),
            process_limit: state.config.process_limit.value,
            available: state.available(&self.processes),
            stopped: state.stopped,
            clients: state.clients(&self.processes),
            listening: !state.watchers.is_empty(),
            throttled_ms: state
                .throttle
                .until
                .filter(|until| *until > now)
                .map(|until| {
                    u64::try_from(until.saturating_duration_since(now).as_millis())
                        .unwrap_or(u64::MAX)
                }),
            throttle_reason: state.throttle.reason.clone(),
            last_exits: state
                .last_exits
                .iter()
                .map(|exit| ExitStatus {
                    pid: exit.pid,
                    how: exit.how.clone(),
                    secs_ago: now.saturating_duration_since(exit.at).as_secs(),
                    stderr: exit.stderr.clone(),
                })
                .collect(),
            given_up: state.given_up.clone(),
            spawns: state.spawns,
            exits: state.exits,
            connections: state.connections,
            dropped: state.dropped,
        }
    }
}
