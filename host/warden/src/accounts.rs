//! Checking that the users and groups a configuration names exist.
//!
//! This is the step after parsing, and the only one that asks the system
//! (its user and group databases, through `warden-sys`). Each missing name
//! is reported once, where it is first named, with the setting to change;
//! a name reached through a global (`$default_login_user`, or a default)
//! points at the global.

use std::ops::Range;

use crate::config::{Config, Origin, Problem, Setting};

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
    let through = |note: &Option<String>| {
        note.as_deref()
            .and_then(|note| note.strip_prefix("written as $"))
            .map(|variable| variable.strip_prefix("SET:").unwrap_or(variable).to_owned())
    };
    match &setting.origin {
        Origin::File { span, note } => match through(note) {
            Some(variable) => (span.clone(), variable),
            None => (span.clone(), key.to_owned()),
        },
        Origin::Global {
            key: global_key, ..
        } => global(global_key),
        // A plugin's `$default_internal_user` is fixed at the global; a
        // name it supplies as it is, by setting the key in the file.
        Origin::Plugin { name, note } => match through(note) {
            Some(variable) => global(&variable),
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
    let g = &config.globals;
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
        add(
            kind,
            &setting.value,
            key.to_owned(),
            place(config, key, setting),
        );
    }
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
    found
}

/// A problem for each user or group `config` names that does not exist.
pub fn missing(config: &Config) -> Vec<Problem> {
    let mut checked: Vec<(Kind, String)> = Vec::new();
    let mut problems = Vec::new();
    for reference in references(config) {
        let seen = (reference.kind, reference.name.clone());
        if checked.contains(&seen) {
            continue;
        }
        checked.push(seen);
        let (what, found) = match reference.kind {
            Kind::User => (
                "user",
                warden_sys::ids::user(&reference.name).map(|u| u.is_some()),
            ),
            Kind::Group => (
                "group",
                warden_sys::ids::group(&reference.name).map(|g| g.is_some()),
            ),
        };
        let name = &reference.name;
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
    problems
}
