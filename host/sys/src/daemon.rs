//! Leaving the terminal behind: `warden run --daemonize`.

use std::io;

use nix::unistd::{ForkResult, chdir, dup2_stderr, dup2_stdin, dup2_stdout, fork, setsid};

/// Detaches the process from its terminal and session: it forks (the
/// original process exits 0), starts a new session, forks again so it can
/// never reacquire a terminal, moves to `/` and points stdin, stdout and
/// stderr at `/dev/null`.
///
/// It must run before the process starts any thread: only the calling
/// thread survives a fork.
pub fn daemonize() -> io::Result<()> {
    detach()?;
    setsid()?;
    detach()?;
    chdir("/")?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    dup2_stdin(&null)?;
    dup2_stdout(&null)?;
    dup2_stderr(&null)?;
    Ok(())
}

/// Forks; the parent exits at once and the child returns.
fn detach() -> io::Result<()> {
    // SAFETY: the caller guarantees the process is single-threaded, so the
    // child may run any code, and the parent only calls _exit.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => {
            // SAFETY: _exit ends the parent without running destructors or
            // flushing buffers the child also holds.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Child => Ok(()),
    }
}
