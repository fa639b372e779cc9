//! The built-in `ssl-params` plugin: "Build SSL parameters every n days".
//!
//! - "type=startup so that the (re)generation can be started immediately
//!   at startup when needed, instead of waiting until the first SSL
//!   handshake starts." Obsolete in Dovecot since 2.3.0; kept as the
//!   example of a startup service.

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
        package warden:builtin-ssl-params;
        world ssl-params {
            export warden:policy/plugin@0.1.0;
            export warden:policy/defaults@0.1.0;
            export warden:policy/stats@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::defaults::{Kind, Settings, UnixListener};
use warden_plugin_sdk::identity;

struct SslParams;

identity!(
    SslParams,
    "ssl-params",
    "ssl-params: a startup service",
    ["ssl-params"]
);

warden_plugin_sdk::defaults!(SslParams, |_service: &str, _machine: &_| {
    Some(Settings {
        kind: Some(Kind::Startup),
        unix_listeners: vec![UnixListener::new("ssl-params", 0o600)],
        ..Settings::default()
    })
});

warden_plugin_sdk::stats!(SslParams, [Started, Exited, Throttled]);

export!(SslParams);
