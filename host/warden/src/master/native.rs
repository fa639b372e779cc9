//! warden's native interface (`interface = "warden"`), the master's side:
//! the host accepts every connection, admits it, hands it to a process
//! over that process's control channel, and sees what becomes of it.
//!
//! The wire protocol is `warden_child::protocol`'s. Per connection:
//!
//! 1. the acceptor reads the PROXY header on `haproxy` listeners (see
//!    `warden_proxy`); a connection that breaks it is closed and counted;
//! 2. the service's `admission` policy decides with the source's counts
//!    (`per_source_limit`, `per_source_rate` in the built-in);
//! 3. it goes to the ready process with the fewest connections below
//!    `client_limit`; when none has room a new process is started, up to
//!    `process_limit`. In a full `login` service the `eviction` policy picks
//!    connections that have not logged in, which the host closes itself
//!    (shutdown in both directions, so the client sees the connection end
//!    and the process's reads see end of file; the process is told
//!    `closed` with reason `evicted`), and the waiting connection takes the
//!    freed slot. Otherwise it waits up to `process_limit_wait`, like any
//!    connection at `process_limit`;
//! 4. the host keeps a duplicate of the socket until the process reports
//!    the connection closed, or exits, so `warden kick` can close it.
//!
//! A process that sends a malformed or oversized message loses its channel
//! (the reason is logged), takes no more connections and is asked to stop;
//! the master and the other processes go on.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{AddressFamily, Shutdown, SockFlag, SockType};
use tokio::sync::mpsc;
use warden_child::protocol::{ConnectionInfo, FromService, MAX_MESSAGE, Peer, ToService, VERSION};
use warden_policy::stats::Event as StatsEvent;
use warden_policy::{Admission, ConnectionView, ListenerKind, PeerView, Policy, SourceCounts};

use super::connections::Handed;
use super::launch::{Connection, Ends};
use super::metrics::{RejectLabels, label};
use super::process::{IdleStage, Life, Process};
use super::service::Coming;
use super::table::ProcessTable;
use super::{Event, Master, Noise};
use crate::config::ServiceKind;
use crate::control::ConnectionStatus;

/// The most messages a process may send in a second: two per connection
/// at a rate no service reaches. Past it the channel is closed, so a
/// process cannot flood the master's event queue.
const MAX_MESSAGES_PER_SECOND: u32 = 100_000;

/// How often the admission policy may delay one connection before it is
/// refused.
const MAX_DELAYS: u32 = 10;

/// A control channel for a new process: the master's end, non-blocking,
/// and the process's.
pub(super) fn channel_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (master, process) = nix::sys::socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)?;
    nix::fcntl::fcntl(
        &master,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )?;
    Ok((master, process))
}

/// Reads a process's control channel, sending each message to the master,
/// until the channel closes or breaks.
fn reader_task(
    events: mpsc::UnboundedSender<Event>,
    pid: i32,
    serial: u64,
    channel: OwnedFd,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let channel = warden_sys::watch::async_fd(channel)?;
    Ok(tokio::spawn(async move {
        let mut buffer = vec![0u8; MAX_MESSAGE];
        let (mut second, mut this_second) = (Instant::now(), 0u32);
        loop {
            let Ok(mut ready) = channel.readable().await else {
                return;
            };
            let received = warden_sys::fdpass::recv(channel.get_ref().as_fd(), &mut buffer);
            let message = match received {
                Ok(received) if received.len == 0 && received.fds.is_empty() => {
                    let _ = events.send(Event::ChannelClosed {
                        pid,
                        channel: serial,
                    });
                    return;
                }
                Ok(received) if !received.fds.is_empty() => {
                    Err("it sent descriptors, which warden never takes".to_owned())
                }
                Ok(received) => FromService::parse(buffer.get(..received.len).unwrap_or_default())
                    .map_err(|error| error.to_string()),
                Err(warden_sys::fdpass::RecvError::Io(error))
                    if error.kind() == std::io::ErrorKind::WouldBlock =>
                {
                    ready.clear_ready();
                    continue;
                }
                Err(error) => Err(crate::error_chain(&error)),
            };
            if second.elapsed() >= Duration::from_secs(1) {
                (second, this_second) = (Instant::now(), 0);
            }
            this_second += 1;
            let message = if this_second > MAX_MESSAGES_PER_SECOND {
                Err(format!(
                    "it sent more than {MAX_MESSAGES_PER_SECOND} messages in a second"
                ))
            } else {
                message
            };
            let broken = message.is_err();
            let event = Event::Child {
                pid,
                channel: serial,
                message,
            };
            if events.send(event).is_err() || broken {
                return;
            }
        }
    }))
}

/// The peer of a connection, as policies see it.
fn peer_view(ends: &Ends) -> PeerView {
    match ends {
        Ends::Tcp { remote, .. } => PeerView {
            address: Some(remote.ip().to_string()),
            port: Some(remote.port()),
            ..PeerView::default()
        },
        Ends::Unix { uid, gid, pid } => PeerView {
            uid: Some(*uid),
            gid: Some(*gid),
            pid: u32::try_from(*pid).ok(),
            ..PeerView::default()
        },
    }
}

/// The peer of a connection, as the process is told.
fn peer_info(ends: &Ends) -> Peer {
    match ends {
        Ends::Tcp { remote, local } => Peer {
            address: Some(remote.to_string()),
            local: Some(local.to_string()),
            ..Peer::default()
        },
        Ends::Unix { uid, gid, pid } => Peer {
            uid: Some(*uid),
            gid: Some(*gid),
            pid: u32::try_from(*pid).ok(),
            ..Peer::default()
        },
    }
}

/// The client's address, for per-source counting.
pub(super) fn source(ends: &Ends) -> Option<IpAddr> {
    match ends {
        Ends::Tcp { remote, .. } => Some(remote.ip()),
        Ends::Unix { .. } => None,
    }
}

impl Master {
    /// Sends a new native process its hello and starts reading its
    /// channel.
    pub(super) fn open_channel(&mut self, index: usize, pid: i32, channel: OwnedFd) {
        let events = self.events.clone();
        let serial = self.next_channel;
        self.next_channel += 1;
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let hello = ToService::Hello {
            version: VERSION,
            service: state.name().to_owned(),
            client_limit: state.config.effective_client_limit(),
            service_count: state.config.service_count.value.limit(),
        };
        let name = state.name().to_owned();
        let Some(process) = self.processes.get_mut(pid) else {
            return;
        };
        // Counted idle from its start, so the idle kill sees it even if
        // it never gets a connection.
        let now = Instant::now();
        process.report_clients(0, now);
        let opened = channel
            .try_clone()
            .and_then(|copy| reader_task(events, pid, serial, copy))
            .and_then(|reader| {
                let channel = process
                    .channel
                    .insert(super::process::Channel::new(channel, serial, reader));
                channel.send(&hello)
            });
        if let Err(error) = opened {
            tracing::error!(service = name, pid, %error, "cannot talk to a new process; stopping it");
            if let Some(channel) = &mut process.channel {
                channel.close();
            }
            let _ = process.stop(Signal::SIGTERM, now, true);
        }
    }

    /// Whether `connection`, accepted for the service at `index`, may reach
    /// a process: the service's admission policy decides. A rejected one
    /// is closed, logged and counted; a delayed one is decided again later.
    pub(super) fn admit(
        &mut self,
        index: usize,
        mut connection: Connection,
        now: Instant,
    ) -> Option<Connection> {
        let now_ms = self.now_ms(now);
        // A delayed connection is counted toward its source's rate once,
        // and toward its open connections while it waits.
        let first = connection.delays == 0;
        if !first
            && let Some(address) = source(&connection.ends)
            && let Some(state) = self.services.get_mut(index)
            && let Some(waiting) = state.delayed.get_mut(&address)
        {
            *waiting = waiting.saturating_sub(1);
            if *waiting == 0 {
                state.delayed.remove(&address);
            }
        }
        let counts = self.source_counts(index, source(&connection.ends), first, now);
        let state = self.services.get(index)?;
        let listener = state
            .listeners
            .get(connection.listener)
            .map(|l| l.wanted.name.clone())
            .unwrap_or_default();
        let view = ConnectionView {
            id: 0,
            listener,
            peer: peer_view(&connection.ends),
            accepted_ms: self.now_ms(connection.accepted),
            authenticated: false,
            pid: 0,
        };
        let verdict = self.policy.admit(&state.view(), &view, counts, now_ms);
        let name = state.name().to_owned();
        match verdict {
            Admission::Accept => Some(connection),
            Admission::Reject(reason) => {
                self.reject(
                    &name,
                    &peer_text(&connection.ends),
                    &reason,
                    "refused by the admission policy",
                );
                None
            }
            Admission::Delay(_) if connection.delays >= MAX_DELAYS => {
                self.reject(
                    &name,
                    &peer_text(&connection.ends),
                    "delayed-too-often",
                    "the admission policy delayed it too often",
                );
                None
            }
            Admission::Delay(ms) => {
                connection.delays += 1;
                if let Some(address) = source(&connection.ends)
                    && let Some(state) = self.services.get_mut(index)
                {
                    *state.delayed.entry(address).or_insert(0) += 1;
                }
                let events = self.events.clone();
                let generation = self.generation;
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let _ = events.send(Event::Accepted {
                        generation,
                        index,
                        connection,
                    });
                });
                None
            }
        }
    }

    /// Logs and counts a connection refused before it reached a process.
    /// Outsiders decide how many there are, so the log has the first of
    /// each service and reason at once and then a summary per interval
    /// (see [`super::ratelimit`]); the metric counts each.
    pub(super) fn reject(&mut self, service: &str, peer: &str, reason: &str, why: &str) {
        let kind = Noise::Refused {
            service: service.to_owned(),
            reason: reason.to_owned(),
        };
        if self
            .noise
            .allow(&kind, Instant::now(), || format!("{peer}: {why}"))
        {
            tracing::info!(service, peer, reason, "connection refused: {why}");
        }
        self.metrics
            .rejected
            .get_or_create(&RejectLabels {
                service: service.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// How busy the source `address` is: its connections open now and in
    /// the last second, this one included (and recorded, with `record`).
    fn source_counts(
        &mut self,
        index: usize,
        address: Option<IpAddr>,
        record: bool,
        now: Instant,
    ) -> SourceCounts {
        let Some(state) = self.services.get_mut(index) else {
            return SourceCounts {
                concurrent: 1,
                last_second: 1,
            };
        };
        let Some(address) = address else {
            return SourceCounts {
                concurrent: 1,
                last_second: 1,
            };
        };
        state.recent.expire(now);
        if record {
            state.recent.record(address, now);
        }
        let last_second = state.recent.from(address);
        let name = state.name();
        let open = self.connections.of_service_from(name, address)
            + state
                .queue
                .iter()
                .filter(|(c, _)| source(&c.ends) == Some(address))
                .count()
            + self
                .processes
                .of(index)
                .filter(|(_, p)| p.peer == Some(address))
                .count()
            + state
                .delayed
                .get(&address)
                .map_or(0, |n| usize::try_from(*n).unwrap_or(usize::MAX));
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        SourceCounts {
            concurrent: count(open + 1),
            last_second,
        }
    }

    /// A connection admitted for the native service at `index`: it waits
    /// its turn, then goes to a process.
    pub(super) fn accepted_native(&mut self, index: usize, connection: Connection, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        state.queue.push_back((connection, now));
        self.dispatch(index, now);
    }

    /// Hands waiting connections to processes with room; starts a process
    /// when none has room; in a full login service, evicts to make room.
    pub(super) fn dispatch(&mut self, index: usize, now: Instant) {
        // Each eviction frees at least one slot; the bound only guards
        // against a policy that keeps choosing and a slot that stays taken.
        let mut evictions = 0;
        loop {
            let Some(state) = self.services.get_mut(index) else {
                return;
            };
            if state.queue.is_empty() {
                state.waiting_since = None;
                return;
            }
            if let Some(pid) = roomiest(&self.processes, index) {
                let Some((connection, since)) = state.queue.pop_front() else {
                    return;
                };
                // A process that cannot take it is passed over (its channel
                // is full) or stopped, so the next turn picks another.
                if let Err(connection) = self.hand_over(index, pid, connection)
                    && let Some(state) = self.services.get_mut(index)
                {
                    state.queue.push_front((connection, since));
                }
                continue;
            }
            let full = !state.below_limit(&self.processes);
            // Processes that have not said hello, and those the spawner
            // is starting.
            let starting = self
                .processes
                .of(index)
                .filter(|(_, p)| p.life() == Life::Starting && p.channel.is_some())
                .count()
                .saturating_add(usize::try_from(state.starting).unwrap_or(usize::MAX));
            let limit =
                usize::try_from(state.config.effective_client_limit()).unwrap_or(usize::MAX);
            let room = starting.saturating_mul(limit);
            if state.queue.len() <= room {
                // Processes that answer hello soon take them.
                return;
            }
            if !full && state.spawn_pending.is_none() && state.may_spawn(now) {
                let ticket = self.spawn(index, None);
                if let Some(state) = self.services.get_mut(index) {
                    state.spawn_pending = ticket.map(Coming::Starting);
                }
                return;
            }
            let waiting = state.queue.len().saturating_sub(room);
            if full
                && state.config.kind.value == ServiceKind::Login
                && evictions <= waiting
                && self.evict(index, waiting, now)
            {
                evictions += 1;
                continue;
            }
            if full {
                let state = self.services.get_mut(index);
                if let Some(state) = state
                    && state.waiting_since.is_none()
                {
                    state.waiting_since = Some(now);
                    self.observe(index, StatsEvent::Full);
                }
            }
            return;
        }
    }

    /// Sends `connection` to process `pid`; gives it back when the process
    /// cannot take it.
    fn hand_over(
        &mut self,
        index: usize,
        pid: i32,
        connection: Connection,
    ) -> Result<(), Connection> {
        let id = self.connections.next_id();
        let Some(state) = self.services.get_mut(index) else {
            return Ok(());
        };
        // The listener index comes from this service's own acceptor.
        let Some(open) = state.listeners.get(connection.listener) else {
            return Ok(());
        };
        let peer = peer_view(&connection.ends);
        let client_type = if open.view.kind == ListenerKind::Inet {
            (open.client_type.clone(), None)
        } else {
            let typed = self.policy.typing(&state.view(), &open.view, Some(&peer));
            (typed.name, typed.restricted_to_uid)
        };
        let info = ConnectionInfo {
            id,
            listener: open.wanted.name.clone(),
            client_type: client_type.0,
            restricted_to_uid: client_type.1,
            ssl: open.wanted.ssl,
            peer: peer_info(&connection.ends),
        };
        let listener = open.wanted.name.clone();
        let service = state.name().to_owned();
        let limit = state.config.service_count.value.limit();
        let Some(process) = self.processes.get_mut(pid) else {
            return Ok(());
        };
        let Some(channel) = &mut process.channel else {
            return Err(connection);
        };
        let sent = channel.send_connection(&ToService::Connection(info), connection.socket.as_fd());
        let now = Instant::now();
        match sent {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                // Its channel is full: it is passed over until it reads.
                channel.congested = true;
                return Err(connection);
            }
            Err(error) => {
                tracing::warn!(service, pid, %error, "cannot hand a connection to a process; stopping it");
                let _ = process.stop(Signal::SIGTERM, now, true);
                return Err(connection);
            }
        }
        channel.handed += 1;
        let served = channel.handed;
        let clients = process.clients.unwrap_or(0).saturating_add(1);
        process.report_clients(clients, now);
        if limit.is_some_and(|limit| served >= limit) {
            let _ = process.stop_accepting();
        }
        self.connections.add(Handed {
            service,
            pid,
            listener,
            peer,
            accepted: connection.accepted,
            authenticated: false,
            socket: connection.socket,
        });
        self.observe(index, StatsEvent::Accepted(id));
        Ok(())
    }

    /// Asks the eviction policy which connections of the full login service
    /// at `index` make room for those waiting, and closes them. Whether any
    /// was closed.
    fn evict(&mut self, index: usize, waiting: usize, now: Instant) -> bool {
        let now_ms = self.now_ms(now);
        let Some(state) = self.services.get(index) else {
            return false;
        };
        let name = state.name();
        // Only connections whose process takes new ones free a slot there.
        let processes = &self.processes;
        let serving = |pid: i32| {
            processes.place(pid) == Some(index)
                && processes.get(pid).is_some_and(Process::takes_connections)
        };
        let candidates: Vec<ConnectionView> = self
            .connections
            .not_logged_in(name, serving)
            .map(|(id, c)| ConnectionView {
                id,
                listener: c.listener.clone(),
                peer: c.peer.clone(),
                accepted_ms: self.now_ms(c.accepted),
                authenticated: false,
                pid: c.pid.unsigned_abs(),
            })
            .collect();
        if candidates.is_empty() {
            return false;
        }
        let waiting = u32::try_from(waiting).unwrap_or(u32::MAX);
        let victims = self
            .policy
            .evict(&state.view(), &candidates, waiting, now_ms);
        let mut evicted = false;
        for id in victims {
            if self.close_connection(id, "evicted").is_some() {
                self.metrics
                    .evicted
                    .get_or_create(&label(self.services.get(index).map_or("", |s| s.name())))
                    .inc();
                self.observe(index, StatsEvent::Evicted(id));
                evicted = true;
            }
        }
        evicted
    }

    /// Closes connection `id` from the host's side: shuts the socket down
    /// in both directions, tells its process why, and frees its slot.
    pub(super) fn close_connection(&mut self, id: u64, reason: &str) -> Option<Handed> {
        let handed = self.connections.remove(id)?;
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&handed.socket),
            Shutdown::Both,
        );
        tracing::info!(
            service = handed.service,
            pid = handed.pid,
            connection = id,
            peer = handed.peer.address.as_deref().unwrap_or("unix"),
            reason,
            "connection closed by warden"
        );
        if let Some(process) = self.process_mut(handed.pid) {
            if let Some(channel) = &mut process.channel {
                let _ = channel.send(&ToService::Closed {
                    id,
                    reason: reason.to_owned(),
                });
            }
            let clients = process.clients.unwrap_or(1).saturating_sub(1);
            process.report_clients(clients, Instant::now());
        }
        Some(handed)
    }

    /// A message from native process `pid` over the channel with serial
    /// `channel`.
    pub(super) fn child_said(
        &mut self,
        pid: i32,
        channel: u64,
        message: Result<FromService, String>,
    ) {
        if self
            .process_mut(pid)
            .is_none_or(|p| p.channel.as_ref().is_none_or(|c| c.serial != channel))
        {
            // From a process that is gone, whatever has its pid now.
            return;
        }
        let now = Instant::now();
        let index = self.processes.place(pid);
        let message = match message {
            Ok(FromService::Ready { version }) if version != VERSION => Err(format!(
                "it speaks protocol version {version}; warden speaks {VERSION}"
            )),
            other => other,
        };
        match message {
            Ok(FromService::Ready { .. }) => {
                if let Some(process) = self.process_mut(pid) {
                    process.ready(now);
                }
            }
            Ok(FromService::Authenticated { id }) => {
                if self.connections.authenticated(id, pid)
                    && let Some(index) = index
                {
                    self.observe(index, StatsEvent::Authenticated(id));
                }
            }
            Ok(FromService::Closed { id }) => {
                if self.connections.closed(id, pid).is_some() {
                    if let Some(process) = self.process_mut(pid) {
                        let clients = process.clients.unwrap_or(1).saturating_sub(1);
                        process.report_clients(clients, now);
                    }
                    if let Some(index) = index {
                        self.observe(index, StatsEvent::Closed(id));
                    }
                }
            }
            Ok(FromService::Exiting) => {}
            Ok(FromService::Busy) => {
                if let Some(process) = self.process_mut(pid)
                    && process.busy() == Some(IdleStage::Ignoring)
                {
                    tracing::info!(
                        pid,
                        "process {pid} said it is busy after all; it takes connections again"
                    );
                }
            }
            Err(reason) => {
                let service = index
                    .and_then(|i| self.services.get(i))
                    .map_or_else(String::new, |s| s.name().to_owned());
                tracing::error!(
                    service,
                    pid,
                    "closing the control channel of a process: {reason}; it takes no more connections and is asked to stop"
                );
                if let Some(process) = self.process_mut(pid) {
                    if let Some(channel) = &mut process.channel {
                        channel.close();
                    }
                    let _ = process.stop(Signal::SIGTERM, now, true);
                }
            }
        }
        if let Some(index) = index {
            self.dispatch(index, now);
        }
    }

    /// The control channel of `pid` closed: the process exited or dropped
    /// it; it takes no more connections.
    pub(super) fn channel_closed(&mut self, pid: i32, channel: u64) {
        if let Some(process) = self.process_mut(pid)
            && let Some(open) = process.channel.as_mut().filter(|c| c.serial == channel)
        {
            open.close();
            process.retire();
        }
    }

    /// Process `pid` exited: the host closes its copies of the process's
    /// connections.
    pub(super) fn forget_connections(&mut self, pid: i32, index: Option<usize>) {
        for id in self.connections.forget(pid) {
            if let Some(index) = index {
                self.observe(index, StatsEvent::Closed(id));
            }
        }
    }

    /// The connections of every native service, or of one, for `warden who`.
    pub(super) fn who(&self, service: Option<&str>) -> Vec<ConnectionStatus> {
        self.connections.who(service, Instant::now())
    }

    /// Closes the connection `target` names: its id, or every connection
    /// from a peer address.
    pub(super) fn kick_connection(&mut self, target: &str) -> Result<String, String> {
        let ids: Vec<u64> = match target.parse::<u64>() {
            Ok(id) if self.connections.contains(id) => vec![id],
            _ => {
                let address = target
                    .parse::<std::net::SocketAddr>()
                    .map(|a| (a.ip(), Some(a.port())))
                    .or_else(|_| target.parse::<IpAddr>().map(|ip| (ip, None)));
                let Ok((ip, port)) = address else {
                    return Err(format!(
                        "{target:?} is neither a connection id nor a peer address; `warden who` lists them"
                    ));
                };
                self.connections.by_peer(ip, port)
            }
        };
        if ids.is_empty() {
            return Err(format!(
                "no connection is {target}; `warden who` lists them"
            ));
        }
        let now = Instant::now();
        for id in &ids {
            let Some(handed) = self.close_connection(*id, "kicked") else {
                continue;
            };
            if let Some(index) = self
                .services
                .iter()
                .position(|s| s.name() == handed.service)
            {
                self.observe(index, StatsEvent::Closed(*id));
                self.dispatch(index, now);
                self.agenda.touch(index);
            }
        }
        Ok(format!("closed {} connection(s)", ids.len()))
    }

    /// The live process `pid`, of a service or left from before a reload.
    pub(super) fn process_mut(&mut self, pid: i32) -> Option<&mut Process> {
        self.processes.get_mut(pid)
    }
}

/// The ready process of the service at `index` with room and the fewest
/// connections.
fn roomiest(processes: &ProcessTable<Process>, index: usize) -> Option<i32> {
    processes
        .of(index)
        .filter(|(_, p)| {
            // Not one asked to exit either, though it may still take
            // connections until it answers.
            p.channel
                .as_ref()
                .is_some_and(|c| c.is_open() && !c.congested)
                && p.has_room()
                && p.life().idle_exit().is_none()
        })
        .min_by_key(|(pid, p)| (p.clients.unwrap_or(0), *pid))
        .map(|(pid, _)| pid)
}

/// A connection's peer, for the log.
fn peer_text(ends: &Ends) -> String {
    match ends {
        Ends::Tcp { remote, .. } => remote.to_string(),
        Ends::Unix { uid, pid, .. } => format!("uid {uid} pid {pid}"),
    }
}
