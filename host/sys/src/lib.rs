//! warden-sys: every system call of the supervisor that needs care.
//!
//! This crate owns listeners (unix, fifo, inet), the spawn plan and the code
//! between fork and exec, privileges (user, groups, privileged gid, chroot),
//! `RLIMIT_AS`/`RLIMIT_DATA`, the master's own descriptor limit and the
//! advice to give when a limit is met, descriptor passing and reaping, the
//! init that stands in front of a master running as PID 1, the plugins'
//! compiled code mapped from the cache, and the release of the master's
//! start-up code from its resident memory. It is the only crate in warden
//! allowed to contain `unsafe`, and each `unsafe` block here carries a
//! `// SAFETY:` comment naming the invariants it relies on.
//!
//! It must never make a decision: what to spawn, when, and for whom comes
//! from the master and its policies. Nothing it runs in a forked child may
//! allocate, lock or log before exec.

#![allow(
    unsafe_code,
    reason = "warden's unsafe lives here, one system call per block, each with its SAFETY comment"
)]

// The child's identity changes are raw system calls, whose 16-bit-id
// variants on 32-bit targets would silently truncate uids and gids.
#[cfg(not(all(target_os = "linux", target_pointer_width = "64")))]
compile_error!("warden-sys supports 64-bit Linux only");

pub mod activation;
#[cfg(feature = "plugins")]
pub mod compiled;
pub mod daemon;
pub mod fdpass;
pub mod ids;
pub mod init;
pub mod limits;
pub mod listener;
pub mod memory;
pub mod process;
pub mod spawn;
pub mod spawner;
pub mod watch;

pub use listener::{Endpoint, FileAccess, ListenError, Listener};
pub use process::{Child, ChildSignals, Exit, StopChange, next_stop_change};
pub use spawn::{Identity, SpawnError, SpawnPlan, Step};
pub use spawner::Spawner;
