//! The built-in `dict` plugin, for `dict` and `dict-async`: the processes
//! that serve the "proxy" dict backend's lookups.
//!
//! - dict, "Synchronous lookups (e.g. mysql): client_limit=1, because dict
//!   lookups are synchronous and the client is supposed to disconnect
//!   immediately after the lookup."
//! - dict-async, "Asynchronous lookups (e.g. pgsql, cassandra, ldap):
//!   process_limit should commonly be the same as number of CPU cores."
//! - "user=$default_internal_user, because the proxy dict lookups are
//!   typically SQL lookups, which require no filesystem access."
//! - "That's why by default only root can connect to dict socket": mode
//!   0600, owned by root.

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
        package warden:builtin-dict;
        world dict {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, Settings, UnixListener, some};
use warden_plugin_sdk::identity;

struct Dict;

identity!(
    Dict,
    "dict",
    "dict: one synchronous lookup per process; dict-async: a process per CPU",
    ["dict", "dict-async"]
);

warden_plugin_sdk::defaults!(
    Dict,
    |service: &str, machine: &warden_plugin_sdk::defaults::Machine| {
        let base = Settings {
            user: some(INTERNAL_USER),
            ..Settings::default()
        };
        Some(match service {
            "dict-async" => Settings {
                process_limit: Some(machine.cpus.max(1)),
                unix_listeners: vec![UnixListener::new("dict-async", 0o600)],
                ..base
            },
            _ => Settings {
                client_limit: Some(1),
                unix_listeners: vec![UnixListener::new("dict", 0o600)],
                ..base
            },
        })
    }
);

warden_plugin_sdk::stats!(Dict, [Started, Exited, Throttled]);

export!(Dict);
