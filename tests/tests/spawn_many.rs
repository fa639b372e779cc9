//! Ten thousand short-lived children leave nothing behind: no zombie and
//! no descriptor. This test has its own binary, so no other test opens or
//! closes descriptors while it counts them.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::fs;

use warden_sys::Exit;
use warden_tests::probe_plan;

const CHILDREN: usize = 10_000;

fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// Children of this process that have exited but not been reaped.
fn zombies() -> Vec<String> {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| {
            let stat = fs::read_to_string(entry.ok()?.path().join("stat")).ok()?;
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let (_, rest) = stat.rsplit_once(") ")?;
            let mut fields = rest.split(' ');
            let state = fields.next()?;
            let parent = fields.next()?;
            (state == "Z" && parent == me).then_some(stat)
        })
        .collect()
}

#[test]
fn ten_thousand_children_leave_no_zombie_and_no_descriptor() {
    // The first spawn opens the probe's executable, which the thread keeps
    // open for the spawns after it: counted from there.
    let first = probe_plan(&["exit", "0"]).spawn().expect("spawn the probe");
    assert_eq!(first.wait().expect("wait for the probe"), Exit::Code(0));
    let before = open_descriptors();
    for index in 0..CHILDREN {
        let code = (index % 100).to_string();
        let child = probe_plan(&["exit", &code])
            .spawn()
            .expect("spawn the probe");
        let exit = child.wait().expect("wait for the probe");
        assert_eq!(exit, Exit::Code(i32::try_from(index % 100).expect("small")));
    }
    assert_eq!(zombies(), Vec::<String>::new());
    assert_eq!(
        open_descriptors(),
        before,
        "descriptors grew over {CHILDREN} spawns"
    );
}
