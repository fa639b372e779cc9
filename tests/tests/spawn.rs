//! Spawning through `warden-sys`, proven by the probe: each setting of a
//! plan is applied and the probe reports exactly what the new process got.
//! Tests that change identity or root need root and say so when skipped.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::fs;
use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};
use warden_sys::{Exit, Identity, SpawnError, Step};
use warden_tests::{probe_plan, root_or_skip, run_probe, signal_masks};

const NOBODY: u32 = 65534;
const NOGROUP: u32 = 65534;

fn nobody() -> Identity {
    Identity {
        uid: Uid::from_raw(NOBODY),
        gid: Gid::from_raw(NOGROUP),
        extra_groups: Vec::new(),
        privileged_gid: None,
    }
}

#[test]
fn the_environment_is_exactly_what_the_plan_sets() {
    let mut plan = probe_plan(&[]);
    plan.env("WARDEN_SERVICE", "probe").env("TZ", "UTC");
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.exit, Some(Exit::Code(0)));
    let env: Vec<(&str, &str)> = report.with_prefix("env.").collect();
    assert_eq!(env, [("env.TZ", "UTC"), ("env.WARDEN_SERVICE", "probe")]);
}

#[test]
fn a_variable_can_carry_the_process_own_pid() {
    let mut plan = probe_plan(&[]);
    plan.env("LISTEN_FDS", "0").env_own_pid("LISTEN_PID");
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("env.LISTEN_PID"), report.value("pid"));
    assert_eq!(report.value("env.LISTEN_FDS"), "0");
}

#[test]
fn only_the_planned_descriptors_reach_the_process() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let stray = fs::File::open("/dev/null").expect("open /dev/null");
    let mut plan = probe_plan(&[]);
    plan.fd(OwnedFd::from(listener), 3);
    let report = run_probe(plan).expect("spawn the probe");
    let fds: Vec<(&str, &str)> = report.with_prefix("fd.").collect();
    assert_eq!(
        fds,
        [("fd.1", "fifo"), ("fd.3", "socket inet stream listening")],
        "the stray descriptor {stray:?} or others leaked"
    );
}

#[test]
fn descriptors_may_be_placed_over_each_others_numbers() {
    // Two descriptors whose targets are each other's current numbers: the
    // plan must move both without one overwriting the other.
    let (first, second): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    let first_number = std::os::fd::AsRawFd::as_raw_fd(&first);
    let second_number = std::os::fd::AsRawFd::as_raw_fd(&second);
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut plan = probe_plan(&[]);
    plan.fd(OwnedFd::from(socket), first_number)
        .fd(first, second_number)
        .fd(second, 20);
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(
        report.value(&format!("fd.{first_number}")),
        "socket inet stream listening"
    );
    assert_eq!(report.value(&format!("fd.{second_number}")), "fifo");
    assert_eq!(report.value("fd.20"), "fifo");
}

#[test]
fn one_descriptor_may_be_placed_at_several_numbers() {
    // As an inetd process's connection is its stdin and its stdout.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut plan = probe_plan(&[]);
    plan.fd(OwnedFd::from(socket), 3)
        .fd_also(3, 4)
        .fd_also(3, 6);
    let report = run_probe(plan).expect("spawn the probe");
    for number in [3, 4, 6] {
        assert_eq!(
            report.value(&format!("fd.{number}")),
            "socket inet stream listening"
        );
    }
    assert!(report.with_prefix("fd.5").next().is_none());

    let mut plan = probe_plan(&[]);
    plan.fd_also(3, 4);
    let error = run_probe(plan).expect_err("nothing is placed at 3");
    assert!(
        error.to_string().contains("descriptor 3 is placed again"),
        "{error}"
    );
}

#[test]
fn signals_start_clean_and_no_new_privileges_is_the_default() {
    // The test harness ignores SIGPIPE, as every Rust program does; a
    // service must start with the default.
    let report = run_probe(probe_plan(&[])).expect("spawn the probe");
    assert_eq!(report.value("sigpipe"), "default");
    assert_eq!(report.value("blocked_signals"), "0");
    assert_eq!(report.value("ignored_signals"), "0");
    assert_eq!(report.value("no_new_privs"), "1");

    let mut plan = probe_plan(&[]);
    plan.allow_new_privileges();
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("no_new_privs"), "0");
}

#[test]
fn children_reset_the_signals_noted_as_caught_or_ignored() {
    // The test harness ignores SIGPIPE, as every Rust program does, and
    // catches SIGSEGV and SIGBUS to report stack overflows.
    let noted = warden_sys::spawn::note_signal_dispositions();
    let bit = |signal: i32| 1u64 << (signal - 1);
    for signal in [Signal::SIGPIPE, Signal::SIGSEGV, Signal::SIGBUS] {
        assert_ne!(
            noted & bit(signal as i32),
            0,
            "{signal} not noted in {noted:016x}"
        );
    }
    // Whatever else this process inherited: every signal the kernel shows
    // caught or ignored is noted, and one left alone is not.
    let (caught, ignored) = signal_masks(std::process::id());
    let held = caught | ignored;
    assert_eq!(noted & held, held, "noted {noted:016x}, held {held:016x}");
    if let Some(left_alone) = (1..=64)
        .filter(|&signal| signal != libc::SIGKILL && signal != libc::SIGSTOP)
        .map(bit)
        .find(|&signal| held & signal == 0)
    {
        assert_eq!(noted & left_alone, 0, "noted {noted:016x}");
    }
    let report = run_probe(probe_plan(&[])).expect("spawn the probe");
    assert_eq!(report.value("ignored_signals"), "0");
    assert_eq!(report.value("sigpipe"), "default");
    assert_eq!(report.value("blocked_signals"), "0");
}

// seed: limits.vsz_limit
#[test]
fn vsz_limit_sets_address_space_and_data_limits_that_allocations_meet() {
    let limit: u64 = 64 << 20;
    let mut plan = probe_plan(&[]);
    plan.vsz_limit(Some(limit));
    let report = run_probe(plan).expect("spawn the probe");
    let both = format!("{limit} {limit}");
    assert_eq!(report.value("rlimit_as"), both);
    assert_eq!(report.value("rlimit_data"), both);

    let mut over = probe_plan(&["alloc", &(128u64 << 20).to_string()]);
    over.vsz_limit(Some(limit));
    assert_eq!(run_probe(over).expect("spawn").exit, Some(Exit::Code(83)));

    let mut under = probe_plan(&["alloc", &(16u64 << 20).to_string()]);
    under.vsz_limit(Some(limit));
    assert_eq!(run_probe(under).expect("spawn").exit, Some(Exit::Code(0)));

    // No limit in the plan (vsz_limit = 0): the process keeps the
    // supervisor's own limits.
    let own =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_AS).expect("getrlimit");
    let report = run_probe(probe_plan(&[])).expect("spawn the probe");
    let expected = if own.0 == libc::RLIM_INFINITY {
        "unlimited".to_owned()
    } else {
        own.0.to_string()
    };
    assert!(
        report.value("rlimit_as").starts_with(&expected),
        "{}",
        report.value("rlimit_as")
    );
}

#[test]
fn a_failed_step_names_the_service_the_step_and_the_setting() {
    let mut plan = probe_plan(&[]);
    plan.chroot("/nonexistent/warden-chroot");
    let error = run_probe(plan).expect_err("a missing chroot cannot be entered");
    match &error {
        SpawnError::Child { step, source, .. } => {
            assert_eq!(*step, Step::Chroot);
            // Not root: EPERM; root: ENOENT.
            assert!(matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::EPERM)
            ));
        }
        other => panic!("expected a child step failure, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.starts_with("service probe: chroot failed"),
        "{message}"
    );
    assert!(message.contains("chroot"), "{message}");

    let missing = warden_sys::SpawnPlan::new("ghost", ["/nonexistent/program"])
        .spawn()
        .expect_err("a missing program cannot be run");
    assert!(
        missing
            .to_string()
            .contains("cannot open the executable /nonexistent/program; check executable"),
        "{missing}"
    );
}

#[test]
fn signals_reach_the_process_through_its_pidfd_and_its_end_is_reported() {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    let mut plan = probe_plan(&["sleep"]);
    plan.fd(write, 1);
    let child = plan.spawn().expect("spawn the probe");
    // Wait for the report, so the probe is running.
    let mut first = [0u8; 4];
    nix::unistd::read(&read, &mut first).expect("read");
    assert_eq!(child.try_wait().expect("try_wait"), None);
    child.signal(Signal::SIGTERM).expect("signal");
    assert_eq!(
        child.wait().expect("wait"),
        Exit::Signal {
            signal: libc::SIGTERM,
            core_dumped: false
        }
    );
}

#[test]
fn every_process_is_asked_to_get_sigterm_when_its_parent_dies() {
    let report = run_probe(probe_plan(&[])).expect("spawn the probe");
    assert_eq!(report.value("pdeathsig"), libc::SIGTERM.to_string());
}

#[test]
fn the_parent_death_signal_comes_when_the_spawning_thread_ends() {
    // The kernel follows the thread that spawned the process, not the
    // whole parent process: this is why warden spawns only from its event
    // loop's thread, which lives as long as the master.
    let child = std::thread::spawn(|| probe_plan(&["sleep"]).spawn().expect("spawn the probe"))
        .join()
        .expect("the spawning thread");
    assert_eq!(
        child.wait().expect("wait"),
        Exit::Signal {
            signal: libc::SIGTERM,
            core_dumped: false
        }
    );
}

#[test]
fn the_parent_death_signal_survives_the_switch_to_the_service_user() {
    if !root_or_skip("the_parent_death_signal_survives_the_switch_to_the_service_user") {
        return;
    }
    // setresuid and setresgid clear it; it is set after them.
    let mut plan = probe_plan(&[]);
    plan.identity(Identity {
        extra_groups: vec![Gid::from_raw(8)],
        ..nobody()
    });
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("uid"), "65534 65534 65534");
    assert_eq!(report.value("pdeathsig"), libc::SIGTERM.to_string());
}

// seed: priv.chroot
#[test]
fn chroot_puts_the_process_in_its_directory_even_with_the_program_outside() {
    if !root_or_skip("chroot_puts_the_process_in_its_directory") {
        return;
    }
    let jail = tempfile::tempdir().expect("tempdir");
    fs::write(jail.path().join("inside-the-chroot"), "").expect("marker");
    let mut plan = probe_plan(&[]);
    plan.chroot(jail.path());
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("root"), "inside-the-chroot,");
    assert_eq!(report.value("cwd"), "/");
}

#[test]
fn a_dynamic_program_in_an_empty_chroot_fails_with_advice() {
    if !root_or_skip("a_dynamic_program_in_an_empty_chroot_fails_with_advice") {
        return;
    }
    let jail = tempfile::tempdir().expect("tempdir");
    let mut plan = warden_sys::SpawnPlan::new("dynamic", ["/bin/true"]);
    plan.chroot(jail.path());
    let error = plan.spawn().expect_err("/bin/true needs its loader");
    assert!(
        matches!(
            &error,
            SpawnError::Child {
                step: Step::Exec,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("needs its loader and libraries inside the chroot"),
        "{error}"
    );
}

// seed: priv.user
#[test]
fn user_sets_real_effective_and_saved_uid_for_good() {
    if !root_or_skip("user_sets_real_effective_and_saved_uid_for_good") {
        return;
    }
    let mut plan = probe_plan(&[]);
    plan.identity(nobody());
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("uid"), "65534 65534 65534");
}

// seed: priv.group
#[test]
fn group_sets_real_effective_and_saved_gid() {
    if !root_or_skip("group_sets_real_effective_and_saved_gid") {
        return;
    }
    let mut plan = probe_plan(&[]);
    plan.identity(Identity {
        gid: Gid::from_raw(8),
        ..nobody()
    });
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("gid"), "8 8 8");
    assert_eq!(report.value("groups"), "8");
}

// seed: priv.extra_groups
#[test]
fn extra_groups_become_the_supplementary_groups_with_the_primary() {
    if !root_or_skip("extra_groups_become_the_supplementary_groups") {
        return;
    }
    let mut plan = probe_plan(&[]);
    plan.identity(Identity {
        extra_groups: vec![Gid::from_raw(8), Gid::from_raw(12)],
        ..nobody()
    });
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("groups"), "8 12 65534");
    assert_eq!(report.value("gid"), "65534 65534 65534");
}

// seed: priv.privileged_group
#[test]
fn privileged_group_is_off_at_start_and_can_be_switched_on_and_off() {
    if !root_or_skip("privileged_group_is_off_at_start_and_can_be_switched_on_and_off") {
        return;
    }
    let privileged = || Identity {
        privileged_gid: Some(Gid::from_raw(8)),
        ..nobody()
    };
    let mut plan = probe_plan(&["setegid", "8"]);
    plan.identity(privileged());
    let report = run_probe(plan).expect("spawn the probe");
    // Effective gid and supplementary groups do not include it...
    assert_eq!(report.value("gid"), "8 65534 65534");
    assert_eq!(report.value("groups"), "65534");
    // ...but the process can switch to it and back.
    assert_eq!(report.value("setegid"), "ok");
    assert_eq!(report.value("egid_switched"), "8");
    assert_eq!(report.value("setegid_back"), "ok");

    // Without it, the same switch is refused.
    let mut plan = probe_plan(&["setegid", "8"]);
    plan.identity(nobody());
    let report = run_probe(plan).expect("spawn the probe");
    assert_eq!(report.value("setegid"), "Operation not permitted");
}

// seed: priv.drop_priv_before_exec
#[test]
fn dovecot_binaries_drop_privileges_themselves_unless_asked_to_before_exec() {
    if !root_or_skip("dovecot_binaries_drop_privileges_themselves") {
        return;
    }
    let identity = Identity {
        extra_groups: vec![Gid::from_raw(8)],
        ..nobody()
    };
    // drop_priv_before_exec = no: the binary starts as root and learns its
    // identity from RESTRICT_* to drop it after its privileged setup.
    let mut after_exec = probe_plan(&[]);
    for (key, value) in identity.dovecot_restrict_env(None) {
        after_exec.env(key, value);
    }
    let report = run_probe(after_exec).expect("spawn the probe");
    assert_eq!(report.value("uid"), "0 0 0");
    assert_eq!(report.value("env.RESTRICT_SETUID"), "65534");
    assert_eq!(report.value("env.RESTRICT_SETGID"), "65534");
    assert_eq!(report.value("env.RESTRICT_SETEXTRAGROUPS"), "8");
    // As Dovecot's master: no RESTRICT_USER, which would add the user's
    // system groups to the service's extra_groups.
    assert_eq!(report.get("env.RESTRICT_USER"), None);

    // drop_priv_before_exec = yes: the host drops them before exec.
    let mut before_exec = probe_plan(&[]);
    before_exec.identity(identity);
    let report = run_probe(before_exec).expect("spawn the probe");
    assert_eq!(report.value("uid"), "65534 65534 65534");
    assert_eq!(report.value("groups"), "8 65534");
}
