//! warden-policy: the decisions the master makes, and who makes them.
//!
//! - [`decide`] defines the questions the master asks at each decision
//!   point as the [`Policy`] trait, and the minimal [`Fallback`] answers;
//! - [`runtime`] runs policy plugins — WebAssembly components built
//!   against `wit/` — under a deadline and a memory cap, with no ambient
//!   capability;
//! - [`contract`] checks a plugin against the WIT before it runs;
//! - [`answers`] holds every limit on plugins' answers and its check;
//! - [`chain`] puts a configuration's plugins in front of the fallback and
//!   checks every answer;
//! - [`defaults`] and [`stats`] are the settings and metrics plugins
//!   supply;
//! - [`record`] keeps a service's calls and answers as they are made, for
//!   replay in the harness;
//! - [`BUILTINS`] are the plugins embedded in warden, built from
//!   `plugins/` by the build script: `dovecot`, Dovecot's master, and one
//!   plugin per documented Dovecot service.
//!
//! It must never act: it answers questions and returns decisions; it binds
//! no socket, starts no process and holds no privilege. A broken plugin
//! must never stop a service or the master.

#![forbid(unsafe_code)]

pub mod answers;
pub mod chain;
pub mod contract;
pub mod decide;
pub mod defaults;
pub mod record;
pub mod runtime;
pub mod stats;

/// The host side of the WIT contract, generated once.
mod bindings {
    wasmtime::component::bindgen!({
        world: "policy",
        path: "../../wit",
        // Called with `call_async` and polled once: see `runtime`.
        exports: { default: async },
    });
}

/// The one conversion between a service's kind and the contract's.
impl From<ServiceKind> for bindings::warden::policy::types::ServiceKind {
    fn from(kind: ServiceKind) -> Self {
        use bindings::warden::policy::types::ServiceKind as Wit;
        match kind {
            ServiceKind::Default => Wit::Default,
            ServiceKind::Startup => Wit::Startup,
            ServiceKind::Login => Wit::Login,
            ServiceKind::Log => Wit::Log,
            ServiceKind::Config => Wit::Config,
            ServiceKind::Anvil => Wit::Anvil,
            ServiceKind::Worker => Wit::Worker,
        }
    }
}

/// The other way.
impl From<bindings::warden::policy::types::ServiceKind> for ServiceKind {
    fn from(kind: bindings::warden::policy::types::ServiceKind) -> Self {
        use bindings::warden::policy::types::ServiceKind as Wit;
        match kind {
            Wit::Default => ServiceKind::Default,
            Wit::Startup => ServiceKind::Startup,
            Wit::Login => ServiceKind::Login,
            Wit::Log => ServiceKind::Log,
            Wit::Config => ServiceKind::Config,
            Wit::Anvil => ServiceKind::Anvil,
            Wit::Worker => ServiceKind::Worker,
        }
    }
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The test fixtures of `plugins/fixtures`: deliberately broken plugins,
/// and one well-behaved, for test harnesses. Only with the `fixtures`
/// feature, so they are not in a warden built for use.
#[cfg(feature = "fixtures")]
mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}
#[cfg(feature = "fixtures")]
pub use fixtures::FIXTURES;

pub use chain::Plugins;
pub use decide::{
    Admission, ClientType, ConnectionView, ExitCause, ExitView, Fallback, IdleAction, Lifecycle,
    ListenerKind, ListenerView, Millis, PeerView, Policy, ProcessView, ServiceKind, ServiceView,
    SourceCounts,
};
pub use defaults::{Defaults, InetDefault, Supplied, UnixDefault};
pub use record::{Recorder, Recording};
pub use runtime::{
    Budget, Failure, Hooks, Linked, LoadError, Origin, Plugin, Runtime, RuntimeError,
};
