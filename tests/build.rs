//! Builds the probe (`probe/probe.c`) as a static executable, so tests can
//! run it inside an empty chroot, and tells the tests where it is through
//! `WARDEN_PROBE`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "probe/probe.c";
    println!("cargo::rerun-if-changed={source}");
    let Some(out_dir) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        panic!("OUT_DIR is not set: this script runs under cargo");
    };
    let probe = out_dir.join("probe");
    let compiler = cc::Build::new().get_compiler();
    let mut command: Command = compiler.to_command();
    command
        .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&probe)
        .arg(source);
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run the C compiler for the probe: {error}"));
    assert!(
        status.success(),
        "building the static probe failed ({status}); it needs a C compiler and the static libc (Debian: libc6-dev)"
    );
    println!("cargo::rustc-env=WARDEN_PROBE={}", probe.display());
}
