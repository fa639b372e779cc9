//! What an idle master costs against the services it is configured with.
//!
//! A service with no process, no listener and nothing happening should
//! cost the master nothing: its round visits only services something
//! happened to, or whose own clock is due. This starts `warden run` with
//! N = 10, 1,000 and 10,000 idle services (the echo example, started only
//! for a connection, none of which comes) and prints the master's CPU use
//! while idle, from its utime and stime in /proc/PID/stat over a few
//! seconds, with its descriptors and resident memory beside it.
//!
//!     cargo bench -p warden-tests --bench idle

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::fmt::Write as _;
use std::time::Duration;

use warden_tests::{Running, echo, proc_stat};

/// How long the master settles after it answers, before measuring.
const SETTLE: Duration = Duration::from_secs(3);

/// How long it is measured.
const MEASURE: Duration = Duration::from_secs(5);

/// The CPU time the process `pid` has used, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let fields = proc_stat(pid).expect("read /proc/PID/stat");
    // utime and stime are fields 14 and 15, so 11 and 12 after the name.
    let field = |n: usize| -> u64 {
        fields
            .get(n)
            .and_then(|value| value.parse().ok())
            .expect("a field of /proc/PID/stat")
    };
    field(11) + field(12)
}

/// The master's resident memory, from /proc/PID/status.
fn resident(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc/PID/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .map_or_else(String::new, |value| value.trim().to_owned())
}

fn descriptors(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list /proc/PID/fd")
        .count()
}

fn main() {
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .expect("sysconf")
        .and_then(|ticks| u64::try_from(ticks).ok())
        .expect("the clock tick rate");
    println!(
        "an idle warden with N services that have nothing to do, measured over {}s",
        MEASURE.as_secs()
    );
    println!(
        "{:>8}  {:>12}  {:>12}  {:>14}",
        "N", "CPU %", "descriptors", "resident"
    );
    for services in [10usize, 1_000, 10_000] {
        let mut body = String::new();
        for n in 0..services {
            let _ = write!(
                body,
                "[service.idle{n}]\nexecutable = {:?}\n",
                echo().display().to_string()
            );
        }
        let mut warden = Running::start_quiet(&body);
        let pid = warden.pid();
        std::thread::sleep(SETTLE);
        let before = cpu_ticks(pid);
        std::thread::sleep(MEASURE);
        let used = cpu_ticks(pid) - before;
        let percent = 100.0 * used as f64 / (ticks_per_second as f64 * MEASURE.as_secs_f64());
        println!(
            "{services:>8}  {percent:>12.1}  {:>12}  {:>14}",
            descriptors(pid),
            resident(pid)
        );
        assert!(warden.stop().success(), "warden did not stop cleanly");
    }
}
