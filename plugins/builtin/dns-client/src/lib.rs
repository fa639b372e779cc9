//! The built-in `dns-client` plugin, for the `dns_client` service: "Used by
//! "lib-dns" library to perform asynchronous DNS lookups."
//!
//! - "client_limit=1, because the DNS lookup is synchronous."
//! - "user=$default_internal_user, because typically no special privileged
//!   files need to be read."
//! - "chroot can be used only if it contains 'etc/resolv.conf' and other
//!   files necessary for DNS lookups": no chroot by default; an operator
//!   who sets one provides the files.

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
        package warden:builtin-dns-client;
        world dns-client {
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

struct DnsClient;

identity!(
    DnsClient,
    "dns-client",
    "dns_client: one synchronous lookup per process",
    ["dns_client", "dns-client"]
);

warden_plugin_sdk::defaults!(DnsClient, |_service: &str, _machine: &_| {
    Some(Settings {
        user: some(INTERNAL_USER),
        client_limit: Some(1),
        unix_listeners: vec![
            UnixListener::new("dns-client", 0o666),
            UnixListener::new("login/dns-client", 0o666),
        ],
        ..Settings::default()
    })
});

warden_plugin_sdk::stats!(DnsClient, [Started, Exited, Throttled]);

export!(DnsClient);
