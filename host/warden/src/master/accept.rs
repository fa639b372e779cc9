//! The interfaces where warden accepts each connection itself (`inetd` and
//! the native `warden`): the acceptor tasks, the PROXY header on `haproxy`
//! listeners, admission, and the inetd interface's dispatch — a process per
//! connection, queued at `process_limit` up to `process_limit_wait`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::socket::{SockFlag, SockaddrStorage};
use tokio::sync::mpsc;
use warden_sys::{Endpoint, Listener};

use super::launch::{Connection, Ends};
use super::{Event, Master, Phase};
use crate::config::Interface;

/// How long an accept loop rests after an error such as running out of
/// descriptors, so it cannot spin.
pub(super) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The PROXY protocol rules of `haproxy` listeners.
#[derive(Debug)]
pub(super) struct ProxyRules {
    /// `haproxy_trusted_networks`.
    pub(super) trusted: Vec<crate::config::value::Network>,
    /// `haproxy_timeout`.
    pub(super) timeout: Duration,
}

/// Where an acceptor's connections go.
#[derive(Debug, Clone, Copy)]
pub(super) struct Acceptor {
    /// The configuration generation.
    pub(super) generation: u64,
    /// The service's place in the table.
    pub(super) index: usize,
    /// The listener's place in the service's listeners.
    pub(super) listener: usize,
}

/// Accepts connections on `listener` for an inetd or native service and
/// sends them to the master. An error other than "nothing to accept" (out
/// of descriptors, out of memory) is logged at most once per backoff and
/// waited out, so the loop never spins; on a `haproxy` listener (`proxy` given), each
/// connection's PROXY header is read first, in a task of its own, and one
/// that breaks the protocol is closed and reported instead.
pub(super) fn accept_task(
    events: &mpsc::UnboundedSender<Event>,
    at: Acceptor,
    listener: &Listener,
    proxy: Option<Arc<ProxyRules>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let bound = listener.endpoint().clone();
    let endpoint = bound.to_string();
    let fd = warden_sys::watch::async_fd(OwnedFd::from(listener.try_clone()?))?;
    let events = events.clone();
    Ok(tokio::spawn(async move {
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return;
            };
            let socket = match nix::sys::socket::accept4(
                fd.get_ref().as_fd(),
                SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(socket) => socket,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                    ready.clear_ready();
                    continue;
                }
                Err(errno) => {
                    ready.clear_ready();
                    tracing::error!(
                        listener = endpoint,
                        %errno,
                        "cannot accept a connection; retrying in {}ms (raise the descriptor limit, ulimit -n, if it says too many open files)",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(ends) = ends_of(&socket, &bound) else {
                continue;
            };
            let connection = Connection {
                socket,
                listener: at.listener,
                accepted: Instant::now(),
                delays: 0,
                ends,
            };
            if let Some(rules) = &proxy {
                tokio::spawn(read_proxy_header(
                    events.clone(),
                    at,
                    connection,
                    Arc::clone(rules),
                ));
            } else if events
                .send(Event::Accepted {
                    generation: at.generation,
                    index: at.index,
                    connection,
                })
                .is_err()
            {
                return;
            }
        }
    }))
}

/// Reads the PROXY header of `connection` and sends it on with the
/// addresses the header gives, or reports why it was refused (dropping
/// the connection closes it).
pub(super) async fn read_proxy_header(
    events: mpsc::UnboundedSender<Event>,
    at: Acceptor,
    mut connection: Connection,
    rules: Arc<ProxyRules>,
) {
    let Ends::Tcp { remote, .. } = connection.ends else {
        return;
    };
    let result = async {
        let stream = std::net::TcpStream::from(connection.socket.try_clone()?);
        stream.set_nonblocking(true)?;
        let mut stream = tokio::net::TcpStream::from_std(stream)?;
        let trusted = rules
            .trusted
            .iter()
            .any(|network| network.contains(remote.ip()));
        let header = warden_proxy::accept(&mut stream, remote.ip(), trusted, rules.timeout).await;
        stream.into_std()?.set_nonblocking(false)?;
        header
    }
    .await;
    let event = match result {
        Ok(addresses) => {
            if let Some(addresses) = addresses {
                connection.ends = Ends::Tcp {
                    remote: addresses.source,
                    local: addresses.destination,
                };
            }
            Event::Accepted {
                generation: at.generation,
                index: at.index,
                connection,
            }
        }
        Err(error) => Event::Rejected {
            generation: at.generation,
            index: at.index,
            peer: remote.to_string(),
            error,
        },
    };
    let _ = events.send(event);
}

/// What the UCSPI variables say about a connection accepted on a listener
/// bound at `bound`; `None` when they cannot be read (the client is
/// already gone). A listener bound to one address is its connections'
/// local address too: only a wildcard listener asks each connection's.
fn ends_of(socket: &OwnedFd, bound: &Endpoint) -> Option<Ends> {
    let Endpoint::Inet(bound) = bound else {
        let credentials = warden_sys::fdpass::peer_credentials(socket).ok()?;
        return Some(Ends::Unix {
            uid: credentials.uid.as_raw(),
            gid: credentials.gid.as_raw(),
            pid: credentials.pid.as_raw(),
        });
    };
    let address = |storage: SockaddrStorage| {
        storage
            .as_sockaddr_in()
            .map(|v4| std::net::SocketAddr::V4((*v4).into()))
            .or_else(|| {
                storage
                    .as_sockaddr_in6()
                    .map(|v6| std::net::SocketAddr::V6((*v6).into()))
            })
    };
    let remote = address(nix::sys::socket::getpeername(socket.as_raw_fd()).ok()?)?;
    let local = if bound.ip().is_unspecified() {
        address(nix::sys::socket::getsockname(socket.as_raw_fd()).ok()?)?
    } else {
        *bound
    };
    Some(Ends::Tcp { remote, local })
}

impl Master {
    pub(super) fn accepted(&mut self, index: usize, connection: Connection) {
        let now = Instant::now();
        if self.phase != Phase::Running {
            return;
        }
        let Some(connection) = self.admit(index, connection, now) else {
            return;
        };
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        state.connections += 1;
        if state.interface() == Interface::Warden {
            self.accepted_native(index, connection, now);
            return;
        }
        if !state.may_spawn(now) {
            // Throttled: the connection closes unanswered.
            return;
        }
        if state.below_limit(&self.processes) && state.queue.is_empty() {
            self.spawn(index, Some(connection));
        } else {
            state.queue.push_back((connection, now));
            self.count_drops(index, 0, now);
        }
    }

    pub(super) fn round_inetd(&mut self, index: usize, now: Instant) {
        loop {
            let Some(state) = self.services.get_mut(index) else {
                return;
            };
            if !state.below_limit(&self.processes) || !state.may_spawn(now) {
                break;
            }
            let Some((connection, _)) = state.queue.pop_front() else {
                break;
            };
            self.spawn(index, Some(connection));
        }
        self.drop_expired(index, now);
    }

    /// Drops the accepted connections that waited `process_limit_wait`.
    pub(super) fn drop_expired(&mut self, index: usize, now: Instant) {
        let wait = self.config.globals.process_limit_wait.value.to_std();
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let before = state.queue.len();
        state
            .queue
            .retain(|(_, since)| now.saturating_duration_since(*since) < wait);
        let dropped = u64::try_from(before - state.queue.len()).unwrap_or(u64::MAX);
        if dropped > 0 {
            self.count_drops(index, dropped, now);
        }
    }
}
