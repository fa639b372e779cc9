//! The built-in `config` plugin: "Config process reads and parses the
//! 'dovecot.conf' file, and exports the parsed data in simpler format to
//! config clients."
//!
//! - "user=root, because the process needs to be able to reopen the config
//!   files during a config reload, and often some parts of the config
//!   having secrets are readable only by root."
//! - "Only root should be able to connect to its UNIX listener": mode 0600,
//!   owned by root.

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
        package warden:builtin-config;
        world config {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{Kind, NEVER_IDLE_KILL, Settings, UnixListener, some};
use warden_plugin_sdk::identity;

struct Config;

identity!(
    Config,
    "config",
    "config: root, a root-only socket",
    ["config"]
);

warden_plugin_sdk::defaults!(Config, |_service: &str, _machine: &_| {
    Some(Settings {
        kind: Some(Kind::Config),
        user: some(""),
        idle_kill_ms: Some(NEVER_IDLE_KILL),
        unix_listeners: vec![UnixListener::new("config", 0o600)],
        ..Settings::default()
    })
});

warden_plugin_sdk::stats!(Config, [Started, Exited, Throttled]);

export!(Config);
