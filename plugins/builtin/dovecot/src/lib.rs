//! The built-in `dovecot` plugin: Dovecot's master process, deciding for
//! every service unless another plugin does.
//!
//! - scaling: "Minimum number of processes that always should be available
//!   to accept more client connections" (`process_min_avail`), started ten
//!   at a time, and one process at startup for `type = startup`;
//! - idle: "If a process doesn't appear to be doing anything after this
//!   much time, notify it that it should kill itself if it's not doing
//!   anything. process_min_avail setting overrides this" — with Dovecot
//!   2.3.21's low-water count of idle processes;
//! - lifecycle: a process that dies before it is ready, or a service that
//!   fails more than ten times a second before it has proven itself, is
//!   throttled, 2 s doubling to 60 s.

#![allow(
    unsafe_code,
    reason = "the bindings wit-bindgen generates export functions with unsafe attributes"
)]
#![allow(
    missing_docs,
    reason = "the generated bindings carry the WIT's documentation"
)]

wit_bindgen::generate!({
    world: "scheduling-plugin",
    path: "../../../wit",
});

use warden_plugin_sdk::{dovecot, identity};

struct Dovecot;

identity!(
    Dovecot,
    "dovecot",
    "Dovecot's master: prefork, low-water idle kill, failure throttling",
    ["*"]
);

warden_plugin_sdk::scaling!(Dovecot, dovecot::scaling);

warden_plugin_sdk::idle!(Dovecot, dovecot::idle);

warden_plugin_sdk::lifecycle!(Dovecot, dovecot::throttle);

export!(Dovecot);
