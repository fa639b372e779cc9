//! Loading the policy plugins: the built-ins, then every `.wasm` file in
//! `plugins_dir`.
//!
//! The directory is read at start, on reload, and whenever its listing
//! changes (it is looked at once a second). A file that fails to compile,
//! link or describe itself is reported, and the version of it that was
//! loaded before, if any, stays.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use warden_policy::{Budget, Origin, Plugins, Runtime};

use crate::config::{Config, PluginSettings};

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
pub(super) fn load(
    runtime: &Runtime,
    dir: &Path,
    previous: Plugins,
    settings: &[PluginSettings],
) -> Plugins {
    let mut previous = previous.into_plugins();
    let mut loaded = Vec::new();
    for (name, bytes) in warden_policy::BUILTINS {
        match runtime.load(bytes, Origin::Builtin, Budget::default()) {
            Ok(plugin) => loaded.push(plugin),
            Err(error) => tracing::error!(plugin = name, "cannot load a built-in plugin: {error}"),
        }
    }
    for (path, _, _) in listing(dir) {
        let shown = path.display().to_string();
        let result = std::fs::read(&path)
            .map_err(|error| format!("cannot read it: {error}"))
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
                        tracing::error!(file = shown, "{error}; the version loaded before stays");
                        loaded.push(previous.swap_remove(place));
                    }
                    None => tracing::error!(file = shown, "{error}; the plugin is not used"),
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
    Plugins::new(loaded)
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

/// Loads and links every plugin, built-in and in `plugins_dir`, as
/// `warden check` does, and checks that every plugin a service's
/// `policies` names is among them: the names and origins of those that
/// load, or every problem.
pub fn check(config: &Config) -> Result<Vec<String>, Vec<String>> {
    let dir = config.globals.plugins_dir.value.as_path();
    let runtime = Runtime::new(None).map_err(|error| vec![error])?;
    let mut loaded = Vec::new();
    let mut names = Vec::new();
    let mut failed = Vec::new();
    for (name, bytes) in warden_policy::BUILTINS {
        match runtime.load(bytes, Origin::Builtin, Budget::default()) {
            Ok(plugin) => {
                loaded.push(format!("{} (built-in)", plugin.identity().name));
                names.push(plugin.identity().name.clone());
            }
            Err(error) => failed.push(format!("built-in {name}: {error}")),
        }
    }
    for (path, _, _) in listing(dir) {
        let origin = Origin::File {
            path: path.display().to_string(),
            sha256: String::new(),
        };
        match std::fs::read(&path) {
            Ok(bytes) => match runtime.load(&bytes, origin, Budget::default()) {
                Ok(plugin) => {
                    loaded.push(format!("{} ({})", plugin.identity().name, path.display()));
                    names.push(plugin.identity().name.clone());
                }
                Err(error) => failed.push(error.to_string()),
            },
            Err(error) => failed.push(format!(
                "plugin {}: cannot read it: {error}",
                path.display()
            )),
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    failed.extend(unknown(config, &names));
    if failed.is_empty() {
        Ok(loaded)
    } else {
        Err(failed)
    }
}
