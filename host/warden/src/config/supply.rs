//! Defaults the policy plugins supply, put into the configuration.
//!
//! A service's plugins may supply any service setting and its listeners
//! (see `defaults` in the WIT). A supplied value replaces one the file left
//! unset (warden's built-in default or a global default taken silently);
//! whatever the file wrote, even `client_limit = 0` asking for the global,
//! stays. Listeners merge as Dovecot's do: a default listener is added
//! unless the file declares one at the same path (unix) or with the same
//! name (inet), which then replaces it; `mode = 0` or `port = 0` there
//! turns the default off. Every supplied value keeps the name of its plugin
//! as its [`Origin`], so `warden config` shows where it came from.

use std::num::NonZeroU32;

use warden_policy::{Defaults, Supplied};

use super::load::{expand_identity, resolve_under};
use super::value::{Duration, Mode, Size};
use super::{
    FileListener, Globals, IdleKill, InetListener, Origin, Problem, Service, ServiceCount, Setting,
    Spelling, VszLimit,
};

/// Whether the file left `setting` to a default.
fn replaceable<T>(setting: &Setting<T>) -> bool {
    match &setting.origin {
        Origin::File { .. } | Origin::Global { note: Some(_), .. } => false,
        Origin::Global { note: None, .. } | Origin::Builtin { .. } | Origin::Plugin { .. } => true,
    }
}

fn origin<T>(supplied: &Supplied<T>) -> Origin {
    Origin::Plugin {
        name: supplied.plugin.clone(),
        note: None,
    }
}

/// Sets `setting` to `convert(supplied)` when the file left it unset.
fn put<T, U>(
    setting: &mut Setting<T>,
    supplied: Option<&Supplied<U>>,
    convert: impl FnOnce(&U) -> T,
) {
    if let Some(supplied) = supplied
        && replaceable(setting)
    {
        *setting = Setting::new(convert(&supplied.value), origin(supplied));
    }
}

/// Puts `defaults` into `service`. Values that cannot be used (a variable
/// that names no global, a path leaving `base_dir`) are problems naming
/// the plugin.
pub(super) fn supply(
    service: &mut Service,
    globals: &Globals,
    defaults: &Defaults,
    problems: &mut Vec<Problem>,
) {
    let span = service.span.clone();
    let table = format!("service.{}", service.name);
    let mut problem = |plugin: &str, message: String| {
        problems.push(Problem::new(
            table.clone(),
            span.clone(),
            format!(
                "the plugin {plugin} supplies {message}; set it in the file, or fix the plugin"
            ),
        ));
    };
    put(&mut service.kind, defaults.kind.as_ref(), |kind| *kind);
    put(
        &mut service.protocol,
        defaults.protocol.as_ref(),
        Clone::clone,
    );
    for (setting, supplied, key) in [
        (&mut service.user, defaults.user.as_ref(), "user"),
        (&mut service.group, defaults.group.as_ref(), "group"),
    ] {
        if let Some(supplied) = supplied
            && replaceable(setting)
        {
            match expand_identity(&supplied.value, globals) {
                Ok((name, note)) => {
                    *setting = Setting::new(
                        name,
                        Origin::Plugin {
                            name: supplied.plugin.clone(),
                            note,
                        },
                    );
                }
                Err(message) => problem(&supplied.plugin, format!("{key}: {message}")),
            }
        }
    }
    if let Some(supplied) = &defaults.extra_groups
        && replaceable(&service.extra_groups)
    {
        let expanded: Result<Vec<(String, Option<Spelling>)>, String> = supplied
            .value
            .iter()
            .map(|group| expand_identity(group, globals))
            .collect();
        match expanded {
            Ok(groups) => {
                let notes: Vec<Spelling> = groups.iter().filter_map(|(_, n)| n.clone()).collect();
                service.extra_groups = Setting::new(
                    groups.into_iter().map(|(name, _)| name).collect(),
                    Origin::Plugin {
                        name: supplied.plugin.clone(),
                        note: (!notes.is_empty()).then_some(Spelling::Several(notes)),
                    },
                );
            }
            Err(message) => problem(&supplied.plugin, format!("extra_groups: {message}")),
        }
    }
    let base = globals.base_dir.value.clone();
    if let Some(supplied) = &defaults.chroot
        && replaceable(&service.chroot)
    {
        let chroot = if supplied.value.is_empty() {
            Ok(None)
        } else {
            resolve_under(&base, &supplied.value).map(Some)
        };
        match chroot {
            Ok(chroot) => service.chroot = Setting::new(chroot, origin(supplied)),
            Err(message) => problem(&supplied.plugin, format!("chroot: {message}")),
        }
    }
    put(
        &mut service.client_limit,
        defaults.client_limit.as_ref(),
        |n| *n,
    );
    put(
        &mut service.process_limit,
        defaults.process_limit.as_ref(),
        |n| *n,
    );
    put(
        &mut service.process_min_avail,
        defaults.process_min_avail.as_ref(),
        |n| *n,
    );
    put(
        &mut service.service_count,
        defaults.service_count.as_ref(),
        |n| NonZeroU32::new(*n).map_or(ServiceCount::Unlimited, ServiceCount::Limited),
    );
    put(
        &mut service.idle_kill,
        defaults.idle_kill_ms.as_ref(),
        |ms| {
            if *ms == 0 {
                IdleKill::Infinite
            } else {
                IdleKill::After(Duration::from_millis(*ms))
            }
        },
    );
    put(
        &mut service.vsz_limit,
        defaults.vsz_limit.as_ref(),
        |bytes| {
            if *bytes == 0 {
                VszLimit::Unlimited
            } else {
                VszLimit::Bytes(Size(*bytes))
            }
        },
    );
    if let Some(supplied) = &defaults.unix_listeners {
        for listener in &supplied.value {
            let path = match resolve_under(&base, &listener.path) {
                Ok(path) => path,
                Err(message) => {
                    problem(&supplied.plugin, format!("a unix listener: {message}"));
                    continue;
                }
            };
            // The file's listener at the same path replaces the default
            // (`mode = 0` turns it off); others are added to it.
            if service.unix_listeners.iter().any(|l| l.path.value == path) {
                continue;
            }
            let mode = match Mode::new(listener.mode) {
                Ok(mode) => mode,
                Err(message) => {
                    problem(
                        &supplied.plugin,
                        format!("a unix listener's mode: {message}"),
                    );
                    continue;
                }
            };
            let mut identity = |text: &str, key: &str| match expand_identity(text, globals) {
                Ok((name, note)) => Some(Setting::new(
                    name,
                    Origin::Plugin {
                        name: supplied.plugin.clone(),
                        note,
                    },
                )),
                Err(message) => {
                    problem(
                        &supplied.plugin,
                        format!("a unix listener's {key}: {message}"),
                    );
                    None
                }
            };
            let (Some(user), Some(group)) = (
                identity(&listener.user, "user"),
                identity(&listener.group, "group"),
            ) else {
                continue;
            };
            service.unix_listeners.push(FileListener {
                span: span.clone(),
                path: Setting::new(path, origin(supplied)),
                user,
                group,
                mode: Setting::new(mode, origin(supplied)),
                kind: Setting::new(listener.listener_type.clone(), origin(supplied)),
            });
        }
    }
    if let Some(supplied) = &defaults.inet_listeners {
        for listener in &supplied.value {
            // Likewise by name: `port = 0` in the file turns one off.
            if service
                .inet_listeners
                .iter()
                .any(|l| l.name.value == listener.name)
            {
                continue;
            }
            service.inet_listeners.push(InetListener {
                span: span.clone(),
                name: Setting::new(listener.name.clone(), origin(supplied)),
                address: Setting::new(
                    globals.listen.value.clone(),
                    Origin::Global {
                        key: "listen",
                        note: None,
                    },
                ),
                port: Setting::new(listener.port, origin(supplied)),
                ssl: Setting::new(listener.ssl, origin(supplied)),
                haproxy: Setting::new(false, Origin::BUILTIN),
                kind: Setting::new(String::new(), Origin::BUILTIN),
            });
        }
    }
}
