//! The built-in `admission` plugin: per-source limits on the connections
//! warden accepts itself (services on the `warden` and `inetd`
//! interfaces), like xinetd's `per_source` and `cps` and anvil's limits on
//! users and addresses.
//!
//! - `per_source_limit`: a client address with more connections open than
//!   this is refused (`per-source-limit`);
//! - `per_source_rate`: a client address that opened more than this many
//!   in the last second is refused (`per-source-rate`).
//!
//! The address is the one a PROXY header gave, on `haproxy = yes`
//! listeners. Rejections are logged and counted by reason.

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
        package warden:builtin-admission;
        world admission {
            export warden:policy/plugin@0.1.0;
            export warden:policy/admission@0.1.0;
        }
    ",
    path: "../../../wit",
    generate_all,
});

use warden_plugin_sdk::{admission, identity};

struct Admission;

identity!(
    Admission,
    "admission",
    "per-source limits: per_source_limit open, per_source_rate a second",
    ["*"]
);

warden_plugin_sdk::admission!(Admission, admission::per_source);

export!(Admission);
