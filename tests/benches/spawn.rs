//! Spawn cost against the parent's size.
//!
//! `warden-sys` starts processes with `clone(CLONE_VM | CLONE_VFORK)`, so a
//! spawn should cost the same whether the master has touched 16 MiB or
//! 1 GiB. This prints spawns per second (spawn, exec and reap of the static
//! probe running `exit 0`) for both sizes: called on the caller's thread,
//! as [`SpawnPlan::spawn`] is, and through a [`Spawner`] of one and of two
//! threads, as the master spawns (the caller only hands plans over and
//! reaps), with `std::process::Command` on the same program beside them.
//! Like the master, it first notes the signals it catches or ignores, so
//! that each child resets those and no others.
//!
//!     cargo bench -p warden-tests --bench spawn

#![allow(
    clippy::expect_used,
    reason = "a benchmark fails loudly on what it cannot set up"
)]
#![allow(clippy::print_stdout, reason = "a benchmark prints its figures")]

use std::hint::black_box;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use warden_sys::{Child, SpawnError, Spawner};
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

fn spawner_spawns(threads: usize) -> f64 {
    let (started, children) = mpsc::channel();
    let spawner = Spawner::new(threads, move |(), outcome: Result<Child, SpawnError>| {
        let _ = started.send(outcome);
    })
    .expect("spawner threads");
    let start = Instant::now();
    for _ in 0..SPAWNS {
        spawner
            .spawn((), probe_plan(&["exit", "0"]))
            .expect("a spawner thread takes it");
    }
    for _ in 0..SPAWNS {
        let child = children.recv().expect("an outcome").expect("spawn");
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
    warden_sys::spawn::note_signal_dispositions();
    println!("spawn, exec and reap of a static program, {SPAWNS} times per row");
    println!(
        "{:>18}  {:>16}  {:>18}  {:>18}  {:>16}",
        "parent touched", "on caller /s", "1 spawner thr /s", "2 spawner thr /s", "std Command /s"
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
        let one = spawner_spawns(1);
        let two = spawner_spawns(2);
        let theirs = std_spawns();
        println!(
            "{:>14} MiB  {ours:>16.0}  {one:>18.0}  {two:>18.0}  {theirs:>16.0}",
            mib
        );
        drop(ballast);
    }
}
