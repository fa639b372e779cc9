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
use warden_policy::Linked;

use super::service::ServiceState;
use super::setup;
use super::{Event, Master, Phase, RunError};
use super::{descriptors, plugins};
use crate::config::{LoadError, Parsed, ServiceKind};
use crate::control::Response;

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
    /// The configuration file as it was read when the load started; `None`
    /// when its values did not read, and only the plugins change.
    pub(super) parsed: Option<Parsed>,
}

/// A reload done.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reloaded {
    /// The new configuration's generation.
    generation: u64,
    /// How many processes of the old one are finishing.
    draining: usize,
}

impl std::fmt::Display for Reloaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "configuration reloaded (generation {}); {} old processes are finishing",
            self.generation, self.draining
        )
    }
}

/// Why a reload was refused; the running configuration stays.
#[derive(Debug, thiserror::Error)]
pub(super) enum ReloadError {
    /// warden is stopping.
    #[error("warden is stopping")]
    Stopping,
    /// The new configuration cannot be used.
    #[error(transparent)]
    Refused(#[from] RunError),
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
    /// sources the configuration file names now (the running ones when its
    /// values do not read and only the plugins are wanted). The file is
    /// read once here, and the reload that follows uses what was read.
    /// `warden reload`'s answer goes to the replies in `wanted`, once the
    /// reload is done. One load runs at a time; another asked for
    /// meanwhile follows it.
    pub(super) fn load_plugins(&mut self, wanted: Loading) {
        if self.loading.is_some() {
            match &mut self.queued {
                Some(queued) => queued.merge(wanted),
                None => self.queued = Some(wanted),
            }
            return;
        }
        let mut wanted = wanted;
        match read(&self.config_path) {
            Ok(parsed) => wanted.parsed = Some(parsed),
            Err(error) if wanted.reload => {
                self.refused(&ReloadError::from(error), wanted.replies);
                return;
            }
            Err(_) => {}
        }
        let sources = match wanted.parsed.as_ref().map(Parsed::written) {
            Some(Ok(file)) => plugins::Sources::of(file),
            Some(Err(_)) | None => plugins::Sources::of(&self.config),
        };
        wanted.listing = plugins::listing(&sources.dir);
        self.plugins_checked = Instant::now();
        let runtime = self.runtime.clone();
        let compiler = self.compiler.clone();
        let events = self.events.clone();
        let linked: Vec<Linked> = self
            .policy
            .plugins()
            .iter()
            .map(|plugin| plugin.linked().clone())
            .collect();
        let spawned = std::thread::Builder::new()
            .name("warden-plugins".to_owned())
            .spawn(move || {
                let loaded = plugins::load(&runtime, &sources, &compiler, &linked);
                let _ = events.send(Event::PluginsLoaded(loaded));
            });
        match spawned {
            Ok(_) => self.loading = Some(wanted),
            Err(error) => {
                let error = RunError::start("cannot start loading the plugins", error);
                self.refused(&ReloadError::from(error), wanted.replies);
            }
        }
    }

    /// Logs why a reload was refused, and answers `replies` so.
    fn refused(&self, error: &ReloadError, replies: Vec<oneshot::Sender<Response>>) {
        let message = crate::error_chain(error);
        match error {
            // One record per problem, so a log search finds each.
            ReloadError::Refused(RunError::Config(problems)) => {
                for problem in problems.each() {
                    tracing::error!("{problem}");
                }
                tracing::error!(
                    problems = problems.len(),
                    "configuration reload failed; the running configuration stays"
                );
            }
            _ => tracing::error!(
                "configuration reload failed; the running configuration stays:\n{message}"
            ),
        }
        self.metrics.reloaded(false);
        for reply in replies {
            let _ = reply.send(Response::Failed {
                message: message.clone(),
            });
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
        *self.policy = loaded.into_plugins(std::mem::take(&mut *self.policy));
        self.plugins_listing = done.listing;
        // New plugins may decide otherwise for any service.
        self.agenda.reset(self.services.len());
        for missing in plugins::unknown_policies(&self.config, &self.policy) {
            tracing::warn!("{missing}");
        }
        match (done.reload, &done.parsed) {
            (true, Some(parsed)) => match self.reload(parsed) {
                Ok(reloaded) => {
                    for reply in done.replies {
                        let _ = reply.send(Response::Done {
                            message: reloaded.to_string(),
                        });
                    }
                }
                Err(error) => self.refused(&error, done.replies),
            },
            // A reload is asked for only of a file that was read.
            (true, None) => {}
            (false, Some(parsed)) if self.phase == Phase::Running => {
                match setup::effective(parsed, &mut self.policy) {
                    Ok((config, _)) if config == self.config => {}
                    Ok(_) => {
                        tracing::info!(
                            "the plugins supply other defaults: reloading the configuration"
                        );
                        if let Err(error) = self.reload(parsed) {
                            self.refused(&error, Vec::new());
                        }
                    }
                    Err(error) => tracing::error!(
                        "with the new plugins the configuration has problems; the running one stays:\n{}",
                        crate::error_chain(&error)
                    ),
                }
            }
            (false, _) => {}
        }
        match self.queued.take() {
            Some(queued) => self.load_plugins(queued),
            None => self.release_unused_memory(),
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

    /// Reloads the configuration `parsed`, as read for this reload, with
    /// the plugins just loaded; on failure the running one stays.
    pub(super) fn reload(&mut self, parsed: &Parsed) -> Result<Reloaded, ReloadError> {
        // Type=notify-reload needs the time of the reload with it.
        let mut reloading = vec![sd_notify::NotifyState::Reloading];
        reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
        let _ = sd_notify::notify(&reloading);
        warden_sys::spawn::forget_executables();
        let result = self.try_reload(parsed);
        if let Ok(reloaded) = &result {
            tracing::info!("{reloaded}");
            self.metrics.reloaded(true);
            // A reload gives given-up services another chance.
            let given_up = self.services.iter().find_map(|s| {
                s.given_up
                    .as_ref()
                    .map(|why| format!("service {} given up: {why}", s.name()))
            });
            self.set_unready(given_up);
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        result
    }

    fn try_reload(&mut self, parsed: &Parsed) -> Result<Reloaded, ReloadError> {
        if self.phase != Phase::Running {
            return Err(ReloadError::Stopping);
        }
        // The plugins were loaded afresh just before: changed files and
        // [plugin.NAME] settings take effect, and quarantines end.
        let (config, accounts) = setup::effective(parsed, &mut self.policy)?;
        for missing in plugins::unknown_policies(&config, &self.policy) {
            tracing::warn!("{missing}");
        }
        let now = Instant::now();
        // Every open listener of the running configuration, by what it is,
        // so that the new one can keep those that did not change.
        let mut old_listeners = Vec::new();
        for open in self.services.iter().flat_map(|s| &s.listeners) {
            if let Ok(listener) = open.listener.try_clone() {
                old_listeners.push(open.wanted.with(listener));
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
        let services = match self.set_up(
            &config,
            &accounts,
            generation,
            old_listeners,
            &mut keep,
            &mut moves,
        ) {
            Ok(services) => services,
            Err(error) => {
                // Put the running table back, each service at its place:
                // nothing of it was touched.
                self.services = old_services;
                self.services.extend(keep);
                self.services.sort_by_key(|s| s.place);
                self.agenda.reset(self.services.len());
                return Err(error.into());
            }
        };
        self.generation = generation;
        let old_names: Vec<String> = old_services.iter().map(|s| s.name().to_owned()).collect();
        let old_places: Vec<usize> = old_services.iter().map(|s| s.place).collect();
        let moved = |old| {
            moves
                .iter()
                .find(|(from, _)| *from == old)
                .map(|(_, to)| *to)
        };
        self.starting.replace_services(moved);
        let drained = self.processes.replace_services(
            moved,
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
        Ok(Reloaded {
            generation: self.generation,
            draining: drained,
        })
    }
}

/// Reads and parses the configuration file at `path`, its values each
/// checked on its own.
fn read(path: &std::path::Path) -> Result<Parsed, RunError> {
    let parsed = Parsed::read(path).map_err(|error| match error {
        LoadError::Problems(problems) => RunError::Config(problems),
        LoadError::Read { .. } => RunError::Unreadable(error),
    })?;
    parsed.written().map_err(RunError::Config)?;
    Ok(parsed)
}
