//! Start-up and spawn faults end to end, in a running `warden`: a process
//! that cannot start is logged with the OS error that says why.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use warden_tests::{Running, probe};

const WAIT: Duration = Duration::from_secs(20);

#[test]
fn a_program_that_cannot_be_executed_is_logged_with_the_os_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let program = dir.path().join("not-executable");
    std::fs::copy(probe(), &program).expect("copy the probe");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644))
        .expect("make it not executable");
    let warden = Running::start(&format!(
        r#"
[service.broken]
executable = "{program}"
type = "startup"
"#,
        program = program.display()
    ));
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
