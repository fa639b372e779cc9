//! The built-in `log` plugin: "All processes started via Dovecot master
//! process log their messages via the "log" process."
//!
//! - "process_limit=1, because the log process keeps track of all the other
//!   logging processes." It runs from startup and is replaced whenever it
//!   is gone; as `type = log` it is started first and stopped last.
//! - "user=root, because it guarantees being able to write to syslog
//!   socket and to the log files directly."
//! - It is never idle-killed: every other process writes to it.

#![allow(
    unsafe_code,
    reason = "the bindings wit-bindgen generates export functions with unsafe attributes"
)]
#![allow(
    missing_docs,
    reason = "the generated bindings carry the WIT's documentation"
)]

wit_bindgen::generate!({
    inline: "
        package warden:builtin-log;
        world log {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/scaling@0.1.0;
            export warden:policy/idle@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{Kind, NEVER_IDLE_KILL, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct Log;

identity!(
    Log,
    "log",
    "log: one process, first up and last down",
    ["log"]
);

warden_plugin_sdk::defaults!(Log, |_service: &str, _machine: &_| {
    Some(Settings {
        kind: Some(Kind::Log),
        user: some(""),
        process_limit: Some(1),
        idle_kill_ms: Some(NEVER_IDLE_KILL),
        unix_listeners: vec![UnixListener::new("log-errors", 0o600).kind("errors")],
        ..Settings::default()
    })
});

warden_plugin_sdk::scaling!(Log, |service: &_, processes: &[_], at_startup, busy| {
    dovecot::singleton(service, processes, at_startup, busy, true)
});

warden_plugin_sdk::idle!(Log, |_: &_, _: &[_], _, _| Vec::new());

warden_plugin_sdk::stats!(Log, [Started, Exited, Throttled]);

export!(Log);
