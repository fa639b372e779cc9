//! warden, the supervisor: its configuration ([`config`], pure, what
//! `warden check` and `warden config` run), the check that the users and
//! groups it names exist ([`accounts`]), the listeners it opens from it
//! ([`listen`]), the master that runs the services ([`master`]), the
//! control protocol the CLI speaks to it ([`control`]) and its log
//! ([`logging`]).
//!
//! This crate decides nothing about privileges or descriptors itself and
//! contains no `unsafe`: every system call that needs care goes through
//! `warden-sys`, and every policy decision through `warden-policy`.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod config;
pub mod control;
pub mod listen;
pub mod logging;
pub mod master;
