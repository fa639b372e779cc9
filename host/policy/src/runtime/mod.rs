//! The WebAssembly runtime: policy plugins answering the master's
//! questions under a deadline and a memory cap, with every answer checked.
//!
//! One [`wasmtime::Engine`] serves every plugin: Cranelift, epoch
//! interruption driven by a ticker thread that sleeps while no plugin is
//! called (`ticker`), and no concurrency support
//! (warden needs no async component functions, and a call costs a third of
//! what it does with it). Per plugin, the [`Component`] and its
//! [`InstancePre`] are made once at load, its imports and exports checked
//! against the contract ([`crate::contract`]) and each hook interface
//! probed once; one long-lived [`Store`] answers its calls and is rebuilt
//! after a failure (a trapped store cannot be entered again) or when its
//! memory has grown past half its cap (linear memory never shrinks).
//!
//! **How a plugin runs in the master.** WASI is linked with its
//! asynchronous host functions, and each call is polled in a tokio context
//! of the runtime's own that nothing ever drives. Every host function a
//! decision may use completes within the first poll — clocks, random,
//! logging, stdout and stderr (captured in memory, see [`sandbox`]),
//! opening and reading the granted directory's files by descriptor — but
//! one: a file read through a stream (how Python's and other libcs'
//! `read` reach a file) is done by WASI on a blocking thread, and the call
//! is polled again as it completes, within the call's deadline. A plugin
//! that waits on anything else — sleeps, polls a timer, reads a stream that
//! is not ready — leaves the call pending until its deadline at most; the
//! call is dropped there and counts as a failure. So no
//! WASI host function ever blocks on a runtime: neither the master's,
//! whose event loop the master's own thread is running when it asks, nor
//! any other. A host function that panics is caught and counts as a
//! failure too. (Linked synchronously, WASI's host functions call
//! `Handle::block_on`, which panics inside the master's event loop: a
//! plugin's `print` once took the master down that way.)
//!
//! The sandbox: WASI is linked with nothing granted — no directories, no
//! network, no environment, no arguments; stdout and stderr go to warden's
//! log, tagged with the plugin. The `host` interface offers only logging,
//! cut at [`MAX_LOG_LINE`] bytes.
//!
//! A call that traps, runs past its deadline, hits the memory cap, waits,
//! or returns an invalid answer is a failure: the caller falls back to the
//! next plugin or the built-in decision, the failure is logged with plugin,
//! hook, service and reason, and counted. [`QUARANTINE_FAILURES`] failures
//! within [`QUARANTINE_WINDOW`] quarantine the plugin until the next load.
//!
//! Compiling is not done here when the runtime has a cache: see [`cache`].

mod cache;
mod sandbox;
mod ticker;

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Instance, InstancePre, Linker};
use wasmtime::{Config, Engine, Store, UpdateDeadline};

use crate::bindings::exports::warden::policy as hooks;
use crate::bindings::warden::policy::host;
use crate::contract;
use cache::CompiledCache;
pub use cache::sha256;
pub(crate) use sandbox::State;
pub use sandbox::{MAX_LOG_LINE, OUTPUT_LINES_PER_CALL, OUTPUT_PER_CALL};
use ticker::Ticker;

/// Where a plugin sees the directory its configuration grants it.
pub const GRANT: &str = "/grant";

/// How often the epoch advances while plugins are called: how late past
/// its deadline a call that does not return can be stopped. At each tick
/// that comes while a call runs, the call's deadline is compared with the
/// clock, so no call is stopped before it. Most calls end long before a
/// tick comes; each tick wakes a thread, so fewer cost the master less.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How long a plugin's start — its instantiation and its identity, the
/// first guest code a load runs — may take, unless its budget's deadline
/// is longer. A start pays once for what no decision pays again (the first
/// touch of the compiled code, the instance's memory made), and a busy
/// machine can stretch that past a decision's deadline; a load runs off
/// the event loop, so a longer wait holds up no decision, and a start that
/// never ends is still stopped. It covers the instance a load makes to ask
/// the identity; one made again later (after a failed call, or to grant a
/// directory) is held to the decision deadline.
pub const START_DEADLINE: Duration = Duration::from_secs(1);

/// Failures within [`QUARANTINE_WINDOW`] that quarantine a plugin.
pub const QUARANTINE_FAILURES: usize = 5;

/// The window [`QUARANTINE_FAILURES`] are counted in.
pub const QUARANTINE_WINDOW: Duration = Duration::from_secs(60);

/// Deadline and memory cap of a plugin's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// How long one call, or instantiation, may run (a plugin's start may
    /// take [`START_DEADLINE`] if that is longer).
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

/// Why a runtime could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The engine or its linker could not be made.
    #[error("cannot set up the WebAssembly engine: {what}")]
    Engine {
        /// What failed.
        what: &'static str,
        /// What wasmtime said.
        #[source]
        source: wasmtime::Error,
    },
    /// The epoch ticker thread could not start.
    #[error("cannot start the plugins' deadline ticker")]
    Ticker(#[source] io::Error),
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
    /// Its imports or exports differ from the contract.
    #[error("plugin {source_name}: {mismatch}")]
    Contract {
        /// Where it came from.
        source_name: String,
        /// How it differs.
        mismatch: contract::Mismatch,
    },
    /// It passed the contract check and still cannot be linked.
    #[error("plugin {source_name}: cannot be linked: {reason}")]
    Link {
        /// Where it came from.
        source_name: String,
        /// What the linker said.
        reason: String,
    },
    /// Instantiating it or asking its identity failed.
    #[error("plugin {source_name}: {reason}")]
    Start {
        /// Where it came from.
        source_name: String,
        /// What failed.
        reason: String,
    },
    /// Its compiled code could not be stored in the cache.
    #[error("plugin {source_name}: cannot record its compiled code in {}; check plugin_cache", cache.display())]
    Record {
        /// Where it came from.
        source_name: String,
        /// The cache directory.
        cache: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
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

impl Origin {
    /// How messages name a plugin of this origin.
    fn source_name(&self) -> String {
        match self {
            Origin::Builtin => "(built-in)".to_owned(),
            Origin::File { path, .. } => path.clone(),
        }
    }
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
    /// It waited for something (a timer, a stream) instead of answering.
    Waited,
    /// A host function it called panicked.
    HostPanic(String),
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
            Failure::Waited => write!(
                f,
                "waited (for a timer or a stream) instead of answering; a decision must not wait"
            ),
            Failure::HostPanic(reason) => write!(f, "made warden's side panic: {reason}"),
            Failure::Quarantined => write!(f, "is quarantined after repeated failures"),
        }
    }
}

/// The upper bounds, in seconds, of the buckets call times are counted
/// in: from a microsecond to a tenth of a second (the default deadline
/// is 20 ms); slower calls fall in the last, unbounded, bucket.
pub const CALL_BUCKETS: [f64; 12] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 1e-1,
];

/// The calls of one hook of a plugin since it was loaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HookTimes {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Their time, in seconds, summed.
    pub seconds: f64,
    /// How many took at most each of [`CALL_BUCKETS`], and (the last)
    /// longer: each call counted in one bucket.
    pub buckets: [u64; CALL_BUCKETS.len() + 1],
}

impl HookTimes {
    fn record(&mut self, took: Duration, failed: bool) {
        let seconds = took.as_secs_f64();
        self.calls += 1;
        self.failures += u64::from(failed);
        self.seconds += seconds;
        let bucket = CALL_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(CALL_BUCKETS.len());
        if let Some(count) = self.buckets.get_mut(bucket) {
            *count += 1;
        }
    }

    /// The mean call time.
    pub fn mean(&self) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(self.seconds / self.calls as f64)
    }

    /// The bound 99 calls in 100 took at most: the upper bound of the
    /// bucket the 99th percentile falls in; `None` when it is beyond the
    /// last bound, or there was no call.
    pub fn p99_at_most(&self) -> Option<Duration> {
        let wanted = (self.calls * 99).div_ceil(100);
        let mut counted = 0;
        for (count, bound) in self.buckets.iter().zip(CALL_BUCKETS) {
            counted += count;
            if counted >= wanted && counted > 0 {
                return Some(Duration::from_secs_f64(bound));
            }
        }
        None
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
    /// Each hook called, with its calls since the plugin was loaded.
    hooks: Vec<(String, HookTimes)>,
}

impl CallStats {
    const KEPT: usize = 1024;

    fn record(&mut self, hook: &str, took: Duration, failed: bool) {
        self.calls += 1;
        if self.recent.len() == Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back(took);
        match self.hooks.iter_mut().find(|(name, _)| name == hook) {
            Some((_, times)) => times.record(took, failed),
            None => {
                let mut times = HookTimes::default();
                times.record(took, failed);
                self.hooks.push((hook.to_owned(), times));
            }
        }
    }

    /// Each hook called, with its calls since the plugin was loaded, in
    /// the order they were first called.
    pub fn hooks(&self) -> &[(String, HookTimes)] {
        &self.hooks
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

/// The tokio context WASI's host functions see while a plugin runs, one
/// per process and never dropped (a tokio runtime may not be dropped
/// inside another's event loop, where the master drops old plugins). It
/// is never driven: a host function that would need it to make progress
/// leaves the call pending, and the call fails. It has no threads.
static CONTEXT: LazyLock<Result<tokio::runtime::Runtime, String>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())
});

/// What every plugin of a runtime shares.
struct Shared {
    engine: Engine,
    linker: Linker<State>,
    /// [`CONTEXT`]'s handle.
    context: tokio::runtime::Handle,
    cache: Option<CompiledCache>,
    /// What makes deadlines pass, told of every call.
    ticker: Ticker,
}

/// Wakes [`Shared::drive`] when a pending call may go on.
#[derive(Default)]
struct Wakeup {
    woken: std::sync::Mutex<bool>,
    ready: std::sync::Condvar,
}

impl std::task::Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(mut woken) = self.woken.lock() {
            *woken = true;
            self.ready.notify_one();
        }
    }
}

impl Wakeup {
    /// Waits until woken or `until`; whether it was woken.
    fn wait_until(&self, until: Instant) -> bool {
        let Ok(mut woken) = self.woken.lock() else {
            return false;
        };
        while !*woken {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.ready.wait_timeout(woken, left) {
                Ok((guard, _)) => woken = guard,
                Err(_) => return false,
            }
        }
        *woken = false;
        true
    }
}

impl Shared {
    /// Polls `future` in the plugins' own context, catching a panic: again
    /// each time it is woken (WASI's own work for it done), for at most
    /// `deadline` in all. A call that has not completed by then is
    /// dropped.
    fn drive<F: Future>(&self, future: F, deadline: Duration) -> Result<F::Output, Failure> {
        let _context = self.context.enter();
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut future = std::pin::pin!(future);
            let wakeup = Arc::new(Wakeup::default());
            let waker = Waker::from(Arc::clone(&wakeup));
            let mut context = Context::from_waker(&waker);
            let until = Instant::now() + deadline;
            loop {
                match future.as_mut().poll(&mut context) {
                    Poll::Ready(output) => return Some(output),
                    Poll::Pending if wakeup.wait_until(until) => {}
                    Poll::Pending => return None,
                }
            }
        }));
        match polled {
            Ok(Some(output)) => Ok(output),
            Ok(None) => Err(Failure::Waited),
            Err(payload) => Err(Failure::HostPanic(panic_message(payload.as_ref()))),
        }
    }
}

/// The text of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The engine every plugin shares, with its epoch ticker.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
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
    /// With `cache`, compiled code is kept in that directory (see
    /// [`cache`]), which the caller has checked is owned by root or
    /// warden's user and closed to others.
    pub fn new(cache: Option<&Path>) -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.concurrency_support(false);
        config.max_wasm_stack(256 << 10);
        let engine = Engine::new(&config).map_err(|source| RuntimeError::Engine {
            what: "creating the engine",
            source,
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|source| {
            RuntimeError::Engine {
                what: "linking WASI",
                source,
            }
        })?;
        host::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |s| s)
            .map_err(|source| RuntimeError::Engine {
                what: "linking the host interface",
                source,
            })?;
        let context = match &*CONTEXT {
            Ok(context) => context.handle().clone(),
            Err(error) => {
                return Err(RuntimeError::Engine {
                    what: "creating the plugins' tokio context",
                    source: wasmtime::Error::msg(error.clone()),
                });
            }
        };
        let ticker = Ticker::start(&engine).map_err(RuntimeError::Ticker)?;
        let cache = cache.map(|dir| CompiledCache::new(dir, &engine));
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                linker,
                context,
                cache,
                ticker,
            }),
        })
    }

    /// The cache directory, if the runtime has one.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.shared.cache.as_ref().map(CompiledCache::dir)
    }

    /// The directory whose files the plugins' compiled code is mapped
    /// from, as the kernel names it in a process's mappings; `None`
    /// without a cache, or before anything was compiled into it.
    pub fn compiled_dir(&self) -> Option<PathBuf> {
        let cache = self.shared.cache.as_ref()?;
        std::fs::canonicalize(cache.compiled_dir()).ok()
    }

    /// Whether the component whose sha256 is `sha256` is compiled in the
    /// cache for this engine, so that loading it compiles nothing. Always
    /// false without a cache.
    pub fn is_compiled(&self, sha256: &str) -> bool {
        self.shared
            .cache
            .as_ref()
            .is_some_and(|cache| cache.has(sha256))
    }

    /// How many components this runtime compiled itself because the cache
    /// did not hold them.
    pub fn compiled_here(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, CompiledCache::misses)
    }

    /// Compiles `bytes` into the cache (the helper's work) and checks it
    /// against the contract, so the master can load it without compiling.
    pub fn compile(&self, bytes: &[u8], source_name: &str) -> Result<(), LoadError> {
        let component = self.compiled(bytes, source_name)?;
        contract::check(&self.shared.engine, &component).map_err(|mismatch| {
            LoadError::Contract {
                source_name: source_name.to_owned(),
                mismatch,
            }
        })?;
        if let Some(cache) = &self.shared.cache {
            let recorded = component
                .serialize()
                .map_err(io::Error::other)
                .and_then(|code| cache.store(&sha256(bytes), &code));
            recorded.map_err(|source| LoadError::Record {
                source_name: source_name.to_owned(),
                cache: cache.dir().to_owned(),
                source,
            })?;
        }
        Ok(())
    }

    /// `bytes` compiled here.
    fn compiled(&self, bytes: &[u8], source_name: &str) -> Result<Component, LoadError> {
        Component::new(&self.shared.engine, bytes).map_err(|e| LoadError::Compile {
            source_name: source_name.to_owned(),
            reason: e.to_string(),
        })
    }

    /// The component whose bytes hash to `sha256`, mapped from the cache,
    /// or `bytes` compiled here when the cache has no usable code for them.
    fn component(
        &self,
        bytes: &[u8],
        sha256: &str,
        source_name: &str,
    ) -> Result<Component, LoadError> {
        let mapped = self
            .shared
            .cache
            .as_ref()
            .and_then(|cache| cache.map(&self.shared.engine, sha256));
        match mapped {
            Some(component) => Ok(component),
            None => self.compiled(bytes, source_name),
        }
    }

    /// Loads a plugin from `bytes` — compiled, or read from the cache —
    /// checks it against the contract, links it, and asks its identity
    /// under `budget`, within [`START_DEADLINE`] if that is longer.
    pub fn load(&self, bytes: &[u8], origin: Origin, budget: Budget) -> Result<Plugin, LoadError> {
        let source_name = origin.source_name();
        let sha256 = sha256(bytes);
        let component = self.component(bytes, &sha256, &source_name)?;
        contract::check(&self.shared.engine, &component).map_err(|mismatch| {
            LoadError::Contract {
                source_name: source_name.clone(),
                mismatch,
            }
        })?;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                source_name: source_name.clone(),
                reason: e.to_string(),
            })?;
        let indices = Indices::probe(&pre);
        self.start(
            Linked {
                sha256,
                pre,
                indices,
            },
            origin,
            budget,
        )
    }

    /// Loads a plugin again from what an earlier load of the same bytes
    /// linked (see [`Plugin::linked`]): nothing is read, mapped, checked
    /// or linked again, only a fresh instance is made and asked its
    /// identity, as [`Runtime::load`] does. A plugin set loaded again
    /// (a reload, a change in `plugins_dir`) so costs the master no
    /// memory for the plugins that stay the same.
    pub fn relink(
        &self,
        linked: &Linked,
        origin: Origin,
        budget: Budget,
    ) -> Result<Plugin, LoadError> {
        self.start(linked.clone(), origin, budget)
    }

    /// A plugin of `linked`, with a fresh instance asked its identity
    /// within [`START_DEADLINE`] (or the budget's deadline, if longer).
    fn start(&self, linked: Linked, origin: Origin, budget: Budget) -> Result<Plugin, LoadError> {
        let source_name = origin.source_name();
        let Some(identity_index) = linked.indices.plugin.clone() else {
            return Err(LoadError::Contract {
                source_name,
                mismatch: contract::Problem::NoIdentity.into(),
            });
        };
        let mut plugin = Plugin {
            shared: Arc::clone(&self.shared),
            linked,
            instance: None,
            instances: 0,
            budget: Budget {
                deadline: budget.deadline.max(START_DEADLINE),
                ..budget
            },
            grant: None,
            origin,
            identity: Identity::default(),
            stats: CallStats::default(),
            failures: VecDeque::new(),
            last_failure: None,
            quarantined: false,
        };
        let identity = plugin
            .call("plugin", "", async |store, live| {
                live.guest(&mut *store, &identity_index)?
                    .call_describe(&mut *store)
                    .await
            })
            .map_err(|failure| LoadError::Start {
                source_name: source_name.clone(),
                reason: format!("asking its identity failed: it {failure}"),
            })?;
        plugin.budget = budget;
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

/// A plugin's component as a load checked and linked it, by the sha256 of
/// its bytes: what [`Runtime::relink`] starts the same plugin from again.
#[derive(Clone)]
pub struct Linked {
    sha256: String,
    pre: InstancePre<State>,
    indices: Indices,
}

impl Linked {
    /// The sha256 of the component's bytes, hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl std::fmt::Debug for Linked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Linked")
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
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

/// A plugin's instance, with the functions of each hook it was called
/// through: looked up and type-checked at the first call, not at each.
pub(crate) struct Live {
    instance: Instance,
    plugin: Option<hooks::plugin::Guest>,
    defaults: Option<hooks::defaults::Guest>,
    typing: Option<hooks::typing::Guest>,
    admission: Option<hooks::admission::Guest>,
    eviction: Option<hooks::eviction::Guest>,
    idle: Option<hooks::idle::Guest>,
    scaling: Option<hooks::scaling::Guest>,
    lifecycle: Option<hooks::lifecycle::Guest>,
    stats: Option<hooks::stats::Guest>,
}

impl Live {
    fn new(instance: Instance) -> Live {
        Live {
            instance,
            plugin: None,
            defaults: None,
            typing: None,
            admission: None,
            eviction: None,
            idle: None,
            scaling: None,
            lifecycle: None,
            stats: None,
        }
    }

    /// The functions of the hook whose export indices are `hook`.
    pub(crate) fn guest<H: Hook>(
        &mut self,
        store: &mut Store<State>,
        hook: &H,
    ) -> wasmtime::Result<&H::Guest> {
        let instance = self.instance;
        let slot = H::slot(self);
        let guest = match slot.take() {
            Some(guest) => guest,
            None => hook.load(store, &instance)?,
        };
        Ok(slot.insert(guest))
    }
}

/// A hook's export indices, which look up its functions in an instance.
pub(crate) trait Hook {
    /// The hook's functions.
    type Guest;
    /// Looks them up in `instance`, checking their types.
    fn load(&self, store: &mut Store<State>, instance: &Instance) -> wasmtime::Result<Self::Guest>;
    /// Where a [`Live`] keeps them.
    fn slot(live: &mut Live) -> &mut Option<Self::Guest>;
}

/// Implements [`Hook`] for each interface's indices.
macro_rules! hooks {
    ($($interface:ident),* $(,)?) => {$(
        impl Hook for hooks::$interface::GuestIndices {
            type Guest = hooks::$interface::Guest;

            fn load(
                &self,
                store: &mut Store<State>,
                instance: &Instance,
            ) -> wasmtime::Result<Self::Guest> {
                hooks::$interface::GuestIndices::load(self, store, instance)
            }

            fn slot(live: &mut Live) -> &mut Option<Self::Guest> {
                &mut live.$interface
            }
        }
    )*};
}

hooks!(
    plugin, defaults, typing, admission, eviction, idle, scaling, lifecycle, stats
);

/// A loaded plugin, ready for calls.
pub struct Plugin {
    shared: Arc<Shared>,
    linked: Linked,
    instance: Option<(Store<State>, Live)>,
    /// How many instances have been made: a new one starts the guest's
    /// state afresh (a failed call, or one that outgrew its memory, drops
    /// the instance it ran in).
    instances: u64,
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

    /// Its component as its load linked it, to load it again from.
    pub fn linked(&self) -> &Linked {
        &self.linked
    }

    /// Where it came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The hooks it exports.
    pub fn hooks(&self) -> Hooks {
        self.linked.indices.hooks()
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

    /// Its hooks' indices, unless it is quarantined.
    fn callable(&self) -> Option<&Indices> {
        (!self.quarantined).then_some(&self.linked.indices)
    }

    /// The `defaults` hook, if exported and not quarantined.
    pub(crate) fn defaults(&self) -> Option<hooks::defaults::GuestIndices> {
        self.callable()?.defaults.clone()
    }

    /// The `typing` hook, if exported and not quarantined.
    pub(crate) fn typing(&self) -> Option<hooks::typing::GuestIndices> {
        self.callable()?.typing.clone()
    }

    /// The `admission` hook, if exported and not quarantined.
    pub(crate) fn admission(&self) -> Option<hooks::admission::GuestIndices> {
        self.callable()?.admission.clone()
    }

    /// The `eviction` hook, if exported and not quarantined.
    pub(crate) fn eviction(&self) -> Option<hooks::eviction::GuestIndices> {
        self.callable()?.eviction.clone()
    }

    /// The `stats` hook, if exported and not quarantined.
    pub(crate) fn stats_hook(&self) -> Option<hooks::stats::GuestIndices> {
        self.callable()?.stats.clone()
    }

    /// Which instance the guest's state lives in now (see the count of
    /// instances made), or `None` when there is none: the next call makes
    /// a new one, whose state starts afresh.
    pub(crate) fn live_instance(&self) -> Option<u64> {
        self.instance.as_ref().map(|_| self.instances)
    }

    /// The `idle` hook, if exported and not quarantined.
    pub(crate) fn idle(&self) -> Option<hooks::idle::GuestIndices> {
        self.callable()?.idle.clone()
    }

    /// The `scaling` hook, if exported and not quarantined.
    pub(crate) fn scaling(&self) -> Option<hooks::scaling::GuestIndices> {
        self.callable()?.scaling.clone()
    }

    /// The `lifecycle` hook, if exported and not quarantined.
    pub(crate) fn lifecycle(&self) -> Option<hooks::lifecycle::GuestIndices> {
        self.callable()?.lifecycle.clone()
    }

    /// Starts the deadline of a call (or an instantiation) in `store`:
    /// the next epoch tick looks at the clock.
    fn start_clock(&self, store: &mut Store<State>) {
        store.data_mut().until = Instant::now() + self.budget.deadline;
        store.set_epoch_deadline(1);
    }

    /// A fresh store and instance, instantiated under the deadline (the
    /// component's start code is guest code too) for a call of `hook`
    /// for `service`; what a failed start printed is logged.
    fn instantiate(&self, hook: &str, service: &str) -> Result<(Store<State>, Live), Failure> {
        let state = State::new(&self.identity.name, self.budget, self.grant.as_deref())
            .map_err(|error| Failure::Trap(error.to_string()))?;
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|state| state);
        store.epoch_deadline_callback(|store| {
            Ok(if Instant::now() < store.data().until {
                UpdateDeadline::Continue(1)
            } else {
                UpdateDeadline::Interrupt
            })
        });
        self.start_clock(&mut store);
        let instantiated = self.linked.pre.instantiate_async(&mut store);
        let started = match self.shared.drive(instantiated, self.budget.deadline) {
            Ok(Ok(instance)) => return Ok((store, Live::new(instance))),
            Ok(Err(error)) => classify(&store, &error),
            Err(failure) => failure,
        };
        store.data().flush_output(hook, service);
        Err(started)
    }

    /// Calls `hook` through `call` under the budget. What the plugin
    /// printed is logged. On failure the store is dropped (rebuilt at the
    /// next call), the failure counted, and the plugin quarantined when
    /// failures repeat.
    pub(crate) fn call<T>(
        &mut self,
        hook: &str,
        service: &str,
        call: impl AsyncFnOnce(&mut Store<State>, &mut Live) -> wasmtime::Result<T>,
    ) -> Result<T, Failure> {
        if self.quarantined {
            return Err(Failure::Quarantined);
        }
        // Every path through try_call returns (a panic in a host function
        // is caught), so the call always ends.
        self.shared.ticker.begin();
        let started = Instant::now();
        let result = self.try_call(hook, service, call);
        self.shared.ticker.end();
        self.stats.record(hook, started.elapsed(), result.is_err());
        if let Err(failure) = &result {
            self.failed(hook, service, failure);
        }
        result
    }

    fn try_call<T>(
        &mut self,
        hook: &str,
        service: &str,
        call: impl AsyncFnOnce(&mut Store<State>, &mut Live) -> wasmtime::Result<T>,
    ) -> Result<T, Failure> {
        let (mut store, mut live) = match self.instance.take() {
            Some(live) => live,
            None => {
                let made = self.instantiate(hook, service)?;
                self.instances += 1;
                made
            }
        };
        self.start_clock(&mut store);
        let result = match self
            .shared
            .drive(call(&mut store, &mut live), self.budget.deadline)
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(classify(&store, &error)),
            Err(failure) => Err(failure),
        };
        store.data().flush_output(hook, service);
        let outgrown = store.data().memory_now > self.budget.memory / 2;
        if result.is_ok() && !outgrown {
            self.instance = Some((store, live));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_times_count_each_call_in_its_bucket() {
        let mut times = HookTimes::default();
        for micros in [3, 3, 4, 40] {
            times.record(Duration::from_micros(micros), false);
        }
        times.record(Duration::from_secs(1), true);
        assert_eq!(times.calls, 5);
        assert_eq!(times.failures, 1);
        assert_eq!(times.buckets[2], 3, "three at most 5 µs");
        assert_eq!(times.buckets[5], 1, "one at most 50 µs");
        assert_eq!(times.buckets[CALL_BUCKETS.len()], 1, "one beyond 100 ms");
        assert_eq!(times.p99_at_most(), None, "the slowest is off the scale");
        times.buckets[CALL_BUCKETS.len()] = 0;
        times.calls = 4;
        assert_eq!(times.p99_at_most(), Some(Duration::from_micros(50)));
    }

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
}
