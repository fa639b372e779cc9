//! The files the master trusts, checked as sshd's StrictModes checks a
//! user's keys.
//!
//! The master usually runs as root and runs what it finds in a few places:
//! compiled plugin code from the plugin cache, components from
//! `plugins_dir`, and its sockets and runtime files in `base_dir`. Each of
//! those, and every directory above it, must be owned by root or by the
//! user warden runs as, and must not be writable by group or others — a
//! directory that is writable by others is accepted only with the sticky
//! bit (as `/tmp` has), since then no one else can rename what is in it.
//! Whatever fails is refused with its path and the command that fixes it;
//! nothing is silently adopted or re-moded.

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A path the master will not trust.
#[derive(Debug, thiserror::Error)]
pub enum Untrusted {
    /// Owned by someone other than root or warden's user.
    #[error(
        "{setting}: {} is owned by uid {owner}, not by root or by the user warden runs as (uid {me}); \
         others could change what warden runs from it: chown {} {}",
        path.display(),
        if *me == 0 { "root".to_owned() } else { me.to_string() },
        path.display()
    )]
    Owner {
        /// The setting the path comes from.
        setting: &'static str,
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// warden's user.
        me: u32,
    },
    /// Writable by its group or by others.
    #[error(
        "{setting}: {} is writable by {} (mode {mode:04o}); others could change what warden runs from it: chmod go-w {}",
        path.display(),
        if mode & 0o020 != 0 { "its group" } else { "others" },
        path.display()
    )]
    Writable {
        /// The setting the path comes from.
        setting: &'static str,
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Not the kind of file it should be.
    #[error("{setting}: {} is not a {expected}", path.display())]
    Kind {
        /// The setting the path comes from.
        setting: &'static str,
        /// The path.
        path: PathBuf,
        /// What it should be.
        expected: &'static str,
    },
    /// It cannot be looked at or created.
    #[error("{setting}: cannot {operation} {}", path.display())]
    Io {
        /// The setting the path comes from.
        setting: &'static str,
        /// What was being done.
        operation: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Checks that the directory `dir` and every directory above it can be
/// trusted. `setting` names where the path comes from, for the message.
pub fn directory(dir: &Path, setting: &'static str) -> Result<(), Untrusted> {
    check(dir, setting, Kind::Directory)?;
    ancestors(dir, setting)
}

/// Checks that the file `file` and every directory above it can be
/// trusted.
pub fn file(file: &Path, setting: &'static str) -> Result<(), Untrusted> {
    check(file, setting, Kind::File)?;
    ancestors(file, setting)
}

/// Creates `dir`, open to its owner only, if it is missing (and the
/// directories above it, as `mkdir -p` would), then checks it. An existing
/// directory is checked and left as it is.
pub fn private_directory(dir: &Path, setting: &'static str) -> Result<(), Untrusted> {
    if !dir.exists() {
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            // The mode is applied under the umask, and a recursive create
            // may have found the directory made meanwhile: set it.
            .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)));
        created.map_err(|source| Untrusted::Io {
            setting,
            operation: "create",
            path: dir.to_owned(),
            source,
        })?;
    }
    directory(dir, setting)
}

#[derive(Clone, Copy)]
enum Kind {
    Directory,
    File,
}

fn check(path: &Path, setting: &'static str, kind: Kind) -> Result<(), Untrusted> {
    let meta = std::fs::metadata(path).map_err(|source| Untrusted::Io {
        setting,
        operation: "look at",
        path: path.to_owned(),
        source,
    })?;
    let (fits, expected) = match kind {
        Kind::Directory => (meta.is_dir(), "directory"),
        Kind::File => (meta.is_file(), "regular file"),
    };
    if !fits {
        return Err(Untrusted::Kind {
            setting,
            path: path.to_owned(),
            expected,
        });
    }
    owner_and_mode(path, &meta, setting)
}

/// Checks every directory above `path`, up to the root.
fn ancestors(path: &Path, setting: &'static str) -> Result<(), Untrusted> {
    let absolute = std::path::absolute(path).map_err(|source| Untrusted::Io {
        setting,
        operation: "resolve",
        path: path.to_owned(),
        source,
    })?;
    for dir in absolute.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|source| Untrusted::Io {
            setting,
            operation: "look at",
            path: dir.to_owned(),
            source,
        })?;
        owner_and_mode(dir, &meta, setting)?;
    }
    Ok(())
}

fn owner_and_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    setting: &'static str,
) -> Result<(), Untrusted> {
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(Untrusted::Owner {
            setting,
            path: path.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    let sticky_dir = meta.is_dir() && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky_dir {
        return Err(Untrusted::Writable {
            setting,
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn a_private_directory_is_created_closed_to_others() {
        let root = tempfile::tempdir().expect("tempdir");
        let cache = root.path().join("a/b/cache");
        private_directory(&cache, "plugin_cache").expect("created and trusted");
        let mode = std::fs::metadata(&cache).expect("stat").mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_directory_others_can_write_is_refused_with_the_fix() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("plugins");
        std::fs::create_dir(&dir).expect("mkdir");
        chmod(&dir, 0o777);
        let error = directory(&dir, "plugins_dir").expect_err("refused");
        let text = error.to_string();
        assert!(text.starts_with("plugins_dir: "), "{text}");
        assert!(text.contains("writable by its group (mode 0777)"), "{text}");
        assert!(
            text.ends_with(&format!("chmod go-w {}", dir.display())),
            "{text}"
        );
        chmod(&dir, 0o1777);
        directory(&dir, "plugins_dir").expect("a sticky directory is trusted");
    }

    #[test]
    fn a_writable_directory_above_is_refused_too() {
        let root = tempfile::tempdir().expect("tempdir");
        let above = root.path().join("shared");
        let dir = above.join("plugins");
        std::fs::create_dir_all(&dir).expect("mkdir");
        chmod(&above, 0o757);
        let error = directory(&dir, "plugins_dir").expect_err("refused");
        assert!(
            error
                .to_string()
                .contains(&format!("{} is writable by others", above.display())),
            "{error}"
        );
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let file_path = root.path().join("cache");
        std::fs::write(&file_path, "").expect("write");
        let error = directory(&file_path, "plugin_cache").expect_err("refused");
        assert!(error.to_string().contains("is not a directory"), "{error}");
    }

    #[test]
    fn a_file_owned_by_another_user_is_refused_when_root_can_tell() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped a_file_owned_by_another_user_is_refused_when_root_can_tell: chown needs root"
            );
            return;
        }
        let root = tempfile::tempdir().expect("tempdir");
        let plugin = root.path().join("p.wasm");
        std::fs::write(&plugin, "").expect("write");
        nix::unistd::chown(&plugin, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
        let error = file(&plugin, "plugins_dir").expect_err("refused");
        assert!(
            error.to_string().contains("is owned by uid 65534"),
            "{error}"
        );
        assert!(error.to_string().contains("chown root "), "{error}");
    }
}
