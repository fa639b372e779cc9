//! The effective configuration as TOML, each setting with its origin.
//!
//! `warden config` prints this. The output is itself a valid configuration
//! that reads back to the same effective values, so an operator can start
//! from it; the comment after each setting says whether the file, a global
//! default, a policy plugin or warden's built-in default supplied it.
//! `warden config -n` prints only what the file writes, as `doveconf -n`
//! prints only what differs from the defaults.

use std::fmt::Write as _;

use toml_writer::{ToTomlKey, ToTomlValue};

use super::value::ListenAddress;
use super::{
    Config, FileListener, IdleKill, InetListener, MetricsListen, Origin, Service, ServiceCount,
    Setting, Ssl, VszLimit,
};

/// Which settings a rendering shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Every setting, with where its value came from.
    All,
    /// Only the settings the file writes (and the listeners it declares).
    Written,
}

/// Renders `config`: the globals and every service, or only the service
/// named `only`, with the settings `shown` says. Returns `None` if there
/// is no such service.
pub fn render(config: &Config, only: Option<&str>, shown: Shown) -> Option<String> {
    let mut out = String::new();
    match only {
        Some(name) => render_service(&mut out, config, config.service(name)?, shown),
        None => {
            render_globals(&mut out, config, shown);
            for service in &config.services {
                out.push('\n');
                render_service(&mut out, config, service, shown);
            }
            for plugin in &config.plugins {
                let _ = writeln!(out, "\n[plugin.{}]", plugin.name.as_str().to_toml_key());
                let mut s = Section::new(shown);
                s.add("deadline", &plugin.deadline, |d| string(&d.to_string()));
                s.add("memory", &plugin.memory, |m| string(&m.to_string()));
                s.add("directory", &plugin.directory, |d| match d {
                    None => string(""),
                    Some(p) => path(p),
                });
                s.write(&mut out);
            }
        }
    }
    Some(out)
}

/// One setting, as `warden config KEY` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Its full key: `service.imap-login.process_limit`.
    pub key: String,
    /// Its value, written as in the file.
    pub value: String,
    /// Where the value came from: `file`, `from default_process_limit`…
    pub origin: String,
}

impl std::fmt::Display for Found {
    /// `KEY = VALUE  # where it came from`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}  # {}", self.key, self.value, self.origin)
    }
}

impl Found {
    /// As JSON: `key`, `value` (a JSON value) and `origin`.
    pub fn json(&self) -> serde_json::Value {
        let value = format!("value = {}", self.value)
            .parse::<toml::Table>()
            .ok()
            .and_then(|table| table.get("value").map(json))
            .unwrap_or(serde_json::Value::Null);
        serde_json::json!({ "key": self.key, "value": value, "origin": self.origin })
    }
}

/// A rendering as JSON: the same tables and values, without the
/// comments; `None` if `text` is not a rendering.
pub fn render_json(text: &str) -> Option<serde_json::Value> {
    text.parse::<toml::Table>()
        .ok()
        .map(|table| json(&toml::Value::Table(table)))
}

/// A TOML value as JSON (a date as its text).
fn json(value: &toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(text) => text.clone().into(),
        toml::Value::Integer(number) => (*number).into(),
        toml::Value::Float(number) => (*number).into(),
        toml::Value::Boolean(flag) => (*flag).into(),
        toml::Value::Datetime(date) => date.to_string().into(),
        toml::Value::Array(items) => items.iter().map(json).collect(),
        toml::Value::Table(table) => table
            .iter()
            .map(|(key, value)| (key.clone(), json(value)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

/// The setting `key` of `config`. `key` names a global
/// (`default_process_limit`), a service's setting
/// (`service.imap-login.process_limit`) or a plugin's
/// (`plugin.NAME.deadline`); listeners, being lists, are not keys. `Err`
/// holds every key there is, for the message.
pub fn lookup(config: &Config, key: &str) -> Result<Found, Vec<String>> {
    let text = render(config, None, Shown::All).unwrap_or_default();
    let mut keys = Vec::new();
    // The table the lines are in; `None` inside a listener's.
    let mut table = Some(String::new());
    for line in text.lines() {
        if line.starts_with("[[") {
            table = None;
        } else if let Some(header) = line.strip_prefix('[') {
            table = Some(format!("{}.", header.trim_end_matches(']')));
        } else if let (Some(table), Some((name, _))) = (&table, line.split_once(" = ")) {
            let full = format!("{table}{name}");
            if full == key {
                let (setting, origin) = line.split_once("  # ").unwrap_or((line, ""));
                let value = setting
                    .split_once(" = ")
                    .map_or("", |(_, value)| value.trim_end());
                return Ok(Found {
                    key: full,
                    value: value.to_owned(),
                    origin: origin.to_owned(),
                });
            }
            keys.push(full);
        }
    }
    Err(keys)
}

/// Lines of one table, written with their comments aligned.
struct Section {
    lines: Vec<(String, String)>,
    shown: Shown,
}

impl Section {
    fn new(shown: Shown) -> Section {
        Section {
            lines: Vec::new(),
            shown,
        }
    }

    fn add<T>(&mut self, key: &str, setting: &Setting<T>, show: impl FnOnce(&T) -> String) {
        if self.shown == Shown::Written && !setting.is_from_file() {
            return;
        }
        self.lines.push((
            format!("{key} = {}", show(&setting.value)),
            describe(&setting.origin),
        ));
    }

    fn write(self, out: &mut String) {
        let width = self
            .lines
            .iter()
            .map(|(line, _)| line.len())
            .max()
            .unwrap_or(0);
        for (line, comment) in self.lines {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{line:width$}  # {comment}");
        }
    }
}

fn describe(origin: &Origin) -> String {
    match origin {
        Origin::File { note: None, .. } => "file".to_owned(),
        Origin::File {
            note: Some(note), ..
        } => format!("file, {note}"),
        Origin::Global { key, note: None } => format!("from {key}"),
        Origin::Global {
            key,
            note: Some(note),
        } => format!("from {key} ({note})"),
        Origin::Builtin { note: None } => "built-in default".to_owned(),
        Origin::Builtin { note: Some(note) } => format!("built-in default; {note}"),
        Origin::Plugin { name, note: None } => format!("from plugin {name}"),
        Origin::Plugin {
            name,
            note: Some(note),
        } => format!("from plugin {name} ({note})"),
    }
}

fn string(text: &str) -> String {
    text.to_toml_value()
}

fn strings(words: &[String]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| string(w)).collect();
    format!("[{}]", quoted.join(", "))
}

fn addresses(list: &[ListenAddress]) -> String {
    let words: Vec<String> = list.iter().map(ToString::to_string).collect();
    string(&words.join(" "))
}

fn path(path: &std::path::Path) -> String {
    string(&path.to_string_lossy())
}

fn vsz(limit: &VszLimit) -> String {
    match limit {
        VszLimit::Unlimited => string("unlimited"),
        VszLimit::Bytes(size) => string(&size.to_string()),
    }
}

fn render_globals(out: &mut String, config: &Config, shown: Shown) {
    let g = &config.globals;
    let mut s = Section::new(shown);
    s.add("base_dir", &g.base_dir, |p| path(p));
    s.add("protocols", &g.protocols, |p| strings(p));
    s.add("listen", &g.listen, |l| addresses(l));
    s.add("ssl", &g.ssl, |ssl| {
        string(match ssl {
            Ssl::No => "no",
            Ssl::Yes => "yes",
            Ssl::Required => "required",
        })
    });
    s.add(
        "default_client_limit",
        &g.default_client_limit,
        u32::to_string,
    );
    s.add(
        "default_process_limit",
        &g.default_process_limit,
        u32::to_string,
    );
    s.add("default_idle_kill", &g.default_idle_kill, |d| {
        string(&d.to_string())
    });
    s.add("default_vsz_limit", &g.default_vsz_limit, vsz);
    s.add("default_login_user", &g.default_login_user, |u| string(u));
    s.add("default_internal_user", &g.default_internal_user, |u| {
        string(u)
    });
    s.add("default_internal_group", &g.default_internal_group, |u| {
        string(u)
    });
    s.add("plugins_dir", &g.plugins_dir, |p| path(p));
    s.add("plugin_cache", &g.plugin_cache, |p| path(p));
    s.add("dovecot_config", &g.dovecot_config, |p| path(p));
    s.add("shutdown_clients", &g.shutdown_clients, bool::to_string);
    s.add("control_socket", &g.control_socket, |p| path(p));
    s.add("metrics_listen", &g.metrics_listen, |m| match m {
        None => string(""),
        Some(MetricsListen::Inet(address)) => string(&address.to_string()),
        Some(MetricsListen::Unix(p)) => path(p),
    });
    s.add("process_limit_wait", &g.process_limit_wait, |d| {
        string(&d.to_string())
    });
    s.add("shutdown_grace", &g.shutdown_grace, |d| {
        string(&d.to_string())
    });
    s.add(
        "haproxy_trusted_networks",
        &g.haproxy_trusted_networks,
        |n| {
            let words: Vec<String> = n.iter().map(ToString::to_string).collect();
            string(&words.join(" "))
        },
    );
    s.add("haproxy_timeout", &g.haproxy_timeout, |d| {
        string(&d.to_string())
    });
    s.write(out);
}

fn render_service(out: &mut String, config: &Config, service: &Service, shown: Shown) {
    let table = format!("service.{}", service.name.as_str().to_toml_key());
    let _ = writeln!(out, "[{table}]");
    if !config.runs(service) {
        let _ = writeln!(
            out,
            "# not started: protocol {} is not listed in protocols",
            string(&service.protocol.value)
        );
    }
    let mut s = Section::new(shown);
    s.add("executable", &service.executable, |e| {
        string(&shlex::try_join(e.argv.iter().map(String::as_str)).unwrap_or_default())
    });
    s.add("type", &service.kind, |k| string(k.as_str()));
    s.add("protocol", &service.protocol, |p| string(p));
    s.add("interface", &service.interface, |i| string(i.as_str()));
    s.add("user", &service.user, |u| string(u));
    s.add("group", &service.group, |g| string(g));
    s.add("extra_groups", &service.extra_groups, |g| strings(g));
    s.add("privileged_group", &service.privileged_group, |g| string(g));
    s.add("chroot", &service.chroot, |c| match c {
        None => string(""),
        Some(p) => path(p),
    });
    s.add(
        "drop_priv_before_exec",
        &service.drop_priv_before_exec,
        bool::to_string,
    );
    s.add("client_limit", &service.client_limit, u32::to_string);
    s.add("service_count", &service.service_count, |c| match c {
        ServiceCount::Unlimited => string("unlimited"),
        ServiceCount::Limited(n) => n.to_string(),
    });
    s.add("process_limit", &service.process_limit, u32::to_string);
    s.add(
        "process_min_avail",
        &service.process_min_avail,
        u32::to_string,
    );
    s.add("idle_kill", &service.idle_kill, |i| match i {
        IdleKill::Infinite => string("infinite"),
        IdleKill::After(d) => string(&d.to_string()),
    });
    s.add("vsz_limit", &service.vsz_limit, vsz);
    s.add("policies", &service.policies, |p| strings(p));
    s.add(
        "per_source_limit",
        &service.per_source_limit,
        u32::to_string,
    );
    s.add("per_source_rate", &service.per_source_rate, u32::to_string);
    s.write(out);
    // With only what is written, only the listeners the file declares.
    let declared = |key_from_file: bool| shown == Shown::All || key_from_file;
    for listener in &service.unix_listeners {
        if declared(listener.path.is_from_file()) {
            render_file_listener(out, &table, "unix_listener", listener, shown);
        }
    }
    for listener in &service.fifo_listeners {
        if declared(listener.path.is_from_file()) {
            render_file_listener(out, &table, "fifo_listener", listener, shown);
        }
    }
    let ssl_off = config.globals.ssl.value == Ssl::No;
    for listener in &service.inet_listeners {
        if declared(listener.name.is_from_file()) {
            render_inet_listener(out, &table, listener, ssl_off, shown);
        }
    }
}

fn render_file_listener(
    out: &mut String,
    table: &str,
    kind: &str,
    listener: &FileListener,
    shown: Shown,
) {
    let _ = writeln!(out, "\n[[{table}.{kind}]]");
    if listener.mode.value.disables() {
        let _ = writeln!(out, "# not created: mode 0 disables the listener");
    }
    let mut s = Section::new(shown);
    s.add("path", &listener.path, |p| path(p));
    s.add("user", &listener.user, |u| string(u));
    s.add("group", &listener.group, |g| string(g));
    s.add("mode", &listener.mode, |m| string(&m.to_string()));
    s.add("type", &listener.kind, |t| string(t));
    s.write(out);
}

fn render_inet_listener(
    out: &mut String,
    table: &str,
    listener: &InetListener,
    ssl_off: bool,
    shown: Shown,
) {
    let _ = writeln!(out, "\n[[{table}.inet_listener]]");
    if listener.port.value == 0 {
        let _ = writeln!(out, "# not created: port 0 disables the listener");
    } else if listener.ssl.value && ssl_off {
        let _ = writeln!(out, "# not created: ssl = \"no\" removes TLS listeners");
    }
    let mut s = Section::new(shown);
    s.add("name", &listener.name, |n| string(n));
    s.add("address", &listener.address, |a| addresses(a));
    s.add("port", &listener.port, u16::to_string);
    s.add("ssl", &listener.ssl, bool::to_string);
    s.add("haproxy", &listener.haproxy, bool::to_string);
    s.add("type", &listener.kind, |t| string(t));
    s.write(out);
}
