//! The master: `warden run`.
//!
//! One task on a single-threaded tokio runtime owns every table — services,
//! processes, connections waiting — and reacts to events: a process
//! exited (its pidfd became readable), a notify message, a listener became
//! readable while no process could take the connection, a connection
//! accepted for an inetd service, a control command, a signal, and a round
//! every 100 ms. Helper tasks only watch descriptors and forward events;
//! they never change state. Nothing here blocks on a child: a spawn plan
//! is made on the loop and carried out by the spawner's threads, whose
//! outcome comes back as an event, so accepting and reaping go on while a
//! process executes its program. The round
//! visits only the services on its [`agenda`]: those an event touched,
//! those whose last round left work, and those whose own clock is due, so
//! an idle master's work does not grow with the services configured.
//!
//! The mechanics are here; the decisions — how many processes to start,
//! which idle ones to retire, what an exit means — are asked of a
//! [`Policy`](warden_policy::Policy), Dovecot's built-in one unless plugins
//! say otherwise.
//!
//! Where each concern lives:
//!
//! - this file: the event loop — the events, the handler each goes to, the
//!   round's schedule;
//! - `setup`: the start, and the service table built from a configuration
//!   (in Dovecot's order: log, config, anvil, the rest);
//! - `reload`: the plugins loaded afresh off the event loop, then the
//!   configuration read again and the service table replaced; a
//!   configuration that does not check is refused and the running one
//!   stays;
//! - `life`: a process's life as the master drives it — spawn (and
//!   `starting`, the processes on their way), reports, stops and
//!   continues, exits and the lifecycle policy's decision;
//! - `rounds`: the round — throttles, scaling, the idle kill, gauges;
//! - `stop`: the draining of old processes after a reload, and the staged
//!   stop (the log service last);
//! - `commands`: the control socket's commands;
//! - each interface's dispatch: `listening` (`systemd` and `dovecot`,
//!   whose processes accept: the master watches listeners while none can),
//!   `accept` (`inetd` and the native `warden`, where warden accepts;
//!   PROXY headers, admission, the inetd dispatch) and `native` (the
//!   native handoff, eviction and control channel);
//! - the state, as types with their own transitions and tests: `process`
//!   (a process's life as a state machine), `table` (every process),
//!   `connections` (every handed connection), `service` (what the master
//!   knows of a service), `agenda` (which services the round visits);
//! - around them: `launch` (each interface's spawn plan), `notify`,
//!   `output`, `metrics`, `clients`, `descriptors`, `pid_file`, `plugins`,
//!   `ratelimit`.

mod accept;
mod agenda;
mod clients;
mod commands;
mod connections;
mod descriptors;
mod dovecot;
mod launch;
mod life;
mod listening;
mod metrics;
mod native;
mod notify;
mod output;
mod pid_file;
mod plugins;
mod process;
mod ratelimit;
mod reload;
mod rounds;
mod service;
mod setup;
mod starting;
mod stop;
mod table;

pub use plugins::{Checked, check as check_config, check_plugin, compile_helper, load_plugin};

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use prometheus_client::registry::Registry;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use warden_child::protocol::FromService;
use warden_policy::stats::Event as StatsEvent;
use warden_policy::{Plugins, Recorder, Runtime};

use crate::config::{Config, LoadError, Parsed, Problems};
use crate::control::{Request, Response};
use accept::ACCEPT_BACKOFF;
use agenda::Agenda;
use clients::ControlClients;
use connections::ConnectionTable;
use launch::Connection;
use metrics::Metrics;
use notify::{Message, NotifySocket};
use pid_file::PidFile;
use process::Process;
use ratelimit::LogLimiter;
use reload::Loading;
use service::ServiceState;
use starting::{StartingTable, Ticket};
use table::ProcessTable;

/// How often the master runs its round: prefork, throttles, idle kill,
/// waiting connections, draining.
const ROUND: Duration = Duration::from_millis(100);

/// How long a control client still being answered may delay the exit.
const CONTROL_LINGER: Duration = Duration::from_secs(1);

/// How long a recording that ended waits to be taken (`warden policy
/// record` takes it as it ends) before its calls are dropped.
const RECORDING_KEPT: Duration = Duration::from_secs(60);

/// How many reports from processes not known yet the master holds while
/// processes are on their way; beyond it they are heard at once.
const EARLY_HELD: usize = 256;

/// How many stderr tails the master holds for exits not heard yet.
const TAILS_HELD: usize = 64;

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
    /// How each log line is written.
    pub log_format: crate::logging::Format,
}

/// Why the master could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration file cannot be read.
    #[error(transparent)]
    Unreadable(LoadError),
    /// The configuration has problems, every one of them.
    #[error("{0}")]
    Config(Problems),
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
    /// The spawner started a process, or could not.
    Spawned {
        /// The ticket [`Master::spawn`] handed the plan over with.
        ticket: Ticket,
        /// The process, or why it could not start.
        outcome: Result<warden_sys::Child, warden_sys::SpawnError>,
    },
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
    /// A `dovecot`-interface process wrote a status record.
    Status(dovecot::Status),
    /// A process's stderr closed: its last lines.
    StderrTail {
        /// The process.
        pid: i32,
        /// Its last [`output::TAIL`] lines, oldest first.
        lines: Vec<String>,
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

/// Runs the master until it is stopped.
pub fn run(options: &Options) -> Result<(), RunError> {
    // Before any thread starts: see warden_sys::memory.
    let one_heap = warden_sys::memory::one_heap();
    // Read and parsed once, here, so that a value that does not read is
    // reported on the terminal before daemonizing; the plugins' defaults,
    // and how the settings combine, are checked once logging is set up.
    let parsed = Parsed::read(&options.config).map_err(|error| match error {
        LoadError::Problems(problems) => RunError::Config(problems),
        LoadError::Read { .. } => RunError::Unreadable(error),
    })?;
    parsed.written().map_err(RunError::Config)?;
    if let Some(pid_file) = &options.pid_file {
        pid_file::ensure_free(pid_file)?;
    }
    if options.daemonize {
        warden_sys::daemon::daemonize().map_err(|e| RunError::start("cannot daemonize", e))?;
    } else if warden_sys::init::is_pid1() {
        // A container's first process: an init stays PID 1, reaping what
        // is re-parented to it, and this process goes on as the master.
        warden_sys::init::become_init().map_err(|e| {
            RunError::start(
                "cannot fork the init that stands in front of the master as PID 1; \
                     give the container an init of its own (docker run --init)",
                e,
            )
        })?;
    }
    crate::logging::init(options.log_file.as_deref(), options.log_format)
        .map_err(|e| RunError::start("cannot open the log file", e))?;
    crate::logging::log_panics();
    if !one_heap {
        tracing::debug!("the allocator keeps a heap per thread");
    }
    descriptors::raise_limit();
    // Removed when `run` returns, or unwinds, if it still holds our pid.
    let _pid_file = options
        .pid_file
        .as_deref()
        .map(PidFile::write)
        .transpose()?;
    // Before any thread starts: see `ChildSignals`.
    let child_signals =
        warden_sys::ChildSignals::new().map_err(|e| RunError::start("cannot handle signals", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::start("cannot start the event loop", e))?;
    runtime.block_on(async {
        // Heard from before the control socket exists: a `warden stop`
        // (or a SIGTERM) the moment the master answers is a stop, not a
        // signal's default end.
        let signals = Signals::listen(child_signals)?;
        let mut master = Master::start(options.config.clone(), parsed).await?;
        // Every handler is in place: the signals' above, the plugin
        // runtime's (its traps), the C library's (its threads) and the
        // standard library's.
        let noted = warden_sys::spawn::note_signal_dispositions();
        tracing::debug!("children reset the signals the master catches or ignores: {noted:016x}");
        master.release_unused_memory();
        master.serve(signals).await
    })
}

/// The signals the master acts on.
struct Signals {
    /// SIGHUP: reload.
    hangup: Signal,
    /// SIGTERM: stop.
    terminate: Signal,
    /// SIGINT: stop.
    interrupt: Signal,
    /// SIGUSR1: reopen the log file.
    user1: Signal,
    /// SIGCHLD: exits come through each process's pidfd; this is heard
    /// for the stops and continues, which a pidfd does not tell.
    child: AsyncFd<warden_sys::ChildSignals>,
}

impl Signals {
    /// Starts hearing them, in place of their default actions; SIGCHLD
    /// through `child`.
    fn listen(child: warden_sys::ChildSignals) -> Result<Signals, RunError> {
        let heard = |kind| signal(kind).map_err(|e| RunError::start("cannot handle signals", e));
        Ok(Signals {
            hangup: heard(SignalKind::hangup())?,
            terminate: heard(SignalKind::terminate())?,
            interrupt: heard(SignalKind::interrupt())?,
            user1: heard(SignalKind::user_defined1())?,
            child: warden_sys::watch::async_child_signals(child)
                .map_err(|e| RunError::start("cannot handle signals", e))?,
        })
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
    /// Processes handed to the spawner that have not started yet.
    starting: StartingTable,
    /// The threads that start processes, so the event loop never waits
    /// for an exec; kept for the master's life, as the parent-death signal
    /// of each child follows the thread that started it.
    spawner: warden_sys::Spawner<Ticket>,
    /// Reports from processes the master does not know yet: a process may
    /// speak before the spawner's word that it started has arrived. Held
    /// until then (at most [`EARLY_HELD`]).
    early: Vec<Event>,
    /// The last stderr lines of processes whose pipe closed before their
    /// exit was heard, until it is (at most [`TAILS_HELD`]).
    tails: VecDeque<(i32, Vec<String>)>,
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
    /// The plugins, asked for every decision; a service's calls are
    /// recorded while `warden policy record` asks.
    policy: Recorder<Plugins>,
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
    /// Anvil's pipes, from when a `dovecot`-interface anvil service is
    /// first set up, kept across reloads as anvil is.
    anvil: Option<dovecot::Anvil>,
    /// Why the host should get no traffic now, for `/ready`.
    unready: metrics::Unready,
    /// The pipes of Dovecot's `log` service, from when one is first set
    /// up, kept for the master's life.
    log_pipes: Option<dovecot::LogPipes>,
    /// The reader of the FIFO Dovecot's `auth` opens at start, when no
    /// service provides it.
    old_stats: Option<tokio::task::JoinHandle<()>>,
    /// The `GENERATION` the next `dovecot`-interface process gets.
    next_dovecot_generation: u32,
}

impl Drop for Master {
    fn drop(&mut self) {
        for task in self.tasks.drain(..).chain(self.old_stats.take()) {
            task.abort();
        }
    }
}

impl Master {
    /// Lets what only starting up or loading plugins used leave the
    /// master's resident memory: the code it ran, its own and the
    /// plugins', and the heap it freed (see [`warden_sys::memory`]).
    /// Called once the master serves, and after each plugin load, on the
    /// event loop, which owns the plugins, while no load runs.
    fn release_unused_memory(&self) {
        let trimmed = warden_sys::memory::trim_heap();
        let compiled = self.runtime.compiled_dir();
        match warden_sys::memory::release_code(compiled.as_deref()) {
            Ok(bytes) => tracing::debug!(
                bytes,
                trimmed,
                "code and heap used only to load released; code comes back as it runs"
            ),
            Err(error) => tracing::debug!(%error, trimmed, "the code used to load stays resident"),
        }
    }

    /// The event loop, hearing `signals`.
    async fn serve(&mut self, signals: Signals) -> Result<(), RunError> {
        let Signals {
            mut hangup,
            mut terminate,
            mut interrupt,
            mut user1,
            child,
        } = signals;
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
                Ok(mut ready) = child.readable() => {
                    ready.clear_ready();
                    if child.get_ref().take() {
                        self.stops_changed();
                    }
                }
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
            Event::Status(status) => self.processes.place(status.pid),
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
            // A new plugin set resets the whole agenda when it is installed;
            // a started process touches its service when it is taken in.
            Event::Spawned { .. }
            | Event::StderrTail { .. }
            | Event::PluginsLoaded(_)
            | Event::ControlClient(_)
            | Event::Control { .. } => None,
        }
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Spawned { ticket, outcome } => {
                self.starting.arrived(ticket, outcome);
                while let Some((ticket, starting, outcome)) = self.starting.next_arrived() {
                    self.spawned(ticket, starting, outcome);
                }
                // Whatever its process said before the word came is heard now.
                for early in std::mem::take(&mut self.early) {
                    self.handle(early);
                }
            }
            Event::Exited { pid } => self.exited(pid),
            Event::Notify { pid, message } if self.too_early(pid.as_raw()) => {
                self.early.push(Event::Notify { pid, message });
            }
            Event::Notify { pid, message } => self.notified(pid, message),
            Event::Status(status) if self.too_early(status.pid) => {
                self.early.push(Event::Status(status));
            }
            Event::Status(status) => self.status(status),
            Event::StderrTail { pid, lines } => self.stderr_tail(pid, lines),
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

    /// The last stderr lines of `pid`, whose pipe closed: given to its
    /// exit, or held until the exit is heard.
    fn stderr_tail(&mut self, pid: i32, lines: Vec<String>) {
        let exit = self
            .services
            .iter_mut()
            .flat_map(|s| s.last_exits.iter_mut())
            .find(|exit| exit.pid == pid && exit.stderr.is_empty());
        match exit {
            Some(exit) => exit.stderr = lines,
            None if self.processes.get(pid).is_some() => {
                if self.tails.len() == TAILS_HELD {
                    self.tails.pop_front();
                }
                self.tails.push_back((pid, lines));
            }
            // An exit warden asked for, which is not shown.
            None => {}
        }
    }

    /// Whether a report from `pid` may come from a process the spawner has
    /// started and not told of yet: no process has that pid, some are on
    /// their way, and the reports held are not too many (a stranger's
    /// flood is not held).
    fn too_early(&self, pid: i32) -> bool {
        !self.starting.is_empty()
            && self.processes.slot(pid).is_none()
            && self.early.len() < EARLY_HELD
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
        self.policy.expire(now, RECORDING_KEPT);
    }
}
