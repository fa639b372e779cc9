//! `warden`: the command line of the supervisor.
//!
//! `main` parses the arguments, runs one subcommand and maps its outcome to
//! an exit code from the table in `--help`. It owns no logic of its own: the
//! configuration lives in [`warden::config`], the master in
//! [`warden::master`], the control protocol in [`warden::control`]; each
//! subcommand that needs a part not built yet says so plainly.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use warden::config::{self, Config, LoadError};
use warden::control::{self, Request, Response};
use warden::harness::{ReplayError, ScenarioError};
use warden::master;

/// Exit codes, shown after `--help` and listed in the README.
const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   the command failed while running
  2   the command line is wrong (unknown option, unknown service)
  66  the configuration file cannot be read
  69  the command is not available in this version of warden, or the
      running master cannot be reached
  78  the configuration has problems (all of them are printed)";

/// The default configuration file, unless `-c` or `WARDEN_CONFIG` names another.
const DEFAULT_CONFIG: &str = "/etc/warden/warden.toml";

/// A service supervisor in the mould of Dovecot's master process, whose
/// decisions are made by sandboxed WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "warden", version, after_help = EXIT_CODES)]
struct Cli {
    /// The configuration file.
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "WARDEN_CONFIG",
        default_value = DEFAULT_CONFIG,
        value_name = "FILE"
    )]
    config: PathBuf,

    /// The running master's control socket, for the control commands;
    /// by default the one the configuration names.
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Print the answers of the control commands and of `config` as JSON,
    /// for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the supervisor in the foreground.
    Run {
        /// Detach from the terminal and run in the background (needs --log-file).
        #[arg(long, requires = "log_file")]
        daemonize: bool,
        /// Write the master's pid to this file.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Log to this file instead of stderr; SIGUSR1 reopens it.
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
        /// How each log line is written: `text`, or `json` (one object a
        /// line, for a log shipper).
        #[arg(long, value_enum, default_value_t = warden::logging::Format::Text, env = "WARDEN_LOG_FORMAT")]
        log_format: warden::logging::Format,
    },
    /// Check the configuration and report every problem in it; start nothing.
    /// With --plugin, check one plugin component instead.
    Check {
        /// Load, link and check this `.wasm` against warden's contract, as
        /// the master would, outside plugins_dir.
        #[arg(long, value_name = "FILE")]
        plugin: Option<PathBuf>,
    },
    /// Print the effective configuration, each setting with where it came
    /// from; with KEY, only that setting.
    Config {
        /// One setting: a global (`default_process_limit`) or a service's
        /// (`service.imap-login.process_limit`), as `doveconf KEY`.
        #[arg(conflicts_with_all = ["service", "written"])]
        key: Option<String>,
        /// Print only this service.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
        /// Print only what the file writes, as `doveconf -n` prints only
        /// what differs from the defaults.
        #[arg(short = 'n', long = "written")]
        written: bool,
    },
    /// Show the running supervisor's services and their state; with a
    /// service, also why it was throttled and its last exits.
    Status {
        /// Only this service, in detail.
        service: Option<String>,
    },
    /// List the running processes, of every service or of one.
    Ps {
        /// Only this service's processes.
        service: Option<String>,
    },
    /// A live view of the running supervisor: every service's processes,
    /// clients and rates, and the selected one's processes and plugins
    /// (↑↓ select, s sorts, q quits). Plain text, a frame a refresh, when
    /// standard output is not a terminal.
    Top {
        /// Seconds between refreshes.
        #[arg(long, default_value_t = 1.0, value_name = "SECONDS")]
        interval: f64,
        /// Stop after this many frames.
        #[arg(long, value_name = "N")]
        frames: Option<u64>,
    },
    /// Make the running supervisor reload its configuration.
    Reload,
    /// Stop the running supervisor and every service, and wait until it
    /// has stopped (so it can serve as a unit's ExecStop=); or, with a
    /// service, stop only that one until `warden start SERVICE`.
    Stop {
        /// Only this service: its processes finish their clients and
        /// exit, its listeners stay open.
        service: Option<String>,
        /// Return as soon as the stop has begun.
        #[arg(long)]
        no_wait: bool,
    },
    /// Start a service `warden stop SERVICE` stopped.
    Start {
        /// The service.
        service: String,
    },
    /// Replace a service's processes: each finishes its clients and exits
    /// while new ones take the connections; the other services are left be.
    Restart {
        /// The service.
        service: String,
    },
    /// Ask a process to stop (SIGTERM), by pid; or, with --connection,
    /// close connections of native-interface services.
    Kick {
        /// The process id, as `warden ps` shows it.
        #[arg(required_unless_present = "connection", conflicts_with = "connection")]
        pid: Option<i32>,
        /// A connection id, or a peer address whose every connection is
        /// closed, as `warden who` shows them.
        #[arg(long, value_name = "ID|ADDRESS")]
        connection: Option<String>,
    },
    /// List the connections the supervisor sees.
    Who {
        /// Only this service's connections.
        service: Option<String>,
    },
    /// Print every metric (the master's and the plugins'), as the metrics
    /// endpoint serves them.
    Stats,
    /// List the loaded policy plugins, their hooks and their health.
    Plugins,
    /// Print a completion script for SHELL (bash, zsh, fish, elvish,
    /// powershell): `warden completions bash > /etc/bash_completion.d/warden`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print warden's manual page (roff): `warden manual > warden.1`.
    Manual,
    /// Write the warden configuration equivalent to a Dovecot
    /// configuration's services and master settings.
    Import {
        /// The Dovecot configuration: dovecot.conf (its includes are read
        /// too) or the output of `doveconf -n`.
        #[arg(default_value = "/etc/dovecot/dovecot.conf")]
        dovecot_conf: PathBuf,
        /// Write the configuration here instead of to standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Test policy plugins before deploying them, against scenarios
    /// written by hand or recorded from a running master.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Compile plugin components into the plugin cache: the master's
    /// helper, so that compiling never happens in the master.
    #[command(hide = true)]
    CompilePlugins {
        /// The plugin cache.
        #[arg(long, value_name = "DIR")]
        cache: PathBuf,
        /// A built-in plugin to compile, by name.
        #[arg(long = "builtin", value_name = "NAME")]
        builtins: Vec<String>,
        /// Component files to compile.
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Replay a scenario against a plugin and report each decision: PLUGIN
    /// SCENARIO, or with --compare OLD NEW SCENARIO.
    Test {
        /// Show where two plugins decide differently on the scenario,
        /// instead of checking its expectations.
        #[arg(long)]
        compare: bool,
        /// The plugin component (a `.wasm` file), or the old and the new
        /// one with --compare, then the scenario (a TOML file: the service,
        /// and the calls with what each must answer).
        #[arg(required = true, num_args = 2..=3, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Record the policy calls a running master makes for one service,
    /// and the answers it acts on, as a scenario: replayed with `policy
    /// test` against a new plugin, it shows where the plugin would decide
    /// otherwise.
    Record {
        /// The service.
        service: String,
        /// How long to record.
        #[arg(long, default_value_t = 10, value_name = "N")]
        seconds: u64,
        /// Write the scenario here instead of to standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// How a subcommand ended, as an exit code.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Success = 0,
    Failed = 1,
    Usage = 2,
    NoInput = 66,
    Unavailable = 69,
    BadConfig = 78,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Check { plugin: None } => check(&cli.config),
        Command::Check {
            plugin: Some(plugin),
        } => check_plugin(plugin),
        Command::CompilePlugins {
            cache,
            builtins,
            files,
        } => match master::compile_helper(cache, builtins, files) {
            Ok(()) => Outcome::Success,
            Err(error) => {
                eprintln!("warden compile-plugins: {error}");
                Outcome::Failed
            }
        },
        Command::Config { key: Some(key), .. } => show_key(&cli.config, key, cli.json),
        Command::Config {
            service, written, ..
        } => {
            let shown = if *written {
                config::Shown::Written
            } else {
                config::Shown::All
            };
            show(&cli.config, service.as_deref(), shown, cli.json)
        }
        Command::Run {
            daemonize,
            pid_file,
            log_file,
            log_format,
        } => {
            // A daemon leaves its working directory for `/`: every path it
            // was given is made absolute first, against where it started.
            let absolute =
                |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            run(&master::Options {
                config: absolute(&cli.config),
                daemonize: *daemonize,
                pid_file: pid_file.as_deref().map(absolute),
                log_file: log_file.as_deref().map(absolute),
                log_format: *log_format,
            })
        }
        Command::Status { service } => ask_with(&cli, &Request::Status, |response| {
            one_service(response, service.as_deref())
        }),
        Command::Ps { service } => ask(
            &cli,
            &Request::Ps {
                service: service.clone(),
            },
        ),
        Command::Top { interval, frames } => top(&cli, *interval, *frames),
        Command::Reload => ask(&cli, &Request::Reload),
        Command::Stop {
            service: Some(service),
            ..
        } => ask(
            &cli,
            &Request::StopService {
                service: service.clone(),
            },
        ),
        Command::Stop {
            service: None,
            no_wait,
        } => stop(&cli, *no_wait),
        Command::Start { service } => ask(
            &cli,
            &Request::StartService {
                service: service.clone(),
            },
        ),
        Command::Restart { service } => ask(
            &cli,
            &Request::RestartService {
                service: service.clone(),
            },
        ),
        Command::Kick {
            connection: Some(target),
            ..
        } => ask(
            &cli,
            &Request::KickConnection {
                target: target.clone(),
            },
        ),
        Command::Kick { pid, .. } => ask(
            &cli,
            &Request::Kick {
                pid: pid.unwrap_or_default(),
            },
        ),
        Command::Who { service } => ask(
            &cli,
            &Request::Who {
                service: service.clone(),
            },
        ),
        Command::Stats => ask(&cli, &Request::Stats),
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "warden",
                &mut std::io::stdout(),
            );
            Outcome::Success
        }
        Command::Manual => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => Outcome::Success,
                // A closed pipe (`warden manual | head`) is not a failure.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
                Err(error) => {
                    eprintln!("warden manual: {error}");
                    Outcome::Failed
                }
            }
        }
        Command::Import {
            dovecot_conf,
            output,
        } => import(dovecot_conf, output.as_deref()),
        Command::Plugins => ask(&cli, &Request::Plugins),
        Command::Policy {
            command: PolicyCommand::Test { compare, files },
        } => policy_test(*compare, files),
        Command::Policy {
            command:
                PolicyCommand::Record {
                    service,
                    seconds,
                    output,
                },
        } => policy_record(&cli, service, *seconds, output.as_deref()),
    };
    ExitCode::from(outcome as u8)
}

/// `warden policy test`: replays a scenario against a plugin, or against
/// two with `compare`, and reports every decision.
fn policy_test(compare: bool, files: &[PathBuf]) -> Outcome {
    let (plugins, scenario) = match (compare, files) {
        (false, [plugin, scenario]) => (vec![plugin], scenario),
        (true, [old, new, scenario]) => (vec![old, new], scenario),
        (false, _) => {
            eprintln!("warden policy test: give PLUGIN SCENARIO (or --compare OLD NEW SCENARIO)");
            return Outcome::Usage;
        }
        (true, _) => {
            eprintln!("warden policy test --compare: give OLD NEW SCENARIO");
            return Outcome::Usage;
        }
    };
    // The plugins' log lines and output go to stderr as they come.
    let _ = warden::logging::init(None, warden::logging::Format::Text);
    let mut runs = Vec::new();
    for plugin in plugins {
        match warden::harness::replay(plugin, scenario) {
            Ok(outcomes) => runs.push(outcomes),
            Err(ReplayError::Scenario(error @ ScenarioError::Read { .. })) => {
                eprintln!("warden policy test: {error}");
                return Outcome::NoInput;
            }
            Err(error) => {
                eprintln!("{error}");
                return Outcome::BadConfig;
            }
        }
    }
    match runs.as_slice() {
        [outcomes] => {
            print!("{}", warden::harness::report(outcomes));
            if outcomes.iter().any(|o| !o.passed()) {
                Outcome::Failed
            } else {
                Outcome::Success
            }
        }
        [old, new] => {
            let differences = warden::harness::compare(old, new);
            for line in &differences {
                println!("{line}");
            }
            println!(
                "{} steps, {} decided differently or failed",
                old.len(),
                differences.len()
            );
            if differences.is_empty() {
                Outcome::Success
            } else {
                Outcome::Failed
            }
        }
        _ => Outcome::Usage,
    }
}

/// `warden policy record`: asks the running master to record `service`'s
/// policy calls for `seconds`, waits, and writes the scenario.
fn policy_record(cli: &Cli, service: &str, seconds: u64, output: Option<&Path>) -> Outcome {
    let socket = match control_socket(cli) {
        Ok(socket) => socket,
        Err(error) => return load_failed(&error),
    };
    let asked = |request: &Request| match control::request(&socket, request) {
        Ok(Response::Failed { message }) => {
            eprintln!("warden policy record: {message}");
            Err(Outcome::Failed)
        }
        Ok(unknown @ Response::UnknownService { .. }) => {
            eprint!("warden policy record: {}", show_response(&unknown));
            Err(Outcome::Usage)
        }
        Ok(response) => Ok(response),
        Err(error) => {
            eprintln!("warden policy record: {}", warden::error_chain(&error));
            Err(Outcome::Unavailable)
        }
    };
    let service = service.to_owned();
    if let Err(outcome) = asked(&Request::Record {
        service: service.clone(),
        seconds,
    }) {
        return outcome;
    }
    eprintln!("warden policy record: recording the policy calls of {service} for {seconds} s");
    std::thread::sleep(std::time::Duration::from_secs(seconds));
    let (scenario, calls, dropped) = match asked(&Request::Recorded {
        service: service.clone(),
    }) {
        Ok(Response::Recording {
            scenario,
            calls,
            dropped,
        }) => (scenario, calls, dropped),
        Ok(other) => {
            eprintln!(
                "warden policy record: unexpected answer: {}",
                show_response(&other)
            );
            return Outcome::Failed;
        }
        Err(outcome) => return outcome,
    };
    if dropped > 0 {
        eprintln!(
            "warden policy record: the recording was full; the last {dropped} calls are not in it (record for less time)"
        );
    }
    match output {
        None => {
            print!("{scenario}");
            eprintln!("warden policy record: {calls} calls of {service} recorded");
            Outcome::Success
        }
        Some(path) => match std::fs::write(path, scenario) {
            Ok(()) => {
                eprintln!(
                    "warden policy record: {calls} calls of {service} recorded in {}; replay them with warden policy test PLUGIN.wasm {}",
                    path.display(),
                    path.display()
                );
                Outcome::Success
            }
            Err(error) => {
                eprintln!(
                    "warden policy record: cannot write {}: {error}",
                    path.display()
                );
                Outcome::Failed
            }
        },
    }
}

/// Writes the warden configuration for the Dovecot configuration at
/// `dovecot_conf`, to `output` or standard output.
fn import(dovecot_conf: &Path, output: Option<&Path>) -> Outcome {
    let text = match warden::import::import(dovecot_conf, &|binary| binary.exists()) {
        Ok(text) => text,
        Err(error @ warden::import::ImportError::Read { .. }) => {
            eprintln!("warden import: {error}; give the path of dovecot.conf");
            return Outcome::NoInput;
        }
        Err(error) => {
            eprintln!("warden import: {error}");
            return Outcome::BadConfig;
        }
    };
    match output {
        None => {
            print!("{text}");
            Outcome::Success
        }
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!(
                    "wrote {}; check it with warden check -c {}",
                    path.display(),
                    path.display()
                );
                Outcome::Success
            }
            Err(error) => {
                eprintln!("warden import: cannot write {}: {error}", path.display());
                Outcome::Failed
            }
        },
    }
}

/// Runs the master in the foreground until it is stopped.
fn run(options: &master::Options) -> Outcome {
    match master::run(options) {
        Ok(()) => Outcome::Success,
        Err(master::RunError::Unreadable(error)) => load_failed(&error),
        Err(master::RunError::Config(problems)) => {
            eprintln!("{problems}");
            Outcome::BadConfig
        }
        Err(error) => {
            eprintln!("warden run: {}", warden::error_chain(&error));
            Outcome::Failed
        }
    }
}

/// Sends `request` to the running master named by the configuration's
/// control socket, and prints its answer.
fn ask(cli: &Cli, request: &Request) -> Outcome {
    ask_with(cli, request, |response| response)
}

/// Like [`ask`], with the answer shaped by `shape` before it is shown.
fn ask_with(cli: &Cli, request: &Request, shape: impl FnOnce(Response) -> Response) -> Outcome {
    let socket = match control_socket(cli) {
        Ok(socket) => socket,
        Err(error) => return load_failed(&error),
    };
    match control::request(&socket, request).map(shape) {
        Ok(Response::Failed { message }) => {
            eprintln!("warden: {message}");
            Outcome::Failed
        }
        Ok(unknown @ Response::UnknownService { .. }) => {
            eprint!("warden: {}", show_response(&unknown));
            Outcome::Usage
        }
        Ok(response) if cli.json => match serde_json::to_string_pretty(&response) {
            Ok(json) => {
                println!("{json}");
                Outcome::Success
            }
            Err(error) => {
                eprintln!("warden: cannot write the answer as JSON: {error}");
                Outcome::Failed
            }
        },
        Ok(response) => {
            print!("{}", show_response(&response));
            Outcome::Success
        }
        Err(error) => {
            eprintln!("warden: {}", warden::error_chain(&error));
            Outcome::Unavailable
        }
    }
}

/// `warden top`: the live view, every `interval` seconds.
fn top(cli: &Cli, interval: f64, frames: Option<u64>) -> Outcome {
    let interval = match std::time::Duration::try_from_secs_f64(interval) {
        Ok(interval) if interval >= std::time::Duration::from_millis(100) => interval,
        _ => {
            eprintln!(
                "warden top: --interval {interval} is not a number of seconds of at least 0.1"
            );
            return Outcome::Usage;
        }
    };
    let socket = match control_socket(cli) {
        Ok(socket) => socket,
        Err(error) => return load_failed(&error),
    };
    let options = warden::top::Options {
        socket,
        interval,
        frames,
    };
    match warden::top::run(&options) {
        Ok(()) => Outcome::Success,
        Err(error @ warden::top::TopError::Unreachable(_)) => {
            eprintln!("warden top: {}", warden::error_chain(&error));
            Outcome::Unavailable
        }
        Err(error) => {
            eprintln!("warden top: {}", warden::error_chain(&error));
            Outcome::Failed
        }
    }
}

/// `warden status SERVICE`: the status of `service` alone, or that there
/// is no such service.
fn one_service(response: Response, service: Option<&str>) -> Response {
    match (response, service) {
        (Response::Status { services }, Some(name)) => {
            match services.iter().find(|s| s.name == name) {
                Some(found) => Response::Status {
                    services: vec![found.clone()],
                },
                None => Response::UnknownService {
                    name: name.to_owned(),
                    services: services.into_iter().map(|s| s.name).collect(),
                },
            }
        }
        (response, _) => response,
    }
}

/// The running master's control socket: `--socket`, or the one the
/// configuration names. Only the globals matter, which plugins never
/// supply; and when something else in the file has problems (an edit not
/// yet reloaded, which the running master does not have), the socket is
/// still read from its `base_dir` and `control_socket` alone: in a file
/// that does not even read as TOML, from the lines that write them, or
/// the default.
fn control_socket(cli: &Cli) -> Result<PathBuf, LoadError> {
    if let Some(socket) = &cli.socket {
        return Ok(socket.clone());
    }
    let path = &cli.config;
    let error = match Config::load(path) {
        Ok(config) => return Ok(config.globals.control_socket.value),
        Err(error @ LoadError::Read { .. }) => return Err(error),
        Err(error) => error,
    };
    let Ok(text) = std::fs::read_to_string(path) else {
        return Err(error);
    };
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        // Not TOML at all (an edit half done): the two settings are read
        // off the lines before the first table that write them, each
        // line on its own; without them, the default socket is asked.
        Err(_) => {
            let globals = text
                .lines()
                .take_while(|line| !line.trim_start().starts_with('['))
                .filter(|line| {
                    let line = line.trim_start();
                    line.starts_with("base_dir") || line.starts_with("control_socket")
                })
                .filter_map(|line| line.parse::<toml::Table>().ok())
                .fold(toml::Table::new(), |mut globals, line| {
                    globals.extend(line);
                    globals
                });
            eprintln!(
                "warden: {} does not read as TOML (`warden check` says where); asking the master at the control socket its first lines name",
                path.display()
            );
            globals
        }
    };
    let globals: toml::Table = ["base_dir", "control_socket"]
        .into_iter()
        .filter_map(|key| table.get(key).map(|value| (key.to_owned(), value.clone())))
        .collect();
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|absolute| absolute.parent().map(Path::to_owned));
    Config::parse_in(
        &path.display().to_string(),
        dir.as_deref(),
        &globals.to_string(),
    )
    .map(|config| config.globals.control_socket.value)
    .map_err(|_| error)
}

/// Stops the running master and, unless `no_wait`, waits until its
/// control socket is gone: every service stopped, the log service last.
fn stop(cli: &Cli, no_wait: bool) -> Outcome {
    // The master, by the credentials of its end of the control socket,
    // asked before the stop: afterwards the socket is gone.
    let master = control_socket(cli)
        .ok()
        .and_then(|socket| master_pid(&socket));
    let asked = ask(cli, &Request::Stop);
    if no_wait || !matches!(asked, Outcome::Success) {
        return asked;
    }
    let Some(master) = master else {
        return asked;
    };
    // Twice the grace (SIGTERM, then SIGKILL) for the services, then the
    // log service's own, and a margin.
    let grace = Config::load(&cli.config).map_or(std::time::Duration::from_secs(6), |config| {
        config.globals.shutdown_grace.value.to_std()
    });
    let patience = grace * 4 + std::time::Duration::from_secs(5);
    let started = std::time::Instant::now();
    let deadline = started + patience;
    let mut next_word = started + STOP_QUIET;
    let mut waiting_for = String::new();
    while std::time::Instant::now() < deadline {
        if !runs(master) {
            println!("stopped");
            return Outcome::Success;
        }
        // A stop that takes a while says what it still waits for, each
        // time that changes; the master answers until its last process
        // is gone.
        if std::time::Instant::now() >= next_word {
            next_word += std::time::Duration::from_secs(1);
            let left = control_socket(cli)
                .ok()
                .and_then(|socket| control::request(&socket, &Request::Status).ok())
                .map(|response| still_running(&response))
                .unwrap_or_default();
            if !left.is_empty() && left != waiting_for {
                eprintln!(
                    "warden stop: after {}s, still waiting for {left}",
                    started.elapsed().as_secs()
                );
                waiting_for = left;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    eprintln!(
        "warden stop: the master (pid {master}) is still stopping after {}s; see its log",
        patience.as_secs()
    );
    Outcome::Failed
}

/// How long `warden stop` waits quietly before it says what it waits for.
const STOP_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// The services of a status answer that still have processes, with how
/// many: `imap (3 processes), log (1 process)`.
fn still_running(response: &Response) -> String {
    let Response::Status { services } = response else {
        return String::new();
    };
    services
        .iter()
        .filter(|s| s.processes > 0)
        .map(|s| {
            let plural = if s.processes == 1 { "" } else { "es" };
            format!("{} ({} process{plural})", s.name, s.processes)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The pid of the process listening on the control socket at `socket`.
fn master_pid(socket: &Path) -> Option<i32> {
    let stream = std::os::unix::net::UnixStream::connect(socket).ok()?;
    nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|credentials| credentials.pid())
}

/// Whether process `pid` still runs: it exists and has not exited (a
/// zombie its parent has not collected has).
fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.starts_with(" Z"))
    })
}

/// A person's view of the master's answer.
fn show_response(response: &Response) -> String {
    let mut out = String::new();
    match response {
        Response::Status { services } => {
            out.push_str(&format!(
                "{:<20} {:>9} {:>9} {:>7} {:>9} {:>7} {:>7}  {}\n",
                "SERVICE",
                "PROCESSES",
                "AVAILABLE",
                "CLIENTS",
                "LISTENING",
                "SPAWNS",
                "DROPPED",
                "STATE"
            ));
            for s in services {
                out.push_str(&format!(
                    "{:<20} {:>4}/{:<4} {:>9} {:>7} {:>9} {:>7} {:>7}  {}\n",
                    s.name,
                    s.processes,
                    s.process_limit,
                    s.available,
                    s.clients,
                    if s.listening { "yes" } else { "no" },
                    s.spawns,
                    s.dropped,
                    s.state()
                ));
            }
            // One service: why it is throttled, and how its processes ended.
            if let [one] = services.as_slice() {
                if let Some(reason) = &one.throttle_reason {
                    out.push_str(&format!("last throttled: {reason}\n"));
                }
                if !one.last_exits.is_empty() {
                    out.push_str("last exits:\n");
                }
                for exit in &one.last_exits {
                    out.push_str(&format!(
                        "  process {} {}, {}s ago\n",
                        exit.pid, exit.how, exit.secs_ago
                    ));
                    for line in &exit.stderr {
                        out.push_str(&format!("    | {line}\n"));
                    }
                }
            }
        }
        Response::Ps { processes } => {
            out.push_str(&format!(
                "{:<20} {:>8} {:<14} {:>7} {:>8}  {}\n",
                "SERVICE", "PID", "STATE", "CLIENTS", "AGE", "STATUS"
            ));
            for p in processes {
                let clients = p.clients.map_or("-".to_owned(), |c| c.to_string());
                out.push_str(&format!(
                    "{:<20} {:>8} {:<14} {:>7} {:>7}s  {}\n",
                    p.service,
                    p.pid,
                    p.state,
                    clients,
                    p.age_secs,
                    p.status.as_deref().unwrap_or("")
                ));
            }
        }
        Response::Connections { connections } => {
            out.push_str(&format!(
                "{:>6} {:<20} {:>8} {:<12} {:<40} {:>6}  {}\n",
                "ID", "SERVICE", "PID", "LISTENER", "PEER", "AGE", "STATE"
            ));
            for c in connections {
                out.push_str(&format!(
                    "{:>6} {:<20} {:>8} {:<12} {:<40} {:>5}s  {}\n",
                    c.id, c.service, c.pid, c.listener, c.peer, c.age_secs, c.state
                ));
            }
        }
        Response::Plugins { plugins } => {
            let rows: Vec<[String; 9]> = plugins
                .iter()
                .map(|p| {
                    let origin = match &p.sha256 {
                        Some(sha) => {
                            format!("{} (sha256 {})", p.origin, sha.get(..16).unwrap_or(sha))
                        }
                        None => p.origin.clone(),
                    };
                    let state = if p.quarantined { "  QUARANTINED" } else { "" };
                    [
                        p.name.clone(),
                        p.version.clone(),
                        p.services.join(","),
                        p.hooks.join(","),
                        p.calls.to_string(),
                        p.failures.to_string(),
                        format!("{}us", p.mean_us),
                        format!("{}us", p.p99_us),
                        format!("{origin}{state}"),
                    ]
                })
                .collect();
            let head = [
                "PLUGIN", "VERSION", "SERVICES", "HOOKS", "CALLS", "FAILURES", "MEAN", "P99",
                "ORIGIN",
            ]
            .map(str::to_owned);
            let mut widths = [0usize; 9];
            for row in std::iter::once(&head).chain(&rows) {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.len());
                }
            }
            for row in std::iter::once(&head).chain(&rows) {
                let mut line = String::new();
                for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
                    match column {
                        8 => line.push_str(cell),
                        4..=7 => line.push_str(&format!("{cell:>width$}  ")),
                        _ => line.push_str(&format!("{cell:<width$}  ")),
                    }
                }
                out.push_str(line.trim_end());
                out.push('\n');
            }
            let called: Vec<(&str, &control::HookStatus)> = plugins
                .iter()
                .flat_map(|p| p.hook_times.iter().map(|h| (p.name.as_str(), h)))
                .collect();
            if !called.is_empty() {
                out.push_str("\nhooks called since each plugin was loaded:\n");
            }
            for (plugin, hook) in called {
                let p99 = hook
                    .p99_at_most_us
                    .map_or_else(|| "over 100000us".to_owned(), |us| format!("within {us}us"));
                out.push_str(&format!(
                    "  {plugin} {}: {} calls, {} failed, mean {}us, 99% {p99}\n",
                    hook.hook, hook.calls, hook.failures, hook.mean_us
                ));
            }
        }
        Response::Stats { text } => out.push_str(text),
        Response::Recording { scenario, .. } => out.push_str(scenario),
        Response::Done { message } | Response::Failed { message } => {
            out.push_str(message);
            out.push('\n');
        }
        Response::UnknownService { name, services } => {
            out.push_str(&format!(
                "there is no service {name:?} in the running configuration; the services are: {}\n",
                services.join(", ")
            ));
        }
    }
    out
}

/// Reads the configuration with its plugins' defaults, printing why when
/// it cannot.
fn load(path: &Path) -> Result<master::Checked, Outcome> {
    master::check_config(path).map_err(|error| load_failed(&error))
}

/// Prints why the configuration cannot be read, and the outcome.
fn load_failed(error: &LoadError) -> Outcome {
    eprintln!("{error}");
    match error {
        LoadError::Read { .. } => Outcome::NoInput,
        LoadError::Problems(_) => Outcome::BadConfig,
    }
}

fn check(path: &Path) -> Outcome {
    let checked = match load(path) {
        Ok(checked) => checked,
        Err(outcome) => return outcome,
    };
    let config = &checked.config;
    let problems = warden::accounts::check(config);
    if !problems.is_empty() {
        eprintln!("{}", checked.parsed.locate(problems));
        return Outcome::BadConfig;
    }
    if !checked.failures.is_empty() {
        for failure in &checked.failures {
            eprintln!("{}: {failure}", path.display());
        }
        return Outcome::BadConfig;
    }
    let plugins: Vec<String> = checked
        .plugins
        .plugins()
        .iter()
        .map(|plugin| match plugin.origin() {
            warden_policy::Origin::Builtin => format!("{} (built-in)", plugin.identity().name),
            warden_policy::Origin::File { path, .. } => {
                format!("{} ({path})", plugin.identity().name)
            }
        })
        .collect();
    let total = config.services.len();
    let running = config.services.iter().filter(|s| config.runs(s)).count();
    println!(
        "{}: ok; {total} services, {running} of them run with protocols = [{}]; plugins: {}",
        path.display(),
        config.globals.protocols.value.join(", "),
        plugins.join(", ")
    );
    Outcome::Success
}

/// `warden check --plugin FILE`: what the master would make of one
/// component.
fn check_plugin(file: &Path) -> Outcome {
    match master::check_plugin(file) {
        Ok(plugin) => {
            let identity = plugin.identity();
            println!(
                "{}: ok; plugin {} {} ({}); services: {}; hooks: {}",
                file.display(),
                identity.name,
                identity.version,
                identity.description,
                identity.services.join(", "),
                plugin.hooks().names().join(", ")
            );
            Outcome::Success
        }
        Err(error) => {
            eprintln!("{error}");
            Outcome::BadConfig
        }
    }
}

/// `warden config KEY`: one setting, with where its value came from.
fn show_key(path: &Path, key: &str, json: bool) -> Outcome {
    let checked = match load(path) {
        Ok(checked) => checked,
        Err(outcome) => return outcome,
    };
    for failure in &checked.failures {
        eprintln!("warden config: {failure}");
    }
    match config::lookup(&checked.config, key) {
        Ok(found) if json => {
            println!("{}", found.json());
            Outcome::Success
        }
        Ok(found) => {
            println!("{found}");
            Outcome::Success
        }
        Err(keys) => {
            let near = config::nearest(key, keys.iter().map(String::as_str))
                .map_or(String::new(), |near| format!(" (did you mean {near}?)"));
            eprintln!(
                "warden config: {} has no setting {key:?}{near}; `warden config` prints every setting, under its table",
                path.display()
            );
            Outcome::Usage
        }
    }
}

fn show(path: &Path, service: Option<&str>, shown: config::Shown, json: bool) -> Outcome {
    let checked = match load(path) {
        Ok(checked) => checked,
        Err(outcome) => return outcome,
    };
    for failure in &checked.failures {
        eprintln!("warden config: {failure}");
    }
    let config = checked.config;
    let Some(text) = config::render(&config, service, shown) else {
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "warden config: there is no service {:?} in {}; the services are: {}",
            service.unwrap_or_default(),
            path.display(),
            names.join(", ")
        );
        return Outcome::Usage;
    };
    let heading = match shown {
        config::Shown::All => "effective configuration of",
        config::Shown::Written => "what is written in",
    };
    let text = if json {
        match config::render_json(&text) {
            Some(value) => format!("{value:#}\n"),
            None => {
                eprintln!(
                    "warden config: the configuration does not read back as TOML, so cannot be written as JSON; this is a bug in warden"
                );
                return Outcome::Failed;
            }
        }
    } else {
        format!("# {heading} {}\n\n{text}", path.display())
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => Outcome::Success,
        // A closed pipe (`warden config | head`) is not the config's fault.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
        Err(error) => {
            eprintln!("warden config: cannot write the configuration: {error}");
            Outcome::Failed
        }
    }
}
