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

// seed: svc.auth
#[test]
fn auth_gets_its_sockets_each_typed_by_the_name_after_its_last_dash() {
    let Some(uid) = internal_user("auth_gets_its_sockets") else {
        return;
    };
    let warden = Running::start(&format!(
        "[service.auth]\nexecutable = \"{} sleep\"\n",
        probe().display()
    ));
    // auth starts on its first connection.
    let _client = std::os::unix::net::UnixStream::connect(warden.dir().join("run/auth-client"))
        .expect("connect to auth-client");
    warden.wait_for("the auth probe's report", WAIT, || {
        warden.log().contains("env.WARDEN_SERVICE=auth")
    });
    let log = warden.log();
    let has = |needle: &str| log.lines().any(|line| line.contains(needle));
    assert!(
        has(&format!("uid={uid} {uid} {uid}")),
        "not the internal user:\n{log}"
    );
    assert!(
        has("env.LISTEN_FDNAMES=login:tokenlogin:auth-login:auth-client:auth-userdb:auth-master"),
        "not auth's sockets:\n{log}"
    );
    assert!(
        has("env.WARDEN_CLIENT_TYPES=login:tokenlogin:login:client:userdb:master"),
        "not typed by their names:\n{log}"
    );
    let userdb = std::fs::metadata(warden.dir().join("run/auth-userdb")).expect("auth-userdb");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&userdb.permissions()) & 0o777,
        0o666
    );
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&userdb), uid);
}

#[test]
fn warden_plugins_lists_every_built_in_with_its_hooks() {
    let warden = Running::start("");
    let output = warden.cli(&["plugins"]);
    assert_eq!(output.status.code(), Some(0));
    let listing = String::from_utf8_lossy(&output.stdout);
    let row = |plugin: &str| {
        listing
            .lines()
            .find(|line| line.split_whitespace().next() == Some(plugin))
            .unwrap_or_else(|| panic!("{plugin} is not listed:\n{listing}"))
            .to_owned()
    };
    for (plugin, hooks) in [
        ("admission", "admission"),
        ("anvil", "defaults,idle,scaling,stats"),
        ("auth", "defaults,typing,scaling,stats"),
        ("auth-worker", "defaults,lifecycle,stats"),
        ("config", "defaults,stats"),
        ("dict", "defaults,stats"),
        ("director", "defaults,scaling,stats"),
        ("dns-client", "defaults,stats"),
        ("doveadm", "defaults,lifecycle,stats"),
        ("dovecot", "idle,scaling,lifecycle"),
        ("indexer", "defaults,scaling,stats"),
        ("indexer-worker", "defaults,lifecycle,stats"),
        ("ipc", "defaults,scaling,stats"),
        ("lmtp", "defaults,lifecycle,stats"),
        ("log", "defaults,idle,scaling,stats"),
        ("login", "defaults,eviction,idle,stats"),
        ("mail", "defaults,lifecycle,stats"),
        ("ssl-params", "defaults,stats"),
        ("stats", "defaults,idle,scaling,stats"),
    ] {
        let row = row(plugin);
        assert!(row.contains(hooks) && row.ends_with("built-in"), "{row}");
    }
}
