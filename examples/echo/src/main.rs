//! warden-echo: an echo service for warden's `systemd` interface.
//!
//! It takes its listeners from warden (socket activation), serves each
//! client on a thread of its own — greeting it with `hello from <pid>`, then
//! echoing every line until `quit` or end of input — and keeps warden told
//! how many clients it has (`X_WARDEN_CLIENTS`), so warden starts another
//! process when this one is full. It honours `WARDEN_CLIENT_LIMIT` (stops
//! accepting while full) and `WARDEN_SERVICE_COUNT` (after that many
//! connections it says `STOPPING=1`, takes no more and exits when its
//! clients are done). SIGINT, warden's "exit if you are idle", ends it only
//! when it has no client; SIGTERM ends it.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockaddrLike, SockaddrStorage, accept4};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use warden_child::{Activation, notify};

/// What the accepting thread and the client threads share.
#[derive(Debug, Default)]
struct Counts {
    clients: u32,
    served: u32,
    stopping: bool,
}

struct Service {
    counts: Mutex<Counts>,
    changed: Condvar,
    client_limit: u32,
    service_count: Option<u32>,
}

impl Service {
    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A client is gone: report it, and exit when stopping and the last one left.
    fn client_left(&self) {
        let mut counts = self.counts();
        counts.clients = counts.clients.saturating_sub(1);
        report(counts.clients);
        if counts.stopping && counts.clients == 0 {
            std::process::exit(0);
        }
        self.changed.notify_all();
    }
}

fn report(clients: u32) {
    if let Err(error) = notify::clients(clients) {
        eprintln!("warden-echo: cannot report clients to warden: {error}");
    }
}

fn main() {
    let activation = match Activation::take() {
        Ok(activation) => activation,
        Err(error) => {
            eprintln!("warden-echo: cannot take the listeners: {error}");
            std::process::exit(1);
        }
    };
    if activation.listeners.is_empty() {
        eprintln!(
            "warden-echo: no listeners were passed; run it under warden with interface = \"systemd\""
        );
        std::process::exit(1);
    }
    let service = Arc::new(Service {
        counts: Mutex::new(Counts::default()),
        changed: Condvar::new(),
        client_limit: activation.client_limit.unwrap_or(u32::MAX).max(1),
        service_count: activation.service_count,
    });
    watch_signals(Arc::clone(&service));
    if let Err(error) = notify::ready(0) {
        eprintln!("warden-echo: cannot tell warden it is ready: {error}");
    }
    let listeners: Vec<OwnedFd> = activation.listeners.into_iter().map(|(_, fd)| fd).collect();
    loop {
        // Accept only while below the client limit and not stopping.
        {
            let mut counts = service.counts();
            while counts.stopping || counts.clients >= service.client_limit {
                counts = service
                    .changed
                    .wait(counts)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
        let mut polled: Vec<PollFd<'_>> = listeners
            .iter()
            .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Err(error) = poll(&mut polled, PollTimeout::NONE) {
            if error == nix::errno::Errno::EINTR {
                continue;
            }
            eprintln!("warden-echo: poll failed: {error}");
            std::process::exit(1);
        }
        let ready: Vec<bool> = polled
            .iter()
            .map(|p| p.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        for (listener, _) in listeners.iter().zip(ready).filter(|(_, ready)| *ready) {
            // Another process of the service may have taken it first.
            let Some(client) = accept(&service, listener) else {
                continue;
            };
            let service = Arc::clone(&service);
            thread::spawn(move || {
                serve(client);
                service.client_left();
            });
        }
    }
}

/// Accepts a client and counts it, as one step under the lock, so a
/// SIGINT ("exit if you are idle") can never see no client while one has
/// been accepted but not yet counted. `None` if there was nothing to
/// accept or the process takes no more clients.
fn accept(service: &Service, listener: &OwnedFd) -> Option<OwnedFd> {
    let mut counts = service.counts();
    if counts.stopping {
        return None;
    }
    let client = accept4(listener.as_fd(), SockFlag::SOCK_CLOEXEC).ok()?;
    counts.clients += 1;
    counts.served += 1;
    report(counts.clients);
    if service
        .service_count
        .is_some_and(|limit| counts.served >= limit)
    {
        counts.stopping = true;
        if let Err(error) = notify::stopping() {
            eprintln!("warden-echo: cannot tell warden it is stopping: {error}");
        }
    }
    Some(client)
}

/// Greets the client, then echoes its lines.
fn serve(client: OwnedFd) {
    let unix =
        nix::sys::socket::getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&client))
            .ok()
            .and_then(|address| address.family())
            == Some(AddressFamily::Unix);
    let stream: Box<dyn ReadWrite> = if unix {
        Box::new(std::os::unix::net::UnixStream::from(client))
    } else {
        Box::new(std::net::TcpStream::from(client))
    };
    let _ = talk(stream);
}

trait ReadWrite: std::io::Read + Write + Send {
    fn try_clone_reader(&self) -> std::io::Result<Box<dyn std::io::Read + Send>>;
}

impl ReadWrite for std::net::TcpStream {
    fn try_clone_reader(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(self.try_clone()?))
    }
}

impl ReadWrite for std::os::unix::net::UnixStream {
    fn try_clone_reader(&self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(self.try_clone()?))
    }
}

fn talk(mut stream: Box<dyn ReadWrite>) -> std::io::Result<()> {
    writeln!(stream, "hello from {}", std::process::id())?;
    let reader = BufReader::new(stream.try_clone_reader()?);
    for line in reader.lines() {
        let line = line?;
        if line.trim() == "quit" {
            break;
        }
        writeln!(stream, "{line}")?;
    }
    Ok(())
}

/// SIGINT: exit if idle, else say how many clients are kept; SIGTERM: exit.
fn watch_signals(service: Arc<Service>) {
    let mut signals = match Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("warden-echo: cannot handle signals: {error}");
            std::process::exit(1);
        }
    };
    thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGTERM {
                std::process::exit(0);
            }
            let counts = service.counts();
            if counts.clients == 0 {
                std::process::exit(0);
            }
            report(counts.clients);
        }
    });
}
