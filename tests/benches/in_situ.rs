//! What a policy call costs where users pay for it: in the running master,
//! between connections, with the caches as cold as traffic leaves them.
//!
//! The real `warden` serves an inetd service (a process per connection:
//! the `admission` plugin is asked about each connection, the `dovecot`
//! plugin about the scaling of each round, but not about the processes'
//! clean exits, as no built-in plugin throttles after one) and a login
//! service on the native interface (admission again, for each connection
//! warden hands over), both with per-source limits set so admission is
//! asked. A client connects at a steady rate for a while; then the
//! per-plugin call count, mean and 99th percentile the master measured
//! (the `warden_policy_call_*` series of `warden stats`, as `warden
//! plugins` shows them) are printed, next to the same decisions made natively in a
//! hot loop, the floor a call into the sandbox is measured against.
//!
//!     cargo bench -p warden-tests --bench in_situ

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use warden::control::{Request, Response};
use warden_policy::{ExitCause, ExitView, Fallback, Policy};
use warden_tests::{LineClient, Running, free_port, inetd_admission, login, whoami_service};

/// Connections per second the client keeps to, to each service.
const RATE: u32 = 100;
/// How long it keeps to it.
const SECONDS: u32 = 20;
/// Native calls timed per decision.
const NATIVE_CALLS: u32 = 100_000;

fn main() {
    let (native, inetd) = (free_port(), free_port());
    let users = std::env::temp_dir().join(format!("warden-in-situ-users-{}", std::process::id()));
    std::fs::write(&users, "alice:secret\n").expect("write the users");
    let warden = Running::start_quiet(&format!(
        r#"
[service.login]
executable = "{login} {users}"
interface = "warden"
client_limit = 100
process_limit = 4
process_min_avail = 2
per_source_limit = 1000

[[service.login.inet_listener]]
name = "login"
address = "127.0.0.1"
port = {native}
{whoami}"#,
        login = login().display(),
        users = users.display(),
        whoami = whoami_service(inetd, "per_source_rate = 100000"),
    ));
    warden.wait_for(
        "the preforked login processes",
        Duration::from_secs(20),
        || warden.status("login").available == 2,
    );
    let before = plugin_calls(&warden);
    let interval = Duration::from_secs(1) / RATE;
    let start = Instant::now();
    for n in 0..RATE * SECONDS {
        let due = start + interval * n;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for port in [native, inetd] {
            let mut client = LineClient::connect(port).expect("connect");
            client.line().expect("read").expect("a greeting");
        }
    }
    // The last inetd processes exit.
    std::thread::sleep(Duration::from_millis(500));
    let after = plugin_calls(&warden);
    println!(
        "{} connections to each of an inetd and a native service, {RATE}/s each for {SECONDS} s",
        RATE * SECONDS
    );
    println!("in the running master (its own measure of each call):");
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "plugin", "calls", "mean µs", "p99 µs"
    );
    for (plugin, (calls, mean, p99)) in &after {
        let earlier = before.get(plugin).map_or(0.0, |(calls, _, _)| *calls);
        if calls - earlier < 1.0 {
            continue;
        }
        println!(
            "{plugin:<12} {:>10.0} {:>10.2} {:>10.2}",
            calls - earlier,
            mean * 1e6,
            p99 * 1e6
        );
    }
    println!("the same decisions natively, in a hot loop:");
    let (admit, lifecycle) = native_decisions();
    println!("{:<12} {:>10} {admit:>10.3}", "admission", NATIVE_CALLS);
    println!("{:<12} {:>10} {lifecycle:>10.3}", "lifecycle", NATIVE_CALLS);
    let _ = std::fs::remove_file(&users);
}

/// Each plugin's calls and call time, mean and p99, in seconds, from the
/// master's metrics (`warden stats`).
fn plugin_calls(warden: &Running) -> std::collections::BTreeMap<String, (f64, f64, f64)> {
    let Response::Stats { text: page } = warden.request(&Request::Stats) else {
        panic!("the master gave no metrics");
    };
    let mut plugins = std::collections::BTreeMap::<String, (f64, f64, f64)>::new();
    for line in page.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((family, labels)) = series.split_once("{plugin=\"") else {
            continue;
        };
        let Some(plugin) = labels.split('"').next() else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let entry = plugins.entry(plugin.to_owned()).or_default();
        match family {
            "warden_policy_calls_total" => entry.0 = value,
            "warden_policy_call_mean_seconds" => entry.1 = value,
            "warden_policy_call_p99_seconds" => entry.2 = value,
            _ => {}
        }
    }
    plugins
}

/// The mean time, in microseconds, of the admission and lifecycle
/// decisions of the fallback (the built-in rules, native).
fn native_decisions() -> (f64, f64) {
    let (service, connection, counts) = inetd_admission();
    let exit = ExitView {
        pid: 4242,
        cause: ExitCause::Code(0),
        age_ms: 3,
        was_ready: true,
        was_asked: false,
        service_proven: true,
        failures_in_last_second: 0,
        last_throttle_ms: 0,
    };
    let mut fallback = Fallback;
    let admit = mean_us(|| {
        black_box(fallback.admit(&service, &connection, counts, 1_000));
    });
    let lifecycle = mean_us(|| {
        black_box(fallback.lifecycle(&service, &exit));
    });
    (admit, lifecycle)
}

fn mean_us(mut call: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..NATIVE_CALLS {
        call();
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(NATIVE_CALLS)
}
