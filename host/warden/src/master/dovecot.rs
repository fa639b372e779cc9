//! Dovecot's own child interface (`interface = "dovecot"`): what the
//! unmodified Dovecot 2.3 binaries expect of their master.
//!
//! Every process of such a service gets this descriptor table:
//!
//! | fd | what |
//! |---|---|
//! | 0, 1 | `/dev/null` |
//! | 2 | its log pipe: the master decodes Dovecot's `\001` log protocol (`LOG_SERVICE=1`) |
//! | 3 | the write end of anvil's client pipe, or `/dev/null` for `log`, `anvil` and `config` and when no anvil runs |
//! | 4 | login services: the login-notify file, whose offset says "every process is full"; anvil: its end of the master's socketpair |
//! | 5 | the service's status pipe, shared by its processes: 12-byte records (pid, generation, available count) |
//! | 6 | the service's master-dead pipe: the master keeps the read end for the service's life, so a child sees the master gone when it closes |
//! | 7… | the listeners, in configuration order; anvil has the master's pipe on 7 and its client pipe on 8 first |
//!
//! and the environment Dovecot's master gives: `DOVECOT_CHILD_PROCESS`, a
//! `GENERATION` of its own that its status records must echo,
//! `CLIENT_LIMIT` (capped by `service_count`), `SERVICE_COUNT`,
//! `SOCKET_COUNT`, `SOCKET<n>_SETTINGS`, `CONFIG_FILE` (the `config`
//! service's socket, or for `config` itself the `dovecot_config` file), and
//! with `drop_priv_before_exec = no` (Dovecot's default) the `RESTRICT_*`
//! variables from which the binary drops its privileges and chroots itself
//! after its privileged setup.
//!
//! A status record drives the same scheduling as `X_WARDEN_CLIENTS` does
//! for the `systemd` interface: the first one makes the process ready,
//! each one says how many clients it has (`CLIENT_LIMIT` less the count it
//! still accepts).

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::mpsc;

use std::time::Instant;

use super::service::ServiceState;
use super::{Event, Master, Noise, Phase};
use crate::config::{IdleKill, ServiceKind};
use crate::listen::Spec;

/// Where the status pipe is in a child.
const STATUS_FD: RawFd = 5;

/// Where the master-dead pipe is in a child.
const MASTER_DEAD_FD: RawFd = 6;

/// Where anvil's client pipe (or the login-notify file) is in a child.
const ANVIL_FD: RawFd = 3;

/// Where the login-notify file, or anvil's socketpair end, is.
const NOTIFY_FD: RawFd = 4;

/// The first listener's descriptor.
const FIRST_LISTENER: RawFd = 7;

/// The name of the stats service's writer socket.
const STATS_WRITER: &str = "stats-writer";

/// The size of one status record: pid, generation, available count, each a
/// native-endian 32-bit integer.
const RECORD: usize = 12;

/// What anvil must read first on both its pipes, or it refuses what
/// follows as from an incompatible client.
const ANVIL_HANDSHAKE: &[u8] = b"VERSION\tanvil\t1\t0\n";

/// One status record: a process saying how many more connections it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Status {
    /// The process that wrote it, by its own account.
    pub pid: i32,
    /// The `GENERATION` it was started with.
    pub generation: u32,
    /// How many more connections it accepts now.
    pub available: u32,
}

impl Status {
    /// The record in the first [`RECORD`] bytes of `bytes`.
    fn read(bytes: &[u8; RECORD]) -> Status {
        let word = |at: usize| {
            let mut four = [0u8; 4];
            four.copy_from_slice(&bytes[at..at + 4]);
            four
        };
        Status {
            pid: i32::from_ne_bytes(word(0)),
            generation: u32::from_ne_bytes(word(4)),
            available: u32::from_ne_bytes(word(8)),
        }
    }
}

/// Takes every whole record off the front of `buffer`, leaving a partial
/// one for the next read.
fn take_records(buffer: &mut Vec<u8>) -> Vec<Status> {
    let whole = buffer.len() / RECORD * RECORD;
    let records = buffer[..whole]
        .chunks_exact(RECORD)
        .filter_map(|chunk| chunk.try_into().ok().map(Status::read))
        .collect();
    buffer.drain(..whole);
    records
}

/// The pipes every process of one service shares, for as long as the
/// service is set up: dropping them tells its processes the master is gone
/// (they stop accepting and leave when their clients have), which is how
/// the processes of a reloaded-away service drain.
#[derive(Debug)]
pub(super) struct Pipes {
    /// The status pipe's write end, non-blocking, for fd 5.
    status: OwnedFd,
    /// The master-dead pipe's write end, for fd 6.
    dead: OwnedFd,
    /// Its read end, held and never read: its close is the signal.
    _alive: OwnedFd,
    /// For login services, the login-notify file for fd 4.
    login_notify: Option<OwnedFd>,
    /// Whether the login processes were last told every one is full.
    told_full: bool,
    /// The task reading the status pipe.
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Pipes {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Pipes {
    /// Opens the pipes of a service of `kind`, reading its status records
    /// into `events`.
    pub(super) fn open(
        kind: ServiceKind,
        events: mpsc::UnboundedSender<Event>,
    ) -> io::Result<Pipes> {
        // Dovecot's children check that fd 5 is a FIFO, and write to it
        // without blocking.
        let (status_read, status) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (alive, dead) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let login_notify = match kind {
            ServiceKind::Login => Some(login_notify_file()?),
            _ => None,
        };
        let receiver = pipe::Receiver::from_owned_fd(status_read)?;
        let reader = tokio::spawn(read_status(receiver, events));
        Ok(Pipes {
            status,
            dead,
            _alive: alive,
            login_notify,
            told_full: false,
            reader,
        })
    }
}

/// Reads status records until the pipe fails, forwarding each.
async fn read_status(mut receiver: pipe::Receiver, events: mpsc::UnboundedSender<Event>) {
    let mut buffer = Vec::with_capacity(RECORD * 64);
    let mut chunk = [0u8; RECORD * 64];
    loop {
        let read = match receiver.read(&mut chunk).await {
            // The master holds a write end, so end of file does not come.
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        buffer.extend_from_slice(&chunk[..read]);
        for status in take_records(&mut buffer) {
            if events.send(Event::Status(status)).is_err() {
                return;
            }
        }
    }
}

impl Master {
    /// What a status record or an exit changes is acted on at once, not at
    /// the next round, as Dovecot's master does: a service left with no
    /// process available watches its listeners again (a pending
    /// connection then starts one at once), scaling refills what
    /// `process_min_avail` keeps, and login processes learn they are full.
    pub(super) fn react(&mut self, index: usize, now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        // Busy means other processes were started while this one waited,
        // as Dovecot's master counts forks between two turns of its loop:
        // since the last event, not since the last round.
        let busy_before = std::mem::take(&mut self.spawned_this_round);
        self.round_scaling(index, now);
        self.spawned_this_round |= busy_before;
        self.round_listening(index, now);
        self.notify_logins(index);
    }

    /// Tells a login service's processes when every one of them is full
    /// and no other may start, and when that ends, as Dovecot's master
    /// does: the login-notify file's offset is the state (1 full, 0 not),
    /// and SIGUSR1 makes each process read it. The process that wins the
    /// next connection then closes its oldest client that has not logged
    /// in, to take it.
    pub(super) fn notify_logins(&mut self, index: usize) {
        let Some(state) = self.services.get_mut(index) else {
            return;
        };
        let active = state.active(&self.processes);
        let full = active > 0
            && !state.below_limit(&self.processes)
            && state.available(&self.processes) == 0;
        let Some(pipes) = state.dovecot.as_mut() else {
            return;
        };
        let Some(file) = &pipes.login_notify else {
            return;
        };
        if full == pipes.told_full {
            return;
        }
        if let Err(error) = nix::unistd::lseek(file, i64::from(full), nix::unistd::Whence::SeekSet)
        {
            tracing::warn!(service = state.config.name.as_str(), %error, "cannot set the login-notify state");
            return;
        }
        pipes.told_full = full;
        tracing::debug!(
            service = state.config.name.as_str(),
            full,
            "telling the login processes whether every one is full"
        );
        for (_, process) in self.processes.of(index) {
            let _ = process.child.signal(nix::sys::signal::Signal::SIGUSR1);
        }
    }

    /// A status record arrived: from the process it names, with the
    /// generation that process was given, it makes the process ready and
    /// says how many clients it has; any other is ignored and counted.
    pub(super) fn status(&mut self, status: Status) {
        let now = Instant::now();
        let Some((service, process)) = self.named_process_mut(status.pid) else {
            self.metrics.ignored_status.inc();
            return;
        };
        let given = process.generation;
        if given == Some(status.generation) {
            process.ready(now);
            let clients = process.client_limit.saturating_sub(status.available);
            let gained = process.reported_clients(clients, now).gained;
            if let Some(index) = self.processes.place(status.pid) {
                if let Some(state) = self.services.get_mut(index) {
                    state.connections += u64::from(gained);
                }
                self.react(index, now);
            }
            return;
        }
        self.metrics.ignored_status.inc();
        if self
            .noise
            .allow(&Noise::Stranger, now, || status.pid.to_string())
        {
            tracing::warn!(
                service,
                pid = status.pid,
                "ignoring a status record of process {} with generation {}; it was started with {}",
                status.pid,
                status.generation,
                given.map_or_else(|| "none".to_owned(), |g| g.to_string())
            );
        }
    }
}

/// Dovecot's `auth` opens this FIFO under `base_dir` at start to write
/// statistics to the old stats service, and logs an error when it cannot
/// although it sends nothing by default.
const OLD_STATS: &str = "old-stats-user";

/// Without an old stats service listening there, makes the FIFO `auth`
/// opens and reads (and discards) what arrives on it, for the master's
/// life, so `auth` starts without an error.
pub(super) fn old_stats_sink(base_dir: &Path) -> io::Result<tokio::task::JoinHandle<()>> {
    let path = base_dir.join(OLD_STATS);
    match std::fs::remove_file(&path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    let mut receiver = pipe::OpenOptions::new().open_receiver(&path)?;
    Ok(tokio::spawn(async move {
        let mut sink = [0u8; 4096];
        while receiver.read(&mut sink).await.is_ok_and(|read| read > 0) {}
    }))
}

/// Whether a service of `config` has its own listener at the FIFO of
/// [`old_stats_sink`].
pub(super) fn old_stats_served(config: &crate::config::Config) -> bool {
    let path = config.globals.base_dir.value.join(OLD_STATS);
    config
        .services
        .iter()
        .filter(|s| config.runs(s))
        .flat_map(|s| &s.fifo_listeners)
        .any(|l| l.path.value == path)
}

/// What Dovecot's log process reads first on each pipe: this magic, the
/// prefix's length, then the prefix its lines get.
const LOG_MAGIC: u32 = 0x02ff_03fe;

/// The pipes Dovecot's `log` service reads, when one runs: the master's
/// own (prefix `MASTER`, at the log process's fd 7) and one per service
/// (at 8, 9, … in this order), whose write end is the stderr of every
/// process of that service. warden holds both ends for its life, so a
/// restarted log process reads on where the last one stopped and no writer
/// ever meets a closed pipe. A service set up after the log service has no
/// pipe; warden decodes its processes' lines itself.
#[derive(Debug)]
pub(super) struct LogPipes {
    /// The master's pipe, then each service's: its name, read end, write end.
    pipes: Vec<(String, OwnedFd, OwnedFd)>,
}

impl LogPipes {
    /// Opens the master's pipe and one for each of `services`, each
    /// starting with its handshake.
    pub(super) fn open<'a>(services: impl IntoIterator<Item = &'a str>) -> io::Result<LogPipes> {
        let mut pipes = Vec::new();
        for name in std::iter::once(None).chain(services.into_iter().map(Some)) {
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
            let prefix = match name {
                None => "MASTER".to_owned(),
                Some(name) => format!("{name}: "),
            };
            let length = u32::try_from(prefix.len()).unwrap_or(u32::MAX);
            let handshake = [
                &LOG_MAGIC.to_ne_bytes()[..],
                &length.to_ne_bytes(),
                prefix.as_bytes(),
            ]
            .concat();
            nix::unistd::write(&write, &handshake)?;
            if name.is_none() {
                // The master must never block on its log process.
                nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
            }
            pipes.push((name.unwrap_or_default().to_owned(), read, write));
        }
        Ok(LogPipes { pipes })
    }

    /// Every pipe's read end and write end, the master's first.
    fn pipes(&self) -> impl Iterator<Item = (&OwnedFd, &OwnedFd)> {
        self.pipes.iter().map(|(_, read, write)| (read, write))
    }

    /// The write end of `service`'s pipe and its descriptor number in the
    /// log process, if it has one.
    fn of(&self, service: &str) -> Option<(RawFd, &OwnedFd)> {
        (FIRST_LISTENER..)
            .zip(&self.pipes)
            .skip(1)
            .find(|(_, (name, _, _))| name == service)
            .map(|(fd, (_, _, write))| (fd, write))
    }

    /// A duplicate of the write end of `service`'s pipe, for a process's
    /// stderr.
    pub(super) fn stderr_of(&self, service: &str) -> Option<io::Result<OwnedFd>> {
        self.of(service)
            .map(|(_, write)| write.as_fd().try_clone_to_owned())
    }

    /// Tells the log process that process `pid` of `service` is gone, and
    /// how, as Dovecot's master does: `BYE`, after a `FATAL` line for a
    /// process that did not exit cleanly.
    pub(super) fn gone(&self, service: &str, pid: i32, exit: &warden_sys::Exit) {
        let (Some((fd, _)), Some((_, _, master))) = (self.of(service), self.pipes.first()) else {
            return;
        };
        let mut lines = String::new();
        if !exit.success() {
            lines.push_str(&format!(
                "{fd} {pid} FATAL service({service}): child {pid} {exit}\n"
            ));
        }
        lines.push_str(&format!("{fd} {pid} BYE\n"));
        // A full pipe means a log process that is not reading; the lines
        // are dropped rather than the master blocked.
        let _ = nix::unistd::write(master, lines.as_bytes());
    }
}

/// The pipes of anvil, which outlive reloads: every child writes its
/// `CONNECT`/`DISCONNECT` lines on the client pipe at fd 3, anvil reads
/// them at fd 8, and the master's own pipe reaches anvil at fd 7.
#[derive(Debug)]
pub(super) struct Anvil {
    /// The client pipe's read end, anvil's fd 8.
    clients_read: OwnedFd,
    /// The client pipe's write end, every other child's fd 3; blocking, as
    /// Dovecot's children expect.
    clients_write: OwnedFd,
    /// The master's pipe's read end, anvil's fd 7.
    master_read: OwnedFd,
    /// The master's pipe's write end, non-blocking.
    master_write: OwnedFd,
    /// The socketpair end anvil gets at fd 4.
    socket_anvil: OwnedFd,
    /// The master's end of that socketpair.
    _socket_master: OwnedFd,
    /// Whether an anvil process was started before, so the next is told
    /// `ANVIL_RESTARTED`.
    started: bool,
}

impl Anvil {
    /// Opens anvil's pipes.
    pub(super) fn open() -> io::Result<Anvil> {
        let (clients_read, clients_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        let (master_read, master_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        let (socket_anvil, socket_master) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )?;
        Ok(Anvil {
            clients_read,
            clients_write,
            master_read,
            master_write,
            socket_anvil,
            _socket_master: socket_master,
            started: false,
        })
    }

    /// Writes the handshake anvil expects first on both its pipes; called
    /// right after an anvil process started. The client pipe's handshake
    /// cannot block: anvil's previous process read everything before it,
    /// and a pipe holds far more than one line.
    pub(super) fn greet(&self) -> io::Result<()> {
        for pipe in [&self.clients_write, &self.master_write] {
            nix::unistd::write(pipe, ANVIL_HANDSHAKE)?;
        }
        Ok(())
    }
}

/// What a process of a `dovecot`-interface service is given besides what
/// every process gets.
#[derive(Debug)]
pub(super) struct Child {
    /// Its descriptors from 3 on, with their numbers.
    pub fds: Vec<(OwnedFd, RawFd)>,
    /// Its environment besides the common one.
    pub env: Vec<(OsString, OsString)>,
}

/// What the master knows that a child's plan needs.
pub(super) struct Context<'a> {
    /// The process's `GENERATION`.
    pub generation: u32,
    /// Anvil's pipes, when an anvil service runs.
    pub anvil: Option<&'a mut Anvil>,
    /// `base_dir`.
    pub base_dir: &'a Path,
    /// The `dovecot_config` file.
    pub dovecot_config: &'a Path,
    /// The log service's pipes, when one runs.
    pub log: Option<&'a LogPipes>,
    /// The stats writer socket, when a service listens on one.
    pub stats_writer: Option<&'a Path>,
}

/// The descriptors and environment of a new process of a service, given
/// its listeners' descriptors and `SOCKET<n>_SETTINGS` values in order.
pub(super) fn child(
    context: Context<'_>,
    pipes: &Pipes,
    listeners: Vec<(OwnedFd, String)>,
    service: &crate::config::Service,
) -> io::Result<Child> {
    let mut fds: Vec<(OwnedFd, RawFd)> = Vec::new();
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let set = |env: &mut Vec<(OsString, OsString)>, key: &str, value: &str| {
        env.push((key.into(), value.into()));
    };
    let kind = service.kind.value;
    let uses_anvil = !matches!(
        kind,
        ServiceKind::Log | ServiceKind::Anvil | ServiceKind::Config
    );
    let dup = |fd: &OwnedFd| fd.as_fd().try_clone_to_owned();
    match (&context.anvil, uses_anvil) {
        (Some(anvil), true) => fds.push((dup(&anvil.clients_write)?, ANVIL_FD)),
        _ => fds.push((dev_null()?, ANVIL_FD)),
    }
    fds.push((dup(&pipes.status)?, STATUS_FD));
    fds.push((dup(&pipes.dead)?, MASTER_DEAD_FD));
    let mut next = FIRST_LISTENER;
    let mut anvil_restarted = false;
    if kind == ServiceKind::Anvil {
        let anvil = context
            .anvil
            .ok_or_else(|| io::Error::other("anvil's pipes are not open"))?;
        fds.push((dup(&anvil.socket_anvil)?, NOTIFY_FD));
        fds.push((dup(&anvil.master_read)?, next));
        fds.push((dup(&anvil.clients_read)?, next + 1));
        next += 2;
        anvil_restarted = anvil.started;
        anvil.started = true;
    } else if let Some(notify) = &pipes.login_notify {
        fds.push((dup(notify)?, NOTIFY_FD));
    }
    if kind == ServiceKind::Log
        && let Some(log) = context.log
    {
        for (read, _) in log.pipes() {
            fds.push((dup(read)?, next));
            next += 1;
        }
    }
    // The pipes before the listeners count as sockets too, and the
    // listeners' settings are numbered after them.
    for (fd, settings) in listeners {
        let at = next - FIRST_LISTENER;
        set(&mut env, &format!("SOCKET{at}_SETTINGS"), &settings);
        fds.push((fd, next));
        next += 1;
    }
    let count = next - FIRST_LISTENER;
    set(&mut env, "DOVECOT_CHILD_PROCESS", "1");
    let (hostname, hostdomain) = host_names();
    set(&mut env, "DOVECOT_HOSTNAME", hostname);
    set(&mut env, "DOVECOT_HOSTDOMAIN", hostdomain);
    set(&mut env, "GENERATION", &context.generation.to_string());
    set(&mut env, "SERVICE_NAME", service.name.as_str());
    set(
        &mut env,
        "CLIENT_LIMIT",
        &service.effective_client_limit().to_string(),
    );
    set(
        &mut env,
        "PROCESS_LIMIT",
        &service.process_limit.value.to_string(),
    );
    set(
        &mut env,
        "PROCESS_MIN_AVAIL",
        &service.process_min_avail.value.to_string(),
    );
    let idle_kill = match service.idle_kill.value {
        IdleKill::Infinite => u64::from(u32::MAX),
        IdleKill::After(after) => after.as_millis() / 1000,
    };
    set(&mut env, "IDLE_KILL", &idle_kill.to_string());
    if let crate::config::ServiceCount::Limited(count) = service.service_count.value {
        set(&mut env, "SERVICE_COUNT", &count.to_string());
    }
    set(&mut env, "SOCKET_COUNT", &count.to_string());
    match kind {
        ServiceKind::Log => {
            // The log service reads its own settings from the environment
            // and writes to its stderr, which the master logs.
            set(&mut env, "DOVECONF_ENV", "1");
            set(&mut env, "LOG_PATH", "/dev/stderr");
            set(&mut env, "INFO_LOG_PATH", "");
            set(&mut env, "DEBUG_LOG_PATH", "");
            set(&mut env, "LOG_TIMESTAMP", "");
            set(&mut env, "SYSLOG_FACILITY", "mail");
            set(&mut env, "SSL", "no");
        }
        ServiceKind::Config => {
            env.push(("CONFIG_FILE".into(), context.dovecot_config.into()));
            set(&mut env, "LOG_SERVICE", "1");
        }
        _ => {
            env.push(("CONFIG_FILE".into(), context.base_dir.join("config").into()));
            set(&mut env, "LOG_SERVICE", "1");
        }
    }
    if let Some(path) = context.stats_writer.filter(|_| kind != ServiceKind::Log) {
        // A chrooted process finds it by name in its chroot
        // (`login/stats-writer` from inside `login`).
        let path = match service.chroot.value {
            Some(_) => Path::new(STATS_WRITER),
            None => path,
        };
        env.push(("STATS_WRITER_SOCKET_PATH".into(), path.into()));
    }
    if anvil_restarted {
        env.push(("ANVIL_RESTARTED".into(), "1".into()));
    }
    Ok(Child { fds, env })
}

/// This host's name and domain, looked up once, as Dovecot's master does
/// and hands every child: without them each process would look them up
/// itself, a DNS query per login process. The domain is the name when it
/// has a dot, else the name alone (Dovecot's own answer when the name does
/// not resolve to a longer one).
fn host_names() -> &'static (String, String) {
    static NAMES: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|n| n.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        (name.split('.').next().unwrap_or(&name).to_owned(), name)
    })
}

/// The stats writer socket among `services`' listeners: a unix listener
/// named `stats-writer` outside any chroot.
pub(super) fn stats_writer(services: &[ServiceState]) -> Option<PathBuf> {
    services
        .iter()
        .filter(|s| s.runs)
        .flat_map(|s| &s.listeners)
        .find_map(|open| match &open.wanted.spec {
            Spec::Unix { path, .. }
                if open.wanted.name == STATS_WRITER
                    && path
                        .parent()
                        .and_then(Path::file_name)
                        .is_none_or(|dir| dir != "login") =>
            {
                Some(path.clone())
            }
            _ => None,
        })
}

/// The value of `SOCKET<n>_SETTINGS` for a listener named `name`: the
/// name, then the `ssl` and `haproxy` flags that apply.
pub(super) fn socket_settings(name: &str, ssl: bool, haproxy: bool) -> String {
    let mut settings = name.to_owned();
    if ssl {
        settings.push_str("\tssl");
    }
    if haproxy {
        settings.push_str("\thaproxy");
    }
    settings
}

/// An unlinked file whose offset is the login-notify state; its contents
/// are never written.
fn login_notify_file() -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(std::env::temp_dir())
        .map(OwnedFd::from)
}

fn dev_null() -> io::Result<OwnedFd> {
    std::fs::File::open("/dev/null").map(OwnedFd::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pid: i32, generation: u32, available: u32) -> Vec<u8> {
        [
            pid.to_ne_bytes(),
            generation.to_ne_bytes(),
            available.to_ne_bytes(),
        ]
        .concat()
    }

    #[test]
    fn records_are_read_in_multiples_of_twelve_bytes() {
        let mut buffer = record(18431, 3, 1);
        buffer.extend(record(18431, 3, 0));
        buffer.extend(&record(7, 1, 1000)[..5]);
        let records = take_records(&mut buffer);
        assert_eq!(
            records,
            [
                Status {
                    pid: 18431,
                    generation: 3,
                    available: 1
                },
                Status {
                    pid: 18431,
                    generation: 3,
                    available: 0
                },
            ]
        );
        assert_eq!(buffer.len(), 5, "the partial record waits for the rest");
        buffer.extend(&record(7, 1, 1000)[5..]);
        assert_eq!(
            take_records(&mut buffer),
            [Status {
                pid: 7,
                generation: 1,
                available: 1000
            }]
        );
        assert!(buffer.is_empty());
    }

    #[test]
    fn observed_bytes_of_imap_login_read_as_dovecot_wrote_them() {
        // pid 18431, GENERATION=3, available 1, as captured from imap-login.
        let mut buffer = vec![0xff, 0x47, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(
            take_records(&mut buffer),
            [Status {
                pid: 18431,
                generation: 3,
                available: 1
            }]
        );
    }

    #[test]
    fn socket_settings_carry_the_name_and_flags() {
        assert_eq!(socket_settings("imap", false, false), "imap");
        assert_eq!(socket_settings("imaps", true, false), "imaps\tssl");
        assert_eq!(socket_settings("imap", false, true), "imap\thaproxy");
    }
}
