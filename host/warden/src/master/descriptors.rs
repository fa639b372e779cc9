//! The master's descriptors: raising its limit at start, estimating how
//! many a configuration needs under full load, and warning when the limit
//! cannot hold them.
//!
//! The estimate counts what the master itself holds open:
//!
//! - every listener twice: the socket, and the copy an acceptor (`inetd`,
//!   `warden`) or a readiness watcher (`systemd`) polls; and a `systemd`
//!   service's notify socket;
//! - for the services warden accepts for, `process_limit × client_limit`
//!   connections: the `warden` interface keeps a duplicate of every
//!   connection it hands over, `inetd` holds the connections queued at
//!   `process_limit`;
//! - per process, up to `process_limit`: its pidfd and the exit watcher's
//!   copy, the read ends of its output pipes (an `inetd` process's stdout
//!   is its connection), and a native process's control channel with the
//!   reader's copy;
//! - a margin for warden itself: standard streams, the log file, the
//!   control and metrics sockets and their clients, the event loop, the
//!   plugins' files.
//!
//! A reload holds old and new descriptors side by side for a while, beyond
//! the estimate. The warning is advice, never an error: warden runs
//! anyway, and a descriptor it cannot get is logged where it was needed.

use warden_sys::limits::DescriptorLimit;

use crate::config::Interface;

/// Descriptors for warden itself, beyond its services.
const MARGIN: u64 = 64;

/// What one running service may ask of the master's descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServiceLoad {
    /// The service's name.
    pub name: String,
    /// How its processes get their connections.
    pub interface: Interface,
    /// Its open listeners.
    pub listeners: u64,
    /// `process_limit`.
    pub process_limit: u64,
    /// `process_limit × client_limit`.
    pub max_connections: u64,
}

impl ServiceLoad {
    /// The settings that size the service's part of the estimate.
    fn settings(&self) -> &'static str {
        match self.interface {
            Interface::Inetd | Interface::Warden => "process_limit or client_limit",
            Interface::Systemd | Interface::Dovecot => "process_limit",
        }
    }

    /// The descriptors the master holds for this service at full load.
    fn estimate(&self) -> Estimate {
        // Per listener, the socket and the copy that is polled.
        let mut listeners = self.listeners.saturating_mul(2);
        // Per process: the pidfd and the exit watcher's copy, then the
        // output pipes and the control channel.
        let per_process: u64 = match self.interface {
            // stdout, stderr. (`dovecot` is refused before anything runs.)
            Interface::Systemd | Interface::Dovecot => 2 + 2,
            // stderr only: stdout is the connection.
            Interface::Inetd => 2 + 1,
            // stdout, stderr, and the channel with the reader's copy.
            Interface::Warden => 2 + 2 + 2,
        };
        let connections = match self.interface {
            Interface::Inetd | Interface::Warden => self.max_connections,
            Interface::Systemd | Interface::Dovecot => {
                // The notify socket.
                listeners = listeners.saturating_add(1);
                0
            }
        };
        Estimate {
            listeners,
            connections,
            processes: self.process_limit.saturating_mul(per_process),
            margin: 0,
        }
    }
}

/// Descriptors the master may hold at once, by what they are for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Estimate {
    /// Listeners, their polled copies and notify sockets.
    pub listeners: u64,
    /// Connections warden holds for the services it accepts for.
    pub connections: u64,
    /// Each process's pidfd, output pipes and control channel.
    pub processes: u64,
    /// warden's own.
    pub margin: u64,
}

impl Estimate {
    /// All of them.
    pub(super) fn total(&self) -> u64 {
        self.listeners
            .saturating_add(self.connections)
            .saturating_add(self.processes)
            .saturating_add(self.margin)
    }

    fn add(self, other: Estimate) -> Estimate {
        Estimate {
            listeners: self.listeners.saturating_add(other.listeners),
            connections: self.connections.saturating_add(other.connections),
            processes: self.processes.saturating_add(other.processes),
            margin: self.margin.saturating_add(other.margin),
        }
    }
}

/// The descriptors the master may need with `services` at full load (see
/// the module's documentation for what is counted).
pub(super) fn estimate(services: &[ServiceLoad]) -> Estimate {
    services.iter().map(ServiceLoad::estimate).fold(
        Estimate {
            margin: MARGIN,
            ..Estimate::default()
        },
        Estimate::add,
    )
}

/// The warning to log when `limit` cannot hold what `services` may need:
/// the numbers, the service that needs the most, and how to raise the
/// limit; `None` when it can.
pub(super) fn shortfall(limit: DescriptorLimit, services: &[ServiceLoad]) -> Option<String> {
    let needed = estimate(services);
    let total = needed.total();
    if total <= limit.soft {
        return None;
    }
    let hard = if total > limit.hard {
        format!(
            " (its hard limit is {}, which only root can raise)",
            limit.hard
        )
    } else {
        String::new()
    };
    let largest = services
        .iter()
        .map(|service| (service.estimate().total(), service))
        .max_by_key(|(count, _)| *count)
        .map(|(count, service)| {
            format!(
                ", or lower {} of service {}, which needs {count}",
                service.settings(),
                service.name
            )
        })
        .unwrap_or_default();
    Some(format!(
        "the descriptor limit (RLIMIT_NOFILE) is {soft}, and this configuration may need {total} descriptors under full load ({listeners} for listeners, {connections} for connections warden holds, {processes} for processes, {margin} for warden itself); past the limit, connections are refused and processes cannot start. Raise it to {total} or more: LimitNOFILE={total} in warden's systemd unit, or ulimit -n {total} in the shell that starts warden{hard}{largest}",
        soft = limit.soft,
        listeners = needed.listeners,
        connections = needed.connections,
        processes = needed.processes,
        margin = needed.margin,
    ))
}

/// Raises the soft descriptor limit to the hard one, logging what was
/// done or why it could not be.
pub(super) fn raise_limit() {
    match warden_sys::limits::raise_descriptor_limit() {
        Ok((before, after)) if after.soft > before.soft => tracing::info!(
            "raised the descriptor limit (RLIMIT_NOFILE) from {} to its hard limit, {}",
            before.soft,
            after.soft
        ),
        Ok(_) => {}
        Err(error) => tracing::warn!(
            %error,
            "cannot raise the descriptor limit (RLIMIT_NOFILE) to its hard limit; warden keeps the one it was started with"
        ),
    }
}

/// Logs a warning when the descriptor limit in force cannot hold what
/// `services` may need.
pub(super) fn check_limit(services: &[ServiceLoad]) {
    match DescriptorLimit::current() {
        Ok(limit) => {
            if let Some(warning) = shortfall(limit, services) {
                tracing::warn!("{warning}");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot read the descriptor limit (RLIMIT_NOFILE)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        name: &str,
        interface: Interface,
        listeners: u64,
        processes: u64,
        clients: u64,
    ) -> ServiceLoad {
        ServiceLoad {
            name: name.to_owned(),
            interface,
            listeners,
            process_limit: processes,
            max_connections: processes * clients,
        }
    }

    #[test]
    fn the_estimate_counts_listeners_connections_processes_and_a_margin() {
        let services = [
            // Two listeners and a notify socket; 3 processes of 4.
            load("echo", Interface::Systemd, 2, 3, 100),
            // One listener; 10 processes of 3 and 10 queued connections.
            load("whoami", Interface::Inetd, 1, 10, 1),
            // One listener; 2 processes of 6 and 2 × 50 connections.
            load("login", Interface::Warden, 1, 2, 50),
        ];
        assert_eq!(
            estimate(&services),
            Estimate {
                listeners: 5 + 2 + 2,
                connections: 10 + 100,
                processes: 12 + 30 + 12,
                margin: MARGIN,
            }
        );
        assert_eq!(estimate(&services).total(), 9 + 110 + 54 + 64);
        assert_eq!(estimate(&[]).total(), MARGIN);
    }

    #[test]
    fn huge_limits_saturate_instead_of_overflowing() {
        let service = load("imap-login", Interface::Warden, 1, u64::MAX, 1);
        assert_eq!(estimate(&[service]).total(), u64::MAX);
    }

    #[test]
    fn the_warning_gives_the_numbers_and_the_fix_only_when_short() {
        let services = [
            load("echo", Interface::Systemd, 1, 1, 1),
            load("imap-login", Interface::Warden, 1, 100, 10),
        ];
        let total = estimate(&services).total();
        let roomy = DescriptorLimit {
            soft: total,
            hard: total,
        };
        assert_eq!(shortfall(roomy, &services), None);

        let short = DescriptorLimit {
            soft: 64,
            hard: 512,
        };
        let warning = shortfall(short, &services).expect("a warning");
        assert!(
            warning.starts_with(&format!(
                "the descriptor limit (RLIMIT_NOFILE) is 64, and this configuration may need {total} descriptors under full load"
            )),
            "{warning}"
        );
        assert!(
            warning.contains(&format!("LimitNOFILE={total}")),
            "{warning}"
        );
        assert!(warning.contains(&format!("ulimit -n {total}")), "{warning}");
        assert!(
            warning.contains("its hard limit is 512, which only root can raise"),
            "{warning}"
        );
        assert!(
            warning.contains(
                "lower process_limit or client_limit of service imap-login, which needs 1602"
            ),
            "{warning}"
        );
    }
}
