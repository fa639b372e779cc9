//! The built-in `auth-worker` plugin: "Auth master process connects to auth
//! worker processes."
//!
//! - "client_limit=1, because only the master auth process connects to auth
//!   worker."
//! - "service_count=1, because auth master stops extra idling workers by
//!   disconnecting from them." A worker that served its connection and
//!   exited is replaced at once, never throttled.
//! - "process_limit should be a bit higher than auth_worker_max_count
//!   setting": 100, above auth's default of 30 workers.
//! - "user=root by default, because by default PAM authentication is used,
//!   which usually requires reading '/etc/shadow'."

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
        package warden:builtin-auth-worker;
        world auth-worker {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/lifecycle@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, Kind, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct AuthWorker;

identity!(
    AuthWorker,
    "auth-worker",
    "auth-worker: one lookup per process, recycled after each",
    ["auth-worker"]
);

warden_plugin_sdk::defaults!(AuthWorker, |_service: &str, _machine: &_| {
    Some(Settings {
        kind: Some(Kind::Worker),
        user: some(""),
        client_limit: Some(1),
        service_count: Some(1),
        process_limit: Some(100),
        unix_listeners: vec![UnixListener::new("auth-worker", 0o600).user(INTERNAL_USER)],
        ..Settings::default()
    })
});

warden_plugin_sdk::lifecycle!(AuthWorker, dovecot::throttle);

warden_plugin_sdk::stats!(AuthWorker, [Started, Exited, Throttled]);

export!(AuthWorker);
