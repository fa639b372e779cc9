//! `warden policy test`, as a plugin author runs it: a scenario replayed
//! against a plugin in the master's runtime, its decisions checked, a
//! failing plugin caught, two plugins compared; and `warden policy
//! record`, a running master's decisions written as a scenario.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::{Path, PathBuf};
use std::process::Output;

use std::time::Duration;

use warden_tests::{LineClient, Running, echo, fixture, free_port};

/// The example scenario for the built-in `dovecot` plugin.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/plugins/scenarios/dovecot-imap-login.toml")
}

fn policy_test(args: &[&Path]) -> (Output, String) {
    let output = std::process::Command::new(warden_tests::warden())
        .arg("policy")
        .arg("test")
        .args(args)
        .output()
        .expect("run warden policy test");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, stdout)
}

#[test]
fn the_built_in_dovecot_plugin_passes_its_example_scenario() {
    let (output, stdout) = policy_test(&[Path::new("builtin:dovecot"), &example()]);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains("step 1 (scaling at 0s): ok: start 2"),
        "{stdout}"
    );
    assert!(stdout.contains("5 steps, 5 passed, 0 failed"), "{stdout}");
}

#[test]
fn a_decision_that_differs_from_the_expectation_fails_with_both_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("wrong.toml");
    let text = std::fs::read_to_string(example()).expect("read the example");
    std::fs::write(
        &scenario,
        text.replacen("expect = { start = 2 }", "expect = { start = 3 }", 1),
    )
    .expect("write the scenario");
    let (output, stdout) = policy_test(&[Path::new("builtin:dovecot"), &scenario]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("step 1 (scaling at 0s): FAIL: start 2\n    expected 3, got 2"),
        "{stdout}"
    );
    assert!(stdout.contains("5 steps, 4 passed, 1 failed"), "{stdout}");
}

#[test]
fn a_plugin_that_traps_fails_its_step_and_says_how() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("trap.wasm");
    std::fs::write(&plugin, fixture("trap")).expect("write the plugin");
    let scenario = dir.path().join("idle.toml");
    std::fs::write(
        &scenario,
        "[service]\nname = \"imap\"\nidle_kill = \"60s\"\n\
         [[step]]\nat = \"90s\"\nhook = \"idle\"\nlowwater = 1\n\
         processes = [{ pid = 7, clients = 0, idle_since = \"1s\" }]\n\
         expect = { at_most = 1 }\n",
    )
    .expect("write the scenario");
    let (output, stdout) = policy_test(&[&plugin, &scenario]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("the plugin trapped"),
        "{stdout}"
    );
    assert!(stdout.contains("warden's fallback answered"), "{stdout}");
}

#[test]
fn a_broken_scenario_is_refused_with_its_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scenario = dir.path().join("broken.toml");
    std::fs::write(
        &scenario,
        "[service]\nname = \"x\"\n\n[[step]]\nhook = \"idle\"\nexpect = { decision = \"x\" }\n",
    )
    .expect("write the scenario");
    let (output, _) = policy_test(&[Path::new("builtin:dovecot"), &scenario]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("broken.toml:4:1: step 1: expect.decision does not apply to the Idle hook"),
        "{stderr}"
    );
}

#[test]
fn compare_shows_where_two_plugins_decide_differently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("retire-nothing.wasm");
    std::fs::write(&plugin, fixture("retire-nothing")).expect("write the plugin");
    let scenario = dir.path().join("idle.toml");
    std::fs::write(
        &scenario,
        "[service]\nname = \"imap\"\nidle_kill = \"60s\"\n\
         [[step]]\nat = \"90s\"\nhook = \"idle\"\nlowwater = 2\n\
         processes = [{ pid = 7, clients = 0, idle_since = \"1s\" }, { pid = 8, clients = 0, idle_since = \"2s\" }]\n\
         expect = { at_most = 2 }\n",
    )
    .expect("write the scenario");
    let (output, stdout) = policy_test(&[
        Path::new("--compare"),
        Path::new("builtin:dovecot"),
        &plugin,
        &scenario,
    ]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("step 1 (idle at 1m 30s): old [ask-to-exit 7, ask-to-exit 8] / new []")
            || stdout.contains("step 1 (idle at 90s): old [ask-to-exit 7, ask-to-exit 8] / new []"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 steps, 1 decided differently"),
        "{stdout}"
    );
}

#[test]
fn a_scenario_recorded_from_a_running_master_replays_with_every_decision_equal() {
    let port = free_port();
    let warden = Running::start(&format!(
        "[service.echo]\nexecutable = {echo:?}\nclient_limit = 1\nprocess_min_avail = 2\n\
         idle_kill = \"1s\"\n\n[[service.echo.inet_listener]]\nname = \"echo\"\n\
         address = \"127.0.0.1\"\nport = {port}\n",
        echo = echo().display().to_string(),
    ));
    let wait = Duration::from_secs(20);
    warden.wait_for("two echo processes", wait, || {
        warden.pids("echo").len() == 2
    });
    let scenario = warden.dir().join("recorded.toml");
    let recorder = std::process::Command::new(warden_tests::warden())
        .arg("--socket")
        .arg(warden.control_socket())
        .args(["policy", "record", "echo", "--seconds", "4", "-o"])
        .arg(&scenario)
        .spawn()
        .expect("start warden policy record");
    // What the recording sees: connections that start processes beyond
    // the preforked ones, their idle retirement, and a process killed.
    std::thread::sleep(Duration::from_millis(500));
    let clients: Vec<LineClient> = (0..4)
        .map(|_| LineClient::connect(port).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(clients);
    let victim = warden.pids("echo")[0];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill an echo process");
    let recorded = recorder.wait_with_output().expect("wait for the recording");
    assert!(recorded.status.success(), "{recorded:?}\n{}", warden.log());
    let text = std::fs::read_to_string(&scenario).expect("the scenario was written");
    for hook in ["scaling", "idle", "lifecycle"] {
        assert!(
            text.contains(&format!("hook = \"{hook}\"")),
            "no {hook} call recorded:\n{text}"
        );
    }
    assert!(text.contains(&format!("pid = {victim}")), "{text}");

    let (output, stdout) = policy_test(&[Path::new("builtin:dovecot"), &scenario]);
    assert!(output.status.success(), "{stdout}\n{text}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(summary.ends_with(" passed, 0 failed"), "{stdout}");
}

#[test]
fn recording_an_unknown_service_or_for_too_long_is_refused_with_what_to_do() {
    let port = free_port();
    let warden = Running::start(&format!(
        "[service.echo]\nexecutable = {echo:?}\n\n[[service.echo.inet_listener]]\n\
         name = \"echo\"\naddress = \"127.0.0.1\"\nport = {port}\n",
        echo = echo().display().to_string(),
    ));
    // Too long a recording is refused, and the master goes on.
    let too_long = warden.cli(&[
        "policy",
        "record",
        "echo",
        "--seconds",
        &u64::MAX.to_string(),
    ]);
    assert_eq!(too_long.status.code(), Some(1), "{too_long:?}");
    assert!(
        String::from_utf8_lossy(&too_long.stderr).contains("a recording lasts 3600 s at most"),
        "{too_long:?}"
    );
    let output = warden.cli(&["policy", "record", "imap", "--seconds", "1"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("there is no service \"imap\"") && stderr.contains("echo"),
        "{stderr}"
    );
}

#[test]
fn the_harness_replays_from_rust_code_as_the_command_does() {
    // The library form a plugin's own `cargo test` calls.
    let outcomes = warden::harness::replay(Path::new("builtin:dovecot"), &example())
        .expect("the example replays");
    assert_eq!(outcomes.len(), 5);
    assert!(
        outcomes.iter().all(warden::harness::Outcome::passed),
        "{}",
        warden::harness::report(&outcomes)
    );
    let missing =
        warden::harness::replay(Path::new("builtin:dovecot"), Path::new("/nonexistent.toml"));
    assert!(
        matches!(
            missing,
            Err(warden::harness::ReplayError::Scenario(
                warden::harness::ScenarioError::Read { .. }
            ))
        ),
        "{missing:?}"
    );
}

#[test]
fn steps_after_a_plugin_is_quarantined_fail_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("trap.wasm");
    std::fs::write(&plugin, fixture("trap")).expect("write the plugin");
    let scenario = dir.path().join("idle.toml");
    let step = "[[step]]\nat = \"90s\"\nhook = \"idle\"\nlowwater = 1\n\
                processes = [{ pid = 7, clients = 0, idle_since = \"1s\" }]\n\
                expect = { at_most = 1 }\n";
    std::fs::write(
        &scenario,
        format!(
            "[service]\nname = \"imap\"\nidle_kill = \"60s\"\n{}",
            step.repeat(7)
        ),
    )
    .expect("write the scenario");
    let (output, stdout) = policy_test(&[&plugin, &scenario]);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    // Five failures quarantine it; the two steps after are answered by
    // warden, and fail as well.
    assert!(stdout.contains("7 steps, 0 passed, 7 failed"), "{stdout}");
    assert!(
        stdout.contains("the plugin is quarantined after repeated failures"),
        "{stdout}"
    );
}

#[test]
fn each_example_scenario_of_a_built_in_plugin_passes() {
    // The behaviour of the built-ins, as scenarios a plugin author can
    // compare theirs against with --compare.
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/scenarios");
    for (plugin, file, steps) in [
        ("builtin:dovecot", "dovecot-imap-login.toml", 5),
        ("builtin:admission", "admission.toml", 3),
        ("builtin:login", "login-eviction.toml", 2),
        ("builtin:auth", "auth-typing.toml", 4),
    ] {
        let (output, stdout) = policy_test(&[Path::new(plugin), &scenarios.join(file)]);
        assert!(output.status.success(), "{plugin} {file}:\n{stdout}");
        assert!(
            stdout.contains(&format!("{steps} steps, {steps} passed, 0 failed")),
            "{plugin} {file}:\n{stdout}"
        );
    }
}
