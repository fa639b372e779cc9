//! What `contrib/` ships for operators holds against a running warden:
//! the Grafana dashboard and the Prometheus alert rules use only metrics
//! the metrics page of a running warden has.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use warden::control::{Request, Response};
use warden_tests::{LineClient, Running, echo, free_port, whoami};

/// Every `warden_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("warden_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        // A word that merely contains the prefix (`my_warden_x`) is not
        // a metric.
        let before = rest[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Whether the metrics page `page` has `name`: a family it declares, a
/// counter's `_total` samples, or a histogram's `_bucket`, `_sum` and
/// `_count`.
fn exposes(page: &str, name: &str) -> bool {
    let declared = |family: &str| {
        page.lines().any(|line| {
            line.strip_prefix("# TYPE ")
                .is_some_and(|rest| rest.split(' ').next() == Some(family))
        })
    };
    let histogram = |family: &str| page.contains(&format!("# TYPE {family} histogram"));
    declared(name)
        || name
            .strip_suffix("_total")
            .is_some_and(|family| page.contains(&format!("# TYPE {family} counter")))
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| name.strip_suffix(suffix).is_some_and(histogram))
}

#[test]
fn the_dashboard_and_the_alert_rules_use_only_metrics_warden_serves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/grafana");
    let dashboard = std::fs::read_to_string(root.join("warden.json")).expect("the dashboard");
    let parsed: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = parsed["panels"].as_array().expect("panels");
    assert!(
        panels
            .iter()
            .all(|panel| panel["targets"].as_array().is_some_and(|t| !t.is_empty())),
        "every panel queries something"
    );
    let alerts = std::fs::read_to_string(root.join("warden-alerts.yml")).expect("the alert rules");
    let mut used = metric_names(&dashboard);
    let alert_names = metric_names(&alerts);
    assert!(
        !alert_names.is_empty(),
        "the alert rules query warden's metrics"
    );
    used.extend(alert_names);

    // A service whose series exist from its start, and one that refuses
    // a connection (a malformed PROXY header), whose refusals are labelled
    // by the reason that comes with the first.
    let (port, proxied) = (free_port(), free_port());
    let warden = Running::start(&format!(
        "haproxy_trusted_networks = \"127.0.0.0/8\"\n\n\
         [service.echo]\nexecutable = {echo:?}\nprocess_min_avail = 1\n\n\
         [[service.echo.inet_listener]]\nname = \"echo\"\naddress = \"127.0.0.1\"\nport = {port}\n\n\
         [service.whoami]\nexecutable = {whoami:?}\ninterface = \"inetd\"\n\n\
         [[service.whoami.inet_listener]]\nname = \"proxied\"\naddress = \"127.0.0.1\"\n\
         port = {proxied}\nhaproxy = true\n",
        echo = echo().display().to_string(),
        whoami = whoami().display().to_string(),
    ));
    warden.wait_for("the echo process", Duration::from_secs(20), || {
        warden.pids("echo").len() == 1
    });
    let mut refused = LineClient::connect(proxied).expect("connect");
    refused.send("NOT A PROXY HEADER").expect("send");
    assert_eq!(refused.line().ok().flatten(), None, "refused");
    warden.wait_for("the refusal counted", Duration::from_secs(20), || {
        matches!(
            warden.request(&Request::Stats),
            Response::Stats { text } if text.contains("warden_rejected_connections_total{")
        )
    });
    let Response::Stats { text: page } = warden.request(&Request::Stats) else {
        panic!("no metrics");
    };
    let missing: Vec<&String> = used.iter().filter(|name| !exposes(&page, name)).collect();
    assert!(
        missing.is_empty(),
        "contrib/grafana uses metrics warden does not serve: {missing:?}\nthe page:\n{page}"
    );
}

#[test]
fn metric_names_are_found_whole() {
    let names = metric_names("rate(warden_spawns_total{a=\"b\"}[1m]) / my_warden_x warden_up");
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["warden_spawns_total", "warden_up"]
    );
}
