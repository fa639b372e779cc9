//! A started process, known by its pidfd.
//!
//! The pidfd names exactly one process for its whole life, so signals sent
//! through it can never reach a later process that reused the pid, and it
//! becomes readable when the process exits, which is how the master's event
//! loop learns of exits without SIGCHLD. Waiting through it reaps the
//! process, so no zombie is left behind. Stops and continues, which a
//! pidfd does not signal, are read with [`next_stop_change`] when SIGCHLD
//! says one happened.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It called `exit` with this status.
    Code(i32),
    /// A signal killed it.
    Signal {
        /// The signal's number.
        signal: i32,
        /// Whether it left a core dump.
        core_dumped: bool,
    },
}

impl Exit {
    /// Whether the process exited with status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exited with status {code}"),
            Exit::Signal {
                signal,
                core_dumped,
            } => {
                let name = Signal::try_from(signal).map_or("unknown signal", Signal::as_str);
                write!(f, "killed by signal {signal} ({name})")?;
                if core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

/// A child process of this supervisor.
///
/// It must be waited for ([`Child::wait`] or [`Child::try_wait`] once its
/// pidfd is readable) to be reaped; dropping it only closes the pidfd.
#[derive(Debug)]
pub struct Child {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Child {
    pub(crate) fn new(pid: Pid, pidfd: OwnedFd) -> Child {
        Child { pid, pidfd }
    }

    /// The process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Sends `signal` through the pidfd: it reaches this process or none.
    pub fn signal(&self, signal: Signal) -> io::Result<()> {
        // SAFETY: pidfd_send_signal takes a pidfd we own, a signal number,
        // a null siginfo (the kernel fills in a SI_USER one) and no flags.
        let result = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                signal as libc::c_int,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if result == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reaps the process if it has exited; `None` if it is still running.
    pub fn try_wait(&self) -> io::Result<Option<Exit>> {
        self.wait_with(libc::WEXITED | libc::WNOHANG)
    }

    /// Waits for the process to exit and reaps it.
    pub fn wait(&self) -> io::Result<Exit> {
        loop {
            match self.wait_with(libc::WEXITED) {
                Ok(Some(exit)) => return Ok(exit),
                Ok(None) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill_and_wait(&self) -> io::Result<Exit> {
        match self.signal(Signal::SIGKILL) {
            // ESRCH: it has exited already and waits to be reaped.
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {}
            Err(error) => return Err(error),
        }
        self.wait()
    }

    fn wait_with(&self, options: libc::c_int) -> io::Result<Option<Exit>> {
        // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with P_PIDFD takes our pidfd as the id and writes
        // into `info`, which lives for the call.
        let result = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                self.pidfd.as_raw_fd() as libc::id_t,
                &raw mut info,
                options,
            )
        };
        if result == -1 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: waitid succeeded, so `info` holds a SIGCHLD siginfo whose
        // pid field is initialised (0 under WNOHANG when nothing has exited).
        let pid = unsafe { info.si_pid() };
        // SAFETY: as above, for the status field of a SIGCHLD siginfo.
        let status = unsafe { info.si_status() };
        if pid == 0 {
            return Ok(None);
        }
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => Exit::Code(status),
            libc::CLD_DUMPED => Exit::Signal {
                signal: status,
                core_dumped: true,
            },
            _ => Exit::Signal {
                signal: status,
                core_dumped: false,
            },
        }))
    }
}

/// Blocks every signal in the calling thread. A thread that only works for
/// the master (a spawner, the plugins' deadline ticker) leaves the
/// process's signals to the event loop's thread, which handles them: one
/// the kernel delivered to such a thread would interrupt its sleep and run
/// its handler there, to wake the event loop from it as well.
pub fn block_all_signals() {
    // Blocking cannot fail with a valid mask and `how`.
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::all()),
        None,
    );
}

/// SIGCHLD as a descriptor, readable while one is pending.
///
/// Made before the master starts any thread: SIGCHLD is blocked in the
/// thread that makes it, and so in every thread that thread starts after,
/// and no handler runs for it. SIGCHLD comes at every exit of a child,
/// which the master learns of from the child's pidfd anyway; through a
/// handler, each one also interrupted a thread, wrote to the handler's
/// pipe and read it back in the event loop. A child starts with every
/// signal unblocked (see [`crate::spawn`]).
#[derive(Debug)]
pub struct ChildSignals(nix::sys::signalfd::SignalFd);

impl ChildSignals {
    /// Blocks SIGCHLD in the calling thread and opens its descriptor.
    pub fn new() -> io::Result<ChildSignals> {
        let mut mask = nix::sys::signal::SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block()?;
        let flags =
            nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC;
        Ok(ChildSignals(nix::sys::signalfd::SignalFd::with_flags(
            &mask, flags,
        )?))
    }

    /// Takes every pending SIGCHLD; whether there was one.
    pub fn take(&self) -> bool {
        let mut taken = false;
        while let Ok(Some(_)) = self.0.read_signal() {
            taken = true;
        }
        taken
    }
}

impl AsFd for ChildSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl AsRawFd for ChildSignals {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// A child stopped or continued, as `waitid` tells its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopChange {
    /// A signal stopped it (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU).
    Stopped {
        /// The signal's number.
        signal: i32,
    },
    /// SIGCONT continued it.
    Continued,
}

/// The next child of this process that was stopped or continued since it
/// was last looked at, without waiting; `None` when there is none.
///
/// It reaps nothing: exits stay to be collected through each child's
/// pidfd ([`Child::try_wait`]). It asks about every child at once
/// (`P_ALL`), so a caller woken by SIGCHLD pays for the stops that
/// happened, not for the children it has. The pid names exactly one
/// process: a child that is stopped or continued has not been reaped, so
/// its pid cannot have been reused.
pub fn next_stop_change() -> io::Result<Option<(Pid, StopChange)>> {
    // SAFETY: an all-zero siginfo_t is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with P_ALL takes no id and writes into `info`, which
    // lives for the call; without WEXITED it reaps no child.
    let result = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &raw mut info,
            libc::WSTOPPED | libc::WCONTINUED | libc::WNOHANG,
        )
    };
    if result == -1 {
        let error = io::Error::last_os_error();
        // No children at all: nothing stopped.
        if error.raw_os_error() == Some(libc::ECHILD) {
            return Ok(None);
        }
        return Err(error);
    }
    // SAFETY: waitid succeeded, so `info` holds a SIGCHLD siginfo whose
    // pid field is initialised (0 under WNOHANG when nothing changed).
    let pid = unsafe { info.si_pid() };
    // SAFETY: as above, for the status field of a SIGCHLD siginfo.
    let status = unsafe { info.si_status() };
    if pid == 0 {
        return Ok(None);
    }
    let change = match info.si_code {
        libc::CLD_CONTINUED => StopChange::Continued,
        _ => StopChange::Stopped { signal: status },
    };
    Ok(Some((Pid::from_raw(pid), change)))
}

impl AsFd for Child {
    /// The pidfd: readable once the process has exited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_and_continues_of_a_child_are_seen_and_nothing_is_reaped() {
        let child = crate::SpawnPlan::new("sleep", ["/bin/sleep", "30"])
            .spawn()
            .unwrap();
        let pid = child.pid();
        // Other tests of this binary have children too: look for ours.
        let wait_for = |wanted: StopChange| {
            for _ in 0..500 {
                while let Some((who, change)) = next_stop_change().unwrap() {
                    if who == pid && change == wanted {
                        return;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            panic!("no {wanted:?} of {pid}");
        };
        child.signal(Signal::SIGSTOP).unwrap();
        wait_for(StopChange::Stopped {
            signal: libc::SIGSTOP,
        });
        child.signal(Signal::SIGCONT).unwrap();
        wait_for(StopChange::Continued);
        assert_eq!(child.try_wait().unwrap(), None, "it was reaped");
        assert_eq!(
            child.kill_and_wait().unwrap(),
            Exit::Signal {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
    }

    #[test]
    fn exits_describe_themselves() {
        assert_eq!(Exit::Code(83).to_string(), "exited with status 83");
        assert_eq!(
            Exit::Signal {
                signal: 11,
                core_dumped: true
            }
            .to_string(),
            "killed by signal 11 (SIGSEGV), core dumped"
        );
        assert!(Exit::Code(0).success());
        assert!(!Exit::Code(1).success());
    }
}
