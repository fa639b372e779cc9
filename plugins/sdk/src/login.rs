//! Login services: which connections to evict when full, and which idle
//! processes may go.

use crate::dovecot::{self, Millis, Process, Service};

/// A connection, as the eviction decision sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    /// Its id.
    pub id: u64,
    /// When it was accepted.
    pub accepted_ms: Millis,
    /// Whether its client logged in.
    pub authenticated: bool,
}

/// The `waiting` oldest connections that have not logged in: "the oldest
/// connections that haven't logged in yet" go first, ties broken by id. A
/// logged-in connection is never chosen.
pub fn evict_oldest(candidates: &[Connection], waiting: u32) -> Vec<u64> {
    let mut pending: Vec<&Connection> = candidates.iter().filter(|c| !c.authenticated).collect();
    pending.sort_by_key(|c| (c.accepted_ms, c.id));
    pending
        .into_iter()
        .take(usize::try_from(waiting).unwrap_or(usize::MAX))
        .map(|c| c.id)
        .collect()
}

/// Dovecot's low-water idle kill, bounded so that the service keeps at
/// least `process_min_avail` processes: those not retired and not asked to
/// exit before, less the ones asked now, never fall below it.
pub fn idle(service: &Service, processes: &[Process], lowwater: u32, now_ms: Millis) -> Vec<u32> {
    let staying = processes
        .iter()
        .filter(|p| !p.retired && p.asked_to_exit_ms.is_none())
        .count();
    let may_go = staying.saturating_sub(usize::try_from(service.process_min_avail).unwrap_or(0));
    let mut asked = dovecot::idle(service, processes, lowwater, now_ms);
    let fresh = |pid: &u32| {
        processes
            .iter()
            .any(|p| p.pid == *pid && p.asked_to_exit_ms.is_none())
    };
    let mut fresh_asked = 0;
    asked.retain(|pid| {
        if !fresh(pid) {
            return true;
        }
        fresh_asked += 1;
        fresh_asked <= may_go
    });
    asked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: u64, accepted_ms: Millis, authenticated: bool) -> Connection {
        Connection {
            id,
            accepted_ms,
            authenticated,
        }
    }

    #[test]
    fn the_oldest_not_logged_in_go_first() {
        let connections = [
            connection(1, 100, true),
            connection(2, 300, false),
            connection(3, 200, false),
            connection(4, 50, true),
        ];
        assert_eq!(evict_oldest(&connections, 1), [3]);
        assert_eq!(evict_oldest(&connections, 5), [3, 2]);
        assert_eq!(evict_oldest(&connections, 0), Vec::<u64>::new());
    }

    #[test]
    fn idle_kill_never_leaves_fewer_than_min_avail() {
        let service = Service {
            startup: false,
            client_limit: 100,
            process_limit: 10,
            process_min_avail: 2,
            idle_kill_ms: Some(60_000),
        };
        let idle = |pid| Process {
            pid,
            ready: true,
            clients: Some(0),
            idle_since_ms: Some(0),
            asked_to_exit_ms: None,
            retired: false,
        };
        let three = [idle(1), idle(2), idle(3)];
        assert_eq!(idle_kill(&service, &three, 10), [1]);
        assert_eq!(idle_kill(&service, &three[..2], 10), Vec::<u32>::new());
    }

    fn idle_kill(service: &Service, processes: &[Process], lowwater: u32) -> Vec<u32> {
        idle(service, processes, lowwater, 120_000)
    }
}
