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
