//! Loading the policy plugins: the built-ins, then every `.wasm` file in
//! `plugins_dir`.
//!
//! The directory is read at start, on reload, and whenever its listing
//! changes (it is looked at once a second). A file that fails to compile,
//! link or describe itself is reported, and the version of it that was
//! loaded before, if any, stays.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use warden_policy::{Budget, Defaults, Origin, Plugins, Runtime};

use crate::config::{Config, LoadError, PluginSettings};

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

/// Loads the built-ins and the files of `dir`, then gives each the budget
/// and directory its `[plugin.NAME]` table sets. `previous` are the
/// plugins loaded before; a file that fails now keeps its previous version.
/// Each failure is logged.
pub(super) fn load(
    runtime: &Runtime,
    dir: &Path,
    previous: Plugins,
    settings: &[PluginSettings],
) -> Plugins {
    let (plugins, failures) = load_all(runtime, dir, previous, settings);
    for failure in failures {
        tracing::error!("{failure}");
    }
    plugins
}

/// Like [`load`], returning each failure as a line instead of logging it.
fn load_all(
    runtime: &Runtime,
    dir: &Path,
    previous: Plugins,
    settings: &[PluginSettings],
) -> (Plugins, Vec<String>) {
    let mut previous = previous.into_plugins();
    let mut loaded = Vec::new();
    let mut failures = Vec::new();
    for (name, bytes) in warden_policy::BUILTINS {
        match runtime.load(bytes, Origin::Builtin, Budget::default()) {
            Ok(plugin) => loaded.push(plugin),
            Err(error) => failures.push(format!("cannot load the built-in plugin {name}: {error}")),
        }
    }
    for (path, _, _) in listing(dir) {
        let shown = path.display().to_string();
        let result = std::fs::read(&path)
            .map_err(|error| format!("plugin {shown}: cannot read it: {error}"))
            .and_then(|bytes| {
                let origin = Origin::File {
                    path: shown.clone(),
                    sha256: warden_policy::runtime::sha256(&bytes),
                };
                runtime
                    .load(&bytes, origin, Budget::default())
                    .map_err(|error| error.to_string())
            });
        match result {
            Ok(plugin) => {
                tracing::info!(
                    plugin = plugin.identity().name,
                    file = shown,
                    hooks = plugin.hooks().names().join(","),
                    "plugin loaded"
                );
                loaded.push(plugin);
            }
            Err(error) => {
                let kept = previous.iter().position(
                    |p| matches!(p.origin(), Origin::File { path, .. } if *path == shown),
                );
                match kept {
                    Some(place) => {
                        failures.push(format!("{error}; the version loaded before stays"));
                        loaded.push(previous.swap_remove(place));
                    }
                    None => failures.push(format!("{error}; the plugin is not used")),
                }
            }
        }
    }
    for plugin in &mut loaded {
        if let Some(set) = settings.iter().find(|s| s.name == plugin.identity().name) {
            let budget = Budget {
                deadline: set.deadline.value.to_std(),
                memory: usize::try_from(set.memory.value.0).unwrap_or(usize::MAX),
            };
            plugin.configure(budget, set.directory.value.clone());
        }
    }
    (Plugins::new(loaded), failures)
}

/// Reads the configuration at `path` with the defaults of its services'
/// plugins, which `load` loads given the configuration as the file gives
/// it. Returns the configuration and the plugins.
/// The plugins are returned with the configuration's problems too, when
/// they were loaded (the file parsed), so that nothing loads them twice.
pub(super) fn load_config(
    path: &Path,
    load: impl FnOnce(&Config) -> Plugins,
) -> Result<(Config, Plugins), (LoadError, Option<Plugins>)> {
    let mut loaded = None;
    let config = Config::load_supplied(path, |config| {
        let mut plugins = load(config);
        let defaults = defaults(&mut plugins, config);
        loaded = Some(plugins);
        defaults
    });
    match config {
        Ok(config) => Ok((config, loaded.unwrap_or_default())),
        Err(error) => Err((error, loaded)),
    }
}

/// What `plugins` supply for each of `config`'s services, in order.
fn defaults(plugins: &mut Plugins, config: &Config) -> Vec<Result<Defaults, String>> {
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
    unknown(config, &loaded)
}

fn unknown(config: &Config, loaded: &[&str]) -> Vec<String> {
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
    /// The effective configuration.
    pub config: Config,
    /// Every plugin that loaded.
    pub plugins: Plugins,
    /// A line for each plugin that failed to load.
    pub failures: Vec<String>,
}

/// Reads the configuration at `path` as `warden check` does: every plugin,
/// built-in and in `plugins_dir`, is loaded and linked, and supplies its
/// defaults.
pub fn check(path: &Path) -> Result<Checked, LoadError> {
    let mut failures = Vec::new();
    let loaded = load_config(path, |config| match Runtime::new(None) {
        Ok(runtime) => {
            let (plugins, failed) = load_all(
                &runtime,
                &config.globals.plugins_dir.value,
                Plugins::default(),
                &config.plugins,
            );
            failures = failed;
            plugins
        }
        Err(error) => {
            failures.push(crate::error_chain(&error));
            Plugins::default()
        }
    });
    let (config, plugins) = loaded.map_err(|(error, _)| error)?;
    failures.extend(unknown_policies(&config, &plugins));
    Ok(Checked {
        config,
        plugins,
        failures,
    })
}
