//! The built-in `ipc` plugin: the "IPC hub process."
//!
//! - "process_limit=1, because there can be only one hub."
//! - "chroot=empty and user=$default_internal_user, because it doesn't
//!   need any files and there are no outbound connections."

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
        package warden:builtin-ipc;
        world ipc {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/scaling@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, LOGIN_USER, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct Ipc;

identity!(Ipc, "ipc", "ipc: one hub, chrooted to empty", ["ipc"]);

warden_plugin_sdk::defaults!(Ipc, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(INTERNAL_USER),
        chroot: some("empty"),
        process_limit: Some(1),
        unix_listeners: vec![
            UnixListener::new("ipc", 0o600).user(INTERNAL_USER),
            UnixListener::new("login/ipc-proxy", 0o600).user(LOGIN_USER),
        ],
        ..Settings::default()
    })
});

warden_plugin_sdk::scaling!(Ipc, |service: &_, processes: &[_], at_startup, busy| {
    dovecot::singleton(service, processes, at_startup, busy, false)
});

warden_plugin_sdk::stats!(Ipc, [Started, Exited, Throttled]);

export!(Ipc);
