//! Settings the plugins supply for a service the configuration leaves
//! unset, each with the plugin that supplied it.
//!
//! The chain merges the answers of a service's plugins: each setting comes
//! from the first plugin in the chain that supplies it. Every answer is
//! checked first; one with a bad value counts as that plugin's failure and
//! supplies nothing.

use crate::bindings::exports::warden::policy::defaults as wit;
use crate::decide::{Millis, ServiceKind};

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
        fill(&mut self.kind, settings.kind.map(ServiceKind::from), plugin);
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
