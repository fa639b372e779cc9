//! The command line's surface: subcommands, exit codes, the default file.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::Path;
use std::process::{Command, Output};

fn conf() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/warden.toml")
}

fn warden(args: &[&str]) -> Output {
    Command::new(warden_tests::warden())
        .args(args)
        .env_remove("WARDEN_CONFIG")
        .output()
        .expect("run warden")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_annotated_configuration_checks_clean_where_dovecot_users_exist() {
    let output = warden(&["check", "-c", conf().to_str().expect("utf-8 path")]);
    let users = ["dovecot", "dovenull"].map(|name| {
        warden_sys::ids::user(name)
            .expect("look up a user")
            .is_some()
    });
    if users == [true, true] {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(text(&output.stdout).contains("ok; 24 services"));
        // Every plugin warden embeds, each named as built-in.
        for (plugin, _) in warden_policy::BUILTINS {
            assert!(
                text(&output.stdout).contains(&format!("{plugin} (built-in)")),
                "{}",
                text(&output.stdout)
            );
        }
    } else {
        // Without Debian's dovecot-core, the users it creates are missing,
        // and check names the setting to change.
        assert_eq!(output.status.code(), Some(78));
        assert!(
            text(&output.stderr).contains("or change default_"),
            "{}",
            text(&output.stderr)
        );
    }
}

#[test]
fn a_missing_user_is_reported_once_where_it_is_named_with_the_setting_to_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        r#"default_login_user = "no-such-login-user"
default_internal_user = "root"
default_internal_group = "root"

[service.imap-login]
executable = "/bin/true"
type = "login"
user = "$default_login_user"

[service.imap]
executable = "/bin/true"
extra_groups = ["no-such-group-for-warden"]
"#,
    );
    let output = warden_tests::check(&config);
    assert_eq!(output.status.code(), Some(78));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert!(
        lines[0].ends_with(
            "warden.toml:3:22: default_login_user: the user \"no-such-login-user\" does not exist on this system; create it (Debian's dovecot-core creates dovecot and dovenull) or change default_login_user"
        ),
        "{stderr}"
    );
    assert!(
        lines[1].contains(
            "service.imap.extra_groups: the group \"no-such-group-for-warden\" does not exist"
        ) && lines[1].ends_with("or change service.imap.extra_groups"),
        "{stderr}"
    );
}

#[test]
fn config_shows_one_service_with_the_origin_of_each_setting() {
    let conf = conf();
    let output = warden(&[
        "config",
        "-c",
        conf.to_str().expect("utf-8 path"),
        "--service",
        "imap-login",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    assert!(shown.contains("[service.imap-login]"), "{shown}");
    assert!(!shown.contains("[service.imap]"), "{shown}");
    assert!(
        shown.contains(r#"user = "dovenull""#)
            && shown.contains("# from plugin login (written as $default_login_user)"),
        "{shown}"
    );
    assert!(
        shown.contains(r#"chroot = "/run/dovecot/login""#) && shown.contains("# from plugin login"),
        "{shown}"
    );
    assert!(shown.contains("# from default_client_limit"), "{shown}");
    assert!(shown.contains("# built-in default"), "{shown}");
}

#[test]
fn what_the_file_sets_wins_over_the_plugin_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        r#"default_internal_user = "root"
default_internal_group = "root"

[service.anvil]
executable = "/bin/true"
process_limit = 3
chroot = ""
client_limit = 0
"#,
    );
    let output = warden(&[
        "config",
        "-c",
        config.to_str().expect("utf-8 path"),
        "--service",
        "anvil",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    let line = |key: &str| {
        shown
            .lines()
            .find(|line| line.starts_with(&format!("{key} = ")))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("process_limit"), "process_limit = 3 # file");
    assert_eq!(line("chroot"), r#"chroot = "" # file"#);
    assert_eq!(
        line("client_limit"),
        "client_limit = 1000 # from default_client_limit (client_limit = 0 in the file)",
        "an explicit 0 asks for the global, and the plugin does not override it"
    );
    assert_eq!(line("type"), r#"type = "anvil" # from plugin anvil"#);
    assert_eq!(
        line("idle_kill"),
        r#"idle_kill = "infinite" # from plugin anvil"#
    );
}

#[test]
fn a_user_a_plugin_default_names_is_looked_up_and_blamed_on_its_global() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        r#"default_internal_user = "no-such-internal-user"
default_internal_group = "root"

[service.anvil]
executable = "/bin/true"
chroot = ""
"#,
    );
    let output = warden_tests::check(&config);
    assert_eq!(output.status.code(), Some(78));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "default_internal_user: the user \"no-such-internal-user\" does not exist on this system"
        ) && stderr.contains("or change default_internal_user"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_service_is_a_usage_error_that_lists_the_services() {
    let conf = conf();
    let output = warden(&[
        "config",
        "-c",
        conf.to_str().expect("utf-8 path"),
        "--service",
        "imapd",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("there is no service \"imapd\""));
    assert!(text(&output.stderr).contains("imap-login"));
}

#[test]
fn the_configuration_file_comes_from_warden_config_when_not_given() {
    let output = Command::new(warden_tests::warden())
        .arg("check")
        .env("WARDEN_CONFIG", conf())
        .output()
        .expect("run warden");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
}

#[test]
fn a_missing_configuration_file_exits_66_and_says_how_to_name_another() {
    let output = warden(&["check", "-c", "/nonexistent/warden.toml"]);
    assert_eq!(output.status.code(), Some(66));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("/nonexistent/warden.toml"), "{stderr}");
    assert!(stderr.contains("-c FILE or WARDEN_CONFIG"), "{stderr}");
}

#[test]
fn policy_test_is_not_built_yet_and_says_so_with_exit_69() {
    let args = ["policy", "test", "p.wasm", "s.toml"];
    let output = warden(&args);
    assert_eq!(output.status.code(), Some(69), "warden {args:?}");
    assert!(output.stdout.is_empty(), "warden {args:?} printed output");
    assert!(
        text(&output.stderr).contains("not available in this version"),
        "warden {args:?}: {}",
        text(&output.stderr)
    );
}

#[test]
fn control_commands_without_a_running_master_say_so_and_exit_69() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(dir.path(), "");
    let config = config.to_str().expect("utf-8 path");
    for args in [
        &["status", "-c", config][..],
        &["ps", "-c", config],
        &["reload", "-c", config],
        &["stop", "-c", config],
        &["kick", "-c", config, "1234"],
        &["kick", "-c", config, "--connection", "7"],
        &["who", "-c", config],
        &["stats", "-c", config],
        &["plugins", "-c", config],
    ] {
        let output = warden(args);
        assert_eq!(output.status.code(), Some(69), "warden {args:?}");
        assert!(
            text(&output.stderr).contains("cannot reach the master"),
            "warden {args:?}: {}",
            text(&output.stderr)
        );
    }
}

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let output = warden(&["--help"]);
    assert!(output.status.success());
    let help = text(&output.stdout);
    for command in [
        "run", "check", "config", "status", "ps", "reload", "stop", "kick", "who", "stats",
        "plugins", "policy",
    ] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "--help lacks {command}:\n{help}"
        );
    }
    for code in ["66", "69", "78"] {
        assert!(
            help.contains(&format!("  {code}  ")),
            "--help lacks exit code {code}"
        );
    }
}

#[test]
fn a_listener_in_the_file_replaces_the_default_of_its_name_and_keeps_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        r#"
[service.imap-login]
executable = "/bin/true"

[[service.imap-login.inet_listener]]
name = "imap"
port = 0

[service.auth]
executable = "/bin/true"

[[service.auth.unix_listener]]
path = "/var/spool/postfix/private/auth"
mode = "0660"
"#,
    );
    let output = warden(&["config", "-c", config.to_str().expect("utf-8 path")]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    assert!(
        shown.contains("# not created: port 0 disables the listener\nname = \"imap\""),
        "{shown}"
    );
    assert!(
        shown.contains("name = \"imaps\"    # from plugin login"),
        "{shown}"
    );
    assert!(shown.contains("/var/spool/postfix/private/auth"), "{shown}");
    for default in ["auth-userdb", "auth-master", "login/login"] {
        assert!(
            shown.contains(&format!("/{default}\"")),
            "no {default}: {shown}"
        );
    }
}
