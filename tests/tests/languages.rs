//! Plugins written in other languages, as their authors build them: the
//! example is built with its toolchain, passes its scenario in `warden
//! policy test`, and, dropped into a running master's `plugins_dir`,
//! decides there. A test whose toolchain is not installed says so and
//! skips; CI installs them.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_tests::{LineClient, Running, free_port, warden, whoami};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds `examples/policies/python-admission` into `out` with
/// componentize-py; `None` (with the reason printed) when it is not
/// installed.
fn build_python_admission(test: &str, out: &Path) -> Option<PathBuf> {
    let wasm = out.join("python-admission.wasm");
    let built = std::process::Command::new("componentize-py")
        .arg("-d")
        .arg(root().join("wit"))
        .args(["-w", "admission-plugin", "componentize", "app", "-o"])
        .arg(&wasm)
        .current_dir(root().join("examples/policies/python-admission"))
        .output();
    match built {
        Ok(output) if output.status.success() => Some(wasm),
        Ok(output) => panic!(
            "componentize-py failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => {
            eprintln!(
                "skipped {test}: componentize-py is not installed (pip install componentize-py==0.25.1)"
            );
            None
        }
    }
}

#[test]
fn the_python_admission_example_passes_its_scenario_and_decides_in_a_running_master() {
    let test = "the_python_admission_example_passes_its_scenario_and_decides_in_a_running_master";
    let out = tempfile::tempdir().expect("tempdir");
    let Some(wasm) = build_python_admission(test, out.path()) else {
        return;
    };
    let example = root().join("examples/policies/python-admission");
    let tested = std::process::Command::new(warden())
        .args(["policy", "test"])
        .arg(&wasm)
        .arg(example.join("scenario.toml"))
        .output()
        .expect("run warden policy test");
    let report = String::from_utf8_lossy(&tested.stdout);
    assert!(tested.status.success(), "{report}");
    assert!(report.contains("3 steps, 3 passed, 0 failed"), "{report}");

    // Dropped into a running master: a login-like inetd service whose
    // clients come from 127.0.0.1, which the granted deny list names.
    let plugins = out.path().join("plugins");
    let grant = out.path().join("grant");
    std::fs::create_dir(&plugins).expect("mkdir plugins");
    std::fs::create_dir(&grant).expect("mkdir grant");
    std::fs::write(grant.join("deny"), "127.0.0.1\n").expect("write the deny list");
    let port = free_port();
    let warden = Running::start(&format!(
        r#"plugins_dir = "{plugins}"

[plugin.python-admission]
directory = "{grant}"
deadline = "500ms"

[service.whoami-login]
executable = "{whoami}"
interface = "inetd"

[[service.whoami-login.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {port}
"#,
        plugins = plugins.display(),
        grant = grant.display(),
        whoami = whoami().display(),
    ));
    // Dropped in while warden runs: compiled by the helper and loaded off
    // the event loop (minutes, the first time, for a debug build).
    std::fs::copy(&wasm, plugins.join("python-admission.wasm")).expect("drop the plugin in");
    warden.wait_for(
        "the plugin loaded, or refused",
        Duration::from_secs(600),
        || {
            let log = warden.log();
            log.contains("plugin loaded plugin=\"python-admission\"") || log.contains("is not used")
        },
    );
    let log = warden.log();
    assert!(
        log.contains("plugin loaded plugin=\"python-admission\""),
        "the plugin was not loaded:\n{log}"
    );
    let mut client = LineClient::connect(port).expect("connect");
    let answer = client.line().expect("read");
    assert_eq!(answer, None, "a denied address is closed unanswered");
    warden.wait_for("the refusal logged", Duration::from_secs(20), || {
        warden
            .log()
            .contains("refusing 127.0.0.1: on the deny list")
    });
    let stats = warden.cli(&["stats"]);
    let metrics = String::from_utf8_lossy(&stats.stdout);
    assert!(
        metrics.contains("reason=\"deny-list\""),
        "the refusal is counted by its reason:\n{metrics}"
    );
}
