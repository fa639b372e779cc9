//! Policy plugins in a running warden: a plugin dropped into `plugins_dir`
//! changes a running service's decisions without a restart, and a broken
//! one leaves every service serving.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::Path;
use std::thread;
use std::time::Duration;

use warden::control::{Request, Response};
use warden_tests::{LineClient, Running, echo, echo_service, fixture, free_port};

const WAIT: Duration = Duration::from_secs(30);

/// Puts `bytes` at `path` at once, as an operator's `mv` would.
fn install(path: &Path, bytes: &[u8]) {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, bytes).expect("write the plugin");
    std::fs::rename(&staging, path).expect("move the plugin into place");
}

#[test]
fn a_dropped_in_plugin_changes_idle_behaviour_and_a_broken_one_falls_back() {
    let plugins_dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let warden = Running::start(&format!(
        r#"
plugins_dir = {dir:?}

[service.echo]
executable = {echo:?}
client_limit = 1
process_limit = 5
idle_kill = "1s"

[[service.echo.inet_listener]]
name = "echo"
address = "127.0.0.1"
port = {port}
"#,
        dir = plugins_dir.path().display().to_string(),
        echo = echo().display().to_string(),
    ));
    let plugin = plugins_dir.path().join("idle.wasm");

    // A plugin that keeps idle processes: dropped in, it decides at once.
    install(&plugin, fixture("retire-nothing"));
    warden.wait_for("the plugin to load", WAIT, || {
        warden
            .log()
            .contains("plugin loaded plugin=\"retire-nothing\"")
    });
    let clients: Vec<LineClient> = (0..3)
        .map(|_| {
            let mut client = LineClient::connect(port).expect("connect");
            client.echo_pid();
            client
        })
        .collect();
    drop(clients);
    thread::sleep(Duration::from_secs(4));
    assert_eq!(
        warden.pids("echo").len(),
        3,
        "retire-nothing kept no process"
    );

    // Replaced by a plugin that never answers: the call hits its deadline,
    // the failure is logged and counted, and the built-in decides instead.
    install(&plugin, fixture("endless-loop"));
    warden.wait_for("idle processes retired by the built-in", WAIT, || {
        warden.pids("echo").is_empty()
    });
    let log = warden.log();
    assert!(
        log.contains("plugin loaded plugin=\"endless-loop\""),
        "{log}"
    );
    assert!(log.contains("the plugin ran past its deadline"), "{log}");
    match warden.request(&Request::Plugins) {
        Response::Plugins { plugins } => {
            let looping = plugins
                .iter()
                .find(|p| p.name == "endless-loop")
                .expect("the plugin is listed");
            assert!(looping.failures >= 1, "{looping:?}");
            assert!(looping.sha256.is_some());
            let builtin = plugins
                .iter()
                .find(|p| p.name == "dovecot")
                .expect("the built-in");
            assert_eq!(builtin.origin, "built-in");
        }
        other => panic!("plugins answered {other:?}"),
    }
    let mut client = LineClient::connect(port).expect("still serving");
    client.echo_pid();

    // A reload loads the plugins afresh.
    let loaded = |log: &str| log.matches("plugin loaded plugin=\"endless-loop\"").count();
    let before = loaded(&warden.log());
    warden.signal(nix::sys::signal::Signal::SIGHUP);
    warden.wait_for("the plugins to be loaded again", WAIT, || {
        loaded(&warden.log()) > before
    });
}

#[test]
fn check_reports_a_plugin_that_cannot_load() {
    let plugins_dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(plugins_dir.path().join("broken.wasm"), b"not a component").expect("write");
    install(
        &plugins_dir.path().join("bare.wasm"),
        fixture("missing-plugin"),
    );
    let config = warden_tests::write_config(
        plugins_dir.path(),
        &format!(
            "plugins_dir = {:?}\n",
            plugins_dir.path().display().to_string()
        ),
    );
    let output = warden_tests::check(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("broken.wasm: not a valid WebAssembly component"),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not export warden:policy/plugin@0.1.0"),
        "{stderr}"
    );
}

#[test]
fn compiled_plugins_are_cached_in_a_private_directory_that_outlives_base_dir() {
    let cache_root = tempfile::tempdir().expect("tempdir");
    let cache = cache_root.path().join("cache/warden");
    let warden = Running::start(&format!(
        "plugin_cache = {:?}\n",
        cache.display().to_string()
    ));
    let compiled = walk(&cache)
        .into_iter()
        .filter(|file| file.metadata().is_ok_and(|m| m.len() > 1000))
        .count();
    assert!(
        compiled >= warden_policy::BUILTINS.len(),
        "{compiled} compiled plugins in {}",
        cache.display()
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cache).expect("the cache").permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
    assert!(
        warden
            .log()
            .contains("compiling plugins in a helper process"),
        "{}",
        warden.log()
    );
}

#[test]
fn a_cache_others_can_write_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod");
    let config = warden_tests::write_config(
        dir.path(),
        &format!("plugin_cache = {:?}\n", cache.display().to_string()),
    );
    let output = std::process::Command::new(warden_tests::warden())
        .args(["run", "-c"])
        .arg(&config)
        .output()
        .expect("run warden");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "plugin_cache: {} is writable by its group (mode 0777)",
            cache.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod go-w {}", cache.display())),
        "{stderr}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

#[test]
fn check_reports_a_policy_naming_no_loaded_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = warden_tests::write_config(
        dir.path(),
        &format!(
            "plugins_dir = {:?}\n[service.imap-login]\nexecutable = \"/bin/true\"\npolicies = [\"dovecot\", \"blocklsit\"]\n",
            dir.path().display().to_string()
        ),
    );
    let output = warden_tests::check(&config);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains(
            "service.imap-login.policies names the plugin \"blocklsit\", which is not loaded"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("\"dovecot\""), "{stderr}");
}

/// The Python that has `prometheus_client`, the parser Prometheus's
/// own client library ships; `None` (saying so) where there is none.
fn python_with_prometheus_client() -> Option<&'static str> {
    let found = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client.openmetrics.parser"])
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!(
            "skipped: no python3 with prometheus_client (pip install prometheus-client; .ci/run installs it)"
        );
    }
    found.then_some("python3")
}

#[test]
fn the_metrics_page_parses_in_both_formats_while_plugins_with_bad_metrics_are_refused() {
    let Some(python) = python_with_prometheus_client() else {
        return;
    };
    let plugins_dir = tempfile::tempdir().expect("tempdir");
    for name in ["metrics-bad-label", "metrics-negative", "metrics-clash"] {
        install(
            &plugins_dir.path().join(format!("{name}.wasm")),
            fixture(name),
        );
    }
    let (port, metrics) = (free_port(), free_port());
    let warden = Running::start(&format!(
        "plugins_dir = {dir:?}\nmetrics_listen = \"127.0.0.1:{metrics}\"\n{}",
        echo_service("echo", port, "process_min_avail = 1"),
        dir = plugins_dir.path().display().to_string(),
    ));
    LineClient::connect(port).expect("connect").echo_pid();
    warden.wait_for("the negative counter refused", WAIT, || {
        warden
            .log()
            .contains("the negative value -1 for the counter ticks")
    });
    let log = warden.log();
    for refusal in [
        "labels [\"__x\"] for ticks",
        "its metric would be shown as warden_plugin_metrics_negative_ticks, as plugin metrics-negative's is",
    ] {
        assert!(log.contains(refusal), "no {refusal:?} in:\n{log}");
    }

    // OpenMetrics, unless the scraper asks for Prometheus's older text
    // format alone; each read by its parser.
    for (accept, parser, content_type, families) in [
        (
            "",
            "prometheus_client.openmetrics.parser",
            "application/openmetrics-text",
            &[
                "warden_processes",
                "warden_policy_calls",
                "warden_build",
                "warden_policy_call_seconds",
            ][..],
        ),
        (
            "Accept: text/plain;version=0.0.4\r\n",
            "prometheus_client.parser",
            "text/plain; version=0.0.4",
            &[
                "warden_processes",
                "warden_policy_calls",
                "warden_build_info",
                "warden_policy_call_seconds",
            ][..],
        ),
    ] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", metrics)).expect("connect");
        std::io::Write::write_all(
            &mut stream,
            format!("GET /metrics HTTP/1.0\r\n{accept}\r\n").as_bytes(),
        )
        .expect("send");
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).expect("read");
        let (head, page) = answer.split_once("\r\n\r\n").expect("a body");
        assert!(head.contains(content_type), "{head}");
        assert!(!page.contains("ticks"), "a refused metric shown:\n{page}");
        let parsed = parse(python, parser, page);
        for family in families {
            assert!(
                parsed.lines().any(|line| line == *family),
                "no family {family} parsed by {parser} from:\n{parsed}"
            );
        }
    }
}

/// The names of the families `parser`, a module of `prometheus_client`,
/// reads from `page`; the parser refuses the whole page on any line it
/// cannot hold, and the test fails saying so.
fn parse(python: &str, parser: &str, page: &str) -> String {
    let script = format!(
        "import sys\n\
         from {parser} import text_string_to_metric_families\n\
         for family in text_string_to_metric_families(sys.stdin.read()):\n    print(family.name)"
    );
    let mut child = std::process::Command::new(python)
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run python3");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), page.as_bytes())
        .expect("feed the parser");
    let parsed = child.wait_with_output().expect("the parser");
    assert!(
        parsed.status.success(),
        "{parser} refused the page: {}\n{page}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    String::from_utf8_lossy(&parsed.stdout).into_owned()
}
