//! The built-in `doveadm` plugin: "doveadm server processes" that run
//! doveadm mail commands.
//!
//! - "client_limit=1, because doveadm command execution is synchronous."
//! - "service_count=1 just in case there were any memory leaks." A process
//!   that served its command and exited is replaced at once, never
//!   throttled.
//! - "user=root, but the privileges are (temporarily) dropped to the mail
//!   user's privileges after userdb lookup."

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
        package warden:builtin-doveadm;
        world doveadm {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/lifecycle@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_GROUP, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct Doveadm;

identity!(
    Doveadm,
    "doveadm",
    "doveadm: one command per process, recycled after each",
    ["doveadm"]
);

warden_plugin_sdk::defaults!(Doveadm, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(""),
        extra_groups: Some(vec![INTERNAL_GROUP.to_owned()]),
        client_limit: Some(1),
        service_count: Some(1),
        unix_listeners: vec![UnixListener::new("doveadm-server", 0o600).kind("tcp")],
        ..Settings::default()
    })
});

warden_plugin_sdk::lifecycle!(Doveadm, dovecot::throttle);

warden_plugin_sdk::stats!(Doveadm, [Started, Exited, Throttled]);

export!(Doveadm);
