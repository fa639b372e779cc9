//! Plugins' compiled code, mapped from the cache instead of copied.
//!
//! A component compiled by warden's helper is a file of machine code in
//! the plugin cache. Read into memory, every plugin's code would stay
//! resident in the master for good, used or not. Mapped, its pages are the
//! file's: the kernel brings in the ones a call runs and can drop them
//! again (see [`crate::memory::release_code`]), and the plugins' initial
//! memory images are mapped from the file copy-on-write.

use std::path::Path;

use wasmtime::Engine;
use wasmtime::component::Component;

/// Maps the component compiled into `path` by the same build of warden,
/// for `engine`.
///
/// The caller must have checked that `path`'s directory is owned by root
/// or warden's user and closed to everyone else, and its files must only
/// ever be replaced whole (written aside, then renamed into place), never
/// written in place: the code in the file runs in the master, and the
/// mapping reads the file for as long as the component lives.
///
/// Fails when the file cannot be read, is not a compiled component, or
/// was compiled by another wasmtime or for an engine configured otherwise
/// (wasmtime checks both before using it).
pub fn map_component(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: deserialize_file trusts the file to be a component that
    // wasmtime compiled (it checks the header, version and engine
    // settings, but cannot check the machine code). The file comes from
    // warden's own compile helper, in a directory the caller checked only
    // root or warden's user can write, so nobody else could have put code
    // there. The file is mapped for the component's life, so it must not
    // change under it: the cache only ever renames new files into place,
    // which leaves a mapped file's contents as they were.
    unsafe { Component::deserialize_file(engine, path) }
}
