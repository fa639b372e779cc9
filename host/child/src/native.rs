//! The service side of warden's native interface: receive connections with
//! what warden knows of them, report what happens to them, and learn when
//! to stop. The protocol itself is described in [`crate::protocol`].
//!
//! ```no_run
//! use std::io::Write;
//! use warden_child::native::{Event, Service};
//!
//! let service = Service::start()?.expect("started by warden");
//! loop {
//!     match service.next()? {
//!         Event::Connection(mut connection) => {
//!             let peer = connection.info().peer.address.clone();
//!             writeln!(connection, "hello {}", peer.unwrap_or_default())?;
//!             // Dropping the connection reports it closed.
//!         }
//!         Event::ExitIfIdle => {
//!             service.exiting()?;
//!             break;
//!         }
//!         Event::StopAccepting => break,
//!         Event::Closed { .. } => {}
//!     }
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! A service that serves connections concurrently hands each
//! [`Connection`] to its own thread or task; the connection reports itself
//! closed when it is dropped, from wherever that happens.
//!
//! **The process does not outlive warden.** When warden's end of the
//! channel closes — warden is gone, killed or crashed, or it gave up on
//! this process — [`Service::next`] does not return: it ends the process at
//! once (exit status 0), and with it every connection the process serves,
//! as Dovecot's processes do when their master dies. Serving on would
//! leave clients attached to a process no supervisor counts, and keep a new
//! warden from starting cleanly. warden also asks the kernel for SIGTERM
//! when it dies, but a process that changes its own credentials, or runs a
//! setuid program, loses that; the channel's end of file it cannot lose.
//! So call [`Service::next`] whenever the channel is readable (poll
//! [`Service::as_fd`], or block in it on a thread of its own).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::protocol::{ConnectionInfo, FromService, MAX_MESSAGE, ToService, VERSION};

/// The sending side of the channel, shared by the service and its
/// connections; packets are sent whole, so any thread may use it.
#[derive(Debug, Clone)]
pub struct Channel {
    socket: Arc<OwnedFd>,
}

impl Channel {
    fn send(&self, message: &FromService) -> io::Result<()> {
        warden_sys::fdpass::send(self.socket.as_fd(), &message.encode(), &[])
    }

    /// Reports that the client of connection `id` logged in.
    pub fn authenticated(&self, id: u64) -> io::Result<()> {
        self.send(&FromService::Authenticated { id })
    }

    /// Reports that the process is done with connection `id`.
    pub fn closed(&self, id: u64) -> io::Result<()> {
        self.send(&FromService::Closed { id })
    }
}

/// What warden said in its hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The service's name.
    pub service: String,
    /// Connections the process is given at once at most.
    pub client_limit: u32,
    /// Connections the process is given in its life; `None` is unlimited.
    pub service_count: Option<u32>,
}

/// A connection warden passed. It reads and writes the socket; dropping
/// it closes this process's copy and reports the connection closed.
#[derive(Debug)]
pub struct Connection {
    info: ConnectionInfo,
    socket: OwnedFd,
    channel: Channel,
}

impl Connection {
    /// What warden knows of it.
    pub fn info(&self) -> &ConnectionInfo {
        &self.info
    }

    /// Its socket, to poll or to configure.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// Reports that its client logged in: a full login service no longer
    /// evicts it.
    pub fn authenticated(&self) -> io::Result<()> {
        self.channel.authenticated(self.info.id)
    }
}

impl io::Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(nix::unistd::read(&self.socket, buf)?)
    }
}

impl io::Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
        Ok(nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&self.socket),
            buf,
            flags,
        )?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // warden may be gone; then there is no one left to tell.
        let _ = self.channel.closed(self.info.id);
    }
}

/// What warden asks of the process.
#[derive(Debug)]
pub enum Event {
    /// A connection to serve.
    Connection(Connection),
    /// warden closed this connection itself (`reason` is `evicted` or
    /// `kicked`); its socket is shut down.
    Closed {
        /// The connection.
        id: u64,
        /// Why.
        reason: String,
    },
    /// Take no more connections; exit when the last one is closed.
    StopAccepting,
    /// Idle too long: answer with [`Service::exiting`] and exit, or with
    /// [`Service::busy`].
    ExitIfIdle,
}

/// The process's side of the channel.
#[derive(Debug)]
pub struct Service {
    channel: Channel,
    settings: Settings,
}

impl Service {
    /// Takes the channel warden passed, reads its hello and answers that
    /// the process is ready. `None` when the process was not started on
    /// the native interface. Call it once, when the process can take
    /// connections.
    pub fn start() -> io::Result<Option<Service>> {
        let Some(socket) = warden_sys::activation::take_control()? else {
            return Ok(None);
        };
        let channel = Channel {
            socket: Arc::new(socket),
        };
        let (message, _) = receive(&channel)?;
        let Some(ToService::Hello {
            version,
            service,
            client_limit,
            service_count,
        }) = message
        else {
            return Err(invalid("warden did not start with hello"));
        };
        if version != VERSION {
            return Err(invalid(&format!(
                "warden speaks protocol version {version}; this library speaks {VERSION}"
            )));
        }
        channel.send(&FromService::Ready { version: VERSION })?;
        Ok(Some(Service {
            channel,
            settings: Settings {
                service,
                client_limit,
                service_count,
            },
        }))
    }

    /// What warden said in its hello.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The channel, for reporting from other threads.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The channel's descriptor, to poll for the next event.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.channel.socket.as_fd()
    }

    /// Waits for warden's next message. When warden has closed the
    /// channel it does not return: the process exits, status 0 (see the
    /// module's documentation).
    pub fn next(&self) -> io::Result<Event> {
        let (message, mut fds) = receive(&self.channel)?;
        let Some(message) = message else {
            // warden is gone: leave now, connections and all. Nothing is
            // written to stderr, whose reader was warden.
            std::process::exit(0);
        };
        Ok(match message {
            ToService::Connection(info) => {
                let socket = fds
                    .pop()
                    .filter(|_| fds.is_empty())
                    .ok_or_else(|| invalid("a connection came without exactly one socket"))?;
                Event::Connection(Connection {
                    info,
                    socket,
                    channel: self.channel.clone(),
                })
            }
            ToService::Closed { id, reason } => Event::Closed { id, reason },
            ToService::StopAccepting => Event::StopAccepting,
            ToService::ExitIfIdle => Event::ExitIfIdle,
            ToService::Hello { .. } => return Err(invalid("warden said hello twice")),
        })
    }

    /// Answers `exit-if-idle`: the process exits now.
    pub fn exiting(&self) -> io::Result<()> {
        self.channel.send(&FromService::Exiting)
    }

    /// Answers `exit-if-idle`: the process has work left and stays.
    pub fn busy(&self) -> io::Result<()> {
        self.channel.send(&FromService::Busy)
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// One packet from warden: the message, or `None` when warden closed the
/// channel, and the descriptors that came with it.
fn receive(channel: &Channel) -> io::Result<(Option<ToService>, Vec<OwnedFd>)> {
    let mut buffer = vec![0u8; MAX_MESSAGE];
    let received = loop {
        match warden_sys::fdpass::recv(channel.socket.as_fd(), &mut buffer) {
            Ok(received) => break received,
            Err(warden_sys::fdpass::RecvError::Io(error))
                if error.kind() == io::ErrorKind::Interrupted => {}
            // A would-block or other system error keeps its kind, so a
            // service polling the channel can tell it from a bad message.
            Err(warden_sys::fdpass::RecvError::Io(error)) => return Err(error),
            Err(error) => return Err(invalid(&error.to_string())),
        }
    };
    if received.len == 0 && received.fds.is_empty() {
        return Ok((None, Vec::new()));
    }
    let packet = buffer.get(..received.len).unwrap_or_default();
    let message = ToService::parse(packet).map_err(|error| invalid(&error.to_string()))?;
    Ok((Some(message), received.fds))
}
