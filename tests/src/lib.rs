//! Helpers for warden's end-to-end tests.
//!
//! The tests run the real `warden` binary, built by the same cargo that runs
//! them, and the probe: a small static program that reports what a spawned
//! process got (ids, groups, root, limits, descriptors, environment).

#![allow(
    clippy::expect_used,
    reason = "test helpers fail loudly on what they cannot set up"
)]

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use warden_sys::{Exit, SpawnError, SpawnPlan};

/// The path of the `warden` binary, built once per test process with the
/// profile the tests themselves were built with.
pub fn warden() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let build = escargot::CargoBuild::new()
            .package("warden")
            .bin("warden")
            .current_release()
            .run()
            .unwrap_or_else(|error| panic!("cannot build the warden binary: {error}"));
        build.path().to_path_buf()
    })
}

/// The probe: a static executable built from `probe/probe.c`.
pub fn probe() -> &'static Path {
    Path::new(env!("WARDEN_PROBE"))
}

/// Whether this process runs as root. When it does not, says which test is
/// skipped and why, so the skip is visible in the output.
pub fn root_or_skip(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipped {test}: it changes user, groups or root directory, which needs root");
    }
    root
}

/// What the probe reported, line by line: `key=value`.
#[derive(Debug, Default)]
pub struct Report {
    lines: BTreeMap<String, String>,
    /// How the probe exited.
    pub exit: Option<Exit>,
}

impl Report {
    /// The value reported for `key` (`uid`, `fd.3`, `env.PATH`…).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines.get(key).map(String::as_str)
    }

    /// The value for `key`, or a panic naming what the probe said instead.
    pub fn value(&self, key: &str) -> &str {
        self.get(key)
            .unwrap_or_else(|| panic!("the probe reported no {key}: {:#?}", self.lines))
    }

    /// Every key starting with `prefix`, with its value.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.lines
            .range(prefix.to_owned()..)
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_str(), value.as_str()))
    }
}

/// Runs the probe with `arguments` as `plan` says (its stdout, fd 1, is
/// added to the plan here), waits for it and returns its report.
pub fn run_probe(mut plan: SpawnPlan) -> Result<Report, SpawnError> {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().expect("pipe");
    plan.fd(write, 1);
    let child = plan.spawn()?;
    let mut output = String::new();
    std::fs::File::from(read)
        .read_to_string(&mut output)
        .expect("read the probe's report");
    let exit = child.wait().expect("wait for the probe");
    let mut report = Report {
        exit: Some(exit),
        ..Report::default()
    };
    for line in output.lines() {
        if let Some((key, value)) = line.split_once('=') {
            report.lines.insert(key.to_owned(), value.to_owned());
        }
    }
    Ok(report)
}

/// A plan to run the probe with `arguments`.
pub fn probe_plan(arguments: &[&str]) -> SpawnPlan {
    let mut argv = vec![probe().as_os_str().to_owned()];
    argv.extend(arguments.iter().map(Into::into));
    SpawnPlan::new("probe", argv)
}
