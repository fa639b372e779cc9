//! What `warden top` shows, built from the master's answers: each
//! service's state with its rates, worked out from the counters of two
//! answers a refresh apart, the selection and the sort order.

use std::collections::VecDeque;
use std::time::Instant;

use crate::control::{HookStatus, PluginStatus, ProcessStatus, ServiceStatus};

/// How many refreshes of connection rates a service's sparkline keeps.
pub const HISTORY: usize = 60;

/// The order of the service rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// As the configuration lists them.
    #[default]
    Configured,
    /// Busiest first: connections per second.
    Connections,
    /// Most clients first.
    Clients,
    /// Nearest its `process_limit` first.
    Saturation,
}

impl Sort {
    /// The next order, for the key that cycles them.
    pub fn next(self) -> Sort {
        match self {
            Sort::Configured => Sort::Connections,
            Sort::Connections => Sort::Clients,
            Sort::Clients => Sort::Saturation,
            Sort::Saturation => Sort::Configured,
        }
    }

    /// Its name, as the header shows it.
    pub fn name(self) -> &'static str {
        match self {
            Sort::Configured => "configured",
            Sort::Connections => "conn/s",
            Sort::Clients => "clients",
            Sort::Saturation => "saturation",
        }
    }
}

/// Events per second, from two readings of a counter `seconds` apart. A
/// counter that went down was set up afresh (a reload): what it counts
/// now all came since.
fn rate(before: u64, now: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    let rise = if now >= before { now - before } else { now };
    // A count per refresh is far below 2^52: exact in an f64.
    rise as f64 / seconds
}

/// One hook of a plugin, as the selected service's panel shows it.
#[derive(Debug, Clone)]
pub struct HookRow {
    /// The plugin.
    pub plugin: String,
    /// Whether the plugin is quarantined.
    pub quarantined: bool,
    /// The hook's calls.
    pub status: HookStatus,
}

/// One service's row.
#[derive(Debug, Clone)]
pub struct Row {
    /// The master's latest answer for it.
    pub status: ServiceStatus,
    /// Connections per second since the last refresh.
    pub connections: f64,
    /// Processes started per second.
    pub spawns: f64,
    /// Processes ended per second.
    pub exits: f64,
    /// Connections per second at each of the last [`HISTORY`] refreshes,
    /// oldest first.
    pub history: VecDeque<f64>,
}

impl Row {
    /// Processes over `process_limit`, 0 to 1.
    pub fn saturation(&self) -> f64 {
        if self.status.process_limit == 0 {
            return 0.0;
        }
        f64::from(self.status.processes) / f64::from(self.status.process_limit)
    }
}

/// The whole view.
#[derive(Debug, Default)]
pub struct Model {
    /// One row per service, in configuration order.
    rows: Vec<Row>,
    /// When the rows were last read.
    read_at: Option<Instant>,
    /// The selected service, by name.
    selected: Option<String>,
    /// The order rows are shown in.
    pub sort: Sort,
    /// The selected service's processes.
    pub processes: Vec<ProcessStatus>,
    /// The hooks called of the plugins that apply to the selected
    /// service, slowest first.
    pub hooks: Vec<HookRow>,
    /// Why the last refresh failed, if it did.
    pub problem: Option<String>,
}

impl Model {
    /// Takes the master's answer read at `at`, working out each service's
    /// rates against the previous one.
    pub fn services(&mut self, services: Vec<ServiceStatus>, at: Instant) {
        let seconds = self.read_at.map_or(0.0, |before| {
            at.saturating_duration_since(before).as_secs_f64()
        });
        let mut rows = Vec::with_capacity(services.len());
        for status in services {
            let before = self.rows.iter().find(|r| r.status.name == status.name);
            let (connections, spawns, exits, mut history) = match before {
                Some(before) => (
                    rate(before.status.connections, status.connections, seconds),
                    rate(before.status.spawns, status.spawns, seconds),
                    rate(before.status.exits, status.exits, seconds),
                    before.history.clone(),
                ),
                None => (0.0, 0.0, 0.0, VecDeque::new()),
            };
            if before.is_some() {
                history.push_back(connections);
                while history.len() > HISTORY {
                    history.pop_front();
                }
            }
            rows.push(Row {
                status,
                connections,
                spawns,
                exits,
                history,
            });
        }
        self.rows = rows;
        self.read_at = Some(at);
        let known = self
            .selected
            .as_ref()
            .is_some_and(|name| self.rows.iter().any(|r| &r.status.name == name));
        if !known {
            self.selected = self.rows.first().map(|r| r.status.name.clone());
        }
    }

    /// Takes the plugins the master has loaded: the hooks called of
    /// those that apply to the selected service, slowest (by p99, then
    /// mean) first.
    pub fn plugins(&mut self, plugins: Vec<PluginStatus>) {
        let selected = self.selected.clone().unwrap_or_default();
        self.hooks = plugins
            .into_iter()
            .filter(|p| {
                p.services
                    .iter()
                    .any(|glob| warden_policy::runtime::glob_matches(glob, &selected))
            })
            .flat_map(|p| {
                let (plugin, quarantined) = (p.name, p.quarantined);
                p.hook_times.into_iter().map(move |status| HookRow {
                    plugin: plugin.clone(),
                    quarantined,
                    status,
                })
            })
            .collect();
        // Beyond the last bound (`None`) is slowest.
        let p99 = |row: &HookRow| row.status.p99_at_most_us.unwrap_or(u64::MAX);
        self.hooks.sort_by(|a, b| {
            p99(b)
                .cmp(&p99(a))
                .then(b.status.mean_us.cmp(&a.status.mean_us))
        });
    }

    /// The rows in the chosen order.
    pub fn rows(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        match self.sort {
            Sort::Configured => {}
            Sort::Connections => rows.sort_by(|a, b| b.connections.total_cmp(&a.connections)),
            Sort::Clients => rows.sort_by_key(|r| std::cmp::Reverse(r.status.clients)),
            Sort::Saturation => rows.sort_by(|a, b| b.saturation().total_cmp(&a.saturation())),
        }
        rows
    }

    /// The selected service's name.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The selected row's place in [`Model::rows`].
    pub fn selected_place(&self) -> Option<usize> {
        let selected = self.selected.as_deref()?;
        self.rows().iter().position(|r| r.status.name == selected)
    }

    /// Selects the row `by` places below the selected one (above, when
    /// negative), stopping at the first and the last.
    pub fn move_selection(&mut self, by: isize) {
        let rows = self.rows();
        let Some(last) = rows.len().checked_sub(1) else {
            return;
        };
        let place = self.selected_place().unwrap_or(0);
        let next = place.saturating_add_signed(by).min(last);
        self.selected = rows.get(next).map(|r| r.status.name.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn service(name: &str, connections: u64, spawns: u64) -> ServiceStatus {
        ServiceStatus {
            name: name.to_owned(),
            runs: true,
            processes: 2,
            process_limit: 10,
            available: 1,
            stopped: false,
            clients: 3,
            listening: false,
            throttled_ms: None,
            throttle_reason: None,
            last_exits: Vec::new(),
            given_up: None,
            spawns,
            exits: spawns,
            connections,
            dropped: 0,
        }
    }

    #[test]
    fn rates_come_from_two_answers_and_a_reset_counts_from_zero() {
        let mut model = Model::default();
        let start = Instant::now();
        model.services(vec![service("imap", 100, 10)], start);
        assert_eq!(model.rows()[0].connections, 0.0, "one answer has no rate");
        model.services(
            vec![service("imap", 150, 14)],
            start + Duration::from_secs(2),
        );
        assert_eq!(model.rows()[0].connections, 25.0);
        assert_eq!(model.rows()[0].spawns, 2.0);
        // A reload set the service up afresh: its counter restarted.
        model.services(vec![service("imap", 6, 1)], start + Duration::from_secs(3));
        assert_eq!(model.rows()[0].connections, 6.0);
        assert_eq!(
            model.rows()[0].history,
            [25.0, 6.0],
            "the sparkline's history"
        );
    }

    #[test]
    fn the_selection_follows_the_service_through_sorting_and_stops_at_the_ends() {
        let mut model = Model::default();
        let start = Instant::now();
        let services =
            |quiet: u64, busy: u64| vec![service("quiet", quiet, 0), service("busy", busy, 0)];
        model.services(services(0, 0), start);
        model.services(services(1, 50), start + Duration::from_secs(1));
        assert_eq!(model.selected(), Some("quiet"));
        model.move_selection(-1);
        assert_eq!(model.selected(), Some("quiet"), "no row above the first");
        model.sort = model.sort.next();
        assert_eq!(model.sort, Sort::Connections);
        assert_eq!(model.selected_place(), Some(1), "busy sorts first");
        model.move_selection(5);
        assert_eq!(model.selected(), Some("quiet"), "no row below the last");
        model.move_selection(-1);
        assert_eq!(model.selected(), Some("busy"));
    }
}
