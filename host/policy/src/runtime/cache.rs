//! The compiled-code cache: where plugins are compiled once, by a process
//! that is not the master.
//!
//! Compiling a component runs Cranelift: seconds for a Python or
//! JavaScript plugin, and hundreds of megabytes that a process keeps once
//! its allocator has them. The master never compiles. A short-lived helper
//! (`warden compile-plugins`) compiles each new component with an engine
//! configured exactly as the master's, which stores the code in
//! wasmtime's cache, and then marks it compiled here; the master loads
//! marked components, which wasmtime reads from its cache.
//!
//! wasmtime keys its entries by the component's bytes and the engine's
//! compiler and settings, and recompiles an entry that is stale, foreign or
//! damaged rather than trust it. A mark is the component's sha256 and
//! [`engine_id`], so a warden built with another wasmtime or other settings
//! compiles afresh. The directory is checked by the caller to be owned by
//! root or warden's user and closed to others: the code in it runs in the
//! master.

use std::hash::{Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;

/// Where a runtime keeps compiled code.
#[derive(Debug, Clone)]
pub(crate) struct CompiledCache {
    /// The directory wasmtime's entries and warden's marks live in.
    dir: PathBuf,
    /// The engine's [`engine_id`].
    engine: String,
    /// wasmtime's cache, for its hit and miss counts.
    wasmtime: wasmtime::Cache,
}

impl CompiledCache {
    /// wasmtime's cache in `dir`. Its size limits stay wasmtime's own
    /// (cleanup runs when an entry is written, so in the helper); an entry
    /// evicted behind a mark is compiled again where it is loaded, and
    /// [`CompiledCache::misses`] tells. Hits never recompress an entry,
    /// which would run zstd in the master.
    pub(crate) fn open(dir: &Path) -> wasmtime::Result<wasmtime::Cache> {
        let mut settings = wasmtime::CacheConfig::new();
        settings
            .with_directory(dir)
            .with_optimized_compression_usage_counter_threshold(u64::MAX);
        wasmtime::Cache::new(settings)
    }

    /// The cache in `dir` for `engine`.
    pub(crate) fn new(dir: &Path, engine: &Engine, wasmtime: wasmtime::Cache) -> CompiledCache {
        CompiledCache {
            dir: dir.to_owned(),
            engine: engine_id(engine),
            wasmtime,
        }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn mark(&self, sha256: &str) -> PathBuf {
        self.dir
            .join("compiled")
            .join(format!("{sha256}-{}", self.engine))
    }

    /// Whether the component with this sha256 was compiled for this engine.
    pub(crate) fn has(&self, sha256: &str) -> bool {
        self.mark(sha256).is_file()
    }

    /// Marks the component with this sha256 compiled.
    pub(crate) fn record(&self, sha256: &str) -> io::Result<()> {
        let mark = self.mark(sha256);
        if let Some(parent) = mark.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(mark, b"")
    }

    /// How many components wasmtime had to compile because its cache did
    /// not hold them.
    pub(crate) fn misses(&self) -> usize {
        self.wasmtime.cache_misses()
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
