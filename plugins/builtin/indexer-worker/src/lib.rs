//! The built-in `indexer-worker` plugin: the processes that do the
//! indexing.
//!
//! - "client_limit=1, because indexing is a synchronous operation."
//! - "process_limit defaults to 10, because the FTS index updating can eat
//!   a lot of CPU and disk I/O."
//! - "user=root, but the privileges are (temporarily) dropped to the mail
//!   user's privileges after userdb lookup."
//! - A worker that exits after its work is replaced as the indexer needs
//!   it, never throttled for exiting cleanly.

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
        package warden:builtin-indexer-worker;
        world indexer-worker {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/lifecycle@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{INTERNAL_USER, Kind, Settings, UnixListener, some};
use warden_plugin_sdk::{dovecot, identity};

struct IndexerWorker;

identity!(
    IndexerWorker,
    "indexer-worker",
    "indexer-worker: ten synchronous workers at most",
    ["indexer-worker"]
);

warden_plugin_sdk::defaults!(IndexerWorker, |_service: &str, _machine: &_| {
    Some(Settings {
        kind: Some(Kind::Worker),
        user: some(""),
        client_limit: Some(1),
        process_limit: Some(10),
        unix_listeners: vec![UnixListener::new("indexer-worker", 0o600).user(INTERNAL_USER)],
        ..Settings::default()
    })
});

warden_plugin_sdk::lifecycle!(IndexerWorker, dovecot::throttle);

warden_plugin_sdk::stats!(IndexerWorker, [Started, Exited, Throttled]);

export!(IndexerWorker);
