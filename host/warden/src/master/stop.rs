//! Stopping: processes left from a reload drain, and a stop takes every
//! service down in order.
//!
//! A stop sends SIGTERM to every process but the log service's, SIGKILL to
//! those left after `shutdown_grace`, and then stops the log service the
//! same way, so the others' last lines are kept. Old processes after a
//! reload get SIGTERM after `shutdown_grace` and SIGKILL after twice that,
//! when `shutdown_clients` says so.

use std::time::Instant;

use nix::sys::signal::Signal;

use super::listening::stop_watching;
use super::process::Life;
use super::table::Slot;
use super::{Master, Phase};
use crate::config::ServiceKind;

impl Master {
    /// Old processes get SIGTERM after `shutdown_grace` and SIGKILL after
    /// twice that, when `shutdown_clients` says so.
    pub(super) fn round_draining(&mut self, now: Instant) {
        if !self.config.globals.shutdown_clients.value {
            return;
        }
        let grace = self.config.globals.shutdown_grace.value.to_std();
        for (pid, drain, process) in self.processes.draining_mut() {
            let waited = now.saturating_duration_since(drain.since);
            let signal = if waited >= grace * 2 && !drain.killed {
                drain.killed = true;
                Signal::SIGKILL
            } else if waited >= grace && !matches!(process.life(), Life::Stopping { .. }) {
                Signal::SIGTERM
            } else {
                continue;
            };
            if process.stop(signal, now, false).is_ok() {
                tracing::info!(
                    service = drain.service,
                    pid,
                    "sent {signal} to an old process after reload"
                );
            }
        }
    }

    pub(super) fn begin_stop(&mut self, why: &str) {
        if self.phase != Phase::Running {
            return;
        }
        tracing::info!("{why} received: stopping every service");
        self.set_unready(Some("stopping".to_owned()));
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let now = Instant::now();
        self.phase = Phase::Stopping {
            since: now,
            log_told: None,
        };
        for state in &mut self.services {
            stop_watching(state);
            for task in state.acceptors.drain(..) {
                task.abort();
            }
            state.queue.clear();
        }
        let logs = self.log_places();
        for (slot, _, process) in self.processes.iter_mut() {
            if !logs.contains(&slot) {
                let _ = process.stop(Signal::SIGTERM, now, false);
            }
        }
    }

    /// The slots of the log services' processes, which stop last.
    pub(super) fn log_places(&self) -> Vec<Slot> {
        self.services
            .iter()
            .filter(|s| s.config.kind.value == ServiceKind::Log)
            .map(|s| Slot::Service(s.place))
            .collect()
    }

    pub(super) fn round_stopping(&mut self, now: Instant) {
        let Phase::Stopping { since, log_told } = self.phase else {
            return;
        };
        let grace = self.config.globals.shutdown_grace.value.to_std();
        let waited = now.saturating_duration_since(since);
        let logs = self.log_places();
        let others_left = self
            .processes
            .iter()
            .any(|(slot, _, _)| !logs.contains(&slot));
        if others_left && waited >= grace {
            for (slot, _, process) in self.processes.iter_mut() {
                if !logs.contains(&slot) {
                    let _ = process.child.signal(Signal::SIGKILL);
                }
            }
        }
        if !others_left && log_told.is_none() {
            // The log service goes last, so the others' last lines are kept.
            for (slot, _, process) in self.processes.iter_mut() {
                if logs.contains(&slot) {
                    let _ = process.stop(Signal::SIGTERM, now, false);
                }
            }
            self.phase = Phase::Stopping {
                since,
                log_told: Some(now),
            };
        }
        // The log service has its own grace, from when it was told.
        if log_told.is_some_and(|told| now.saturating_duration_since(told) >= grace) {
            for (slot, _, process) in self.processes.iter_mut() {
                if logs.contains(&slot) {
                    let _ = process.child.signal(Signal::SIGKILL);
                }
            }
        }
    }

    pub(super) fn finished(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. })
            && self.processes.is_empty()
            && self.starting.is_empty()
    }
}
