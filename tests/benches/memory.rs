//! The master's resident memory with the whole documented Dovecot service
//! set: `conf/warden.toml` as shipped (23 services, every built-in
//! plugin), over Debian's Dovecot binaries. Printed: the master's RSS,
//! and how much of it is mapped from files (warden's code and the
//! libraries') and how much allocated, at start, after each batch of IMAP and POP3 sessions
//! (connect, greeting, LOGOUT or QUIT, through imap-login and
//! pop3-login), and after a reload, so that growth shows.
//!
//!     sudo cargo bench -p warden-tests --bench memory
//!     sudo WARDEN_BENCH_SESSIONS=1000000 cargo bench -p warden-tests --bench memory
//!
//! Needs root, Debian's dovecot-core, dovecot-imapd and dovecot-pop3d,
//! and ports 143 and 110 free (it serves them as the configuration says).
//!
//! First, without those: the master's RSS across connections it accepts
//! itself, a process started for each (an inetd service, every built-in
//! plugin loaded), `WARDEN_BENCH_CONNECTIONS` of them (default 100,000;
//! a million for the long run), eight at a time.

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warden_tests::{LineClient, Running, free_port, resident_mb, warden, whoami_service};

/// Batches of sessions between readings.
const BATCHES: usize = 4;

/// Kilobytes of the `/proc/PID/status` line `key`.
fn status_kb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the status")
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("a figure")
}

/// One session on `port`: the greeting, `command`, its answer.
fn session(port: u16, command: &[u8]) -> bool {
    let Ok(stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || line.is_empty() {
        return false;
    }
    let _ = (&stream).write_all(command);
    line.clear();
    reader.read_line(&mut line).is_ok()
}

fn reading(label: &str, pid: u32, sessions: usize) {
    let pid_i32 = i32::try_from(pid).expect("a pid");
    println!(
        "| {label:<28} | {sessions:>9} | {:>7.1} MB | {:>6.1} MB | {:>6.1} MB |",
        resident_mb(pid_i32),
        status_kb(pid, "RssFile:") / 1024.0,
        status_kb(pid, "RssAnon:") / 1024.0,
    );
}

/// The master's RSS across connections to an inetd service, read at each
/// quarter.
fn accepted_connections() {
    let connections: usize = std::env::var("WARDEN_BENCH_CONNECTIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let port = free_port();
    let warden = Running::start_quiet(&whoami_service(port, ""));
    println!("{connections} connections to an inetd service, eight at a time:\n");
    println!("| {:>11} | {:>10} |", "connections", "master RSS");
    println!("|{:->13}|{:->12}|", "", "");
    println!("| {:>11} | {:>7.1} MB |", 0, resident_mb(warden.pid()));
    let quarter = connections / 4;
    for n in 1..=4 {
        std::thread::scope(|threads| {
            for thread in 0..8 {
                threads.spawn(move || {
                    for _ in (thread..quarter).step_by(8) {
                        let mut client = LineClient::connect(port).expect("connect");
                        client.line().expect("read").expect("an answer");
                    }
                });
            }
        });
        println!(
            "| {:>11} | {:>7.1} MB |",
            n * quarter,
            resident_mb(warden.pid())
        );
    }
    println!();
}

fn main() {
    accepted_connections();
    if !nix::unistd::geteuid().is_root() {
        println!(
            "skipped: the full service set runs Dovecot's binaries as their users, which needs root"
        );
        return;
    }
    if !Path::new("/usr/lib/dovecot/imap-login").exists() {
        println!("skipped: install dovecot-core, dovecot-imapd and dovecot-pop3d");
        return;
    }
    let sessions: usize = std::env::var("WARDEN_BENCH_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/warden.toml");
    let mut master = Command::new(warden())
        .args(["run", "-c"])
        .arg(&config)
        .env_remove("WARDEN_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start warden");
    let pid = master.id();
    let started = Instant::now();
    while !session(143, b"a LOGOUT\r\n") {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "imap-login never greeted; is port 143 taken?"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    println!("conf/warden.toml, {sessions} sessions in {BATCHES} batches, half IMAP, half POP3:\n");
    println!(
        "| {:<28} | {:>9} | {:>10} | {:>9} | {:>9} |",
        "when", "sessions", "master RSS", "files", "allocated"
    );
    println!(
        "|{:-<30}|{:->11}|{:->12}|{:->11}|{:->11}|",
        "", "", "", "", ""
    );
    reading("started", pid, 0);
    let per_batch = sessions / BATCHES;
    let mut done = 0;
    let mut failed = 0;
    let took = Instant::now();
    for batch in 0..BATCHES {
        for n in 0..per_batch {
            let ok = if n % 2 == 0 {
                session(143, b"a LOGOUT\r\n")
            } else {
                session(110, b"QUIT\r\n")
            };
            failed += usize::from(!ok);
        }
        done += per_batch;
        reading(&format!("after batch {}", batch + 1), pid, done);
        if batch == BATCHES / 2 - 1 {
            let reloaded = Command::new(warden())
                .args(["reload", "-c"])
                .arg(&config)
                .output()
                .expect("warden reload");
            assert!(reloaded.status.success(), "the reload failed");
            std::thread::sleep(Duration::from_secs(3));
            reading("after a reload", pid, done);
        }
    }
    println!(
        "\n{done} sessions in {:.1} s, {failed} failed",
        took.elapsed().as_secs_f64()
    );
    let stopped = Command::new(warden())
        .args(["stop", "-c"])
        .arg(&config)
        .output()
        .expect("warden stop");
    assert!(stopped.status.success(), "warden stop failed");
    master.wait().expect("collect warden");
}
