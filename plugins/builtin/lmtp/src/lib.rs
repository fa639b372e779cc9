//! The built-in `lmtp` plugin: the "LMTP process for delivering new mails."
//!
//! - "client_limit=1, because most of the time spent on an LMTP client is
//!   spent waiting for disk I/O and other blocking operations."
//! - "user=root, but the privileges are (temporarily) dropped to the mail
//!   user's privileges after userdb lookup.", keeping
//!   `$default_internal_group` as an extra group, as the mail services do,
//!   to reach the stats writer socket.
//! - A process that exits cleanly is replaced as deliveries need it, never
//!   throttled.

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
        package warden:builtin-lmtp;
        world lmtp {
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

struct Lmtp;

identity!(
    Lmtp,
    "lmtp",
    "lmtp: one delivery at a time per process",
    ["lmtp"]
);

warden_plugin_sdk::defaults!(Lmtp, |_service: &str, _machine: &_| {
    Some(Settings {
        protocol: some("lmtp"),
        user: some(""),
        extra_groups: Some(vec![INTERNAL_GROUP.to_owned()]),
        client_limit: Some(1),
        unix_listeners: vec![UnixListener::new("lmtp", 0o666)],
        ..Settings::default()
    })
});

warden_plugin_sdk::lifecycle!(Lmtp, dovecot::throttle);

warden_plugin_sdk::stats!(Lmtp, [Started, Exited, Throttled]);

export!(Lmtp);
