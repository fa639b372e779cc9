//! `warden run` end to end: the real binary, the example services and the
//! probe, a temporary base_dir and ephemeral ports. Each test proves one
//! behaviour of the service page or of the master's lifecycle.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden::control::{Request, Response};
use warden_tests::{
    LineClient, Running, echo_service, free_port, probe, running, signal_masks, whoami,
};

const WAIT: Duration = Duration::from_secs(20);

// seed: limits.client_limit
// seed: limits.process_limit
#[test]
fn a_full_process_makes_a_new_one_until_process_limit_then_connections_wait_and_drop() {
    let port = free_port();
    let warden = Running::start(&format!(
        "process_limit_wait = \"1s\"\n{}",
        echo_service("echo", port, "client_limit = 2\nprocess_limit = 2")
    ));
    let mut clients = Vec::new();
    let mut pids = Vec::new();
    for _ in 0..4 {
        let mut client = LineClient::connect(port).expect("connect");
        pids.push(client.echo_pid());
        clients.push(client);
    }
    assert_eq!(pids[0], pids[1], "two clients fit one process");
    assert_eq!(
        pids[2], pids[3],
        "the third client started a second process"
    );
    assert_ne!(pids[0], pids[2]);
    assert_eq!(warden.pids("echo").len(), 2);

    // Both processes full and process_limit reached: the next connection
    // waits, then is dropped, and the limit is named in the log.
    let started = Instant::now();
    let mut waiting = LineClient::connect(port).expect("the kernel queues the connection");
    assert_eq!(waiting.line().expect("end of input, not an error"), None);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "dropped before the wait"
    );
    // The drop is logged just after the connection is closed.
    warden.wait_for("the drop to be logged", WAIT, || {
        warden
            .log()
            .contains("process_limit (2) reached, connections are being dropped")
    });
    assert!(warden.status("echo").dropped >= 1);
    assert_eq!(warden.pids("echo").len(), 2);
}

// seed: limits.process_min_avail
#[test]
fn process_min_avail_processes_are_kept_ready() {
    let port = free_port();
    let warden = Running::start(&echo_service(
        "echo",
        port,
        "client_limit = 1\nprocess_limit = 10\nprocess_min_avail = 3",
    ));
    warden.wait_for("three preforked processes", WAIT, || {
        warden.status("echo").available == 3
    });
    // One process becomes busy: another is started to keep three available.
    let mut client = LineClient::connect(port).expect("connect");
    client.echo_pid();
    warden.wait_for("a fourth process", WAIT, || {
        let status = warden.status("echo");
        status.processes == 4 && status.available == 3
    });
}

// seed: limits.service_count
#[test]
fn a_process_retires_after_service_count_connections() {
    let port = free_port();
    let warden = Running::start(&echo_service(
        "echo",
        port,
        "client_limit = 5\nservice_count = 2",
    ));
    let mut first = LineClient::connect(port).expect("connect");
    let mut second = LineClient::connect(port).expect("connect");
    let retiring = first.echo_pid();
    assert_eq!(second.echo_pid(), retiring);
    // It has served two: the third connection goes to a new process.
    let mut third = LineClient::connect(port).expect("connect");
    assert_ne!(third.echo_pid(), retiring);
    // It still serves the two it has, then leaves.
    first.send("still here").expect("send");
    assert_eq!(first.line().expect("read").as_deref(), Some("still here"));
    drop(first);
    drop(second);
    warden.wait_for("the retired process to exit", WAIT, || {
        !warden.pids("echo").contains(&retiring)
    });
}

// seed: basics.idle_kill
#[test]
fn idle_processes_beyond_min_avail_are_asked_to_exit_and_0_means_the_default() {
    let port = free_port();
    let warden = Running::start(&format!(
        "default_idle_kill = \"1s\"\n{}",
        echo_service(
            "echo",
            port,
            "client_limit = 1\nprocess_limit = 5\nprocess_min_avail = 1\nidle_kill = 0"
        )
    ));
    let mut clients: Vec<LineClient> = (0..3)
        .map(|_| {
            let mut client = LineClient::connect(port).expect("connect");
            client.echo_pid();
            client
        })
        .collect();
    let busy = warden.pids("echo").len();
    assert!(busy >= 3, "three busy processes, got {busy}");
    // A busy process is never asked: with clients kept, all stay.
    thread::sleep(Duration::from_millis(2500));
    assert!(warden.pids("echo").len() >= 3);
    clients.clear();
    warden.wait_for("idle processes to be retired down to one", WAIT, || {
        warden.pids("echo").len() == 1
    });
    assert!(warden.log().contains("as asked"), "{}", warden.log());
}

// seed: type.default
#[test]
fn an_ordinary_service_starts_a_process_only_for_a_connection() {
    let port = free_port();
    let warden = Running::start(&echo_service("plain", port, "type = \"\""));
    thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        warden.pids("plain"),
        Vec::<i32>::new(),
        "started without a connection"
    );
    let mut client = LineClient::connect(port).expect("connect");
    let pid = client.echo_pid();
    assert_eq!(warden.pids("plain"), [pid]);
}

// seed: type.startup
#[test]
fn a_startup_service_starts_one_process_without_a_connection() {
    let warden = Running::start(&echo_service(
        "ticker",
        free_port(),
        "type = \"startup\"\nidle_kill = \"infinite\"",
    ));
    warden.wait_for("the startup process", WAIT, || {
        warden.pids("ticker").len() == 1
    });
}

// seed: basics.protocol
#[test]
fn a_service_runs_only_when_its_protocol_is_listed() {
    let (on, off) = (free_port(), free_port());
    let warden = Running::start(&format!(
        "protocols = [\"imap\"]\n{}{}",
        echo_service("imap", on, "protocol = \"imap\""),
        echo_service("pop3", off, "protocol = \"pop3\""),
    ));
    let mut client = LineClient::connect(on).expect("the imap service listens");
    client.echo_pid();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", off)).is_err(),
        "the pop3 service listens although pop3 is not in protocols"
    );
    assert!(!warden.status("pop3").runs);
}

fn startup_order(log: &str, services: &[&str]) -> Vec<String> {
    let mut order: Vec<(usize, String)> = services
        .iter()
        .filter_map(|service| {
            let needle = format!("process started service=\"{service}\"");
            log.find(&needle).map(|at| (at, (*service).to_owned()))
        })
        .collect();
    order.sort();
    order.into_iter().map(|(_, service)| service).collect()
}

// seed: type.special
#[test]
fn log_starts_first_and_stops_last_config_precedes_the_rest_and_anvil_survives_reload() {
    let body = format!(
        "{}{}{}{}",
        echo_service("plain", free_port(), "process_min_avail = 1"),
        // The anvil plugin would chroot to base_dir/empty as the internal
        // user; echo is a dynamic binary, so it stays where it is.
        echo_service(
            "anvil",
            free_port(),
            "type = \"anvil\"\nprocess_min_avail = 1\nchroot = \"\"\nuser = \"\""
        ),
        echo_service("config", free_port(), "type = \"config\""),
        echo_service("log", free_port(), "type = \"log\""),
    );
    let mut warden = Running::start(&body);
    warden.wait_for("every service to run", WAIT, || {
        ["plain", "anvil", "config", "log"]
            .iter()
            .all(|s| !warden.pids(s).is_empty())
    });
    assert_eq!(
        startup_order(&warden.log(), &["log", "config", "anvil", "plain"]),
        ["log", "config", "anvil", "plain"]
    );

    let anvil = warden.pids("anvil");
    let plain = warden.pids("plain");
    warden.reload_with(&body);
    warden.wait_for("a new plain process", WAIT, || {
        let now = warden.pids("plain");
        !now.is_empty() && now != plain
    });
    assert_eq!(
        warden.pids("anvil"),
        anvil,
        "anvil was restarted by the reload"
    );

    let log_pid = warden.pids("log");
    assert!(warden.stop().success());
    let log = warden.log();
    let last_exit = log
        .lines()
        .rfind(|line| line.contains("process exited"))
        .expect("exit lines");
    assert!(
        last_exit.contains(&format!("pid={}", log_pid[0])),
        "the log service did not go last: {last_exit}"
    );
}

#[test]
fn a_systemd_service_gets_its_listeners_and_environment() {
    let port = free_port();
    let warden = Running::start(&format!(
        r#"
[service.probe]
executable = "{probe}"
type = "startup"
client_limit = 7
service_count = 3

[[service.probe.inet_listener]]
name = "first"
address = "127.0.0.1"
port = {port}
"#,
        probe = probe().display()
    ));
    warden.wait_for("the probe's report", WAIT, || {
        warden.log().contains("env.WARDEN_SERVICE")
    });
    let log = warden.log();
    let line_with = |needle: &str| {
        log.lines()
            .find(|line| line.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in the log:\n{log}"))
            .to_owned()
    };
    for expected in [
        "env.LISTEN_FDS=1",
        "env.LISTEN_FDNAMES=first",
        "env.WARDEN_SERVICE=probe",
        "env.WARDEN_CLIENT_LIMIT=3",
        "env.WARDEN_SERVICE_COUNT=3",
        "env.NOTIFY_SOCKET=@warden/",
        "fd.3=socket inet stream listening",
    ] {
        line_with(expected);
    }
    // LISTEN_PID is the process's own pid.
    let listen_pid = line_with("env.LISTEN_PID=");
    let own = line_with(" pid=");
    let value = |line: &str, key: &str| {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    assert_eq!(value(&listen_pid, "LISTEN_PID="), value(&own, " pid="));
}

#[test]
fn an_inetd_service_gets_a_process_per_connection_with_ucspi_variables() {
    let port = free_port();
    let warden = Running::start(&format!(
        r#"
[service.whoami]
executable = "{whoami}"
interface = "inetd"
process_limit = 1

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {port}
"#,
        whoami = whoami().display()
    ));
    let mut first = LineClient::connect(port).expect("connect");
    let greeting = first.line().expect("read").expect("a greeting");
    let local = first_local_port(&greeting);
    assert!(greeting.starts_with("you are 127.0.0.1:"), "{greeting}");
    assert_eq!(local, Some(port), "{greeting}");

    // process_limit = 1: a second connection waits for the first to end.
    let mut second = LineClient::connect(port).expect("connect");
    thread::sleep(Duration::from_millis(500));
    assert_eq!(warden.pids("whoami").len(), 1);
    first.send("quit").expect("send");
    let greeting = second.line().expect("read").expect("a greeting");
    assert!(greeting.starts_with("you are 127.0.0.1:"), "{greeting}");
}

#[test]
fn an_inetd_service_is_told_both_ends_on_a_bound_and_a_wildcard_listener() {
    let (bound, wildcard) = (free_port(), free_port());
    let _warden = Running::start(&format!(
        r#"
[service.whoami]
executable = "{whoami}"
interface = "inetd"

[[service.whoami.inet_listener]]
name = "bound"
address = "127.0.0.1"
port = {bound}

[[service.whoami.inet_listener]]
name = "wildcard"
address = "*"
port = {wildcard}
"#,
        whoami = whoami().display()
    ));
    for port in [bound, wildcard] {
        let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let client = stream.local_addr().expect("the client's address");
        let greeting = LineClient::from_stream(stream)
            .line()
            .expect("read")
            .expect("a greeting");
        assert!(
            greeting.starts_with(&format!("you are {client}, talking to 127.0.0.1:{port},")),
            "{greeting}"
        );
    }
}

#[test]
fn a_program_replaced_on_disk_is_what_the_next_connection_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("answer");
    // Binaries, as a package upgrade leaves them: renamed into place.
    let install = |binary: &str| {
        let aside = dir.path().join("aside");
        std::fs::copy(binary, &aside).expect("copy");
        std::fs::rename(&aside, &program).expect("rename into place");
    };
    let answer = |port: u16| {
        LineClient::connect(port)
            .expect("connect")
            .line()
            .expect("read")
            .expect("an answer")
    };
    let service = |port: u16| {
        format!(
            r#"
[service.answer]
executable = "{program} 3"
interface = "inetd"

[[service.answer.inet_listener]]
name = "answer"
address = "127.0.0.1"
port = {port}
"#,
            program = program.display()
        )
    };
    install("/bin/echo");
    let port = free_port();
    let warden = Running::start(&service(port));
    assert_eq!(answer(port), "3", "echo 3");
    assert_eq!(answer(port), "3", "the same program, kept open");
    install("/usr/bin/seq");
    assert_eq!(answer(port), "1", "seq 3, without a reload");

    // A reload that drops the service lets go of its program.
    let holds_program = || {
        std::fs::read_dir(format!("/proc/{}/fd", warden.pid()))
            .expect("the master's descriptors")
            .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
            .any(|target| target == program)
    };
    assert!(holds_program(), "the master keeps the program open");
    let other = free_port();
    warden.reload_with(&format!(
        r#"
[service.whoami]
executable = "{whoami}"
interface = "inetd"

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {other}
"#,
        whoami = whoami().display()
    ));
    warden.wait_for("the reload", WAIT, || {
        LineClient::connect(other).is_ok_and(|mut client| client.line().is_ok_and(|l| l.is_some()))
    });
    // Each spawning thread closes what it kept at its next spawn.
    for _ in 0..4 {
        let _ = answer(other);
    }
    assert!(
        !holds_program(),
        "the removed service's program is still open"
    );
}

fn first_local_port(greeting: &str) -> Option<u16> {
    greeting
        .split("talking to 127.0.0.1:")
        .nth(1)?
        .split(',')
        .next()?
        .parse()
        .ok()
}

#[test]
fn a_broken_configuration_on_reload_keeps_the_running_one() {
    let port = free_port();
    let body = echo_service("echo", port, "");
    let warden = Running::start(&body);
    let mut before = LineClient::connect(port).expect("connect");
    before.echo_pid();
    warden.reload_with(&format!(
        "default_process_limit = \"lots\"\ndefault_client_limit = \"many\"\n{body}"
    ));
    warden.wait_for("the refused reload", WAIT, || {
        warden
            .log()
            .contains("configuration reload failed; the running configuration stays")
    });
    // One log record per problem, each naming the file, line and setting
    // (base_dir and plugin_cache are the file's first two lines).
    let log = warden.log();
    for (line, setting) in [(3, "default_process_limit"), (4, "default_client_limit")] {
        let record = format!("warden.toml:{line}:");
        assert!(
            log.lines()
                .any(|l| l.contains(" ERROR ") && l.contains(&record) && l.contains(setting)),
            "no record of its own for {setting}:\n{log}"
        );
    }
    let mut after = LineClient::connect(port).expect("still serving");
    after.echo_pid();
    match warden.request(&Request::Reload) {
        Response::Failed { message } => {
            assert!(message.contains("default_process_limit"), "{message}");
        }
        other => panic!("a broken reload answered {other:?}"),
    }
    // Counted, for an alert: two refused, none done.
    let Response::Stats { text: metrics } = warden.request(&Request::Stats) else {
        panic!("no metrics");
    };
    assert!(
        metrics.contains("warden_reloads_total{result=\"failed\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_reloads_total{result=\"ok\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("warden_build_info{version=\""),
        "{metrics}"
    );
    // The control commands still reach the master, whose configuration
    // is fine, though the file now has a problem: by its socket as the
    // file names it, or by --socket.
    let status = warden.cli(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let socket = warden.control_socket().display().to_string();
    let status = std::process::Command::new(warden_tests::warden())
        .args(["status", "-c", "/nonexistent.toml", "--socket", &socket])
        .output()
        .expect("run warden status");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // Nor does a file that no longer reads as TOML at all: its first
    // lines still name the base_dir.
    let text = std::fs::read_to_string(warden.config()).expect("the file");
    std::fs::write(warden.config(), format!("{text}\n[service.echo\n")).expect("break it");
    let status = warden.cli(&["status"]);
    let said = String::from_utf8_lossy(&status.stderr);
    assert!(status.status.success(), "{said}");
    assert!(said.contains("does not read as TOML"), "{said}");
    assert!(String::from_utf8_lossy(&status.stdout).contains("echo"));
}

#[test]
fn reloading_under_a_stream_of_connections_refuses_none() {
    let port = free_port();
    let body = echo_service("echo", port, "client_limit = 50\nprocess_min_avail = 1");
    let warden = Running::start(&body);
    warden.wait_for("a ready process", WAIT, || {
        warden.status("echo").available >= 1
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = std::sync::Arc::clone(&stop);
        thread::spawn(move || {
            let (mut served, mut refused) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match LineClient::connect(port).and_then(|mut c| c.line()) {
                    Ok(Some(_)) => served += 1,
                    Ok(None) => refused.push("closed without a greeting".to_owned()),
                    Err(error) => refused.push(error.to_string()),
                }
            }
            (served, refused)
        })
    };
    for _ in 0..3 {
        thread::sleep(Duration::from_millis(400));
        warden.reload_with(&body);
    }
    thread::sleep(Duration::from_millis(600));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (served, refused) = client.join().expect("the client thread");
    assert!(served > 10, "only {served} connections were served");
    assert!(refused.is_empty(), "{} refused: {refused:?}", refused.len());
}

#[test]
fn a_crash_looping_service_is_throttled_and_recovers_when_fixed() {
    let port = free_port();
    let broken = format!(
        r#"
[service.flaky]
executable = "{probe} exit 1"
process_min_avail = 1

[[service.flaky.inet_listener]]
name = "flaky"
address = "127.0.0.1"
port = {port}
"#,
        probe = probe().display()
    );
    let warden = Running::start(&broken);
    warden.wait_for("the throttle", WAIT, || {
        warden.status("flaky").throttled_ms.is_some()
    });
    let log = warden.log();
    assert!(log.contains("throttling: no new process for 2s"), "{log}");
    assert!(log.contains("before it was ready"), "{log}");

    warden.reload_with(&echo_service("flaky", port, "process_min_avail = 1"));
    warden.wait_for("the fixed service to serve", WAIT, || {
        LineClient::connect(port)
            .ok()
            .and_then(|mut c| c.line().ok().flatten())
            .is_some_and(|greeting| greeting.starts_with("hello from"))
    });
}

#[test]
fn running_out_of_address_space_says_to_raise_vsz_limit() {
    let warden = Running::start(&format!(
        r#"
[service.hog]
executable = "{probe} alloc 134217728"
type = "startup"
vsz_limit = "64M"
"#,
        probe = probe().display()
    ));
    warden.wait_for("the out-of-memory exit", WAIT, || {
        warden
            .log()
            .contains("out of memory (vsz_limit = 64M); raise service.hog.vsz_limit")
    });
}

#[test]
fn stopping_leaves_no_process_behind() {
    let port = free_port();
    let mut warden = Running::start(&echo_service(
        "echo",
        port,
        "client_limit = 1\nprocess_min_avail = 3",
    ));
    warden.wait_for("three processes", WAIT, || warden.pids("echo").len() == 3);
    let mut client = LineClient::connect(port).expect("connect");
    client.echo_pid();
    let pids: BTreeSet<i32> = warden.pids("echo").into_iter().collect();
    assert!(warden.stop().success(), "{}", warden.log());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} outlived warden"
        );
    }
}

#[test]
fn kick_stops_one_process_and_status_shows_the_service() {
    let port = free_port();
    let warden = Running::start(&echo_service("echo", port, "process_min_avail = 2"));
    warden.wait_for("two processes", WAIT, || warden.pids("echo").len() == 2);
    let victim = warden.pids("echo")[0];
    match warden.request(&Request::Kick { pid: victim }) {
        Response::Done { message } => assert!(message.contains("SIGTERM"), "{message}"),
        other => panic!("kick answered {other:?}"),
    }
    warden.wait_for("the kicked process to go", WAIT, || {
        !warden.pids("echo").contains(&victim)
    });
    match warden.request(&Request::Kick { pid: 1 }) {
        Response::Failed { message } => {
            assert!(message.contains("not one of warden's"), "{message}");
        }
        other => panic!("kicking init answered {other:?}"),
    }
    warden.signal(Signal::SIGUSR1);
    warden.wait_for("the log to be reopened", WAIT, || {
        warden.log().contains("log file reopened")
    });
}

#[test]
fn metrics_are_served_in_openmetrics_text() {
    let (port, metrics) = (free_port(), free_port());
    // ssl-params gets its defaults and its statistics from its built-in
    // plugin: a startup service whose one process reports and exits.
    let warden = Running::start(&format!(
        "metrics_listen = \"127.0.0.1:{metrics}\"\n{}\n[service.ssl-params]\nexecutable = \"{}\"\n",
        echo_service("echo", port, "process_min_avail = 1"),
        probe().display()
    ));
    let scrape = || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", metrics)).expect("connect");
        std::io::Write::write_all(&mut stream, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("read");
        answer
    };
    warden.wait_for("the ready process in the metrics", WAIT, || {
        scrape().contains("warden_available_slots{service=\"echo\"} 1000")
    });
    warden.wait_for(
        "the ssl-params plugin's figures in the metrics",
        WAIT,
        || {
            scrape().contains(
                "warden_plugin_ssl_params_processes_exited_total{service=\"ssl-params\"} 1",
            )
        },
    );
    let answer = scrape();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("application/openmetrics-text"), "{answer}");
    for expected in [
        "warden_processes{service=\"echo\"} 1",
        "warden_spawns_total{service=\"echo\"} 1",
        "# TYPE warden_plugin_ssl_params_processes_started counter",
        "warden_plugin_ssl_params_processes_started_total{service=\"ssl-params\"} 1",
        "# TYPE warden_policy_calls counter",
        "warden_policy_quarantined{plugin=\"dovecot\"} 0",
        "warden_policy_failures_total{plugin=\"dovecot\"} 0",
        "# TYPE warden_policy_call_seconds histogram",
        "warden_policy_call_seconds_count{plugin=\"dovecot\",hook=\"",
        "# EOF",
    ] {
        assert!(answer.contains(expected), "no {expected} in:\n{answer}");
    }
}

#[test]
fn a_process_flooding_its_output_stalls_neither_the_master_nor_other_services() {
    let port = free_port();
    let warden = Running::start(&format!(
        r#"
[service.flood]
executable = "/usr/bin/yes warden"
type = "startup"
{}"#,
        echo_service("echo", port, "")
    ));
    let log = warden.dir().join("warden.log");
    warden.wait_for("the flood", WAIT, || {
        std::fs::metadata(&log).is_ok_and(|meta| meta.len() > 200_000)
    });
    for _ in 0..20 {
        let started = Instant::now();
        let mut client = LineClient::connect(port).expect("connect");
        client.echo_pid();
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a connection took {:?} during the flood",
            started.elapsed()
        );
        warden.status("echo");
    }
}

#[test]
fn daemonized_warden_writes_its_pid_file_and_tells_systemd_it_is_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = dir.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).expect("bind notify");
    listener.set_read_timeout(Some(WAIT)).expect("timeout");
    let config = warden_tests::write_config(dir.path(), &echo_service("echo", free_port(), ""));
    let pid_file = dir.path().join("warden.pid");
    assert_eq!(config, dir.path().join("warden.toml"));
    // Relative paths, as an operator types them: the daemon leaves its
    // working directory, and still finds and writes them where they were.
    let status = std::process::Command::new(warden_tests::warden())
        .current_dir(dir.path())
        .args(["run", "-c", "warden.toml", "--daemonize"])
        .args(["--pid-file", "warden.pid", "--log-file", "warden.log"])
        .env("NOTIFY_SOCKET", &notify)
        .status()
        .expect("run warden --daemonize");
    assert!(
        status.success(),
        "the foreground process exits 0 once detached"
    );
    let mut message = [0u8; 256];
    let read = listener.recv(&mut message).expect("the READY notification");
    let text = String::from_utf8_lossy(message.get(..read).unwrap_or_default()).into_owned();
    assert!(text.contains("READY=1"), "{text}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the pid file")
        .trim()
        .parse()
        .expect("a pid");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    let control = dir.path().join("run/control");
    match warden::control::request(&control, &Request::Stop).expect("stop") {
        Response::Done { .. } => {}
        other => panic!("stop answered {other:?}"),
    }
    let deadline = Instant::now() + WAIT;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "the daemon did not stop");
        thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_file.exists(), "the pid file was left behind");
}

#[test]
fn notify_messages_from_outside_the_service_are_ignored() {
    let port = free_port();
    let warden = Running::start(&echo_service("echo", port, "process_min_avail = 1"));
    warden.wait_for("a ready process", WAIT, || {
        warden.status("echo").available == 1
    });
    // This test process is not one of the service's: its word counts for
    // nothing, whatever it claims.
    let name = format!("warden/{}/notify", warden.pid());
    let address =
        <std::os::unix::net::SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(
            name.as_bytes(),
        )
        .expect("an abstract address");
    let socket = std::os::unix::net::UnixDatagram::unbound().expect("a socket");
    socket
        .send_to_addr(b"X_WARDEN_CLIENTS=1000\nSTOPPING=1\n", &address)
        .expect("send");
    warden.wait_for("the refusal", WAIT, || {
        warden
            .log()
            .contains("which is not one of warden's processes")
    });
    assert_eq!(warden.status("echo").available, 1);
}

#[test]
fn warden_stop_returns_once_the_master_and_its_processes_are_gone() {
    let port = free_port();
    let warden = Running::start(&echo_service("echo", port, "process_min_avail = 2"));
    warden.wait_for("two echo processes", WAIT, || {
        warden.pids("echo").len() == 2
    });
    let processes = warden.pids("echo");
    let master = warden.pid();
    let output = warden.cli(&["stop"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("stopped"), "{stdout}");
    // Gone, or a zombie the test has not collected yet.
    assert!(!running(master), "the master still runs after warden stop");
    for pid in processes {
        assert!(
            !running(pid),
            "echo process {pid} still runs after warden stop"
        );
    }
}

#[test]
fn a_long_warden_stop_says_which_services_it_still_waits_for() {
    let warden = Running::start(
        r#"
shutdown_grace = "5s"

[service.stubborn]
executable = '''/bin/sh -c 'trap "" TERM; while :; do sleep 1; done' '''
interface = "systemd"
type = "startup"
"#,
    );
    warden.wait_for("the stubborn process", WAIT, || {
        warden.pids("stubborn").len() == 1
    });
    let output = warden.cli(&["stop"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("still waiting for stubborn (1 process)"),
        "{stderr}"
    );
}

#[test]
fn a_command_naming_an_unknown_service_says_so_and_exits_2() {
    let port = free_port();
    let warden = Running::start(&echo_service("echo", port, ""));
    for command in ["ps", "who"] {
        let output = warden.cli(&[command, "ecoh"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {stderr}");
        assert!(
            stderr.contains(
                "there is no service \"ecoh\" in the running configuration; the services are: echo"
            ),
            "{command:?}: {stderr}"
        );
    }
}

/// Sends `request` to the metrics endpoint at `port`; the whole answer.
fn http(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    answer
}

#[test]
fn the_metrics_endpoint_answers_readiness_head_and_unknown_paths() {
    let metrics = free_port();
    let warden = Running::start(&format!(
        "metrics_listen = \"127.0.0.1:{metrics}\"\n{}",
        echo_service("echo", free_port(), "")
    ));
    let ready = http(metrics, "GET /ready HTTP/1.0\r\n\r\n");
    assert!(
        ready.starts_with("HTTP/1.1 200 OK") && ready.ends_with("ready\n"),
        "{ready}"
    );
    let head = http(metrics, "HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(
        head.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {head}"
    );
    let missing = http(metrics, "GET /favicon.ico HTTP/1.0\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404 Not Found"), "{missing}");
    let posted = http(metrics, "POST /metrics HTTP/1.0\r\n\r\n");
    assert!(posted.starts_with("HTTP/1.1 405"), "{posted}");
    drop(warden);
}

#[test]
fn one_service_is_restarted_stopped_and_started_while_the_others_keep_their_processes() {
    let (one, other) = (free_port(), free_port());
    let warden = Running::start(&format!(
        "{}{}",
        echo_service("echo", one, "process_min_avail = 2"),
        echo_service("other", other, "process_min_avail = 2")
    ));
    let ready = |service: &str| warden.status(service).available == 2;
    warden.wait_for("both services ready", WAIT, || {
        ready("echo") && ready("other")
    });
    let (echo_before, other_before) = (warden.pids("echo"), warden.pids("other"));

    let restarted = warden.cli(&["restart", "echo"]);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    warden.wait_for("echo's processes replaced", WAIT, || {
        let now = warden.pids("echo");
        now.len() == 2 && now.iter().all(|pid| !echo_before.contains(pid)) && ready("echo")
    });
    assert_eq!(warden.pids("other"), other_before, "other was left be");

    let stopped = warden.cli(&["stop", "echo"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    warden.wait_for("echo stopped", WAIT, || warden.pids("echo").is_empty());
    thread::sleep(Duration::from_millis(500));
    assert!(
        warden.pids("echo").is_empty(),
        "a stopped service starts nothing"
    );
    assert!(warden.status("echo").stopped);
    let status = warden.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("stopped (warden start to start it)"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    let started = warden.cli(&["start", "echo"]);
    assert!(started.status.success());
    warden.wait_for("echo started again", WAIT, || ready("echo"));
    assert_eq!(
        warden.pids("other"),
        other_before,
        "other was left be throughout"
    );
    let unknown = warden.cli(&["restart", "ehco"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn children_start_with_default_signals_and_the_master_catches_no_new_one() {
    // The master notes the signals it catches or ignores once it is set
    // up, and its children reset only those: a handler it installed later
    // would reach its children.
    let sleeper = |name: &str| {
        format!("[service.{name}]\nexecutable = \"/bin/sleep 600\"\nprocess_min_avail = 1\n")
    };
    let warden = Running::start(&sleeper("first"));
    warden.wait_for("the first process", WAIT, || {
        warden.pids("first").len() == 1
    });
    let (caught, ignored) = signal_masks(warden.pid());
    assert_ne!(ignored, 0, "the master ignores SIGPIPE");
    // Noted once every handler was in place.
    let log = warden.log();
    let noted = log
        .lines()
        .find_map(|line| line.split("catches or ignores: ").nth(1))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no noted signals in the log:\n{log}"));
    let held = caught | ignored;
    assert_eq!(
        noted & held,
        held,
        "noted {noted:016x}, caught or ignored {held:016x}"
    );
    // Only an ignored signal outlives the exec: sleep ignores nothing.
    let first = warden.pids("first")[0];
    assert_eq!(signal_masks(first).1, 0);

    // A reload loads the plugins again and starts a service.
    warden.reload_with(&format!("{}{}", sleeper("first"), sleeper("second")));
    warden.wait_for("the second process", WAIT, || {
        matches!(warden.request(&Request::Ps { service: Some("second".to_owned()) }),
            Response::Ps { processes } if processes.len() == 1)
    });
    assert_eq!(signal_masks(warden.pid()), (caught, ignored));
    let second = warden.pids("second")[0];
    assert_eq!(signal_masks(second).1, 0);
}
