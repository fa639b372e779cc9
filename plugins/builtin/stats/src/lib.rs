//! The built-in `stats` plugin: "Mail process statistics tracking. Its
//! behavior is very similar to the anvil process".
//!
//! - Like anvil: one process, from startup, replaced whenever it is gone,
//!   and never idle-killed, or its statistics would be lost.
//! - `user=$default_internal_user`; login processes write to
//!   `login/stats-writer`, mail processes to `stats-writer`.

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
        package warden:builtin-stats;
        world stats {
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

use warden_plugin_sdk::defaults::{
    INTERNAL_GROUP, INTERNAL_USER, LOGIN_USER, NEVER_IDLE_KILL, Settings, UnixListener, some,
};
use warden_plugin_sdk::{dovecot, identity};

struct Stats;

identity!(
    Stats,
    "stats",
    "stats: one process from startup, never idle-killed",
    ["stats"]
);

warden_plugin_sdk::defaults!(Stats, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(INTERNAL_USER),
        process_limit: Some(1),
        idle_kill_ms: Some(NEVER_IDLE_KILL),
        unix_listeners: vec![
            UnixListener::new("stats-reader", 0o600).kind("reader"),
            UnixListener::new("stats-writer", 0o660)
                .group(INTERNAL_GROUP)
                .kind("writer"),
            UnixListener::new("login/stats-writer", 0o600)
                .user(LOGIN_USER)
                .kind("writer"),
        ],
        ..Settings::default()
    })
});

warden_plugin_sdk::scaling!(Stats, |service: &_, processes: &[_], at_startup, busy| {
    dovecot::singleton(service, processes, at_startup, busy, true)
});

warden_plugin_sdk::idle!(Stats, |_: &_, _: &[_], _, _| Vec::new());

warden_plugin_sdk::stats!(Stats, [Started, Exited, Throttled]);

export!(Stats);
