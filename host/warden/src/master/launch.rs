//! Turning a service's configuration into a spawn plan, per interface.
//!
//! - `systemd`: listeners from fd 3 with `LISTEN_FDS`, `LISTEN_PID` and
//!   `LISTEN_FDNAMES`; `WARDEN_CLIENT_TYPES`, each listener's client type
//!   as the service's `typing` policy decided, in the order of
//!   `LISTEN_FDNAMES`; `NOTIFY_SOCKET`; `WARDEN_SERVICE`,
//!   `WARDEN_CLIENT_LIMIT` and `WARDEN_SERVICE_COUNT` (when limited).
//! - `inetd`: the accepted connection on stdin and stdout, and the UCSPI
//!   variables describing both ends.
//! - `warden`: the native interface's control channel at fd 3
//!   (`WARDEN_CONTROL_FD`, `WARDEN_PROTOCOL`), `WARDEN_SERVICE`,
//!   `WARDEN_CLIENT_LIMIT` and `WARDEN_SERVICE_COUNT` (when limited).
//!
//! - `dovecot`: Dovecot's own child interface, described in
//!   [`dovecot`](super::dovecot).
//!
//! Every process gets `/dev/null` on stdin unless the interface says
//! otherwise, its stdout and stderr on pipes the master reads, a clean
//! environment, and the identity, chroot and address-space limit of its
//! service, which the host applies itself before exec.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::Path;

use warden_child::protocol::{CONTROL_FD, VERSION};
use warden_sys::{Identity, SpawnPlan};

use super::dovecot;
use super::output;
use super::service::ServiceState;
use crate::accounts::Accounts;
use crate::config::{Service, ServiceCount, ServiceKind, VszLimit};
use crate::listen::OpenListener;

/// The search path every service process gets.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The first descriptor of the systemd listener range.
pub(super) const LISTEN_FDS_START: i32 = 3;

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub(super) enum LaunchError {
    /// The service's user or group does not exist.
    #[error(
        "service {service}: {what} {name:?} does not exist; create it or change service.{service}.{what}"
    )]
    Unknown {
        /// The service.
        service: String,
        /// The setting (`user`, `group`, `extra_groups`, `privileged_group`).
        what: &'static str,
        /// The name that was not found.
        name: String,
    },
    /// Changing identity needs root.
    #[error(
        "service {service}: user = {user:?} needs warden to run as root; run warden as root or remove the setting"
    )]
    NotRoot {
        /// The service.
        service: String,
        /// The user asked for.
        user: String,
    },
    /// The system could not give what the plan needs.
    #[error("service {service}: {what} failed{}", warden_sys::limits::advice(.source))]
    Io {
        /// The service.
        service: String,
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// The pipes a process writes its output to; the master keeps the read ends.
#[derive(Debug)]
pub(super) struct Output {
    /// The read end of the process's stdout, if it has one of its own.
    pub stdout: Option<output::Reader>,
    /// The read end of the process's stderr, unless it writes to a log
    /// service.
    pub stderr: Option<output::Reader>,
}

/// A connection the master accepted, for an inetd-interface process or a
/// native-interface one.
#[derive(Debug)]
pub(super) struct Connection {
    /// The socket.
    pub socket: OwnedFd,
    /// The place of the listener it came in on, in its service's listeners.
    pub listener: usize,
    /// When it was accepted.
    pub accepted: std::time::Instant,
    /// How often the admission policy delayed it.
    pub delays: u32,
    /// What the UCSPI variables say about the two ends.
    pub ends: Ends,
}

/// The two ends of an accepted connection.
#[derive(Debug, Clone)]
pub(super) enum Ends {
    /// A TCP connection.
    Tcp {
        /// The client's address.
        remote: SocketAddr,
        /// The address it connected to.
        local: SocketAddr,
    },
    /// A unix socket connection and the peer's credentials.
    Unix {
        /// The peer's uid.
        uid: u32,
        /// The peer's gid.
        gid: u32,
        /// The peer's pid.
        pid: i32,
    },
}

/// The identity a service's processes take, from the users and groups
/// `accounts` looked up; `None` when the service names no user and keeps
/// the supervisor's.
pub(super) fn identity(
    service: &Service,
    accounts: &Accounts,
) -> Result<Option<Identity>, LaunchError> {
    let name = service.name.to_string();
    let user_name = service.user.value.as_str();
    if user_name.is_empty() {
        return Ok(None);
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(LaunchError::NotRoot {
            service: name,
            user: user_name.to_owned(),
        });
    }
    let unknown = |what: &'static str, wanted: &str| LaunchError::Unknown {
        service: name.clone(),
        what,
        name: wanted.to_owned(),
    };
    let user = accounts
        .user(user_name)
        .ok_or_else(|| unknown("user", user_name))?;
    let group = |what: &'static str, wanted: &str| {
        accounts.group(wanted).ok_or_else(|| unknown(what, wanted))
    };
    let gid = match service.group.value.as_str() {
        "" => user.gid,
        wanted => group("group", wanted)?,
    };
    let extra_groups = service
        .extra_groups
        .value
        .iter()
        .map(|wanted| group("extra_groups", wanted))
        .collect::<Result<_, _>>()?;
    let privileged_gid = match service.privileged_group.value.as_str() {
        "" => None,
        wanted => Some(group("privileged_group", wanted)?),
    };
    Ok(Some(Identity {
        uid: user.uid,
        gid,
        extra_groups,
        privileged_gid,
    }))
}

/// A plan with what every interface shares: argv, the common environment,
/// limits, chroot and identity.
fn common(service: &Service, identity: Option<&Identity>, base_dir: &Path) -> SpawnPlan {
    let mut plan = unprivileged(service, base_dir);
    if let Some(dir) = &service.chroot.value {
        plan.chroot(dir);
    }
    if let Some(identity) = identity {
        plan.identity(identity.clone());
    }
    plan
}

/// A plan with argv, the common environment and the limits, keeping the
/// master's identity and root.
fn unprivileged(service: &Service, base_dir: &Path) -> SpawnPlan {
    let mut plan = SpawnPlan::new(service.name.as_str(), &service.executable.value.argv);
    plan.env("PATH", PATH)
        .env("WARDEN_SERVICE", service.name.as_str());
    if let Some(tz) = std::env::var_os("TZ") {
        plan.env("TZ", tz);
    }
    if let VszLimit::Bytes(size) = service.vsz_limit.value {
        plan.vsz_limit(Some(size.0));
    }
    // Not the master's directory, whatever it was started from.
    plan.working_dir(base_dir);
    plan
}

fn pipe(service: &Service) -> Result<(output::Reader, OwnedFd), LaunchError> {
    output::pipe().map_err(|source| LaunchError::Io {
        service: service.name.to_string(),
        what: "creating an output pipe",
        source,
    })
}

fn dev_null(service: &Service) -> Result<OwnedFd, LaunchError> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|source| LaunchError::Io {
            service: service.name.to_string(),
            what: "opening /dev/null",
            source,
        })
}

/// A plan for a process of a `systemd`-interface service.
pub(super) fn systemd(
    base_dir: &Path,
    service: &Service,
    identity: Option<&Identity>,
    listeners: &[OpenListener],
    notify_socket: &str,
) -> Result<(SpawnPlan, Output), LaunchError> {
    let mut plan = common(service, identity, base_dir);
    let count = listeners.len();
    let names: Vec<&str> = listeners.iter().map(|l| l.wanted.name.as_str()).collect();
    let types: Vec<&str> = listeners.iter().map(|l| l.client_type.as_str()).collect();
    plan.env("LISTEN_FDS", count.to_string())
        .env_own_pid("LISTEN_PID")
        .env("LISTEN_FDNAMES", names.join(":"))
        .env("WARDEN_CLIENT_TYPES", types.join(":"))
        .env("NOTIFY_SOCKET", notify_socket);
    limits(&mut plan, service);
    let output = standard_fds(&mut plan, service)?;
    for (target, listener) in (LISTEN_FDS_START..).zip(listeners) {
        let fd = listener
            .listener
            .try_clone()
            .map_err(|source| LaunchError::Io {
                service: service.name.to_string(),
                what: "duplicating a listener",
                source,
            })?;
        plan.fd(fd.into(), target);
    }
    Ok((plan, output))
}

/// `WARDEN_CLIENT_LIMIT` and, when limited, `WARDEN_SERVICE_COUNT`.
fn limits(plan: &mut SpawnPlan, service: &Service) {
    plan.env(
        "WARDEN_CLIENT_LIMIT",
        service.effective_client_limit().to_string(),
    );
    if let ServiceCount::Limited(count) = service.service_count.value {
        plan.env("WARDEN_SERVICE_COUNT", count.to_string());
    }
}

/// `/dev/null` on stdin; stdout and stderr on pipes whose read ends the
/// master keeps.
fn standard_fds(plan: &mut SpawnPlan, service: &Service) -> Result<Output, LaunchError> {
    let (stdout_read, stdout_write) = pipe(service)?;
    let (stderr_read, stderr_write) = pipe(service)?;
    plan.fd(dev_null(service)?, 0)
        .fd(stdout_write, 1)
        .fd(stderr_write, 2);
    Ok(Output {
        stdout: Some(stdout_read),
        stderr: Some(stderr_read),
    })
}

/// A plan for a process of a `warden`-interface service: its end of the
/// control channel at fd 3, named by `WARDEN_CONTROL_FD`, and the protocol
/// version in `WARDEN_PROTOCOL` (see `warden_child::protocol`).
pub(super) fn native(
    base_dir: &Path,
    service: &Service,
    identity: Option<&Identity>,
    control: OwnedFd,
) -> Result<(SpawnPlan, Output), LaunchError> {
    let mut plan = common(service, identity, base_dir);
    plan.env("WARDEN_CONTROL_FD", CONTROL_FD.to_string())
        .env("WARDEN_PROTOCOL", VERSION.to_string());
    limits(&mut plan, service);
    let output = standard_fds(&mut plan, service)?;
    plan.fd(control, CONTROL_FD);
    Ok((plan, output))
}

/// A plan for the process an `inetd`-interface service starts for one
/// connection.
pub(super) fn inetd(
    base_dir: &Path,
    service: &Service,
    identity: Option<&Identity>,
    connection: Connection,
) -> Result<(SpawnPlan, Output), LaunchError> {
    let mut plan = common(service, identity, base_dir);
    match &connection.ends {
        Ends::Tcp { remote, local } => {
            plan.env("PROTO", "TCP")
                .env("TCPREMOTEIP", remote.ip().to_string())
                .env("TCPREMOTEPORT", remote.port().to_string())
                .env("TCPLOCALIP", local.ip().to_string())
                .env("TCPLOCALPORT", local.port().to_string());
        }
        Ends::Unix { uid, gid, pid } => {
            plan.env("PROTO", "UNIX")
                .env("UNIXREMOTEEUID", uid.to_string())
                .env("UNIXREMOTEEGID", gid.to_string())
                .env("UNIXREMOTEPID", pid.to_string());
        }
    }
    let (stderr_read, stderr_write) = pipe(service)?;
    plan.fd(connection.socket, 0)
        .fd_also(0, 1)
        .fd(stderr_write, 2);
    Ok((
        plan,
        Output {
            stdout: None,
            stderr: Some(stderr_read),
        },
    ))
}

/// A plan for a process of a `dovecot`-interface service: the descriptor
/// table and environment of [`dovecot`], a working directory at
/// `base_dir` and umask 0077. With `drop_priv_before_exec = no` (Dovecot's
/// default) the process starts as root and is told in `RESTRICT_*` whom to
/// become and where to chroot, which it does after its privileged setup;
/// with `yes` the host applies both before exec, as for other interfaces.
pub(super) fn dovecot(
    state: &ServiceState,
    context: dovecot::Context<'_>,
) -> Result<(SpawnPlan, Output), LaunchError> {
    let service = &state.config;
    let io = |what: &'static str| {
        move |source: std::io::Error| LaunchError::Io {
            service: service.name.to_string(),
            what,
            source,
        }
    };
    let mut plan = if service.drop_priv_before_exec.value {
        common(service, state.identity.as_ref(), context.base_dir)
    } else {
        let mut plan = unprivileged(service, context.base_dir);
        let chroot = service.chroot.value.as_deref();
        match &state.identity {
            Some(identity) => {
                for (key, value) in identity.dovecot_restrict_env(chroot) {
                    plan.env(key, value);
                }
            }
            None => {
                if let Some(chroot) = chroot {
                    plan.env("RESTRICT_CHROOT", chroot);
                }
            }
        }
        plan
    };
    plan.umask(0o077);
    let mut listeners = Vec::with_capacity(state.listeners.len());
    for open in &state.listeners {
        let fd = open
            .listener
            .try_clone()
            .map_err(io("duplicating a listener"))?;
        let settings =
            dovecot::socket_settings(&open.wanted.name, open.wanted.ssl, open.wanted.haproxy);
        listeners.push((OwnedFd::from(fd), settings));
    }
    let pipes = state
        .dovecot
        .as_ref()
        .ok_or_else(|| io("opening its status pipes")(std::io::Error::other("not open")))?;
    // Its stderr is its service's pipe to the log service, if there is
    // one (not for log itself); else a pipe warden decodes.
    let log_pipe = match context
        .log
        .filter(|_| service.kind.value != ServiceKind::Log)
    {
        Some(log) => log
            .stderr_of(service.name.as_str())
            .transpose()
            .map_err(io("duplicating its log pipe"))?,
        None => None,
    };
    let child = dovecot::child(context, pipes, listeners, service)
        .map_err(io("preparing its descriptors"))?;
    for (key, value) in child.env {
        plan.env(key, value);
    }
    let (stderr_read, stderr_write) = match log_pipe {
        Some(write) => (None, write),
        None => {
            let (read, write) = pipe(service)?;
            (Some(read), write)
        }
    };
    plan.fd(dev_null(service)?, 0)
        .fd(dev_null(service)?, 1)
        .fd(stderr_write, 2);
    for (fd, target) in child.fds {
        plan.fd(fd, target);
    }
    Ok((
        plan,
        Output {
            stdout: None,
            stderr: stderr_read,
        },
    ))
}
