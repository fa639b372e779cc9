//! The pid file of `warden run --pid-file`: it belongs to the master that
//! wrote it.
//!
//! Before anything else, and before daemonizing (so that the message
//! reaches the terminal), a master refuses to start while the file names a
//! live process: another warden, most likely, whose file must not be
//! overwritten or removed. A file naming no live process is left from a
//! master that died, and is taken over. The master writes its pid once it
//! has its final one, and at exit removes the file only if it still holds
//! that pid: a file someone else has rewritten since stays.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::Pid;

use super::RunError;

/// Fails when the pid file at `path` names a live process. A missing,
/// unreadable-as-a-pid or stale file is no obstacle.
pub(super) fn ensure_free(path: &Path) -> Result<(), RunError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
        Err(error) => {
            return Err(RunError::start(
                format!(
                    "cannot read the pid file {}; name another --pid-file",
                    path.display()
                ),
                error,
            ));
        }
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return Ok(());
    };
    if pid <= 0 || !alive(pid) {
        return Ok(());
    }
    Err(RunError::Start {
        what: format!(
            "the pid file {} names process {pid}, which is running: is warden already running? \
             stop it first (warden stop), or name another --pid-file; nothing was changed",
            path.display()
        ),
        source: None,
    })
}

/// Whether a process with `pid` exists (signal 0 reaches it, or it exists
/// but belongs to someone else).
fn alive(pid: i32) -> bool {
    match nix::sys::signal::kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// The pid file this master wrote; dropping it removes the file if it
/// still holds this master's pid.
#[derive(Debug)]
pub(super) struct PidFile {
    path: PathBuf,
    pid: u32,
}

impl PidFile {
    /// Writes this process's pid to `path`.
    pub(super) fn write(path: &Path) -> Result<PidFile, RunError> {
        let pid = std::process::id();
        std::fs::write(path, format!("{pid}\n")).map_err(|e| {
            RunError::start(format!("cannot write the pid file {}", path.display()), e)
        })?;
        Ok(PidFile {
            path: path.to_path_buf(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|text| text.trim() == self.pid.to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_naming_a_live_process_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.pid");
        let live = format!("{}\n", std::process::id());
        std::fs::write(&path, &live).unwrap();
        let error = ensure_free(&path).unwrap_err().to_string();
        assert!(
            error.contains(&format!(
                "names process {}, which is running",
                std::process::id()
            )),
            "{error}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), live);
    }

    #[test]
    fn a_missing_stale_or_unreadable_file_is_no_obstacle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.pid");
        assert!(ensure_free(&path).is_ok());
        // Above any pid_max Linux allows, so no process has it.
        std::fs::write(&path, "2147483647\n").unwrap();
        assert!(ensure_free(&path).is_ok());
        std::fs::write(&path, "not a pid\n").unwrap();
        assert!(ensure_free(&path).is_ok());
    }

    #[test]
    fn the_file_is_removed_only_while_it_holds_our_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.pid");
        drop(PidFile::write(&path).unwrap());
        assert!(!path.exists());
        let written = PidFile::write(&path).unwrap();
        std::fs::write(&path, "1\n").unwrap();
        drop(written);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }
}
