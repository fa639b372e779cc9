//! What loading a large plugin costs the running master: an 18 MB Python
//! component (`examples/plugins/python/idle`, built by its `build.sh`)
//! is dropped into `plugins_dir` while a client connects to an inetd
//! service without pause. The plugin cache starts empty, so the component
//! is compiled — by the helper process, never by the master — and then
//! loaded off the event loop. Printed: the connection latency (p50, p99,
//! worst) before and while the plugin is compiled and loaded, and the
//! master's resident memory before, with the plugin loaded, and after it
//! is removed again.
//!
//!     cargo bench -p warden-tests --bench plugin_load
//!
//! It needs `componentize-py` (`pip install componentize-py==0.25.1`) and
//! says so, and measures nothing, without it.

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warden_tests::{ExamplePlugin, LineClient, Running, free_port, resident_mb, whoami_service};

const WAIT: Duration = Duration::from_secs(600);

/// Connection latencies, each with when it was measured.
type Samples = Arc<Mutex<Vec<(Instant, Duration)>>>;

fn summary(samples: &[(Instant, Duration)], from: Instant, to: Instant) -> (usize, f64, f64, f64) {
    let mut window: Vec<Duration> = samples
        .iter()
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|(_, took)| *took)
        .collect();
    window.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |fraction: f64| {
        let index = ((window.len() as f64 - 1.0) * fraction).round() as usize;
        window.get(index).copied().map_or(0.0, ms)
    };
    (
        window.len(),
        at(0.50),
        at(0.99),
        window.last().copied().map_or(0.0, ms),
    )
}

fn main() {
    let work = tempfile::tempdir().expect("tempdir");
    let python_idle = ExamplePlugin {
        language: "python",
        policy: "idle",
    };
    let Some(component) = python_idle.build(work.path()) else {
        println!("skipped: componentize-py is not installed (pip install componentize-py==0.25.1)");
        return;
    };
    let size_mb = std::fs::metadata(&component).expect("the component").len() as f64 / 1e6;
    let plugins_dir = work.path().join("plugins");
    std::fs::create_dir(&plugins_dir).expect("mkdir");
    let port = free_port();
    let warden = Running::start_quiet(&format!(
        r#"
plugins_dir = {plugins:?}
plugin_cache = {cache:?}
{whoami}"#,
        plugins = plugins_dir.display().to_string(),
        cache = work.path().join("cache").display().to_string(),
        whoami = whoami_service(port, ""),
    ));
    let samples: Samples = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (samples, stop) = (samples.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let opened = Instant::now();
                let mut client = LineClient::connect(port).expect("connect");
                client.line().expect("read").expect("a greeting");
                samples
                    .lock()
                    .expect("samples")
                    .push((Instant::now(), opened.elapsed()));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let before_rss = resident_mb(warden.pid());
    let dropped = Instant::now();
    std::fs::copy(&component, plugins_dir.join("python-idle.wasm")).expect("drop the plugin in");
    warden.wait_for("the Python plugin to load", WAIT, || {
        warden
            .log()
            .contains("plugin loaded plugin=\"python-idle\"")
    });
    let loaded = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let loaded_rss = resident_mb(warden.pid());
    std::fs::remove_file(plugins_dir.join("python-idle.wasm")).expect("remove the plugin");
    let unloaded = |log: &str| log.matches("plugins_dir changed").count() >= 2;
    warden.wait_for("the plugin to be removed", WAIT, || unloaded(&warden.log()));
    std::thread::sleep(Duration::from_secs(3));
    let removed_rss = resident_mb(warden.pid());
    stop.store(true, Ordering::Relaxed);
    client.join().expect("the client");

    let samples = samples.lock().expect("samples").clone();
    let baseline = summary(&samples, dropped - Duration::from_secs(3), dropped);
    let during = summary(&samples, dropped, loaded);
    println!(
        "a {size_mb:.1} MB Python component dropped into plugins_dir, compiled by the helper and loaded in {:.1} s",
        loaded.duration_since(dropped).as_secs_f64()
    );
    println!(
        "{:<34} {:>8} {:>9} {:>9} {:>9}",
        "connections (inetd whoami)", "count", "p50", "p99", "worst"
    );
    for (name, (count, p50, p99, worst)) in [
        ("before the plugin", baseline),
        ("while it compiles and loads", during),
    ] {
        println!("{name:<34} {count:>8} {p50:>7.2}ms {p99:>7.2}ms {worst:>7.2}ms");
    }
    println!("master RSS before: {before_rss:.1} MB");
    println!(
        "master RSS with the plugin loaded: {loaded_rss:.1} MB ({:+.1} MB)",
        loaded_rss - before_rss
    );
    println!(
        "master RSS after it was removed: {removed_rss:.1} MB ({:+.1} MB)",
        removed_rss - before_rss
    );
}
