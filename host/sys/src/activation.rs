//! The service side of socket activation: taking the listeners a
//! supervisor passed at fd 3 and up (`LISTEN_FDS`, `LISTEN_PID`,
//! `LISTEN_FDNAMES`, as systemd and warden's `systemd` interface pass them),
//! or the control channel of warden's native interface
//! (`WARDEN_CONTROL_FD`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// The first inherited listener.
const FIRST: RawFd = 3;

/// The most listeners taken, far above any real service.
const MAX_LISTENERS: usize = 4096;

/// Whether the inherited listeners were taken already.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the listeners this process inherited, with their names, once.
///
/// Returns nothing when the variables are absent or `LISTEN_PID` names
/// another process (they were meant for a parent). Each descriptor is made
/// close-on-exec, so the process's own children do not inherit it. A second
/// call returns an error: the descriptors have one owner.
pub fn take_listeners() -> io::Result<Vec<(String, OwnedFd)>> {
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other(
            "the inherited listeners were taken already",
        ));
    }
    let for_me = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_some_and(|pid| pid == std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|count| count.parse::<usize>().ok());
    let (true, Some(count)) = (for_me, count) else {
        return Ok(Vec::new());
    };
    if count > MAX_LISTENERS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("LISTEN_FDS={count} is more than {MAX_LISTENERS}"),
        ));
    }
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|names| names.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut listeners = Vec::with_capacity(count);
    for (offset, fd) in (FIRST..).take(count).enumerate() {
        nix::fcntl::fcntl(
            // SAFETY: `fd` is in the inherited range and is only borrowed
            // for this call; fcntl fails cleanly if it is not open.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        )?;
        // SAFETY: the supervisor passed `fd` to this process, it is open
        // (fcntl above succeeded), and TAKEN guarantees it gets one owner.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = names.get(offset).cloned().unwrap_or_default();
        listeners.push((name, owned));
    }
    Ok(listeners)
}

/// Whether the native interface's control channel was taken already.
static CONTROL_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the control channel of warden's native interface, the descriptor
/// `WARDEN_CONTROL_FD` names, once, and makes it close-on-exec.
///
/// Returns nothing when the variable is absent. A second call, or a value
/// that is not a descriptor above 2, returns an error.
pub fn take_control() -> io::Result<Option<OwnedFd>> {
    let Some(value) = std::env::var_os("WARDEN_CONTROL_FD") else {
        return Ok(None);
    };
    if CONTROL_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("the control channel was taken already"));
    }
    let fd = value
        .to_str()
        .and_then(|text| text.parse::<RawFd>().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("WARDEN_CONTROL_FD={value:?} is not a descriptor above 2"),
            )
        })?;
    nix::fcntl::fcntl(
        // SAFETY: `fd` is only borrowed for this call; fcntl fails cleanly
        // if it is not open.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )?;
    // SAFETY: the supervisor passed `fd` to this process, it is open
    // (fcntl above succeeded), and CONTROL_TAKEN guarantees one owner.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}
