//! Helpers for warden's end-to-end tests.
//!
//! The tests run the real `warden` binary, built by the same cargo that runs
//! them; nothing here starts services or touches system state.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
