//! The built-in `director` plugin: the tracker process "which hooks into
//! all auth-client and auth-userdb connections".
//!
//! - "process_limit=1, because only one process can keep track of
//!   everyone's state."
//! - "user=$default_internal_user, because director doesn't access any
//!   files."
//! - "chroot can't be set, because it still needs to be connect to auth
//!   process": no chroot.

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
        package warden:builtin-director;
        world director {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/scaling@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, NEVER_IDLE_KILL, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct Director;

identity!(
    Director,
    "director",
    "director: one process, no chroot",
    ["director"]
);

warden_plugin_sdk::defaults!(Director, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(INTERNAL_USER),
        chroot: some(""),
        process_limit: Some(1),
        idle_kill_ms: Some(NEVER_IDLE_KILL),
        unix_listeners: vec![
            UnixListener::new("login/director", 0),
            UnixListener::new("director-admin", 0o600),
        ],
        ..Settings::default()
    })
});

warden_plugin_sdk::scaling!(Director, |service: &_,
                                       processes: &[_],
                                       at_startup,
                                       busy| {
    dovecot::singleton(service, processes, at_startup, busy, false)
});

warden_plugin_sdk::stats!(Director, [Started, Exited, Throttled]);

export!(Director);
