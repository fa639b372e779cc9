//! warden-echo: an echo service for warden's `systemd` interface, or its
//! native one.
//!
//! It serves each client on a thread of its own, greeting it with `hello
//! from <pid>`, then echoing every line until `quit` or end of input.
//!
//! On the `systemd` interface it takes its listeners from warden (socket
//! activation), accepts its clients itself and keeps warden told how many
//! it has (`X_WARDEN_CLIENTS`), so warden starts another process when this
//! one is full. It honours `WARDEN_CLIENT_LIMIT` (stops accepting while
//! full) and `WARDEN_SERVICE_COUNT` (after that many connections it says
//! `STOPPING=1`, takes no more and exits when its clients are done).
//! SIGINT, warden's "exit if you are idle", ends it only when it has no
//! client; SIGTERM ends it.
//!
//! On the native interface (`interface = "warden"`) warden accepts each
//! client and hands it over; warden keeps the client limit and the service
//! count itself, and hears of each connection's end when the process drops
//! it. The same program either way, so the two interfaces can be compared
//! on one service (`bench/compare`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockaddrLike, SockaddrStorage, accept4};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use warden_child::native::{self, Event};
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
    match native::Service::start() {
        Ok(Some(service)) => serve_handed(&service),
        Ok(None) => {}
        Err(error) => {
            eprintln!("warden-echo: cannot start on the native interface: {error}");
            std::process::exit(1);
        }
    }
    let activation = match Activation::take() {
        Ok(activation) => activation,
        Err(error) => {
            eprintln!("warden-echo: cannot take the listeners: {error}");
            std::process::exit(1);
        }
    };
    if activation.listeners.is_empty() {
        eprintln!(
            "warden-echo: no listeners were passed; run it under warden with interface = \"systemd\" or \"warden\""
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

/// Greets a client it accepted, then echoes its lines.
fn serve(client: OwnedFd) {
    let unix =
        nix::sys::socket::getsockname::<SockaddrStorage>(std::os::fd::AsRawFd::as_raw_fd(&client))
            .ok()
            .and_then(|address| address.family())
            == Some(AddressFamily::Unix);
    let _ = if unix {
        talk(std::os::unix::net::UnixStream::from(client))
    } else {
        talk(std::net::TcpStream::from(client))
    };
}

/// Greets the client at the other end of `stream`, then echoes its lines.
fn talk(stream: impl Read + Write) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    writeln!(reader.get_mut(), "hello from {}", std::process::id())?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.strip_suffix('\n').unwrap_or(&line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim() == "quit" {
            return Ok(());
        }
        writeln!(reader.get_mut(), "{line}")?;
    }
}

/// Serves the connections warden hands over on the native interface,
/// until warden asks the process to stop (then it exits with its last
/// client) or to exit while idle. Each connection is counted out, then
/// reports itself closed as its thread drops it.
fn serve_handed(service: &native::Service) -> ! {
    let open = Arc::new(AtomicUsize::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    loop {
        match service.next() {
            Ok(Event::Connection(mut connection)) => {
                open.fetch_add(1, Ordering::SeqCst);
                let (open, stopping) = (Arc::clone(&open), Arc::clone(&stopping));
                thread::spawn(move || {
                    let _ = talk(&mut connection);
                    let left = open.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
                    drop(connection);
                    if left == 0 && stopping.load(Ordering::SeqCst) {
                        std::process::exit(0);
                    }
                });
            }
            Ok(Event::ExitIfIdle) if open.load(Ordering::SeqCst) == 0 => {
                let _ = service.exiting();
                std::process::exit(0);
            }
            Ok(Event::ExitIfIdle) => {
                let _ = service.busy();
            }
            Ok(Event::StopAccepting) => {
                stopping.store(true, Ordering::SeqCst);
                if open.load(Ordering::SeqCst) == 0 {
                    std::process::exit(0);
                }
            }
            // warden shut the socket down: its thread's read ends.
            Ok(Event::Closed { .. }) => {}
            Err(error) => {
                eprintln!("warden-echo: the channel to warden failed: {error}");
                std::process::exit(1);
            }
        }
    }
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
