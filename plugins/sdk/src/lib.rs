//! warden-plugin-sdk: the policy logic warden's Rust plugins share.
//!
//! The algorithms here are written once over plain Rust values, so every
//! built-in plugin states its service's policy in a few lines and the
//! logic is unit-tested natively. A plugin converts the types its
//! `wit-bindgen` bindings generate into these and back.
//!
//! [`dovecot`] is Dovecot's master: prefork, the low-water idle kill, and
//! failure throttling.

#![forbid(unsafe_code)]

pub mod dovecot;

/// Implements the required `plugin` interface for `$plugin`: its name, a
/// one-line description, and the globs of the services it applies to; the
/// version is the crate's. Call it where `wit_bindgen::generate!` made the
/// `exports` module.
#[macro_export]
macro_rules! identity {
    ($plugin:ty, $name:expr, $description:expr, [$($service:expr),* $(,)?]) => {
        impl exports::warden::policy::plugin::Guest for $plugin {
            fn describe() -> exports::warden::policy::plugin::Identity {
                exports::warden::policy::plugin::Identity {
                    name: ($name).to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    description: ($description).to_owned(),
                    services: vec![$(($service).to_owned()),*],
                }
            }
        }
    };
}
