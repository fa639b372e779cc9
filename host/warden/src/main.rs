//! `warden`: the command line of the supervisor.
//!
//! `main` parses the arguments, runs one subcommand and maps its outcome to
//! an exit code from the table in `--help`. It owns no logic of its own: the
//! configuration lives in [`warden::config`], and each subcommand that needs
//! the running master says plainly that this version does not have it yet.

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use warden::config::{self, Config};

/// Exit codes, shown after `--help` and listed in the README.
const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   the command failed while running
  2   the command line is wrong (unknown option, unknown service)
  66  the configuration file cannot be read
  69  the command is not available in this version of warden
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

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the supervisor in the foreground.
    Run {
        /// Detach from the terminal and run in the background.
        #[arg(long)]
        daemonize: bool,
        /// Write the master's pid to this file.
        #[arg(long, value_name = "FILE")]
        pid_file: Option<PathBuf>,
    },
    /// Check the configuration and report every problem in it; start nothing.
    Check,
    /// Print the effective configuration, each setting with where it came from.
    Config {
        /// Print only this service.
        #[arg(long, value_name = "NAME")]
        service: Option<String>,
    },
    /// Show the running supervisor's services and their state.
    Status,
    /// List the running processes, of every service or of one.
    Ps {
        /// Only this service's processes.
        service: Option<String>,
    },
    /// Make the running supervisor reload its configuration.
    Reload,
    /// Stop the running supervisor and every service.
    Stop,
    /// Close a connection by id or peer address, or end a process by pid.
    Kick {
        /// A connection id, a peer address, or a process id.
        target: String,
    },
    /// List the connections the supervisor sees.
    Who {
        /// Only this service's connections.
        service: Option<String>,
    },
    /// Print the counters and gauges of every service.
    Stats,
    /// List the loaded policy plugins, their hooks and their health.
    Plugins,
    /// Test policy plugins before deploying them.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Replay a scenario against a plugin and report each decision.
    Test {
        /// The plugin component, a `.wasm` file.
        plugin: PathBuf,
        /// The scenario: service settings, a timeline of events and the
        /// expected decisions.
        scenario: PathBuf,
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
        Command::Check => check(&cli.config),
        Command::Config { service } => show(&cli.config, service.as_deref()),
        Command::Run { .. } => unavailable("run", "the master"),
        Command::Status => unavailable("status", "the master's control socket"),
        Command::Ps { .. } => unavailable("ps", "the master's control socket"),
        Command::Reload => unavailable("reload", "the master's control socket"),
        Command::Stop => unavailable("stop", "the master's control socket"),
        Command::Kick { .. } => unavailable("kick", "the master's control socket"),
        Command::Who { .. } => unavailable("who", "the native interface"),
        Command::Stats => unavailable("stats", "the master's control socket"),
        Command::Plugins => unavailable("plugins", "the policy runtime"),
        Command::Policy {
            command: PolicyCommand::Test { .. },
        } => unavailable("policy test", "the policy runtime"),
    };
    ExitCode::from(outcome as u8)
}

/// Says that `command` needs a part of warden this version does not have.
fn unavailable(command: &str, needs: &str) -> Outcome {
    eprintln!(
        "warden {command}: not available in this version of warden; it needs {needs}, which is not built yet. \
         `warden check` and `warden config` work now."
    );
    Outcome::Unavailable
}

/// Reads and parses the configuration, printing why when it cannot.
fn load(path: &Path) -> Result<Config, Outcome> {
    let source = std::fs::read_to_string(path).map_err(|error| {
        eprintln!(
            "warden: cannot read the configuration {}: {error}; name another file with -c FILE or WARDEN_CONFIG",
            path.display()
        );
        Outcome::NoInput
    })?;
    Config::parse(&path.to_string_lossy(), &source).map_err(|problems| {
        eprintln!("{problems}");
        Outcome::BadConfig
    })
}

fn check(path: &Path) -> Outcome {
    let config = match load(path) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    let total = config.services.len();
    let running = config.services.iter().filter(|s| config.runs(s)).count();
    println!(
        "{}: ok; {total} services, {running} of them run with protocols = [{}]",
        path.display(),
        config.globals.protocols.value.join(", ")
    );
    Outcome::Success
}

fn show(path: &Path, service: Option<&str>) -> Outcome {
    let config = match load(path) {
        Ok(config) => config,
        Err(outcome) => return outcome,
    };
    let Some(text) = config::render(&config, service) else {
        let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        eprintln!(
            "warden config: there is no service {:?} in {}; the services are: {}",
            service.unwrap_or_default(),
            path.display(),
            names.join(", ")
        );
        return Outcome::Usage;
    };
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "# effective configuration of {}\n", path.display())
        .and_then(|()| stdout.write_all(text.as_bytes()))
    {
        Ok(()) => Outcome::Success,
        // A closed pipe (`warden config | head`) is not the config's fault.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Outcome::Success,
        Err(error) => {
            eprintln!("warden config: cannot write the configuration: {error}");
            Outcome::Failed
        }
    }
}
