//! What asking a plugin costs: the built-in `dovecot` plugin through the
//! real runtime, next to the same rule in native Rust (its SDK), with
//! realistic inputs of 8 and 1000 processes; the built-in `admission`
//! plugin's call with the caches as cold as the time between connections
//! leaves them (asleep, or after other work went through memory); then
//! the resident memory of a running master with the plugins loaded.
//!
//!     cargo bench -p warden-tests --bench policy

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::time::{Duration, Instant};

use warden_plugin_sdk::dovecot;
use warden_policy::{
    Budget, ExitCause, ExitView, Origin, Plugins, Policy, ProcessView, Runtime, ServiceKind,
    ServiceView,
};
use warden_tests::{Running, echo, free_port, inetd_admission};

const CALLS: usize = 2000;
/// Calls timed per way of leaving the caches cold.
const COLD_CALLS: usize = 400;
/// What a call after other work finds: this much memory walked through.
const WALKED: usize = 64 << 20;

fn service(processes: u32) -> ServiceView<'static> {
    ServiceView {
        name: "imap-login",
        kind: ServiceKind::Login,
        protocol: "imap",
        policies: &[],
        service_count: None,
        client_limit: 100,
        process_limit: processes * 2,
        process_min_avail: processes / 4,
        idle_kill_ms: Some(60_000),
        per_source_limit: None,
        per_source_rate: None,
    }
}

fn processes(count: u32) -> Vec<ProcessView> {
    (1..=count)
        .map(|pid| ProcessView {
            pid,
            started_ms: 1_000,
            ready: true,
            clients: Some(pid % 3),
            idle_since_ms: (pid % 3 == 0).then_some(u64::from(pid) * 10),
            asked_to_exit_ms: None,
            retired: false,
        })
        .collect()
}

/// Mean and 99th percentile of `calls` runs of `call`.
fn time(mut call: impl FnMut()) -> (Duration, Duration) {
    let mut took: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect();
    took.sort();
    let mean = took.iter().sum::<Duration>() / u32::try_from(CALLS).unwrap_or(1);
    let p99 = took.get(CALLS * 99 / 100).copied().unwrap_or_default();
    (mean, p99)
}

fn show(hook: &str, count: u32, plugin: (Duration, Duration), native: (Duration, Duration)) {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "{hook:<10} {count:>6} {:>12.2} {:>12.2} {:>12.2} {:>12.2}",
        us(plugin.0),
        us(plugin.1),
        us(native.0),
        us(native.1)
    );
}

fn native_processes(views: &[ProcessView]) -> Vec<dovecot::Process> {
    views.iter().map(ProcessView::model).collect()
}

fn main() {
    let runtime = Runtime::new(None).expect("the runtime");
    let (_, bytes) = warden_policy::BUILTINS
        .iter()
        .find(|(name, _)| *name == "dovecot")
        .expect("the dovecot built-in");
    let plugin = runtime
        .load(bytes, Origin::Builtin, Budget::default())
        .expect("it loads");
    let mut plugins = Plugins::new(vec![plugin]);

    println!(
        "one hook call, microseconds ({CALLS} calls each; the native column converts its inputs too)"
    );
    println!(
        "{:<10} {:>6} {:>12} {:>12} {:>12} {:>12}",
        "hook", "procs", "plugin mean", "plugin p99", "native mean", "native p99"
    );
    for count in [8, 1000] {
        let view = service(count);
        let procs = processes(count);
        let lowwater = count / 3;
        let plugin = time(|| {
            black_box(plugins.idle(&view, &procs, lowwater, 100_000));
        });
        let native = time(|| {
            let service = view.model();
            black_box(dovecot::idle(
                &service,
                &native_processes(&procs),
                lowwater,
                100_000,
            ));
        });
        show("idle", count, plugin, native);
        let plugin = time(|| {
            black_box(plugins.scaling(&view, &procs, false, false));
        });
        let native = time(|| {
            let service = view.model();
            black_box(dovecot::scaling(
                &service,
                &native_processes(&procs),
                false,
                false,
            ));
        });
        show("scaling", count, plugin, native);
        let exit = ExitView {
            pid: 1,
            cause: ExitCause::Code(1),
            age_ms: 5,
            was_ready: false,
            was_asked: false,
            service_proven: false,
            failures_in_last_second: 2,
            last_throttle_ms: 2_000,
        };
        let plugin = time(|| {
            black_box(plugins.lifecycle(&view, &exit));
        });
        let native = time(|| {
            black_box(dovecot::throttle(&dovecot::Exit {
                failed: exit.failed(),
                was_ready: exit.was_ready,
                service_proven: exit.service_proven,
                failures_in_last_second: exit.failures_in_last_second,
                last_throttle_ms: exit.last_throttle_ms,
            }));
        });
        show("lifecycle", count, plugin, native);
    }

    cold_calls(&runtime);

    let warden = Running::start_quiet(&format!(
        r#"
[service.echo]
executable = {:?}
process_min_avail = 1

[[service.echo.inet_listener]]
name = "echo"
address = "127.0.0.1"
port = {}
"#,
        echo().display().to_string(),
        free_port()
    ));
    warden.wait_for("a ready process", Duration::from_secs(30), || {
        warden.status("echo").available == 1
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", warden.pid()))
        .expect("the master's status");
    let rss = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: unknown");
    println!("\nmaster with the built-in plugins loaded and one service running: {rss}");
}

/// What happens before each timed call.
#[derive(Clone, Copy)]
enum Before {
    Nothing,
    Sleep,
    Walk,
    SleepAndWalk,
}

/// The built-in `admission` plugin's call, as an inetd service with
/// `per_source_rate` asks it at each connection: back to back, and after
/// each way of leaving the caches cold that traffic has between
/// connections.
fn cold_calls(runtime: &Runtime) {
    let (_, bytes) = warden_policy::BUILTINS
        .iter()
        .find(|(name, _)| *name == "admission")
        .expect("the admission built-in");
    let plugin = runtime
        .load(bytes, Origin::Builtin, Budget::default())
        .expect("it loads");
    let mut plugins = Plugins::new(vec![plugin]);
    let (service, connection, counts) = inetd_admission();
    let mut memory = vec![0u8; WALKED];
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("\nthe admission plugin's call, {COLD_CALLS} calls each, microseconds");
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        "before each call", "mean", "p50", "p99"
    );
    for (what, before) in [
        ("nothing (back to back)", Before::Nothing),
        ("10 ms asleep", Before::Sleep),
        ("64 MiB walked through", Before::Walk),
        ("10 ms asleep and 64 MiB walked", Before::SleepAndWalk),
    ] {
        let mut took: Vec<Duration> = (0..COLD_CALLS)
            .map(|n| {
                if matches!(before, Before::Walk | Before::SleepAndWalk) {
                    for line in memory.chunks_mut(64) {
                        if let Some(byte) = line.first_mut() {
                            *byte = byte.wrapping_add(1);
                        }
                    }
                    black_box(&memory);
                }
                if matches!(before, Before::Sleep | Before::SleepAndWalk) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let now_ms = 1_000 + u64::try_from(n).unwrap_or(0);
                let started = Instant::now();
                black_box(plugins.admit(&service, &connection, counts, now_ms));
                started.elapsed()
            })
            .collect();
        took.sort();
        let mean = took.iter().sum::<Duration>() / u32::try_from(COLD_CALLS).unwrap_or(1);
        let p50 = took.get(COLD_CALLS / 2).copied().unwrap_or_default();
        let p99 = took.get(COLD_CALLS * 99 / 100).copied().unwrap_or_default();
        println!(
            "{what:<34} {:>8.2} {:>8.2} {:>8.2}",
            us(mean),
            us(p50),
            us(p99)
        );
    }
}
