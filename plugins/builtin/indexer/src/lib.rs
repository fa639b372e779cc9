//! The built-in `indexer` plugin: the "Indexer master process, which
//! tracks and prioritizes indexing requests from mail processes."
//!
//! - "process_limit=1, because only one process can keep the FTS
//!   guarantee."
//! - "user=$default_internal_user, because the process doesn't need any
//!   permissions."

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
        package warden:builtin-indexer;
        world indexer {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/scaling@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct Indexer;

identity!(
    Indexer,
    "indexer",
    "indexer: one process, the FTS guarantee",
    ["indexer"]
);

warden_plugin_sdk::defaults!(Indexer, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(INTERNAL_USER),
        process_limit: Some(1),
        unix_listeners: vec![UnixListener::new("indexer", 0o666)],
        ..Settings::default()
    })
});

warden_plugin_sdk::scaling!(Indexer, |service: &_, processes: &[_], at_startup, busy| {
    dovecot::singleton(service, processes, at_startup, busy, false)
});

warden_plugin_sdk::stats!(Indexer, [Started, Exited, Throttled]);

export!(Indexer);
