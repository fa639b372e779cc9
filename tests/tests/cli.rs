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
fn the_annotated_configuration_checks_clean_where_dovecot_is_installed() {
    let output = warden(&["check", "-c", conf().to_str().expect("utf-8 path")]);
    let users = ["dovecot", "dovenull"].map(|name| {
        warden_sys::ids::user(name)
            .expect("look up a user")
            .is_some()
    });
    let config = warden::config::Config::load(&conf()).expect("read conf/warden.toml");
    let missing: Vec<&str> = config
        .services
        .iter()
        .filter(|service| config.runs(service))
        .filter_map(|service| service.executable.value.argv.first())
        .map(String::as_str)
        .filter(|program| !Path::new(program).exists())
        .collect();
    if users == [true, true] && missing.is_empty() {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert!(text(&output.stdout).contains("ok; 23 services"));
        // Every plugin warden embeds, each named as built-in.
        for (plugin, _) in warden_policy::BUILTINS {
            assert!(
                text(&output.stdout).contains(&format!("{plugin} (built-in)")),
                "{}",
                text(&output.stdout)
            );
        }
    } else {
        // Without Debian's Dovecot packages, the users and programs they
        // install are missing, and check names each with the setting to
        // change.
        assert_eq!(output.status.code(), Some(78));
        let stderr = text(&output.stderr);
        if users != [true, true] {
            assert!(stderr.contains("or change default_"), "{stderr}");
        }
        for program in missing {
            assert!(
                stderr.contains(&format!(
                    "the program {program} does not exist; install it there"
                )),
                "{stderr}"
            );
        }
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
    // A file that checks clean on any system, unlike conf/warden.toml,
    // which needs Dovecot installed.
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        warden_tests::write_config(dir.path(), "[service.shell]\nexecutable = \"/bin/sh\"\n");
    let output = Command::new(warden_tests::warden())
        .arg("check")
        .env("WARDEN_CONFIG", &config)
        .output()
        .expect("run warden");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).starts_with(&format!("{}: ok; 1 services", config.display())),
        "{}",
        text(&output.stdout)
    );
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
fn policy_test_names_a_scenario_it_cannot_read_and_exits_66() {
    let args = ["policy", "test", "p.wasm", "s.toml"];
    let output = warden(&args);
    assert_eq!(output.status.code(), Some(66), "warden {args:?}");
    assert!(output.stdout.is_empty(), "warden {args:?} printed output");
    assert!(
        text(&output.stderr).contains("cannot read the scenario s.toml"),
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

/// A file at `path` with `mode`.
fn file_with_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, "#!/bin/sh\n").expect("write a file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `mode 0NNN, owner UID:GID` of `path`, as check shows them.
fn mode_and_owner(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).expect("stat");
    format!(
        "mode {:04o}, owner {}:{}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    )
}

#[test]
fn check_reports_every_executable_and_chroot_that_cannot_work_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let at = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("programs")).expect("mkdir");
    file_with_mode(&dir.path().join("plain"), 0o644);
    file_with_mode(&dir.path().join("owners"), 0o754);
    file_with_mode(&dir.path().join("jail"), 0o644);
    let config = warden_tests::write_config(
        dir.path(),
        &format!(
            r#"
[service.directory]
executable = "{at}/programs"

[service.plain]
executable = "{at}/plain --flag"

[service.owners]
executable = "{at}/owners"
user = "nobody"

[service.jailed]
executable = "/bin/sh"
chroot = "{at}/jail"
"#
        ),
    );
    let output = warden_tests::check(&config);
    assert_eq!(output.status.code(), Some(78), "{}", text(&output.stderr));
    let me = nix::unistd::geteuid();
    let expected = [
        format!(
            "warden.toml:5:14: service.directory.executable: {at}/programs is a directory, not a program; name the program file in service.directory.executable"
        ),
        format!(
            "warden.toml:8:14: service.plain.executable: warden's own user (uid {me}) may not execute {at}/plain ({}); make it executable (chmod +x {at}/plain), or correct service.plain.executable",
            mode_and_owner(&dir.path().join("plain"))
        ),
        format!(
            "warden.toml:11:14: service.owners.executable: the user \"nobody\" may not execute {at}/owners ({}); make it executable (chmod +x {at}/owners), or correct service.owners.executable",
            mode_and_owner(&dir.path().join("owners"))
        ),
        format!(
            "warden.toml:16:10: service.jailed.chroot: the chroot {at}/jail is not a directory; make it one, or correct service.jailed.chroot"
        ),
        "warden.toml: 4 problems found; nothing was started".to_owned(),
    ];
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, expected) in lines.iter().zip(&expected) {
        assert!(
            line.ends_with(expected.as_str()),
            "{line}\nis not\n{expected}"
        );
    }
}

#[test]
fn run_refuses_at_start_what_check_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    file_with_mode(&dir.path().join("plain"), 0o644);
    let config = warden_tests::write_config(
        dir.path(),
        &format!(
            "[service.plain]\nexecutable = \"{}/plain\"\n",
            dir.path().display()
        ),
    );
    let checked = warden_tests::check(&config);
    assert_eq!(checked.status.code(), Some(78), "{}", text(&checked.stderr));
    let mut run = Command::new(warden_tests::warden())
        .arg("run")
        .arg("-c")
        .arg(&config)
        .env_remove("WARDEN_CONFIG")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start warden run");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.try_wait().expect("wait for warden run") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = run.kill();
            panic!("warden run started a configuration check refuses");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert_eq!(status.code(), Some(78), "{stderr}");
    // What run printed before (the plugins it compiled) is progress; the
    // problems are check's, word for word.
    assert!(stderr.ends_with(&text(&checked.stderr)), "{stderr}");
}

#[test]
fn a_reload_to_an_executable_that_cannot_run_is_refused_and_the_old_one_serves() {
    let port = warden_tests::free_port();
    let service = |executable: &str| {
        format!(
            "[service.echo]\nexecutable = {executable:?}\nprocess_min_avail = 1\n\n[[service.echo.inet_listener]]\nname = \"echo\"\naddress = \"127.0.0.1\"\nport = {port}\n"
        )
    };
    let echo = warden_tests::echo().display().to_string();
    let warden = warden_tests::Running::start(&service(&echo));
    let wait = std::time::Duration::from_secs(20);
    warden.wait_for("the echo process", wait, || warden.pids("echo").len() == 1);
    let before = warden.pids("echo");
    let programs = warden.dir().join("programs");
    std::fs::create_dir(&programs).expect("mkdir");
    warden.reload_with(&service(&programs.display().to_string()));
    warden.wait_for("the reload to be refused", wait, || {
        warden
            .log()
            .contains("configuration reload failed; the running configuration stays")
    });
    assert!(
        warden.log().contains(&format!(
            "service.echo.executable: {} is a directory, not a program",
            programs.display()
        )),
        "{}",
        warden.log()
    );
    assert_eq!(warden.pids("echo"), before);
    let mut client = warden_tests::LineClient::connect(port).expect("connect");
    assert_eq!(client.echo_pid(), before[0]);
}

/// Runs `warden run` on an empty configuration until its control socket
/// answers, then stops it; what it wrote to stderr, a pipe. With
/// `journal_stream`, `JOURNAL_STREAM` is set: to the pipe's device and
/// inode for `"the pipe"`, else to the value given; `env` is added.
fn run_briefly(journal_stream: Option<&str>, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    run_briefly_in(&dir, "", &[], journal_stream, env, None)
}

/// Like [`run_briefly`], in `dir`, with `body` as the configuration and
/// warden started by the command `wrapper` (warden and its arguments
/// after it) when it is not empty; with `running`, stopped only once that
/// service has a process.
fn run_briefly_in(
    dir: &tempfile::TempDir,
    body: &str,
    wrapper: &[&str],
    journal_stream: Option<&str>,
    env: &[(&str, &str)],
    running: Option<&str>,
) -> String {
    let config = warden_tests::write_config(dir.path(), body);
    let (read, write) = nix::unistd::pipe().expect("a pipe");
    let stream = nix::sys::stat::fstat(&write).expect("fstat the pipe");
    let mut command = match wrapper {
        [program, arguments @ ..] => {
            let mut command = Command::new(program);
            command.args(arguments).arg(warden_tests::warden());
            command
        }
        [] => Command::new(warden_tests::warden()),
    };
    command
        .args(["run", "-c"])
        .arg(&config)
        .env("WARDEN_LOG", "debug")
        .env_remove("JOURNAL_STREAM")
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::from(write));
    if let Some(stream_of) = journal_stream {
        let value = match stream_of {
            "the pipe" => format!("{}:{}", stream.st_dev, stream.st_ino),
            other => other.to_owned(),
        };
        command.env("JOURNAL_STREAM", value);
    }
    let mut child = command.spawn().expect("start warden run");
    // Its copy of the pipe's write end, so the read ends with warden.
    drop(command);
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
    let control = dir.path().join("run/control");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let has_process = |service: &str| {
        matches!(
            warden::control::request(&control, &warden::control::Request::Status),
            Ok(warden::control::Response::Status { services })
                if services.iter().any(|s| s.name == service && s.processes > 0)
        )
    };
    while (!control.exists() || running.is_some_and(|service| !has_process(service)))
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("stop warden");
    child.wait().expect("collect warden");
    let mut log = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(read), &mut log).expect("read the log");
    log
}

#[test]
fn the_log_on_a_pipe_is_plain_text_without_the_plugin_runtime_s_internals() {
    let log = run_briefly(None, &[]);
    assert!(log.contains("warden started"), "{log}");
    // The SIGTERM came the moment the control socket appeared: the master
    // heard it and stopped, rather than meeting SIGTERM's default end.
    assert!(log.contains("warden stopped"), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes on a pipe:\n{log}");
    assert!(
        !log.contains("cranelift") && !log.contains("wasmtime::"),
        "the plugin runtime's debug lines at WARDEN_LOG=debug:\n{log}"
    );
    // Another stream than stderr is not the journal.
    assert!(
        !run_briefly(Some("1:2"), &[]).starts_with('<'),
        "not the journal's stream"
    );
}

/// Where journald listens for records; the journal tests below stand in
/// for it only where it does not run.
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

#[test]
fn under_the_journal_each_line_goes_as_a_record_with_its_priority_and_fields() {
    if !warden_tests::root_or_skip("the journal record test (it mounts in a namespace of its own)")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("journal.socket");
    let journal = std::os::unix::net::UnixDatagram::bind(&socket).expect("bind the journal");
    // Read as they come, as journald does: a socket holds only a few
    // unread records (net.unix.max_dgram_qlen) before a sender waits.
    journal
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .expect("a read timeout");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut records = Vec::new();
            let mut buffer = vec![0_u8; 1 << 16];
            loop {
                match journal.recv(&mut buffer) {
                    Ok(read) => {
                        records.push(String::from_utf8_lossy(&buffer[..read]).into_owned());
                    }
                    Err(_) if done.load(std::sync::atomic::Ordering::Acquire) => return records,
                    Err(_) => {}
                }
            }
        })
    };
    // In a mount namespace of its own, warden finds this test's socket
    // where journald's is.
    let script = format!(
        "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && touch {JOURNAL_SOCKET} \
         && mount --bind {} {JOURNAL_SOCKET} && exec \"$0\" \"$@\"",
        socket.display()
    );
    let port = warden_tests::free_port();
    let stderr = run_briefly_in(
        &dir,
        &warden_tests::echo_service("echo", port, "process_min_avail = 1"),
        &[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ],
        Some("the pipe"),
        &[("WARDEN_LOG", "debug")],
        Some("echo"),
    );
    done.store(true, std::sync::atomic::Ordering::Release);
    let records = reader.join().expect("the journal's reader");
    assert!(
        !stderr.contains("warden started"),
        "lines on stderr, not in the journal:\n{stderr}"
    );
    let started = records
        .iter()
        .find(|record| record.contains("warden started"))
        .unwrap_or_else(|| panic!("no record of the start in {records:#?}"));
    assert!(started.starts_with("PRIORITY=6\n"), "{started}");
    assert!(started.contains("SYSLOG_IDENTIFIER=warden\n"), "{started}");
    let spawned = records
        .iter()
        .find(|record| record.contains("process started"))
        .unwrap_or_else(|| panic!("no record of echo's process in {records:#?}"));
    assert!(spawned.starts_with("PRIORITY=7\n"), "{spawned}");
    assert!(spawned.contains("\nSERVICE=echo\n"), "{spawned}");
    assert!(spawned.contains("\nPID="), "{spawned}");
}

#[test]
fn under_the_journal_each_line_carries_its_priority_and_no_time() {
    if Path::new(JOURNAL_SOCKET).exists() {
        eprintln!("skipped: journald runs here, and takes the records instead of stderr");
        return;
    }
    // The contract parser's debug lines, asked for by name, are debug
    // lines an empty configuration has.
    let log = run_briefly(
        Some("the pipe"),
        &[("WARDEN_LOG", "debug,wit_parser=debug")],
    );
    let started = log
        .lines()
        .find(|line| line.contains("warden started"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(started.starts_with("<6>"), "{started}");
    assert!(
        log.lines().any(|line| line.starts_with("<7>")),
        "debug lines at <7>:\n{log}"
    );
    assert!(
        log.lines()
            .all(|line| line.starts_with('<') && !line.contains("2026-")),
        "every line prioritised, without a timestamp:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[test]
fn with_the_json_log_format_each_line_is_one_object_with_its_fields() {
    let log = run_briefly(None, &[("WARDEN_LOG_FORMAT", "json")]);
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let started = lines
        .iter()
        .find(|line| line["message"] == "warden started")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(started["level"], "INFO", "{started}");
    assert!(started["timestamp"].is_string(), "{started}");
    // A field is a key of its own, for a log shipper to index.
    assert!(started["config"].is_string(), "{started}");
    assert!(
        !log.contains("wit_parser"),
        "the contract parser's debug lines at WARDEN_LOG=debug:\n{log}"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let Some(analyze) = which("systemd-analyze") else {
        eprintln!("skipped the_systemd_unit_verifies: systemd-analyze is not installed");
        return;
    };
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd/warden.service"),
    )
    .expect("read the unit");
    assert!(unit.contains("Type=notify") && unit.contains("ExecStop=/usr/sbin/warden stop"));
    // The binary at the path the unit names, and no man page to look up.
    let dir = tempfile::tempdir().expect("tempdir");
    let installed = unit
        .replace(
            "/usr/sbin/warden",
            &warden_tests::warden().display().to_string(),
        )
        .lines()
        .filter(|line| !line.starts_with("Documentation="))
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("warden.service");
    std::fs::write(&path, installed).expect("write the unit");
    let output = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        output.status.success() && !said.contains("warden.service"),
        "systemd-analyze verify:\n{said}"
    );
}

/// The path of `program` on `PATH`.
fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

#[test]
fn completions_and_the_manual_page_are_printed_for_installing() {
    let bash = warden(&["completions", "bash"]);
    assert!(bash.status.success());
    let script = text(&bash.stdout);
    assert!(
        script.contains("_warden()") && script.contains("import"),
        "{script}"
    );
    let manual = warden(&["manual"]);
    assert!(manual.status.success());
    let page = text(&manual.stdout);
    assert!(page.contains(".TH warden 1"), "{page}");
    for command in ["run", "check", "status", "stop", "import", "policy"] {
        assert!(
            page.contains(command),
            "the manual lacks {command}:\n{page}"
        );
    }
    let unknown = warden(&["completions", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn config_n_prints_only_what_the_file_writes_and_reads_back_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        "default_process_limit = 50\n\
         [service.imap-login]\nexecutable = \"/bin/cat\"\nprocess_min_avail = 2\n\
         [[service.imap-login.inet_listener]]\nname = \"imap\"\nport = 10143\n",
    );
    let output = Command::new(warden_tests::warden())
        .args(["config", "-n", "-c"])
        .arg(&config)
        .output()
        .expect("run warden config -n");
    let written = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    for line in written.lines().filter(|l| l.contains(" = ")) {
        assert!(
            line.ends_with("# file"),
            "a setting the file does not write: {line}"
        );
    }
    assert!(written.contains("default_process_limit = 50"), "{written}");
    assert!(written.contains("process_min_avail = 2"), "{written}");
    assert!(written.contains("name = \"imap\""), "{written}");
    assert!(!written.contains("default_client_limit"), "{written}");
    // The login plugin's own listeners (imaps) are not the file's.
    assert!(!written.contains("imaps"), "{written}");
    // Read back, it gives the same effective configuration.
    let again = dir.path().join("again.toml");
    std::fs::write(&again, written.as_bytes()).expect("write");
    let full = |file: &Path| {
        let output = Command::new(warden_tests::warden())
            .args(["config", "-c"])
            .arg(file)
            .output()
            .expect("run warden config");
        text(&output.stdout)
            .lines()
            .skip(1)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(full(&config), full(&again));
}

#[test]
fn config_key_prints_one_setting_with_its_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        "default_process_limit = 50\n\
         [service.imap-login]\nexecutable = \"/bin/cat\"\nprocess_min_avail = 2\n",
    );
    let key = |key: &str| {
        Command::new(warden_tests::warden())
            .args(["config", key, "-c"])
            .arg(&config)
            .output()
            .expect("run warden config KEY")
    };
    let global = key("default_process_limit");
    assert!(global.status.success(), "{}", text(&global.stderr));
    assert_eq!(text(&global.stdout), "default_process_limit = 50  # file\n");
    let limit = key("service.imap-login.process_limit");
    assert_eq!(
        text(&limit.stdout),
        "service.imap-login.process_limit = 50  # from default_process_limit\n"
    );
    let json = Command::new(warden_tests::warden())
        .args([
            "config",
            "service.imap-login.process_min_avail",
            "--json",
            "-c",
        ])
        .arg(&config)
        .output()
        .expect("run warden config KEY --json");
    let found: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(
        found,
        serde_json::json!({
            "key": "service.imap-login.process_min_avail",
            "value": 2,
            "origin": "file"
        })
    );
    let whole = Command::new(warden_tests::warden())
        .args(["config", "--json", "-c"])
        .arg(&config)
        .output()
        .expect("run warden config --json");
    let whole: serde_json::Value = serde_json::from_slice(&whole.stdout).expect("JSON");
    assert_eq!(whole["default_process_limit"], 50);
    assert_eq!(whole["service"]["imap-login"]["process_limit"], 50);
    assert_eq!(whole["service"]["imap-login"]["executable"], "/bin/cat");
    let misspelt = key("service.imap-login.proces_limit");
    assert_eq!(misspelt.status.code(), Some(2));
    assert!(
        text(&misspelt.stderr).contains("did you mean service.imap-login.process_limit?"),
        "{}",
        text(&misspelt.stderr)
    );
}
