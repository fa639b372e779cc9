//! `warden run` at its edges, end to end: out of descriptors, crowded by
//! idle control clients, started twice with one pid file.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use warden::control::{MAX_CLIENTS, REQUEST_TIMEOUT};
use warden_tests::{Launch, Running, free_port};

const WAIT: Duration = Duration::from_secs(20);

/// The metrics endpoint's answer to one request, if it answers.
fn scrape(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

#[test]
fn the_metrics_endpoint_serves_again_once_descriptors_are_free() {
    let metrics = free_port();
    let warden = Running::start_with(
        &format!("metrics_listen = \"127.0.0.1:{metrics}\"\n"),
        Launch {
            open_files: Some((64, 64)),
            ..Launch::default()
        },
    );
    assert!(scrape(metrics).is_some_and(|answer| answer.starts_with("HTTP/1.1 200 OK")));
    // Each connection that sends nothing holds a descriptor of the master
    // for a few seconds; more of them than the limit leaves room for fill
    // its table, and the kernel queues the rest.
    let idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(("127.0.0.1", metrics)).expect("connect"))
        .collect();
    warden.wait_for("an accept to fail for want of descriptors", WAIT, || {
        warden.log().contains("Too many open files")
    });
    assert!(
        warden
            .log()
            .contains("the metrics endpoint cannot accept a connection; retrying in 100ms"),
        "{}",
        warden.log()
    );
    drop(idle);
    warden.wait_for("the endpoint to serve again", WAIT, || {
        scrape(metrics).is_some_and(|answer| answer.starts_with("HTTP/1.1 200 OK"))
    });
}

/// The descriptors process `pid` has open.
fn descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the master's descriptors")
        .count()
}

/// The one answer line a control connection gets, and whether the master
/// closed the connection after it.
fn answer_and_close(connection: UnixStream) -> (String, bool) {
    connection
        .set_read_timeout(Some(WAIT))
        .expect("set a read timeout");
    let mut reader = BufReader::new(connection);
    let mut line = String::new();
    reader.read_line(&mut line).expect("read the answer");
    let mut rest = Vec::new();
    let closed = reader.read_to_end(&mut rest).is_ok_and(|_| rest.is_empty());
    (line, closed)
}

#[test]
fn an_idle_control_connection_is_told_and_closed_after_the_deadline() {
    let warden = Running::start("");
    let connected = Instant::now();
    let idle = UnixStream::connect(warden.control_socket()).expect("connect");
    let (answer, closed) = answer_and_close(idle);
    let waited = connected.elapsed();
    assert!(
        answer.starts_with(r#"{"answer":"failed","message":"no request within 5s; send the request as soon as you connect"}"#),
        "{answer}"
    );
    assert!(closed, "the connection stayed open after the answer");
    assert!(
        waited >= REQUEST_TIMEOUT - Duration::from_millis(500) && waited < WAIT,
        "closed after {waited:?}"
    );
}

#[test]
fn the_control_socket_answers_while_many_idle_connections_are_open() {
    let warden = Running::start("");
    let before = descriptors(warden.pid());
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(warden.control_socket()).expect("connect"))
        .collect();
    let asked = Instant::now();
    let status = warden.cli(&["status"]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        asked.elapsed() < REQUEST_TIMEOUT,
        "status waited {:?}, as long as an idle client's deadline",
        asked.elapsed()
    );
    // The master keeps no more of them than it serves at once.
    warden.wait_for(
        "the master to close the idle connections it has no room for",
        WAIT,
        || descriptors(warden.pid()) <= before + MAX_CLIENTS,
    );
    let mut idle = idle.into_iter();
    let oldest = idle.next().expect("an idle connection");
    let (answer, closed) = answer_and_close(oldest);
    assert!(
        answer
            .starts_with(r#"{"answer":"failed","message":"closed without a request to make room"#),
        "{answer}"
    );
    assert!(closed, "the oldest idle connection stayed open");
}

#[test]
fn a_second_master_fails_before_touching_the_first_ones_pid_file() {
    let mut warden = Running::start_with(
        "",
        Launch {
            pid_file: true,
            ..Launch::default()
        },
    );
    let pid_file = warden.pid_file();
    let first = format!("{}\n", warden.pid());
    assert_eq!(std::fs::read_to_string(&pid_file).ok(), Some(first.clone()));
    let mut second = std::process::Command::new(warden_tests::warden())
        .arg("run")
        .arg("-c")
        .arg(warden.config())
        .arg("--pid-file")
        .arg(&pid_file)
        .env_remove("WARDEN_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start a second warden");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = second.try_wait().expect("wait for the second warden") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second warden kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    second
        .stderr
        .take()
        .expect("its stderr")
        .read_to_string(&mut stderr)
        .expect("read its stderr");
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "warden run: the pid file {} names process {}, which is running: is warden already running?",
            pid_file.display(),
            warden.pid()
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&pid_file).ok(), Some(first));
    assert!(warden.cli(&["status"]).status.success(), "{}", warden.log());
    assert!(warden.stop().success());
    assert!(!pid_file.exists(), "the master left its pid file behind");
}

#[test]
fn a_master_leaves_a_pid_file_it_no_longer_holds() {
    let mut warden = Running::start_with(
        "",
        Launch {
            pid_file: true,
            ..Launch::default()
        },
    );
    let pid_file = warden.pid_file();
    std::fs::write(&pid_file, "1\n").expect("rewrite the pid file");
    assert!(warden.stop().success());
    assert_eq!(
        std::fs::read_to_string(&pid_file).ok().as_deref(),
        Some("1\n")
    );
}
