//! The built-in service plugins, shown by real processes: a service that
//! names only its executable gets its documented defaults from its plugin,
//! and warden runs it that way.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::time::Duration;

use warden_tests::{Running, probe, root_or_skip};

const WAIT: Duration = Duration::from_secs(10);

/// The uid of Debian's `dovecot` user, or why the test cannot run.
fn internal_user(test: &str) -> Option<u32> {
    if !root_or_skip(test) {
        return None;
    }
    match warden_sys::ids::user("dovecot").expect("look up dovecot") {
        Some(user) => Some(user.uid.as_raw()),
        None => {
            eprintln!(
                "skipped {test}: the dovecot user is missing (Debian's dovecot-core creates it)"
            );
            None
        }
    }
}

// seed: svc.anvil
#[test]
fn anvil_runs_alone_in_an_empty_chroot_as_the_internal_user_and_survives_reload() {
    let Some(uid) = internal_user("anvil_runs_alone_in_an_empty_chroot") else {
        return;
    };
    let body = format!(
        "[service.anvil]\nexecutable = \"{} sleep\"\n",
        probe().display()
    );
    let warden = Running::start(&body);
    warden.wait_for("the anvil probe's report", WAIT, || {
        warden.log().contains("env.WARDEN_SERVICE=anvil")
    });
    let log = warden.log();
    let has = |needle: &str| log.lines().any(|line| line.contains(needle));
    assert!(
        has(&format!("uid={uid} {uid} {uid}")),
        "not the internal user:\n{log}"
    );
    assert!(
        has(" root= service=\"anvil\""),
        "not chrooted to the empty base_dir/empty:\n{log}"
    );
    assert!(
        has("env.LISTEN_FDNAMES=anvil:anvil-auth-penalty"),
        "not anvil's two sockets:\n{log}"
    );
    assert!(warden.dir().join("run/empty").is_dir());
    let pids = warden.pids("anvil");
    assert_eq!(pids.len(), 1, "anvil is one process");

    warden.reload_with(&body);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        warden.pids("anvil"),
        pids,
        "anvil was restarted by the reload"
    );
}
