//! Listening sockets and fifos, created the way the service page promises.
//!
//! - A unix socket is **born with at most its final mode**: the socket's own
//!   inode is `fchmod`ed before `bind`, which Linux uses (less the umask) as
//!   the mode of the file `bind` creates. Owner and group follow, then the
//!   exact mode. No step widens it, and the process umask is never touched,
//!   so other threads of the master are not disturbed.
//! - A stale socket file (nothing accepts on it) is replaced; a live one is
//!   an error that names the path, since another supervisor is using it.
//! - A fifo is opened read-write, so the last writer closing gives no EOF.
//! - An inet listener is one socket per address; `::` binds IPv6 only, so it
//!   can sit beside `*` on the same port.
//!
//! Every descriptor is close-on-exec and non-blocking. A [`Listener`] is a
//! plain value: it can be kept across a configuration reload and handed to
//! the next generation of processes, or duplicated for a child.
//!
//! Which listeners to create, and with which settings, is decided by the
//! caller; `mode = 0` and `port = 0` mean "do not create" and are filtered
//! there, before anything here runs.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::fcntl::{OFlag, open};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, UnixAddr, bind, connect,
    listen, setsockopt, socket, sockopt,
};
use nix::sys::stat::{FchmodatFlags, Mode, fchmod, fchmodat};
use nix::unistd::{Gid, Uid, fchownat, mkfifo};

/// The smallest listen backlog: even a service of one small process
/// absorbs a burst of connections while its processes start or catch up.
const MIN_BACKLOG: i32 = 128;

/// The largest listen backlog asked for: the most `net.core.somaxconn`
/// may be on every kernel warden runs on.
const MAX_BACKLOG: i32 = 65535;

/// How many times a stale socket file is replaced before giving up.
const STALE_RETRIES: usize = 3;

/// The listen backlog for a service that can serve `max_connections` at
/// once (`process_limit × client_limit`): that many, so connections
/// arriving while every process is busy, or while the master is between
/// accepts, wait in the kernel instead of being refused; at least 128 and
/// at most 65535.
///
/// The kernel lowers any backlog to `net.core.somaxconn` (4096 by default
/// since Linux 5.4, 128 before) without saying so: a service whose
/// capacity is above it gets a shorter queue unless that sysctl is raised.
pub fn backlog(max_connections: u64) -> i32 {
    i32::try_from(max_connections)
        .unwrap_or(i32::MAX)
        .clamp(MIN_BACKLOG, MAX_BACKLOG)
}

/// What went wrong creating a listener.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another process accepts on the socket path.
    #[error("{}: a live socket is already there (is another warden running?); stop it, or choose another path", path.display())]
    InUse {
        /// The socket's path.
        path: PathBuf,
    },
    /// Something other than a socket or fifo is at the path.
    #[error("{}: exists and is not a {expected}; remove it, or choose another path", path.display())]
    NotReplaceable {
        /// The path.
        path: PathBuf,
        /// What the listener would create there.
        expected: &'static str,
    },
    /// A system call failed.
    #[error("{target}: {operation} failed{}", crate::limits::advice(.source))]
    Sys {
        /// The path or address concerned.
        target: String,
        /// What was being done.
        operation: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
}

fn sys(target: impl Into<String>, operation: &'static str) -> impl FnOnce(Errno) -> ListenError {
    let target = target.into();
    move |errno| ListenError::Sys {
        target,
        operation,
        source: io::Error::from(errno),
    }
}

/// Owner, group and mode of a unix socket or fifo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileAccess {
    /// The owner; `None` keeps the creating process's.
    pub user: Option<Uid>,
    /// The group; `None` keeps the creating process's.
    pub group: Option<Gid>,
    /// The permission bits (`0o600`…); must not be 0, which disables a
    /// listener and is handled by the caller.
    pub mode: u32,
}

/// What a listener listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix stream socket at this path.
    Unix(PathBuf),
    /// A fifo at this path.
    Fifo(PathBuf),
    /// A TCP socket on this address.
    Inet(SocketAddr),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Fifo(path) => write!(f, "fifo:{}", path.display()),
            Endpoint::Inet(address) => write!(f, "inet:{address}"),
        }
    }
}

/// A listening socket or an open fifo, with what it listens on.
#[derive(Debug)]
pub struct Listener {
    endpoint: Endpoint,
    fd: OwnedFd,
}

impl Listener {
    /// What this listener listens on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A second descriptor for the same listener, close-on-exec, for a
    /// child's descriptor table or the next generation.
    pub fn try_clone(&self) -> io::Result<Listener> {
        Ok(Listener {
            endpoint: self.endpoint.clone(),
            fd: self.fd.try_clone()?,
        })
    }

    /// Creates a unix stream socket at `path`, owned and moded as `access`
    /// says, listening with `backlog`. Missing parent directories are
    /// created (see [`create_parents`]).
    pub fn unix(path: &Path, access: FileAccess, backlog: i32) -> Result<Listener, ListenError> {
        let target = path.display().to_string();
        create_parents(path, access.mode)?;
        let address = UnixAddr::new(path).map_err(sys(&target, "building the socket address"))?;
        let mut attempts = 0;
        let fd = loop {
            let fd = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                None,
            )
            .map_err(sys(&target, "socket"))?;
            // Linux creates the socket file with the socket inode's mode less
            // the umask: set it first, so the file is never wider than asked.
            fchmod(&fd, Mode::from_bits_truncate(access.mode))
                .map_err(sys(&target, "fchmod before bind"))?;
            match bind(fd.as_raw_fd(), &address) {
                Ok(()) => break fd,
                Err(Errno::EADDRINUSE) if attempts < STALE_RETRIES => {
                    attempts += 1;
                    remove_stale_socket(path, &address)?;
                }
                Err(errno) => return Err(sys(&target, "bind")(errno)),
            }
        };
        set_owner_and_mode(path, access)?;
        listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))
            .map_err(sys(&target, "listen"))?;
        Ok(Listener {
            endpoint: Endpoint::Unix(path.to_path_buf()),
            fd,
        })
    }

    /// Creates a fifo at `path` (replacing one already there), owned and
    /// moded as `access` says, and opens it read-write and non-blocking.
    pub fn fifo(path: &Path, access: FileAccess) -> Result<Listener, ListenError> {
        let target = path.display().to_string();
        create_parents(path, access.mode)?;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_fifo() => {
                std::fs::remove_file(path).map_err(|source| ListenError::Sys {
                    target: target.clone(),
                    operation: "removing the old fifo",
                    source,
                })?;
            }
            Ok(_) => {
                return Err(ListenError::NotReplaceable {
                    path: path.to_path_buf(),
                    expected: "fifo",
                });
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ListenError::Sys {
                    target,
                    operation: "lstat",
                    source,
                });
            }
        }
        // mkfifo applies the umask, which can only narrow the mode; the
        // exact mode is set once owner and group are in place.
        mkfifo(path, Mode::from_bits_truncate(access.mode)).map_err(sys(&target, "mkfifo"))?;
        set_owner_and_mode(path, access)?;
        // Read-write, so that the last writer closing does not make it EOF.
        let fd = open(
            path,
            OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
            Mode::empty(),
        )
        .map_err(sys(&target, "open"))?;
        Ok(Listener {
            endpoint: Endpoint::Fifo(path.to_path_buf()),
            fd,
        })
    }

    /// Creates a TCP socket listening on `address` with `backlog`. An IPv6
    /// socket is IPv6-only, so `::` and `*` can share a port.
    pub fn inet(address: SocketAddr, backlog: i32) -> Result<Listener, ListenError> {
        let target = address.to_string();
        let family = match address {
            SocketAddr::V4(_) => AddressFamily::Inet,
            SocketAddr::V6(_) => AddressFamily::Inet6,
        };
        let fd = socket(
            family,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(sys(&target, "socket"))?;
        setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sys(&target, "SO_REUSEADDR"))?;
        let bound = match address {
            SocketAddr::V4(v4) => bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
            SocketAddr::V6(v6) => {
                setsockopt(&fd, sockopt::Ipv6V6Only, &true).map_err(sys(&target, "IPV6_V6ONLY"))?;
                bind(fd.as_raw_fd(), &SockaddrIn6::from(v6))
            }
        };
        bound.map_err(sys(&target, "bind"))?;
        listen(&fd, Backlog::new(backlog).unwrap_or(Backlog::MAXCONN))
            .map_err(sys(&target, "listen"))?;
        let bound_address = local_address(&fd).map_err(sys(&target, "getsockname"))?;
        Ok(Listener {
            endpoint: Endpoint::Inet(bound_address),
            fd,
        })
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Listener> for OwnedFd {
    fn from(listener: Listener) -> OwnedFd {
        listener.fd
    }
}

/// Gives the file at `path` its owner and group, then its exact mode (after
/// the owner, so the mode is never paired with a wrong owner). Neither
/// follows a symlink, so a file swapped in by someone who can write to the
/// directory is refused instead of changed.
fn set_owner_and_mode(path: &Path, access: FileAccess) -> Result<(), ListenError> {
    let target = path.display().to_string();
    fchownat(
        AT_FDCWD,
        path,
        access.user,
        access.group,
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys(&target, "chown"))?;
    fchmodat(
        AT_FDCWD,
        path,
        Mode::from_bits_truncate(access.mode),
        FchmodatFlags::NoFollowSymlink,
    )
    .map_err(sys(target, "chmod"))
}

/// The address a TCP socket is bound to (the real port when 0 was asked).
fn local_address(fd: &OwnedFd) -> nix::Result<SocketAddr> {
    let storage: nix::sys::socket::SockaddrStorage = nix::sys::socket::getsockname(fd.as_raw_fd())?;
    if let Some(v4) = storage.as_sockaddr_in() {
        Ok(SocketAddr::V4((*v4).into()))
    } else if let Some(v6) = storage.as_sockaddr_in6() {
        Ok(SocketAddr::V6((*v6).into()))
    } else {
        Err(Errno::EAFNOSUPPORT)
    }
}

/// Removes the socket file at `path` if nothing accepts on it any more.
fn remove_stale_socket(path: &Path, address: &UnixAddr) -> Result<(), ListenError> {
    let target = path.display().to_string();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {}
        Ok(_) => {
            return Err(ListenError::NotReplaceable {
                path: path.to_path_buf(),
                expected: "socket",
            });
        }
        // Gone in the meantime: binding again will tell.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(ListenError::Sys {
                target,
                operation: "lstat",
                source,
            });
        }
    }
    // Non-blocking, so a live owner with a full queue cannot hold us here:
    // a queue that is full is as live as one that accepts.
    let probe = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(sys(&target, "socket"))?;
    match connect(probe.as_raw_fd(), address) {
        Ok(()) | Err(Errno::EAGAIN | Errno::EINPROGRESS) => Err(ListenError::InUse {
            path: path.to_path_buf(),
        }),
        Err(Errno::ECONNREFUSED | Errno::ENOENT) => match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ListenError::Sys {
                target,
                operation: "removing the stale socket",
                source,
            }),
        },
        Err(errno) => Err(sys(&target, "connecting to the old socket")(errno)),
    }
}

/// The mode of a directory made for a listener of mode `listener_mode`:
/// everything for the owner, and search and read for group and others only
/// where the listener grants them anything, so that the socket stays
/// reachable by whom its mode allows and by nobody else.
pub fn parent_mode(listener_mode: u32) -> u32 {
    let mut mode = 0o700;
    if listener_mode & 0o070 != 0 {
        mode |= 0o050;
    }
    if listener_mode & 0o007 != 0 {
        mode |= 0o005;
    }
    mode
}

/// Creates the missing parent directories of `path` with
/// [`parent_mode`]`(listener_mode)`; existing ones are left as they are.
pub fn create_parents(path: &Path, listener_mode: u32) -> Result<(), ListenError> {
    let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(());
    };
    if parent.is_dir() {
        return Ok(());
    }
    create_parents(parent, listener_mode)?;
    let mode = parent_mode(listener_mode);
    match nix::unistd::mkdir(parent, Mode::from_bits_truncate(mode)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(errno) => return Err(sys(parent.display().to_string(), "mkdir")(errno)),
    }
    // mkdir applied the umask; the mode is meant exactly.
    std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(mode)).map_err(
        |source| ListenError::Sys {
            target: parent.display().to_string(),
            operation: "chmod",
            source,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::UnixStream;

    fn owner_access(mode: u32) -> FileAccess {
        FileAccess {
            user: None,
            group: None,
            mode,
        }
    }

    #[test]
    fn backlog_follows_capacity_within_bounds() {
        assert_eq!(backlog(0), 128);
        assert_eq!(backlog(4), 128);
        assert_eq!(backlog(128), 128);
        assert_eq!(backlog(500), 500);
        assert_eq!(backlog(100 * 1000), 65535);
        assert_eq!(backlog(u64::from(u32::MAX) * u64::from(u32::MAX)), 65535);
    }

    #[test]
    fn parent_directories_open_only_what_the_listener_grants() {
        assert_eq!(parent_mode(0o600), 0o700);
        assert_eq!(parent_mode(0o660), 0o750);
        assert_eq!(parent_mode(0o666), 0o755);
        assert_eq!(parent_mode(0o602), 0o705);
    }

    #[test]
    fn a_unix_socket_gets_its_exact_mode_and_missing_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("login/sub/imap");
        let listener = Listener::unix(&path, owner_access(0o666), 8).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o7777, 0o666);
        let parent = std::fs::metadata(dir.path().join("login/sub")).unwrap();
        assert_eq!(parent.mode() & 0o7777, 0o755);
        assert_eq!(listener.endpoint(), &Endpoint::Unix(path.clone()));
        UnixStream::connect(&path).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        let first = Listener::unix(&path, owner_access(0o600), 8).unwrap();
        let error = Listener::unix(&path, owner_access(0o600), 8).unwrap_err();
        assert!(matches!(error, ListenError::InUse { .. }), "{error:?}");
        assert!(
            error.to_string().contains("is another warden running?"),
            "{error}"
        );

        drop(first);
        let second = Listener::unix(&path, owner_access(0o600), 8).unwrap();
        UnixStream::connect(&path).unwrap();
        drop(second);

        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, "not a socket").unwrap();
        let error = Listener::unix(&path, owner_access(0o600), 8).unwrap_err();
        assert!(
            matches!(error, ListenError::NotReplaceable { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn a_fifo_gives_no_end_of_file_when_its_writer_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = Listener::fifo(&path, owner_access(0o620)).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_fifo());
        assert_eq!(meta.mode() & 0o7777, 0o620);

        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(b"hello").unwrap();
        drop(writer);
        let mut reader = std::fs::File::from(OwnedFd::from(listener.try_clone().unwrap()));
        let mut buffer = [0u8; 16];
        assert_eq!(reader.read(&mut buffer).unwrap(), 5);
        // The writer is gone: a read-write fifo reports "nothing yet", not EOF.
        let error = reader.read(&mut buffer).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    }

    #[test]
    fn inet_listeners_on_both_wildcards_share_a_port() {
        let v4 = Listener::inet("0.0.0.0:0".parse().unwrap(), 8).unwrap();
        let Endpoint::Inet(bound) = v4.endpoint().clone() else {
            panic!("an inet listener has an inet endpoint");
        };
        let v6 = Listener::inet(SocketAddr::new("::".parse().unwrap(), bound.port()), 8).unwrap();
        assert_eq!(
            v6.endpoint(),
            &Endpoint::Inet(SocketAddr::new("::".parse().unwrap(), bound.port()))
        );
        std::net::TcpStream::connect(("127.0.0.1", bound.port())).unwrap();
        std::net::TcpStream::connect(("::1", bound.port())).unwrap();
    }

    #[test]
    fn listeners_are_close_on_exec_and_non_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let listeners = [
            Listener::unix(&dir.path().join("s"), owner_access(0o600), 8).unwrap(),
            Listener::fifo(&dir.path().join("f"), owner_access(0o600)).unwrap(),
            Listener::inet("127.0.0.1:0".parse().unwrap(), 8).unwrap(),
        ];
        for listener in &listeners {
            let fd_flags = nix::fcntl::fcntl(listener, nix::fcntl::FcntlArg::F_GETFD).unwrap();
            assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "{:?}", listener.endpoint());
            let status = nix::fcntl::fcntl(listener, nix::fcntl::FcntlArg::F_GETFL).unwrap();
            assert_ne!(status & libc::O_NONBLOCK, 0, "{:?}", listener.endpoint());
        }
    }
}
