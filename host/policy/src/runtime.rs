//! The WebAssembly runtime: policy plugins answering the master's
//! questions under a deadline and a memory cap, with every answer checked.
//!
//! One [`wasmtime::Engine`] serves every plugin: Cranelift, epoch
//! interruption driven by a ticker thread, and no concurrency support
//! (warden needs no async component functions, and a call costs a third of
//! what it does with it). Per plugin, the [`Component`] and its
//! [`InstancePre`] are made once at load and each hook interface probed
//! once; one long-lived [`Store`] answers its calls and is rebuilt after a
//! trap (a trapped store cannot be entered again) or when its memory has
//! grown past half its cap (linear memory never shrinks).
//!
//! The sandbox: WASI is linked with nothing granted — no directories, no
//! sockets, no environment, no arguments; stdout and stderr are written to
//! warden's log, tagged with the plugin. The `host` interface offers only
//! logging, cut at [`MAX_LOG_LINE`] bytes.
//!
//! A call that traps, runs past its deadline, hits the memory cap, or
//! returns an invalid answer is a failure: the caller falls back to the
//! next plugin or the built-in decision, the failure is logged with plugin,
//! hook, service and reason, and counted. [`QUARANTINE_FAILURES`] failures
//! within [`QUARANTINE_WINDOW`] quarantine the plugin until the next load.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::exports::warden::policy as hooks;
use crate::bindings::warden::policy::host::{self, Level};

/// Where a plugin sees the directory its configuration grants it.
pub const GRANT: &str = "/grant";

/// How often the epoch advances: the granularity of every deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The longest log line a plugin can write; longer ones are cut.
pub const MAX_LOG_LINE: usize = 4096;

/// Failures within [`QUARANTINE_WINDOW`] that quarantine a plugin.
pub const QUARANTINE_FAILURES: usize = 5;

/// The window [`QUARANTINE_FAILURES`] are counted in.
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(60);

/// The most a plugin's stdout and stderr hold between two calls.
const OUTPUT_BUFFER: usize = 64 * 1024;

/// Deadline and memory cap of a plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// How long one call, or instantiation, may run.
    pub deadline: Duration,
    /// How much linear memory (all memories together) an instance may have.
    pub memory: usize,
}

impl Default for Budget {
    /// 20 ms and 32 MiB: a Rust plugin answers in microseconds with a
    /// megabyte or two of memory.
    fn default() -> Self {
        Budget {
            deadline: Duration::from_millis(20),
            memory: 32 << 20,
        }
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not a valid component.
    #[error(
        "plugin {source_name}: not a valid WebAssembly component: {reason}; build it as a component, e.g. with cargo build --target wasm32-wasip2"
    )]
    Compile {
        /// Where it came from.
        source_name: String,
        /// What the compiler said.
        reason: String,
    },
    /// It imports something warden does not provide.
    #[error(
        "plugin {source_name}: cannot be linked: {reason}; a plugin may import only warden:policy/host and WASI"
    )]
    Link {
        /// Where it came from.
        source_name: String,
        /// What the linker said.
        reason: String,
    },
    /// It does not export the `plugin` interface.
    #[error(
        "plugin {source_name}: it does not export warden:policy/plugin@0.1.0, which every plugin must"
    )]
    NoIdentity {
        /// Where it came from.
        source_name: String,
    },
    /// Instantiating it or asking its identity failed.
    #[error("plugin {source_name}: {reason}")]
    Start {
        /// Where it came from.
        source_name: String,
        /// What failed.
        reason: String,
    },
}

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Embedded in warden.
    Builtin,
    /// A file in `plugins_dir`.
    File {
        /// Its path.
        path: String,
        /// The sha256 of its bytes, hex.
        sha256: String,
    },
}

/// The hooks a plugin exports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `defaults`.
    pub defaults: bool,
    /// `typing`.
    pub typing: bool,
    /// `admission`.
    pub admission: bool,
    /// `eviction`.
    pub eviction: bool,
    /// `idle`.
    pub idle: bool,
    /// `scaling`.
    pub scaling: bool,
    /// `lifecycle`.
    pub lifecycle: bool,
    /// `stats`.
    pub stats: bool,
}

impl Hooks {
    /// The names of the exported hooks, in WIT order.
    pub fn names(&self) -> Vec<&'static str> {
        [
            (self.defaults, "defaults"),
            (self.typing, "typing"),
            (self.admission, "admission"),
            (self.eviction, "eviction"),
            (self.idle, "idle"),
            (self.scaling, "scaling"),
            (self.lifecycle, "lifecycle"),
            (self.stats, "stats"),
        ]
        .into_iter()
        .filter_map(|(has, name)| has.then_some(name))
        .collect()
    }
}

/// How a call went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// It ran past its deadline.
    Deadline,
    /// It tried to grow its memory past the cap.
    Memory,
    /// It trapped (a panic, an unreachable, a bad access…).
    Trap(String),
    /// It answered something the host refuses.
    Invalid(String),
    /// The plugin is quarantined.
    Quarantined,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Deadline => write!(f, "ran past its deadline"),
            Failure::Memory => write!(f, "exceeded its memory cap"),
            Failure::Trap(reason) => write!(f, "trapped: {reason}"),
            Failure::Invalid(reason) => write!(f, "answered invalidly: {reason}"),
            Failure::Quarantined => write!(f, "is quarantined after repeated failures"),
        }
    }
}

/// Call statistics of a plugin, for `warden plugins`.
#[derive(Debug, Clone, Default)]
pub struct CallStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Recent call durations, for the mean and the 99th percentile.
    recent: VecDeque<Duration>,
}

impl CallStats {
    const KEPT: usize = 1024;

    fn record(&mut self, took: Duration) {
        self.calls += 1;
        if self.recent.len() == Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
    }

    /// The mean of recent calls.
    pub fn mean(&self) -> Duration {
        let count = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if count == 0 {
            return Duration::ZERO;
        }
        self.recent.iter().sum::<Duration>() / count
    }

    /// The 99th percentile of recent calls.
    pub fn p99(&self) -> Duration {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort();
        let index = (sorted.len() * 99).div_ceil(100).saturating_sub(1);
        sorted.get(index).copied().unwrap_or_default()
    }
}

/// The engine every plugin shares, with its epoch ticker.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: Arc<Linker<State>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine and starts the epoch ticker (a thread that ends
    /// with the last clone of the engine).
    ///
    /// With `cache`, compiled code is kept in that directory, which the
    /// caller creates owned by the supervisor's user and closed to others;
    /// wasmtime keys each entry by the component's hash and the engine's
    /// compiler and settings, and recompiles an entry that is stale,
    /// foreign or damaged rather than trust it.
    pub fn new(cache: Option<&Path>) -> Result<Runtime, String> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.max_wasm_stack(256 << 10);
        if let Some(dir) = cache {
            let mut settings = wasmtime::CacheConfig::new();
            settings.with_directory(dir);
            let cache = wasmtime::Cache::new(settings)
                .map_err(|e| format!("cannot use {} as the plugin cache: {e}", dir.display()))?;
            config.cache(Some(cache));
        }
        let engine =
            Engine::new(&config).map_err(|e| format!("cannot create the wasm engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| format!("cannot link WASI: {e}"))?;
        host::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| format!("cannot link the host interface: {e}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("warden-epoch".to_owned())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
        Ok(Runtime {
            engine,
            linker: Arc::new(linker),
        })
    }

    /// Compiles, links and starts a plugin from `bytes`, asking its
    /// identity under `budget`.
    pub fn load(&self, bytes: &[u8], origin: Origin, budget: Budget) -> Result<Plugin, LoadError> {
        let source_name = match &origin {
            Origin::Builtin => "(built-in)".to_owned(),
            Origin::File { path, .. } => path.clone(),
        };
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            source_name: source_name.clone(),
            reason: e.to_string(),
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                source_name: source_name.clone(),
                reason: e.to_string(),
            })?;
        let indices = Indices::probe(&pre);
        let Some(identity_index) = indices.plugin.clone() else {
            return Err(LoadError::NoIdentity { source_name });
        };
        let mut plugin = Plugin {
            engine: self.engine.clone(),
            pre,
            indices,
            instance: None,
            budget,
            grant: None,
            origin,
            identity: Identity::default(),
            stats: CallStats::default(),
            failures: VecDeque::new(),
            last_failure: None,
            quarantined: false,
        };
        let identity = plugin
            .call("plugin", "", |store, instance| {
                let guest = identity_index.load(&mut *store, instance)?;
                guest.call_describe(&mut *store)
            })
            .map_err(|failure| LoadError::Start {
                source_name: source_name.clone(),
                reason: format!("asking its identity failed: it {failure}"),
            })?;
        plugin.identity = Identity {
            name: identity.name,
            version: identity.version,
            description: identity.description,
            services: identity.services,
        };
        if let Some((store, _)) = &mut plugin.instance {
            store.data_mut().plugin.clone_from(&plugin.identity.name);
        }
        if plugin.identity.name.is_empty() {
            return Err(LoadError::Start {
                source_name,
                reason: "its identity has an empty name".to_owned(),
            });
        }
        Ok(plugin)
    }
}

/// What a plugin says it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// What it decides.
    pub description: String,
    /// Glob patterns of the services it applies to.
    pub services: Vec<String>,
}

/// The probed export indices of a plugin's interfaces.
#[derive(Clone)]
struct Indices {
    plugin: Option<hooks::plugin::GuestIndices>,
    defaults: Option<hooks::defaults::GuestIndices>,
    typing: Option<hooks::typing::GuestIndices>,
    admission: Option<hooks::admission::GuestIndices>,
    eviction: Option<hooks::eviction::GuestIndices>,
    idle: Option<hooks::idle::GuestIndices>,
    scaling: Option<hooks::scaling::GuestIndices>,
    lifecycle: Option<hooks::lifecycle::GuestIndices>,
    stats: Option<hooks::stats::GuestIndices>,
}

impl Indices {
    fn probe(pre: &InstancePre<State>) -> Indices {
        Indices {
            plugin: hooks::plugin::GuestIndices::new(pre).ok(),
            defaults: hooks::defaults::GuestIndices::new(pre).ok(),
            typing: hooks::typing::GuestIndices::new(pre).ok(),
            admission: hooks::admission::GuestIndices::new(pre).ok(),
            eviction: hooks::eviction::GuestIndices::new(pre).ok(),
            idle: hooks::idle::GuestIndices::new(pre).ok(),
            scaling: hooks::scaling::GuestIndices::new(pre).ok(),
            lifecycle: hooks::lifecycle::GuestIndices::new(pre).ok(),
            stats: hooks::stats::GuestIndices::new(pre).ok(),
        }
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            defaults: self.defaults.is_some(),
            typing: self.typing.is_some(),
            admission: self.admission.is_some(),
            eviction: self.eviction.is_some(),
            idle: self.idle.is_some(),
            scaling: self.scaling.is_some(),
            lifecycle: self.lifecycle.is_some(),
            stats: self.stats.is_some(),
        }
    }
}

/// A loaded plugin, ready for calls.
pub struct Plugin {
    engine: Engine,
    pre: InstancePre<State>,
    indices: Indices,
    instance: Option<(Store<State>, wasmtime::component::Instance)>,
    budget: Budget,
    /// A directory granted read-only, seen by the plugin at [`GRANT`].
    grant: Option<PathBuf>,
    origin: Origin,
    identity: Identity,
    stats: CallStats,
    failures: VecDeque<Instant>,
    last_failure: Option<Failure>,
    quarantined: bool,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("identity", &self.identity)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// What the plugin says it is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The hooks it exports.
    pub fn hooks(&self) -> Hooks {
        self.indices.hooks()
    }

    /// Its call statistics.
    pub fn stats(&self) -> &CallStats {
        &self.stats
    }

    /// Applies the configuration's budget and directory grant; the next
    /// call runs in a new instance made with them.
    pub fn configure(&mut self, budget: Budget, grant: Option<PathBuf>) {
        if self.budget != budget || self.grant != grant {
            self.budget = budget;
            self.grant = grant;
            self.instance = None;
        }
    }

    /// Its budget.
    pub fn budget(&self) -> Budget {
        self.budget
    }

    /// Whether it is quarantined.
    pub fn quarantined(&self) -> bool {
        self.quarantined
    }

    /// How its last failed call failed.
    pub fn last_failure(&self) -> Option<&Failure> {
        self.last_failure.as_ref()
    }

    /// Whether one of its `services` entries is `service` itself, not a
    /// pattern that matches it.
    pub fn names_exactly(&self, service: &str) -> bool {
        self.identity
            .services
            .iter()
            .any(|pattern| pattern == service)
    }

    /// Whether it applies to `service`: its globs match the name.
    pub fn applies_to(&self, service: &str) -> bool {
        self.identity
            .services
            .iter()
            .any(|pattern| glob_matches(pattern, service))
    }

    /// The `defaults` hook, if exported and not quarantined.
    pub(crate) fn defaults(&self) -> Option<hooks::defaults::GuestIndices> {
        self.indices.defaults.clone().filter(|_| !self.quarantined)
    }

    /// The `typing` hook, if exported and not quarantined.
    pub(crate) fn typing(&self) -> Option<hooks::typing::GuestIndices> {
        self.indices.typing.clone().filter(|_| !self.quarantined)
    }

    /// The `admission` hook, if exported and not quarantined.
    pub(crate) fn admission(&self) -> Option<hooks::admission::GuestIndices> {
        self.indices.admission.clone().filter(|_| !self.quarantined)
    }

    /// The `eviction` hook, if exported and not quarantined.
    pub(crate) fn eviction(&self) -> Option<hooks::eviction::GuestIndices> {
        self.indices.eviction.clone().filter(|_| !self.quarantined)
    }

    /// The `stats` hook, if exported and not quarantined.
    pub(crate) fn stats_hook(&self) -> Option<hooks::stats::GuestIndices> {
        self.indices.stats.clone().filter(|_| !self.quarantined)
    }

    /// The `idle` hook, if exported and not quarantined.
    pub(crate) fn idle(&self) -> Option<hooks::idle::GuestIndices> {
        self.indices.idle.clone().filter(|_| !self.quarantined)
    }

    /// The `scaling` hook, if exported and not quarantined.
    pub(crate) fn scaling(&self) -> Option<hooks::scaling::GuestIndices> {
        self.indices.scaling.clone().filter(|_| !self.quarantined)
    }

    /// The `lifecycle` hook, if exported and not quarantined.
    pub(crate) fn lifecycle(&self) -> Option<hooks::lifecycle::GuestIndices> {
        self.indices.lifecycle.clone().filter(|_| !self.quarantined)
    }

    /// A fresh store and instance, instantiated under the deadline.
    fn instantiate(&self) -> Result<(Store<State>, wasmtime::component::Instance), Failure> {
        let output = Output::default();
        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.clone()).stderr(output.clone());
        if let Some(dir) = &self.grant {
            wasi.preopened_dir(dir, GRANT, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(|e| Failure::Trap(format!("cannot grant {}: {e}", dir.display())))?;
        }
        let state = State {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(self.budget.memory)
                .instances(64)
                .tables(64)
                .memories(16)
                .build(),
            memory_cap_hit: false,
            memory_now: 0,
            plugin: self.identity.name.clone(),
            output,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| state);
        store.set_epoch_deadline(ticks(self.budget.deadline));
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|error| classify(&store, &error))?;
        Ok((store, instance))
    }

    /// Calls `hook` through `call` under the budget. On failure the store
    /// is dropped (rebuilt at the next call), the failure counted, and the
    /// plugin quarantined when failures repeat.
    pub(crate) fn call<T>(
        &mut self,
        hook: &str,
        service: &str,
        call: impl FnOnce(&mut Store<State>, &wasmtime::component::Instance) -> wasmtime::Result<T>,
    ) -> Result<T, Failure> {
        if self.quarantined {
            return Err(Failure::Quarantined);
        }
        let started = Instant::now();
        let result = self.try_call(call);
        self.stats.record(started.elapsed());
        if let Some((store, _)) = &mut self.instance {
            store.data_mut().flush_output();
        }
        if let Err(failure) = &result {
            self.failed(hook, service, failure);
        }
        result
    }

    fn try_call<T>(
        &mut self,
        call: impl FnOnce(&mut Store<State>, &wasmtime::component::Instance) -> wasmtime::Result<T>,
    ) -> Result<T, Failure> {
        if self.instance.is_none() {
            self.instance = Some(self.instantiate()?);
        }
        let Some((store, instance)) = &mut self.instance else {
            return Err(Failure::Trap("the instance is gone".to_owned()));
        };
        store.set_epoch_deadline(ticks(self.budget.deadline));
        let result = call(store, instance).map_err(|error| classify(store, &error));
        let outgrown = store.data().memory_now > self.budget.memory / 2;
        if (result.is_err() || outgrown)
            && let Some((mut store, _)) = self.instance.take()
        {
            store.data_mut().flush_output();
        }
        result
    }

    /// Counts a failure of the plugin's answer (checked by the caller).
    pub(crate) fn invalid(&mut self, hook: &str, service: &str, reason: String) -> Failure {
        let failure = Failure::Invalid(reason);
        self.failed(hook, service, &failure);
        failure
    }

    fn failed(&mut self, hook: &str, service: &str, failure: &Failure) {
        if *failure == Failure::Quarantined {
            return;
        }
        self.stats.failures += 1;
        self.last_failure = Some(failure.clone());
        let now = Instant::now();
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > QUARANTINE_WINDOW)
        {
            self.failures.pop_front();
        }
        tracing::warn!(
            plugin = self.identity.name,
            hook,
            service,
            "the plugin {failure}; the next decision in the chain is used"
        );
        if self.failures.len() >= QUARANTINE_FAILURES {
            self.quarantined = true;
            tracing::error!(
                plugin = self.identity.name,
                "quarantined until the next reload: {} failures in {}s",
                self.failures.len(),
                QUARANTINE_WINDOW.as_secs()
            );
        }
    }
}

/// Epoch ticks for `deadline`, at least one.
fn ticks(deadline: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros().max(1);
    u64::try_from(deadline.as_micros().div_ceil(tick))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Names a wasmtime error as a [`Failure`].
fn classify(store: &Store<State>, error: &wasmtime::Error) -> Failure {
    if store.data().memory_cap_hit {
        return Failure::Memory;
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Failure::Deadline,
        Some(trap) => Failure::Trap(trap.to_string()),
        None => Failure::Trap(error.to_string()),
    }
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one
/// character).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    fn matches(pattern: &[char], name: &[char]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some(('*', rest)) => {
                (0..=name.len()).any(|skip| matches(rest, name.get(skip..).unwrap_or_default()))
            }
            Some((&p, rest)) => match name.split_first() {
                Some((&c, tail)) if p == '?' || p == c => matches(rest, tail),
                _ => false,
            },
        }
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches(&pattern, &name)
}

/// A store's host state.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    memory_cap_hit: bool,
    memory_now: usize,
    plugin: String,
    output: Output,
}

impl State {
    /// Writes what the plugin printed to the log, line by line.
    fn flush_output(&mut self) {
        let bytes = self.output.take();
        if bytes.is_empty() {
            return;
        }
        for line in String::from_utf8_lossy(&bytes).lines() {
            tracing::info!(plugin = self.plugin, stream = "stdio", "{}", cut(line));
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_now = self
                .memory_now
                .saturating_add(desired.saturating_sub(current));
        } else {
            self.memory_cap_hit = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// `text` cut to [`MAX_LOG_LINE`] bytes at a character boundary, with a
/// note when it was cut.
fn cut(text: &str) -> String {
    if text.len() <= MAX_LOG_LINE {
        return text.to_owned();
    }
    let mut end = MAX_LOG_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} bytes cut)",
        text.get(..end).unwrap_or_default(),
        text.len() - end
    )
}

impl host::Host for State {
    fn log(&mut self, level: Level, message: String, fields: Vec<(String, String)>) {
        let message = cut(&message);
        let fields: Vec<String> = fields
            .iter()
            .take(16)
            .map(|(key, value)| format!("{}={}", cut(key), cut(value)))
            .collect();
        let fields = fields.join(" ");
        let plugin = self.plugin.as_str();
        match level {
            Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            Level::Info => tracing::info!(plugin, fields, "{message}"),
            Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }
}

/// A plugin's stdout and stderr: kept in memory, bounded, written to the
/// log after each call. What does not fit is dropped, not refused, so a
/// chatty plugin does not trap.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Output {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl wasmtime_wasi::cli::IsTerminal for Output {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for Output {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for Output {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let room = OUTPUT_BUFFER.saturating_sub(buffer.len());
        buffer.extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The hex sha256 of `bytes`, a plugin file's version id.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_service_names() {
        assert!(glob_matches("*", "imap-login"));
        assert!(glob_matches("*-login", "imap-login"));
        assert!(glob_matches("imap*", "imap-login"));
        assert!(glob_matches("po?3", "pop3"));
        assert!(!glob_matches("*-login", "imap"));
        assert!(!glob_matches("imap", "imap-login"));
        assert!(glob_matches("", ""));
    }

    #[test]
    fn long_lines_are_cut_at_a_character_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(MAX_LOG_LINE);
        let cut = cut(&long);
        assert!(cut.len() < MAX_LOG_LINE + 40);
        assert!(cut.ends_with("bytes cut)"));
    }

    #[test]
    fn deadlines_are_whole_ticks() {
        assert_eq!(ticks(Duration::from_millis(20)), 20);
        assert_eq!(ticks(Duration::from_micros(1)), 1);
        assert_eq!(ticks(Duration::ZERO), 1);
    }
}
