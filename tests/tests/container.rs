//! warden as a container's PID 1: run in a PID namespace of its own (as
//! `docker run` starts it), it reaps the processes re-parented to it, so a
//! service's orphans leave no zombie, and SIGTERM (`docker stop`) stops it.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use warden_tests::{LineClient, free_port, proc_stat, root_or_skip, warden, write_config};

/// How long anything here may take.
const WAIT: Duration = Duration::from_secs(20);

/// The children of `parent` and their state letters (`Z` for a zombie),
/// from `/proc/PID/stat`.
fn children(parent: i32) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let fields = proc_stat(pid)?;
            let state = fields.first()?.clone();
            (fields.get(1)?.parse::<i32>().ok()? == parent).then_some((pid, state))
        })
        .collect()
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn as_pid_1_warden_reaps_the_orphans_of_its_services_and_stops_on_sigterm() {
    if !root_or_skip("as_pid_1_warden_reaps_the_orphans_of_its_services_and_stops_on_sigterm") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A service that leaves a background job behind: its shell exits at
    // once, and the job is re-parented to the namespace's PID 1.
    let service = dir.path().join("orphaner");
    std::fs::write(&service, "#!/bin/sh\n(sleep 1 &)\necho hi\n").expect("write the service");
    std::fs::set_permissions(&service, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
    let port = free_port();
    let config = write_config(
        dir.path(),
        &format!(
            r#"
[service.orphaner]
executable = "{}"
interface = "inetd"

[[service.orphaner.inet_listener]]
name = "orphaner"
address = "127.0.0.1"
port = {port}
"#,
            service.display()
        ),
    );
    let mut unshare = Namespace(
        Command::new("unshare")
            .args(["--pid", "--fork"])
            .arg(warden())
            .arg("run")
            .arg("-c")
            .arg(&config)
            .arg("--log-file")
            .arg(dir.path().join("warden.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run unshare"),
    );
    let unshare_pid = i32::try_from(unshare.0.id()).expect("a pid");
    // PID 1 of the namespace is unshare's only child.
    let mut init = 0;
    wait_until("PID 1 of the namespace", || {
        init = children(unshare_pid).first().map_or(0, |(pid, _)| *pid);
        init != 0
    });
    let control = dir.path().join("run").join("control");
    wait_until("the control socket", || control.exists());
    for _ in 0..5 {
        let mut client = LineClient::connect(port).expect("connect");
        assert_eq!(client.line().expect("read").as_deref(), Some("hi"));
    }
    // The background jobs are PID 1's now, and once they end, PID 1 has
    // waited for them: no zombie is left.
    wait_until("the orphaned jobs to be re-parented to PID 1", || {
        children(init).len() > 1
    });
    // Only the master is left, and it is no zombie.
    wait_until(
        "PID 1 to reap every orphan",
        || matches!(children(init).as_slice(), [(_, state)] if state != "Z"),
    );
    let log = std::fs::read_to_string(dir.path().join("warden.log")).unwrap_or_default();
    assert!(
        log.contains("warden started"),
        "the master runs behind the init:\n{log}"
    );
    // `docker stop`: SIGTERM to PID 1, which passes it to the master.
    kill(Pid::from_raw(init), Signal::SIGTERM).expect("signal PID 1");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = unshare.0.try_wait().expect("wait for unshare") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM to PID 1 did not stop warden"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "warden stopped with {status}");
    let log = std::fs::read_to_string(dir.path().join("warden.log")).unwrap_or_default();
    assert!(log.contains("warden stopped"), "{log}");
}

/// The namespace's `unshare`, killed with everything in the namespace if
/// the test ends before it did.
struct Namespace(std::process::Child);

impl Drop for Namespace {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            // PID 1's death takes the whole namespace with it.
            for (init, _) in children(i32::try_from(self.0.id()).unwrap_or(0)) {
                let _ = kill(Pid::from_raw(init), Signal::SIGKILL);
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
