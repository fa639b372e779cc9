//! Setting up: the master's start, and the service table it builds from a
//! configuration — at start, and again at each reload.
//!
//! Services are set up in Dovecot's order (log, then config, then anvil,
//! then the rest); chroots inside `base_dir` are created first, listeners
//! that did not change are taken over from the running table, and those at
//! a path the running table holds with other settings are replaced last,
//! once nothing else can fail, so a failed set-up leaves the running table
//! whole.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use warden_policy::{Plugins, Policy, Recorder, Runtime};
use warden_sys::{Listener, Spawner};

use super::accept::{ACCEPT_BACKOFF, Acceptor, ProxyRules, accept_task};
use super::agenda::Agenda;
use super::clients::ControlClients;
use super::connections::ConnectionTable;
use super::launch::{self};
use super::listening::stop_watching;
use super::metrics::{self, Metrics};
use super::notify::NotifySocket;
use super::ratelimit::{self, LogLimiter};
use super::service::ServiceState;
use super::starting::StartingTable;
use super::table::ProcessTable;
use super::{Event, Master, Phase, RunError};
use super::{descriptors, dovecot, plugins};
use crate::accounts::Accounts;
use crate::config::{Config, Interface, Parsed, ServiceKind};
use crate::listen::{self, OpenListener, Spec, Wanted};

/// The effective configuration of `parsed`, with the defaults of
/// `plugins` (the second and third phases), resolved on this system as
/// `warden check` resolves it (the fourth): the users and groups it names,
/// looked up once.
pub(super) fn effective(
    parsed: &Parsed,
    plugins: &mut Plugins,
) -> Result<(Config, Accounts), RunError> {
    let defaults = match parsed.written() {
        Ok(written) => plugins::defaults(plugins, written),
        Err(_) => Vec::new(),
    };
    let config = parsed.complete(defaults).map_err(RunError::Config)?;
    match crate::accounts::resolve(&config) {
        Ok(accounts) => Ok((config, accounts)),
        Err(problems) => Err(RunError::Config(parsed.locate(problems))),
    }
}

/// The most spawner threads the master keeps.
const MAX_SPAWNER_THREADS: usize = 4;

/// How many spawner threads: one per core, up to
/// [`MAX_SPAWNER_THREADS`], so as many execs overlap as the machine can
/// run at once while the event loop goes on. Their outcomes are taken in
/// the order the processes were asked for (see [`super::starting`]).
fn spawner_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_SPAWNER_THREADS))
}

/// Tells systemd the master is alive (`WATCHDOG=1`) at half of
/// `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)` asks. It runs on the event
/// loop's own thread, so an event loop that hangs stops the pings and
/// systemd restarts the master.
async fn keep_watchdog(interval: std::time::Duration) {
    let mut ping = tokio::time::interval(interval / 2);
    loop {
        ping.tick().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// Startup order: log first, then config, then anvil, then the rest in the
/// order of the file.
pub(super) fn startup_rank(kind: ServiceKind) -> u8 {
    match kind {
        ServiceKind::Log => 0,
        ServiceKind::Config => 1,
        ServiceKind::Anvil => 2,
        ServiceKind::Default | ServiceKind::Startup | ServiceKind::Login | ServiceKind::Worker => 3,
    }
}

/// Creates a missing chroot directory inside `base_dir`, as Dovecot's
/// master does for `empty` and `login`: the built-in plugins chroot
/// services there, which must work on a fresh machine. It is root's, mode
/// 0750 and the group `gid` of the service's user, so that only that
/// user's processes get through it to the sockets inside (`login/imap` is
/// 0666); 0755 when the service keeps the supervisor's user. A chroot
/// elsewhere must already exist.
pub(super) fn prepare_chroot(
    base_dir: &Path,
    chroot: &Path,
    gid: Option<nix::unistd::Gid>,
) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !chroot.starts_with(base_dir) || chroot.is_dir() {
        return Ok(());
    }
    let mode = if gid.is_some() { 0o750 } else { 0o755 };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(chroot)?;
    if gid.is_some() {
        nix::unistd::chown(chroot, None, gid)?;
    }
    Ok(())
}

/// Creates `base_dir` if it is missing, readable and searchable by all
/// (services that dropped privileges start in it), as Dovecot does. An
/// existing one is left as it is, and must be trusted: the master keeps
/// its control socket and its services' sockets there.
pub(super) fn prepare_base_dir(base_dir: &Path) -> Result<(), RunError> {
    use std::os::unix::fs::DirBuilderExt;
    if !base_dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(base_dir)
            .map_err(|e| {
                RunError::start(format!("cannot create base_dir {}", base_dir.display()), e)
            })?;
    }
    crate::trust::directory(base_dir, "base_dir")
        .map_err(|e| RunError::start("cannot use base_dir", e))
}

/// Whether the running configuration holds a unix socket or fifo at the
/// path `spec` wants (with other settings, or it would have been reused).
pub(super) fn holds_path(spec: &Spec, old: &[OpenListener]) -> bool {
    let path = match spec {
        Spec::Unix { path, .. } | Spec::Fifo { path, .. } => path,
        Spec::Inet { .. } => return false,
    };
    old.iter().any(|was| match &was.wanted.spec {
        Spec::Unix { path: p, .. } | Spec::Fifo { path: p, .. } => p == path,
        Spec::Inet { .. } => false,
    })
}

/// Removes the file at the path of a unix socket or fifo, so it can be
/// made again with new settings.
pub(super) fn remove_file_listener(spec: &Spec) {
    if let Spec::Unix { path, .. } | Spec::Fifo { path, .. } = spec {
        let _ = std::fs::remove_file(path);
    }
}

impl Master {
    /// Starts the master on `parsed`, the configuration file at
    /// `config_path` read once, whose values `warden run` checked.
    pub(super) async fn start(config_path: PathBuf, parsed: Parsed) -> Result<Master, RunError> {
        let file_config = parsed.written().map_err(RunError::Config)?;
        let (events, receiver) = mpsc::unbounded_channel();
        let (metrics, registry) = Metrics::new();
        prepare_base_dir(&file_config.globals.base_dir.value)?;
        let cache = &file_config.globals.plugin_cache.value;
        crate::trust::private_directory(cache, "plugin_cache")
            .map_err(|e| RunError::start("cannot use the plugin cache", e))?;
        let runtime = Runtime::new(Some(cache))
            .map_err(|e| RunError::start("cannot start the plugin runtime", e))?;
        // The helper is this very executable, even if its file has been
        // replaced since it started.
        let compiler = plugins::Compiler::Helper(PathBuf::from("/proc/self/exe"));
        let sources = plugins::Sources::of(file_config);
        let plugins_listing = plugins::listing(&sources.dir);
        let mut policy =
            plugins::load(&runtime, &sources, &compiler, &[]).into_plugins(Plugins::default());
        let (config, accounts) = effective(&parsed, &mut policy)?;
        let notify = NotifySocket::open(events.clone())
            .map_err(|e| RunError::start("cannot open the notify socket", e))?;
        let spawned = events.clone();
        let spawner = Spawner::new(spawner_threads(), move |ticket, outcome| {
            let _ = spawned.send(Event::Spawned { ticket, outcome });
        })
        .map_err(|e| RunError::start("cannot start the spawner threads", e))?;
        let mut master = Master {
            config_path,
            config: config.clone(),
            generation: 0,
            next_generation: 0,
            services: Vec::new(),
            processes: ProcessTable::default(),
            starting: StartingTable::default(),
            spawner,
            early: Vec::new(),
            tails: std::collections::VecDeque::new(),
            agenda: Agenda::default(),
            notify,
            noise: LogLimiter::new(ratelimit::INTERVAL),
            events,
            receiver,
            origin: Instant::now(),
            runtime,
            compiler,
            policy: Recorder::new(policy),
            plugins_listing,
            plugins_checked: Instant::now(),
            loading: None,
            queued: None,
            metrics,
            registry,
            connections: ConnectionTable::default(),
            next_channel: 1,
            plugin_metrics_at: None,
            phase: Phase::Running,
            spawned_this_round: false,
            tasks: Vec::new(),
            control_clients: ControlClients::default(),
            anvil: None,
            old_stats: None,
            log_pipes: None,
            unready: metrics::Unready::default(),
            next_dovecot_generation: 1,
        };
        for missing in plugins::unknown_policies(&master.config, &master.policy) {
            tracing::warn!("{missing}");
        }
        master.services = master.set_up(
            &config,
            &accounts,
            0,
            Vec::new(),
            &mut Vec::new(),
            &mut Vec::new(),
        )?;
        descriptors::check_limit(&master.service_loads());
        master.agenda.reset(master.services.len());
        master.start_control()?;
        if let Some(listen) = config.globals.metrics_listen.value.clone() {
            let registry = Arc::clone(&master.registry);
            let unready = Arc::clone(&master.unready);
            master.tasks.push(tokio::spawn(async move {
                if let Err(error) = metrics::serve(listen, registry, unready).await {
                    tracing::error!(%error, "the metrics endpoint failed");
                }
            }));
        }
        let running = master.services.iter().filter(|s| s.runs).count();
        tracing::info!(
            config = %master.config_path.display(),
            services = running,
            "warden started"
        );
        let _ = sd_notify::notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&master.status_line(None)),
        ]);
        // WATCHDOG_USEC=0 asks for nothing (and would make an interval of 0).
        if let Some(interval) = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()) {
            master.tasks.push(tokio::spawn(keep_watchdog(interval)));
        }
        Ok(master)
    }

    /// Sets up a service table for `config`, as configuration
    /// `generation`: listeners (reusing `old` listeners that did not
    /// change), identities. States in `keep` (an unchanged
    /// `anvil`) whose configuration is still wanted are carried over with
    /// their processes; they leave `keep` only when everything succeeded,
    /// so a failure leaves the running table whole. Each carried over is
    /// in `moves` as its old place and its new one.
    pub(super) fn set_up(
        &mut self,
        config: &Config,
        accounts: &Accounts,
        generation: u64,
        mut old: Vec<OpenListener>,
        keep: &mut Vec<ServiceState>,
        moves: &mut Vec<(usize, usize)>,
    ) -> Result<Vec<ServiceState>, RunError> {
        let mut order: Vec<usize> = (0..config.services.len()).collect();
        order.sort_by_key(|&i| {
            config
                .services
                .get(i)
                .map_or(3, |s| startup_rank(s.kind.value))
        });
        // The identity of each running service, once.
        let mut identities = Vec::with_capacity(config.services.len());
        for service in &config.services {
            identities.push(if config.runs(service) {
                launch::identity(service, accounts).map_err(|e| {
                    RunError::start(format!("service {}: cannot set up", service.name), e)
                })?
            } else {
                None
            });
        }
        // Chroots first: a listener of one service may live in another's
        // chroot (`login/imap`), and must not create it with its own mode.
        for (service, identity) in config.services.iter().zip(&identities) {
            if let Some(chroot) = service
                .chroot
                .value
                .as_ref()
                .filter(|_| config.runs(service))
            {
                let gid = identity.as_ref().map(|identity| identity.gid);
                prepare_chroot(&config.globals.base_dir.value, chroot, gid).map_err(|e| {
                    RunError::start(
                        format!("service {}: cannot create its chroot", service.name),
                        e,
                    )
                })?;
            }
        }
        let dovecot_runs = config
            .services
            .iter()
            .any(|s| config.runs(s) && s.interface.value == Interface::Dovecot);
        if dovecot_runs && self.old_stats.is_none() && !dovecot::old_stats_served(config) {
            let base_dir = &config.globals.base_dir.value;
            match dovecot::old_stats_sink(base_dir) {
                Ok(task) => self.old_stats = Some(task),
                Err(error) => tracing::warn!(
                    %error,
                    "cannot make {}/old-stats-user; Dovecot's auth will log that it cannot open it",
                    base_dir.display()
                ),
            }
        }
        let log_service = config.services.iter().any(|s| {
            config.runs(s)
                && s.interface.value == Interface::Dovecot
                && s.kind.value == ServiceKind::Log
        });
        if log_service && self.log_pipes.is_none() {
            let names = config
                .services
                .iter()
                .filter(|s| {
                    config.runs(s)
                        && s.interface.value == Interface::Dovecot
                        && s.kind.value != ServiceKind::Log
                })
                .map(|s| s.name.as_str());
            self.log_pipes = Some(
                dovecot::LogPipes::open(names)
                    .map_err(|e| RunError::start("cannot open the log service's pipes", e))?,
            );
        }
        // A new state, or the configuration of a state carried over.
        let mut slots: Vec<Result<ServiceState, &crate::config::Service>> =
            Vec::with_capacity(order.len());
        // Listeners at a path the running configuration holds with other
        // settings are replaced last, once nothing else can fail.
        let mut replacements: Vec<(usize, Wanted)> = Vec::new();
        for (service, identity) in order
            .into_iter()
            .filter_map(|i| config.services.get(i).zip(identities.get(i)))
        {
            let runs = config.runs(service);
            if runs && keep.iter().any(|s| s.config == *service) {
                slots.push(Err(service));
                continue;
            }
            // Its place is given when the table is put together, below.
            let mut state = ServiceState::new(service.clone(), runs, 0);
            if !runs {
                slots.push(Ok(state));
                continue;
            }
            let name = service.name.to_string();
            let cannot = |what: &str| format!("service {name}: {what}");
            state.identity.clone_from(identity);
            if service.interface.value == Interface::Dovecot {
                state.dovecot = Some(
                    dovecot::Pipes::open(service.kind.value, self.events.clone())
                        .map_err(|e| RunError::start(cannot("cannot open its status pipes"), e))?,
                );
                if service.kind.value == ServiceKind::Anvil && self.anvil.is_none() {
                    self.anvil =
                        Some(dovecot::Anvil::open().map_err(|e| {
                            RunError::start(cannot("cannot open anvil's pipes"), e)
                        })?);
                }
            }
            let wanted = listen::wanted(config, service, accounts)
                .map_err(|e| RunError::start(cannot("cannot set up"), e))?;
            for want in wanted {
                if let Some(place) = old.iter().position(|was| was.wanted.spec == want.spec) {
                    let open = old.swap_remove(place);
                    state.listeners.push(want.with(open.listener));
                } else if holds_path(&want.spec, &old) {
                    replacements.push((slots.len(), want));
                } else {
                    let listener = want
                        .open()
                        .map_err(|e| RunError::start(cannot("cannot create a listener"), e))?;
                    state.listeners.push(want.with(listener));
                }
            }
            slots.push(Ok(state));
        }
        for (slot, want) in replacements {
            if let Some(Ok(state)) = slots.get_mut(slot) {
                remove_file_listener(&want.spec);
                let name = state.name().to_owned();
                let listener = want.open().map_err(|e| {
                    RunError::start(format!("service {name}: cannot create a listener"), e)
                })?;
                state.listeners.push(want.with(listener));
            }
        }
        // Nothing can fail from here on: carry kept states over, their
        // watchers and acceptors re-armed for their new place.
        let mut services = Vec::with_capacity(slots.len());
        for slot in slots {
            let mut state = match slot {
                Ok(mut state) => {
                    self.type_listeners(&mut state);
                    state
                }
                Err(config) => {
                    let Some(place) = keep.iter().position(|k| k.config == *config) else {
                        continue;
                    };
                    let mut state = keep.swap_remove(place);
                    stop_watching(&mut state);
                    for task in state.acceptors.drain(..) {
                        task.abort();
                    }
                    moves.push((state.place, services.len()));
                    state
                }
            };
            state.place = services.len();
            services.push(state);
        }
        let proxy = Arc::new(ProxyRules {
            trusted: config.globals.haproxy_trusted_networks.value.clone(),
            timeout: config.globals.haproxy_timeout.value.to_std(),
        });
        for (index, state) in services.iter_mut().enumerate() {
            if state.runs {
                self.metrics.service_present(
                    &metrics::label(state.name()),
                    state.config.process_limit.value,
                );
            }
            let accepts = matches!(state.interface(), Interface::Inetd | Interface::Warden);
            if state.runs && accepts && state.acceptors.is_empty() {
                let name = state.name().to_owned();
                for (place, open) in state.listeners.iter().enumerate() {
                    let rules = open.wanted.haproxy.then(|| Arc::clone(&proxy));
                    let at = Acceptor {
                        generation,
                        index,
                        listener: place,
                    };
                    match accept_task(&self.events, at, &open.listener, rules) {
                        Ok(task) => state.acceptors.push(task),
                        Err(error) => tracing::error!(
                            service = name,
                            listener = %open.listener.endpoint(),
                            %error,
                            "cannot watch a listener for connections; it takes none until the next reload (if too many files are open, raise warden's descriptor limit: LimitNOFILE= in its unit, or ulimit -n)"
                        ),
                    }
                }
            }
        }
        Ok(services)
    }

    /// What each running service may ask of the master's descriptors.
    pub(super) fn service_loads(&self) -> Vec<descriptors::ServiceLoad> {
        self.services
            .iter()
            .filter(|state| state.runs)
            .map(|state| descriptors::ServiceLoad {
                name: state.name().to_owned(),
                interface: state.interface(),
                listeners: u64::try_from(state.listeners.len()).unwrap_or(u64::MAX),
                process_limit: u64::from(state.config.process_limit.value),
                max_connections: state.config.max_connections(),
            })
            .collect()
    }

    /// Asks the service's `typing` policy for the client type of each of
    /// its listeners.
    pub(super) fn type_listeners(&mut self, state: &mut ServiceState) {
        let types: Vec<String> = {
            let view = state.view();
            state
                .listeners
                .iter()
                .map(|listener| self.policy.typing(&view, &listener.view, None).name)
                .collect()
        };
        for (listener, client_type) in state.listeners.iter_mut().zip(types) {
            listener.client_type = client_type;
        }
    }

    /// Opens the control socket and serves it.
    pub(super) fn start_control(&mut self) -> Result<(), RunError> {
        let path = self.config.globals.control_socket.value.clone();
        let listener = Listener::unix(
            &path,
            warden_sys::FileAccess {
                user: None,
                group: None,
                mode: 0o600,
            },
            16,
        )
        .map_err(|e| RunError::start("cannot create the control socket", e))?;
        let listener = tokio::net::UnixListener::from_std(std::os::unix::net::UnixListener::from(
            OwnedFd::from(listener),
        ))
        .map_err(|e| RunError::start("cannot serve the control socket", e))?;
        let events = self.events.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        if events.send(Event::ControlClient(stream)).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot accept a control connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        }));
        Ok(())
    }
}
