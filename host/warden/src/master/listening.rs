//! Listeners the master watches: for the interfaces whose processes accept
//! their own connections (`systemd`, `dovecot`), the master watches a
//! service's listeners only while no process can take a connection, starts
//! a process for the one waiting, and at `process_limit` lets connections
//! wait up to `process_limit_wait` before dropping them.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use nix::sys::socket::SockFlag;
use warden_sys::Endpoint;

use super::service::{Coming, ServiceState};
use super::{Event, Master, Phase};

pub(super) fn stop_watching(state: &mut ServiceState) {
    for task in state.watchers.drain(..) {
        task.abort();
    }
}

/// The most connections dropped at once, so a flood cannot hold the loop;
/// the rest are dropped on the next round.
pub(super) const DROP_BATCH: u64 = 1000;

/// Accepts and closes the connections waiting on the service's socket
/// listeners, at most [`DROP_BATCH`]; returns how many.
pub(super) fn drop_waiting(state: &ServiceState) -> u64 {
    let mut dropped = 0;
    for open in &state.listeners {
        if matches!(open.listener.endpoint(), Endpoint::Fifo(_)) {
            continue;
        }
        while dropped < DROP_BATCH {
            let Ok(socket) =
                nix::sys::socket::accept4(open.listener.as_fd(), SockFlag::SOCK_CLOEXEC)
            else {
                break;
            };
            drop(socket);
            dropped += 1;
        }
    }
    dropped
}

impl Master {
    /// A watched listener became readable: no process could take the
    /// connection.
    pub(super) fn readable(&mut self, index: usize) {
        let now = Instant::now();
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        stop_watching(state);
        if !state.may_spawn(now) || self.phase != Phase::Running {
            return;
        }
        if state.available(&self.processes) > 0 || state.one_coming(&self.processes) {
            return;
        }
        if state.below_limit(&self.processes) {
            let ticket = self.spawn(index, None);
            if let Some(state) = self.services.get_mut(index) {
                state.spawn_pending = ticket.map(Coming::Starting);
            }
            return;
        }
        if state.dropping {
            let dropped = drop_waiting(state);
            self.count_drops(index, dropped, now);
        } else {
            state.waiting_since.get_or_insert(now);
            self.count_drops(index, 0, now);
        }
    }

    /// Connections waiting at `process_limit` are dropped once they have
    /// waited `process_limit_wait`; a free slot ends the waiting.
    pub(super) fn round_waiting(&mut self, index: usize, now: Instant) {
        let wait = self.config.globals.process_limit_wait.value.to_std();
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if state.available(&self.processes) > 0 || state.below_limit(&self.processes) {
            state.waiting_since = None;
            state.dropping = false;
            return;
        }
        if let Some(since) = state.waiting_since
            && now.saturating_duration_since(since) >= wait
        {
            state.waiting_since = None;
            state.dropping = true;
            let dropped = drop_waiting(state);
            self.count_drops(index, dropped, now);
        }
    }

    /// The master watches a service's listeners only when no process can
    /// take a connection.
    pub(super) fn round_listening(&mut self, index: usize, now: Instant) {
        let generation = self.generation;
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let want = state.may_spawn(now)
            && !state.listeners.is_empty()
            && !state.one_coming(&self.processes)
            && state.available(&self.processes) == 0
            && (state.below_limit(&self.processes) || state.waiting_since.is_none());
        if !want {
            stop_watching(state);
            return;
        }
        if !state.watchers.is_empty() {
            return;
        }
        for open in &state.listeners {
            let Ok(fd) = open.listener.try_clone() else {
                continue;
            };
            let Ok(fd) = warden_sys::watch::async_fd(OwnedFd::from(fd)) else {
                continue;
            };
            let events = self.events.clone();
            state.watchers.push(tokio::spawn(async move {
                if fd.readable().await.is_ok() {
                    let _ = events.send(Event::Readable { generation, index });
                }
            }));
        }
    }
}
