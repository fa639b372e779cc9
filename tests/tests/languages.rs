//! Plugins written in Rust, Python, JavaScript and C, as their authors
//! build them: each example of `examples/plugins/LANGUAGE/POLICY` is built
//! by its `build.sh`, passes its scenario in `warden policy test`, and,
//! dropped into a running master's `plugins_dir`, decides there. An
//! example whose toolchain is not installed (its `build.sh` exits 77) says
//! so and is skipped; CI installs them all.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use warden_tests::{ExamplePlugin, LineClient, Running, free_port, warden, whoami};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An example plugin and its scenario.
struct Example(ExamplePlugin);

impl Example {
    /// The scenario it must pass: its own for admission (with its grant),
    /// the one every idle example shares.
    fn scenario(&self) -> PathBuf {
        match self.0.policy {
            "admission" => self.0.dir().join("scenario.toml"),
            _ => root().join("examples/plugins/scenarios/idle.toml"),
        }
    }

    /// Builds the example and replays its scenario; the component, or
    /// `None` when the example was skipped.
    fn passes_its_scenario(&self, out: &Path) -> Option<PathBuf> {
        let wasm = self.0.build(out)?;
        let tested = std::process::Command::new(warden())
            .args(["policy", "test"])
            .arg(&wasm)
            .arg(self.scenario())
            .output()
            .expect("run warden policy test");
        let report = String::from_utf8_lossy(&tested.stdout);
        assert!(
            tested.status.success(),
            "{} failed its scenario:\n{report}{}",
            self.0.name(),
            String::from_utf8_lossy(&tested.stderr)
        );
        assert!(report.contains(" passed, 0 failed"), "{report}");
        Some(wasm)
    }
}

/// The deadline of an example's calls in the master: generous, as the
/// tests run side by side on a CI machine's two cores, and an
/// interpreter's first calls after it is instantiated are its slowest.
const DEADLINE: &str = "5s";

/// Drops `wasm` into the running master's `plugins` directory and waits
/// until it is loaded (compiled by the helper off the event loop: minutes,
/// the first time, for a debug build of an interpreter's component).
fn drop_in(warden: &Running, plugins: &Path, name: &str, wasm: &Path) {
    std::fs::copy(wasm, plugins.join(format!("{name}.wasm"))).expect("drop the plugin in");
    let loaded = format!("plugin loaded plugin=\"{name}\"");
    warden.wait_for(
        "the plugin loaded, or refused",
        Duration::from_secs(600),
        || {
            let log = warden.log();
            log.contains(&loaded) || log.contains("is not used")
        },
    );
    let log = warden.log();
    assert!(log.contains(&loaded), "{name} was not loaded:\n{log}");
    // Logged as the set is loaded, before the master puts it in force:
    // a connection made in between is decided by the set before.
    warden.wait_for("the plugin in force", Duration::from_secs(20), || {
        let listed = warden.cli(&["plugins"]);
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    });
}

/// The admission example: its scenario, then in a master a login-like
/// inetd service whose clients come from 127.0.0.1, which the granted
/// deny list names: the client is closed, the refusal logged and counted.
fn admission(language: &'static str) {
    let example = Example(ExamplePlugin {
        language,
        policy: "admission",
    });
    let out = tempfile::tempdir().expect("tempdir");
    let Some(wasm) = example.passes_its_scenario(out.path()) else {
        return;
    };
    let name = example.0.name();
    let plugins = out.path().join("plugins");
    let grant = out.path().join("grant");
    std::fs::create_dir(&plugins).expect("mkdir plugins");
    std::fs::create_dir(&grant).expect("mkdir grant");
    std::fs::write(grant.join("deny"), "127.0.0.1\n").expect("write the deny list");
    let port = free_port();
    let warden = Running::start(&format!(
        r#"plugins_dir = "{plugins}"

[plugin.{name}]
directory = "{grant}"
deadline = "{DEADLINE}"

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
    drop_in(&warden, &plugins, &name, &wasm);
    let mut client = LineClient::connect(port).expect("connect");
    let answer = client.line().expect("read");
    assert_eq!(
        answer,
        None,
        "a denied address is closed unanswered:\n{}",
        warden.log()
    );
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

/// The idle example: its scenario, then in a master a service with an
/// idle kill of a second, whose idle rounds the plugin answers.
fn idle(language: &'static str) {
    let example = Example(ExamplePlugin {
        language,
        policy: "idle",
    });
    let out = tempfile::tempdir().expect("tempdir");
    let Some(wasm) = example.passes_its_scenario(out.path()) else {
        return;
    };
    let name = example.0.name();
    let plugins = out.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir plugins");
    let port = free_port();
    let warden = Running::start(&format!(
        r#"plugins_dir = "{plugins}"

[plugin.{name}]
deadline = "{DEADLINE}"

[service.whoami]
executable = "{whoami}"
interface = "inetd"
process_min_avail = 0
idle_kill = "1s"
policies = ["{name}"]

[[service.whoami.inet_listener]]
name = "whoami"
address = "127.0.0.1"
port = {port}
"#,
        plugins = plugins.display(),
        whoami = whoami().display(),
    ));
    drop_in(&warden, &plugins, &name, &wasm);
    // A connection makes a process, whose idle rounds the plugin answers.
    let mut client = LineClient::connect(port).expect("connect");
    let _ = client.line();
    let calls = || {
        let listing = warden.cli(&["plugins", "--json"]);
        let json: serde_json::Value =
            serde_json::from_slice(&listing.stdout).expect("plugins as JSON");
        json["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["calls"].as_u64())
            .unwrap_or(0)
    };
    warden.wait_for(
        "an idle round answered by the plugin",
        Duration::from_secs(30),
        || calls() > 0,
    );
}

#[test]
fn the_rust_admission_example_passes_its_scenario_and_decides_in_a_running_master() {
    admission("rust");
}

#[test]
fn the_rust_idle_example_passes_its_scenario_and_decides_in_a_running_master() {
    idle("rust");
}

#[test]
fn the_python_admission_example_passes_its_scenario_and_decides_in_a_running_master() {
    admission("python");
}

#[test]
fn the_python_idle_example_passes_its_scenario_and_decides_in_a_running_master() {
    idle("python");
}

#[test]
fn the_javascript_admission_example_passes_its_scenario_and_decides_in_a_running_master() {
    admission("javascript");
}

#[test]
fn the_javascript_idle_example_passes_its_scenario_and_decides_in_a_running_master() {
    idle("javascript");
}

#[test]
fn the_c_admission_example_passes_its_scenario_and_decides_in_a_running_master() {
    admission("c");
}

#[test]
fn the_c_idle_example_passes_its_scenario_and_decides_in_a_running_master() {
    idle("c");
}

#[test]
fn warden_check_says_which_plugin_it_compiles_how_large_and_for_how_long() {
    let example = ExamplePlugin {
        language: "python",
        policy: "idle",
    };
    let out = tempfile::tempdir().expect("tempdir");
    let Some(wasm) = example.build(out.path()) else {
        return;
    };
    // A plugin cache of its own, empty: the component is compiled here.
    let plugins = out.path().join("plugins");
    let cache = out.path().join("cache");
    std::fs::create_dir(&plugins).expect("mkdir plugins");
    std::fs::create_dir(&cache).expect("mkdir cache");
    let installed = plugins.join("python-idle.wasm");
    std::fs::copy(&wasm, &installed).expect("install the plugin");
    let config = warden_tests::write_config(
        out.path(),
        &format!(
            "plugins_dir = {:?}\nplugin_cache = {:?}\n\n[plugin.python-idle]\ndeadline = \"{DEADLINE}\"\n\n[service.echo]\nexecutable = \"/bin/cat\"\n",
            plugins.display().to_string(),
            cache.display().to_string(),
        ),
    );
    let checked = warden_tests::check(&config);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(checked.status.success(), "{stderr}");
    // Off a terminal, one line once it is done; the component takes
    // seconds to compile.
    assert!(
        stderr.contains(&format!("compiled plugin {} (18.", installed.display()))
            && stderr.contains(" MB) in "),
        "{stderr}"
    );
}
