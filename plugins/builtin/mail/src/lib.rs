//! The built-in `mail` plugin, for the post-login services `imap`, `pop3`,
//! `submission` and `managesieve`.
//!
//! - "client_limit may be increased from the default 1 to save some CPU
//!   and memory, but it also increases the latency".
//! - "service_count can be changed from 1 if only a single UID is used for
//!   mail users." A process that served its connection and exited is
//!   replaced at once, never throttled.
//! - "process_limit defaults to 1024, which means that the number of
//!   simultaneous connections for the protocol that this service handles
//!   ... is limited by this setting."

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
        package warden:builtin-mail;
        world mail {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/lifecycle@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_GROUP, INTERNAL_USER, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct Mail;

identity!(
    Mail,
    "mail",
    "imap, pop3, submission, managesieve: one client per process, recycled after each",
    ["imap", "pop3", "submission", "managesieve"]
);

warden_plugin_sdk::defaults!(Mail, |service: &str, _machine: &_| {
    let (protocol, listeners) = match service {
        "imap" => (
            some("imap"),
            vec![
                UnixListener::new("login/imap", 0o666),
                UnixListener::new("imap-master", 0o600)
                    .user(INTERNAL_USER)
                    .kind("master"),
            ],
        ),
        "pop3" => (some("pop3"), vec![UnixListener::new("login/pop3", 0o666)]),
        "submission" => (
            some("submission"),
            vec![UnixListener::new("login/submission", 0o666)],
        ),
        "managesieve" => (some("sieve"), vec![UnixListener::new("login/sieve", 0o666)]),
        _ => (None, Vec::new()),
    };
    Some(Settings {
        protocol,
        user: some(""),
        extra_groups: Some(vec![INTERNAL_GROUP.to_owned()]),
        client_limit: Some(1),
        service_count: Some(1),
        process_limit: Some(1024),
        unix_listeners: listeners,
        ..Settings::default()
    })
});

warden_plugin_sdk::lifecycle!(Mail, dovecot::throttle);

warden_plugin_sdk::stats!(Mail, [Started, Exited, Throttled]);

export!(Mail);
