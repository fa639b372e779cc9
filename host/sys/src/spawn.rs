//! Starting a service process: a plan made in the parent, applied in the
//! child in one fixed order.
//!
//! A [`SpawnPlan`] is plain data — argv, environment, the descriptor table,
//! the address-space limit, the chroot, the identity — and
//! [`SpawnPlan::spawn`] turns every part of it into what the child needs
//! (C strings, pointer arrays, descriptors moved out of the way) *before*
//! the child exists. The child then runs [`Step`]s in this order and nothing
//! else: it does not allocate, lock or log, and it makes raw system calls
//! only, because it shares the parent's memory:
//!
//! 1. signal dispositions back to default (see [`note_signal_dispositions`]),
//!    signal mask emptied;
//! 2. descriptors into place (`dup3` onto their target numbers);
//! 3. every other descriptor closed;
//! 4. `RLIMIT_DATA` and `RLIMIT_AS` (soft and hard) set, if asked;
//! 5. `chroot` and `chdir("/")`, if asked, else `chdir` to the working
//!    directory, if one is given; then the umask, if one is given;
//! 6. `setgroups` (the extra groups, then the primary group);
//! 7. `setresgid`: the primary group as the effective and saved gid, and
//!    the privileged group, if any, as the real gid, so the process can
//!    switch its effective gid to it and back (see [`Identity::privileged_gid`]);
//! 8. `setresuid`, last;
//! 9. a check that `setuid(0)` (and `setgid(0)`, when a group was asked
//!    for) now fails;
//! 10. `PR_SET_PDEATHSIG` with SIGTERM, then a check that the parent is
//!     still the process that made the plan (see below);
//! 11. `PR_SET_NO_NEW_PRIVS`, unless the plan allows new privileges;
//! 12. exec.
//!
//! A failing step stores its number and errno in the plan and exits 127:
//! the child shares the parent's memory, and CLONE_VFORK holds the parent
//! until the child has executed or exited, so the parent reads the report
//! where the child left it, with no pipe to make, pass and read per spawn.
//! It turns a report into a [`SpawnError`] that names the service, the
//! step and the setting to fix; no report means the exec happened.
//!
//! **Why `clone(CLONE_VM | CLONE_VFORK)`**: the master is a large
//! multi-threaded process. `fork` would copy its page tables for every
//! child, so spawning would slow down as the master grows; a child that
//! shares the parent's memory until exec costs the same whatever the
//! parent's size. The price is the discipline above: the child runs on its
//! own small stack, must not touch the allocator or any lock, and must not
//! use libc wrappers that coordinate threads (glibc's `setuid` and
//! `setgroups` signal every thread of the *parent*), so identity changes
//! are raw system calls. All signals are blocked in the parent around the
//! `clone`, so no handler of the parent can run in the child.
//!
//! **Children die with their master.** Every child asks the kernel for
//! SIGTERM when its parent dies (`PR_SET_PDEATHSIG`), so a master that is
//! killed leaves no process behind holding its clients and listeners, and
//! can be started again at once. The request is made after the identity
//! change, because changing uid or gid clears it, and is followed by a
//! check that `getppid()` is still the pid recorded in the plan: a master
//! that died before the request was made would never send the signal, and
//! the child exits instead. Three limits of the mechanism:
//!
//! - the signal follows the *thread* that spawned the child, not the
//!   process: it is sent when that thread exits. The master spawns from
//!   the threads of a [`Spawner`](crate::Spawner), which live as long as
//!   the master;
//! - exec of a setuid, setgid or file-capability program clears it;
//! - so does a service that changes its own credentials after exec, as
//!   Dovecot's binaries do when they drop privileges themselves
//!   (`drop_priv_before_exec = no`). That is why Dovecot's interface also
//!   has its master-dead pipe, which no credential change closes.
//!
//! **The executable is opened before the chroot** and executed through its
//! descriptor (`execveat` with `AT_EMPTY_PATH`), so a program kept outside
//! the chroot runs inside it. A *statically* linked program needs nothing
//! in the chroot. A *dynamically* linked one needs its loader (the ELF
//! interpreter, e.g. `/lib64/ld-linux-x86-64.so.2`) and its libraries at
//! the same paths inside the chroot, because the loader opens them by path
//! after the chroot. A script (`#!`) is executed by path, so the script and
//! its interpreter must both be inside the chroot.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::{Gid, Pid, Uid};

use crate::process::Child;

/// Bytes of stack for the child between clone and exec; it runs a few
/// dozen frames of straight-line code. A guard page lies below it.
const CHILD_STACK_SIZE: usize = 64 * 1024;

/// Descriptor numbers a plan may place descriptors at are below this.
const MAX_TARGET: RawFd = 1 << 16;

/// Decimal digits of the largest pid (`i32::MAX`).
const PID_DIGITS: usize = 10;

/// The exit status of a child whose setup failed before exec.
const SETUP_FAILED: libc::c_int = 127;

/// The identity a process takes before exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user (`user`).
    pub uid: Uid,
    /// The primary group (`group`, or the user's).
    pub gid: Gid,
    /// Supplementary groups (`extra_groups`); the primary group is added.
    pub extra_groups: Vec<Gid>,
    /// A group the process may switch its effective gid to and back
    /// (`privileged_group`): off at start, on with `setegid(privileged)`,
    /// off again with `setegid(primary)`.
    ///
    /// It is kept as the *real* gid. Dovecot keeps it as the saved gid, but
    /// its binaries set that after exec; when the supervisor drops
    /// privileges before exec, exec copies the effective gid over the saved
    /// one, and the real gid is the only slot that survives. Access checks
    /// and new files use the effective gid, so the real gid grants nothing
    /// until the process switches.
    pub privileged_gid: Option<Gid>,
}

impl Identity {
    /// The supplementary groups the process gets: the extra groups, then the
    /// primary group (so it stays usable while the effective gid is
    /// switched to the privileged one), without repeats.
    pub fn groups(&self) -> Vec<Gid> {
        let mut groups = Vec::with_capacity(self.extra_groups.len() + 1);
        for gid in self.extra_groups.iter().chain([&self.gid]) {
            if !groups.contains(gid) {
                groups.push(*gid);
            }
        }
        groups
    }

    /// The environment Dovecot's binaries read to drop privileges
    /// themselves after their privileged setup (`drop_priv_before_exec =
    /// no`): `RESTRICT_SETUID`, `RESTRICT_SETGID`, `RESTRICT_SETGID_PRIV`,
    /// `RESTRICT_SETEXTRAGROUPS` and `RESTRICT_CHROOT`, as Dovecot's master
    /// sets them. Not `RESTRICT_USER`, which would make the binary add the
    /// user's system groups (`initgroups`, a lookup per process) on top of
    /// the service's `extra_groups`.
    pub fn dovecot_restrict_env(&self, chroot: Option<&Path>) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("RESTRICT_SETUID".into(), self.uid.to_string().into()),
            ("RESTRICT_SETGID".into(), self.gid.to_string().into()),
        ];
        if let Some(privileged) = self.privileged_gid {
            env.push(("RESTRICT_SETGID_PRIV".into(), privileged.to_string().into()));
        }
        if !self.extra_groups.is_empty() {
            let list: Vec<String> = self.extra_groups.iter().map(Gid::to_string).collect();
            env.push(("RESTRICT_SETEXTRAGROUPS".into(), list.join(",").into()));
        }
        if let Some(chroot) = chroot {
            env.push(("RESTRICT_CHROOT".into(), chroot.as_os_str().to_owned()));
        }
        env
    }
}

/// One step of the child's setup, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Signal dispositions and mask reset.
    Signals = 1,
    /// Descriptors moved onto their target numbers.
    Descriptors,
    /// Every other descriptor closed.
    CloseOthers,
    /// `RLIMIT_DATA` and `RLIMIT_AS` set.
    Rlimits,
    /// `chroot` to the service's directory.
    Chroot,
    /// `chdir("/")` inside the new root.
    Chdir,
    /// Supplementary groups set.
    SetGroups,
    /// Real, effective and saved gid set.
    SetGid,
    /// Real, effective and saved uid set.
    SetUid,
    /// Checking that root cannot be regained.
    Verify,
    /// `PR_SET_PDEATHSIG` set, and the parent checked to be alive.
    DieWithParent,
    /// `PR_SET_NO_NEW_PRIVS` set.
    NoNewPrivs,
    /// The program executed.
    Exec,
}

impl Step {
    const ALL: [Step; 13] = [
        Step::Signals,
        Step::Descriptors,
        Step::CloseOthers,
        Step::Rlimits,
        Step::Chroot,
        Step::Chdir,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::Verify,
        Step::DieWithParent,
        Step::NoNewPrivs,
        Step::Exec,
    ];

    fn from_code(code: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|step| *step as u32 == code)
    }

    /// What to change when this step fails: the setting behind it.
    fn fix(self) -> &'static str {
        match self {
            Step::Rlimits => "check vsz_limit",
            Step::Chroot | Step::Chdir => {
                "check that chroot (or base_dir) names an existing directory"
            }
            Step::SetGroups => "check extra_groups",
            Step::SetGid => "check group and privileged_group",
            Step::SetUid | Step::Verify => "check user",
            Step::Exec => "check executable",
            Step::Signals
            | Step::Descriptors
            | Step::CloseOthers
            | Step::DieWithParent
            | Step::NoNewPrivs => "this is a fault in warden's process setup; please report it",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Signals => "resetting signals",
            Step::Descriptors => "placing descriptors",
            Step::CloseOthers => "closing inherited descriptors",
            Step::Rlimits => "setting RLIMIT_AS and RLIMIT_DATA",
            Step::Chroot => "chroot",
            Step::Chdir => "chdir to the new root",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setresgid",
            Step::SetUid => "setresuid",
            Step::Verify => "checking that root privileges are gone",
            Step::DieWithParent => "setting the parent-death signal",
            Step::NoNewPrivs => "setting no_new_privs",
            Step::Exec => "exec",
        })
    }
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The plan itself cannot be carried out.
    #[error("service {service}: {problem}")]
    Plan {
        /// The service being started.
        service: String,
        /// What is wrong with the plan.
        problem: String,
    },
    /// The executable cannot be opened.
    #[error("service {service}: cannot open the executable {}; check executable", path.display())]
    Open {
        /// The service being started.
        service: String,
        /// The program's path.
        path: PathBuf,
        /// Why it cannot be opened.
        #[source]
        source: io::Error,
    },
    /// Preparing the child failed in the parent.
    #[error("service {service}: {operation} failed before the process started{}", crate::limits::advice(.source))]
    Parent {
        /// The service being started.
        service: String,
        /// What was being done.
        operation: &'static str,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A step failed in the child, which then exited.
    #[error("service {service}: {step} failed in the new process; {}{hint}", step.fix())]
    Child {
        /// The service being started.
        service: String,
        /// The step that failed.
        step: Step,
        /// Why it failed.
        #[source]
        source: io::Error,
        /// More advice where the errno allows it.
        hint: &'static str,
    },
}

/// Everything needed to start one process of a service.
#[derive(Debug)]
pub struct SpawnPlan {
    service: String,
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    own_pid_env: Option<OsString>,
    fds: Vec<(OwnedFd, RawFd)>,
    /// `(placed, target)`: the descriptor placed at `placed` goes to
    /// `target` too.
    also: Vec<(RawFd, RawFd)>,
    vsz_limit: Option<u64>,
    chroot: Option<PathBuf>,
    working_dir: Option<PathBuf>,
    umask: Option<libc::mode_t>,
    identity: Option<Identity>,
    no_new_privs: bool,
}

impl SpawnPlan {
    /// A plan to run `argv` (program first) for `service`, with an empty
    /// environment, no descriptors, no limits, the parent's identity, and
    /// `no_new_privs` set.
    pub fn new<S: AsRef<OsStr>>(service: &str, argv: impl IntoIterator<Item = S>) -> Self {
        SpawnPlan {
            service: service.to_owned(),
            argv: argv.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            env: Vec::new(),
            own_pid_env: None,
            fds: Vec::new(),
            also: Vec::new(),
            vsz_limit: None,
            chroot: None,
            working_dir: None,
            umask: None,
            identity: None,
            no_new_privs: true,
        }
    }

    /// Adds an environment variable.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Sets the environment variable `key` to the child's own process id,
    /// which only the child knows (systemd's `LISTEN_PID`).
    pub fn env_own_pid(&mut self, key: impl AsRef<OsStr>) -> &mut Self {
        self.own_pid_env = Some(key.as_ref().to_owned());
        self
    }

    /// Places `fd` at descriptor number `target` in the child. The parent's
    /// copy is closed once the child has started.
    pub fn fd(&mut self, fd: OwnedFd, target: RawFd) -> &mut Self {
        self.fds.push((fd, target));
        self
    }

    /// Places the descriptor placed at `placed` (with [`SpawnPlan::fd`])
    /// at `target` as well: an inetd process's connection is its stdin and
    /// its stdout, with no duplicate made for it in the parent.
    pub fn fd_also(&mut self, placed: RawFd, target: RawFd) -> &mut Self {
        self.also.push((placed, target));
        self
    }

    /// Sets `RLIMIT_AS` and `RLIMIT_DATA` (soft and hard) to `bytes`;
    /// `None` leaves them as they are.
    pub fn vsz_limit(&mut self, bytes: Option<u64>) -> &mut Self {
        self.vsz_limit = bytes;
        self
    }

    /// Sets the file mode creation mask the process starts with (Dovecot's
    /// children expect 0077); without it, the parent's is inherited.
    pub fn umask(&mut self, mask: u32) -> &mut Self {
        self.umask = Some(mask);
        self
    }

    /// Starts the child in `dir` when it is not chrooted (a chrooted child
    /// starts at its new root).
    pub fn working_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Chroots the child into `dir` before it drops privileges.
    pub fn chroot(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.chroot = Some(dir.into());
        self
    }

    /// Switches the child to `identity` before exec.
    pub fn identity(&mut self, identity: Identity) -> &mut Self {
        self.identity = Some(identity);
        self
    }

    /// Leaves `no_new_privs` unset, for services that must run setuid
    /// programs.
    pub fn allow_new_privileges(&mut self) -> &mut Self {
        self.no_new_privs = false;
        self
    }

    fn plan_error(&self, problem: impl Into<String>) -> SpawnError {
        SpawnError::Plan {
            service: self.service.clone(),
            problem: problem.into(),
        }
    }

    fn parent_error(&self, operation: &'static str) -> impl FnOnce(io::Error) -> SpawnError {
        let service = self.service.clone();
        move |source| SpawnError::Parent {
            service,
            operation,
            source,
        }
    }

    /// Starts the process. Returns once it has executed its program, or
    /// with the step that failed.
    pub fn spawn(self) -> Result<Child, SpawnError> {
        let argv = c_strings(self.argv.iter().map(OsString::as_os_str))
            .ok_or_else(|| self.plan_error("an argument contains a NUL byte"))?;
        let Some(program) = argv.first() else {
            return Err(self.plan_error("the executable is empty"));
        };
        let env = c_strings(self.env.iter().map(|(key, value)| {
            let mut entry = key.clone();
            entry.push("=");
            entry.push(value);
            entry
        }))
        .ok_or_else(|| self.plan_error("an environment variable contains a NUL byte"))?;
        if self
            .env
            .iter()
            .map(|(key, _)| key)
            .chain(&self.own_pid_env)
            .any(|key| key.is_empty() || key.as_bytes().contains(&b'='))
        {
            return Err(self.plan_error("an environment variable name is empty or contains '='"));
        }
        let path = |dir: &Option<PathBuf>, what: &str| match dir {
            Some(dir) => CString::new(dir.as_os_str().as_bytes())
                .map(Some)
                .map_err(|_| self.plan_error(format!("the {what} path contains a NUL byte"))),
            None => Ok(None),
        };
        let chroot = path(&self.chroot, "chroot")?;
        let working_dir = path(&self.working_dir, "working directory")?;
        let mut targets: Vec<RawFd> = self.fds.iter().map(|(_, t)| *t).collect();
        if let Some((placed, _)) = self
            .also
            .iter()
            .find(|(placed, _)| !targets.contains(placed))
        {
            return Err(self.plan_error(format!(
                "descriptor {placed} is placed again, but nothing is placed there"
            )));
        }
        targets.extend(self.also.iter().map(|(_, t)| *t));
        if targets
            .iter()
            .any(|target| !(0..MAX_TARGET).contains(target))
        {
            return Err(self.plan_error(format!("a descriptor is placed outside 0..{MAX_TARGET}")));
        }
        if let Some(own) = &self.own_pid_env
            && self.env.iter().any(|(key, _)| key == own)
        {
            return Err(self.plan_error(format!(
                "{} is set both to a value and to the process's pid",
                own.to_string_lossy()
            )));
        }
        targets.sort_unstable();
        if targets.windows(2).any(|pair| pair.first() == pair.get(1)) {
            return Err(self.plan_error("two descriptors are placed at the same number"));
        }
        let max_target = targets.last().copied().unwrap_or(-1);
        let above = max_target + 1;

        let executable = Executable::open_kept(program).map_err(|source| SpawnError::Open {
            service: self.service.clone(),
            path: PathBuf::from(OsStr::from_bytes(program.as_bytes())),
            source,
        })?;
        // What the child keeps open and moves into place must sit above
        // every target, so that no move overwrites a descriptor not yet
        // moved and the close of the numbers between spares it. Those that
        // do already (most: a master's own descriptors take the low
        // numbers) are used where they are; the others are duplicated above
        // for the child, in `duplicates` until it has started.
        let mut duplicates = Vec::new();
        let exec_fd = above_targets(executable.fd.as_fd(), above, &mut duplicates)
            .map_err(self.parent_error("duplicating the executable's descriptor"))?;
        let mut moves: Vec<(RawFd, RawFd)> = Vec::with_capacity(targets.len());
        for (fd, target) in &self.fds {
            let from = above_targets(fd.as_fd(), above, &mut duplicates)
                .map_err(self.parent_error("duplicating a descriptor for the child"))?;
            moves.push((from, *target));
        }
        for &(placed, target) in &self.also {
            if let Some(&(from, _)) = moves.iter().find(|(_, to)| *to == placed) {
                moves.push((from, target));
            }
        }

        // `KEY=` and room for the digits of any pid and a NUL, which the
        // child fills in.
        let mut own_pid_entry: Option<Vec<u8>> = self.own_pid_env.as_ref().map(|key| {
            let mut entry = key.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend([0u8; PID_DIGITS + 1]);
            entry
        });
        let own_pid = own_pid_entry.as_mut().map(|entry| {
            let digits_at = entry.len() - (PID_DIGITS + 1);
            entry.as_mut_ptr().wrapping_add(digits_at)
        });
        let argv_ptrs = pointers(&argv);
        let mut env_ptrs = pointers(&env);
        if let Some(entry) = &own_pid_entry {
            env_ptrs.insert(env_ptrs.len() - 1, entry.as_ptr().cast());
        }
        let groups: Vec<libc::gid_t> = self
            .identity
            .as_ref()
            .map(|id| id.groups().into_iter().map(Gid::as_raw).collect())
            .unwrap_or_default();
        let report = AtomicU64::new(NO_REPORT);
        let plan = ChildPlan {
            moves: &moves,
            max_target,
            keep: exec_fd,
            vsz_limit: self.vsz_limit,
            chroot: chroot.as_deref(),
            working_dir: working_dir.as_deref(),
            umask: self.umask,
            identity: self.identity.as_ref().map(|id| ChildIdentity {
                uid: id.uid.as_raw(),
                real_gid: id.privileged_gid.unwrap_or(id.gid).as_raw(),
                gid: id.gid.as_raw(),
                groups: &groups,
            }),
            parent: nix::unistd::getpid().as_raw(),
            no_new_privs: self.no_new_privs,
            exec: if executable.script {
                Exec::Path(program)
            } else {
                Exec::Fd(exec_fd)
            },
            argv: argv_ptrs.as_ptr(),
            envp: env_ptrs.as_ptr(),
            report: &report,
            own_pid,
            to_reset: TO_RESET.load(Ordering::Acquire),
            empty_mask: *SigSet::empty().as_ref(),
        };

        let (pid, pidfd) = clone_child(&plan).map_err(self.parent_error("clone"))?;
        drop(duplicates);
        let child = Child::new(pid, pidfd);

        match read_report(report.load(Ordering::Acquire)) {
            Ok(None) => Ok(child),
            Ok(Some((step, errno))) => {
                // The child has exited; collect it so it leaves no zombie.
                let _ = child.wait();
                Err(SpawnError::Child {
                    hint: hint(step, errno, self.chroot.is_some()),
                    service: self.service,
                    step,
                    source: io::Error::from_raw_os_error(errno),
                })
            }
            Err(source) => {
                let _ = child.kill_and_wait();
                Err(SpawnError::Parent {
                    service: self.service,
                    operation: "reading the child's setup report",
                    source,
                })
            }
        }
    }
}

/// More advice for a failed step, where its errno is telling.
fn hint(step: Step, errno: i32, chrooted: bool) -> &'static str {
    match (step, errno) {
        (Step::Exec, libc::ENOENT) if chrooted => {
            " (a dynamically linked program needs its loader and libraries inside the chroot; a static one needs nothing there)"
        }
        (Step::Exec, libc::EACCES) => {
            " (it must be a regular file with execute permission for the service's user, on a file system not mounted noexec)"
        }
        (Step::Verify, 0) => " (the process could become root again)",
        (Step::Signals, libc::EINVAL) => {
            " (the kernel refused the signal action warden writes for this architecture: report it to warden's developers with `uname -mr`)"
        }
        (Step::Rlimits, libc::EPERM) => " (only root can raise a hard limit)",
        (Step::SetUid | Step::SetGid | Step::SetGroups, libc::EPERM) => {
            " (changing identity needs root)"
        }
        _ => "",
    }
}

/// The executable, opened before any chroot.
struct Executable {
    fd: OwnedFd,
    /// Whether it starts with `#!`, and so must be executed by path.
    script: bool,
}

/// How many executables a thread keeps open; past it, it forgets them all
/// and opens each again as it is next spawned.
const KEPT_EXECUTABLES: usize = 256;

/// Kept executables from before the last [`forget_executables`] are
/// closed at their thread's next spawn.
static EXECUTABLES_SINCE: AtomicU64 = AtomicU64::new(0);

/// The executables a thread opened, by path, each with the stamp of the
/// file it was opened as, and the [`EXECUTABLES_SINCE`] they were kept
/// under.
#[derive(Default)]
struct Kept {
    since: u64,
    executables: HashMap<CString, (Stamp, Rc<Executable>)>,
}

thread_local! {
    /// This thread's kept executables.
    static EXECUTABLES: std::cell::RefCell<Kept> = std::cell::RefCell::default();
}

/// Lets every spawning thread close the executables it keeps open at its
/// next spawn: those of services gone from the configuration, or replaced
/// on disk and not spawned since, would otherwise hold their files (and
/// their file systems) open. The master calls it at each reload.
pub fn forget_executables() {
    EXECUTABLES_SINCE.fetch_add(1, Ordering::Relaxed);
}

/// What tells a file replaced or changed since it was opened: its device,
/// inode, and the times its contents and its inode last changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([i64; 6]);

impl Stamp {
    /// The stamp of the file at `path` now.
    fn of(path: &CStr) -> io::Result<Stamp> {
        let stat = nix::sys::stat::stat(path)?;
        Ok(Stamp([
            i64::try_from(stat.st_dev).unwrap_or(-1),
            i64::try_from(stat.st_ino).unwrap_or(-1),
            stat.st_mtime,
            stat.st_mtime_nsec,
            stat.st_ctime,
            stat.st_ctime_nsec,
        ]))
    }
}

impl Executable {
    /// `path` opened as [`Executable::open`] does, or the descriptor this
    /// thread opened for it before, as long as the file at `path` is the
    /// same and unchanged: one `stat` a spawn instead of opening and
    /// reading it each time.
    fn open_kept(path: &CStr) -> io::Result<Rc<Executable>> {
        let stamp = Stamp::of(path)?;
        EXECUTABLES.with(|kept| {
            let mut kept = kept.borrow_mut();
            let since = EXECUTABLES_SINCE.load(Ordering::Relaxed);
            if kept.since != since || kept.executables.len() >= KEPT_EXECUTABLES {
                kept.executables.clear();
                kept.since = since;
            }
            if let Some((opened_as, executable)) = kept.executables.get(path)
                && *opened_as == stamp
            {
                return Ok(Rc::clone(executable));
            }
            let executable = Rc::new(Executable::open(path)?);
            kept.executables
                .insert(path.to_owned(), (stamp, Rc::clone(&executable)));
            Ok(executable)
        })
    }

    /// Opens `path` for execution only (`O_PATH`), so a program its owner
    /// may run but not read still runs; reading its first bytes, where
    /// allowed, tells a script.
    fn open(path: &CStr) -> io::Result<Executable> {
        let path = Path::new(OsStr::from_bytes(path.to_bytes()));
        let fd = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )?;
        let mut magic = [0u8; 2];
        let script = std::fs::File::open(path)
            .and_then(|file| std::os::unix::fs::FileExt::read_at(&file, &mut magic, 0))
            .is_ok_and(|read| read == 2 && magic == *b"#!");
        Ok(Executable { fd, script })
    }
}

fn c_strings<'a>(items: impl IntoIterator<Item = impl AsRef<OsStr> + 'a>) -> Option<Vec<CString>> {
    items
        .into_iter()
        .map(|item| CString::new(item.as_ref().as_bytes()).ok())
        .collect()
}

/// A NULL-terminated array of pointers into `strings`.
fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// Duplicates `fd` to the lowest free number at or above `min`, close-on-exec.
/// The number the child finds `fd` at, at `min` or above: its own, or a
/// duplicate's, which is kept in `duplicates`.
fn above_targets(
    fd: BorrowedFd<'_>,
    min: RawFd,
    duplicates: &mut Vec<OwnedFd>,
) -> io::Result<RawFd> {
    if fd.as_raw_fd() >= min {
        return Ok(fd.as_raw_fd());
    }
    let duplicate = dup_above(fd, min)?;
    let number = duplicate.as_raw_fd();
    duplicates.push(duplicate);
    Ok(number)
}

fn dup_above(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else
    // owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a child that did not fail left as its report.
const NO_REPORT: u64 = 0;

/// The bit that makes every report of a failure differ from [`NO_REPORT`].
const FAILED: u64 = 1 << 63;

/// A failed step and its errno as the child stores them: [`FAILED`], the
/// step's code in the high half, the errno in the low half.
fn report_of((step, errno): Failed) -> u64 {
    FAILED | u64::from(step as u32) << 32 | u64::from(errno.cast_unsigned())
}

/// Reads the child's setup report: `None` if it stored none (the exec
/// happened), or the failed step and its errno.
fn read_report(report: u64) -> io::Result<Option<Failed>> {
    if report == NO_REPORT {
        return Ok(None);
    }
    let code = u32::try_from((report & !FAILED) >> 32).unwrap_or(u32::MAX);
    let errno = u32::try_from(report & u64::from(u32::MAX))
        .unwrap_or_default()
        .cast_signed();
    let step = Step::from_code(code).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unknown setup step {code}"),
        )
    })?;
    Ok(Some((step, errno)))
}

/// How the child executes its program.
enum Exec<'a> {
    /// Through the descriptor opened before the chroot.
    Fd(RawFd),
    /// By path (scripts, whose interpreter needs the path).
    Path(&'a CStr),
}

/// The identity switch, as raw ids.
struct ChildIdentity<'a> {
    uid: libc::uid_t,
    /// The privileged gid, or the primary one.
    real_gid: libc::gid_t,
    /// The primary gid: effective and saved.
    gid: libc::gid_t,
    groups: &'a [libc::gid_t],
}

/// Everything the child reads, prepared in the parent. The child only reads
/// it; the parent keeps it alive until the child has executed or exited.
struct ChildPlan<'a> {
    /// `(from, to)`: descriptor numbers to `dup3` in the child.
    moves: &'a [(RawFd, RawFd)],
    /// The highest target number, or -1.
    max_target: RawFd,
    /// The descriptor above `max_target` to keep open through setup: the
    /// executable's.
    keep: RawFd,
    vsz_limit: Option<u64>,
    chroot: Option<&'a CStr>,
    working_dir: Option<&'a CStr>,
    umask: Option<libc::mode_t>,
    identity: Option<ChildIdentity<'a>>,
    /// The pid of the process making the plan: the child's parent, as
    /// long as that is alive.
    parent: libc::pid_t,
    no_new_privs: bool,
    exec: Exec<'a>,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Where the child stores its report ([`report_of`]) if a step fails.
    report: &'a AtomicU64,
    /// Where to write the child's pid in decimal, NUL-terminated, in the
    /// environment entry the parent reserved ([`PID_DIGITS`] + 1 bytes).
    own_pid: Option<*mut u8>,
    /// The signals to set back to their default action: [`TO_RESET`] when
    /// the plan was made.
    to_reset: u64,
    /// The child's signal mask: empty.
    empty_mask: libc::sigset_t,
}

/// The signals each child sets back to their default action before
/// anything else, one bit per signal ([`signal_bit`]): every signal until
/// [`note_signal_dispositions`] narrows them to those this process
/// catches or ignores.
static TO_RESET: AtomicU64 = AtomicU64::new(u64::MAX);

/// The kernel's `struct sigaction`, as the `rt_sigaction` system call
/// reads and writes it: room for its handler, flags, restorer (where there
/// is one) and mask. The C library's differs, and its wrapper refuses the
/// two signals it keeps for itself, which a service must not inherit
/// ignored either.
type KernelAction = [u64; 4];

// Where the kernel's sigaction is laid out as above, with an 8-byte
// signal set; MIPS, SPARC and Alpha differ.
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64"
)))]
compile_error!(
    "warden-sys resets signals with the kernel's sigaction of x86_64, aarch64 and riscv64 only"
);

/// SIG_DFL, with no flags and an empty mask: all zeroes.
static DEFAULT_ACTION: KernelAction = [0; 4];

/// The size of the kernel's signal set, which `rt_sigaction` checks.
const KERNEL_SIGSET_SIZE: usize = 8;

/// The bit of `signal` (1 to 64) in [`TO_RESET`].
const fn signal_bit(signal: libc::c_int) -> u64 {
    1 << (signal - 1)
}

/// Notes which signals this process catches or ignores, so that the
/// children spawned from now on set only those back to their default
/// action, not all 62 (a system call each, in the child, before its exec:
/// a good part of what a spawn costs). Returns them, bit `n - 1` for
/// signal `n`, as `/proc/PID/status` shows its signal masks.
///
/// Call it once the process has installed every handler it will. A
/// signal caught or ignored only after the call is not reset: an ignored
/// one would stay ignored in the service, and a handler would stay in the
/// child until its exec (which resets it), where such a signal arriving
/// after the child empties its mask would run it in this process's
/// memory. Until the first call, children reset every signal.
pub fn note_signal_dispositions() -> u64 {
    let mut noted = 0;
    for signal in 1..=64 {
        let mut action = DEFAULT_ACTION;
        // SAFETY: with a null new action, `rt_sigaction` only writes the
        // current one into `action`, which has room for it and lives for
        // the call.
        let read = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                std::ptr::null::<KernelAction>(),
                &raw mut action,
                KERNEL_SIGSET_SIZE,
            )
        };
        // Whatever the layout, SIG_DFL with no flags reads as all zeroes;
        // anything else (a handler, SIG_IGN) is reset, as is a signal
        // whose action cannot be read.
        if read != 0 || action != DEFAULT_ACTION {
            noted |= signal_bit(signal);
        }
    }
    TO_RESET.store(noted, Ordering::Release);
    noted
}

/// Starts the child with `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`.
/// Returns when the child has executed its program or exited.
fn clone_child(plan: &ChildPlan<'_>) -> io::Result<(Pid, OwnedFd)> {
    CHILD_STACK.with(|cell| {
        let stack = match cell.take() {
            Some(stack) => stack,
            None => ChildStack::new()?,
        };
        let cloned = clone_on(plan, &stack);
        cell.set(Some(stack));
        cloned
    })
}

thread_local! {
    /// The stack this thread's children ran on, kept for the next: a
    /// child is done with it once `clone` returns (CLONE_VFORK), so one
    /// per spawning thread serves every spawn without a mapping each.
    static CHILD_STACK: std::cell::Cell<Option<ChildStack>> = const { std::cell::Cell::new(None) };
}

/// Starts the child on `stack`, which nothing else uses until this
/// returns.
fn clone_on(plan: &ChildPlan<'_>, stack: &ChildStack) -> io::Result<(Pid, OwnedFd)> {
    let top = stack.top();

    // Block every signal so none of the parent's handlers runs in the child
    // before it resets them; the child empties its mask itself.
    let mut old_mask = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old_mask),
    )?;

    let mut pidfd: libc::c_int = -1;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD;
    // SAFETY: `child_entry` is an `extern "C"` function that only reads
    // `plan`, which outlives the call because CLONE_VFORK suspends this
    // thread until the child has executed or exited. `top` is the aligned
    // end of `stack`'s writable pages, which also live until then and are
    // used by nothing else (the caller keeps the stack for this thread
    // alone). With CLONE_PIDFD the kernel stores the pidfd in `pidfd`,
    // passed as the parent_tid argument.
    let pid = unsafe {
        libc::clone(
            child_entry,
            top.cast(),
            flags,
            std::ptr::from_ref(plan).cast_mut().cast(),
            &raw mut pidfd,
        )
    };
    let clone_error = io::Error::last_os_error();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None)?;
    if pid < 0 {
        return Err(clone_error);
    }
    // SAFETY: CLONE_PIDFD made the kernel open a new pidfd for the child and
    // store it in `pidfd`; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok((Pid::from_raw(pid), pidfd))
}

/// The child's whole life before exec. Runs on its own stack, sharing the
/// parent's memory: it must not allocate, lock, log or panic.
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `&ChildPlan` passed by `clone_child`, alive and
    // unchanged until this process executes or exits.
    let plan = unsafe { &*arg.cast_const().cast::<ChildPlan<'_>>() };
    let failure = match run_child(plan) {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    // The parent, held by CLONE_VFORK until this process exits, reads it
    // once it is woken.
    plan.report.store(report_of(failure), Ordering::Release);
    // SAFETY: `_exit` ends the process without running the parent's atexit
    // handlers or flushing its stdio buffers, which this process shares.
    unsafe { libc::_exit(SETUP_FAILED) }
}

/// A failure: the step and its errno.
type Failed = (Step, i32);

/// The errno of the last failed call.
fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The child's stack: its own mapping, with an inaccessible guard page
/// below it, so an overflow faults instead of writing into the parent's
/// memory, which the child shares.
struct ChildStack {
    base: std::ptr::NonNull<libc::c_void>,
    len: usize,
}

impl ChildStack {
    fn new() -> io::Result<ChildStack> {
        let guard = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)?
            .and_then(|size| usize::try_from(size).ok())
            .unwrap_or(4096);
        let len = guard + CHILD_STACK_SIZE;
        let Some(length) = std::num::NonZeroUsize::new(len) else {
            return Err(io::Error::other("a child stack of no size"));
        };
        // SAFETY: an anonymous private mapping of new memory, placed by the
        // kernel; no existing memory is affected.
        let base = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                length,
                nix::sys::mman::ProtFlags::PROT_NONE,
                nix::sys::mman::MapFlags::MAP_PRIVATE | nix::sys::mman::MapFlags::MAP_STACK,
            )
        }?;
        let stack = ChildStack { base, len };
        let Some(usable) = std::ptr::NonNull::new(base.as_ptr().cast::<u8>().wrapping_add(guard))
        else {
            return Err(io::Error::other(
                "the child stack mapping is at the end of memory",
            ));
        };
        // SAFETY: the pages above the guard lie inside the mapping just
        // made, which nothing else uses.
        unsafe {
            nix::sys::mman::mprotect(
                usable.cast(),
                CHILD_STACK_SIZE,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
            )
        }?;
        Ok(stack)
    }

    /// The top of the stack (it grows down), aligned to 16 bytes as the
    /// ABI wants; the mapping is page-aligned, so its end already is.
    fn top(&self) -> *mut u8 {
        self.base.as_ptr().cast::<u8>().wrapping_add(self.len)
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping is ours, and every child that ran on it has
        // executed or exited (CLONE_VFORK) before its clone returned, so
        // nothing uses it any more.
        let _ = unsafe { nix::sys::mman::munmap(self.base, self.len) };
    }
}

/// Runs a raw system call's result check: `-1` means failure with errno.
fn check(step: Step, result: libc::c_long) -> Result<libc::c_long, Failed> {
    if result == -1 {
        Err((step, errno()))
    } else {
        Ok(result)
    }
}

/// The child's setup, in the documented order. Returns only on failure.
fn run_child(plan: &ChildPlan<'_>) -> Result<std::convert::Infallible, Failed> {
    // 1. Signals: default dispositions (a service must not inherit the
    //    master's handlers or its ignored SIGPIPE), then an empty mask.
    for signal in 1..=64 {
        if plan.to_reset & signal_bit(signal) == 0
            || signal == libc::SIGKILL
            || signal == libc::SIGSTOP
        {
            continue;
        }
        // SAFETY: `DEFAULT_ACTION` is a valid kernel sigaction (SIG_DFL)
        // that outlives the call, and no old action is asked for.
        check(Step::Signals, unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &raw const DEFAULT_ACTION,
                std::ptr::null_mut::<KernelAction>(),
                KERNEL_SIGSET_SIZE,
            )
        })?;
    }
    // SAFETY: `empty_mask` is a valid empty signal set prepared by the parent.
    let emptied = unsafe {
        libc::sigprocmask(
            libc::SIG_SETMASK,
            &raw const plan.empty_mask,
            std::ptr::null_mut(),
        )
    };
    check(Step::Signals, emptied.into())?;

    // 2. Descriptors into place. Every source is above every target, so
    //    no move overwrites a source still to be moved. dup3 without
    //    O_CLOEXEC leaves the target open across exec.
    for &(from, to) in plan.moves {
        // SAFETY: `from` is open (duplicated by the parent for this child)
        // and `to` is a plain descriptor number.
        check(Step::Descriptors, unsafe {
            libc::syscall(libc::SYS_dup3, from, to, 0)
        })?;
    }

    // 3. Close everything else: the unused numbers up to the highest
    //    target, then everything above it except the executable
    //    (close-on-exec, so exec closes it).
    for fd in 0..=plan.max_target {
        if !plan.moves.iter().any(|&(_, to)| to == fd) {
            // SAFETY: closing a number that may or may not be open; EBADF
            // is expected and harmless.
            unsafe {
                libc::syscall(libc::SYS_close, fd);
            }
        }
    }
    close_range(plan.max_target + 1, plan.keep - 1)?;
    close_range(plan.keep + 1, RawFd::MAX)?;

    // 4. Address-space limits, soft and hard, so the service cannot raise
    //    them again. RLIMIT_DATA first, as Dovecot does.
    if let Some(bytes) = plan.vsz_limit {
        let limit = libc::rlimit64 {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        for resource in [libc::RLIMIT_DATA, libc::RLIMIT_AS] {
            // SAFETY: `limit` is a valid rlimit64; pid 0 is this process.
            check(Step::Rlimits, unsafe {
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    resource,
                    &raw const limit,
                    std::ptr::null_mut::<libc::rlimit64>(),
                )
            })?;
        }
    }

    // 5. The new root, entered while still privileged.
    //    Without a chroot, the working directory the plan names, if any.
    if let Some(dir) = plan.chroot {
        // SAFETY: `dir` is a NUL-terminated path owned by the parent.
        check(Step::Chroot, unsafe {
            libc::syscall(libc::SYS_chroot, dir.as_ptr())
        })?;
        // SAFETY: a static NUL-terminated path.
        check(Step::Chdir, unsafe {
            libc::syscall(libc::SYS_chdir, c"/".as_ptr())
        })?;
    } else if let Some(dir) = plan.working_dir {
        // SAFETY: `dir` is a NUL-terminated path owned by the parent.
        check(Step::Chdir, unsafe {
            libc::syscall(libc::SYS_chdir, dir.as_ptr())
        })?;
    }
    if let Some(mask) = plan.umask {
        // SAFETY: umask takes a plain integer and cannot fail.
        unsafe {
            libc::syscall(libc::SYS_umask, mask);
        }
    }

    // 6-9. Identity: groups, then gid, then uid last, then proof.
    if let Some(id) = &plan.identity {
        // SAFETY: `groups` points at `len` gids owned by the parent. This
        // is the raw call: glibc's setgroups would try to signal the
        // parent's threads.
        check(Step::SetGroups, unsafe {
            libc::syscall(libc::SYS_setgroups, id.groups.len(), id.groups.as_ptr())
        })?;
        // SAFETY: plain integer arguments; raw for the same reason.
        check(Step::SetGid, unsafe {
            libc::syscall(libc::SYS_setresgid, id.real_gid, id.gid, id.gid)
        })?;
        // SAFETY: plain integer arguments; raw for the same reason.
        check(Step::SetUid, unsafe {
            libc::syscall(libc::SYS_setresuid, id.uid, id.uid, id.uid)
        })?;
        // SAFETY: plain integer argument; this call is expected to fail.
        if id.uid != 0 && unsafe { libc::syscall(libc::SYS_setuid, 0) } != -1 {
            return Err((Step::Verify, 0));
        }
        // SAFETY: plain integer argument; this call is expected to fail.
        if id.uid != 0 && id.gid != 0 && unsafe { libc::syscall(libc::SYS_setgid, 0) } != -1 {
            return Err((Step::Verify, 0));
        }
    }

    // 10. SIGTERM when the master dies. Here, after the identity change,
    //     which clears it; then proof that the master was alive when it was
    //     asked for: if it died before, this process was reparented and no
    //     signal will come, so it leaves now. No one is left to read a
    //     report.
    let (sigterm, unused): (libc::c_ulong, libc::c_ulong) =
        (libc::SIGTERM.unsigned_abs().into(), 0);
    // SAFETY: PR_SET_PDEATHSIG takes a signal number and three unused
    // arguments, all unsigned longs.
    check(Step::DieWithParent, unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            sigterm,
            unused,
            unused,
            unused,
        )
    })?;
    // SAFETY: getppid takes no arguments and cannot fail.
    let parent = unsafe { libc::syscall(libc::SYS_getppid) };
    if parent != libc::c_long::from(plan.parent) {
        // SAFETY: `_exit` ends this process at once, as in `child_entry`.
        unsafe { libc::_exit(SETUP_FAILED) }
    }

    // 11. No setuid program can raise this process's privileges again.
    if plan.no_new_privs {
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        // SAFETY: PR_SET_NO_NEW_PRIVS takes 1 and three unused arguments,
        // all unsigned longs.
        check(Step::NoNewPrivs, unsafe {
            libc::syscall(
                libc::SYS_prctl,
                libc::PR_SET_NO_NEW_PRIVS,
                on,
                unused,
                unused,
                unused,
            )
        })?;
    }

    // The child's own pid, for the one environment entry that needs it.
    if let Some(digits) = plan.own_pid {
        // SAFETY: getpid takes no arguments and cannot fail.
        let pid = unsafe { libc::syscall(libc::SYS_getpid) };
        write_decimal(digits, pid.unsigned_abs());
    }

    // 12. Exec. It returns only on failure.
    match plan.exec {
        // SAFETY: `fd` is the open executable; the empty path with
        // AT_EMPTY_PATH names it; argv and envp are NULL-terminated arrays
        // of NUL-terminated strings owned by the parent.
        Exec::Fd(fd) => unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd,
                c"".as_ptr(),
                plan.argv,
                plan.envp,
                libc::AT_EMPTY_PATH,
            );
        },
        // SAFETY: as above, with a NUL-terminated path.
        Exec::Path(path) => unsafe {
            libc::syscall(libc::SYS_execve, path.as_ptr(), plan.argv, plan.envp);
        },
    }
    Err((Step::Exec, errno()))
}

/// Writes `value` in decimal at `at`, then a NUL: at most [`PID_DIGITS`] + 1
/// bytes, which the caller reserved. Arithmetic only, for the child.
fn write_decimal(at: *mut u8, value: u64) {
    let mut digits = [0u8; PID_DIGITS];
    let mut count = 0;
    let mut rest = value;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
        count += 1;
        if rest == 0 {
            break;
        }
    }
    let first = PID_DIGITS - count;
    for (offset, digit) in digits.iter().skip(first).enumerate() {
        let slot = at.wrapping_add(offset);
        // SAFETY: `offset` < `count` <= PID_DIGITS, so `slot` is inside the
        // reserved buffer, which the parent keeps alive until exec.
        unsafe { slot.write(*digit) };
    }
    let end = at.wrapping_add(count);
    // SAFETY: `count` <= PID_DIGITS, so the NUL is inside the buffer too.
    unsafe { end.write(0) };
}

/// Closes every descriptor from `low` to `high` inclusive; nothing if the
/// range is empty.
fn close_range(low: RawFd, high: RawFd) -> Result<(), Failed> {
    if low > high || high < 0 {
        return Ok(());
    }
    let low = low.max(0);
    // SAFETY: close_range takes two descriptor numbers and flags; closing
    // numbers that are not open is not an error.
    check(Step::CloseOthers, unsafe {
        libc::syscall(
            libc::SYS_close_range,
            low as libc::c_uint,
            high as libc::c_uint,
            0,
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_add_the_primary_once() {
        let identity = Identity {
            uid: Uid::from_raw(1000),
            gid: Gid::from_raw(100),
            extra_groups: vec![Gid::from_raw(8), Gid::from_raw(100), Gid::from_raw(12)],
            privileged_gid: None,
        };
        assert_eq!(identity.groups(), [8, 100, 12].map(Gid::from_raw).to_vec());
    }

    #[test]
    fn every_step_has_a_code_that_reads_back() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step as u32), Some(step));
        }
        assert_eq!(Step::from_code(0), None);
    }

    #[test]
    fn every_report_reads_back_as_its_step_and_errno() {
        assert_eq!(read_report(NO_REPORT).ok(), Some(None));
        for step in Step::ALL {
            for errno in [0, libc::EPERM, libc::ENOENT, i32::MAX] {
                assert_eq!(
                    read_report(report_of((step, errno))).ok(),
                    Some(Some((step, errno)))
                );
            }
        }
    }

    #[test]
    fn dovecot_restrict_env_names_every_part_of_the_identity() {
        let identity = Identity {
            uid: Uid::from_raw(97),
            gid: Gid::from_raw(97),
            extra_groups: vec![Gid::from_raw(8), Gid::from_raw(12)],
            privileged_gid: Some(Gid::from_raw(8)),
        };
        let env = identity.dovecot_restrict_env(Some(Path::new("/run/dovecot/empty")));
        let pairs: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("RESTRICT_SETUID", "97"),
                ("RESTRICT_SETGID", "97"),
                ("RESTRICT_SETGID_PRIV", "8"),
                ("RESTRICT_SETEXTRAGROUPS", "8,12"),
                ("RESTRICT_CHROOT", "/run/dovecot/empty"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }

    #[test]
    fn an_executable_replaced_at_its_path_is_opened_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = dir.path().join("program");
        // Binaries, not scripts: those are executed through the kept
        // descriptor, which would run the old file if it were not
        // replaced.
        let put = |binary: &str| {
            let aside = dir.path().join("aside");
            std::fs::copy(binary, &aside).expect("copy");
            std::fs::rename(&aside, &program).expect("rename into place");
        };
        let run = || {
            // Other tests spawn on other threads meanwhile; a child of
            // theirs, between its clone and its exec, holds the copy's
            // write descriptor, and exec refuses a file open for writing.
            let mut busy = 0;
            let child = loop {
                match SpawnPlan::new("test", [&program]).spawn() {
                    Err(SpawnError::Child { source, .. })
                        if source.kind() == io::ErrorKind::ExecutableFileBusy && busy < 100 =>
                    {
                        busy += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    spawned => break spawned.expect("spawned"),
                }
            };
            child.wait().expect("waited")
        };
        put("/bin/false");
        assert_eq!(run(), crate::Exit::Code(1));
        assert_eq!(run(), crate::Exit::Code(1), "kept open, the same file");
        put("/bin/true");
        assert_eq!(run(), crate::Exit::Code(0), "replaced, opened again");

        let holds_program = || {
            std::fs::read_dir("/proc/self/fd")
                .expect("list descriptors")
                .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
                .any(|target| target == program)
        };
        assert!(holds_program(), "kept open");
        forget_executables();
        let other = SpawnPlan::new("test", ["/bin/true"])
            .spawn()
            .expect("spawned");
        assert_eq!(other.wait().expect("waited"), crate::Exit::Code(0));
        assert!(!holds_program(), "closed at the next spawn after a forget");
    }
}
