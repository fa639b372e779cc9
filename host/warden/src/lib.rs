//! warden, the supervisor: its configuration ([`config`], pure, what
//! `warden check` and `warden config` run), the check that this system has
//! what it names — users, groups, executables, chroots ([`accounts`]) —,
//! the listeners it opens from it ([`listen`]), the master that runs the
//! services ([`master`]), the control protocol the CLI speaks to it
//! ([`control`]) and the live view drawn from it ([`top`]), `warden
//! import` of a Dovecot configuration ([`import`]), `warden policy test`
//! ([`harness`]), its log ([`logging`]), and the check of the files it
//! trusts ([`trust`]).
//!
//! This crate decides nothing about privileges or descriptors itself and
//! contains no `unsafe`: every system call that needs care goes through
//! `warden-sys`, and every policy decision through `warden-policy`.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod config;
pub mod control;
pub mod harness;
pub mod import;
pub mod listen;
pub mod logging;
pub mod master;
pub mod top;
pub mod trust;

/// An error and its causes, as one line: `what failed: why: why deeper`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
