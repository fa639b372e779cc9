//! `warden policy test`, as a plugin author runs it: a scenario replayed
//! against a plugin in the master's runtime, its decisions checked, a
//! failing plugin caught, two plugins compared.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::{Path, PathBuf};
use std::process::Output;

use warden_tests::{fixture, warden};

/// The example scenario for the built-in `dovecot` plugin.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/policies/scenarios/dovecot-imap-login.toml")
}

fn policy_test(args: &[&Path]) -> (Output, String) {
    let output = std::process::Command::new(warden())
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
