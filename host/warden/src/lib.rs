//! warden, the supervisor: its configuration, and (as they land) the master
//! loop, the control socket and metrics.
//!
//! This crate decides nothing about privileges or descriptors itself and
//! contains no `unsafe`: every system call that needs care goes through
//! `warden-sys`, and every policy decision through `warden-policy`.
//! [`config`] is pure and is what `warden check` and `warden config` run.

#![forbid(unsafe_code)]

pub mod config;
pub mod control;
pub mod listen;
pub mod logging;
pub mod master;
