//! Start-up and spawn faults end to end, in a running `warden`: a process
//! that cannot start is logged with the OS error that says why, a
//! descriptor limit too low for the configuration is raised and warned
//! about with the fix, and every listener's backlog follows its service's
//! capacity.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use warden_tests::{Launch, Running, echo, free_port, probe, whoami};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_program_that_cannot_be_executed_is_logged_with_the_os_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("not-executable");
    std::fs::copy(probe(), &program).expect("copy the probe");
    let port = free_port();
    // It can run when warden checks the configuration at start, and stops
    // being executable before its first process is started.
    let warden = Running::start(&format!(
        r#"
[service.broken]
executable = "{program}"

[[service.broken.inet_listener]]
name = "broken"
address = "127.0.0.1"
port = {port}
"#,
        program = program.display()
    ));
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644))
        .expect("make it not executable");
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let failed = |log: &str| {
        log.lines()
            .find(|line| line.contains("cannot start a process"))
            .map(str::to_owned)
    };
    warden.wait_for("the failed start", WAIT, || failed(&warden.log()).is_some());
    let line = failed(&warden.log()).unwrap_or_default();
    assert!(
        line.contains("service broken: exec failed in the new process; check executable"),
        "{line}"
    );
    assert!(
        line.contains("Permission denied (os error 13)"),
        "the OS error is missing: {line}"
    );
}

/// The soft and hard descriptor limits of process `pid`.
fn descriptor_limit(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("read its limits");
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .expect("a descriptor limit");
    let mut numbers = line
        .trim_start_matches("Max open files")
        .split_whitespace()
        .map(str::to_owned);
    (
        numbers.next().expect("the soft limit"),
        numbers.next().expect("the hard limit"),
    )
}

#[test]
fn a_low_descriptor_limit_is_raised_to_the_hard_one_and_warned_about_with_the_fix() {
    let port = free_port();
    // 100 processes: their pidfds and output pipes alone are 400.
    let warden = Running::start_with(
        &format!(
            r#"
[service.echo]
executable = "{echo}"
process_limit = 100
client_limit = 10

[[service.echo.inet_listener]]
name = "echo"
address = "127.0.0.1"
port = {port}
"#,
            echo = echo().display()
        ),
        Launch {
            open_files: Some((64, 256)),
            ..Launch::default()
        },
    );
    assert_eq!(
        descriptor_limit(warden.pid()),
        ("256".to_owned(), "256".to_owned())
    );
    let log = warden.log();
    assert!(
        log.contains("raised the descriptor limit (RLIMIT_NOFILE) from 64 to its hard limit, 256"),
        "{log}"
    );
    let warning = log
        .lines()
        .find(|line| line.contains("the descriptor limit (RLIMIT_NOFILE) is 256"))
        .unwrap_or_else(|| panic!("no warning about the descriptor limit:\n{log}"));
    let needed: u64 = warning
        .split_once("this configuration may need ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(number, _)| number.parse().ok())
        .unwrap_or_else(|| panic!("no number of descriptors: {warning}"));
    assert!(needed > 400, "{warning}");
    for fix in [
        format!("LimitNOFILE={needed} in warden's systemd unit"),
        format!("ulimit -n {needed}"),
        "its hard limit is 256, which only root can raise".to_owned(),
        "lower process_limit of service echo, which needs".to_owned(),
    ] {
        assert!(warning.contains(&fix), "{fix:?} is missing: {warning}");
    }
}

/// The backlog of the TCP socket listening on `port`, as `ss` shows it:
/// the Send-Q column of a listening socket.
fn backlog(port: u16) -> u32 {
    let output = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .next()
        .unwrap_or_else(|| panic!("ss shows no listener on {port}: {text:?}"));
    line.split_whitespace()
        .nth(2)
        .and_then(|column| column.parse().ok())
        .unwrap_or_else(|| panic!("not a line of ss -lt: {line:?}"))
}

#[test]
fn every_listener_backlog_follows_its_service_capacity_with_a_floor() {
    if std::process::Command::new("ss").arg("-V").output().is_err() {
        eprintln!(
            "skipped every_listener_backlog_follows_its_service_capacity_with_a_floor: ss (iproute2) is missing"
        );
        return;
    }
    let (big, small, inetd) = (free_port(), free_port(), free_port());
    let warden = Running::start(&format!(
        r#"
[service.big]
executable = "{echo}"
process_limit = 3
client_limit = 100

[[service.big.inet_listener]]
name = "big"
address = "127.0.0.1"
port = {big}

[service.small]
executable = "{echo}"
process_limit = 1
client_limit = 1

[[service.small.inet_listener]]
name = "small"
address = "127.0.0.1"
port = {small}

[service.whoami]
executable = "{whoami}"
interface = "inetd"
process_limit = 2

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {inetd}
"#,
        echo = echo().display(),
        whoami = whoami().display()
    ));
    // 3 × 100; then the floor, for a service of one process of one client
    // and for one whose connections warden itself accepts.
    assert_eq!(backlog(big), 300, "{}", warden.log());
    assert_eq!(backlog(small), 128);
    assert_eq!(backlog(inetd), 128);
}
