//! The advice to give when a system call meets a limit of the system or of
//! warden's own process: which setting to raise, appended to the message
//! of the error that met it.

use std::io;

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
