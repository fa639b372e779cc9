//! The master: `warden run`.
//!
//! One task on a single-threaded tokio runtime owns every table — services,
//! processes, connections waiting — and reacts to events: a process
//! exited (its pidfd became readable), a notify message, a listener became
//! readable while no process could take the connection, a connection
//! accepted for an inetd service, a control command, a signal, and a round
//! every 100 ms. Helper tasks only watch descriptors and forward events;
//! they never change state. Nothing here blocks on a child. The round
//! visits only the services on its [`agenda`]: those an event touched,
//! those whose last round left work, and those whose own clock is due, so
//! an idle master's work does not grow with the services configured.
//!
//! The mechanics are here; the decisions — how many processes to start,
//! which idle ones to retire, what an exit means — are asked of a
//! [`Policy`], Dovecot's built-in one unless plugins say otherwise.
//!
//! Lifecycle: startup raises the descriptor limit and warns when it is too
//! low for the configuration (see `descriptors`), sets up services in
//! Dovecot's order (log, then config, then anvil, then the rest), then
//! runs rounds. SIGHUP reloads:
//! a configuration that does not check is refused and the old one keeps
//! running; otherwise listeners that did not change are kept open across
//! the reload (so no connection is refused), old processes stop being
//! counted and are drained — SIGTERM after `shutdown_grace`, SIGKILL after
//! another — unless `shutdown_clients = no`, and an unchanged `anvil`
//! service keeps its processes. SIGTERM or SIGINT stops: every process but
//! the log service's gets SIGTERM, SIGKILL after `shutdown_grace`, and the
//! log service goes last.

mod agenda;
mod clients;
mod connections;
mod descriptors;
mod launch;
mod metrics;
mod native;
mod notify;
mod output;
mod pid_file;
mod plugins;
mod process;
mod ratelimit;

pub use plugins::{Checked, check as check_config, check_plugin, compile_helper};
mod service;
mod table;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::socket::{SockFlag, SockaddrStorage};
use nix::unistd::Pid;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use warden_child::protocol::FromService;
use warden_policy::stats::Event as StatsEvent;
use warden_policy::{ExitCause, ExitView, IdleAction, Lifecycle, Plugins, Policy, Runtime};
use warden_sys::{Endpoint, Exit, Listener};

use crate::config::{Config, Interface, ServiceType};
use crate::control::{ProcessStatus, Request, Response, ServiceStatus};
use crate::listen::{self, OpenListener, Spec, Wanted};
use agenda::Agenda;
use clients::ControlClients;
use connections::ConnectionTable;
use launch::{Connection, Ends};
use metrics::{ExitLabels, Metrics, label};
use notify::{Message, NotifySocket};
use output::Stream;
use pid_file::PidFile;
use process::{IdleStage, Life, PROVEN_AFTER, Process};
use ratelimit::LogLimiter;
use service::ServiceState;
use table::{ProcessTable, Slot};

/// How often the master runs its round: prefork, throttles, idle kill,
/// waiting connections, draining.
const ROUND: Duration = Duration::from_millis(100);

/// How often the plugins are asked for their metrics.
const PLUGIN_METRICS_EVERY: Duration = Duration::from_secs(1);

/// How often `plugins_dir` is looked at for changes.
const PLUGINS_CHECK: Duration = Duration::from_secs(1);

/// How long a control client still being answered may delay the exit.
const CONTROL_LINGER: Duration = Duration::from_secs(1);

/// At most one "process_limit reached" line per service per this long.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(1);

/// What `warden run` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config: PathBuf,
    /// Detach from the terminal.
    pub daemonize: bool,
    /// Write the master's pid here.
    pub pid_file: Option<PathBuf>,
    /// Log to this file instead of stderr.
    pub log_file: Option<PathBuf>,
}

/// Why the master could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration has problems; they are in the message.
    #[error("{0}")]
    Config(String),
    /// Starting failed.
    #[error("{what}")]
    Start {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl RunError {
    fn start(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        RunError::Start {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// Something the master reacts to.
#[derive(Debug)]
enum Event {
    /// A process's pidfd became readable: it exited.
    Exited {
        /// Its pid.
        pid: i32,
    },
    /// A notify message arrived on the master's notify socket.
    Notify {
        /// The sender, as the kernel attests it.
        pid: Pid,
        /// What it said.
        message: Message,
    },
    /// A listener of a service became readable while the master watched it.
    Readable {
        /// The configuration generation.
        generation: u64,
        /// The service's place in the table.
        index: usize,
    },
    /// A connection was accepted for an inetd service.
    Accepted {
        /// The configuration generation.
        generation: u64,
        /// The service's place in the table.
        index: usize,
        /// The connection.
        connection: Connection,
    },
    /// A connection on a `haproxy` listener broke the PROXY protocol.
    Rejected {
        /// The configuration generation.
        generation: u64,
        /// The service's place in the table.
        index: usize,
        /// The connection's source.
        peer: String,
        /// What it broke.
        error: warden_proxy::ProxyError,
    },
    /// A native-interface process sent a message, or something that is not
    /// one.
    Child {
        /// The process.
        pid: i32,
        /// Its channel's serial, which a later process with the same pid
        /// does not share.
        channel: u64,
        /// The message, or why it is not one.
        message: Result<FromService, String>,
    },
    /// A native-interface process's control channel closed.
    ChannelClosed {
        /// The process.
        pid: i32,
        /// Its channel's serial.
        channel: u64,
    },
    /// A plugin set finished loading off the event loop.
    PluginsLoaded(plugins::Loaded),
    /// A client connected to the control socket.
    ControlClient(tokio::net::UnixStream),
    /// A control command.
    Control {
        /// The command.
        request: Request,
        /// Where the answer goes.
        reply: oneshot::Sender<Response>,
    },
}

/// Where the master is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Serving.
    Running,
    /// Stopping since this instant; `log_told` once the log service was
    /// told to stop.
    Stopping {
        since: Instant,
        log_told: Option<Instant>,
    },
}

/// What outside parties can make the master log, each kind rate-limited
/// on its own (see [`ratelimit`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Noise {
    /// Notify datagrams from processes that are not warden's.
    Stranger,
    /// Connections refused before they reached a process.
    Refused {
        /// The service they were for.
        service: String,
        /// Why (the PROXY rule broken, the admission policy's reason).
        reason: String,
    },
}

/// Reads and checks the configuration at `path` with the defaults of
/// `plugins`, including that this version can run every interface it asks
/// for and, as `warden check` does, that this system has what it names.
fn read_config(path: &Path, plugins: &mut Plugins) -> Result<Config, RunError> {
    let config =
        plugins::read_config(path, plugins).map_err(|error| RunError::Config(error.to_string()))?;
    check_interfaces(path, &config)?;
    let problems = crate::accounts::check(&config);
    if !problems.is_empty() {
        let problems = crate::config::locate_in(path, problems);
        return Err(RunError::Config(problems.to_string()));
    }
    Ok(config)
}

/// Fails when a running service asks for an interface this version cannot
/// run.
fn check_interfaces(path: &Path, config: &Config) -> Result<(), RunError> {
    for service in config.services.iter().filter(|s| config.runs(s)) {
        if service.interface.value == Interface::Dovecot {
            return Err(RunError::Config(format!(
                "{}: service {}: interface = \"{}\" is not available in this version of warden; use interface = \"systemd\", \"inetd\" or \"warden\"",
                path.display(),
                service.name,
                service.interface.value.as_str()
            )));
        }
    }
    Ok(())
}

/// Runs the master until it is stopped.
pub fn run(options: &Options) -> Result<(), RunError> {
    // Read once, so that a broken file is reported on the terminal before
    // daemonizing; the master reads it again with its plugins' defaults,
    // and checks how the settings combine, once logging is set up.
    let config = Config::load_values(&options.config)
        .map_err(|error| RunError::Config(error.to_string()))?;
    check_interfaces(&options.config, &config)?;
    if let Some(pid_file) = &options.pid_file {
        pid_file::ensure_free(pid_file)?;
    }
    if options.daemonize {
        warden_sys::daemon::daemonize().map_err(|e| RunError::start("cannot daemonize", e))?;
    }
    crate::logging::init(options.log_file.as_deref())
        .map_err(|e| RunError::start("cannot open the log file", e))?;
    crate::logging::log_panics();
    descriptors::raise_limit();
    // Removed when `run` returns, or unwinds, if it still holds our pid.
    let _pid_file = options
        .pid_file
        .as_deref()
        .map(PidFile::write)
        .transpose()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::start("cannot start the event loop", e))?;
    runtime.block_on(async {
        let mut master = Master::start(options.config.clone(), config).await?;
        master.serve().await
    })
}

/// Startup order: log first, then config, then anvil, then the rest in the
/// order of the file.
fn startup_rank(kind: ServiceType) -> u8 {
    match kind {
        ServiceType::Log => 0,
        ServiceType::Config => 1,
        ServiceType::Anvil => 2,
        ServiceType::Default | ServiceType::Startup | ServiceType::Login | ServiceType::Worker => 3,
    }
}

/// The master's state.
struct Master {
    config_path: PathBuf,
    config: Config,
    generation: u64,
    next_generation: u64,
    services: Vec<ServiceState>,
    /// Every process: of a running service, or draining.
    processes: ProcessTable<Process>,
    /// Which services the round visits.
    agenda: Agenda,
    /// The `NOTIFY_SOCKET` of every systemd-interface process.
    notify: NotifySocket,
    /// Which lines about outsiders' doings are logged.
    noise: LogLimiter<Noise>,
    events: mpsc::UnboundedSender<Event>,
    receiver: mpsc::UnboundedReceiver<Event>,
    origin: Instant,
    runtime: Runtime,
    /// How plugins not yet compiled get compiled: by a helper process.
    compiler: plugins::Compiler,
    policy: Plugins,
    /// What `plugins_dir` held when the plugins were last loaded.
    plugins_listing: plugins::Listing,
    /// When `plugins_dir` was last looked at.
    plugins_checked: Instant,
    /// The plugin set being loaded off the event loop, if one is.
    loading: Option<Loading>,
    /// A load asked for while another was under way; it starts after.
    queued: Option<Loading>,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    /// The plugins' metrics as OpenMetrics text, for the endpoint.
    plugin_metrics: Arc<Mutex<String>>,
    /// Connections handed to native-interface processes, by id.
    connections: ConnectionTable,
    /// The serial of the next native process's control channel.
    next_channel: u64,
    /// When the plugins were last asked for their metrics.
    plugin_metrics_at: Option<Instant>,
    phase: Phase,
    spawned_this_round: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Control connections being served; the last answers (to `stop`)
    /// are written before the master exits.
    control_clients: ControlClients,
}

/// A plugin set being loaded, and what follows when it is ready.
#[derive(Debug, Default)]
struct Loading {
    /// Whether the configuration is reloaded with the new set (SIGHUP,
    /// `warden reload`); otherwise only the plugins change, and the
    /// configuration with them if they supply other defaults.
    reload: bool,
    /// The `warden reload` commands waiting for the outcome.
    replies: Vec<oneshot::Sender<Response>>,
    /// What `plugins_dir` held when the load started.
    listing: plugins::Listing,
}

impl Loading {
    /// Takes `other`'s reasons in too.
    fn merge(&mut self, other: Loading) {
        self.reload |= other.reload;
        self.replies.extend(other.replies);
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Master {
    async fn start(config_path: PathBuf, file_config: Config) -> Result<Master, RunError> {
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
        let sources = plugins::Sources::of(&file_config);
        let plugins_listing = plugins::listing(&sources.dir);
        let mut policy =
            plugins::load(&runtime, &sources, &compiler).into_plugins(Plugins::default());
        let config = read_config(&config_path, &mut policy)?;
        let notify = NotifySocket::open(events.clone())
            .map_err(|e| RunError::start("cannot open the notify socket", e))?;
        let mut master = Master {
            config_path,
            config: config.clone(),
            generation: 0,
            next_generation: 0,
            services: Vec::new(),
            processes: ProcessTable::default(),
            agenda: Agenda::default(),
            notify,
            noise: LogLimiter::new(ratelimit::INTERVAL),
            events,
            receiver,
            origin: Instant::now(),
            runtime,
            compiler,
            policy,
            plugins_listing,
            plugins_checked: Instant::now(),
            loading: None,
            queued: None,
            metrics,
            registry,
            plugin_metrics: Arc::default(),
            connections: ConnectionTable::default(),
            next_channel: 1,
            plugin_metrics_at: None,
            phase: Phase::Running,
            spawned_this_round: false,
            tasks: Vec::new(),
            control_clients: ControlClients::default(),
        };
        for missing in plugins::unknown_policies(&master.config, &master.policy) {
            tracing::warn!("{missing}");
        }
        master.services =
            master.set_up(&config, 0, Vec::new(), &mut Vec::new(), &mut Vec::new())?;
        descriptors::check_limit(&master.service_loads());
        master.agenda.reset(master.services.len());
        master.start_control()?;
        if let Some(listen) = config.globals.metrics_listen.value.clone() {
            let registry = Arc::clone(&master.registry);
            let plugin_metrics = Arc::clone(&master.plugin_metrics);
            master.tasks.push(tokio::spawn(async move {
                if let Err(error) = metrics::serve(listen, registry, plugin_metrics).await {
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
            sd_notify::NotifyState::Status(&format!("{running} services")),
        ]);
        Ok(master)
    }

    /// Sets up a service table for `config`, as configuration
    /// `generation`: listeners (reusing `old` listeners that did not
    /// change), identities. States in `keep` (an unchanged
    /// `anvil`) whose configuration is still wanted are carried over with
    /// their processes; they leave `keep` only when everything succeeded,
    /// so a failure leaves the running table whole. Each carried over is
    /// in `moves` as its old place and its new one.
    fn set_up(
        &mut self,
        config: &Config,
        generation: u64,
        mut old: Vec<(Wanted, OpenListener)>,
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
        // Chroots first: a listener of one service may live in another's
        // chroot (`login/imap`), and must not create it with its own mode.
        for service in config.services.iter().filter(|s| config.runs(s)) {
            if let Some(chroot) = &service.chroot.value {
                let what = format!("service {}: cannot create its chroot", service.name);
                let gid = launch::identity(service)
                    .map_err(|e| RunError::start(what.clone(), e))?
                    .map(|identity| identity.gid);
                prepare_chroot(&config.globals.base_dir.value, chroot, gid)
                    .map_err(|e| RunError::start(what, e))?;
            }
        }
        // A new state, or the configuration of a state carried over.
        let mut slots: Vec<Result<ServiceState, &crate::config::Service>> =
            Vec::with_capacity(order.len());
        // Listeners at a path the running configuration holds with other
        // settings are replaced last, once nothing else can fail.
        let mut replacements: Vec<(usize, Wanted)> = Vec::new();
        for service in order.into_iter().filter_map(|i| config.services.get(i)) {
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
            state.identity = launch::identity(service)
                .map_err(|e| RunError::start(cannot("cannot set up"), e))?;
            let wanted = listen::wanted(config, service)
                .map_err(|e| RunError::start(cannot("cannot set up"), e))?;
            for want in wanted {
                if let Some(place) = old.iter().position(|(was, _)| was.spec == want.spec) {
                    let (_, open) = old.swap_remove(place);
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
            let accepts = matches!(state.interface(), Interface::Inetd | Interface::Warden);
            if state.runs && accepts && state.acceptors.is_empty() {
                let name = state.name().to_owned();
                for (place, open) in state.listeners.iter().enumerate() {
                    let rules = open.haproxy.then(|| Arc::clone(&proxy));
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
    fn service_loads(&self) -> Vec<descriptors::ServiceLoad> {
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
    fn type_listeners(&mut self, state: &mut ServiceState) {
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
    fn start_control(&mut self) -> Result<(), RunError> {
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

    /// Starts loading the plugins afresh, off the event loop, from the
    /// sources the configuration file names now (the running ones when it
    /// does not parse and only the plugins are wanted). `warden reload`'s
    /// answer is `reply`, sent once the reload is done. One load runs at a
    /// time; another asked for meanwhile follows it.
    fn load_plugins(&mut self, wanted: Loading) {
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
    fn plugins_loaded(&mut self, loaded: plugins::Loaded) {
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
    fn watch_plugins(&mut self, now: Instant) {
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

    /// The event loop.
    async fn serve(&mut self) -> Result<(), RunError> {
        let signal_error = |e| RunError::start("cannot handle signals", e);
        let mut hangup = signal(SignalKind::hangup()).map_err(signal_error)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
        let mut user1 = signal(SignalKind::user_defined1()).map_err(signal_error)?;
        // Exits come through each process's pidfd; SIGCHLD is heard for
        // the stops and continues, which a pidfd does not tell.
        let mut child = signal(SignalKind::child()).map_err(signal_error)?;
        let mut round = tokio::time::interval(ROUND);
        round.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                Some(event) = self.receiver.recv() => self.handle(event),
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received: reloading the configuration");
                    self.load_plugins(Loading { reload: true, ..Loading::default() });
                }
                _ = terminate.recv() => self.begin_stop("SIGTERM"),
                _ = interrupt.recv() => self.begin_stop("SIGINT"),
                _ = user1.recv() => match crate::logging::reopen() {
                    Ok(()) => tracing::info!("SIGUSR1 received: log file reopened"),
                    Err(error) => tracing::error!(%error, "cannot reopen the log file"),
                },
                _ = child.recv() => self.stops_changed(),
                _ = round.tick() => self.round(),
            }
            if self.finished() {
                break;
            }
        }
        let _ = std::fs::remove_file(&self.config.globals.control_socket.value);
        // Answer the commands still in flight (the `stop` that ended us),
        // each given a moment, then go.
        self.control_clients.linger(CONTROL_LINGER).await;
        tracing::info!("warden stopped");
        Ok(())
    }

    /// Tells the plugins of the service at `index` that keep statistics
    /// what happened.
    fn observe(&mut self, index: usize, event: StatsEvent) {
        let now = self.now_ms(Instant::now());
        if let Some(state) = self.services.get(index) {
            self.policy
                .observe(state.name(), &state.config.policies.value, event, now);
        }
    }

    /// Asks the plugins for their metrics, at most once a second, for the
    /// metrics endpoint to show.
    fn report_plugin_metrics(&mut self, now: Instant) {
        if self
            .plugin_metrics_at
            .is_some_and(|at| now.saturating_duration_since(at) < PLUGIN_METRICS_EVERY)
        {
            return;
        }
        self.plugin_metrics_at = Some(now);
        let reports = self.policy.report(self.now_ms(now));
        let text = metrics::render_plugins(&reports);
        *self
            .plugin_metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = text;
    }

    fn now_ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_millis()).unwrap_or(u64::MAX)
    }

    fn handle(&mut self, event: Event) {
        let touched = self.touched_by(&event);
        self.handle_event(event);
        if let Some(index) = touched {
            self.agenda.touch(index);
        }
    }

    /// The service whose state `event` may change, which the next round
    /// then visits.
    fn touched_by(&self, event: &Event) -> Option<usize> {
        match event {
            Event::Exited { pid } | Event::Child { pid, .. } | Event::ChannelClosed { pid, .. } => {
                self.processes.place(*pid)
            }
            Event::Notify { pid, .. } => self.processes.place(pid.as_raw()),
            Event::Readable { generation, index }
            | Event::Accepted {
                generation, index, ..
            }
            | Event::Rejected {
                generation, index, ..
            } => (*generation == self.generation).then_some(*index),
            Event::Control {
                request: Request::Kick { pid },
                ..
            } => self.processes.place(*pid),
            // A new plugin set resets the whole agenda when it is installed.
            Event::PluginsLoaded(_) | Event::ControlClient(_) | Event::Control { .. } => None,
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Exited { pid } => self.exited(pid),
            Event::Notify { pid, message } => self.notified(pid, message),
            Event::Readable { generation, index } if generation == self.generation => {
                self.readable(index);
            }
            Event::Accepted {
                generation,
                index,
                connection,
            } if generation == self.generation => self.accepted(index, connection),
            Event::Rejected {
                generation,
                index,
                peer,
                error,
            } if generation == self.generation => {
                let name = self
                    .services
                    .get(index)
                    .map_or_else(String::new, |s| s.name().to_owned());
                self.reject(&name, &peer, error.reason(), &error.to_string());
            }
            // A connection for a service of an earlier configuration: it
            // goes unanswered and closes.
            Event::Readable { .. } | Event::Accepted { .. } | Event::Rejected { .. } => {}
            Event::Child {
                pid,
                channel,
                message,
            } => self.child_said(pid, channel, message),
            Event::ChannelClosed { pid, channel } => self.channel_closed(pid, channel),
            Event::PluginsLoaded(loaded) => self.plugins_loaded(loaded),
            Event::ControlClient(stream) => {
                self.control_clients.serve(stream, self.events.clone());
            }
            Event::Control { request, reply } => self.control(request, reply),
        }
    }

    /// Starts a process of service `index`, for `connection` if given.
    fn spawn(&mut self, index: usize, connection: Option<Connection>) -> Option<i32> {
        let now = Instant::now();
        let state = self.services.get_mut(index)?;
        if !state.below_limit(&self.processes) {
            // Whatever a policy asked for, process_limit holds.
            return None;
        }
        let service = &state.config;
        let base_dir = &self.config.globals.base_dir.value;
        let mut channel = None;
        let peer = connection.as_ref().and_then(|c| native::source(&c.ends));
        let planned = match (service.interface.value, connection) {
            (Interface::Inetd, Some(connection)) => {
                launch::inetd(base_dir, service, state.identity.as_ref(), connection)
            }
            (Interface::Warden, _) => match native::channel_pair() {
                Ok((master_end, process_end)) => {
                    channel = Some(master_end);
                    launch::native(base_dir, service, state.identity.as_ref(), process_end)
                }
                Err(source) => Err(launch::LaunchError::Io {
                    service: service.name.to_string(),
                    what: "creating a control channel",
                    source,
                }),
            },
            (_, _) => launch::systemd(
                base_dir,
                service,
                state.identity.as_ref(),
                &state.listeners,
                &self.notify.address,
            ),
        };
        let name = state.name().to_owned();
        // The whole chain: the OS error is what says why.
        let spawned = planned
            .map_err(|e| crate::error_chain(&e))
            .and_then(|(plan, output)| {
                plan.spawn()
                    .map(|child| (child, output))
                    .map_err(|e| crate::error_chain(&e))
            });
        let (child, output) = match spawned {
            Ok(spawned) => spawned,
            Err(message) => {
                tracing::error!(service = name, "cannot start a process: {message}");
                self.after_failed_start(index, now);
                return None;
            }
        };
        let pid = child.pid().as_raw();
        if let Some(stdout) = output.stdout {
            output::capture(name.clone(), pid, Stream::Stdout, stdout);
        }
        output::capture(name.clone(), pid, Stream::Stderr, output.stderr);
        watch_exit(&child, self.events.clone());
        let mut process = Process::new(child, now, state.config.effective_client_limit());
        process.peer = peer;
        if state.interface() == Interface::Inetd {
            // It serves its one connection from the start and takes no other.
            process.ready(now);
            process.clients = Some(1);
        }
        self.processes.add(pid, index, process);
        state.spawns += 1;
        self.metrics.spawns.get_or_create(&label(&name)).inc();
        self.spawned_this_round = true;
        tracing::debug!(service = name, pid, "process started");
        if let Some(channel) = channel {
            self.open_channel(index, pid, channel);
        }
        self.observe(index, StatsEvent::Spawned(pid.unsigned_abs()));
        Some(pid)
    }

    /// A process could not even be started: the policy decides, as for a
    /// process that died before it was ready.
    fn after_failed_start(&mut self, index: usize, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let exit = ExitView {
            pid: 0,
            cause: ExitCause::Code(127),
            age_ms: 0,
            was_ready: false,
            was_asked: false,
            service_proven: state.proven,
            failures_in_last_second: record_failure(state, now),
            last_throttle_ms: state.throttle.last_ms,
        };
        let decision = self.policy.lifecycle(&state.view(), &exit);
        self.apply_lifecycle(index, decision, now, "its process could not be started");
    }

    fn exited(&mut self, pid: i32) {
        let now = Instant::now();
        let Some((slot, entry)) = self.processes.remove(pid) else {
            return;
        };
        let (index, name) = match (slot, entry.drain) {
            (Slot::Service(index), _) => (
                Some(index),
                self.services
                    .get(index)
                    .map_or_else(String::new, |s| s.name().to_owned()),
            ),
            (Slot::Draining, drain) => (None, drain.map(|d| d.service).unwrap_or_default()),
        };
        let process = entry.process;
        // The pidfd is readable, so the exit is there to collect at once.
        let exit = match process.child.try_wait() {
            Ok(Some(exit)) => exit,
            Ok(None) => {
                tracing::error!(
                    service = name,
                    pid,
                    "a process's pidfd woke warden, but it has not exited; it is no longer watched"
                );
                return;
            }
            Err(error) => {
                tracing::error!(service = name, pid, %error, "cannot reap a process");
                return;
            }
        };
        let asked = process.life().asked_to_go();
        self.log_exit(&name, pid, exit, asked, index);
        let cause = match exit {
            _ if asked => "asked",
            Exit::Code(0) => "clean",
            Exit::Code(_) => "failure",
            Exit::Signal { .. } => "signal",
        };
        self.metrics
            .exits
            .get_or_create(&ExitLabels {
                service: name,
                cause: cause.to_owned(),
            })
            .inc();
        if let Some(index) = index {
            self.observe(index, StatsEvent::Exited(pid.unsigned_abs()));
        }
        self.forget_connections(pid, index);
        let (Some(index), Phase::Running) = (index, self.phase) else {
            return;
        };
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if state.spawn_pending == Some(pid) {
            state.spawn_pending = None;
        }
        if exit.success() {
            state.proven = true;
            state.throttle.last_ms = 0;
        }
        if process
            .ready_at()
            .is_some_and(|ready| now.saturating_duration_since(ready) >= PROVEN_AFTER)
        {
            state.proven = true;
        }
        let mut view = ExitView {
            pid: pid.unsigned_abs(),
            cause: match exit {
                Exit::Code(code) => ExitCause::Code(code),
                Exit::Signal { signal, .. } => ExitCause::Signal(signal),
            },
            age_ms: u64::try_from(now.saturating_duration_since(process.started).as_millis())
                .unwrap_or(u64::MAX),
            was_ready: process.ready_at().is_some(),
            was_asked: asked,
            service_proven: state.proven,
            failures_in_last_second: 0,
            last_throttle_ms: state.throttle.last_ms,
        };
        if view.failed() {
            view.failures_in_last_second = record_failure(state, now);
        }
        let decision = self.policy.lifecycle(&state.view(), &view);
        let reason = if view.was_ready {
            format!("process {pid} {exit}")
        } else {
            format!("process {pid} {exit} before it was ready")
        };
        self.apply_lifecycle(index, decision, now, &reason);
    }

    fn apply_lifecycle(&mut self, index: usize, decision: Lifecycle, now: Instant, reason: &str) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let name = state.name().to_owned();
        match decision {
            Lifecycle::Continue => {}
            // One failure event steps the throttle once. Processes that
            // fail together (a broken binary, several started in one
            // round) report their exits one by one; those that come while
            // the throttle they caused is in force are part of the same
            // event, as Dovecot ignores failures while throttled. Without
            // this, five processes dying in the same millisecond would
            // double the throttle four more times.
            Lifecycle::Throttle { .. } if state.throttle.until.is_some_and(|until| now < until) => {
                tracing::debug!(service = name, "already throttled: {reason}");
            }
            Lifecycle::Throttle { ms } => {
                state.throttle.until = Some(now + Duration::from_millis(ms));
                state.throttle.last_ms = ms;
                stop_watching(state);
                tracing::warn!(
                    service = name,
                    "throttling: no new process for {}: {reason}",
                    crate::config::value::Duration::from_millis(ms)
                );
                self.metrics.throttles.get_or_create(&label(&name)).inc();
                self.metrics.throttled.get_or_create(&label(&name)).set(1);
                self.observe(index, StatsEvent::Throttled(ms));
            }
            Lifecycle::GiveUp { reason: why } => {
                tracing::error!(service = name, "giving up until reload: {why} ({reason})");
                state.given_up = Some(why);
                stop_watching(state);
            }
        }
    }

    fn log_exit(&self, name: &str, pid: i32, exit: Exit, asked: bool, index: Option<usize>) {
        let vsz = index
            .and_then(|i| self.services.get(i))
            .map(|s| s.config.vsz_limit.value);
        match exit {
            _ if asked => tracing::info!(service = name, pid, "process {exit} as asked"),
            Exit::Code(0) => tracing::info!(service = name, pid, "process {exit}"),
            Exit::Code(83) => {
                let limit = match vsz {
                    Some(crate::config::VszLimit::Bytes(size)) => size.to_string(),
                    _ => "unlimited".to_owned(),
                };
                tracing::error!(
                    service = name,
                    pid,
                    "process {exit}: out of memory (vsz_limit = {limit}); raise service.{name}.vsz_limit"
                );
            }
            Exit::Signal {
                signal: libc::SIGKILL,
                ..
            } if matches!(vsz, Some(crate::config::VszLimit::Bytes(_))) => tracing::error!(
                service = name,
                pid,
                "process {exit}; if it ran out of memory, raise service.{name}.vsz_limit"
            ),
            _ => tracing::error!(service = name, pid, "process {exit}"),
        }
    }

    fn notified(&mut self, pid: Pid, message: Message) {
        let now = Instant::now();
        let raw = pid.as_raw();
        let Some((service, process)) = self.named_process_mut(raw) else {
            // Anyone on the machine can send these: rate-limited.
            if self.noise.allow(&Noise::Stranger, now, || raw.to_string()) {
                tracing::warn!(
                    pid = raw,
                    "ignoring a notify message from pid {raw}, which is not one of warden's processes"
                );
            }
            return;
        };
        if message.ready || message.clients.is_some() || message.watchdog {
            process.ready(now);
        }
        if message.clients.is_some() && process.busy() == Some(IdleStage::Ignoring) {
            tracing::info!(
                service,
                pid = raw,
                "process {raw} reported its clients after all; it takes connections again"
            );
        }
        if let Some(clients) = message.clients
            && process.reported_clients(clients, now)
        {
            let limit = process.client_limit;
            tracing::warn!(
                service,
                pid = raw,
                reported = clients,
                "process reported {clients} clients, more than its client_limit ({limit}); counting {limit}. A process must stop accepting at WARDEN_CLIENT_LIMIT: fix the service, or raise service.{service}.client_limit (warned once per process)"
            );
        }
        if message.stopping {
            process.retire();
        }
        if let Some(status) = message.status {
            process.status = Some(status);
        }
    }

    /// SIGCHLD: some child may have been stopped or continued. A stopped
    /// process takes no connections and is not counted available, so the
    /// service starts another if it needs one; it is not killed (someone
    /// may be debugging it) unless an idle exit it ignored runs its course.
    /// Each stop and continue is logged once.
    fn stops_changed(&mut self) {
        let now = Instant::now();
        loop {
            let (pid, change) = match warden_sys::next_stop_change() {
                Ok(Some(changed)) => changed,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "cannot ask which processes were stopped or continued");
                    return;
                }
            };
            let raw = pid.as_raw();
            if let Some(index) = self.processes.place(raw) {
                self.agenda.touch(index);
            }
            let Some((service, process)) = self.named_process_mut(raw) else {
                continue;
            };
            match change {
                warden_sys::StopChange::Stopped { signal } => {
                    if process.held.is_none() {
                        process.held = Some(now);
                        let signal = Signal::try_from(signal).map_or("a signal", Signal::as_str);
                        tracing::warn!(
                            service,
                            pid = raw,
                            "process {raw} was stopped by {signal}; it takes no connections until it is continued (SIGCONT), and warden leaves it be"
                        );
                    }
                }
                warden_sys::StopChange::Continued => {
                    if let Some(since) = process.held.take() {
                        tracing::info!(
                            service,
                            pid = raw,
                            "process {raw} was continued after {}s stopped; it takes connections again",
                            now.saturating_duration_since(since).as_secs()
                        );
                    }
                }
            }
        }
    }

    /// A watched listener became readable: no process could take the
    /// connection.
    fn readable(&mut self, index: usize) {
        let now = Instant::now();
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        stop_watching(state);
        if !state.may_spawn(now) || self.phase != Phase::Running {
            return;
        }
        if state.available(&self.processes) > 0 || state.spawn_pending.is_some() {
            return;
        }
        if state.below_limit(&self.processes) {
            let pid = self.spawn(index, None);
            if let Some(state) = self.services.get_mut(index) {
                state.spawn_pending = pid;
            }
            return;
        }
        if state.dropping {
            let dropped = drop_waiting(state);
            self.count_drops(index, dropped, now);
        } else {
            state.waiting_since.get_or_insert(now);
            self.count_drops(index, 0, now);
        }
    }

    /// Logs that the service is at its limit (at most once a second) and
    /// counts `dropped` connections.
    fn count_drops(&mut self, index: usize, dropped: u64, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let name = state.name().to_owned();
        state.dropped += dropped;
        if dropped > 0 {
            self.metrics
                .dropped
                .get_or_create(&label(&name))
                .inc_by(dropped);
        }
        // Drops and waits are each reported at most once a second.
        let last = if dropped > 0 {
            &mut state.last_drop_warning
        } else {
            &mut state.last_wait_warning
        };
        if last.is_none_or(|last| now.saturating_duration_since(last) >= DROP_WARNING_INTERVAL) {
            *last = Some(now);
            let limit = state.config.process_limit.value;
            if dropped > 0 {
                tracing::warn!(
                    service = name,
                    dropped,
                    "process_limit ({limit}) reached, connections are being dropped; raise service.{name}.process_limit or client_limit"
                );
            } else {
                tracing::warn!(
                    service = name,
                    "process_limit ({limit}) reached, connections wait up to process_limit_wait and are then dropped; raise service.{name}.process_limit or client_limit"
                );
                // Told as often as it is logged: at most once a second.
                self.observe(index, StatsEvent::Full);
            }
        }
    }

    fn accepted(&mut self, index: usize, connection: Connection) {
        let now = Instant::now();
        if self.phase != Phase::Running {
            return;
        }
        let Some(connection) = self.admit(index, connection, now) else {
            return;
        };
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if state.interface() == Interface::Warden {
            self.accepted_native(index, connection, now);
            return;
        }
        if !state.may_spawn(now) {
            // Throttled: the connection closes unanswered.
            return;
        }
        if state.below_limit(&self.processes) && state.queue.is_empty() {
            self.spawn(index, Some(connection));
        } else {
            state.queue.push_back((connection, now));
            self.count_drops(index, 0, now);
        }
    }

    /// The periodic round.
    fn round(&mut self) {
        let now = Instant::now();
        let due = self.agenda.due(now);
        if self.phase == Phase::Running {
            self.watch_plugins(now);
            self.report_plugin_metrics(now);
            for &index in &due {
                self.round_service(index, now);
            }
            self.spawned_this_round = false;
        }
        self.round_draining(now);
        self.round_stopping(now);
        self.update_gauges(&due);
        self.summarise_noise(now);
    }

    /// Logs what the rate limit held back of outsiders' doings, once per
    /// interval and kind.
    fn summarise_noise(&mut self, now: Instant) {
        let seconds = ratelimit::INTERVAL.as_secs();
        for (kind, summary) in self.noise.due(now) {
            let (count, example) = (summary.count, summary.example);
            match kind {
                Noise::Stranger => tracing::warn!(
                    count,
                    "ignored {count} more notify messages from processes that are not warden's in the last {seconds}s; the first from pid {example}"
                ),
                Noise::Refused { service, reason } => tracing::info!(
                    service,
                    reason,
                    count,
                    "{count} more connections refused ({reason}) in the last {seconds}s; the first from {example}"
                ),
            }
        }
    }

    fn round_service(&mut self, index: usize, now: Instant) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if !state.runs {
            return;
        }
        let name = state.name().to_owned();
        if let Some(until) = state.throttle.until
            && now >= until
        {
            state.throttle.until = None;
            tracing::info!(service = name, "throttle over");
            self.metrics.throttled.get_or_create(&label(&name)).set(0);
        }
        state.tend(&mut self.processes, now);

        let scaling_again = match state.interface() {
            Interface::Inetd => {
                self.round_inetd(index, now);
                false
            }
            Interface::Warden => {
                let again = self.round_scaling(index, now);
                self.dispatch(index, now);
                self.drop_expired(index, now);
                again
            }
            Interface::Systemd | Interface::Dovecot => {
                let again = self.round_scaling(index, now);
                self.round_waiting(index, now);
                self.round_listening(index, now);
                again
            }
        };
        self.round_idle(index, now);
        if let Some(state) = self.services.get(index) {
            if scaling_again || state.has_work(&self.processes) {
                self.agenda.touch(index);
            }
            if let Some(at) = state.next_wake(&self.processes) {
                self.agenda.wake_at(at, index);
            }
        }
    }

    /// Asks the scaling policy how many processes to start, and starts
    /// them. Whether the service needs asking again next round without an
    /// event: it started some (it may want more than one round starts),
    /// or it was asked while the master was busy starting others, which
    /// may have held its answer back.
    fn round_scaling(&mut self, index: usize, now: Instant) -> bool {
        let Some(state) = self.services.get_mut(index) else {
            return false;
        };
        if !state.may_spawn(now) {
            return false;
        }
        let at_startup = !state.started;
        state.started = true;
        let processes = state.process_views(&self.processes, self.origin);
        let mut wanted = self.policy.scaling(
            &state.view(),
            &processes,
            at_startup,
            self.spawned_this_round,
        );
        // The log and config services are up before the others need them,
        // and the log service is restarted whenever it has no process.
        let kind = state.config.kind.value;
        if self.processes.count(index) == 0
            && (kind == ServiceType::Log || (at_startup && kind == ServiceType::Config))
        {
            wanted = wanted.max(1);
        }
        let busy = self.spawned_this_round;
        let mut started = 0;
        for _ in 0..wanted {
            if self.spawn(index, None).is_none() {
                break;
            }
            started += 1;
        }
        busy || started > 0
    }

    /// Connections waiting at `process_limit` are dropped once they have
    /// waited `process_limit_wait`; a free slot ends the waiting.
    fn round_waiting(&mut self, index: usize, now: Instant) {
        let wait = self.config.globals.process_limit_wait.value.to_std();
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        if state.available(&self.processes) > 0 || state.below_limit(&self.processes) {
            state.waiting_since = None;
            state.dropping = false;
            return;
        }
        if let Some(since) = state.waiting_since
            && now.saturating_duration_since(since) >= wait
        {
            state.waiting_since = None;
            state.dropping = true;
            let dropped = drop_waiting(state);
            self.count_drops(index, dropped, now);
        }
    }

    /// The master watches a service's listeners only when no process can
    /// take a connection.
    fn round_listening(&mut self, index: usize, now: Instant) {
        let generation = self.generation;
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let want = state.may_spawn(now)
            && !state.listeners.is_empty()
            && state.spawn_pending.is_none()
            && state.available(&self.processes) == 0
            && (state.below_limit(&self.processes) || state.waiting_since.is_none());
        if !want {
            stop_watching(state);
            return;
        }
        if !state.watchers.is_empty() {
            return;
        }
        for open in &state.listeners {
            let Ok(fd) = open.listener.try_clone() else {
                continue;
            };
            let Ok(fd) = warden_sys::watch::async_fd(OwnedFd::from(fd)) else {
                continue;
            };
            let events = self.events.clone();
            state.watchers.push(tokio::spawn(async move {
                if fd.readable().await.is_ok() {
                    let _ = events.send(Event::Readable { generation, index });
                }
            }));
        }
    }

    fn round_inetd(&mut self, index: usize, now: Instant) {
        loop {
            let Some(state) = self.services.get_mut(index) else {
                return;
            };
            if !state.below_limit(&self.processes) || !state.may_spawn(now) {
                break;
            }
            let Some((connection, _)) = state.queue.pop_front() else {
                break;
            };
            self.spawn(index, Some(connection));
        }
        self.drop_expired(index, now);
    }

    /// Drops the accepted connections that waited `process_limit_wait`.
    fn drop_expired(&mut self, index: usize, now: Instant) {
        let wait = self.config.globals.process_limit_wait.value.to_std();
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let before = state.queue.len();
        state
            .queue
            .retain(|(_, since)| now.saturating_duration_since(*since) < wait);
        let dropped = u64::try_from(before - state.queue.len()).unwrap_or(u64::MAX);
        if dropped > 0 {
            self.count_drops(index, dropped, now);
        }
    }

    /// The low-water idle kill: track the fewest idle processes at once,
    /// and once per `idle_kill` interval let the policy pick whom to ask.
    fn round_idle(&mut self, index: usize, now: Instant) {
        let now_ms = self.now_ms(now);
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let Some(interval) = state.idle_kill() else {
            return;
        };
        // With no process there is nothing to retire: the rounds start
        // afresh, an interval after the next process appears.
        if self.processes.count(index) == 0 {
            state.next_idle_round = None;
            state.idle_lowwater = None;
            return;
        }
        let idle = state.idle_count(&self.processes);
        let lowwater = state.idle_lowwater.map_or(idle, |low| low.min(idle));
        state.idle_lowwater = Some(lowwater);
        let next = *state.next_idle_round.get_or_insert(now + interval);
        if now < next {
            return;
        }
        state.next_idle_round = Some(now + interval);
        state.idle_lowwater = Some(idle);
        let actions = self.policy.idle(
            &state.view(),
            &state.process_views(&self.processes, self.origin),
            lowwater,
            now_ms,
        );
        let name = state.name().to_owned();
        let mut asked = Vec::new();
        for action in actions {
            let (pid, stage) = match action {
                IdleAction::AskToExit(pid) => (pid, IdleStage::Asked),
                IdleAction::Terminate(pid) => (pid, IdleStage::Terminated),
                IdleAction::Kill(pid) => (pid, IdleStage::Killed),
            };
            // Only the processes the policy was shown may be named.
            let Some(process) = i32::try_from(pid)
                .ok()
                .and_then(|pid| self.processes.get_mut(pid))
                .filter(|p| p.decided_about())
            else {
                tracing::warn!(
                    service = name,
                    pid,
                    "the idle policy named a process the service does not have, or that is stopping or stopped"
                );
                continue;
            };
            // Asked again while the first request runs its course: the
            // escalation keeps its own clock.
            if stage == IdleStage::Asked && process.life().idle_exit().is_some() {
                continue;
            }
            let sent = match stage {
                IdleStage::Asked | IdleStage::Ignoring => process.ask_if_idle(now),
                IdleStage::Terminated => process.force_idle_exit(stage, Signal::SIGTERM, now),
                IdleStage::Killed => process.force_idle_exit(stage, Signal::SIGKILL, now),
            };
            match sent {
                Ok(()) => {
                    asked.push(pid);
                    tracing::debug!(service = name, pid, "asked an idle process to exit");
                }
                Err(error) => {
                    tracing::warn!(service = name, pid, %error, "cannot signal an idle process");
                }
            }
        }
        for pid in asked {
            self.observe(index, StatsEvent::IdleAsked(pid));
        }
    }

    /// Old processes get SIGTERM after `shutdown_grace` and SIGKILL after
    /// twice that, when `shutdown_clients` says so.
    fn round_draining(&mut self, now: Instant) {
        if !self.config.globals.shutdown_clients.value {
            return;
        }
        let grace = self.config.globals.shutdown_grace.value.to_std();
        for (pid, drain, process) in self.processes.draining_mut() {
            let waited = now.saturating_duration_since(drain.since);
            let signal = if waited >= grace * 2 && !drain.killed {
                drain.killed = true;
                Signal::SIGKILL
            } else if waited >= grace && !matches!(process.life(), Life::Stopping { .. }) {
                Signal::SIGTERM
            } else {
                continue;
            };
            if process.stop(signal, now, false).is_ok() {
                tracing::info!(
                    service = drain.service,
                    pid,
                    "sent {signal} to an old process after reload"
                );
            }
        }
    }

    fn begin_stop(&mut self, why: &str) {
        if self.phase != Phase::Running {
            return;
        }
        tracing::info!("{why} received: stopping every service");
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let now = Instant::now();
        self.phase = Phase::Stopping {
            since: now,
            log_told: None,
        };
        for state in &mut self.services {
            stop_watching(state);
            for task in state.acceptors.drain(..) {
                task.abort();
            }
            state.queue.clear();
        }
        let logs = self.log_places();
        for (slot, _, process) in self.processes.iter_mut() {
            if !logs.contains(&slot) {
                let _ = process.stop(Signal::SIGTERM, now, false);
            }
        }
    }

    /// The slots of the log services' processes, which stop last.
    fn log_places(&self) -> Vec<Slot> {
        self.services
            .iter()
            .filter(|s| s.config.kind.value == ServiceType::Log)
            .map(|s| Slot::Service(s.place))
            .collect()
    }

    fn round_stopping(&mut self, now: Instant) {
        let Phase::Stopping { since, log_told } = self.phase else {
            return;
        };
        let grace = self.config.globals.shutdown_grace.value.to_std();
        let waited = now.saturating_duration_since(since);
        let logs = self.log_places();
        let others_left = self
            .processes
            .iter()
            .any(|(slot, _, _)| !logs.contains(&slot));
        if others_left && waited >= grace {
            for (slot, _, process) in self.processes.iter_mut() {
                if !logs.contains(&slot) {
                    let _ = process.child.signal(Signal::SIGKILL);
                }
            }
        }
        if !others_left && log_told.is_none() {
            // The log service goes last, so the others' last lines are kept.
            for (slot, _, process) in self.processes.iter_mut() {
                if logs.contains(&slot) {
                    let _ = process.stop(Signal::SIGTERM, now, false);
                }
            }
            self.phase = Phase::Stopping {
                since,
                log_told: Some(now),
            };
        }
        // The log service has its own grace, from when it was told.
        if log_told.is_some_and(|told| now.saturating_duration_since(told) >= grace) {
            for (slot, _, process) in self.processes.iter_mut() {
                if logs.contains(&slot) {
                    let _ = process.child.signal(Signal::SIGKILL);
                }
            }
        }
    }

    fn finished(&self) -> bool {
        matches!(self.phase, Phase::Stopping { .. }) && self.processes.is_empty()
    }

    /// Refreshes the gauges of the services the round visited: no other
    /// service changed since the last.
    fn update_gauges(&self, visited: &std::collections::BTreeSet<usize>) {
        let states = visited.iter().filter_map(|&index| self.services.get(index));
        for state in states.filter(|s| s.runs) {
            let service = label(state.name());
            let count = i64::try_from(self.processes.count(state.place)).unwrap_or(i64::MAX);
            self.metrics.processes.get_or_create(&service).set(count);
            self.metrics
                .available_slots
                .get_or_create(&service)
                .set(i64::try_from(state.available_slots(&self.processes)).unwrap_or(i64::MAX));
            self.metrics
                .connections
                .get_or_create(&service)
                .set(i64::from(state.clients(&self.processes)));
        }
    }

    /// Reloads the configuration file; on failure the running one stays.
    fn reload(&mut self) -> Result<String, String> {
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

    fn try_reload(&mut self) -> Result<String, String> {
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
                    s.config.kind.value == ServiceType::Anvil
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

    /// The process `pid`, with the name of its service, whether it runs or
    /// drains.
    fn named_process_mut(&mut self, pid: i32) -> Option<(String, &mut Process)> {
        let slot = self.processes.slot(pid)?;
        let entry = self.processes.entry_mut(pid)?;
        let service = match slot {
            Slot::Service(index) => self.services.get(index).map(|s| s.name().to_owned()),
            Slot::Draining => entry.drain.as_ref().map(|d| d.service.clone()),
        }
        .unwrap_or_default();
        Some((service, &mut entry.process))
    }

    /// Answers a control command on `reply`.
    fn control(&mut self, request: Request, reply: oneshot::Sender<Response>) {
        let response = match request {
            Request::Status => Response::Status {
                services: self.services.iter().map(|s| self.status_of(s)).collect(),
            },
            Request::Ps { service } => {
                let now = Instant::now();
                let mut processes: Vec<ProcessStatus> = Vec::new();
                for (slot, pid, entry) in self.processes.iter() {
                    let (name, state) = match (slot, &entry.drain) {
                        (Slot::Service(index), _) => {
                            (self.services.get(index).map_or("", |s| s.name()), None)
                        }
                        (Slot::Draining, drain) => (
                            drain.as_ref().map_or("", |d| d.service.as_str()),
                            Some("draining"),
                        ),
                    };
                    if service.as_deref().is_none_or(|wanted| wanted == name) {
                        processes.push(process_status(name, pid, &entry.process, now, state));
                    }
                }
                Response::Ps { processes }
            }
            Request::Reload => {
                // Answered once the plugins are loaded and the
                // configuration with them.
                self.load_plugins(Loading {
                    reload: true,
                    replies: vec![reply],
                    ..Loading::default()
                });
                return;
            }
            Request::Plugins => Response::Plugins {
                plugins: self
                    .policy
                    .plugins()
                    .iter()
                    .map(|plugin| {
                        let (origin, sha256) = match plugin.origin() {
                            warden_policy::Origin::Builtin => ("built-in".to_owned(), None),
                            warden_policy::Origin::File { path, sha256 } => {
                                (path.clone(), Some(sha256.clone()))
                            }
                        };
                        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                        crate::control::PluginStatus {
                            name: plugin.identity().name.clone(),
                            version: plugin.identity().version.clone(),
                            origin,
                            sha256,
                            hooks: plugin
                                .hooks()
                                .names()
                                .into_iter()
                                .map(str::to_owned)
                                .collect(),
                            services: plugin.identity().services.clone(),
                            calls: plugin.stats().calls,
                            failures: plugin.stats().failures,
                            mean_us: micros(plugin.stats().mean()),
                            p99_us: micros(plugin.stats().p99()),
                            quarantined: plugin.quarantined(),
                        }
                    })
                    .collect(),
            },
            Request::Stop => {
                self.begin_stop("a stop command");
                Response::Done {
                    message: "stopping every service".to_owned(),
                }
            }
            Request::Stats => {
                self.plugin_metrics_at = None;
                self.report_plugin_metrics(Instant::now());
                Response::Stats {
                    text: metrics::render(&self.registry, &self.plugin_metrics),
                }
            }
            Request::Who { service } => Response::Connections {
                connections: self.who(service.as_deref()),
            },
            Request::KickConnection { target } => match self.kick_connection(&target) {
                Ok(message) => Response::Done { message },
                Err(message) => Response::Failed { message },
            },
            Request::Kick { pid } => match self.process_mut(pid) {
                Some(process) => match process.stop(Signal::SIGTERM, Instant::now(), false) {
                    Ok(()) => Response::Done {
                        message: format!("sent SIGTERM to process {pid}"),
                    },
                    Err(error) => Response::Failed {
                        message: format!("cannot signal process {pid}: {error}"),
                    },
                },
                None => Response::Failed {
                    message: format!(
                        "process {pid} is not one of warden's; `warden ps` lists them"
                    ),
                },
            },
        };
        let _ = reply.send(response);
    }

    fn status_of(&self, state: &ServiceState) -> ServiceStatus {
        let now = Instant::now();
        ServiceStatus {
            name: state.name().to_owned(),
            runs: state.runs,
            processes: u32::try_from(self.processes.count(state.place)).unwrap_or(u32::MAX),
            process_limit: state.config.process_limit.value,
            available: state.available(&self.processes),
            clients: state.clients(&self.processes),
            listening: !state.watchers.is_empty(),
            throttled_ms: state
                .throttle
                .until
                .filter(|until| *until > now)
                .map(|until| {
                    u64::try_from(until.saturating_duration_since(now).as_millis())
                        .unwrap_or(u64::MAX)
                }),
            given_up: state.given_up.clone(),
            spawns: state.spawns,
            dropped: state.dropped,
        }
    }
}

fn process_status(
    service: &str,
    pid: i32,
    process: &Process,
    now: Instant,
    state: Option<&str>,
) -> ProcessStatus {
    ProcessStatus {
        service: service.to_owned(),
        pid,
        state: state.unwrap_or(process.state()).to_owned(),
        clients: process.clients,
        age_secs: now.saturating_duration_since(process.started).as_secs(),
        status: process.status.clone(),
    }
}

/// Forwards the exit of `child` as an event when its pidfd is readable.
fn watch_exit(child: &warden_sys::Child, events: mpsc::UnboundedSender<Event>) {
    let pid = child.pid().as_raw();
    let watched = child
        .as_fd()
        .try_clone_to_owned()
        .and_then(warden_sys::watch::async_fd);
    match watched {
        Ok(pidfd) => {
            tokio::spawn(async move {
                let _ = pidfd.readable().await;
                let _ = events.send(Event::Exited { pid });
            });
        }
        Err(error) => {
            // Without the reactor, look at the pidfd ten times a second,
            // so the process is still reaped and stop still ends.
            tracing::warn!(pid, %error, "cannot watch a process's exit; looking for it periodically");
            let Ok(pidfd) = child.as_fd().try_clone_to_owned() else {
                tracing::error!(
                    pid,
                    "cannot keep a handle on the process; it will not be reaped"
                );
                return;
            };
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ROUND).await;
                    let mut polled = [nix::poll::PollFd::new(
                        pidfd.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    if nix::poll::poll(&mut polled, nix::poll::PollTimeout::ZERO)
                        .is_ok_and(|n| n > 0)
                    {
                        let _ = events.send(Event::Exited { pid });
                        return;
                    }
                }
            });
        }
    }
}

/// Creates a missing chroot directory inside `base_dir`, as Dovecot's
/// master does for `empty` and `login`: the built-in plugins chroot
/// services there, which must work on a fresh machine. It is root's, mode
/// 0750 and the group `gid` of the service's user, so that only that
/// user's processes get through it to the sockets inside (`login/imap` is
/// 0666); 0755 when the service keeps the supervisor's user. A chroot
/// elsewhere must already exist.
fn prepare_chroot(
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
fn prepare_base_dir(base_dir: &Path) -> Result<(), RunError> {
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

/// How long an accept loop rests after an error such as running out of
/// descriptors, so it cannot spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A task that accepts connections on `listener` for inetd service
/// `index` of `generation` and forwards them. An error other than "nothing
/// to accept" (out of descriptors, out of memory) is logged at most once
/// per backoff and waited out, so the loop never spins.
/// The PROXY protocol rules of `haproxy` listeners.
#[derive(Debug)]
struct ProxyRules {
    /// `haproxy_trusted_networks`.
    trusted: Vec<crate::config::value::Network>,
    /// `haproxy_timeout`.
    timeout: Duration,
}

/// Where an acceptor's connections go.
#[derive(Debug, Clone, Copy)]
struct Acceptor {
    /// The configuration generation.
    generation: u64,
    /// The service's place in the table.
    index: usize,
    /// The listener's place in the service's listeners.
    listener: usize,
}

/// Accepts connections on `listener` for an inetd or native service and
/// sends them to the master; on a `haproxy` listener (`proxy` given), each
/// connection's PROXY header is read first, in a task of its own, and one
/// that breaks the protocol is closed and reported instead.
fn accept_task(
    events: &mpsc::UnboundedSender<Event>,
    at: Acceptor,
    listener: &Listener,
    proxy: Option<Arc<ProxyRules>>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let endpoint = listener.endpoint().to_string();
    let unix = matches!(listener.endpoint(), Endpoint::Unix(_));
    let fd = warden_sys::watch::async_fd(OwnedFd::from(listener.try_clone()?))?;
    let events = events.clone();
    Ok(tokio::spawn(async move {
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return;
            };
            let socket = match nix::sys::socket::accept4(
                fd.get_ref().as_fd(),
                SockFlag::SOCK_CLOEXEC,
            ) {
                Ok(socket) => socket,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                    ready.clear_ready();
                    continue;
                }
                Err(errno) => {
                    ready.clear_ready();
                    tracing::error!(
                        listener = endpoint,
                        %errno,
                        "cannot accept a connection; retrying in {}ms (raise the descriptor limit, ulimit -n, if it says too many open files)",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(ends) = ends_of(&socket, unix) else {
                continue;
            };
            let connection = Connection {
                socket,
                listener: at.listener,
                accepted: Instant::now(),
                delays: 0,
                ends,
            };
            if let Some(rules) = &proxy {
                tokio::spawn(read_proxy_header(
                    events.clone(),
                    at,
                    connection,
                    Arc::clone(rules),
                ));
            } else if events
                .send(Event::Accepted {
                    generation: at.generation,
                    index: at.index,
                    connection,
                })
                .is_err()
            {
                return;
            }
        }
    }))
}

/// Reads the PROXY header of `connection` and sends it on with the
/// addresses the header gives, or reports why it was refused (dropping
/// the connection closes it).
async fn read_proxy_header(
    events: mpsc::UnboundedSender<Event>,
    at: Acceptor,
    mut connection: Connection,
    rules: Arc<ProxyRules>,
) {
    let Ends::Tcp { remote, .. } = connection.ends else {
        return;
    };
    let result = async {
        let stream = std::net::TcpStream::from(connection.socket.try_clone()?);
        stream.set_nonblocking(true)?;
        let mut stream = tokio::net::TcpStream::from_std(stream)?;
        let trusted = rules
            .trusted
            .iter()
            .any(|network| network.contains(remote.ip()));
        let header = warden_proxy::accept(&mut stream, remote.ip(), trusted, rules.timeout).await;
        stream.into_std()?.set_nonblocking(false)?;
        header
    }
    .await;
    let event = match result {
        Ok(addresses) => {
            if let Some(addresses) = addresses {
                connection.ends = Ends::Tcp {
                    remote: addresses.source,
                    local: addresses.destination,
                };
            }
            Event::Accepted {
                generation: at.generation,
                index: at.index,
                connection,
            }
        }
        Err(error) => Event::Rejected {
            generation: at.generation,
            index: at.index,
            peer: remote.to_string(),
            error,
        },
    };
    let _ = events.send(event);
}

/// Records a failed exit at `now` and returns how many the last second saw.
fn record_failure(state: &mut ServiceState, now: Instant) -> u32 {
    state.failures.push_back(now);
    while state
        .failures
        .front()
        .is_some_and(|at| now.saturating_duration_since(*at) > Duration::from_secs(1))
    {
        state.failures.pop_front();
    }
    u32::try_from(state.failures.len()).unwrap_or(u32::MAX)
}

fn stop_watching(state: &mut ServiceState) {
    for task in state.watchers.drain(..) {
        task.abort();
    }
}

/// The most connections dropped at once, so a flood cannot hold the loop;
/// the rest are dropped on the next round.
const DROP_BATCH: u64 = 1000;

/// Accepts and closes the connections waiting on the service's socket
/// listeners, at most [`DROP_BATCH`]; returns how many.
fn drop_waiting(state: &ServiceState) -> u64 {
    let mut dropped = 0;
    for open in &state.listeners {
        if matches!(open.listener.endpoint(), Endpoint::Fifo(_)) {
            continue;
        }
        while dropped < DROP_BATCH {
            let Ok(socket) =
                nix::sys::socket::accept4(open.listener.as_fd(), SockFlag::SOCK_CLOEXEC)
            else {
                break;
            };
            drop(socket);
            dropped += 1;
        }
    }
    dropped
}

/// Whether the running configuration holds a unix socket or fifo at the
/// path `spec` wants (with other settings, or it would have been reused).
fn holds_path(spec: &Spec, old: &[(Wanted, OpenListener)]) -> bool {
    let path = match spec {
        Spec::Unix { path, .. } | Spec::Fifo { path, .. } => path,
        Spec::Inet { .. } => return false,
    };
    old.iter().any(|(was, _)| match &was.spec {
        Spec::Unix { path: p, .. } | Spec::Fifo { path: p, .. } => p == path,
        Spec::Inet { .. } => false,
    })
}

/// Removes the file at the path of a unix socket or fifo, so it can be
/// made again with new settings.
fn remove_file_listener(spec: &Spec) {
    if let Spec::Unix { path, .. } | Spec::Fifo { path, .. } = spec {
        let _ = std::fs::remove_file(path);
    }
}

/// What the UCSPI variables say about an accepted connection.
fn ends_of(socket: &OwnedFd, unix: bool) -> Option<Ends> {
    if unix {
        let credentials = warden_sys::fdpass::peer_credentials(socket).ok()?;
        return Some(Ends::Unix {
            uid: credentials.uid.as_raw(),
            gid: credentials.gid.as_raw(),
            pid: credentials.pid.as_raw(),
        });
    }
    let address = |storage: SockaddrStorage| {
        storage
            .as_sockaddr_in()
            .map(|v4| std::net::SocketAddr::V4((*v4).into()))
            .or_else(|| {
                storage
                    .as_sockaddr_in6()
                    .map(|v6| std::net::SocketAddr::V6((*v6).into()))
            })
    };
    let remote = address(nix::sys::socket::getpeername(socket.as_raw_fd()).ok()?)?;
    let local = address(nix::sys::socket::getsockname(socket.as_raw_fd()).ok()?)?;
    Some(Ends::Tcp { remote, local })
}
