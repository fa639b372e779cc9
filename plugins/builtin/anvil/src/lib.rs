//! The built-in `anvil` plugin: "The anvil process tracks state of users
//! and their connections."
//!
//! - "chroot=empty and user=$default_internal_user, because anvil doesn't
//!   need access to anything."
//! - "process_limit=1, because there can be only one." It runs from
//!   startup and is replaced whenever it is gone.
//! - "idle_kill=4294967295s, because it should never die or all of its
//!   tracked state would be lost." It is never idle-killed, and as
//!   `type = anvil` it survives reload.

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
        package warden:builtin-anvil;
        world anvil {
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
    INTERNAL_USER, Kind, NEVER_IDLE_KILL, Settings, UnixListener, some,
};
use warden_plugin_sdk::{dovecot, identity};

struct Anvil;

identity!(
    Anvil,
    "anvil",
    "anvil: one process from startup, never idle-killed",
    ["anvil"]
);

warden_plugin_sdk::defaults!(Anvil, |_service: &str, _machine: &_| {
    Some(Settings {
        kind: Some(Kind::Anvil),
        user: some(INTERNAL_USER),
        chroot: some("empty"),
        process_limit: Some(1),
        idle_kill_ms: Some(NEVER_IDLE_KILL),
        unix_listeners: vec![
            UnixListener::new("anvil", 0o600),
            UnixListener::new("anvil-auth-penalty", 0o600),
        ],
        ..Settings::default()
    })
});

warden_plugin_sdk::scaling!(Anvil, |service: &_, processes: &[_], at_startup, busy| {
    dovecot::singleton(service, processes, at_startup, busy, true)
});

warden_plugin_sdk::idle!(Anvil, |_: &_, _: &[_], _, _| Vec::new());

warden_plugin_sdk::stats!(Anvil, [Started, Exited, Throttled]);

export!(Anvil);
