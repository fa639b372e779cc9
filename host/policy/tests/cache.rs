//! The compiled-code cache: what the helper compiles, a runtime maps
//! without compiling, and a file wasmtime refuses is compiled again.

#![allow(
    clippy::expect_used,
    reason = "a test fails loudly on what it cannot set up"
)]

use std::path::{Path, PathBuf};

use warden_policy::runtime::sha256;
use warden_policy::{
    BUILTINS, Budget, ExitCause, ExitView, Lifecycle, Origin, Plugins, Policy, Runtime,
    ServiceKind, ServiceView,
};

/// The built-in `dovecot` plugin's name and component: it decides on
/// every exit.
fn builtin() -> (&'static str, &'static [u8]) {
    *BUILTINS
        .iter()
        .find(|(name, _)| *name == "dovecot")
        .expect("the built-in dovecot plugin")
}

/// Asks `plugins` about an exit with `cause`, as the master does.
fn decide_an_exit(plugins: &mut Plugins, cause: ExitCause) -> Lifecycle {
    let service = ServiceView {
        name: "imap",
        kind: ServiceKind::Default,
        protocol: "imap",
        policies: &[],
        service_count: Some(1),
        client_limit: 1,
        process_limit: 10,
        process_min_avail: 0,
        idle_kill_ms: None,
        per_source_limit: None,
        per_source_rate: None,
    };
    let exit = ExitView {
        pid: 4242,
        cause,
        age_ms: 3,
        was_ready: true,
        was_asked: false,
        service_proven: true,
        failures_in_last_second: 0,
        last_throttle_ms: 0,
    };
    plugins.lifecycle(&service, &exit)
}

/// The calls made to the one plugin of `plugins`, and how many failed.
fn calls_and_failures(plugins: &Plugins) -> (u64, u64) {
    let asked = plugins.plugins().first().expect("the plugin").stats();
    (asked.calls, asked.failures)
}

/// The compiled files in the cache `dir`.
fn compiled_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir.join("compiled"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether this process maps `file`.
fn maps(file: &Path) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .expect("maps")
        .lines()
        .any(|line| line.ends_with(&*file.to_string_lossy()))
}

#[test]
fn a_compiled_plugin_is_mapped_from_the_cache_not_compiled_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, bytes) = builtin();
    let helper = Runtime::new(Some(dir.path())).expect("the helper's runtime");
    assert!(!helper.is_compiled(&sha256(bytes)));
    helper.compile(bytes, name).expect("compile");
    assert!(helper.is_compiled(&sha256(bytes)));
    let files = compiled_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");

    let master = Runtime::new(Some(dir.path())).expect("the master's runtime");
    let plugin = master
        .load(bytes, Origin::Builtin, Budget::default())
        .expect("load from the cache");
    assert_eq!(plugin.identity().name, name);
    assert_eq!(master.compiled_here(), 0, "the cache held it");
    let file = files.first().expect("the compiled file");
    assert!(maps(file), "{} is not mapped", file.display());

    // Its pages released, the code runs on from the file.
    let compiled = master.compiled_dir().expect("the compiled directory");
    let released = warden_sys::memory::release_code(Some(&compiled)).expect("release");
    assert!(released > 0);
    let mut plugins = Plugins::new(vec![plugin]);
    // A failure, which a built-in plugin is asked about, of a process that
    // was ready in a proven service: no throttle. A clean exit, which no
    // built-in plugin throttles after, is not asked about.
    assert_eq!(
        decide_an_exit(&mut plugins, ExitCause::Code(1)),
        Lifecycle::Continue
    );
    assert_eq!(
        decide_an_exit(&mut plugins, ExitCause::Code(0)),
        Lifecycle::Continue
    );
    assert_eq!(
        calls_and_failures(&plugins),
        (2, 0),
        "identity, then the failed exit only"
    );
}

#[test]
fn a_compiled_file_wasmtime_refuses_is_compiled_again_where_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, bytes) = builtin();
    Runtime::new(Some(dir.path()))
        .expect("the helper's runtime")
        .compile(bytes, name)
        .expect("compile");
    let file = compiled_files(dir.path()).pop().expect("the compiled file");
    std::fs::write(&file, b"\x7fELF and then nothing a compiler wrote").expect("damage it");

    let master = Runtime::new(Some(dir.path())).expect("the master's runtime");
    let plugin = master
        .load(bytes, Origin::Builtin, Budget::default())
        .expect("compiled here instead");
    assert_eq!(plugin.identity().name, name);
    assert_eq!(master.compiled_here(), 1);
    assert!(!file.exists(), "the refused file is removed for the helper");
    assert!(!master.is_compiled(&sha256(bytes)));
}

#[test]
fn without_a_cache_nothing_counts_as_compiled() {
    let (_, bytes) = builtin();
    let runtime = Runtime::new(None).expect("the runtime");
    assert!(!runtime.is_compiled(&sha256(bytes)));
    assert!(runtime.cache_dir().is_none());
}

#[test]
fn a_plugin_loaded_again_is_started_from_its_linked_component_reading_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, bytes) = builtin();
    let runtime = Runtime::new(Some(dir.path())).expect("the runtime");
    runtime.compile(bytes, name).expect("compile");
    let first = runtime
        .load(bytes, Origin::Builtin, Budget::default())
        .expect("load from the cache");
    assert_eq!(first.linked().sha256(), sha256(bytes));

    // With the cache emptied, a load would have to compile; starting from
    // what the first load linked reads nothing.
    for file in compiled_files(dir.path()) {
        std::fs::remove_file(file).expect("empty the cache");
    }
    let again = runtime
        .relink(first.linked(), Origin::Builtin, Budget::default())
        .expect("started again");
    assert_eq!(runtime.compiled_here(), 0, "nothing was compiled");
    assert_eq!(again.identity(), first.identity());
    assert_eq!(again.hooks(), first.hooks());
    drop(first);

    // A fresh plugin: its own instance, its calls counted from its start.
    let mut plugins = Plugins::new(vec![again]);
    assert_eq!(
        decide_an_exit(&mut plugins, ExitCause::Code(1)),
        Lifecycle::Continue
    );
    assert_eq!(
        calls_and_failures(&plugins),
        (2, 0),
        "identity, then the exit"
    );
}
