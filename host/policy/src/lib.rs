//! warden-policy: the WebAssembly runtime that makes the master's decisions.
//!
//! This crate will own the `wasmtime` engine, the loading, linking and
//! caching of policy components built against `wit/`, their budgets (an
//! epoch deadline per call, a memory cap per instance), the checking of
//! every answer, the fallback to the built-in decision and the quarantine
//! of plugins that keep failing, and the built-in plugins for every
//! documented Dovecot service.
//!
//! It must never act: it answers questions the master asks and returns
//! checked decisions; it binds no socket, starts no process and holds no
//! privilege. A broken plugin must never stop a service or the master.

#![forbid(unsafe_code)]
