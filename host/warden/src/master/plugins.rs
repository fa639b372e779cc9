//! Loading the policy plugins: the built-ins, then every `.wasm` file in
//! `plugins_dir`.
//!
//! The directory is read at start, on reload, and whenever its listing
//! changes (it is looked at once a second). `plugins_dir` and each file in
//! it must be trusted ([`crate::trust`]). A component not yet compiled for
//! this warden is compiled first — in the master's case by a short-lived
//! helper process (`warden compile-plugins`), so Cranelift's time and
//! memory are never the master's — and then loaded from the plugin cache.
//! The master runs [`load`] on a thread of its own, and the plugins it has
//! keep deciding until the new set is ready. A file that fails to compile,
//! check against the contract, link or describe itself is reported, and
//! the version of it that was loaded before, if any, stays.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use warden_policy::{Budget, Defaults, Linked, Origin, Plugin, Plugins, Runtime};

use crate::config::{Config, LoadError, Parsed, PluginSettings};

/// What `plugins_dir` held when last looked at: each `.wasm` file's path,
/// size and modification time.
pub(super) type Listing = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The `.wasm` files of `dir`, sorted; none when it does not exist.
pub(super) fn listing(dir: &Path) -> Listing {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Listing = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
        .filter_map(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            meta.is_file()
                .then(|| (path, meta.len(), meta.modified().ok()))
        })
        .collect();
    files.sort();
    files
}

/// Where a configuration's plugins come from.
#[derive(Debug, Clone)]
pub(super) struct Sources {
    /// `plugins_dir`.
    pub(super) dir: PathBuf,
    /// The `[plugin.NAME]` tables.
    pub(super) settings: Vec<PluginSettings>,
}

impl Sources {
    /// The sources `config` names.
    pub(super) fn of(config: &Config) -> Sources {
        Sources {
            dir: config.globals.plugins_dir.value.clone(),
            settings: config.plugins.clone(),
        }
    }
}

/// How a component that is not compiled yet gets compiled.
#[derive(Debug, Clone)]
pub(super) enum Compiler {
    /// In this process, into the runtime's cache if it has one: `warden
    /// check`, which exits afterwards.
    Here,
    /// In a helper process running the executable at this path with
    /// `compile-plugins`: the master.
    Helper(PathBuf),
}

/// A plugin set as [`load`] found it.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// Every plugin that loaded.
    pub(super) plugins: Vec<Plugin>,
    /// Each plugin that did not: its file (none for a built-in) and why.
    pub(super) failures: Vec<(Option<String>, String)>,
}

impl Loaded {
    /// The set as [`Plugins`]: the file plugins that failed now are taken
    /// from `previous` (the set running so far) when it had them, and every
    /// failure is logged, saying which.
    pub(super) fn into_plugins(self, previous: Plugins) -> Plugins {
        let mut previous = previous.into_plugins();
        let mut plugins = self.plugins;
        for (file, failure) in self.failures {
            let kept = file.as_ref().and_then(|file| {
                previous
                    .iter()
                    .position(|p| matches!(p.origin(), Origin::File { path, .. } if path == file))
            });
            match kept {
                Some(place) => {
                    tracing::error!("{failure}; the version loaded before stays");
                    plugins.push(previous.swap_remove(place));
                }
                None => tracing::error!("{failure}; the plugin is not used"),
            }
        }
        Plugins::new(plugins)
    }
}

/// One component to load.
struct Candidate {
    bytes: Vec<u8>,
    origin: Origin,
    /// Its file, or the built-in's name, for messages and the helper.
    shown: String,
    sha256: String,
}

/// Loads the built-ins and the files of `sources.dir`, compiling with
/// `compiler` what the runtime's cache does not hold yet, then gives each
/// plugin the budget and directory its `[plugin.NAME]` table sets. A
/// plugin whose bytes are those of one in `linked` (the set running so
/// far) is started again from it, so loading a set again costs nothing
/// for what did not change.
pub(super) fn load(
    runtime: &Runtime,
    sources: &Sources,
    compiler: &Compiler,
    linked: &[Linked],
) -> Loaded {
    let mut loaded = Loaded::default();
    let mut candidates: Vec<Candidate> = warden_policy::BUILTINS
        .iter()
        .map(|(name, bytes)| Candidate {
            bytes: bytes.to_vec(),
            origin: Origin::Builtin,
            shown: (*name).to_owned(),
            sha256: warden_policy::runtime::sha256(bytes),
        })
        .collect();
    candidates.extend(files(&sources.dir, &mut loaded.failures));
    let linked_as = |candidate: &Candidate| linked.iter().find(|l| l.sha256() == candidate.sha256);
    let uncompiled: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            runtime.cache_dir().is_some()
                && linked_as(c).is_none()
                && !runtime.is_compiled(&c.sha256)
        })
        .collect();
    let refused = compile(runtime, compiler, &uncompiled);
    // A plugin's name is known only from its identity, which it must give
    // within a deadline too (a second, or its own deadline if longer) and
    // a memory cap: the budget of the [plugin.NAME] table named like its
    // file (`python-admission.wasm`) or built-in, if there is one.
    let budget_of = |name: &str| {
        sources
            .settings
            .iter()
            .find(|s| s.name == name)
            .map_or_else(Budget::default, |set| Budget {
                deadline: set.deadline.value.to_std(),
                memory: usize::try_from(set.memory.value.0).unwrap_or(usize::MAX),
            })
    };
    for candidate in candidates {
        let file = matches!(candidate.origin, Origin::File { .. }).then(|| candidate.shown.clone());
        if let Some((_, why)) = refused.iter().find(|(shown, _)| *shown == candidate.shown) {
            loaded.failures.push((file, why.clone()));
            continue;
        }
        let compiled_before = runtime.compiled_here();
        let started = Instant::now();
        let named = Path::new(&candidate.shown).file_stem().map_or_else(
            || candidate.shown.clone(),
            |stem| stem.to_string_lossy().into_owned(),
        );
        let loaded_now = match linked_as(&candidate) {
            Some(linked) => runtime.relink(linked, candidate.origin, budget_of(&named)),
            None => runtime.load(&candidate.bytes, candidate.origin, budget_of(&named)),
        };
        match loaded_now {
            Ok(plugin) => {
                if runtime.compiled_here() > compiled_before
                    && matches!(compiler, Compiler::Helper(_))
                {
                    tracing::warn!(
                        plugin = plugin.identity().name,
                        took_ms = started.elapsed().as_millis(),
                        "the plugin was compiled here, not by the helper; check that plugin_cache is writable"
                    );
                }
                if file.is_some() {
                    tracing::info!(
                        plugin = plugin.identity().name,
                        file = candidate.shown,
                        hooks = plugin.hooks().names().join(","),
                        "plugin loaded"
                    );
                }
                loaded.plugins.push(plugin);
            }
            Err(error) => {
                let why = match &file {
                    Some(_) => error.to_string(),
                    None => format!(
                        "cannot load the built-in plugin {}: {error}",
                        candidate.shown
                    ),
                };
                loaded.failures.push((file, why));
            }
        }
    }
    for plugin in &mut loaded.plugins {
        if let Some(set) = sources
            .settings
            .iter()
            .find(|s| s.name == plugin.identity().name)
        {
            plugin.configure(budget_of(&set.name), set.directory.value.clone());
        }
    }
    loaded
}

/// The `.wasm` files of `dir` as candidates, each trusted and read; each
/// that is not goes to `failures`.
fn files(dir: &Path, failures: &mut Vec<(Option<String>, String)>) -> Vec<Candidate> {
    let listed = listing(dir);
    if listed.is_empty() {
        return Vec::new();
    }
    if let Err(untrusted) = crate::trust::directory(dir, "plugins_dir") {
        failures.push((
            None,
            format!("no plugin of plugins_dir is loaded: {untrusted}"),
        ));
        return Vec::new();
    }
    let mut candidates = Vec::new();
    for (path, _, _) in listed {
        let shown = path.display().to_string();
        let read = crate::trust::file(&path, "plugins_dir")
            .map_err(|untrusted| format!("plugin {shown}: {untrusted}"))
            .and_then(|()| {
                std::fs::read(&path)
                    .map_err(|error| format!("plugin {shown}: cannot read it: {error}"))
            });
        match read {
            Ok(bytes) => {
                let sha256 = warden_policy::runtime::sha256(&bytes);
                candidates.push(Candidate {
                    bytes,
                    origin: Origin::File {
                        path: shown.clone(),
                        sha256: sha256.clone(),
                    },
                    shown,
                    sha256,
                });
            }
            Err(why) => failures.push((Some(shown), why)),
        }
    }
    candidates
}

/// Compiles `candidates` into the runtime's cache; returns those that
/// failed, by their shown name, with why.
fn compile(
    runtime: &Runtime,
    compiler: &Compiler,
    candidates: &[&Candidate],
) -> Vec<(String, String)> {
    if candidates.is_empty() {
        return Vec::new();
    }
    match compiler {
        Compiler::Here => candidates
            .iter()
            .filter_map(|candidate| {
                let source = match candidate.origin {
                    Origin::Builtin => format!("(built-in {})", candidate.shown),
                    Origin::File { .. } => candidate.shown.clone(),
                };
                with_progress(&candidate.shown, candidate.bytes.len(), || {
                    runtime.compile(&candidate.bytes, &source)
                })
                .err()
                .map(|error| (candidate.shown.clone(), error.to_string()))
            })
            .collect(),
        Compiler::Helper(executable) => {
            let Some(cache) = runtime.cache_dir() else {
                return Vec::new();
            };
            let started = Instant::now();
            let plugins: Vec<String> = candidates
                .iter()
                .map(|c| format!("{} ({})", c.shown, megabytes(c.bytes.len())))
                .collect();
            tracing::info!(
                plugins = plugins.join(", "),
                "compiling plugins in a helper process"
            );
            let refused = run_helper(executable, cache, candidates);
            tracing::info!(
                took_ms = started.elapsed().as_millis(),
                refused = refused.len(),
                "the helper compiled the plugins"
            );
            refused
        }
    }
}

/// `bytes` as megabytes, for people.
fn megabytes(bytes: usize) -> String {
    // Component sizes are far below f64's exact integers.
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let megabytes = bytes as f64 / 1e6;
    format!("{megabytes:.1} MB")
}

/// Runs `compile`, the compiling of the plugin `shown` of `bytes`, with a
/// sign of life on stderr once it has taken a second: on a terminal a line
/// counting the seconds, otherwise a line when it is done. Only commands
/// compile here (`warden check`, `warden config`); the master logs what
/// its helper compiles, with each plugin's size, and how long it took.
fn with_progress<T>(shown: &str, bytes: usize, compile: impl FnOnce() -> T) -> T {
    use std::io::IsTerminal as _;
    use std::sync::{Arc, Condvar, Mutex};

    let started = Instant::now();
    let size = megabytes(bytes);
    let done = Arc::new((Mutex::new(false), Condvar::new()));
    let ticker = std::io::stderr().is_terminal().then(|| {
        let done = Arc::clone(&done);
        let (shown, size) = (shown.to_owned(), size.clone());
        std::thread::spawn(move || {
            let (lock, wake) = &*done;
            let mut finished = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut shown_once = false;
            while !*finished {
                let (guard, timeout) = wake
                    .wait_timeout(finished, std::time::Duration::from_secs(1))
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                finished = guard;
                if timeout.timed_out() && !*finished {
                    eprint!(
                        "\rcompiling plugin {shown} ({size})… {} s",
                        started.elapsed().as_secs()
                    );
                    shown_once = true;
                }
            }
            if shown_once {
                // The line is finished below.
                eprint!("\r");
            }
            shown_once
        })
    });
    let result = compile();
    let (lock, wake) = &*done;
    *lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
    wake.notify_all();
    let shown_once = ticker.is_some_and(|ticker| ticker.join().unwrap_or(false));
    let took = started.elapsed();
    if shown_once || took >= std::time::Duration::from_secs(1) {
        eprintln!(
            "compiled plugin {shown} ({size}) in {:.1} s",
            took.as_secs_f64()
        );
    }
    result
}

/// One line of the helper's report: a component it could not compile.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Refusal {
    /// The component's shown name: a file's path or a built-in's name.
    source: String,
    /// Why.
    error: String,
}

/// Runs `executable compile-plugins` for `candidates` and reads its report.
fn run_helper(executable: &Path, cache: &Path, candidates: &[&Candidate]) -> Vec<(String, String)> {
    let mut command = std::process::Command::new(executable);
    command
        .arg("compile-plugins")
        .arg("--cache")
        .arg(cache)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for candidate in candidates {
        match candidate.origin {
            Origin::Builtin => command.arg("--builtin").arg(&candidate.shown),
            Origin::File { .. } => command.arg(&candidate.shown),
        };
    }
    let all_refused = |why: String| -> Vec<(String, String)> {
        candidates
            .iter()
            .map(|c| (c.shown.clone(), format!("plugin {}: {why}", c.shown)))
            .collect()
    };
    let output = match command.output() {
        Ok(output) => output,
        Err(error) => {
            return all_refused(format!(
                "cannot start the compiler helper {}: {error}",
                executable.display()
            ));
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    for line in stderr.lines().filter(|line| !line.trim().is_empty()) {
        tracing::warn!("the plugin compiler helper said: {line}");
    }
    if !output.status.success() {
        return all_refused(format!(
            "the compiler helper failed ({}); {}",
            output.status,
            stderr.lines().last().unwrap_or("it said nothing")
        ));
    }
    let mut report = String::new();
    let _ = output.stdout.as_slice().read_to_string(&mut report);
    report
        .lines()
        .filter_map(|line| serde_json::from_str::<Refusal>(line).ok())
        .map(|refusal| (refusal.source, refusal.error))
        .collect()
}

/// `warden compile-plugins`: compiles the built-ins named in `builtins`
/// and the component files `files` into `cache`, as the master asks its
/// helper to, and prints a JSON line for each that fails. Returns whether
/// the cache could be used at all.
pub fn compile_helper(cache: &Path, builtins: &[String], files: &[PathBuf]) -> Result<(), String> {
    let runtime = Runtime::new(Some(cache)).map_err(|error| crate::error_chain(&error))?;
    let mut refusals = Vec::new();
    for name in builtins {
        let Some((_, bytes)) = warden_policy::BUILTINS.iter().find(|(n, _)| n == name) else {
            refusals.push(Refusal {
                source: name.clone(),
                error: format!("there is no built-in plugin {name}"),
            });
            continue;
        };
        if let Err(error) = runtime.compile(bytes, &format!("(built-in {name})")) {
            refusals.push(Refusal {
                source: name.clone(),
                error: error.to_string(),
            });
        }
    }
    for file in files {
        let shown = file.display().to_string();
        let compiled = std::fs::read(file)
            .map_err(|error| format!("plugin {shown}: cannot read it: {error}"))
            .and_then(|bytes| {
                runtime
                    .compile(&bytes, &shown)
                    .map_err(|error| error.to_string())
            });
        if let Err(error) = compiled {
            refusals.push(Refusal {
                source: shown,
                error,
            });
        }
    }
    for refusal in refusals {
        if let Ok(line) = serde_json::to_string(&refusal) {
            println!("{line}");
        }
    }
    Ok(())
}

/// What `plugins` supply for each of `config`'s services, in order.
pub(super) fn defaults(plugins: &mut Plugins, config: &Config) -> Vec<Result<Defaults, String>> {
    let cpus = std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
    config
        .services
        .iter()
        .map(|service| plugins.defaults(service.name.as_str(), &service.policies.value, cpus))
        .collect()
}

/// Every `policies` entry naming a plugin that is not loaded, as a line
/// saying what to change.
pub(super) fn unknown_policies(config: &Config, plugins: &Plugins) -> Vec<String> {
    let loaded: Vec<&str> = plugins
        .plugins()
        .iter()
        .map(|p| p.identity().name.as_str())
        .collect();
    config
        .services
        .iter()
        .flat_map(|service| {
            service
                .policies
                .value
                .iter()
                .filter(|name| !loaded.contains(&name.as_str()))
                .map(move |name| {
                    format!(
                        "service.{}.policies names the plugin {name:?}, which is not loaded; put it in plugins_dir or correct the name",
                        service.name
                    )
                })
        })
        .collect()
}

/// What `warden check` and `warden config` read: the configuration with
/// its plugins' defaults, the plugins, and each plugin that failed to load.
#[derive(Debug)]
pub struct Checked {
    /// The file as read, to place the problems found later on its lines.
    pub parsed: Parsed,
    /// The effective configuration.
    pub config: Config,
    /// Every plugin that loaded.
    pub plugins: Plugins,
    /// A line for each plugin that failed to load, and for each file warden
    /// would not trust.
    pub failures: Vec<String>,
}

/// Reads the configuration at `path` as `warden check` does, in the
/// phases `warden run` takes: the file parsed once; every plugin, built-in
/// and in `plugins_dir`, loaded, checked against the contract and linked;
/// their defaults merged in and the whole validated. Compiled code comes
/// from, and goes to, `plugin_cache` when this user can write there.
pub fn check(path: &Path) -> Result<Checked, LoadError> {
    let parsed = Parsed::read(path)?;
    let mut failures = Vec::new();
    let mut plugins = Plugins::default();
    let defaults = match parsed.written() {
        Ok(file) => {
            let cache = &file.globals.plugin_cache.value;
            let usable = cache.is_dir()
                && nix::unistd::access(cache.as_path(), nix::unistd::AccessFlags::W_OK).is_ok();
            if usable && let Err(untrusted) = crate::trust::directory(cache, "plugin_cache") {
                failures.push(untrusted.to_string());
            }
            match Runtime::new(usable.then_some(cache.as_path())) {
                Ok(runtime) => {
                    let loaded = load(&runtime, &Sources::of(file), &Compiler::Here, &[]);
                    failures.extend(loaded.failures.iter().map(|(_, why)| why.clone()));
                    plugins = Plugins::new(loaded.plugins);
                }
                Err(error) => failures.push(crate::error_chain(&error)),
            }
            defaults(&mut plugins, file)
        }
        Err(_) => Vec::new(),
    };
    let config = parsed.complete(defaults).map_err(LoadError::Problems)?;
    failures.extend(unknown_policies(&config, &plugins));
    Ok(Checked {
        parsed,
        config,
        plugins,
        failures,
    })
}

/// `warden check --plugin FILE`: loads one component as the master would
/// — contract, link, identity — outside `plugins_dir`, with no cache.
/// `builtin:NAME` names a built-in plugin instead of a file.
pub fn check_plugin(file: &Path) -> Result<Plugin, String> {
    load_plugin(file, Budget::default())
}

/// Loads one component as [`check_plugin`] does, under `budget` (its
/// identity is asked within a second, or the budget's deadline if longer).
pub fn load_plugin(file: &Path, budget: Budget) -> Result<Plugin, String> {
    if let Some(name) = file.to_str().and_then(|f| f.strip_prefix("builtin:")) {
        return builtin_plugin(name, budget);
    }
    let runtime = Runtime::new(None).map_err(|error| crate::error_chain(&error))?;
    let bytes = std::fs::read(file)
        .map_err(|error| format!("plugin {}: cannot read it: {error}", file.display()))?;
    let origin = Origin::File {
        path: file.display().to_string(),
        sha256: warden_policy::runtime::sha256(&bytes),
    };
    runtime
        .load(&bytes, origin, budget)
        .map_err(|error| error.to_string())
}

/// The built-in plugin `name`, loaded as the master loads it.
fn builtin_plugin(name: &str, budget: Budget) -> Result<Plugin, String> {
    let Some((_, bytes)) = warden_policy::BUILTINS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = warden_policy::BUILTINS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "there is no built-in plugin {name:?}; the built-ins are {}",
            names.join(", ")
        ));
    };
    let runtime = Runtime::new(None).map_err(|error| crate::error_chain(&error))?;
    runtime
        .load(bytes, Origin::Builtin, budget)
        .map_err(|error| error.to_string())
}
