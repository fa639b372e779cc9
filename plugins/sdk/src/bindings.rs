//! The contract's bindings for the world this crate's feature names,
//! generated from the WIT the crate carries: a plugin crate needs no copy
//! of the WIT and no `wit_bindgen::generate!` of its own.
//!
//! ```toml
//! [dependencies]
//! warden-plugin-sdk = { version = "0.1", features = ["admission-plugin"] }
//! ```
//!
//! ```ignore
//! use warden_plugin_sdk::bindings::exports::warden::policy::{admission, plugin};
//! use warden_plugin_sdk::bindings::warden::policy::types;
//!
//! struct Policy;
//!
//! impl plugin::Guest for Policy {
//!     fn describe() -> plugin::Identity { /* … */ }
//! }
//!
//! impl admission::Guest for Policy {
//!     fn admit(
//!         service: types::Service,
//!         connection: types::Connection,
//!         counts: admission::SourceCounts,
//!         now_ms: types::Millis,
//!     ) -> admission::Verdict { /* … */ }
//! }
//!
//! warden_plugin_sdk::bindings::export!(Policy);
//! ```
//!
//! The features, one per world: `admission-plugin`, `defaults-plugin`,
//! `eviction-plugin`, `idle-plugin`, `scheduling-plugin` (scaling, idle
//! and lifecycle), `stats-plugin`, `typing-plugin`, and `policy` (every
//! hook). A component is built from one world, so one may be enabled; a
//! plugin exporting a set of hooks no world names generates its own
//! bindings with `wit_bindgen::generate!` over the same WIT. The macros
//! of this crate ([`identity!`](crate::identity) and the hooks') work over
//! these bindings once `exports` and `warden` are in scope:
//! `use warden_plugin_sdk::bindings::{exports, warden};`.

/// The `wit-bindgen` runtime the generated code calls, so a plugin crate
/// need not depend on `wit-bindgen` itself.
#[doc(hidden)]
pub use wit_bindgen::rt as __runtime;

const WORLDS: usize = cfg!(feature = "admission-plugin") as usize
    + cfg!(feature = "defaults-plugin") as usize
    + cfg!(feature = "eviction-plugin") as usize
    + cfg!(feature = "idle-plugin") as usize
    + cfg!(feature = "policy") as usize
    + cfg!(feature = "scheduling-plugin") as usize
    + cfg!(feature = "stats-plugin") as usize
    + cfg!(feature = "typing-plugin") as usize;

const _: () = assert!(
    WORLDS == 1,
    "warden-plugin-sdk: enable one world feature, the world the plugin exports"
);

/// Generates the bindings of `$world` here, with a public `export!`.
macro_rules! world {
    ($world:literal) => {
        wit_bindgen::generate!({
            world: $world,
            path: "wit",
            pub_export_macro: true,
            default_bindings_module: "warden_plugin_sdk::bindings",
            runtime_path: "warden_plugin_sdk::bindings::__runtime",
        });
    };
}

#[cfg(feature = "admission-plugin")]
world!("admission-plugin");
#[cfg(feature = "defaults-plugin")]
world!("defaults-plugin");
#[cfg(feature = "eviction-plugin")]
world!("eviction-plugin");
#[cfg(feature = "idle-plugin")]
world!("idle-plugin");
#[cfg(feature = "policy")]
world!("policy");
#[cfg(feature = "scheduling-plugin")]
world!("scheduling-plugin");
#[cfg(feature = "stats-plugin")]
world!("stats-plugin");
#[cfg(feature = "typing-plugin")]
world!("typing-plugin");
