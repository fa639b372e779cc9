//! Every connection the master handed to a native-interface process.
//!
//! The master keeps a duplicate of each handed connection's socket until
//! the process reports it closed or exits, so it can close a connection
//! itself (an eviction, a kick). The table gives each its id, records what
//! the process reports of it (logged in, closed), finds the connections of
//! a process, of a service or from a peer, and answers `warden who`. A
//! report is believed only from the process the connection was handed to.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Instant;

use warden_policy::PeerView;

use crate::control::ConnectionStatus;

/// A connection handed to a native-interface process.
#[derive(Debug)]
pub(super) struct Handed {
    /// Its service.
    pub service: String,
    /// The process serving it.
    pub pid: i32,
    /// The listener it came in on.
    pub listener: String,
    /// Who is at the other end.
    pub peer: PeerView,
    /// When it was accepted.
    pub accepted: Instant,
    /// Whether its client logged in.
    pub authenticated: bool,
    /// The master's duplicate of the socket.
    pub socket: OwnedFd,
}

/// The handed connections, by id.
#[derive(Debug)]
pub(super) struct ConnectionTable {
    handed: BTreeMap<u64, Handed>,
    /// The id the next connection gets; ids are never reused.
    next: u64,
}

impl Default for ConnectionTable {
    fn default() -> Self {
        ConnectionTable {
            handed: BTreeMap::new(),
            next: 1,
        }
    }
}

impl ConnectionTable {
    /// The id the next handed connection gets, for the message that hands
    /// it over.
    pub(super) fn next_id(&self) -> u64 {
        self.next
    }

    /// Records `handed`, which its process now has, under the id
    /// [`ConnectionTable::next_id`] gave; returns the id.
    pub(super) fn add(&mut self, handed: Handed) -> u64 {
        let id = self.next;
        self.next += 1;
        self.handed.insert(id, handed);
        id
    }

    /// Whether connection `id` is here.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.handed.contains_key(&id)
    }

    /// Removes connection `id`, which the master closes.
    pub(super) fn remove(&mut self, id: u64) -> Option<Handed> {
        self.handed.remove(&id)
    }

    /// Process `pid` reported that the client of connection `id` logged
    /// in; whether this is news (the connection is its, and was not).
    pub(super) fn authenticated(&mut self, id: u64, pid: i32) -> bool {
        match self.handed.get_mut(&id).filter(|c| c.pid == pid) {
            Some(handed) if !handed.authenticated => {
                handed.authenticated = true;
                true
            }
            Some(_) | None => false,
        }
    }

    /// Process `pid` reported connection `id` closed: removes it if it is
    /// that process's.
    pub(super) fn closed(&mut self, id: u64, pid: i32) -> Option<Handed> {
        if self.handed.get(&id).is_some_and(|c| c.pid == pid) {
            self.handed.remove(&id)
        } else {
            None
        }
    }

    /// Process `pid` exited: removes its connections; returns their ids.
    pub(super) fn forget(&mut self, pid: i32) -> Vec<u64> {
        let ids: Vec<u64> = self
            .handed
            .iter()
            .filter(|(_, c)| c.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.handed.remove(id);
        }
        ids
    }

    /// The connections of `service` whose client has not logged in, and
    /// whose process `serving` says still takes connections: what an
    /// eviction may choose from.
    pub(super) fn not_logged_in<'a>(
        &'a self,
        service: &'a str,
        serving: impl Fn(i32) -> bool + 'a,
    ) -> impl Iterator<Item = (u64, &'a Handed)> + 'a {
        self.handed
            .iter()
            .filter(move |(_, c)| c.service == service && !c.authenticated && serving(c.pid))
            .map(|(id, c)| (*id, c))
    }

    /// The connections from `ip` (and `port`, if given).
    pub(super) fn by_peer(&self, ip: IpAddr, port: Option<u16>) -> Vec<u64> {
        let ip = ip.to_string();
        self.handed
            .iter()
            .filter(|(_, c)| {
                c.peer.address.as_deref() == Some(ip.as_str())
                    && port.is_none_or(|port| c.peer.port == Some(port))
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// How many connections of `service` come from `ip`.
    pub(super) fn of_service_from(&self, service: &str, ip: IpAddr) -> usize {
        let ip = ip.to_string();
        self.handed
            .values()
            .filter(|c| c.service == service && c.peer.address.as_deref() == Some(ip.as_str()))
            .count()
    }

    /// The connections of every service, or of `service`, for `warden who`.
    pub(super) fn who(&self, service: Option<&str>, now: Instant) -> Vec<ConnectionStatus> {
        self.handed
            .iter()
            .filter(|(_, c)| service.is_none_or(|name| c.service == name))
            .map(|(id, c)| ConnectionStatus {
                id: *id,
                service: c.service.clone(),
                pid: c.pid,
                listener: c.listener.clone(),
                peer: match (&c.peer.address, c.peer.port, c.peer.uid) {
                    (Some(address), Some(port), _) => std::net::SocketAddr::new(
                        address.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                        port,
                    )
                    .to_string(),
                    (_, _, Some(uid)) => format!("uid {uid}"),
                    _ => String::new(),
                },
                age_secs: now.saturating_duration_since(c.accepted).as_secs(),
                state: if c.authenticated {
                    "authenticated"
                } else {
                    "waiting"
                }
                .to_owned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed(service: &str, pid: i32, address: &str, port: u16) -> Handed {
        let (socket, _) = nix::unistd::pipe().expect("a pipe stands in for a socket");
        Handed {
            service: service.to_owned(),
            pid,
            listener: "imap".to_owned(),
            peer: PeerView {
                address: Some(address.to_owned()),
                port: Some(port),
                ..PeerView::default()
            },
            accepted: Instant::now(),
            authenticated: false,
            socket,
        }
    }

    #[test]
    fn ids_are_given_in_order_and_never_reused() {
        let mut table = ConnectionTable::default();
        assert_eq!(table.next_id(), 1);
        assert_eq!(table.add(handed("login", 10, "10.0.0.1", 1000)), 1);
        assert_eq!(table.add(handed("login", 10, "10.0.0.2", 1000)), 2);
        assert!(table.remove(2).is_some());
        assert_eq!(table.next_id(), 3, "an id is not given twice");
    }

    #[test]
    fn only_the_serving_process_reports_on_its_connections() {
        let mut table = ConnectionTable::default();
        let id = table.add(handed("login", 10, "10.0.0.1", 1000));
        assert!(!table.authenticated(id, 11), "another process's report");
        assert!(table.authenticated(id, 10));
        assert!(!table.authenticated(id, 10), "news once");
        assert!(table.closed(id, 11).is_none());
        assert!(table.closed(id, 10).is_some());
        assert!(!table.contains(id));
    }

    #[test]
    fn connections_are_found_by_process_service_and_peer() {
        let mut table = ConnectionTable::default();
        let a = table.add(handed("login", 10, "10.0.0.1", 1000));
        let b = table.add(handed("login", 11, "10.0.0.1", 2000));
        let c = table.add(handed("other", 12, "10.0.0.2", 1000));
        table.authenticated(b, 11);
        let waiting: Vec<u64> = table
            .not_logged_in("login", |_| true)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(waiting, [a]);
        let serving_none: Vec<u64> = table
            .not_logged_in("login", |_| false)
            .map(|(id, _)| id)
            .collect();
        assert!(serving_none.is_empty());
        let ip: IpAddr = "10.0.0.1".parse().expect("an address");
        assert_eq!(table.by_peer(ip, None), [a, b]);
        assert_eq!(table.by_peer(ip, Some(2000)), [b]);
        assert_eq!(table.of_service_from("login", ip), 2);
        assert_eq!(table.of_service_from("other", ip), 0);
        assert_eq!(table.who(Some("other"), Instant::now()).len(), 1);
        assert_eq!(table.forget(10), [a]);
        assert_eq!(table.forget(10), Vec::<u64>::new());
        assert!(table.contains(c));
    }
}
