//! `warden top` against a running master: in a pseudo-terminal it draws
//! the numbers `warden status` gives and quits on `q`; piped, it prints
//! the same as plain text.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::io::{Read, Write};
use std::num::NonZeroU16;
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use warden_tests::{LineClient, Running, echo_service, free_port, warden};

const WAIT: Duration = Duration::from_secs(20);

/// The screen's size.
const ROWS: NonZeroU16 = NonZeroU16::new(40).expect("not zero");
const COLUMNS: NonZeroU16 = NonZeroU16::new(160).expect("not zero");

/// Reads what `warden top` writes to the pseudo-terminal's other end, on
/// a thread, and sends it on.
fn reader(master: OwnedFd) -> mpsc::Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut file = std::fs::File::from(master);
        let mut buffer = [0_u8; 16 * 1024];
        // Ends with EIO once every holder of the terminal has closed it.
        while let Ok(read @ 1..) = file.read(&mut buffer) {
            if sender.send(buffer[..read].to_vec()).is_err() {
                return;
            }
        }
    });
    receiver
}

#[test]
fn top_in_a_pseudo_terminal_shows_what_status_shows_and_quits_on_q() {
    let port = free_port();
    let warden_running = Running::start(&format!(
        "{}{}",
        echo_service("echo", port, "process_limit = 7"),
        echo_service("spare", free_port(), "")
    ));
    // One process with one client: what status shows stays so.
    let mut client = LineClient::connect(port).expect("connect");
    let pid = client.echo_pid();
    warden_running.wait_for("echo's client counted", WAIT, || {
        warden_running.status("echo").clients == 1
    });
    let status = warden_running.status("echo");

    let size = nix::pty::Winsize {
        ws_row: ROWS.get(),
        ws_col: COLUMNS.get(),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).expect("a pseudo-terminal");
    let terminal = || Stdio::from(pty.slave.try_clone().expect("the terminal"));
    let mut top = Command::new(warden())
        .args(["top", "--interval", "0.2", "-c"])
        .arg(warden_running.config())
        .env("TERM", "xterm-256color")
        .env_remove("WARDEN_CONFIG")
        .stdin(terminal())
        .stdout(terminal())
        .stderr(terminal())
        .spawn()
        .expect("run warden top");
    // Only warden top holds the terminal now: when it ends, reading the
    // other end ends.
    drop(pty.slave);
    let output = reader(pty.master.try_clone().expect("the terminal's other end"));

    // Render what it draws until a frame shows echo's row as status
    // gives it, and its processes.
    let mut screen = vt100::Parser::new(ROWS, COLUMNS, 0);
    let row = format!(
        "echo {}/{} {} {}",
        status.processes, status.process_limit, status.available, status.clients
    );
    let squeezed = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let deadline = Instant::now() + WAIT;
    let frame = loop {
        let contents = squeezed(&screen.screen().contents());
        if contents.contains(&row) && contents.contains(&format!("{pid} ")) {
            break screen.screen().contents();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match output.recv_timeout(left) {
            Ok(bytes) => screen.process(&bytes),
            Err(_) => panic!(
                "no frame with {row:?} and pid {pid}; the screen:\n{}",
                screen.screen().contents()
            ),
        }
    };
    for expected in [
        "SERVICE",
        "CONN/s",
        "spare",
        "echo: processes",
        "echo: plugin hooks",
    ] {
        assert!(frame.contains(expected), "no {expected:?} in:\n{frame}");
    }

    let mut keys = std::fs::File::from(pty.master);
    keys.write_all(b"q").expect("press q");
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = top.try_wait().expect("wait for warden top") {
            break exit;
        }
        assert!(started.elapsed() < WAIT, "warden top did not quit on q");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "warden top ended {exit}");
    drop(client);
}

#[test]
fn top_without_a_terminal_prints_frames_as_text() {
    let port = free_port();
    let warden_running = Running::start(&echo_service("echo", port, "process_min_avail = 1"));
    warden_running.wait_for("echo's process", WAIT, || {
        warden_running.status("echo").processes == 1
    });
    let shown = Command::new(warden())
        .args(["top", "--frames", "2", "--interval", "0.2", "-c"])
        .arg(warden_running.config())
        .env_remove("WARDEN_CONFIG")
        .output()
        .expect("run warden top");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{text}");
    assert_eq!(
        text.matches("warden top: 1 service,").count(),
        2,
        "two frames:\n{text}"
    );
    assert!(
        text.lines().any(
            |line| line.starts_with("echo ") && line.split_whitespace().nth(1) == Some("1/100")
        ),
        "echo's row:\n{text}"
    );
    assert!(!text.contains('\u{1b}'), "escape codes in:\n{text}");
}

#[test]
fn top_without_a_master_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shown = Command::new(warden())
        .args(["top", "--socket"])
        .arg(dir.path().join("control"))
        .output()
        .expect("run warden top");
    assert_eq!(shown.status.code(), Some(69));
    let said = String::from_utf8_lossy(&shown.stderr);
    assert!(said.contains("warden top: "), "{said}");
}
