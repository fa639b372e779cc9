//! Opening a service's listeners from its effective configuration.
//!
//! This is where the configuration's rules about listeners become sockets:
//! `mode = 0` and `port = 0` create nothing, `ssl` listeners are left out
//! when the global `ssl` is off, an inet listener gets one socket per
//! address (its own, or the global `listen`), and every listener's backlog
//! follows its service's capacity, `max_connections` (see
//! [`warden_sys::listener::backlog`]). Owners come from the
//! [`Accounts`] the configuration's fourth phase looked up. The system calls themselves are
//! `warden-sys`'s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use warden_policy::{ListenerKind, ListenerView};
use warden_sys::listener::backlog;
use warden_sys::{Endpoint, FileAccess, ListenError, Listener};

use crate::accounts::Accounts;
use crate::config::value::ListenAddress;
use crate::config::{Config, FileListener, Service, Ssl};

/// A listener that is open, with what it was opened as and what services
/// and policies are told of it.
#[derive(Debug)]
pub struct OpenListener {
    /// What the configuration asked for, owners looked up: what a reload
    /// compares with what the new configuration asks for.
    pub wanted: Wanted,
    /// The socket or fifo.
    pub listener: Listener,
    /// The listener as the policies see it.
    pub view: ListenerView,
    /// Its client type, as the service's `typing` policy decided; the
    /// configured type until it is asked.
    pub client_type: String,
}

/// Why a service's listeners could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A listener's owner does not exist on this system.
    #[error(
        "service {service}: the {what} {name:?} of listener {path} does not exist; create it, or change service.{service}'s listener {what}"
    )]
    UnknownOwner {
        /// The service.
        service: String,
        /// `user` or `group`.
        what: &'static str,
        /// The name that was not found.
        name: String,
        /// The listener's path.
        path: String,
    },
    /// Creating the socket or fifo failed.
    #[error("service {service}: cannot create a listener")]
    Listen {
        /// The service.
        service: String,
        /// Why.
        #[source]
        source: ListenError,
    },
}

/// What a wanted listener is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    /// A unix socket at a path, with its owner and mode.
    Unix {
        /// The path.
        path: PathBuf,
        /// Owner, group and mode.
        access: FileAccess,
    },
    /// A fifo at a path, with its owner and mode.
    Fifo {
        /// The path.
        path: PathBuf,
        /// Owner, group and mode.
        access: FileAccess,
    },
    /// A TCP socket on an address.
    Inet {
        /// The address and port.
        address: SocketAddr,
    },
}

impl Spec {
    /// What the listener listens on.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Spec::Unix { path, .. } => Endpoint::Unix(path.clone()),
            Spec::Fifo { path, .. } => Endpoint::Fifo(path.clone()),
            Spec::Inet { address } => Endpoint::Inet(*address),
        }
    }
}

/// A listener the configuration asks for, not yet open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// What it is.
    pub spec: Spec,
    /// Its name, as [`OpenListener::name`].
    pub name: String,
    /// Its client type.
    pub kind: String,
    /// Whether it is a TLS listener.
    pub ssl: bool,
    /// Whether it expects a PROXY header.
    pub haproxy: bool,
    /// Its listen backlog.
    pub backlog: i32,
}

impl Wanted {
    /// Creates the socket or fifo.
    pub fn open(&self) -> Result<Listener, ListenError> {
        match &self.spec {
            Spec::Unix { path, access } => Listener::unix(path, *access, self.backlog),
            Spec::Fifo { path, access } => Listener::fifo(path, *access),
            Spec::Inet { address } => Listener::inet(*address, self.backlog),
        }
    }

    /// The open listener, described as this one is.
    pub fn with(&self, listener: Listener) -> OpenListener {
        OpenListener {
            wanted: self.clone(),
            listener,
            view: self.view(),
            client_type: self.kind.clone(),
        }
    }

    /// The listener as the policies see it.
    pub fn view(&self) -> ListenerView {
        let file = |kind, path: &PathBuf, access: &FileAccess| ListenerView {
            name: self.name.clone(),
            kind,
            path: Some(path.display().to_string()),
            mode: Some(access.mode),
            owner_uid: Some(access.user.unwrap_or_else(nix::unistd::geteuid).as_raw()),
            owner_gid: Some(access.group.unwrap_or_else(nix::unistd::getegid).as_raw()),
            configured_type: self.kind.clone(),
            ssl: self.ssl,
            haproxy: self.haproxy,
        };
        match &self.spec {
            Spec::Unix { path, access } => file(ListenerKind::Unix, path, access),
            Spec::Fifo { path, access } => file(ListenerKind::Fifo, path, access),
            Spec::Inet { .. } => ListenerView {
                name: self.name.clone(),
                kind: ListenerKind::Inet,
                path: None,
                mode: None,
                owner_uid: None,
                owner_gid: None,
                configured_type: self.kind.clone(),
                ssl: self.ssl,
                haproxy: self.haproxy,
            },
        }
    }
}

/// Every listener of `service` that its configuration enables, with the
/// owners `accounts` looked up.
pub fn wanted(
    config: &Config,
    service: &Service,
    accounts: &Accounts,
) -> Result<Vec<Wanted>, OpenError> {
    let name = service.name.to_string();
    let backlog = backlog(service.max_connections());
    let mut wanted = Vec::new();
    for (listener, fifo) in service
        .unix_listeners
        .iter()
        .map(|l| (l, false))
        .chain(service.fifo_listeners.iter().map(|l| (l, true)))
    {
        if listener.mode.value.disables() {
            continue;
        }
        let path = listener.path.value.clone();
        wanted.push(Wanted {
            name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            spec: if fifo {
                Spec::Fifo {
                    path,
                    access: file_access(&name, listener, accounts)?,
                }
            } else {
                Spec::Unix {
                    path,
                    access: file_access(&name, listener, accounts)?,
                }
            },
            kind: listener.kind.value.clone(),
            ssl: false,
            haproxy: false,
            backlog,
        });
    }
    let ssl_off = config.globals.ssl.value == Ssl::No;
    for listener in &service.inet_listeners {
        let port = listener.port.value;
        if port == 0 || (listener.ssl.value && ssl_off) {
            continue;
        }
        for &address in &listener.address.value {
            wanted.push(Wanted {
                spec: Spec::Inet {
                    address: socket_address(address, port),
                },
                name: listener.name.value.clone(),
                kind: listener.kind.value.clone(),
                ssl: listener.ssl.value,
                haproxy: listener.haproxy.value,
                backlog,
            });
        }
    }
    Ok(wanted)
}

/// Opens every listener of `service` that its configuration enables.
pub fn open(
    config: &Config,
    service: &Service,
    accounts: &Accounts,
) -> Result<Vec<OpenListener>, OpenError> {
    wanted(config, service, accounts)?
        .iter()
        .map(|wanted| {
            wanted
                .open()
                .map(|listener| wanted.with(listener))
                .map_err(|source| OpenError::Listen {
                    service: service.name.to_string(),
                    source,
                })
        })
        .collect()
}

fn socket_address(address: ListenAddress, port: u16) -> SocketAddr {
    let ip = match address {
        ListenAddress::AnyV4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ListenAddress::AnyV6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        ListenAddress::Ip(ip) => ip,
    };
    SocketAddr::new(ip, port)
}

fn file_access(
    service: &str,
    listener: &FileListener,
    accounts: &Accounts,
) -> Result<FileAccess, OpenError> {
    let path = listener.path.value.display().to_string();
    let unknown = |what: &'static str, name: &str| OpenError::UnknownOwner {
        service: service.to_owned(),
        what,
        name: name.to_owned(),
        path: path.clone(),
    };
    let user = match listener.user.value.as_str() {
        "" => None,
        name => Some(
            accounts
                .user(name)
                .ok_or_else(|| unknown("user", name))?
                .uid,
        ),
    };
    let group = match listener.group.value.as_str() {
        "" => None,
        name => Some(accounts.group(name).ok_or_else(|| unknown("group", name))?),
    };
    Ok(FileAccess {
        user,
        group,
        mode: listener.mode.value.bits(),
    })
}
