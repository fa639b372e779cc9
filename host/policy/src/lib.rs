//! warden-policy: the decisions the master makes, and who makes them.
//!
//! [`decide`] defines the questions the master asks at each decision point
//! — how many processes to start, which idle ones to retire, what to do
//! after an exit — as the [`Policy`] trait, and answers them as Dovecot's
//! master does ([`Dovecot`]). The WebAssembly runtime that lets plugins
//! built against `wit/` answer instead will live here too, with their
//! budgets, the checking of every answer and the fallback to the built-in
//! decision.
//!
//! It must never act: it answers questions and returns decisions; it binds
//! no socket, starts no process and holds no privilege. A broken plugin
//! must never stop a service or the master.

#![forbid(unsafe_code)]

pub mod decide;

pub use decide::{
    Dovecot, ExitCause, ExitView, IdleAction, Lifecycle, Millis, Policy, ProcessView, ServiceView,
};
