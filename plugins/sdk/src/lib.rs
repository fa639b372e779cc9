//! warden-plugin-sdk: the policy logic warden's Rust plugins share.
//!
//! The algorithms here are written once over plain Rust values, so every
//! built-in plugin states its service's policy in a few lines and the
//! logic is unit-tested natively. The [macros](macros) implement the
//! contract's interfaces over them inside a plugin crate.
//!
//! - [`admission`]: per-source limits on the connections warden accepts;
//! - [`dovecot`]: Dovecot's master: prefork, the low-water idle kill, and
//!   failure throttling;
//! - [`defaults`]: a service's documented settings and listeners;
//! - [`typing`]: the auth service's client type of a listener;
//! - [`login`]: eviction and idle kill for login services;
//! - [`stats`]: the figures a plugin reports for its services.
//!
//! With the feature named like a world of the contract
//! (`admission-plugin`, `idle-plugin`, …) the crate also carries that
//! world's bindings, in `bindings`, with an `export!` macro: a plugin
//! crate outside warden's repository depends on it alone.

#![deny(unsafe_code)]

// The generated bindings name this crate by its name, as they do in a
// plugin crate.
extern crate self as warden_plugin_sdk;

pub mod admission;
#[cfg(any(
    feature = "admission-plugin",
    feature = "defaults-plugin",
    feature = "eviction-plugin",
    feature = "idle-plugin",
    feature = "policy",
    feature = "scheduling-plugin",
    feature = "stats-plugin",
    feature = "typing-plugin",
))]
#[allow(
    unsafe_code,
    missing_docs,
    reason = "the generated bindings export functions with unsafe attributes, and carry the WIT's documentation"
)]
pub mod bindings;
pub mod defaults;
pub mod dovecot;
pub mod login;
pub mod macros;
pub mod stats;
pub mod typing;
