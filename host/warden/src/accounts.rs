//! Checking a configuration against the system it is to run on: the users
//! and groups it names exist, each running service's executable is a
//! program its user may run, and each chroot is a directory.
//!
//! This is the step after parsing and validation, and the only one that
//! asks the system (its user and group databases, through `warden-sys`,
//! and its file system). `warden check` runs it, and so does `warden run`,
//! at start and on every reload: a configuration that fails here is
//! refused, and on reload the running one stays. Every problem is
//! reported at once, each where the setting to change is written, with
//! that setting; a name reached through a global (`$default_login_user`,
//! or a default) points at the global. Only what a running service uses is
//! checked: a global no running service names is not looked up.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::ops::Range;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use nix::unistd::Gid;
use warden_sys::ids::UserEntry;

use crate::config::{Config, Origin, Problem, Service, Setting, Spelling};

/// Whether a name is a user's or a group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
}

/// One place a configuration names a user or group.
struct Reference {
    kind: Kind,
    name: String,
    key: String,
    span: Range<usize>,
    /// The setting to change when the name does not exist.
    fix: String,
}

/// Where `setting`'s value came from, as a span and the setting to change.
fn place<T>(config: &Config, key: &str, setting: &Setting<T>) -> (Range<usize>, String) {
    let global = |global: &str| {
        let span = match global {
            "default_login_user" => config.globals.default_login_user.origin.span(),
            "default_internal_user" => config.globals.default_internal_user.origin.span(),
            "default_internal_group" => config.globals.default_internal_group.origin.span(),
            _ => None,
        };
        (span.unwrap_or(0..0), global.to_owned())
    };
    let through = |note: &Option<Spelling>| note.as_ref().and_then(Spelling::global);
    match &setting.origin {
        Origin::File { span, note } => match through(note) {
            Some(variable) => (span.clone(), variable.to_owned()),
            None => (span.clone(), key.to_owned()),
        },
        Origin::Global {
            key: global_key, ..
        } => global(global_key),
        // A plugin's `$default_internal_user` is fixed at the global; a
        // name it supplies as it is, by setting the key in the file.
        Origin::Plugin { name, note } => match through(note) {
            Some(variable) => global(variable),
            None => (0..0, format!("{key} (supplied by the plugin {name})")),
        },
        Origin::Builtin { .. } => (0..0, key.to_owned()),
    }
}

fn references(config: &Config) -> Vec<Reference> {
    let mut found = Vec::new();
    let mut add = |kind: Kind, name: &str, key: String, (span, fix): (Range<usize>, String)| {
        if !name.is_empty() {
            found.push(Reference {
                kind,
                name: name.to_owned(),
                key,
                span,
                fix,
            });
        }
    };
    for service in config.services.iter().filter(|s| config.runs(s)) {
        let key = |setting: &str| format!("service.{}.{setting}", service.name);
        for (kind, name, setting) in [
            (Kind::User, "user", &service.user),
            (Kind::Group, "group", &service.group),
            (Kind::Group, "privileged_group", &service.privileged_group),
        ] {
            add(
                kind,
                &setting.value,
                key(name),
                place(config, &key(name), setting),
            );
        }
        for group in &service.extra_groups.value {
            let k = key("extra_groups");
            add(
                Kind::Group,
                group,
                k.clone(),
                place(config, &k, &service.extra_groups),
            );
        }
        let listeners = service
            .unix_listeners
            .iter()
            .map(|l| ("unix_listener", l))
            .chain(service.fifo_listeners.iter().map(|l| ("fifo_listener", l)));
        for (index, (table, listener)) in listeners.enumerate() {
            let k = |setting: &str| format!("service.{}.{table}[{index}].{setting}", service.name);
            add(
                Kind::User,
                &listener.user.value,
                k("user"),
                place(config, &k("user"), &listener.user),
            );
            add(
                Kind::Group,
                &listener.group.value,
                k("group"),
                place(config, &k("group"), &listener.group),
            );
        }
    }
    // A global a running service uses comes first, so that a missing name
    // is blamed on the global that gives it to every service.
    let g = &config.globals;
    let mut globals = Vec::new();
    for (kind, key, setting) in [
        (Kind::User, "default_login_user", &g.default_login_user),
        (
            Kind::User,
            "default_internal_user",
            &g.default_internal_user,
        ),
        (
            Kind::Group,
            "default_internal_group",
            &g.default_internal_group,
        ),
    ] {
        if found
            .iter()
            .any(|used| used.kind == kind && used.name == setting.value)
        {
            let (span, fix) = place(config, key, setting);
            globals.push(Reference {
                kind,
                name: setting.value.clone(),
                key: key.to_owned(),
                span,
                fix,
            });
        }
    }
    globals.append(&mut found);
    globals
}

/// The users and groups a configuration's running services name, looked
/// up on this system once: the master makes its processes' identities and
/// its sockets' owners from them, and looks up nothing again until the next
/// reload.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: BTreeMap<String, UserEntry>,
    groups: BTreeMap<String, Gid>,
}

impl Accounts {
    /// The user named `name`, if the configuration names it and it exists.
    pub fn user(&self, name: &str) -> Option<&UserEntry> {
        self.users.get(name)
    }

    /// The group named `name`, if the configuration names it and it exists.
    pub fn group(&self, name: &str) -> Option<Gid> {
        self.groups.get(name).copied()
    }
}

/// The fourth phase: what `config` names, looked up on this system; or
/// every problem it has here — users and groups that do not exist,
/// executables that cannot be run, chroots that are not directories. What
/// `warden check` reports and `warden run` refuses, at start and on every
/// reload.
pub fn resolve(config: &Config) -> Result<Accounts, Vec<Problem>> {
    let (accounts, mut problems) = look_up(config);
    for service in config.services.iter().filter(|s| config.runs(s)) {
        problems.extend(executable(config, service, &accounts));
        problems.extend(chroot(config, service));
    }
    problems.extend(dovecot_config(config));
    if problems.is_empty() {
        Ok(accounts)
    } else {
        Err(problems)
    }
}

/// Every problem `config` has on this system, as [`resolve`] finds them.
pub fn check(config: &Config) -> Vec<Problem> {
    resolve(config).err().unwrap_or_default()
}

/// Looks up each user and group `config` names, once; a problem for each
/// that does not exist.
fn look_up(config: &Config) -> (Accounts, Vec<Problem>) {
    let mut accounts = Accounts::default();
    let mut checked: Vec<(Kind, String)> = Vec::new();
    let mut problems = Vec::new();
    for reference in references(config) {
        let seen = (reference.kind, reference.name.clone());
        if checked.contains(&seen) {
            continue;
        }
        checked.push(seen);
        let name = &reference.name;
        let (what, found) = match reference.kind {
            Kind::User => (
                "user",
                warden_sys::ids::user(name).map(|user| {
                    user.map(|user| accounts.users.insert(name.clone(), user))
                        .is_some()
                }),
            ),
            Kind::Group => (
                "group",
                warden_sys::ids::group(name).map(|group| {
                    group
                        .map(|gid| accounts.groups.insert(name.clone(), gid))
                        .is_some()
                }),
            ),
        };
        let message = match found {
            Ok(true) => continue,
            Ok(false) => format!(
                "the {what} {name:?} does not exist on this system; create it (Debian's dovecot-core creates dovecot and dovenull) or change {}",
                reference.fix
            ),
            Err(error) => format!("looking up the {what} {name:?} failed: {error}"),
        };
        problems.push(Problem::new(reference.key, reference.span, message));
    }
    (accounts, problems)
}

/// Who a service's processes run as, for deciding whether they may execute
/// a file: as the master does, the service's `user` with its `group` (or
/// the user's) and its `extra_groups`, or, without a `user`, the
/// supervisor's own identity.
struct Runner {
    /// How messages name it.
    name: String,
    /// Its user id.
    uid: u32,
    /// Its groups: the primary one first, then the supplementary ones.
    gids: Vec<u32>,
}

impl Runner {
    /// The runner of `service`, with the names it needs from `accounts`;
    /// `None` when one does not exist (reported on its own).
    fn of(service: &Service, accounts: &Accounts) -> Option<Runner> {
        let user = service.user.value.as_str();
        if user.is_empty() {
            let uid = nix::unistd::geteuid().as_raw();
            let mut gids = vec![nix::unistd::getegid().as_raw()];
            gids.extend(
                nix::unistd::getgroups()
                    .unwrap_or_default()
                    .into_iter()
                    .map(Gid::as_raw),
            );
            return Some(Runner {
                name: format!("warden's own user (uid {uid})"),
                uid,
                gids,
            });
        }
        let entry = accounts.user(user)?;
        let group = |name: &str| accounts.group(name);
        let primary = match service.group.value.as_str() {
            "" => entry.gid,
            name => group(name)?,
        };
        let mut gids = vec![primary.as_raw()];
        for name in &service.extra_groups.value {
            gids.push(group(name)?.as_raw());
        }
        Some(Runner {
            name: format!("the user {user:?}"),
            uid: entry.uid.as_raw(),
            gids,
        })
    }

    /// Whether the kernel lets this runner execute a file of `mode`, owned
    /// by `owner` and `group`: root needs an execute bit anywhere; anyone
    /// else the one of the class they fall in (owner, group, others).
    fn may_execute(&self, mode: u32, owner: u32, group: u32) -> bool {
        let bit = if self.uid == 0 {
            0o111
        } else if self.uid == owner {
            0o100
        } else if self.gids.contains(&group) {
            0o010
        } else {
            0o001
        };
        mode & bit != 0
    }
}

/// What is wrong with a running service's executable, as the master will
/// use it: its first word (resolved against `base_dir` when parsed), which
/// must be a regular file the service's user may execute.
fn executable(config: &Config, service: &Service, accounts: &Accounts) -> Option<Problem> {
    let program = service.executable.value.argv.first()?;
    let key = format!("service.{}.executable", service.name);
    let (span, fix) = place(config, &key, &service.executable);
    let message = match std::fs::metadata(program) {
        Err(error) if error.kind() == ErrorKind::NotFound => {
            format!("the program {program} does not exist; install it there, or correct {fix}")
        }
        Err(error) => format!(
            "cannot examine the program {program}: {error}; run warden check as the user warden runs as, or correct {fix}"
        ),
        Ok(meta) if meta.is_dir() => {
            format!("{program} is a directory, not a program; name the program file in {fix}")
        }
        Ok(meta) if !meta.is_file() => format!(
            "{program} is not a regular file, so it cannot be executed; name a program file in {fix}"
        ),
        Ok(meta) => {
            let runner = Runner::of(service, accounts)?;
            let mode = meta.permissions().mode();
            if runner.may_execute(mode, meta.uid(), meta.gid()) {
                return None;
            }
            format!(
                "{} may not execute {program} (mode {:04o}, owner {}:{}); make it executable (chmod +x {program}), or correct {fix}",
                runner.name,
                mode & 0o7777,
                meta.uid(),
                meta.gid()
            )
        }
    };
    Some(Problem::new(key, span, message))
}

/// What is wrong with a running service's chroot: it must be a directory.
/// One inside `base_dir` that does not exist yet is created at start.
fn chroot(config: &Config, service: &Service) -> Option<Problem> {
    let dir = service.chroot.value.as_deref()?;
    let key = format!("service.{}.chroot", service.name);
    let (span, fix) = place(config, &key, &service.chroot);
    let shown = dir.display();
    let message = match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => return None,
        Ok(_) => format!("the chroot {shown} is not a directory; make it one, or correct {fix}"),
        Err(error) if error.kind() == ErrorKind::NotFound => {
            if dir.starts_with(&config.globals.base_dir.value) && creatable(dir) {
                return None;
            }
            format!(
                "the chroot {shown} does not exist; create the directory (warden creates a missing chroot only inside base_dir), or correct {fix}"
            )
        }
        Err(error) => format!(
            "cannot examine the chroot {shown}: {error}; run warden check as the user warden runs as, or correct {fix}"
        ),
    };
    Some(Problem::new(key, span, message))
}

/// When Dovecot's `config` service runs on Dovecot's interface: whether
/// `dovecot_config` can be read, and whether its `base_dir` is warden's,
/// where the binaries look for each other's sockets (asked of Dovecot's
/// own `doveconf`, when it is installed).
fn dovecot_config(config: &Config) -> Option<Problem> {
    let serves = config.services.iter().any(|s| {
        config.runs(s)
            && s.interface.value == crate::config::Interface::Dovecot
            && s.kind.value == crate::config::ServiceKind::Config
    });
    if !serves {
        return None;
    }
    let setting = &config.globals.dovecot_config;
    let (span, fix) = place(config, "dovecot_config", setting);
    let file = &setting.value;
    let shown = file.display();
    if let Err(error) = std::fs::File::open(file) {
        let message = if error.kind() == ErrorKind::NotFound {
            format!(
                "the Dovecot configuration {shown} does not exist; install dovecot-core, or point {fix} at your dovecot.conf"
            )
        } else {
            format!("cannot read the Dovecot configuration {shown}: {error}; correct {fix}")
        };
        return Some(Problem::new("dovecot_config", span, message));
    }
    let asked = std::process::Command::new("doveconf")
        .arg("-c")
        .arg(file)
        .args(["-h", "base_dir"])
        .output()
        .ok()?;
    let ours = config.globals.base_dir.value.display().to_string();
    if !asked.status.success() {
        let why = String::from_utf8_lossy(&asked.stderr);
        return Some(Problem::new(
            "dovecot_config",
            span,
            format!(
                "Dovecot's doveconf cannot read {shown}: {}; fix the file, or correct {fix}",
                why.trim()
            ),
        ));
    }
    let theirs = String::from_utf8_lossy(&asked.stdout).trim().to_owned();
    (theirs != ours).then(|| {
        Problem::new(
            "dovecot_config",
            span,
            format!(
                "{shown} has base_dir = {theirs}, but warden's base_dir is {ours}: Dovecot's binaries would look for each other's sockets where warden does not make them; write base_dir = {ours} in {shown}, or base_dir = \"{theirs}\" in warden's configuration"
            ),
        )
    })
}

/// Whether a missing directory can be created at `dir`: the nearest part
/// of its path that exists is a directory.
fn creatable(dir: &Path) -> bool {
    dir.ancestors()
        .skip(1)
        .find_map(|ancestor| std::fs::metadata(ancestor).ok())
        .is_some_and(|meta| meta.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(uid: u32, gids: &[u32]) -> Runner {
        Runner {
            name: String::new(),
            uid,
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn root_needs_an_execute_bit_anywhere() {
        let root = runner(0, &[0]);
        assert!(root.may_execute(0o100, 5, 5));
        assert!(root.may_execute(0o001, 5, 5));
        assert!(!root.may_execute(0o644, 0, 0));
    }

    #[test]
    fn others_need_the_bit_of_their_class() {
        let user = runner(1000, &[100, 27]);
        assert!(user.may_execute(0o700, 1000, 0));
        assert!(
            !user.may_execute(0o077, 1000, 100),
            "the owner's bits decide for the owner"
        );
        assert!(user.may_execute(0o010, 0, 27));
        assert!(
            !user.may_execute(0o701, 0, 27),
            "the group's bits decide for a member"
        );
        assert!(user.may_execute(0o001, 0, 0));
        assert!(!user.may_execute(0o770, 0, 0));
    }
}
