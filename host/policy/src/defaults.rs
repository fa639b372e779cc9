//! Settings the plugins supply for a service the configuration leaves
//! unset, each with the plugin that supplied it.
//!
//! The chain merges the answers of a service's plugins: each setting comes
//! from the first plugin in the chain that supplies it. Every answer is
//! checked first; one with a bad value counts as that plugin's failure and
//! supplies nothing.

use crate::bindings::exports::warden::policy::defaults as wit;
use crate::bindings::warden::policy::types;
use crate::decide::{Millis, ServiceKind};

/// The longest name or path a plugin may supply.
const MAX_TEXT: usize = 256;

/// The most listeners or groups a plugin may supply for one service.
const MAX_ITEMS: usize = 64;

/// A value and the plugin that supplied it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Supplied<T> {
    /// The value.
    pub value: T,
    /// The name of the plugin that supplied it.
    pub plugin: String,
}

/// A unix socket a plugin supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixDefault {
    /// Its path, relative to `base_dir`.
    pub path: String,
    /// Its mode; 0 disables it.
    pub mode: u32,
    /// Its owner; empty keeps root.
    pub user: String,
    /// Its group; empty keeps root's.
    pub group: String,
    /// Its client type; empty when unset.
    pub listener_type: String,
}

/// A TCP listener a plugin supplies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetDefault {
    /// Its name.
    pub name: String,
    /// Its port; 0 disables it.
    pub port: u16,
    /// Whether it speaks TLS from the first byte.
    pub ssl: bool,
}

/// A service's defaults from its plugins; `None` where no plugin supplied
/// the setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Defaults {
    /// `type`.
    pub kind: Option<Supplied<ServiceKind>>,
    /// `protocol`.
    pub protocol: Option<Supplied<String>>,
    /// `user`, possibly a `$default_*` variable.
    pub user: Option<Supplied<String>>,
    /// `group`.
    pub group: Option<Supplied<String>>,
    /// `extra_groups`.
    pub extra_groups: Option<Supplied<Vec<String>>>,
    /// `chroot`, relative to `base_dir`; empty is none.
    pub chroot: Option<Supplied<String>>,
    /// `client_limit`.
    pub client_limit: Option<Supplied<u32>>,
    /// `process_limit`.
    pub process_limit: Option<Supplied<u32>>,
    /// `process_min_avail`.
    pub process_min_avail: Option<Supplied<u32>>,
    /// `service_count`; 0 is unlimited.
    pub service_count: Option<Supplied<u32>>,
    /// `idle_kill` in milliseconds; 0 is never.
    pub idle_kill_ms: Option<Supplied<Millis>>,
    /// `vsz_limit` in bytes; 0 is no limit.
    pub vsz_limit: Option<Supplied<u64>>,
    /// Unix sockets; the configuration's own at the same path replace them.
    pub unix_listeners: Option<Supplied<Vec<UnixDefault>>>,
    /// TCP listeners; the configuration's own of the same name replace them.
    pub inet_listeners: Option<Supplied<Vec<InetDefault>>>,
}

impl Defaults {
    /// Fills each setting still unset from `settings`, supplied by `plugin`.
    pub(crate) fn merge(&mut self, plugin: &str, settings: wit::Settings) {
        fn fill<T>(slot: &mut Option<Supplied<T>>, value: Option<T>, plugin: &str) {
            if slot.is_none()
                && let Some(value) = value
            {
                *slot = Some(Supplied {
                    value,
                    plugin: plugin.to_owned(),
                });
            }
        }
        fill(&mut self.kind, settings.kind.map(service_kind), plugin);
        fill(&mut self.protocol, settings.protocol, plugin);
        fill(&mut self.user, settings.user, plugin);
        fill(&mut self.group, settings.group, plugin);
        fill(&mut self.extra_groups, settings.extra_groups, plugin);
        fill(&mut self.chroot, settings.chroot, plugin);
        fill(&mut self.client_limit, settings.client_limit, plugin);
        fill(&mut self.process_limit, settings.process_limit, plugin);
        fill(
            &mut self.process_min_avail,
            settings.process_min_avail,
            plugin,
        );
        fill(&mut self.service_count, settings.service_count, plugin);
        fill(&mut self.idle_kill_ms, settings.idle_kill_ms, plugin);
        fill(&mut self.vsz_limit, settings.vsz_limit, plugin);
        let unix: Vec<UnixDefault> = settings
            .unix_listeners
            .into_iter()
            .map(|l| UnixDefault {
                path: l.path,
                mode: l.mode,
                user: l.user,
                group: l.group,
                listener_type: l.listener_type,
            })
            .collect();
        fill(
            &mut self.unix_listeners,
            (!unix.is_empty()).then_some(unix),
            plugin,
        );
        let inet: Vec<InetDefault> = settings
            .inet_listeners
            .into_iter()
            .map(|l| InetDefault {
                name: l.name,
                port: l.port,
                ssl: l.ssl,
            })
            .collect();
        fill(
            &mut self.inet_listeners,
            (!inet.is_empty()).then_some(inet),
            plugin,
        );
    }
}

/// The host's kind of a contract kind.
pub(crate) fn service_kind(kind: types::ServiceKind) -> ServiceKind {
    match kind {
        types::ServiceKind::Default => ServiceKind::Default,
        types::ServiceKind::Startup => ServiceKind::Startup,
        types::ServiceKind::Login => ServiceKind::Login,
        types::ServiceKind::Log => ServiceKind::Log,
        types::ServiceKind::Config => ServiceKind::Config,
        types::ServiceKind::Anvil => ServiceKind::Anvil,
        types::ServiceKind::Worker => ServiceKind::Worker,
    }
}

/// Checks a `defaults` answer: bounded names, paths inside `base_dir`,
/// modes that are modes, limits of at least one.
pub(crate) fn check(settings: &wit::Settings) -> Result<(), String> {
    let names = [
        ("protocol", settings.protocol.as_deref()),
        ("user", settings.user.as_deref()),
        ("group", settings.group.as_deref()),
    ];
    for (what, name) in names {
        if let Some(name) = name {
            check_name(what, name)?;
        }
    }
    if let Some(groups) = &settings.extra_groups {
        if groups.len() > MAX_ITEMS {
            return Err(format!(
                "{} extra_groups, more than {MAX_ITEMS}",
                groups.len()
            ));
        }
        for group in groups {
            check_name("extra_groups", group)?;
        }
    }
    if let Some(chroot) = &settings.chroot
        && !chroot.is_empty()
    {
        check_path("chroot", chroot)?;
    }
    for (what, limit) in [
        ("client_limit", settings.client_limit),
        ("process_limit", settings.process_limit),
    ] {
        if limit == Some(0) {
            return Err(format!("{what} 0; a supplied limit must be at least 1"));
        }
    }
    let listeners = settings.unix_listeners.len() + settings.inet_listeners.len();
    if listeners > MAX_ITEMS {
        return Err(format!("{listeners} listeners, more than {MAX_ITEMS}"));
    }
    for listener in &settings.unix_listeners {
        check_path("unix listener path", &listener.path)?;
        if listener.mode > 0o777 {
            return Err(format!(
                "mode {:o} for {}, which is not a file mode",
                listener.mode, listener.path
            ));
        }
        check_name("unix listener user", &listener.user)?;
        check_name("unix listener group", &listener.group)?;
        check_name("unix listener type", &listener.listener_type)?;
    }
    for listener in &settings.inet_listeners {
        if listener.name.is_empty() {
            return Err("an inet listener without a name".to_owned());
        }
        check_name("inet listener name", &listener.name)?;
    }
    Ok(())
}

/// A name: bounded, printable, no spaces.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_TEXT {
        return Err(format!(
            "a {what} of {} bytes, more than {MAX_TEXT}",
            name.len()
        ));
    }
    if let Some(bad) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{what} {name:?}, which holds {bad:?}"));
    }
    Ok(())
}

/// A path relative to `base_dir` that stays inside it.
fn check_path(what: &str, path: &str) -> Result<(), String> {
    check_name(what, path)?;
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|part| part == "..") {
        return Err(format!(
            "{what} {path:?}; it must be a relative path inside base_dir"
        ));
    }
    Ok(())
}
