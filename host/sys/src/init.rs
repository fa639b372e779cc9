//! Running as a container's PID 1: a minimal init in front of the master.
//!
//! The first process of a PID namespace inherits every process whose
//! parent dies: a service's daemonized helper, a shell's background job.
//! The kernel leaves each one a zombie until PID 1 waits for it, and PID 1
//! gets no default action for SIGTERM or SIGINT, so `docker stop` would
//! wait out its timeout. The master waits only for the processes it
//! started, each through its pidfd, and waiting for "any child" there
//! would race those waits and the plugin compiler's.
//!
//! So when warden finds itself PID 1, [`become_init`] forks before
//! anything else starts: the child goes on to be the master, and PID 1
//! stays behind as an init that does two things only — it waits for every
//! child it is given, and it passes the signals an operator sends (TERM,
//! INT, HUP, USR1, USR2, QUIT) on to the master. When the master exits,
//! the init exits with the master's status (or 128 + the signal that
//! killed it).

use std::io;

use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpid};

/// The signals the init passes on to the master.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
];

/// Whether this process is the first of its PID namespace.
pub fn is_pid1() -> bool {
    getpid().as_raw() == 1
}

/// Forks an init in front of the master: returns in the child, which
/// becomes the master; the parent, PID 1, reaps and forwards signals until
/// the master exits, then exits as it did, and never returns.
///
/// It must run before the process starts any thread: only the calling
/// thread survives a fork.
pub fn become_init() -> io::Result<()> {
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        signals.add(signal);
    }
    // Blocked before the fork, so none is lost between it and the wait;
    // the master unblocks them in itself.
    let mut before = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut before))?;
    // SAFETY: the caller guarantees the process is single-threaded, so the
    // child may run any code; the parent runs only the loop below.
    match unsafe { fork() }? {
        ForkResult::Child => {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&before), None)?;
            Ok(())
        }
        ForkResult::Parent { child } => {
            let status = serve(child, &signals);
            // SAFETY: _exit ends the init without running destructors or
            // flushing buffers the master also holds.
            unsafe { libc::_exit(status) }
        }
    }
}

/// The init's loop: wait for a signal; on SIGCHLD reap every child that
/// exited, and end with the master's status once it is among them; pass
/// any other on to the master.
fn serve(master: Pid, signals: &SigSet) -> i32 {
    loop {
        let Ok(signal) = signals.wait() else {
            continue;
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(master, signal);
            continue;
        }
        while let Ok(status) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            match status {
                WaitStatus::Exited(pid, code) if pid == master => return code,
                WaitStatus::Signaled(pid, signal, _) if pid == master => {
                    return 128 + signal as i32;
                }
                WaitStatus::StillAlive => break,
                _ => {}
            }
        }
    }
}
