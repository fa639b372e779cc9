//! The configuration as operators meet it: `warden check` and `warden config`
//! run on every file under `tests/ui/`.
//!
//! - `ui/invalid/CASE.toml` must make `warden check` exit 78 and print
//!   exactly `ui/invalid/CASE.err` on stderr.
//! - `ui/valid/CASE.toml` must be accepted by `warden config`, which must
//!   print exactly `ui/valid/CASE.stdout`; that output, read back as a
//!   configuration, must give the same effective values.
//!
//! Run with `WARDEN_BLESS=1` to rewrite the expected files after an
//! intended change of wording, then review the diff.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Exit code of `warden check` for a configuration with problems.
const EXIT_BAD_CONFIG: i32 = 78;

fn cases(kind: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui").join(kind);
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

/// Runs `warden ARGS -c FILE` in the case's directory, so that messages name
/// the file as `CASE.toml` whatever the checkout's path.
fn warden(case: &Path, args: &[&str]) -> Output {
    let dir = case.parent().expect("case directory");
    let file = case.file_name().expect("case file name");
    Command::new(warden_tests::warden())
        .args(args)
        .arg("-c")
        .arg(file)
        .current_dir(dir)
        .env_remove("WARDEN_CONFIG")
        .output()
        .expect("run warden")
}

/// Compares `actual` with the expected file, or rewrites it when blessing.
/// Returns a description of the difference, if any.
fn compare(expected_file: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("WARDEN_BLESS").is_some() {
        fs::write(expected_file, actual).expect("write the expected file");
        return None;
    }
    let expected = fs::read_to_string(expected_file).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{} differs\n--- expected\n{expected}\n--- actual\n{actual}",
            expected_file.display()
        )
    })
}

fn fail_on(mismatches: &[String]) {
    assert!(
        mismatches.is_empty(),
        "{}\n\n(run with WARDEN_BLESS=1 to accept the new output)",
        mismatches.join("\n\n")
    );
}

#[test]
fn invalid_configurations_print_every_problem_and_exit_78() {
    let mut mismatches = Vec::new();
    for case in cases("invalid") {
        let output = warden(&case, &["check"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.code() != Some(EXIT_BAD_CONFIG) {
            mismatches.push(format!(
                "{}: expected exit {EXIT_BAD_CONFIG}, got {:?}\n{stderr}",
                case.display(),
                output.status.code()
            ));
            continue;
        }
        assert!(
            output.stdout.is_empty(),
            "{}: check printed to stdout",
            case.display()
        );
        mismatches.extend(compare(&case.with_extension("err"), &stderr));
    }
    fail_on(&mismatches);
}

#[test]
fn valid_configurations_pass_and_show_their_effective_settings() {
    let mut mismatches = Vec::new();
    for case in cases("valid") {
        // `config` parses and validates as `check` does; `check` also asks
        // the system for users and plugins, which other tests cover.
        let shown = warden(&case, &["config"]);
        if !shown.status.success() {
            mismatches.push(format!(
                "{}: config failed\n{}",
                case.display(),
                String::from_utf8_lossy(&shown.stderr)
            ));
            continue;
        }
        let stdout = String::from_utf8_lossy(&shown.stdout);
        mismatches.extend(compare(&case.with_extension("stdout"), &stdout));
        mismatches.extend(reads_back_the_same(&case, &stdout));
    }
    fail_on(&mismatches);
}

/// The settings of `warden config` output, without comments or the header.
fn settings_only(shown: &str) -> String {
    shown
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| line.split("  # ").next().unwrap_or(line).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Feeds `warden config` output back to `warden config`: the effective
/// values must not change.
fn reads_back_the_same(case: &Path, shown: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let again = dir.path().join(case.file_name().expect("case file name"));
    fs::write(&again, shown).expect("write the effective configuration");
    let output = warden(&again, &["config"]);
    let shown_again = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Some(format!(
            "{}: the effective configuration does not read back:\n{}",
            case.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let (first, second) = (settings_only(shown), settings_only(&shown_again));
    (first != second).then(|| {
        format!(
            "{}: the effective configuration reads back differently\n--- first\n{first}\n--- read back\n{second}",
            case.display()
        )
    })
}
