//! Spawn cost against the parent's size.
//!
//! `warden-sys` starts processes with `clone(CLONE_VM | CLONE_VFORK)`, so a
//! spawn should cost the same whether the master has touched 16 MiB or
//! 1 GiB. This prints spawns per second (spawn, exec and reap of the static
//! probe running `exit 0`) for both sizes, with `std::process::Command` on
//! the same program beside it.
//!
//!     cargo bench -p warden-tests --bench spawn

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use warden_tests::{probe, probe_plan};

const SPAWNS: u32 = 2000;
const PAGE: usize = 4096;

fn per_second(spawns: u32, elapsed: Duration) -> f64 {
    f64::from(spawns) / elapsed.as_secs_f64()
}

fn warden_spawns() -> f64 {
    let start = Instant::now();
    for _ in 0..SPAWNS {
        let child = probe_plan(&["exit", "0"]).spawn().expect("spawn");
        assert!(child.wait().expect("wait").success());
    }
    per_second(SPAWNS, start.elapsed())
}

fn std_spawns() -> f64 {
    let start = Instant::now();
    for _ in 0..SPAWNS {
        let status = Command::new(probe())
            .args(["exit", "0"])
            .status()
            .expect("spawn");
        assert!(status.success());
    }
    per_second(SPAWNS, start.elapsed())
}

fn main() {
    println!("spawn, exec and reap of a static program, {SPAWNS} times per row");
    println!(
        "{:>18}  {:>16}  {:>22}",
        "parent touched", "warden-sys /s", "std Command /s"
    );
    for mib in [16usize, 1024] {
        // Touch every page, so the memory is resident and mapped.
        let mut ballast = vec![0u8; mib << 20];
        for page in ballast.chunks_mut(PAGE) {
            if let Some(byte) = page.first_mut() {
                *byte = 1;
            }
        }
        black_box(&ballast);
        let ours = warden_spawns();
        let theirs = std_spawns();
        println!("{:>14} MiB  {ours:>16.0}  {theirs:>22.0}", mib);
        drop(ballast);
    }
}
