//! How `warden top` draws the [`Model`]: a full-screen frame on a
//! terminal, or plain text for a pipe or a file.

use std::fmt::Write as _;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row as TableRow, Table, TableState};

use super::model::{Model, Row};

/// The columns of the service table, with the width of each.
const SERVICE_COLUMNS: [(&str, u16); 10] = [
    ("SERVICE", 18),
    ("PROCS", 9),
    ("AVAIL", 6),
    ("CLIENTS", 8),
    ("CONN/s", 8),
    ("SPAWN/s", 8),
    ("EXIT/s", 7),
    ("DROPS", 6),
    ("STATE", 22),
    ("CONN/s, LAST MINUTE", 20),
];

/// The columns of the selected service's processes.
const PROCESS_COLUMNS: [(&str, u16); 4] = [("PID", 8), ("AGE", 8), ("CLIENTS", 8), ("STATE", 14)];

/// The columns of the hooks of the plugins that apply to the selected
/// service.
const HOOK_COLUMNS: [(&str, u16); 7] = [
    ("PLUGIN", 14),
    ("HOOK", 10),
    ("CALLS", 9),
    ("MEAN µs", 8),
    ("P99 ≤ µs", 9),
    ("FAILED", 7),
    ("QUARANTINED", 11),
];

/// The glyphs of a sparkline, lowest to highest.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A rate as the table shows it: a whole number from 10 up, one decimal
/// below.
fn per_second(rate: f64) -> String {
    if rate >= 10.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

/// The last `width` rates of `row` as a sparkline scaled to their highest.
fn sparkline(row: &Row, width: usize) -> String {
    let skip = row.history.len().saturating_sub(width);
    let shown: Vec<f64> = row.history.iter().skip(skip).copied().collect();
    let highest = shown.iter().copied().fold(0.0_f64, f64::max);
    shown
        .iter()
        .map(|&rate| {
            if highest <= 0.0 {
                return BARS[0];
            }
            // 0 to 7: the glyph for the rate's share of the highest.
            let step = ((rate / highest) * 7.0).round().clamp(0.0, 7.0);
            BARS.get(step as usize).copied().unwrap_or(BARS[0])
        })
        .collect()
}

/// The cells of one service's row, in [`SERVICE_COLUMNS`] order.
fn service_cells(row: &Row) -> [String; 10] {
    let status = &row.status;
    [
        status.name.clone(),
        format!("{}/{}", status.processes, status.process_limit),
        status.available.to_string(),
        status.clients.to_string(),
        per_second(row.connections),
        per_second(row.spawns),
        per_second(row.exits),
        status.dropped.to_string(),
        status.state(),
        sparkline(row, 20),
    ]
}

/// The header line: what is shown and the keys.
fn header(model: &Model) -> String {
    match &model.problem {
        Some(problem) => format!("warden top: {problem}; retrying"),
        None => {
            let services = model.rows().len();
            let plural = if services == 1 { "" } else { "s" };
            format!(
                "warden top: {services} service{plural}, sorted by {} — ↑↓ select, s sort, q quit",
                model.sort.name()
            )
        }
    }
}

/// Draws the whole view into `frame`: the header, the services, and the
/// selected service's processes and plugin hooks.
pub fn draw(frame: &mut Frame<'_>, model: &Model) {
    let rows = model.rows();
    let services_height = u16::try_from(rows.len())
        .unwrap_or(u16::MAX)
        .saturating_add(3);
    let [top, services, details] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Max(services_height),
        Constraint::Min(6),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header(model)), top);

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let table = Table::new(
        rows.iter().map(|row| {
            let style = if row.status.throttled_ms.is_some() || row.status.given_up.is_some() {
                Style::new().fg(Color::Red)
            } else if row.saturation() >= 0.9 {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            };
            TableRow::new(service_cells(row).map(Cell::from)).style(style)
        }),
        lengths(&SERVICE_COLUMNS),
    )
    .header(TableRow::new(SERVICE_COLUMNS.map(|(name, _)| name)).style(bold))
    .block(Block::bordered().title("services"))
    .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = TableState::new().with_selected(model.selected_place());
    frame.render_stateful_widget(table, services, &mut state);

    let [processes, hooks] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(details);
    let selected = model.selected().unwrap_or("");
    let process_table = Table::new(
        model
            .processes
            .iter()
            .map(|p| TableRow::new(process_cells(p))),
        lengths(&PROCESS_COLUMNS),
    )
    .header(TableRow::new(PROCESS_COLUMNS.map(|(name, _)| name)).style(bold))
    .block(Block::bordered().title(format!("{selected}: processes")));
    frame.render_widget(process_table, processes);

    let hook_table = Table::new(
        model.hooks.iter().map(|h| {
            let row = TableRow::new(hook_cells(h));
            if h.quarantined {
                row.style(Style::new().fg(Color::Red))
            } else {
                row
            }
        }),
        lengths(&HOOK_COLUMNS),
    )
    .header(TableRow::new(HOOK_COLUMNS.map(|(name, _)| name)).style(bold))
    .block(Block::bordered().title(Line::from(format!(
        "{selected}: plugin hooks, slowest first"
    ))));
    frame.render_widget(hook_table, hooks);
}

/// Each column's width, the last taking what is left.
fn lengths<const N: usize>(columns: &[(&str, u16); N]) -> [Constraint; N] {
    let mut lengths = columns.map(|(_, width)| Constraint::Length(width));
    if let (Some(last), Some((_, width))) = (lengths.last_mut(), columns.last()) {
        *last = Constraint::Min(*width);
    }
    lengths
}

/// The cells of one process's row.
fn process_cells(process: &crate::control::ProcessStatus) -> [String; 4] {
    [
        process.pid.to_string(),
        format!("{}s", process.age_secs),
        process.clients.map_or("-".to_owned(), |c| c.to_string()),
        process.state.clone(),
    ]
}

/// The cells of one hook's row.
fn hook_cells(row: &super::model::HookRow) -> [String; 7] {
    [
        row.plugin.clone(),
        row.status.hook.clone(),
        row.status.calls.to_string(),
        row.status.mean_us.to_string(),
        row.status
            .p99_at_most_us
            .map_or_else(|| "over 100000".to_owned(), |us| us.to_string()),
        row.status.failures.to_string(),
        if row.quarantined { "yes" } else { "no" }.to_owned(),
    ]
}

/// The view as plain text: the header, the services table, and the
/// selected service's processes and plugin hooks.
pub fn text(model: &Model) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", header(model));
    let line = |out: &mut String, cells: &[String], widths: &[u16]| {
        let cells: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, &width)| format!("{cell:<width$}", width = usize::from(width)))
            .collect();
        let _ = writeln!(out, "{}", cells.join(" ").trim_end());
    };
    let widths = SERVICE_COLUMNS.map(|(_, width)| width);
    line(
        &mut out,
        &SERVICE_COLUMNS.map(|(name, _)| name.to_owned()),
        &widths,
    );
    for row in model.rows() {
        line(&mut out, &service_cells(row), &widths);
    }
    if let Some(selected) = model.selected() {
        let _ = writeln!(out, "\n{selected}: processes");
        let widths = PROCESS_COLUMNS.map(|(_, width)| width);
        line(
            &mut out,
            &PROCESS_COLUMNS.map(|(name, _)| name.to_owned()),
            &widths,
        );
        for p in &model.processes {
            line(&mut out, &process_cells(p), &widths);
        }
        let _ = writeln!(out, "\n{selected}: plugin hooks, slowest first");
        let widths = HOOK_COLUMNS.map(|(_, width)| width);
        line(
            &mut out,
            &HOOK_COLUMNS.map(|(name, _)| name.to_owned()),
            &widths,
        );
        for h in &model.hooks {
            line(&mut out, &hook_cells(h), &widths);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn a_sparkline_scales_to_its_highest_rate() {
        let row = Row {
            status: crate::control::ServiceStatus {
                name: "imap".to_owned(),
                runs: true,
                processes: 0,
                process_limit: 1,
                available: 0,
                stopped: false,
                clients: 0,
                listening: false,
                throttled_ms: None,
                throttle_reason: None,
                last_exits: Vec::new(),
                given_up: None,
                spawns: 0,
                exits: 0,
                connections: 0,
                dropped: 0,
            },
            connections: 0.0,
            spawns: 0.0,
            exits: 0.0,
            history: VecDeque::from([0.0, 7.0, 14.0, 3.5]),
        };
        assert_eq!(sparkline(&row, 20), "▁▅█▃");
        assert_eq!(sparkline(&row, 2), "█▃", "the newest rates");
        assert_eq!(per_second(0.24), "0.2");
        assert_eq!(per_second(123.4), "123");
    }
}
