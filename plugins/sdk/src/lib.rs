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

#![forbid(unsafe_code)]

pub mod admission;
pub mod defaults;
pub mod dovecot;
pub mod login;
pub mod macros;
pub mod stats;
pub mod typing;
