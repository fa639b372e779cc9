//! The plugins of a configuration, answering the master through [`Policy`].
//!
//! A service's chain is: the plugins its `policies` setting names, in that
//! order; then the plugins from `plugins_dir` whose `services` globs match
//! it, in name order; then the built-in plugins whose globs match. The
//! first plugin in the chain that exports a hook answers it; a plugin that
//! fails (trap, deadline, memory cap, invalid answer) passes the question
//! on, and when no plugin is left the [`Fallback`] answers.

use crate::bindings::exports::warden::policy::{idle, lifecycle};
use crate::bindings::warden::policy::types;
use crate::decide::{
    ExitCause, ExitView, Fallback, IdleAction, Lifecycle, Policy, ProcessView, ServiceKind,
    ServiceView,
};
use wasmtime::Store;
use wasmtime::component::Instance;

use crate::runtime::{Origin, Plugin, State};

/// The longest throttle a plugin may ask for: a day.
const MAX_THROTTLE_MS: u64 = 24 * 3600 * 1000;

/// The longest give-up reason a plugin may give.
const MAX_REASON: usize = 1024;

/// The loaded plugins, in chain order: files, then built-ins.
#[derive(Debug, Default)]
pub struct Plugins {
    plugins: Vec<Plugin>,
    fallback: Fallback,
}

impl Plugins {
    /// The plugins `loaded`, ordered for chains: files by name, then
    /// built-ins. A file plugin with a built-in's name replaces it.
    pub fn new(loaded: Vec<Plugin>) -> Plugins {
        let (mut files, builtins): (Vec<Plugin>, Vec<Plugin>) = loaded
            .into_iter()
            .partition(|p| matches!(p.origin(), Origin::File { .. }));
        files.sort_by(|a, b| a.identity().name.cmp(&b.identity().name));
        let mut plugins = files;
        for builtin in builtins {
            if !plugins
                .iter()
                .any(|p| p.identity().name == builtin.identity().name)
            {
                plugins.push(builtin);
            }
        }
        Plugins {
            plugins,
            fallback: Fallback,
        }
    }

    /// Every plugin, in chain order.
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugins, to be reloaded.
    pub fn into_plugins(self) -> Vec<Plugin> {
        self.plugins
    }

    /// The indices of `service`'s chain.
    fn chain(&self, service: &ServiceView<'_>) -> Vec<usize> {
        let mut chain: Vec<usize> = service
            .policies
            .iter()
            .filter_map(|name| self.plugins.iter().position(|p| p.identity().name == *name))
            .collect();
        for (index, plugin) in self.plugins.iter().enumerate() {
            if plugin.applies_to(service.name) && !chain.contains(&index) {
                chain.push(index);
            }
        }
        chain
    }
}

fn wit_service(service: &ServiceView<'_>) -> types::Service {
    types::Service {
        name: service.name.to_owned(),
        kind: match service.kind {
            ServiceKind::Default => types::ServiceKind::Default,
            ServiceKind::Startup => types::ServiceKind::Startup,
            ServiceKind::Login => types::ServiceKind::Login,
            ServiceKind::Log => types::ServiceKind::Log,
            ServiceKind::Config => types::ServiceKind::Config,
            ServiceKind::Anvil => types::ServiceKind::Anvil,
            ServiceKind::Worker => types::ServiceKind::Worker,
        },
        protocol: service.protocol.to_owned(),
        client_limit: service.client_limit,
        process_limit: service.process_limit,
        process_min_avail: service.process_min_avail,
        service_count: service.service_count,
        idle_kill_ms: service.idle_kill_ms,
    }
}

fn wit_processes(processes: &[ProcessView]) -> Vec<types::Process> {
    processes
        .iter()
        .map(|p| types::Process {
            pid: p.pid,
            started_ms: p.started_ms,
            ready: p.ready,
            clients: p.clients,
            idle_since_ms: p.idle_since_ms,
            asked_to_exit_ms: p.asked_to_exit_ms,
            retired: p.retired,
        })
        .collect()
}

impl Plugins {
    /// Asks `service`'s chain: the first plugin exporting the hook (its
    /// indices from `indices`) is called with `call`; an answer `check`
    /// refuses counts as that plugin's failure, and the question passes on,
    /// as it does after a failed call. `None` when no plugin answered.
    fn ask<I, T, R>(
        &mut self,
        service: &ServiceView<'_>,
        hook: &str,
        indices: impl Fn(&Plugin) -> Option<I>,
        mut call: impl FnMut(&I, &mut Store<State>, &Instance) -> wasmtime::Result<T>,
        mut check: impl FnMut(T) -> Result<R, String>,
    ) -> Option<R> {
        for index in self.chain(service) {
            let Some(plugin) = self.plugins.get_mut(index) else {
                continue;
            };
            let Some(indices) = indices(plugin) else {
                continue;
            };
            let Ok(answer) = plugin.call(hook, service.name, |store, instance| {
                call(&indices, store, instance)
            }) else {
                continue;
            };
            match check(answer) {
                Ok(decision) => return Some(decision),
                Err(reason) => {
                    plugin.invalid(hook, service.name, reason);
                }
            }
        }
        None
    }
}

impl Policy for Plugins {
    fn scaling(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        at_startup: bool,
        busy: bool,
    ) -> u32 {
        let (wit_service, wit_processes) = (wit_service(service), wit_processes(processes));
        let limit = service.process_limit;
        let answer = self.ask(
            service,
            "scaling",
            Plugin::scaling,
            |hook, store, instance| {
                hook.load(&mut *store, instance)?.call_start(
                    &mut *store,
                    &wit_service,
                    &wit_processes,
                    at_startup,
                    busy,
                )
            },
            |count| {
                if count <= limit {
                    Ok(count)
                } else {
                    Err(format!(
                        "start {count} processes, more than process_limit ({limit})"
                    ))
                }
            },
        );
        answer.unwrap_or_else(|| self.fallback.scaling(service, processes, at_startup, busy))
    }

    fn idle(
        &mut self,
        service: &ServiceView<'_>,
        processes: &[ProcessView],
        lowwater: u32,
        now_ms: u64,
    ) -> Vec<IdleAction> {
        let (wit_service, wit_processes) = (wit_service(service), wit_processes(processes));
        let answer = self.ask(
            service,
            "idle",
            Plugin::idle,
            |hook, store, instance| {
                hook.load(&mut *store, instance)?.call_retire(
                    &mut *store,
                    &wit_service,
                    &wit_processes,
                    lowwater,
                    now_ms,
                )
            },
            |actions| check_idle(processes, actions),
        );
        answer.unwrap_or_else(|| self.fallback.idle(service, processes, lowwater, now_ms))
    }

    fn lifecycle(&mut self, service: &ServiceView<'_>, exit: &ExitView) -> Lifecycle {
        let wit_service = wit_service(service);
        let wit_exit = lifecycle::Exit {
            pid: exit.pid,
            cause: match exit.cause {
                ExitCause::Code(code) => lifecycle::Cause::Exited(code),
                ExitCause::Signal(signal) => lifecycle::Cause::Killed(signal),
            },
            age_ms: exit.age_ms,
            was_ready: exit.was_ready,
            was_asked: exit.was_asked,
            service_proven: exit.service_proven,
            failures_in_last_second: exit.failures_in_last_second,
            last_throttle_ms: exit.last_throttle_ms,
        };
        let answer = self.ask(
            service,
            "lifecycle",
            Plugin::lifecycle,
            |hook, store, instance| {
                hook.load(&mut *store, instance)?.call_after_exit(
                    &mut *store,
                    &wit_service,
                    wit_exit,
                )
            },
            check_lifecycle,
        );
        answer.unwrap_or_else(|| self.fallback.lifecycle(service, exit))
    }
}

/// Checks a lifecycle answer: a throttle of at most a day, a bounded reason.
fn check_lifecycle(decision: lifecycle::Decision) -> Result<Lifecycle, String> {
    match decision {
        lifecycle::Decision::Restart => Ok(Lifecycle::Continue),
        lifecycle::Decision::RestartAfter(ms) if ms <= MAX_THROTTLE_MS => {
            Ok(Lifecycle::Throttle { ms })
        }
        lifecycle::Decision::RestartAfter(ms) => {
            Err(format!("a throttle of {ms} ms, longer than a day"))
        }
        lifecycle::Decision::GiveUp(reason) if reason.len() <= MAX_REASON => {
            Ok(Lifecycle::GiveUp { reason })
        }
        lifecycle::Decision::GiveUp(reason) => Err(format!(
            "a reason of {} bytes, more than {MAX_REASON}",
            reason.len()
        )),
    }
}

/// Checks an idle answer: every pid among those offered, each named once.
fn check_idle(
    processes: &[ProcessView],
    actions: Vec<idle::Action>,
) -> Result<Vec<IdleAction>, String> {
    if actions.len() > processes.len() {
        return Err(format!(
            "{} actions for {} processes",
            actions.len(),
            processes.len()
        ));
    }
    let mut checked: Vec<IdleAction> = Vec::with_capacity(actions.len());
    for action in actions {
        let (pid, action) = match action {
            idle::Action::AskToExit(pid) => (pid, IdleAction::AskToExit(pid)),
            idle::Action::Terminate(pid) => (pid, IdleAction::Terminate(pid)),
            idle::Action::Kill(pid) => (pid, IdleAction::Kill(pid)),
        };
        if !processes.iter().any(|p| p.pid == pid) {
            return Err(format!(
                "pid {pid}, which is not one of the service's processes"
            ));
        }
        if checked.iter().any(|done| idle_pid(*done) == pid) {
            return Err(format!("pid {pid} twice"));
        }
        checked.push(action);
    }
    Ok(checked)
}

fn idle_pid(action: IdleAction) -> u32 {
    match action {
        IdleAction::AskToExit(pid) | IdleAction::Terminate(pid) | IdleAction::Kill(pid) => pid,
    }
}
