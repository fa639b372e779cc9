//! How the master tracks its processes, end to end with the real binary:
//! failures throttle a service one step per event, and what a process
//! reports is bounded by its settings.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::{Running, probe};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn processes_failing_together_step_the_throttle_once() {
    // Five processes start in one round and fail at once, before they are
    // ready: one failure event, one throttle of 2s. The next burst, after
    // the throttle, doubles it once.
    let warden = Running::start(&format!(
        r#"
[service.broken]
executable = "{probe} exit 1"
process_min_avail = 5
"#,
        probe = probe().display()
    ));
    let throttles = |log: &str| -> Vec<String> {
        log.lines()
            .filter_map(|line| line.split("throttling: no new process for ").nth(1))
            .filter_map(|rest| rest.split(':').next())
            .map(str::to_owned)
            .collect()
    };
    warden.wait_for("the second burst's throttle", WAIT, || {
        throttles(&warden.log()).len() >= 2
    });
    let log = warden.log();
    let first_over = log.find("throttle over").expect("the first throttle ended");
    assert_eq!(
        throttles(log.get(..first_over).unwrap_or_default()),
        ["2s"],
        "the first burst stepped the throttle more than once:\n{log}"
    );
    assert_eq!(
        throttles(&log).get(1).map(String::as_str),
        Some("4s"),
        "{log}"
    );
    let exits = log
        .get(..first_over)
        .unwrap_or_default()
        .matches("process exited with status 1")
        .count();
    assert!(exits >= 2, "the burst was not several failures:\n{log}");
}

#[test]
fn a_report_above_client_limit_is_clamped_and_warned_about_once() {
    let warden = Running::start(&format!(
        r#"
[service.liar]
executable = "{probe} notify X_WARDEN_CLIENTS=4294967295"
type = "startup"
client_limit = 5
"#,
        probe = probe().display()
    ));
    warden.wait_for("the report", WAIT, || {
        warden.ps("liar").first().and_then(|p| p.clients) == Some(5)
    });
    let pid = warden.pids("liar")[0];
    // It says so twice more.
    for sent in 2..=3 {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGUSR1)
            .expect("signal the probe");
        warden.wait_for("the probe to report again", WAIT, || {
            warden.log().matches("notify=ok").count() >= sent
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    let log = warden.log();
    let warning = "process reported 4294967295 clients, more than its client_limit (5); counting 5";
    assert_eq!(log.matches(warning).count(), 1, "{log}");
    assert!(log.contains("raise service.liar.client_limit"), "{log}");
    assert_eq!(warden.ps("liar")[0].clients, Some(5));
    assert_eq!(warden.status("liar").clients, 5);
}
