//! The built-in `auth` plugin: "The master auth process."
//!
//! - "process_limit=1, because there can be only one auth master process."
//! - "user=$default_internal_user, because it typically doesn't need
//!   permissions to do anything (PAM lookups are done by auth-workers)."
//! - "With UNIX listeners the client type is selected based on the filename
//!   after the last "-" in the filename. For example "anything-userdb" is
//!   of "userdb" type. The default type is "client" for inet listeners and
//!   unrecognized UNIX listeners." Inet listeners go by their name the same
//!   way, as Dovecot's code does. A `userdb` socket of mode exactly 0666
//!   restricts a peer that is neither its owner nor in its group to lookups
//!   of its own uid, and the typing answer says so.

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
        package warden:builtin-auth;
        world auth {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/typing@0.1.0;
            export warden:policy/scaling@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity, typing};

struct Auth;

identity!(
    Auth,
    "auth",
    "auth: client types by listener name, one process",
    ["auth"]
);

warden_plugin_sdk::defaults!(Auth, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(INTERNAL_USER),
        process_limit: Some(1),
        unix_listeners: vec![
            UnixListener::new("login/login", 0o666),
            UnixListener::new("token-login/tokenlogin", 0o666),
            UnixListener::new("auth-login", 0o600).user(INTERNAL_USER),
            UnixListener::new("auth-client", 0o600).user(INTERNAL_USER),
            UnixListener::new("auth-userdb", 0o666).user(INTERNAL_USER),
            UnixListener::new("auth-master", 0o600),
        ],
        ..Settings::default()
    })
});

warden_plugin_sdk::typing!(Auth, typing::auth);

warden_plugin_sdk::scaling!(Auth, |service: &_, processes: &[_], at_startup, busy| {
    dovecot::singleton(service, processes, at_startup, busy, false)
});

warden_plugin_sdk::stats!(Auth, [Started, Exited, Throttled]);

export!(Auth);
