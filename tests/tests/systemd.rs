//! warden under systemd, as `Type=notify` (or `notify-reload`) with a
//! watchdog sees it: the datagrams it sends to `NOTIFY_SOCKET`, read from
//! a socket the test binds in systemd's place.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warden_tests::{free_port, warden, whoami, write_config};

/// How long anything here may take.
const WAIT: Duration = Duration::from_secs(20);

/// The notify socket, and every datagram read from it so far.
struct Manager {
    socket: UnixDatagram,
    heard: Vec<String>,
}

impl Manager {
    /// Reads datagrams until one at place `from` or later has the line
    /// `line`; returns its place and the whole datagram.
    fn after(&mut self, from: usize, line: &str) -> (usize, String) {
        let deadline = Instant::now() + WAIT;
        let mut buffer = [0u8; 4096];
        loop {
            if let Some((at, found)) = self
                .heard
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, m)| m.lines().any(|l| l == line))
            {
                return (at, found.clone());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {line}; heard: {:?}",
                self.heard
            );
            if let Ok(read) = self.socket.recv(&mut buffer) {
                let message = String::from_utf8_lossy(buffer.get(..read).unwrap_or_default());
                self.heard.push(message.into_owned());
            }
        }
    }
}

#[test]
fn systemd_hears_ready_status_watchdog_and_reloading_with_its_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("a read timeout");
    let mut manager = Manager {
        socket,
        heard: Vec::new(),
    };
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[service.whoami]
executable = "{}"
interface = "inetd"

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {}
"#,
            whoami().display(),
            free_port()
        ),
    );
    let mut master = Command::new(warden())
        .arg("run")
        .arg("-c")
        .arg(&config)
        .arg("--log-file")
        .arg(dir.path().join("warden.log"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000")
        .stdin(Stdio::null())
        .spawn()
        .expect("start warden");
    let pid = Pid::from_raw(i32::try_from(master.id()).expect("a pid"));

    let (mut at, ready) = manager.after(0, "READY=1");
    assert!(
        ready.lines().any(|l| l == "STATUS=1 services"),
        "the status line comes with READY=1: {ready:?}"
    );
    // The watchdog is kept, at half its interval, again and again.
    for _ in 0..3 {
        (at, _) = manager.after(at + 1, "WATCHDOG=1");
    }

    kill(pid, Signal::SIGHUP).expect("reload");
    let (reloading_at, reloading) = manager.after(at + 1, "RELOADING=1");
    let monotonic = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|usec| usec.parse::<u64>().ok());
    assert!(
        monotonic.is_some_and(|usec| usec > 0),
        "Type=notify-reload needs MONOTONIC_USEC with RELOADING=1: {reloading:?}"
    );
    (at, _) = manager.after(reloading_at + 1, "READY=1");

    kill(pid, Signal::SIGTERM).expect("stop");
    manager.after(at + 1, "STOPPING=1");
    // The status line says why the service is not ready.
    manager.after(at + 1, "STATUS=not ready: stopping");
    let status = master.wait().expect("warden exits");
    assert!(status.success(), "warden stopped with {status}");
}
