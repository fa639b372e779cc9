//! Watching descriptors from the master's event loop.
//!
//! tokio's `AsyncFd::register` is `unsafe` because a borrowed raw
//! descriptor could be closed under it; an [`OwnedFd`] (or a
//! [`ChildSignals`], which owns one) cannot be, which is
//! the invariant this wrapper provides so the rest of warden stays safe.

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::process::ChildSignals;

/// Registers `fd` with the running tokio reactor, to be woken when it is
/// readable: the one readiness the master waits for. Its writes never
/// wait (a full channel is passed over), and a descriptor watched for
/// writability too would wake the event loop each time its peer reads,
/// once per connection handed over.
pub fn async_fd(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is a valid open descriptor that stays open, and
    // keeps the same number, until the AsyncFd that owns it is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(io::Error::from)
}

/// Registers `signals` with the running tokio reactor, to be woken while a
/// SIGCHLD is pending.
pub fn async_child_signals(signals: ChildSignals) -> io::Result<AsyncFd<ChildSignals>> {
    // SAFETY: a ChildSignals owns its descriptor, which stays open, and
    // keeps the same number, until the AsyncFd that owns it is dropped.
    unsafe { AsyncFd::register_with_interest(signals, Interest::READABLE) }.map_err(io::Error::from)
}
