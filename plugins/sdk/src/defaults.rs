//! The settings a plugin supplies for its service, as plain values.
//!
//! A built-in plugin states its service's documented defaults with these
//! types; [`defaults!`](crate::defaults!) turns them into the contract's
//! `defaults.settings` record.

/// `$default_internal_user`: the user of internal services that need no root.
pub const INTERNAL_USER: &str = "$default_internal_user";

/// `$default_login_user`: the unprivileged user of login services.
pub const LOGIN_USER: &str = "$default_login_user";

/// `$default_internal_group`: the group of internal services.
pub const INTERNAL_GROUP: &str = "$default_internal_group";

/// `idle_kill` of a service that must never be idle-killed (0 is never).
pub const NEVER_IDLE_KILL: u64 = 0;

/// Facts about the machine warden runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    /// The CPUs warden may use.
    pub cpus: u32,
}

/// A service's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `""`.
    Default,
    /// `startup`.
    Startup,
    /// `login`.
    Login,
    /// `log`.
    Log,
    /// `config`.
    Config,
    /// `anvil`.
    Anvil,
    /// `worker`.
    Worker,
}

/// A unix socket the service gets by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixListener {
    /// Its path, relative to `base_dir`.
    pub path: String,
    /// Its mode; 0 disables it.
    pub mode: u32,
    /// Its owner; empty keeps root.
    pub user: String,
    /// Its group; empty keeps root's.
    pub group: String,
    /// Its client type; empty leaves it to the service.
    pub listener_type: String,
}

impl UnixListener {
    /// A socket at `path` with `mode`, owned by root.
    pub fn new(path: &str, mode: u32) -> UnixListener {
        UnixListener {
            path: path.to_owned(),
            mode,
            user: String::new(),
            group: String::new(),
            listener_type: String::new(),
        }
    }

    /// Owned by `user`.
    pub fn user(mut self, user: &str) -> UnixListener {
        user.clone_into(&mut self.user);
        self
    }

    /// In `group`.
    pub fn group(mut self, group: &str) -> UnixListener {
        group.clone_into(&mut self.group);
        self
    }

    /// Of client type `kind`.
    pub fn kind(mut self, kind: &str) -> UnixListener {
        kind.clone_into(&mut self.listener_type);
        self
    }
}

/// A TCP listener the service gets by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetListener {
    /// Its name.
    pub name: String,
    /// Its port.
    pub port: u16,
    /// Whether it speaks TLS from the first byte.
    pub ssl: bool,
}

impl InetListener {
    /// A plaintext listener.
    pub fn plain(name: &str, port: u16) -> InetListener {
        InetListener {
            name: name.to_owned(),
            port,
            ssl: false,
        }
    }

    /// A TLS listener.
    pub fn tls(name: &str, port: u16) -> InetListener {
        InetListener {
            name: name.to_owned(),
            port,
            ssl: true,
        }
    }
}

/// A service's defaults; `None` leaves a setting to the next plugin or to
/// warden.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// `type`.
    pub kind: Option<Kind>,
    /// `protocol`.
    pub protocol: Option<String>,
    /// `user`.
    pub user: Option<String>,
    /// `group`.
    pub group: Option<String>,
    /// `extra_groups`.
    pub extra_groups: Option<Vec<String>>,
    /// `chroot`, relative to `base_dir`.
    pub chroot: Option<String>,
    /// `client_limit`.
    pub client_limit: Option<u32>,
    /// `process_limit`.
    pub process_limit: Option<u32>,
    /// `process_min_avail`.
    pub process_min_avail: Option<u32>,
    /// `service_count`; 0 is unlimited.
    pub service_count: Option<u32>,
    /// `idle_kill` in milliseconds; [`NEVER_IDLE_KILL`] is never.
    pub idle_kill_ms: Option<u64>,
    /// `vsz_limit` in bytes; 0 is no limit.
    pub vsz_limit: Option<u64>,
    /// Unix sockets; the configuration's own at the same path replace them.
    pub unix_listeners: Vec<UnixListener>,
    /// TCP listeners; the configuration's own of the same name replace them.
    pub inet_listeners: Vec<InetListener>,
}

/// `Some(text)` as an owned string, for settings written inline.
pub fn some(text: &str) -> Option<String> {
    Some(text.to_owned())
}
