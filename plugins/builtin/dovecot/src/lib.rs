//! The built-in `dovecot` plugin: Dovecot's master process, deciding for
//! every service unless another plugin does.
//!
//! - scaling: "Minimum number of processes that always should be available
//!   to accept more client connections" (`process_min_avail`), started ten
//!   at a time, and one process at startup for `type = startup`;
//! - idle: "If a process doesn't appear to be doing anything after this
//!   much time, notify it that it should kill itself if it's not doing
//!   anything. process_min_avail setting overrides this" — with Dovecot
//!   2.3.21's low-water count of idle processes;
//! - lifecycle: a process that dies before it is ready, or a service that
//!   fails more than ten times a second before it has proven itself, is
//!   throttled, 2 s doubling to 60 s.

#![allow(
    unsafe_code,
    reason = "the bindings wit-bindgen generates export functions with unsafe attributes"
)]
#![allow(
    missing_docs,
    reason = "the generated bindings carry the WIT's documentation"
)]

wit_bindgen::generate!({
    world: "scheduling-plugin",
    path: "../../../wit",
});

use exports::warden::policy::idle::Action;
use exports::warden::policy::lifecycle::{Cause, Decision, Exit};
use warden::policy::types::{Process, Service};
use warden_plugin_sdk::dovecot;

struct Dovecot;

fn service(service: &Service) -> dovecot::Service {
    dovecot::Service {
        startup: matches!(service.kind, warden::policy::types::ServiceKind::Startup),
        client_limit: service.client_limit,
        process_limit: service.process_limit,
        process_min_avail: service.process_min_avail,
        idle_kill_ms: service.idle_kill_ms,
    }
}

fn processes(processes: &[Process]) -> Vec<dovecot::Process> {
    processes
        .iter()
        .map(|p| dovecot::Process {
            pid: p.pid,
            clients: p.clients,
            idle_since_ms: p.idle_since_ms,
            asked_to_exit_ms: p.asked_to_exit_ms,
            retired: p.retired,
        })
        .collect()
}

warden_plugin_sdk::identity!(
    Dovecot,
    "dovecot",
    "Dovecot's master: prefork, low-water idle kill, failure throttling",
    ["*"]
);

impl exports::warden::policy::scaling::Guest for Dovecot {
    fn start(service_: Service, processes_: Vec<Process>, at_startup: bool, busy: bool) -> u32 {
        dovecot::scaling(
            &service(&service_),
            &processes(&processes_),
            at_startup,
            busy,
        )
    }
}

impl exports::warden::policy::idle::Guest for Dovecot {
    fn retire(
        service_: Service,
        processes_: Vec<Process>,
        lowwater: u32,
        now_ms: u64,
    ) -> Vec<Action> {
        dovecot::idle(
            &service(&service_),
            &processes(&processes_),
            lowwater,
            now_ms,
        )
        .into_iter()
        .map(Action::AskToExit)
        .collect()
    }
}

impl exports::warden::policy::lifecycle::Guest for Dovecot {
    fn after_exit(_service: Service, exit: Exit) -> Decision {
        let failed = !exit.was_asked && !matches!(exit.cause, Cause::Exited(0));
        let throttle = dovecot::throttle(&dovecot::Exit {
            failed,
            was_ready: exit.was_ready,
            service_proven: exit.service_proven,
            failures_in_last_second: exit.failures_in_last_second,
            last_throttle_ms: exit.last_throttle_ms,
        });
        match throttle {
            Some(ms) => Decision::RestartAfter(ms),
            None => Decision::Restart,
        }
    }
}

export!(Dovecot);
