//! `warden run` at its edges, end to end: out of descriptors, crowded by
//! idle control clients, started twice with one pid file.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

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
            open_files: Some(64),
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
