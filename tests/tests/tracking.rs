//! How the master tracks its processes, end to end with the real binary,
//! the echo example and the probe: a stopped process is passed over and
//! left be, an idle process that will not exit is escalated, failures
//! throttle a service one step per event, reports are bounded by the
//! settings and reach warden across reloads, and what strangers send is
//! logged as a count.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::time::Duration;

use nix::sys::signal::Signal;
use warden_tests::{LineClient, Running, echo_service, free_port, probe};

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

fn signal(pid: i32, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).expect("signal a process");
}

#[test]
fn a_stopped_process_is_passed_over_and_left_be_until_continued() {
    let port = free_port();
    let warden = Running::start(&echo_service("echo", port, "client_limit = 10"));
    let mut first = LineClient::connect(port).expect("connect");
    let stopped = first.echo_pid();
    let state_of = |pid: i32| {
        warden
            .ps("echo")
            .into_iter()
            .find(|p| p.pid == pid)
            .map(|p| p.state)
    };
    warden.wait_for("the first client reported", WAIT, || {
        warden.ps("echo").first().and_then(|p| p.clients) == Some(1)
    });
    signal(stopped, Signal::SIGSTOP);
    warden.wait_for("the stop seen", WAIT, || {
        state_of(stopped).as_deref() == Some("stopped")
    });
    // Its listener is shared, but it accepts nothing now: a new process
    // serves the next client.
    let mut second = LineClient::connect(port).expect("connect");
    let other = second.echo_pid();
    assert_ne!(other, stopped);
    assert_eq!(state_of(stopped).as_deref(), Some("stopped"));
    assert_eq!(
        warden.status("echo").available,
        1,
        "the stopped one counted"
    );
    // Left be while stopped, however long the round takes.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state_of(stopped).as_deref(), Some("stopped"));

    signal(stopped, Signal::SIGCONT);
    warden.wait_for("the continue seen", WAIT, || {
        state_of(stopped).as_deref() == Some("busy")
    });
    first.send("still here").expect("send");
    assert_eq!(first.line().expect("read").as_deref(), Some("still here"));
    assert_eq!(warden.status("echo").available, 2);
    let log = warden.log();
    let once = |needle: &str| {
        assert_eq!(log.matches(needle).count(), 1, "not once: {needle}\n{log}");
    };
    once(&format!("process {stopped} was stopped by SIGSTOP"));
    once(&format!("process {stopped} was continued after"));
}

#[test]
fn an_idle_process_that_ignores_the_request_to_exit_is_escalated() {
    let warden = Running::start(&format!(
        r#"
[service.stubborn]
executable = "{probe} stubborn X_WARDEN_CLIENTS=0"
type = "startup"
idle_kill = "2s"
"#,
        probe = probe().display()
    ));
    warden.wait_for("the process", WAIT, || warden.pids("stubborn").len() == 1);
    let pid = warden.pids("stubborn")[0];
    let state = || warden.ps("stubborn").first().map(|p| p.state.clone());
    let ignoring = format!(
        "process {pid} is ignoring the idle SIGINT: it neither exited nor said it is busy within 2s"
    );
    warden.wait_for("the process to be found ignoring", WAIT, || {
        warden.log().contains(&ignoring)
    });
    assert_eq!(state().as_deref(), Some("ignoring-exit"));
    assert_eq!(warden.status("stubborn").available, 0);

    // A report calls the escalation off, as Dovecot's status update does.
    signal(pid, Signal::SIGUSR1);
    warden.wait_for("the report", WAIT, || {
        warden
            .log()
            .contains(&format!("process {pid} reported its clients after all"))
    });
    let now = state();
    assert!(
        matches!(now.as_deref(), Some("idle" | "asked-to-exit")),
        "{now:?}"
    );

    // Asked again, it ignores it again, and SIGTERM and SIGKILL follow.
    warden.wait_for("SIGKILL", WAIT * 2, || {
        warden.log().contains(&format!(
            "process {pid} ignored the idle SIGINT and SIGTERM: sent SIGKILL"
        ))
    });
    warden.wait_for("the process gone", WAIT, || {
        warden.pids("stubborn").is_empty()
    });
    let log = warden.log();
    assert_eq!(log.matches(&ignoring).count(), 2, "{log}");
    assert!(
        log.contains(&format!(
            "process {pid} still ignores the idle SIGINT: sent SIGTERM; SIGKILL follows in 2s"
        )),
        "{log}"
    );
    assert!(
        log.contains("process killed by signal 9 (SIGKILL) as asked"),
        "{log}"
    );
}

#[test]
fn status_of_a_crashing_service_names_its_last_exits_and_why_it_is_throttled() {
    let warden = Running::start(
        r#"
[service.broken]
executable = '''/bin/sh -c 'echo starting >&2; echo "cannot read /etc/broken.conf" >&2; exit 3' '''
process_min_avail = 1
"#,
    );
    warden.wait_for("a throttle", WAIT, || {
        warden.log().contains("throttling: no new process for")
    });
    // Each exit shows the process's last lines on stderr, which may come
    // a moment after the exit.
    warden.wait_for("an exit with its stderr", WAIT, || {
        let text = String::from_utf8_lossy(&warden.cli(&["status", "broken"]).stdout).into_owned();
        text.contains("exited with status 3, ")
            && text.contains("    | starting\n    | cannot read /etc/broken.conf\n")
    });
    let output = warden.cli(&["status", "broken", "--json"]);
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{json}");
    let answer: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(answer["answer"], "status", "{json}");
    let service = &answer["services"][0];
    assert_eq!(service["name"], "broken", "{json}");
    assert_eq!(
        service["last_exits"][0]["how"], "exited with status 3",
        "{json}"
    );
    assert!(
        service["throttle_reason"]
            .as_str()
            .is_some_and(|why| why.contains("exited with status 3")),
        "{json}"
    );
    let output = warden.cli(&["status", "broken"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("last throttled: process"), "{text}");
    assert!(text.contains("last exits:\n  process "), "{text}");
    let output = warden.cli(&["status", "brokne"]);
    assert_eq!(output.status.code(), Some(2));
}
