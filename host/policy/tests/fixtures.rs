//! The deliberately broken plugins of `plugins/fixtures`, each loaded into
//! the real runtime with the outcome it must have. The build fails when a
//! fixture has no `fixture("NAME")` test here.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::io::Write;
use std::time::{Duration, Instant};

use warden_policy::contract::Problem;
use warden_policy::runtime::{Failure, START_DEADLINE};
use warden_policy::{
    Budget, ExitCause, ExitView, IdleAction, Lifecycle, LoadError, Origin, Plugins, Policy,
    ProcessView, Runtime, ServiceKind, ServiceView,
};

use warden_policy::FIXTURES;

/// The component of the fixture in `plugins/fixtures/NAME`.
fn bytes_of(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(fixture, _)| *fixture == name)
        .map(|(_, bytes)| *bytes)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// Names a fixture; the build checks each has a test that names it so.
fn fixture(name: &'static str) -> &'static str {
    bytes_of(name);
    name
}

fn load(name: &str) -> Result<Plugins, LoadError> {
    load_with(name, Budget::default())
}

fn load_with(name: &str, budget: Budget) -> Result<Plugins, LoadError> {
    let runtime = Runtime::new(None).expect("the runtime");
    let plugin = runtime.load(
        bytes_of(name),
        Origin::File {
            path: format!("{name}.wasm"),
            sha256: String::new(),
        },
        budget,
    )?;
    Ok(Plugins::new(vec![plugin]))
}

/// The default memory cap with a deadline a loaded machine cannot miss, for
/// tests of what is not the deadline.
fn patient() -> Budget {
    Budget {
        deadline: Duration::from_secs(5),
        ..Budget::default()
    }
}

fn service() -> ServiceView<'static> {
    ServiceView {
        name: "imap-login",
        kind: ServiceKind::Login,
        protocol: "imap",
        policies: &[],
        service_count: None,
        client_limit: 10,
        process_limit: 20,
        process_min_avail: 0,
        idle_kill_ms: Some(60_000),
        per_source_limit: None,
        per_source_rate: None,
    }
}

fn idle_processes() -> Vec<ProcessView> {
    (1..=3)
        .map(|pid| ProcessView {
            pid,
            started_ms: 0,
            ready: true,
            clients: Some(0),
            idle_since_ms: Some(u64::from(pid) * 100),
            asked_to_exit_ms: None,
            retired: false,
        })
        .collect()
}

thread_local! {
    /// Where this thread's log lines go while [`with_log`] runs.
    static CAPTURE: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes a log line into the capture of the thread that logs it.
struct ThreadCapture;

impl Write for ThreadCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with_borrow_mut(|capture| {
            if let Some(capture) = capture {
                capture.extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `body` with warden's log captured, and returns it. One subscriber
/// serves every test thread, each line going to the capture of the thread
/// that logs it: with a subscriber per test, a test running beside it
/// without one could have a log line's callsite cached as disabled.
fn with_log(body: impl FnOnce()) -> String {
    static SUBSCRIBER: std::sync::Once = std::sync::Once::new();
    SUBSCRIBER.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(|| ThreadCapture)
            .try_init();
    });
    CAPTURE.with_borrow_mut(|capture| *capture = Some(Vec::new()));
    body();
    let bytes = CAPTURE.with_borrow_mut(Option::take).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn failure_of(plugins: &Plugins) -> Option<Failure> {
    plugins
        .plugins()
        .first()
        .and_then(|p| p.last_failure().cloned())
}

#[test]
fn an_endless_loop_is_stopped_at_its_deadline_and_the_fallback_answers() {
    let mut plugins = load(fixture("endless-loop")).expect("it loads");
    let started = Instant::now();
    let log = with_log(|| {
        let answer = plugins.idle(&service(), &idle_processes(), 3, 1_000);
        assert_eq!(answer, [], "the fallback retires nothing");
    });
    let took = started.elapsed();
    assert_eq!(failure_of(&plugins), Some(Failure::Deadline));
    assert!(took >= Budget::default().deadline, "stopped after {took:?}");
    assert!(took < Duration::from_secs(2), "stopped only after {took:?}");
    assert!(
        log.contains("the plugin ran past its deadline; the next decision in the chain is used"),
        "{log}"
    );
    assert!(
        log.contains("plugin=\"endless-loop\" hook=\"idle\" service=\"imap-login\""),
        "{log}"
    );
}

#[test]
fn a_start_slower_than_a_decision_loads_and_its_decisions_keep_their_deadline() {
    let started = Instant::now();
    let mut plugins =
        load(fixture("slow-start")).expect("a 200 ms start is within the start's deadline");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(plugins.plugins()[0].identity().name, "slow-start");
    assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
    assert_eq!(
        failure_of(&plugins),
        Some(Failure::Deadline),
        "a decision has the budget's 20 ms, not the start's"
    );
}

#[test]
fn a_start_that_never_ends_is_refused_at_the_start_deadline() {
    let started = Instant::now();
    let error = load(fixture("endless-start")).expect_err("it must be refused");
    let took = started.elapsed();
    assert!(took >= START_DEADLINE, "refused after {took:?}");
    assert!(took < START_DEADLINE * 3, "refused only after {took:?}");
    assert!(
        error
            .to_string()
            .contains("asking its identity failed: it ran past its deadline"),
        "{error}"
    );
}

#[test]
fn a_memory_hog_meets_its_cap() {
    let mut plugins = load_with(fixture("memory-hog"), patient()).expect("it loads");
    assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
    assert_eq!(failure_of(&plugins), Some(Failure::Memory));
}

#[test]
fn a_trap_falls_back_and_the_instance_is_rebuilt_for_the_next_call() {
    let mut plugins = load(fixture("trap")).expect("it loads");
    for _ in 0..2 {
        assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
        // A trapped store cannot be entered again; each call trapping anew
        // shows the instance was rebuilt.
        assert!(
            matches!(failure_of(&plugins), Some(Failure::Trap(ref reason)) if reason.contains("unreachable")),
            "{:?}",
            failure_of(&plugins)
        );
    }
}

#[test]
fn invalid_answers_are_refused_and_repeated_failures_quarantine() {
    let mut plugins = load(fixture("invalid-answer")).expect("it loads");
    let service = service();
    assert_eq!(plugins.idle(&service, &idle_processes(), 3, 1_000), []);
    assert!(matches!(
        failure_of(&plugins),
        Some(Failure::Invalid(ref reason)) if reason.contains("pid 4000000000, which is not one of the service's processes")
    ));
    assert_eq!(plugins.scaling(&service, &[], false, false), 0);
    assert!(matches!(
        failure_of(&plugins),
        Some(Failure::Invalid(ref reason)) if reason.contains("more than process_limit (20)")
    ));
    let exit = ExitView {
        pid: 1,
        cause: ExitCause::Code(0),
        age_ms: 100,
        was_ready: true,
        was_asked: false,
        service_proven: true,
        failures_in_last_second: 0,
        last_throttle_ms: 0,
    };
    assert_eq!(plugins.lifecycle(&service, &exit), Lifecycle::Continue);
    assert!(matches!(
        failure_of(&plugins),
        Some(Failure::Invalid(ref reason)) if reason.contains("longer than a day")
    ));
    // Five failures in a minute: quarantined until the next load, and asked
    // no more.
    plugins.idle(&service, &idle_processes(), 3, 1_000);
    plugins.idle(&service, &idle_processes(), 3, 1_000);
    let plugin = plugins.plugins().first().expect("the plugin");
    assert!(plugin.quarantined());
    let calls = plugin.stats().calls;
    plugins.idle(&service, &idle_processes(), 3, 1_000);
    assert_eq!(
        plugins.plugins().first().expect("the plugin").stats().calls,
        calls
    );
}

#[test]
fn a_huge_log_line_is_cut_and_the_call_succeeds() {
    // Copying ten megabytes takes longer than the default deadline on a
    // busy machine; what is tested here is the cut, not the speed.
    let mut plugins = load_with(fixture("huge-log"), patient()).expect("it loads");
    let log = with_log(|| {
        assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
    });
    assert_eq!(failure_of(&plugins), None);
    let line = log
        .lines()
        .find(|line| line.contains("plugin=\"huge-log\""))
        .unwrap_or_else(|| {
            panic!(
                "no line of the plugin in: {}",
                log.chars().take(600).collect::<String>()
            )
        });
    assert!(line.len() < 5000, "a line of {} bytes", line.len());
    assert!(line.contains("bytes cut)"), "{line}");
}

#[test]
fn a_plugin_cannot_open_a_file_unless_granted_a_directory_and_then_only_to_read() {
    let mut plugins = load(fixture("open-file")).expect("it loads");
    let log = with_log(|| {
        assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
    });
    assert_eq!(failure_of(&plugins), None);
    assert!(log.contains("cannot read /etc/passwd"), "{log}");
    assert!(log.contains("cannot read /grant/allowed.txt"), "{log}");

    let granted = tempfile::tempdir().expect("tempdir");
    std::fs::write(granted.path().join("allowed.txt"), "blocklist").expect("write");
    let runtime = Runtime::new(None).expect("the runtime");
    let mut plugin = runtime
        .load(
            bytes_of("open-file"),
            Origin::File {
                path: "open-file.wasm".to_owned(),
                sha256: String::new(),
            },
            Budget::default(),
        )
        .expect("it loads");
    plugin.configure(Budget::default(), Some(granted.path().to_path_buf()));
    let mut plugins = Plugins::new(vec![plugin]);
    let log = with_log(|| {
        assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
    });
    assert!(log.contains("read 9 bytes of /grant/allowed.txt"), "{log}");
    assert!(log.contains("cannot read /etc/passwd"), "{log}");
    assert!(log.contains("cannot write /grant/written.txt"), "{log}");
    assert!(!granted.path().join("written.txt").exists());
}

#[test]
fn a_component_without_the_plugin_interface_is_refused() {
    let error = load(fixture("missing-plugin")).expect_err("it must be refused");
    assert!(
        matches!(&error, LoadError::Contract { mismatch, .. } if mismatch.problems() == [Problem::NoIdentity]),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("does not export warden:policy/plugin@0.1.0"),
        "{error}"
    );
}

#[test]
fn a_plugin_ahead_in_the_chain_answers_instead_of_the_builtin() {
    let runtime = Runtime::new(None).expect("the runtime");
    let file = runtime
        .load(
            bytes_of(fixture("retire-nothing")),
            Origin::File {
                path: "retire-nothing.wasm".to_owned(),
                sha256: String::new(),
            },
            Budget::default(),
        )
        .expect("it loads");
    let (_, builtin) = warden_policy::BUILTINS
        .iter()
        .find(|(name, _)| *name == "dovecot")
        .expect("the dovecot built-in");
    let builtin = runtime
        .load(builtin, Origin::Builtin, Budget::default())
        .expect("it loads");
    let mut plugins = Plugins::new(vec![builtin, file]);
    // The file plugin comes first and keeps every idle process, where the
    // built-in would retire two.
    assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 70_000), []);
    assert_eq!(
        plugins
            .plugins()
            .first()
            .map(|p| p.identity().name.as_str()),
        Some("retire-nothing")
    );
}

#[test]
fn the_builtin_dovecot_plugin_answers_every_scheduling_hook() {
    let runtime = Runtime::new(None).expect("the runtime");
    let (_, bytes) = warden_policy::BUILTINS
        .iter()
        .find(|(name, _)| *name == "dovecot")
        .expect("the dovecot built-in");
    let plugin = runtime
        .load(bytes, Origin::Builtin, Budget::default())
        .expect("it loads");
    assert_eq!(plugin.identity().name, "dovecot");
    assert_eq!(plugin.hooks().names(), ["idle", "scaling", "lifecycle"]);
    let mut plugins = Plugins::new(vec![plugin]);
    let mut service = service();
    service.process_min_avail = 1;
    // The low-water algorithm: three idle all along, one kept.
    assert_eq!(
        plugins.idle(&service, &idle_processes(), 3, 70_000),
        [IdleAction::AskToExit(1), IdleAction::AskToExit(2)]
    );
    assert_eq!(failure_of(&plugins), None);
}

#[test]
fn a_plugin_named_in_policies_decides_eviction_before_the_built_in() {
    let runtime = Runtime::new(None).expect("the runtime");
    let file = runtime
        .load(
            bytes_of(fixture("evict-newest")),
            Origin::File {
                path: "evict-newest.wasm".to_owned(),
                sha256: String::new(),
            },
            Budget::default(),
        )
        .expect("it loads");
    let mut plugins = Plugins::new(vec![file]);
    let policies = ["evict-newest".to_owned()];
    let mut login = service();
    login.policies = &policies;
    let connection = |id: u64, accepted_ms: u64| warden_policy::ConnectionView {
        id,
        listener: "imap".to_owned(),
        peer: warden_policy::PeerView::default(),
        accepted_ms,
        authenticated: false,
        pid: 1,
    };
    let candidates = [connection(1, 100), connection(2, 300), connection(3, 200)];
    assert_eq!(plugins.evict(&login, &candidates, 1, 1_000), [2]);
    // Without it in `policies`, a service falls back to the oldest.
    assert_eq!(plugins.evict(&service(), &candidates, 1, 1_000), [1]);
}

#[test]
fn an_admission_plugin_delays_then_accepts() {
    let runtime = Runtime::new(None).expect("the runtime");
    let file = runtime
        .load(
            bytes_of(fixture("delay-newcomers")),
            Origin::File {
                path: "delay-newcomers.wasm".to_owned(),
                sha256: String::new(),
            },
            Budget::default(),
        )
        .expect("it loads");
    let mut plugins = Plugins::new(vec![file]);
    let policies = ["delay-newcomers".to_owned()];
    let mut login = service();
    login.policies = &policies;
    let connection = warden_policy::ConnectionView {
        id: 0,
        listener: "imap".to_owned(),
        peer: warden_policy::PeerView::default(),
        accepted_ms: 1_000,
        authenticated: false,
        pid: 0,
    };
    let counts = warden_policy::SourceCounts {
        concurrent: 1,
        last_second: 1,
    };
    assert_eq!(
        plugins.admit(&login, &connection, counts, 1_100),
        warden_policy::Admission::Delay(200)
    );
    assert_eq!(
        plugins.admit(&login, &connection, counts, 1_300),
        warden_policy::Admission::Accept
    );
}

/// A current-thread tokio runtime, as the master's event loop is, inside
/// which `body` runs: a plugin is asked from there in the master.
fn in_event_loop<T>(body: impl FnOnce() -> T) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async { body() })
}

#[test]
fn what_a_plugin_prints_reaches_the_log_even_inside_an_event_loop() {
    let mut plugins = load(fixture("print")).expect("it loads");
    let log = with_log(|| {
        in_event_loop(|| {
            assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
        });
    });
    assert_eq!(failure_of(&plugins), None);
    assert!(
        log.contains("retire asked for imap-login with 3 processes"),
        "{log}"
    );
    assert!(log.contains("a line on stderr from retire"), "{log}");
    assert!(
        log.contains("plugin=\"print\" stream=\"stdout\" hook=\"idle\" service=\"imap-login\""),
        "{log}"
    );
    assert!(log.contains("stream=\"stderr\""), "{log}");
}

#[test]
fn a_panic_message_inside_an_event_loop_is_logged_and_the_call_falls_back() {
    let mut plugins = load(fixture("trap")).expect("it loads");
    let log = with_log(|| {
        in_event_loop(|| {
            assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
        });
    });
    assert!(
        matches!(failure_of(&plugins), Some(Failure::Trap(_))),
        "{:?}",
        failure_of(&plugins)
    );
    assert!(log.contains("the trap fixture traps on purpose"), "{log}");
}

#[test]
fn a_memory_hog_inside_an_event_loop_meets_its_cap_and_its_message_is_logged() {
    let mut plugins = load_with(fixture("memory-hog"), patient()).expect("it loads");
    let log = with_log(|| {
        in_event_loop(|| {
            assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
        });
    });
    assert_eq!(failure_of(&plugins), Some(Failure::Memory));
    assert!(log.contains("memory allocation"), "{log}");
}

#[test]
fn a_plugin_that_sleeps_fails_at_once_instead_of_holding_the_caller() {
    let mut plugins = load(fixture("sleep")).expect("it loads");
    let started = Instant::now();
    in_event_loop(|| {
        assert_eq!(plugins.idle(&service(), &idle_processes(), 3, 1_000), []);
    });
    assert_eq!(failure_of(&plugins), Some(Failure::Waited));
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "the sleeping call held the caller for {took:?}"
    );
}

#[test]
fn a_plugin_built_against_another_record_is_refused_naming_the_function_and_record() {
    let error = load(fixture("wrong-record")).expect_err("it must be refused");
    assert!(matches!(error, LoadError::Contract { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("`idle.retire`: parameter 2 (`processes`): record `process` has 8 fields, warden's contract has 7"),
        "{error}"
    );
}

#[test]
fn a_plugin_built_against_another_version_is_refused_naming_both() {
    let error = load(fixture("wrong-version")).expect_err("it must be refused");
    assert!(
        error
            .to_string()
            .contains("built against warden:policy@0.2.0; this warden speaks 0.1.0"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("does not export"),
        "a version mismatch is the one problem: {error}"
    );
}

#[test]
fn metrics_prometheus_cannot_hold_are_refused_and_the_others_shown() {
    let runtime = Runtime::new(None).expect("the runtime");
    let loaded = [
        fixture("metrics-bad-label"),
        fixture("metrics-negative"),
        fixture("metrics-clash"),
    ]
    .into_iter()
    .map(|name| {
        runtime
            .load(
                bytes_of(name),
                Origin::File {
                    path: format!("{name}.wasm"),
                    sha256: String::new(),
                },
                patient(),
            )
            .expect("it loads")
    })
    .collect();
    let mut plugins = Plugins::new(loaded);
    let failure = |plugins: &Plugins, name: &str| {
        plugins
            .plugins()
            .iter()
            .find(|p| p.identity().name == name)
            .and_then(|p| p.last_failure().cloned())
    };
    assert!(
        matches!(failure(&plugins, "metrics-bad-label"), Some(Failure::Invalid(ref reason)) if reason.contains("[\"__x\"]")),
        "{:?}",
        failure(&plugins, "metrics-bad-label")
    );
    assert!(
        matches!(failure(&plugins, "metrics_negative"), Some(Failure::Invalid(ref reason)) if reason.contains("warden_plugin_metrics_negative_ticks, as plugin metrics-negative's is")),
        "{:?}",
        failure(&plugins, "metrics_negative")
    );
    assert_eq!(
        failure(&plugins, "metrics-negative"),
        None,
        "its declaration is sound"
    );
    // Only the plugin whose declaration stood reports, and its negative
    // counter is refused.
    assert_eq!(plugins.report(1_000), []);
    assert!(
        matches!(failure(&plugins, "metrics-negative"), Some(Failure::Invalid(ref reason)) if reason.contains("the negative value -1 for the counter ticks")),
        "{:?}",
        failure(&plugins, "metrics-negative")
    );
}
