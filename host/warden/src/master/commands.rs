//! The control socket's commands, as the master answers them: status,
//! ps, reload (answered once done), plugins, stop, stats, who and kick.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use super::Master;
use super::metrics::{self};
use super::process::Process;
use super::reload::Loading;
use super::service::ServiceState;
use super::table::Slot;
use crate::control::{ExitStatus, ProcessStatus, Request, Response, ServiceStatus};

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

impl Master {
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
                    text: metrics::render(&self.registry, &self.plugin_metrics),
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
                .map(|(pid, how, at)| ExitStatus {
                    pid: *pid,
                    how: how.clone(),
                    secs_ago: now.saturating_duration_since(*at).as_secs(),
                })
                .collect(),
            given_up: state.given_up.clone(),
            spawns: state.spawns,
            dropped: state.dropped,
        }
    }
}
