//! The master's own resource limits: raising its descriptor limit at start,
//! and the advice to give when a system call meets a limit.
//!
//! A master holds a descriptor for every listener, every process (its pidfd
//! and output pipes) and, for the services it accepts for, every
//! connection, so the usual soft limit of 1024 is soon too small. At start
//! it raises the soft `RLIMIT_NOFILE` to the hard limit, as Dovecot's
//! master does; only root, or the service manager (`LimitNOFILE=` in a
//! systemd unit), can raise the hard one. Children inherit the raised soft
//! limit.
//!
//! Nothing here decides how many descriptors a configuration needs; the
//! master estimates that and compares.

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The descriptor limit (`RLIMIT_NOFILE`) of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    /// The limit in force (`ulimit -Sn`).
    pub soft: u64,
    /// The most the soft limit may be raised to without privilege
    /// (`ulimit -Hn`).
    pub hard: u64,
}

impl DescriptorLimit {
    /// This process's limit now.
    pub fn current() -> io::Result<DescriptorLimit> {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
        Ok(DescriptorLimit { soft, hard })
    }
}

/// Raises this process's soft descriptor limit to its hard limit. Returns
/// the limit before and after.
pub fn raise_descriptor_limit() -> io::Result<(DescriptorLimit, DescriptorLimit)> {
    let before = DescriptorLimit::current()?;
    if before.soft < before.hard {
        setrlimit(Resource::RLIMIT_NOFILE, before.hard, before.hard)?;
    }
    Ok((before, DescriptorLimit::current()?))
}

/// What to raise when a system call failed with `error` because a limit
/// was met: text to append to a message (it starts with `"; "`), or
/// nothing when the error names no limit.
pub fn advice(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::EMFILE) => {
            "; warden has as many descriptors open as it may: raise its limit (LimitNOFILE= in its systemd unit, or ulimit -n before starting it)"
        }
        Some(libc::ENFILE) => "; the system has as many files open as it may: raise fs.file-max",
        Some(libc::EAGAIN) => {
            "; the limit on processes is reached: raise LimitNPROC= and TasksMax= in warden's systemd unit (ulimit -u), or kernel.pid_max"
        }
        Some(libc::ENOMEM) => "; the system is out of memory",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_limit_to_raise() {
        let advice_for = |errno| advice(&io::Error::from_raw_os_error(errno));
        assert!(advice_for(libc::EMFILE).contains("LimitNOFILE="));
        assert!(advice_for(libc::EAGAIN).contains("TasksMax="));
        assert_eq!(advice_for(libc::EACCES), "");
    }
}
