//! warden-child: the library a service uses to speak to warden.
//!
//! For the `systemd` interface, which any daemon can speak:
//!
//! - [`Activation::take`] gives the listeners warden passed (fd 3 and up,
//!   with the names from `LISTEN_FDNAMES`) and the limits the service is
//!   configured with (`WARDEN_CLIENT_LIMIT`, `WARDEN_SERVICE_COUNT`);
//! - [`notify`] tells warden the process is ready, how many clients it has
//!   now (`X_WARDEN_CLIENTS`), and that it is stopping.
//!
//! The contract a service keeps, in any language:
//!
//! - the listeners are non-blocking and shared with warden and the other
//!   processes of the service; accept without blocking (after `poll`), and
//!   never make them blocking;
//! - report `X_WARDEN_CLIENTS=<n>` whenever the number changes: when every
//!   process is at `client_limit`, warden starts another; a process that
//!   never reports counts as able to take more;
//! - stop accepting at `WARDEN_CLIENT_LIMIT` clients; after
//!   `WARDEN_SERVICE_COUNT` connections send `STOPPING=1`, accept no more
//!   and exit when the last client is gone;
//! - on SIGINT (warden's "you are idle, exit if you can"), exit if there
//!   are no clients, else report the clients and carry on; on SIGTERM, exit.
//!   Count a client in the same step as accepting it, so the SIGINT check
//!   never misses one just accepted; connections not yet accepted stay
//!   queued for the service's other processes.
//!
//! warden's native interface (`interface = "warden"`), where warden accepts
//! each connection and passes it over a control channel, is spoken through
//! [`native`]; [`protocol`] documents the wire protocol completely, for
//! services written in other languages.
//!
//! It runs inside service processes, never in the supervisor, and assumes
//! no privilege.

#![forbid(unsafe_code)]

pub mod native;
pub mod protocol;

use std::io;
use std::os::fd::OwnedFd;

/// What warden gave this process at start.
#[derive(Debug)]
pub struct Activation {
    /// The listeners, with their names (an inet listener's `name`, or the
    /// file name of a unix socket's path).
    pub listeners: Vec<(String, OwnedFd)>,
    /// Clients one process may serve at once (`WARDEN_CLIENT_LIMIT`).
    pub client_limit: Option<u32>,
    /// Connections one process serves in its life (`WARDEN_SERVICE_COUNT`);
    /// `None` is unlimited.
    pub service_count: Option<u32>,
}

impl Activation {
    /// Takes what warden passed. Call it once, early; the listeners get
    /// one owner.
    pub fn take() -> io::Result<Activation> {
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Ok(Activation {
            listeners: warden_sys::activation::take_listeners()?,
            client_limit: number("WARDEN_CLIENT_LIMIT"),
            service_count: number("WARDEN_SERVICE_COUNT"),
        })
    }
}

/// Messages to warden over `NOTIFY_SOCKET`. Each does nothing when the
/// process was not started with a notify socket.
///
/// The socket may be in the abstract namespace (`@name`), which is what
/// warden gives, so that it is reachable from inside a chroot; that is why
/// this module sends the datagrams itself.
pub mod notify {
    use std::io;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    /// Sends `message` to the socket named by `NOTIFY_SOCKET`.
    pub fn send(message: &str) -> io::Result<()> {
        let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(());
        };
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(target.as_os_str());
        let address = match bytes.strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(std::path::Path::new(&target))?,
        };
        let socket = UnixDatagram::unbound()?;
        let sent = socket.send_to_addr(message.as_bytes(), &address)?;
        if sent != message.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the notify message was cut",
            ));
        }
        Ok(())
    }

    /// The process has started and takes connections; it has `clients`.
    pub fn ready(clients: u32) -> io::Result<()> {
        send(&format!("READY=1\nX_WARDEN_CLIENTS={clients}\n"))
    }

    /// The process has `clients` clients now.
    pub fn clients(clients: u32) -> io::Result<()> {
        send(&format!("X_WARDEN_CLIENTS={clients}\n"))
    }

    /// The process takes no new connections and will exit once its
    /// clients are done.
    pub fn stopping() -> io::Result<()> {
        send("STOPPING=1\n")
    }

    /// A line `warden ps` shows for the process.
    pub fn status(line: &str) -> io::Result<()> {
        send(&format!("STATUS={}\n", line.replace('\n', " ")))
    }
}
