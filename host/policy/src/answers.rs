//! Every limit warden puts on a plugin's answers, and the checks that
//! enforce them, in one place. `wit/policy.wit` states each limit next to
//! the field it bounds; a change here is a change of the contract.
//!
//! An answer that fails its check is the plugin's failure: it is logged
//! and counted, and the question passes to the next plugin in the chain.

use crate::bindings::exports::warden::policy::defaults as wit_defaults;
use crate::bindings::exports::warden::policy::stats as wit_stats;
use crate::bindings::exports::warden::policy::{admission, idle, lifecycle, typing};
use crate::decide::{
    Admission, ClientType, ConnectionView, IdleAction, Lifecycle, Millis, ProcessView,
};
use crate::stats::{Metric, MetricKind};

/// The longest client type name, and the longest admission reject reason.
pub const MAX_TYPE_NAME: usize = 64;

/// The longest throttle a `lifecycle` answer may ask for: a day.
pub const MAX_THROTTLE_MS: Millis = 24 * 3600 * 1000;

/// The longest reason a `lifecycle` answer may give for giving up.
pub const MAX_REASON: usize = 1024;

/// The longest delay an `admission` answer may ask for.
pub const MAX_DELAY_MS: Millis = 10_000;

/// The longest name or path a `defaults` answer may supply.
pub const MAX_TEXT: usize = 256;

/// The most listeners, and the most extra groups, a `defaults` answer may
/// supply for one service.
pub const MAX_ITEMS: usize = 64;

/// The most metrics one plugin may declare.
pub const MAX_METRICS: usize = 64;

/// The most labels one metric may have.
pub const MAX_LABELS: usize = 8;

/// The most samples one `report` answer may hold.
pub const MAX_SAMPLES: usize = 10_000;

/// The longest metric help text or label value.
pub const MAX_METRIC_TEXT: usize = 256;

/// The most histogram series the plugins may have together; a report
/// inventing more label values has its new series left out.
pub const MAX_SERIES: usize = 10_000;

/// Checks a `scaling` answer: no more than `process_limit`.
pub(crate) fn scaling(count: u32, process_limit: u32) -> Result<u32, String> {
    if count <= process_limit {
        Ok(count)
    } else {
        Err(format!(
            "start {count} processes, more than process_limit ({process_limit})"
        ))
    }
}

/// Checks a typing answer: a short name of letters, digits, `-`, `_`, `.`.
pub(crate) fn typing(answer: typing::ClientType) -> Result<ClientType, String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if answer.name.is_empty() || answer.name.len() > MAX_TYPE_NAME || !answer.name.chars().all(fine)
    {
        return Err(format!(
            "the client type {:?}; a type is 1 to {MAX_TYPE_NAME} letters, digits, '-', '_' or '.'",
            answer.name
        ));
    }
    Ok(ClientType {
        name: answer.name,
        restricted_to_uid: answer.restricted_to_uid,
    })
}

/// Checks an admission answer: a reject reason that is a short word (it
/// becomes a metric label), a delay of at most ten seconds.
pub(crate) fn admission(verdict: admission::Verdict) -> Result<Admission, String> {
    match verdict {
        admission::Verdict::Accept => Ok(Admission::Accept),
        admission::Verdict::Reject(reason) => {
            let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
            if reason.is_empty() || reason.len() > MAX_TYPE_NAME || !reason.chars().all(fine) {
                Err(format!(
                    "the reject reason {reason:?}; a reason is 1 to {MAX_TYPE_NAME} letters, digits, '-' or '_'"
                ))
            } else {
                Ok(Admission::Reject(reason))
            }
        }
        admission::Verdict::Delay(ms) if ms <= MAX_DELAY_MS => Ok(Admission::Delay(ms)),
        admission::Verdict::Delay(ms) => Err(format!("a delay of {ms} ms, longer than 10 s")),
    }
}

/// Checks an eviction answer: ids among the candidates, each once.
pub(crate) fn eviction(candidates: &[ConnectionView], ids: Vec<u64>) -> Result<Vec<u64>, String> {
    if ids.len() > candidates.len() {
        return Err(format!(
            "{} victims for {} candidates",
            ids.len(),
            candidates.len()
        ));
    }
    for (place, id) in ids.iter().enumerate() {
        if !candidates.iter().any(|c| c.id == *id) {
            return Err(format!("connection {id}, which is not a candidate"));
        }
        if ids.get(..place).is_some_and(|before| before.contains(id)) {
            return Err(format!("connection {id} twice"));
        }
    }
    Ok(ids)
}

/// Checks a lifecycle answer: a throttle of at most a day, a bounded reason.
pub(crate) fn lifecycle(decision: lifecycle::Decision) -> Result<Lifecycle, String> {
    match decision {
        lifecycle::Decision::Restart => Ok(Lifecycle::Continue),
        lifecycle::Decision::RestartAfter(ms) if ms <= MAX_THROTTLE_MS => {
            Ok(Lifecycle::Throttle { ms })
        }
        lifecycle::Decision::RestartAfter(ms) => {
            Err(format!("a throttle of {ms} ms, longer than a day"))
        }
        lifecycle::Decision::GiveUp(reason) if reason.len() <= MAX_REASON => {
            Ok(Lifecycle::GiveUp { reason })
        }
        lifecycle::Decision::GiveUp(reason) => Err(format!(
            "a reason of {} bytes, more than {MAX_REASON}",
            reason.len()
        )),
    }
}

/// Checks an idle answer: every pid among those offered, each named once.
pub(crate) fn idle(
    processes: &[ProcessView],
    actions: Vec<idle::Action>,
) -> Result<Vec<IdleAction>, String> {
    if actions.len() > processes.len() {
        return Err(format!(
            "{} actions for {} processes",
            actions.len(),
            processes.len()
        ));
    }
    let mut checked: Vec<IdleAction> = Vec::with_capacity(actions.len());
    for action in actions {
        let (pid, action) = match action {
            idle::Action::AskToExit(pid) => (pid, IdleAction::AskToExit(pid)),
            idle::Action::Terminate(pid) => (pid, IdleAction::Terminate(pid)),
            idle::Action::Kill(pid) => (pid, IdleAction::Kill(pid)),
        };
        if !processes.iter().any(|p| p.pid == pid) {
            return Err(format!(
                "pid {pid}, which is not one of the service's processes"
            ));
        }
        if checked.iter().any(|done| idle_pid(*done) == pid) {
            return Err(format!("pid {pid} twice"));
        }
        checked.push(action);
    }
    Ok(checked)
}

fn idle_pid(action: IdleAction) -> u32 {
    match action {
        IdleAction::AskToExit(pid) | IdleAction::Terminate(pid) | IdleAction::Kill(pid) => pid,
    }
}

/// Checks a `defaults` answer: bounded names, paths inside `base_dir`,
/// modes that are modes, limits of at least one.
pub(crate) fn defaults(settings: &wit_defaults::Settings) -> Result<(), String> {
    let names = [
        ("protocol", settings.protocol.as_deref()),
        ("user", settings.user.as_deref()),
        ("group", settings.group.as_deref()),
    ];
    for (what, name) in names {
        if let Some(name) = name {
            check_name(what, name)?;
        }
    }
    if let Some(groups) = &settings.extra_groups {
        if groups.len() > MAX_ITEMS {
            return Err(format!(
                "{} extra_groups, more than {MAX_ITEMS}",
                groups.len()
            ));
        }
        for group in groups {
            check_name("extra_groups", group)?;
        }
    }
    if let Some(chroot) = &settings.chroot
        && !chroot.is_empty()
    {
        check_path("chroot", chroot)?;
    }
    for (what, limit) in [
        ("client_limit", settings.client_limit),
        ("process_limit", settings.process_limit),
    ] {
        if limit == Some(0) {
            return Err(format!("{what} 0; a supplied limit must be at least 1"));
        }
    }
    let listeners = settings.unix_listeners.len() + settings.inet_listeners.len();
    if listeners > MAX_ITEMS {
        return Err(format!("{listeners} listeners, more than {MAX_ITEMS}"));
    }
    for listener in &settings.unix_listeners {
        check_path("unix listener path", &listener.path)?;
        if listener.mode > 0o777 {
            return Err(format!(
                "mode {:o} for {}, which is not a file mode",
                listener.mode, listener.path
            ));
        }
        check_name("unix listener user", &listener.user)?;
        check_name("unix listener group", &listener.group)?;
        check_name("unix listener type", &listener.listener_type)?;
    }
    for listener in &settings.inet_listeners {
        if listener.name.is_empty() {
            return Err("an inet listener without a name".to_owned());
        }
        check_name("inet listener name", &listener.name)?;
    }
    Ok(())
}

/// A name: bounded, printable, no spaces.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_TEXT {
        return Err(format!(
            "a {what} of {} bytes, more than {MAX_TEXT}",
            name.len()
        ));
    }
    if let Some(bad) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} {name:?}, which holds {bad:?}"));
    }
    Ok(())
}

/// A path relative to `base_dir` that stays inside it.
fn check_path(what: &str, path: &str) -> Result<(), String> {
    check_name(what, path)?;
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(format!(
            "{what} {path:?}; it must be a relative path inside base_dir"
        ));
    }
    Ok(())
}

/// Whether `name` is `[a-z_][a-z0-9_]*` and at most 64 bytes.
fn metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    // `__` starts the names Prometheus reserves for itself.
    name.len() <= 64
        && !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Checks a `declare` answer.
pub(crate) fn declared(metrics: Vec<wit_stats::Metric>) -> Result<Vec<Metric>, String> {
    if metrics.len() > MAX_METRICS {
        return Err(format!(
            "{} metrics, more than {MAX_METRICS}",
            metrics.len()
        ));
    }
    let mut checked: Vec<Metric> = Vec::with_capacity(metrics.len());
    for metric in metrics {
        if !metric_name(&metric.name) {
            return Err(format!(
                "the metric name {:?}; names are [a-z_][a-z0-9_]*, not starting with __, at most 64 bytes",
                metric.name
            ));
        }
        if checked.iter().any(|m| m.name == metric.name) {
            return Err(format!("the metric {} twice", metric.name));
        }
        if metric.help.len() > MAX_METRIC_TEXT || metric.help.contains('\n') {
            return Err(format!(
                "help for {} that is not one line of at most {MAX_METRIC_TEXT} bytes",
                metric.name
            ));
        }
        let repeated = metric.labels.iter().enumerate().any(|(place, label)| {
            metric
                .labels
                .get(..place)
                .is_some_and(|b| b.contains(label))
        });
        let reserved = metric.labels.iter().any(|l| l == "quantile" || l == "le");
        if metric.labels.len() > MAX_LABELS
            || !metric.labels.iter().all(|l| metric_name(l))
            || repeated
            || reserved
        {
            return Err(format!(
                "labels {:?} for {}; at most {MAX_LABELS}, each [a-z_][a-z0-9_]* (not starting with __) once, not quantile or le",
                metric.labels, metric.name
            ));
        }
        checked.push(Metric {
            name: metric.name,
            help: metric.help,
            kind: match metric.kind {
                wit_stats::MetricKind::Counter => MetricKind::Counter,
                wit_stats::MetricKind::Gauge => MetricKind::Gauge,
                wit_stats::MetricKind::Histogram => MetricKind::Histogram,
            },
            labels: metric.labels,
        });
    }
    Ok(checked)
}

/// Checks a `report` answer against the declarations: each sample of a
/// declared metric, with its labels, and a finite value.
pub(crate) fn samples(
    declared: &[Metric],
    samples: Vec<wit_stats::Sample>,
) -> Result<Vec<(usize, Vec<String>, f64)>, String> {
    if samples.len() > MAX_SAMPLES {
        return Err(format!(
            "{} samples, more than {MAX_SAMPLES}",
            samples.len()
        ));
    }
    samples
        .into_iter()
        .map(|sample| {
            let index = declared
                .iter()
                .position(|m| m.name == sample.metric)
                .ok_or_else(|| {
                    format!("a sample of {:?}, which it did not declare", sample.metric)
                })?;
            let expected = declared.get(index).map_or(0, |m| m.labels.len());
            if sample.labels.len() != expected {
                return Err(format!(
                    "{} label values for {}, which has {expected} labels",
                    sample.labels.len(),
                    sample.metric
                ));
            }
            if sample.labels.iter().any(|l| l.len() > MAX_METRIC_TEXT) {
                return Err(format!(
                    "a label value of {} longer than {MAX_METRIC_TEXT} bytes",
                    sample.metric
                ));
            }
            if !sample.value.is_finite() {
                return Err(format!("the value {} for {}", sample.value, sample.metric));
            }
            let counter = declared
                .get(index)
                .is_some_and(|m| m.kind == MetricKind::Counter);
            if counter && sample.value < 0.0 {
                return Err(format!(
                    "the negative value {} for the counter {}",
                    sample.value, sample.metric
                ));
            }
            Ok((index, sample.labels, sample.value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_prometheus_reserves_and_negative_counters_are_refused() {
        assert!(!metric_name("__name"));
        assert!(metric_name("_private"));
        assert!(metric_name("logins_total"));
        let declared = vec![Metric {
            name: "logins".to_owned(),
            help: String::new(),
            kind: MetricKind::Counter,
            labels: Vec::new(),
        }];
        let sample = |value| wit_stats::Sample {
            metric: "logins".to_owned(),
            labels: Vec::new(),
            value,
        };
        let refused = samples(&declared, vec![sample(-1.0)]).expect_err("a negative counter");
        assert!(refused.contains("negative"), "{refused}");
        assert!(samples(&declared, vec![sample(3.0)]).is_ok());
    }
}
