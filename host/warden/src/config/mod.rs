//! The configuration: Dovecot's service settings, read from one TOML file.
//!
//! [`Parsed`] takes a file through the phases every entry point takes in
//! order — parse, merge the plugins' defaults, validate — into the
//! *effective* configuration: every setting of every service filled in, each with its
//! [`Origin`] (the file, a global default, a policy plugin's defaults, or
//! warden's built-in default), all
//! relative paths resolved against `base_dir`, and every mistake in the file
//! reported at once as [`Problems`].
//!
//! This module is pure: it reads no files but the text it is given, makes no
//! system calls and looks up no users or groups. Whether `dovenull` exists or
//! a port can be bound is decided later, by the code that acts on the
//! configuration.
//!
//! The reader walks toml's spanned document tree itself instead of deriving
//! `serde::Deserialize`, because serde stops at the first error and the
//! operator must see every problem, each with its line and column.

mod load;
mod problem;
mod show;
mod supply;
mod validate;
pub mod value;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Path, PathBuf};

pub use problem::{Problem, Problems, nearest};
pub use show::{Found, Shown, lookup, render, render_json};
use value::{Duration, ListenAddress, Mode, Network, ServiceName, Size};
use warden_policy::Defaults;
pub use warden_policy::ServiceKind;

/// Where a setting's value came from, shown by `warden config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Written in the configuration file.
    File {
        /// Where the value is in the file.
        span: Range<usize>,
        /// How the file wrote it, when warden read it as something else.
        note: Option<Spelling>,
    },
    /// Taken from a global setting such as `default_client_limit`.
    Global {
        /// The global setting's name.
        key: &'static str,
        /// Why the global applies, when the file asked for it explicitly
        /// (`idle_kill = 0`).
        note: Option<String>,
    },
    /// warden's own default for the setting.
    Builtin {
        /// Why this default, when it depends on other settings.
        note: Option<&'static str>,
    },
    /// Supplied by a policy plugin's `defaults`.
    Plugin {
        /// The plugin's name.
        name: String,
        /// How its value was read (a `$default_*` variable).
        note: Option<Spelling>,
    },
}

/// How a value was written when warden read it as something else: what
/// `warden config` says after the value's origin, and, for a variable,
/// which global a message about the value points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spelling {
    /// Under Dovecot 2.4's name for the setting.
    Alias(String),
    /// Through a global's variable.
    Variable {
        /// As written: `$default_login_user`, or 2.4's
        /// `$SET:default_login_user`.
        written: String,
        /// The global it names.
        global: &'static str,
    },
    /// One of Dovecot's magic numbers, read as what it means.
    Magic(String),
    /// A list whose names were written so.
    Several(Vec<Spelling>),
}

impl Spelling {
    /// The global a value written through a variable came from; for a
    /// list, the first.
    pub fn global(&self) -> Option<&'static str> {
        match self {
            Spelling::Alias(_) | Spelling::Magic(_) => None,
            Spelling::Variable { global, .. } => Some(global),
            Spelling::Several(spellings) => spellings.iter().find_map(Spelling::global),
        }
    }
}

impl std::fmt::Display for Spelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Spelling::Alias(alias) => write!(f, "written as {alias} (Dovecot 2.4's name)"),
            Spelling::Variable { written, .. } => write!(f, "written as {written}"),
            Spelling::Magic(meaning) => f.write_str(meaning),
            Spelling::Several(spellings) => {
                for (place, spelling) in spellings.iter().enumerate() {
                    if place > 0 {
                        f.write_str(", ")?;
                    }
                    spelling.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl Origin {
    /// A value written in the file, read as written.
    pub(crate) fn file(span: Range<usize>) -> Self {
        Origin::File { span, note: None }
    }

    /// warden's unconditional default.
    pub(crate) const BUILTIN: Origin = Origin::Builtin { note: None };

    /// Where the value is in the file, if it is in the file.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            Origin::File { span, .. } => Some(span.clone()),
            Origin::Global { .. } | Origin::Builtin { .. } | Origin::Plugin { .. } => None,
        }
    }
}

/// A setting's effective value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value in force.
    pub value: T,
    /// Where it came from.
    pub origin: Origin,
}

impl<T> Setting<T> {
    /// A setting with the given value and origin.
    pub(crate) fn new(value: T, origin: Origin) -> Self {
        Setting { value, origin }
    }

    /// Whether the file set this value.
    pub fn is_from_file(&self) -> bool {
        matches!(self.origin, Origin::File { .. })
    }
}

/// The effective configuration of one warden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Settings that apply to the whole supervisor.
    pub globals: Globals,
    /// The services, in the order the file declares them.
    pub services: Vec<Service>,
    /// `[plugin.NAME]` tables: budgets and grants of policy plugins.
    pub plugins: Vec<PluginSettings>,
}

/// One `[plugin.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSettings {
    /// The plugin's name, as it describes itself.
    pub name: String,
    /// How long one of its calls may run.
    pub deadline: Setting<Duration>,
    /// How much memory one of its instances may have.
    pub memory: Setting<Size>,
    /// A directory it may read, seen by the plugin at `/grant`.
    pub directory: Setting<Option<PathBuf>>,
}

/// Settings that apply to the whole supervisor, and the defaults services
/// fall back on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    /// The directory of runtime files; relative paths elsewhere are resolved
    /// against it. Written relative, it is relative to the directory of the
    /// configuration file.
    pub base_dir: Setting<PathBuf>,
    /// The protocols to serve; a service with a `protocol` not listed here
    /// does not run.
    pub protocols: Setting<Vec<String>>,
    /// Addresses of inet listeners that give none of their own.
    pub listen: Setting<Vec<ListenAddress>>,
    /// Whether TLS listeners exist at all.
    pub ssl: Setting<Ssl>,
    /// `client_limit` of services that leave it unset or 0.
    pub default_client_limit: Setting<u32>,
    /// `process_limit` of services that leave it unset or 0.
    pub default_process_limit: Setting<u32>,
    /// `idle_kill` of services that leave it unset or 0.
    pub default_idle_kill: Setting<Duration>,
    /// `vsz_limit` of services that leave it unset.
    pub default_vsz_limit: Setting<VszLimit>,
    /// The user of login services, `$default_login_user`.
    pub default_login_user: Setting<String>,
    /// The user of unprivileged internal services, `$default_internal_user`.
    pub default_internal_user: Setting<String>,
    /// The group of internal services, `$default_internal_group`.
    pub default_internal_group: Setting<String>,
    /// The directory operators drop policy plugins (`.wasm`) into.
    pub plugins_dir: Setting<PathBuf>,
    /// Where compiled plugins are kept, so a restart or a reboot does not
    /// compile them again; root's (or warden's user's), closed to others.
    pub plugin_cache: Setting<PathBuf>,
    /// The Dovecot configuration file (`dovecot.conf`) the `config` service
    /// of `dovecot`-interface services reads and serves to the others.
    pub dovecot_config: Setting<PathBuf>,
    /// Whether reload and stop close the clients of old processes.
    pub shutdown_clients: Setting<bool>,
    /// The unix socket `warden status`, `warden reload` and friends talk to.
    pub control_socket: Setting<PathBuf>,
    /// Where the OpenMetrics endpoint listens, if anywhere.
    pub metrics_listen: Setting<Option<MetricsListen>>,
    /// How long a connection waits when its service is at `process_limit`
    /// before it is dropped.
    pub process_limit_wait: Setting<Duration>,
    /// How long old processes may finish after a reload or stop before
    /// SIGTERM, and after SIGTERM before SIGKILL.
    pub shutdown_grace: Setting<Duration>,
    /// The networks a PROXY protocol header is accepted from, on listeners
    /// with `haproxy = yes`; a connection from anywhere else is closed.
    pub haproxy_trusted_networks: Setting<Vec<Network>>,
    /// How long a connection on a `haproxy = yes` listener has to send its
    /// PROXY header.
    pub haproxy_timeout: Setting<Duration>,
}

/// The global `ssl` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ssl {
    /// No TLS: every `ssl = yes` listener is left out.
    No,
    /// TLS listeners exist; plaintext ones too.
    Yes,
    /// TLS listeners exist, and services should refuse plaintext logins.
    Required,
}

/// Where the OpenMetrics endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// A TCP address, like `127.0.0.1:9100`.
    Inet(SocketAddr),
    /// A unix socket path, resolved against `base_dir`.
    Unix(PathBuf),
}

/// A service's `vsz_limit`: the address space a process may map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VszLimit {
    /// No limit is set (`0` or `unlimited`).
    Unlimited,
    /// `RLIMIT_AS` and `RLIMIT_DATA` are set to this size.
    Bytes(Size),
}

/// A service's `service_count`: connections a process serves before it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceCount {
    /// Processes serve connections until they are idle-killed or stopped.
    Unlimited,
    /// A process exits after this many connections.
    Limited(NonZeroU32),
}

impl ServiceCount {
    /// The connections a process serves in its life, `None` for no limit:
    /// the one conversion of the setting to a number.
    pub fn limit(self) -> Option<u32> {
        match self {
            ServiceCount::Limited(count) => Some(count.get()),
            ServiceCount::Unlimited => None,
        }
    }
}

/// A service's `idle_kill`: how long a process may do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleKill {
    /// Idle processes are never asked to exit.
    Infinite,
    /// Idle processes are asked to exit after this long.
    After(Duration),
}

/// How a service's processes receive connections and report their load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    /// Socket activation: listeners from fd 3, `LISTEN_FDS`, `NOTIFY_SOCKET`.
    Systemd,
    /// warden's native interface: the host accepts and passes each connection.
    Warden,
    /// One process per connection, the socket on stdin and stdout.
    Inetd,
    /// Dovecot 2.3's master-service layout, for Dovecot's own binaries.
    Dovecot,
}

impl Interface {
    /// The name as written in the file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Interface::Systemd => "systemd",
            Interface::Warden => "warden",
            Interface::Inetd => "inetd",
            Interface::Dovecot => "dovecot",
        }
    }

    const ALL: [Interface; 4] = [
        Interface::Systemd,
        Interface::Warden,
        Interface::Inetd,
        Interface::Dovecot,
    ];
}

/// A service's program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executable {
    /// The program (resolved against `base_dir`) followed by its arguments.
    pub argv: Vec<String>,
}

/// One `[service.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service's name.
    pub name: ServiceName,
    /// Where the service's table starts in the file.
    pub span: Range<usize>,
    /// The program to run, and its arguments.
    pub executable: Setting<Executable>,
    /// What the supervisor does specially for the service.
    pub kind: Setting<ServiceKind>,
    /// The protocol that must be in `protocols` for the service to run.
    pub protocol: Setting<String>,
    /// How processes receive connections and report their load.
    pub interface: Setting<Interface>,
    /// The user processes run as; empty keeps the supervisor's own.
    pub user: Setting<String>,
    /// The primary group; empty means the user's.
    pub group: Setting<String>,
    /// Supplementary groups.
    pub extra_groups: Setting<Vec<String>>,
    /// A group the process may switch to and back (kept as its saved gid).
    pub privileged_group: Setting<String>,
    /// The directory processes are chrooted into, if any.
    pub chroot: Setting<Option<PathBuf>>,
    /// Whether the host drops privileges before exec rather than the binary
    /// after. Only Dovecot's own binaries can drop them themselves (from the
    /// `RESTRICT_*` variables), so only the `dovecot` interface reads it;
    /// every other interface's processes get their user, groups and chroot
    /// from the host before exec, whatever it says.
    pub drop_priv_before_exec: Setting<bool>,
    /// Connections one process serves at once.
    pub client_limit: Setting<u32>,
    /// Connections one process serves in its life.
    pub service_count: Setting<ServiceCount>,
    /// Processes the service may have at once.
    pub process_limit: Setting<u32>,
    /// Processes kept ready for connections.
    pub process_min_avail: Setting<u32>,
    /// How long an idle process lives.
    pub idle_kill: Setting<IdleKill>,
    /// The address space limit of each process.
    pub vsz_limit: Setting<VszLimit>,
    /// Policy plugins asked first for this service's decisions.
    pub policies: Setting<Vec<String>>,
    /// Connections one client address may have open at once, for services
    /// whose connections warden accepts (`warden`, `inetd`); 0 is no limit.
    pub per_source_limit: Setting<u32>,
    /// Connections one client address may open per second, likewise; 0 is
    /// no limit.
    pub per_source_rate: Setting<u32>,
    /// `[[service.NAME.unix_listener]]` tables.
    pub unix_listeners: Vec<FileListener>,
    /// `[[service.NAME.fifo_listener]]` tables.
    pub fifo_listeners: Vec<FileListener>,
    /// `[[service.NAME.inet_listener]]` tables.
    pub inet_listeners: Vec<InetListener>,
}

impl Service {
    /// Clients one process serves at once, in effect: `client_limit`, or
    /// `service_count` when that is lower (a process cannot serve more at
    /// once than it serves in its life), as Dovecot computes it.
    pub fn effective_client_limit(&self) -> u32 {
        match self.service_count.value {
            ServiceCount::Limited(count) => self.client_limit.value.min(count.get()),
            ServiceCount::Unlimited => self.client_limit.value,
        }
    }

    /// The service's connection capacity, `process_limit × client_limit`
    /// (saturating), which the listen backlog follows.
    pub fn max_connections(&self) -> u64 {
        u64::from(self.process_limit.value) * u64::from(self.client_limit.value)
    }
}

/// A unix socket or fifo listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListener {
    /// Where the listener's table starts in the file.
    pub span: Range<usize>,
    /// The socket or fifo path, resolved against `base_dir`.
    pub path: Setting<PathBuf>,
    /// The owner of the file; empty keeps root.
    pub user: Setting<String>,
    /// The group of the file; empty keeps root's.
    pub group: Setting<String>,
    /// The file's mode; 0 disables the listener.
    pub mode: Setting<Mode>,
    /// The client type the listener serves (auth's `userdb`, `login`…); empty
    /// means the service decides.
    pub kind: Setting<String>,
}

/// A TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetListener {
    /// Where the listener's table starts in the file.
    pub span: Range<usize>,
    /// The listener's name, as services and policies see it (`imap`, `imaps`).
    pub name: Setting<String>,
    /// Addresses to bind, one socket each.
    pub address: Setting<Vec<ListenAddress>>,
    /// The port; 0 disables the listener.
    pub port: Setting<u16>,
    /// Whether connections speak TLS from the start.
    pub ssl: Setting<bool>,
    /// Whether a PROXY protocol header comes first.
    pub haproxy: Setting<bool>,
    /// The client type the listener serves; empty means the service decides.
    pub kind: Setting<String>,
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error(
        "cannot read the configuration {path}: {source}; name another file with -c FILE or WARDEN_CONFIG"
    )]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems.
    #[error("{0}")]
    Problems(Problems),
}

/// A configuration file read and parsed — every value checked on its own,
/// the settings not yet combined: the first of the phases every entry point
/// takes in order (`warden run`, `check`, `config`, and each reload).
///
/// 1. [`Parsed::read`] (or [`Parsed::new`]): the file read once, and
///    parsed once; what it writes is [`Parsed::written`], from which the
///    plugins are loaded;
/// 2. and 3. [`Parsed::complete`]: each service's plugin defaults merged in,
///    then the whole validated — the pure effective configuration;
/// 4. [`crate::accounts`]: what it names looked up on this system.
#[derive(Debug)]
pub struct Parsed {
    /// The file's name, for messages.
    file: String,
    /// Its text, for placing problems on their lines.
    source: String,
    /// The configuration as written, unless the text is not TOML at all.
    written: Option<Config>,
    /// Every problem of a value on its own.
    problems: Vec<Problem>,
}

impl Parsed {
    /// Reads the file at `path` and parses it: the one place the
    /// configuration touches the file system. A relative `base_dir` is
    /// resolved against the file's directory.
    pub fn read(path: &Path) -> Result<Parsed, LoadError> {
        let (name, source, dir) = read(path)?;
        Ok(Parsed::new(&name, dir.as_deref(), &source))
    }

    /// Parses `source`, the text of the file named `file` (used only in
    /// messages) that lives in the directory `dir`, if known.
    pub fn new(file: &str, dir: Option<&Path>, source: &str) -> Parsed {
        let mut problems = Vec::new();
        let written = load::load(source, dir, &mut problems);
        Parsed {
            file: file.to_owned(),
            source: source.to_owned(),
            written,
            problems,
        }
    }

    /// The configuration as the file writes it, when every value reads:
    /// where the plugins are loaded from, and what `warden run` checks
    /// before it detaches.
    pub fn written(&self) -> Result<&Config, Problems> {
        match &self.written {
            Some(config) if self.problems.is_empty() => Ok(config),
            _ => Err(self.locate(self.problems.clone())),
        }
    }

    /// The effective configuration: `defaults`, what each service's plugins
    /// supply in the order of `services` (or why they could not, a problem
    /// of the service), fill what the file leaves unset, and the whole is
    /// validated. With values that do not read, the defaults are left out
    /// and every problem is reported.
    pub fn complete(&self, defaults: Vec<Result<Defaults, String>>) -> Result<Config, Problems> {
        let Some(mut config) = self.written.clone() else {
            return Err(self.locate(self.problems.clone()));
        };
        let mut problems = self.problems.clone();
        if problems.is_empty() {
            for (service, defaults) in config.services.iter_mut().zip(defaults) {
                match defaults {
                    Ok(defaults) => {
                        supply::supply(service, &config.globals, &defaults, &mut problems);
                    }
                    Err(reason) => problems.push(Problem::new(
                        format!("service.{}", service.name),
                        service.span.clone(),
                        format!(
                            "its plugins' defaults cannot be read: {reason}; fix or remove the plugin, and `warden plugins` shows its failures"
                        ),
                    )),
                }
            }
        }
        validate::validate(&config, &mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(self.locate(problems))
        }
    }

    /// `problems` found in this file, each placed on its line and column.
    pub fn locate(&self, problems: Vec<Problem>) -> Problems {
        Problems::locate(&self.file, &self.source, problems)
    }
}

impl Config {
    /// Reads the configuration at `path` without plugin defaults: only its
    /// globals are to be used (what the control commands need).
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        Parsed::read(path)?
            .complete(Vec::new())
            .map_err(LoadError::Problems)
    }

    /// Parses `source`, the text of the file named `file` (used only in
    /// messages), without plugin defaults, and returns the effective
    /// configuration or every problem in it.
    pub fn parse(file: &str, source: &str) -> Result<Config, Problems> {
        Config::parse_in(file, None, source)
    }

    /// Like [`Config::parse`], for a file that lives in the directory
    /// `dir` (an absolute path): a relative `base_dir` is resolved against
    /// it.
    pub fn parse_in(file: &str, dir: Option<&Path>, source: &str) -> Result<Config, Problems> {
        Parsed::new(file, dir, source).complete(Vec::new())
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name.as_str() == name)
    }

    /// Whether `service` runs: its `protocol` is empty or listed in `protocols`.
    pub fn runs(&self, service: &Service) -> bool {
        let protocol = &service.protocol.value;
        protocol.is_empty() || self.globals.protocols.value.iter().any(|p| p == protocol)
    }
}

/// The file at `path`: its name for messages, its text, and its directory
/// (against which a relative `base_dir` is resolved).
fn read(path: &Path) -> Result<(String, String, Option<PathBuf>), LoadError> {
    let name = path.to_string_lossy().into_owned();
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: name.clone(),
        source,
    })?;
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|file| file.parent().map(Path::to_path_buf));
    Ok((name, source, dir))
}
