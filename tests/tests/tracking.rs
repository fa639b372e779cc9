//! How the master tracks its processes, end to end with the real binary:
//! failures throttle a service one step per event, and what a process
//! reports is bounded by its settings.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::{LineClient, Running, echo, free_port, probe};

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

fn echo_service(name: &str, port: u16, settings: &str) -> String {
    format!(
        r#"
[service.{name}]
executable = {executable:?}
{settings}

[[service.{name}.inet_listener]]
name = "{name}"
address = "127.0.0.1"
port = {port}
"#,
        executable = echo().display().to_string()
    )
}

#[test]
fn a_process_keeps_reporting_to_warden_across_reloads() {
    let port = free_port();
    let body = format!(
        "shutdown_clients = false\n{}",
        echo_service("echo", port, "client_limit = 10")
    );
    let warden = Running::start(&body);
    let mut clients: Vec<LineClient> = (0..6)
        .map(|_| LineClient::connect(port).expect("connect"))
        .collect();
    let old = clients[0].echo_pid();
    for client in clients.iter_mut().skip(1) {
        assert_eq!(client.echo_pid(), old, "one process takes all six");
    }
    let clients_of = |pid: i32| {
        warden
            .ps("echo")
            .into_iter()
            .find(|p| p.pid == pid)
            .and_then(|p| p.clients)
    };
    warden.wait_for("six clients reported", WAIT, || clients_of(old) == Some(6));
    // After each reload the old process, draining now, loses a client and
    // says so; warden hears it every time.
    for reload in 1..=5 {
        warden.reload_with(&body);
        warden.wait_for("the reload", WAIT, || {
            warden
                .log()
                .contains(&format!("configuration reloaded (generation {reload})"))
        });
        clients.pop();
        let left = u32::try_from(clients.len()).expect("a few clients");
        warden.wait_for("the old process's report", WAIT, || {
            clients_of(old) == Some(left)
        });
    }
    let old_state = warden.ps("echo").into_iter().find(|p| p.pid == old);
    assert_eq!(old_state.map(|p| p.state), Some("draining".to_owned()));
    let log = warden.log();
    assert!(!log.contains("Connection refused"), "{log}");
    assert!(!log.contains("cannot report clients"), "{log}");
}

/// The counts in the lines of `log` that contain `needle`, each read
/// from the word after `before`.
fn counts(log: &str, needle: &str, before: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains(needle))
        .filter_map(|line| line.split(before).nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|count| count.parse().ok())
        .collect()
}

#[test]
fn a_flood_of_notify_messages_from_a_stranger_is_logged_as_a_count() {
    const FLOOD: u64 = 100_000;
    let warden = Running::start(&echo_service("echo", free_port(), "process_min_avail = 1"));
    warden.wait_for("a ready process", WAIT, || {
        warden.status("echo").available == 1
    });
    let before = warden.log().len();
    // This test process is not one of warden's: every datagram is a
    // stranger's.
    let name = format!("warden/{}/notify", warden.pid());
    let address =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .expect("an abstract address");
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("a socket");
    for _ in 0..FLOOD {
        socket
            .send_to_addr(b"X_WARDEN_CLIENTS=1000\nSTOPPING=1\n", &address)
            .expect("send");
    }
    let heard = || {
        let log = warden.log();
        let logged = log
            .matches("which is not one of warden's processes")
            .count();
        let summarised: u64 = counts(&log, "more notify messages from processes", "ignored ")
            .iter()
            .sum();
        u64::try_from(logged).expect("a count") + summarised
    };
    warden.wait_for("every datagram counted in the log", WAIT * 2, || {
        heard() == FLOOD
    });
    let log = warden.log();
    let grown = log.len() - before;
    assert!(grown < 4096, "{grown} bytes of log for the flood:\n{log}");
    assert_eq!(
        warden.status("echo").available,
        1,
        "a stranger's word counted"
    );
}
