//! The compiled-code cache: where plugins are compiled once, by a process
//! that is not the master.
//!
//! Compiling a component runs Cranelift: seconds for a Python or
//! JavaScript plugin, and hundreds of megabytes that a process keeps once
//! its allocator has them. The master never compiles. A short-lived helper
//! (`warden compile-plugins`) compiles each new component with an engine
//! configured exactly as the master's and writes the machine code to a
//! file here; the master maps that file (see [`warden_sys::compiled`]),
//! so a plugin's code is paged in as it runs rather than copied into the
//! master's memory.
//!
//! A file is named by the component's sha256 and [`engine_id`], so a
//! warden built with another wasmtime or other settings compiles afresh;
//! wasmtime checks the file's version and settings again when it maps it,
//! and a file it refuses is removed and compiled again where it is loaded
//! ([`CompiledCache::misses`] counts those), then by the helper next
//! time. Files are written aside and renamed into place, never rewritten,
//! as a mapped file must not change. The directory is checked by the
//! caller to be owned by root or warden's user and closed to others: the
//! code in it runs in the master.

use std::hash::{Hash, Hasher};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where a runtime keeps compiled code.
#[derive(Debug)]
pub(crate) struct CompiledCache {
    /// The directory the `compiled/` files live in.
    dir: PathBuf,
    /// The engine's [`engine_id`].
    engine: String,
    /// Components compiled where they were loaded, the cache not holding
    /// them (or holding a file wasmtime refused).
    misses: AtomicUsize,
}

impl CompiledCache {
    /// The cache in `dir` for `engine`.
    pub(crate) fn new(dir: &Path, engine: &Engine) -> CompiledCache {
        CompiledCache {
            dir: dir.to_owned(),
            engine: engine_id(engine),
            misses: AtomicUsize::new(0),
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory the compiled files are in.
    pub(crate) fn compiled_dir(&self) -> PathBuf {
        self.dir.join("compiled")
    }

    fn file(&self, sha256: &str) -> PathBuf {
        self.compiled_dir()
            .join(format!("{sha256}-{}.cwasm", self.engine))
    }

    /// Whether the component with this sha256 was compiled for this engine.
    pub(crate) fn has(&self, sha256: &str) -> bool {
        self.file(sha256).is_file()
    }

    /// Stores the code compiled from the component with this sha256:
    /// written aside, then renamed into place.
    pub(crate) fn store(&self, sha256: &str, code: &[u8]) -> io::Result<()> {
        let dir = self.compiled_dir();
        std::fs::create_dir_all(&dir)?;
        let mut aside = tempfile::NamedTempFile::new_in(&dir)?;
        // Readable by a master running as warden's user when root wrote it
        // (`warden check`); the directory stays closed to others.
        aside
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        aside.write_all(code)?;
        aside.as_file().sync_all()?;
        aside
            .persist(self.file(sha256))
            .map_err(|error| error.error)?;
        Ok(())
    }

    /// The component with this sha256, mapped from its file; `None` when
    /// the cache has no file for it, or wasmtime refuses the file (it is
    /// then counted as a miss, the caller compiling it).
    pub(crate) fn map(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let file = self.file(sha256);
        if !file.is_file() {
            self.missed();
            return None;
        }
        match warden_sys::compiled::map_component(engine, &file) {
            Ok(component) => Some(component),
            Err(error) => {
                // Removed, so the helper compiles it again next time.
                let removed = std::fs::remove_file(&file);
                tracing::warn!(
                    file = %file.display(),
                    %error,
                    removed = removed.is_ok(),
                    "compiled plugin code refused; compiling the plugin here"
                );
                self.missed();
                None
            }
        }
    }

    fn missed(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// How many components were compiled where they were loaded because
    /// the cache did not hold them.
    pub(crate) fn misses(&self) -> usize {
        self.misses.load(Ordering::Relaxed)
    }
}

/// A hex digest of everything that makes compiled code fit an engine:
/// wasmtime's version, the compiler, its settings and the host's features.
pub(crate) fn engine_id(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize())
        .get(..32)
        .unwrap_or_default()
        .to_owned()
}

/// Feeds what a [`Hash`] implementation writes into sha256, whose digest,
/// unlike `DefaultHasher`'s, is the same in every process.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(first)
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The hex sha256 of `bytes`, a plugin file's version id.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}
