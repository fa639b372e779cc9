//! Builds the plugins workspace (`plugins/`) for `wasm32-wasip2` and embeds
//! the components: the built-in plugins into the library, the fixtures for
//! the tests.
//!
//! The nested cargo uses its own target directory, so it never waits on
//! the outer build's lock, and none of the outer build's flags or wrappers
//! (clippy's, for one) leak into it. Where the target is missing and rustup
//! is present, it is added. Every fixture must have a test in
//! `tests/fixtures.rs`; one without fails the build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let plugins = root.join("plugins");
    for watched in ["sdk", "builtin", "fixtures", "Cargo.toml", "Cargo.lock"] {
        println!(
            "cargo::rerun-if-changed={}",
            plugins.join(watched).display()
        );
    }
    println!("cargo::rerun-if-changed={}", root.join("wit").display());
    println!("cargo::rerun-if-changed=tests/fixtures.rs");

    let builtins = crates(&plugins.join("builtin"));
    let fixtures = crates(&plugins.join("fixtures"));
    require_tests(&manifest_dir.join("tests/fixtures.rs"), &fixtures);

    let out_dir = PathBuf::from(env("OUT_DIR"));
    let target_dir = out_dir.join("plugins");
    add_target_if_missing();
    let mut cargo = Command::new(env("CARGO"));
    cargo
        .arg("build")
        .arg("--release")
        .arg("--locked")
        .arg(format!("--target={TARGET}"))
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--workspace")
        .arg("--exclude=warden-plugin-sdk")
        .env("CARGO_TARGET_DIR", &target_dir);
    for leak in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(leak);
    }
    let status = cargo
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build the plugins: {error}"));
    assert!(
        status.success(),
        "building the plugins for {TARGET} failed ({status}); the errors are above"
    );

    let artifacts = target_dir.join(TARGET).join("release");
    for (file, constant, list) in [
        ("builtins.rs", "BUILTINS", &builtins),
        ("fixtures.rs", "FIXTURES", &fixtures),
    ] {
        let mut generated = String::new();
        let _ = writeln!(
            generated,
            "/// `(name, component)` of each of {}.",
            file.trim_end_matches(".rs")
        );
        let _ = writeln!(generated, "pub const {constant}: &[(&str, &[u8])] = &[");
        for (dir, package) in list {
            let wasm = artifacts.join(format!("{}.wasm", package.replace('-', "_")));
            let _ = writeln!(
                generated,
                "    ({dir:?}, include_bytes!({:?})),",
                wasm.display().to_string()
            );
        }
        let _ = writeln!(generated, "];");
        std::fs::write(out_dir.join(file), generated)
            .unwrap_or_else(|error| panic!("cannot write {file}: {error}"));
    }
}

fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: this script runs under cargo"))
}

/// `(directory name, package name)` of each crate under `dir`, sorted.
fn crates(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()));
    for entry in entries.flatten() {
        let manifest = entry.path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let package = text
            .lines()
            .find_map(|line| line.strip_prefix("name = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .unwrap_or_else(|| panic!("{} names no package", manifest.display()))
            .to_owned();
        found.push((entry.file_name().to_string_lossy().into_owned(), package));
    }
    found.sort();
    found
}

/// Fails the build when a fixture has no `fixture("name")` test.
fn require_tests(tests: &Path, fixtures: &[(String, String)]) {
    let text = std::fs::read_to_string(tests).unwrap_or_default();
    let untested: Vec<&str> = fixtures
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| !text.contains(&format!("fixture(\"{name}\")")))
        .collect();
    assert!(
        untested.is_empty(),
        "plugin fixtures without a test in {}: {}; add a test that loads each with fixture(\"NAME\") and asserts its outcome",
        tests.display(),
        untested.join(", ")
    );
}

/// Adds the wasm target with rustup when it is missing, so `cargo build`
/// needs no setup step.
fn add_target_if_missing() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let Ok(output) = installed else {
        return;
    };
    if String::from_utf8_lossy(&output.stdout)
        .lines()
        .any(|line| line.trim() == TARGET)
    {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !added.is_ok_and(|status| status.success()) {
        println!(
            "cargo::warning=could not add the {TARGET} target with rustup; add it with `rustup target add {TARGET}`"
        );
    }
}
