//! Reloading: the plugins loaded afresh off the event loop, then the
//! configuration read again with them and the service table replaced.
//!
//! A configuration that does not check is refused and the running one
//! stays. Otherwise listeners that did not change are kept open across the
//! reload (so no connection is refused), old processes stop being counted
//! and drain — SIGTERM after `shutdown_grace`, SIGKILL after another, see
//! [`super::stop`] — and an unchanged `anvil` service keeps its processes.
//! `plugins_dir` is also looked at once a second: a change loads the
//! plugins again, and reloads the configuration only if they supply other
//! defaults.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::service::ServiceState;
use super::setup::read_config;
use super::{Event, Master, Phase};
use super::{descriptors, plugins};
use crate::config::{Config, ServiceKind};
use crate::control::Response;
use crate::listen::{self};

/// How often `plugins_dir` is looked at for changes.
pub(super) const PLUGINS_CHECK: Duration = Duration::from_secs(1);

/// A plugin set being loaded, and what follows when it is ready.
#[derive(Debug, Default)]
pub(super) struct Loading {
    /// Whether the configuration is reloaded with the new set (SIGHUP,
    /// `warden reload`); otherwise only the plugins change, and the
    /// configuration with them if they supply other defaults.
    pub(super) reload: bool,
    /// The `warden reload` commands waiting for the outcome.
    pub(super) replies: Vec<oneshot::Sender<Response>>,
    /// What `plugins_dir` held when the load started.
    pub(super) listing: plugins::Listing,
}

impl Loading {
    /// Takes `other`'s reasons in too.
    fn merge(&mut self, other: Loading) {
        self.reload |= other.reload;
        self.replies.extend(other.replies);
    }
}

impl Master {
    /// Starts loading the plugins afresh, off the event loop, from the
    /// sources the configuration file names now (the running ones when it
    /// does not parse and only the plugins are wanted). `warden reload`'s
    /// answer is `reply`, sent once the reload is done. One load runs at a
    /// time; another asked for meanwhile follows it.
    pub(super) fn load_plugins(&mut self, wanted: Loading) {
        if let Some(loading) = &mut self.loading {
            let _ = loading;
            match &mut self.queued {
                Some(queued) => queued.merge(wanted),
                None => self.queued = Some(wanted),
            }
            return;
        }
        let mut wanted = wanted;
        let sources = match Config::load_values(&self.config_path) {
            Ok(file) => plugins::Sources::of(&file),
            Err(error) if wanted.reload => {
                let message = format!(
                    "configuration reload failed; the running configuration stays:\n{error}"
                );
                tracing::error!("{message}");
                for reply in wanted.replies {
                    let _ = reply.send(Response::Failed {
                        message: message.clone(),
                    });
                }
                return;
            }
            Err(_) => plugins::Sources::of(&self.config),
        };
        wanted.listing = plugins::listing(&sources.dir);
        self.plugins_checked = Instant::now();
        let runtime = self.runtime.clone();
        let compiler = self.compiler.clone();
        let events = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name("warden-plugins".to_owned())
            .spawn(move || {
                let loaded = plugins::load(&runtime, &sources, &compiler);
                let _ = events.send(Event::PluginsLoaded(loaded));
            });
        match spawned {
            Ok(_) => self.loading = Some(wanted),
            Err(error) => {
                let message = format!("cannot start loading the plugins: {error}");
                tracing::error!("{message}");
                for reply in wanted.replies {
                    let _ = reply.send(Response::Failed {
                        message: message.clone(),
                    });
                }
            }
        }
    }

    /// A plugin set is ready: it replaces the running one (a file that
    /// failed now keeps its earlier version), and the configuration is
    /// reloaded if that was asked for, or if the new plugins supply other
    /// defaults.
    pub(super) fn plugins_loaded(&mut self, loaded: plugins::Loaded) {
        let Some(done) = self.loading.take() else {
            return;
        };
        self.policy = loaded.into_plugins(std::mem::take(&mut self.policy));
        self.plugins_listing = done.listing;
        // New plugins may decide otherwise for any service.
        self.agenda.reset(self.services.len());
        for missing in plugins::unknown_policies(&self.config, &self.policy) {
            tracing::warn!("{missing}");
        }
        if done.reload {
            let response = match self.reload() {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Failed { message },
            };
            for reply in done.replies {
                let _ = reply.send(response.clone());
            }
        } else if self.phase == Phase::Running {
            match read_config(&self.config_path, &mut self.policy) {
                Ok(config) if config == self.config => {}
                Ok(_) => {
                    tracing::info!(
                        "the plugins supply other defaults: reloading the configuration"
                    );
                    let _ = self.reload();
                }
                Err(error) => tracing::error!(
                    "with the new plugins the configuration has problems; the running one stays:\n{error}"
                ),
            }
        }
        if let Some(queued) = self.queued.take() {
            self.load_plugins(queued);
        }
    }

    /// Loads the plugins again when `plugins_dir` changed; looks once a
    /// second.
    pub(super) fn watch_plugins(&mut self, now: Instant) {
        if self.loading.is_some()
            || now.saturating_duration_since(self.plugins_checked) < PLUGINS_CHECK
        {
            return;
        }
        self.plugins_checked = now;
        let listing = plugins::listing(&self.config.globals.plugins_dir.value);
        if listing == self.plugins_listing {
            return;
        }
        // Looked at once per change, whatever comes of it.
        self.plugins_listing.clone_from(&listing);
        tracing::info!("plugins_dir changed: loading the plugins again");
        self.load_plugins(Loading::default());
    }

    /// Reloads the configuration file; on failure the running one stays.
    pub(super) fn reload(&mut self) -> Result<String, String> {
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
        let result = self.try_reload();
        match &result {
            Ok(message) => tracing::info!("{message}"),
            Err(message) => tracing::error!(
                "configuration reload failed; the running configuration stays:\n{message}"
            ),
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        result
    }

    pub(super) fn try_reload(&mut self) -> Result<String, String> {
        if self.phase != Phase::Running {
            return Err("warden is stopping".to_owned());
        }
        // The plugins were loaded afresh just before: changed files and
        // [plugin.NAME] settings take effect, and quarantines end.
        let config =
            read_config(&self.config_path, &mut self.policy).map_err(|e| crate::error_chain(&e))?;
        for missing in plugins::unknown_policies(&config, &self.policy) {
            tracing::warn!("{missing}");
        }
        let now = Instant::now();
        // Every open listener of the running configuration, by what it is,
        // so that the new one can keep those that did not change.
        let mut old_listeners = Vec::new();
        for state in &self.services {
            let Ok(wanted) = listen::wanted(&self.config, &state.config) else {
                continue;
            };
            for (want, open) in wanted.into_iter().zip(&state.listeners) {
                if let Ok(listener) = open.listener.try_clone() {
                    old_listeners.push((want.clone(), want.with(listener)));
                }
            }
        }
        // An unchanged anvil service survives the reload with its processes.
        let (mut keep, old_services): (Vec<ServiceState>, Vec<ServiceState>) =
            std::mem::take(&mut self.services)
                .into_iter()
                .partition(|s| {
                    s.config.kind.value == ServiceKind::Anvil
                        && s.runs
                        && config.runs(&s.config)
                        && config.services.contains(&s.config)
                });
        // Generations are never reused, so no event from a set-up that
        // failed can reach a later one.
        self.next_generation += 1;
        let generation = self.next_generation;
        let mut moves = Vec::new();
        let services = match self.set_up(&config, generation, old_listeners, &mut keep, &mut moves)
        {
            Ok(services) => services,
            Err(error) => {
                // Put the running table back, each service at its place:
                // nothing of it was touched.
                self.services = old_services;
                self.services.extend(keep);
                self.services.sort_by_key(|s| s.place);
                self.agenda.reset(self.services.len());
                return Err(crate::error_chain(&error));
            }
        };
        self.generation = generation;
        let old_names: Vec<String> = old_services.iter().map(|s| s.name().to_owned()).collect();
        let old_places: Vec<usize> = old_services.iter().map(|s| s.place).collect();
        let drained = self.processes.replace_services(
            |old| {
                moves
                    .iter()
                    .find(|(from, _)| *from == old)
                    .map(|(_, to)| *to)
            },
            |old| {
                old_places
                    .iter()
                    .position(|place| *place == old)
                    .and_then(|at| old_names.get(at).cloned())
                    .unwrap_or_default()
            },
            now,
        );
        for &pid in &drained {
            // "Exit if you are idle": an old process with no client goes
            // now; one with clients finishes them until shutdown_grace.
            if let Some(process) = self.processes.get_mut(pid) {
                let _ = process.stop_accepting();
            }
        }
        let drained = drained.len();
        drop(old_services);
        self.services = services;
        self.agenda.reset(self.services.len());
        self.config = config;
        descriptors::check_limit(&self.service_loads());
        Ok(format!(
            "configuration reloaded (generation {}); {drained} old processes are finishing",
            self.generation
        ))
    }
}
