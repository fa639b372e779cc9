//! The service page's rules that the configuration alone decides: how paths
//! are resolved, how a mode is read, which combinations are refused.
//! Tests of the same rules with real processes and sockets live beside the
//! code that creates them.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::Path;

use warden::config::{Config, Problems};

fn parse(source: &str) -> Result<Config, Problems> {
    Config::parse("test.toml", source)
}

fn parse_ok(source: &str) -> Config {
    parse(source).unwrap_or_else(|problems| panic!("unexpected problems:\n{problems}"))
}

// seed: listen.unix.mode
#[test]
fn a_mode_is_octal_and_a_decimal_one_is_refused_with_the_octal_spelling() {
    let octal = parse_ok(
        r#"
        [service.auth]
        executable = "/usr/lib/dovecot/auth"
        [[service.auth.unix_listener]]
        path = "auth-client"
        mode = "0700"
        [[service.auth.unix_listener]]
        path = "auth-master"
        mode = 0o700
        [[service.auth.unix_listener]]
        path = "auth-off"
        mode = 0
        "#,
    );
    let listeners = &octal.services[0].unix_listeners;
    assert_eq!(listeners[0].mode.value.bits(), 0o700);
    assert_eq!(listeners[1].mode.value.bits(), 0o700);
    assert!(listeners[2].mode.value.disables());

    let decimal = parse(
        r#"
        [service.auth]
        executable = "/usr/lib/dovecot/auth"
        [[service.auth.unix_listener]]
        path = "auth-client"
        mode = 700
        "#,
    )
    .expect_err("a decimal mode must be refused");
    assert_eq!(decimal.len(), 1);
    assert!(
        decimal.to_string().contains(r#"write mode = "0700""#),
        "{decimal}"
    );
}

// seed: priv.drop_priv_before_exec
#[test]
fn dropping_privileges_before_exec_cannot_be_combined_with_a_chroot() {
    let refused = parse(
        r#"
        [service.imap-login]
        executable = "/usr/lib/dovecot/imap-login"
        chroot = "login"
        drop_priv_before_exec = true
        "#,
    )
    .expect_err("drop_priv_before_exec with a chroot must be refused");
    assert!(
        refused
            .to_string()
            .contains("drop_priv_before_exec cannot be combined with chroot"),
        "{refused}"
    );

    let accepted = parse_ok(
        r#"
        [service.doveadm]
        executable = "/usr/lib/dovecot/doveadm-server"
        chroot = ""
        drop_priv_before_exec = true
        "#,
    );
    assert!(accepted.services[0].drop_priv_before_exec.value);
    assert_eq!(accepted.services[0].chroot.value, None);
}

// seed: basics.executable
#[test]
fn a_relative_executable_is_found_under_base_dir() {
    let config = parse_ok(
        r#"
        base_dir = "/srv/warden"
        [service.relative]
        executable = "bin/greeter --name 'a b'"
        [service.absolute]
        executable = "/usr/bin/greeter"
        "#,
    );
    assert_eq!(
        config.services[0].executable.value.argv,
        ["/srv/warden/bin/greeter", "--name", "a b"]
    );
    assert_eq!(
        config.services[1].executable.value.argv,
        ["/usr/bin/greeter"]
    );
}

// seed: priv.chroot
#[test]
fn a_relative_chroot_is_under_base_dir_and_may_not_leave_it() {
    let config = parse_ok(
        r#"
        base_dir = "/srv/warden"
        [service.login]
        executable = "/usr/bin/login"
        chroot = "login"
        [service.here]
        executable = "/usr/bin/here"
        chroot = "."
        "#,
    );
    assert_eq!(
        config.services[0].chroot.value.as_deref(),
        Some(Path::new("/srv/warden/login"))
    );
    assert_eq!(
        config.services[1].chroot.value.as_deref(),
        Some(Path::new("/srv/warden"))
    );
    let escaping = parse(
        r#"
        base_dir = "/srv/warden"
        [service.login]
        executable = "/usr/bin/login"
        chroot = "../login"
        "#,
    )
    .expect_err("a chroot leaving base_dir must be refused");
    assert!(
        escaping.to_string().contains("leaves base_dir"),
        "{escaping}"
    );
}

// seed: listen.unix.path
#[test]
fn relative_unix_and_fifo_paths_are_under_base_dir() {
    let config = parse_ok(
        r#"
        base_dir = "/srv/warden"
        [service.auth]
        executable = "/usr/lib/dovecot/auth"
        [[service.auth.unix_listener]]
        path = "login/login"
        [[service.auth.unix_listener]]
        path = "/var/run/auth.sock"
        [[service.auth.fifo_listener]]
        path = "auth-fifo"
        "#,
    );
    let service = &config.services[0];
    assert_eq!(
        service.unix_listeners[0].path.value,
        Path::new("/srv/warden/login/login")
    );
    assert_eq!(
        service.unix_listeners[1].path.value,
        Path::new("/var/run/auth.sock")
    );
    assert_eq!(
        service.fifo_listeners[0].path.value,
        Path::new("/srv/warden/auth-fifo")
    );
}

#[test]
fn a_relative_base_dir_is_relative_to_the_configuration_file() {
    let source = "base_dir = \"../target/run\"\n[service.echo]\nexecutable = \"../release/echo\"\n";
    let config = Config::parse_in("conf/q.toml", Some(Path::new("/srv/project/conf")), source)
        .unwrap_or_else(|problems| panic!("{problems}"));
    assert_eq!(
        config.globals.base_dir.value,
        Path::new("/srv/project/target/run")
    );
    assert_eq!(
        config.services[0].executable.value.argv,
        ["/srv/project/target/release/echo"]
    );
    // Without a file to be relative to, base_dir must be absolute.
    assert!(Config::parse("q.toml", source).is_err());
}

#[test]
fn every_mistake_is_reported_in_one_pass_in_file_order() {
    let problems = parse(
        r#"
        [service.imap]
        executable = ""
        client_limt = 1
        [[service.imap.unix_listener]]
        path = "login/imap"
        mode = 666
        "#,
    )
    .expect_err("three mistakes");
    assert_eq!(problems.len(), 3);
    let text = problems.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("test.toml:3:"), "{text}");
    assert!(lines[1].starts_with("test.toml:4:"), "{text}");
    assert!(lines[2].starts_with("test.toml:7:"), "{text}");
}

#[test]
fn the_annotated_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf/warden.toml");
    let source = std::fs::read_to_string(&path).expect("read conf/warden.toml");
    let config = parse_ok(&source);
    for name in [
        "anvil",
        "auth",
        "auth-worker",
        "config",
        "dict",
        "dict-async",
        "director",
        "dns_client",
        "doveadm",
        "imap",
        "pop3",
        "submission",
        "managesieve",
        "imap-login",
        "pop3-login",
        "submission-login",
        "managesieve-login",
        "indexer",
        "indexer-worker",
        "ipc",
        "lmtp",
        "log",
        "stats",
    ] {
        assert!(
            config.service(name).is_some(),
            "conf/warden.toml lacks {name}"
        );
    }
}
