//! The round, ten times a second, for the services on the agenda: throttles
//! that end, the care of each process (first reports, idle exits that went
//! unanswered), scaling, each interface's dispatch, the low-water idle kill,
//! and the gauges of what it visited.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_policy::stats::Event as StatsEvent;
use warden_policy::{IdleAction, Policy};

use super::metrics::{self, label};
use super::process::IdleStage;
use super::ratelimit::{self};
use super::{Master, Noise};
use crate::config::{Interface, ServiceKind};

/// How often the plugins are asked for their metrics.
pub(super) const PLUGIN_METRICS_EVERY: Duration = Duration::from_secs(1);

/// At most one "process_limit reached" line per service per this long.
pub(super) const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

impl Master {
    /// Asks the plugins for their metrics, at most once a second, for the
    /// metrics endpoint to show.
    pub(super) fn report_plugin_metrics(&mut self, now: Instant) {
        if self
            .plugin_metrics_at
            .is_some_and(|at| now.saturating_duration_since(at) < PLUGIN_METRICS_EVERY)
        {
            return;
        }
        self.plugin_metrics_at = Some(now);
        self.metrics.plugins_now(self.policy.plugins());
        if let Some(bytes) = metrics::resident_bytes() {
            self.metrics
                .resident
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        let now_ms = self.now_ms(now);
        let reports = self.policy.report(now_ms);
        self.metrics.plugins_reported(reports);
    }

    /// Logs what the rate limit held back of outsiders' doings, once per
    /// interval and kind.
    pub(super) fn summarise_noise(&mut self, now: Instant) {
        let seconds = ratelimit::INTERVAL.as_secs();
        for (kind, summary) in self.noise.due(now) {
            let (count, example) = (summary.count, summary.example);
            match kind {
                Noise::Stranger => tracing::warn!(
                    count,
                    "ignored {count} more notify messages from processes that are not warden's in the last {seconds}s; the first from pid {example}"
                ),
                Noise::Refused { service, reason } => tracing::info!(
                    service,
                    reason,
                    count,
                    "{count} more connections refused ({reason}) in the last {seconds}s; the first from {example}"
                ),
            }
        }
    }

    pub(super) fn round_service(&mut self, index: usize, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if !state.runs {
            return;
        }
        let name = state.name().to_owned();
        if let Some(until) = state.throttle.until
            && now >= until
        {
            state.throttle.until = None;
            tracing::info!(service = name, "throttle over");
            self.metrics.throttled.get_or_create(&label(&name)).set(0);
        }
        state.tend(&mut self.processes, now);

        let scaling_again = match state.interface() {
            Interface::Inetd => {
                self.round_inetd(index, now);
                false
            }
            Interface::Warden => {
                let again = self.round_scaling(index, now);
                self.dispatch(index, now);
                self.drop_expired(index, now);
                again
            }
            Interface::Systemd => {
                let again = self.round_scaling(index, now);
                self.round_waiting(index, now);
                self.round_listening(index, now);
                again
            }
            Interface::Dovecot => {
                let again = self.round_scaling(index, now);
                self.round_waiting(index, now);
                self.round_listening(index, now);
                self.notify_logins(index);
                again
            }
        };
        self.round_idle(index, now);
        if let Some(state) = self.services.get(index) {
            if scaling_again || state.has_work(&self.processes) {
                self.agenda.touch(index);
            }
            if let Some(at) = state.next_wake(&self.processes) {
                self.agenda.wake_at(at, index);
            }
        }
    }

    /// Asks the scaling policy how many processes to start, and starts
    /// them. Whether the service needs asking again next round without an
    /// event: it started some (it may want more than one round starts),
    /// or it was asked while the master was busy starting others, which
    /// may have held its answer back.
    pub(super) fn round_scaling(&mut self, index: usize, now: Instant) -> bool {
        let Some(state) = self.services.get_mut(index) else {
            return false;
        };
        if !state.may_spawn(now) {
            return false;
        }
        let at_startup = !state.started;
        state.started = true;
        let processes = state.process_views(&self.processes, self.origin);
        let mut wanted = self.policy.scaling(
            &state.view(),
            &processes,
            at_startup,
            self.spawned_this_round,
        );
        // The log and config services are up before the others need them,
        // and the log service is restarted whenever it has no process.
        let kind = state.config.kind.value;
        if self.processes.count(index) == 0
            && (kind == ServiceKind::Log || (at_startup && kind == ServiceKind::Config))
        {
            wanted = wanted.max(1);
        }
        let busy = self.spawned_this_round;
        let mut started = 0;
        for _ in 0..wanted {
            if self.spawn(index, None).is_none() {
                break;
            }
            started += 1;
        }
        busy || started > 0
    }

    /// The low-water idle kill: track the fewest idle processes at once,
    /// and once per `idle_kill` interval let the policy pick whom to ask.
    pub(super) fn round_idle(&mut self, index: usize, now: Instant) {
        let now_ms = self.now_ms(now);
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let Some(interval) = state.idle_kill() else {
            return;
        };
        // With no process there is nothing to retire: the rounds start
        // afresh, an interval after the next process appears.
        if self.processes.count(index) == 0 {
            state.next_idle_round = None;
            state.idle_lowwater = None;
            return;
        }
        let idle = state.idle_count(&self.processes);
        let lowwater = state.idle_lowwater.map_or(idle, |low| low.min(idle));
        state.idle_lowwater = Some(lowwater);
        let next = *state.next_idle_round.get_or_insert(now + interval);
        if now < next {
            return;
        }
        state.next_idle_round = Some(now + interval);
        state.idle_lowwater = Some(idle);
        let actions = self.policy.idle(
            &state.view(),
            &state.process_views(&self.processes, self.origin),
            lowwater,
            now_ms,
        );
        let name = state.name().to_owned();
        let mut asked = Vec::new();
        for action in actions {
            let (pid, stage) = match action {
                IdleAction::AskToExit(pid) => (pid, IdleStage::Asked),
                IdleAction::Terminate(pid) => (pid, IdleStage::Terminated),
                IdleAction::Kill(pid) => (pid, IdleStage::Killed),
            };
            // Only the processes the policy was shown may be named.
            let Some(process) = i32::try_from(pid)
                .ok()
                .and_then(|pid| self.processes.get_mut(pid))
                .filter(|p| p.decided_about())
            else {
                tracing::warn!(
                    service = name,
                    pid,
                    "the idle policy named a process the service does not have, or that is stopping or stopped"
                );
                continue;
            };
            // Asked again while the first request runs its course: the
            // escalation keeps its own clock.
            if stage == IdleStage::Asked && process.life().idle_exit().is_some() {
                continue;
            }
            let sent = match stage {
                IdleStage::Asked | IdleStage::Ignoring => process.ask_if_idle(now),
                IdleStage::Terminated => process.force_idle_exit(stage, Signal::SIGTERM, now),
                IdleStage::Killed => process.force_idle_exit(stage, Signal::SIGKILL, now),
            };
            match sent {
                Ok(()) => {
                    asked.push(pid);
                    tracing::debug!(service = name, pid, "asked an idle process to exit");
                }
                Err(error) => {
                    tracing::warn!(service = name, pid, %error, "cannot signal an idle process");
                }
            }
        }
        for pid in asked {
            self.observe(index, StatsEvent::IdleAsked(pid));
        }
    }

    /// Refreshes the gauges of the services the round visited: no other
    /// service changed since the last.
    pub(super) fn update_gauges(&self, visited: &std::collections::BTreeSet<usize>) {
        let states = visited.iter().filter_map(|&index| self.services.get(index));
        for state in states.filter(|s| s.runs) {
            let service = label(state.name());
            let count = i64::try_from(self.processes.count(state.place)).unwrap_or(i64::MAX);
            self.metrics.processes.get_or_create(&service).set(count);
            self.metrics
                .available_slots
                .get_or_create(&service)
                .set(i64::try_from(state.available_slots(&self.processes)).unwrap_or(i64::MAX));
            self.metrics
                .connections
                .get_or_create(&service)
                .set(i64::from(state.clients(&self.processes)));
        }
    }

    /// Logs that the service is at its limit (at most once a second) and
    /// counts `dropped` connections.
    pub(super) fn count_drops(&mut self, index: usize, dropped: u64, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let name = state.name().to_owned();
        state.dropped += dropped;
        if dropped > 0 {
            self.metrics
                .dropped
                .get_or_create(&label(&name))
                .inc_by(dropped);
        }
        // Drops and waits are each reported at most once a second.
        let last = if dropped > 0 {
            &mut state.last_drop_warning
        } else {
            &mut state.last_wait_warning
        };
        if last.is_none_or(|last| now.saturating_duration_since(last) >= DROP_WARNING_INTERVAL) {
            *last = Some(now);
            let limit = state.config.process_limit.value;
            if dropped > 0 {
                tracing::warn!(
                    service = name,
                    dropped,
                    "process_limit ({limit}) reached, connections are being dropped; raise service.{name}.process_limit or client_limit"
                );
            } else {
                tracing::warn!(
                    service = name,
                    "process_limit ({limit}) reached, connections wait up to process_limit_wait and are then dropped; raise service.{name}.process_limit or client_limit"
                );
                // Told as often as it is logged: at most once a second.
                self.observe(index, StatsEvent::Full);
            }
        }
    }
}
