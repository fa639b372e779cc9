//! The built-in `login` plugin, for the pre-login services `imap-login`,
//! `pop3-login`, `submission-login` and `managesieve-login`.
//!
//! - ""login" is used by login processes. ... The login processes can then
//!   kill some of their oldest connections that haven't logged in yet":
//!   eviction picks the oldest connections not logged in, never one that
//!   has.
//! - "default_login_user setting's value should be used for type=login
//!   processes", chrooted to `login`, where the sockets they need live.
//! - `service_count = 1`, Dovecot 2.3's high-security default: one
//!   connection per process.
//! - "process_min_avail setting overrides" idle_kill: the idle kill never
//!   leaves the service fewer than `process_min_avail` processes.

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
        package warden:builtin-login;
        world login {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/eviction@0.1.0;
            export warden:policy/idle@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{InetListener, Kind, LOGIN_USER, Settings, some};
use warden_plugin_sdk::{identity, login};

struct Login;

identity!(
    Login,
    "login",
    "login services: evict the oldest connection not logged in when full",
    [
        "imap-login",
        "pop3-login",
        "submission-login",
        "managesieve-login"
    ]
);

warden_plugin_sdk::defaults!(Login, |service: &str, _machine: &_| {
    let (protocol, listeners) = match service {
        "imap-login" => (
            some("imap"),
            vec![
                InetListener::plain("imap", 143),
                InetListener::tls("imaps", 993),
            ],
        ),
        "pop3-login" => (
            some("pop3"),
            vec![
                InetListener::plain("pop3", 110),
                InetListener::tls("pop3s", 995),
            ],
        ),
        "submission-login" => (
            some("submission"),
            vec![
                InetListener::plain("submission", 587),
                InetListener::tls("submissions", 465),
            ],
        ),
        "managesieve-login" => (some("sieve"), vec![InetListener::plain("sieve", 4190)]),
        _ => (None, Vec::new()),
    };
    Some(Settings {
        kind: Some(Kind::Login),
        protocol,
        user: some(LOGIN_USER),
        chroot: some("login"),
        service_count: Some(1),
        inet_listeners: listeners,
        ..Settings::default()
    })
});

warden_plugin_sdk::eviction!(Login, login::evict_oldest);

warden_plugin_sdk::idle!(Login, login::idle);

warden_plugin_sdk::stats!(
    Login,
    [Accepted, Waiting, Evicted, LoggedIn, Full, Started, Exited]
);

export!(Login);
