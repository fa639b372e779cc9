//! `warden import`: a Dovecot configuration's master part as a warden
//! configuration.
//!
//! Dovecot's binaries go on reading `dovecot.conf` through the `config`
//! service; what moves to warden is what Dovecot's master read from it:
//! the globals it used (`base_dir`, `protocols`, `listen`, `ssl`, the
//! `default_*` limits and users, `shutdown_clients`) and every `service`
//! block with its settings and listeners. Each documented Dovecot service
//! whose binary is installed is written, so warden runs what Dovecot's
//! master would; a setting warden has no equivalent for is written as a
//! comment saying so.
//!
//! The input is `dovecot.conf` itself (its `!include` and `!include_try`
//! files are read too) or the output of `doveconf -n`, which has the same
//! syntax.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Where Debian installs Dovecot's binaries; a relative `executable` is
/// relative to it, as Dovecot's `libexec_dir`.
pub const LIBEXEC_DIR: &str = "/usr/lib/dovecot";

/// The services Dovecot's master runs when their binary is installed, with
/// the binary (and arguments) each runs when its block names none.
const DOCUMENTED: [(&str, &str); 23] = [
    ("log", "log"),
    ("config", "config"),
    ("anvil", "anvil"),
    ("auth", "auth"),
    ("auth-worker", "auth -w"),
    ("dict", "dict"),
    ("dict-async", "dict"),
    ("director", "director"),
    ("dns_client", "dns-client"),
    ("doveadm", "doveadm-server"),
    ("imap", "imap"),
    ("pop3", "pop3"),
    ("submission", "submission"),
    ("managesieve", "managesieve"),
    ("imap-login", "imap-login"),
    ("pop3-login", "pop3-login"),
    ("submission-login", "submission-login"),
    ("managesieve-login", "managesieve-login"),
    ("indexer", "indexer"),
    ("indexer-worker", "indexer-worker"),
    ("ipc", "ipc"),
    ("lmtp", "lmtp"),
    ("stats", "stats"),
];

/// The globals of Dovecot's master that warden reads under the same name.
const GLOBALS: [&str; 11] = [
    "base_dir",
    "listen",
    "ssl",
    "default_client_limit",
    "default_process_limit",
    "default_idle_kill",
    "default_vsz_limit",
    "default_login_user",
    "default_internal_user",
    "default_internal_group",
    "shutdown_clients",
];

/// Service settings warden reads under the same name, and how each value
/// is written.
const SERVICE_SETTINGS: [(&str, Kind); 15] = [
    ("type", Kind::Text),
    ("protocol", Kind::Text),
    ("user", Kind::Text),
    ("group", Kind::Text),
    ("privileged_group", Kind::Text),
    ("extra_groups", Kind::Words),
    ("chroot", Kind::Text),
    ("drop_priv_before_exec", Kind::Flag),
    ("client_limit", Kind::Number),
    ("service_count", Kind::Number),
    ("restart_request_count", Kind::Number),
    ("process_limit", Kind::Number),
    ("process_min_avail", Kind::Number),
    ("idle_kill", Kind::Text),
    ("vsz_limit", Kind::Text),
];

/// Listener settings warden reads under the same name.
const LISTENER_SETTINGS: [(&str, Kind); 7] = [
    ("mode", Kind::Text),
    ("user", Kind::Text),
    ("group", Kind::Text),
    ("address", Kind::Words),
    ("port", Kind::Number),
    ("ssl", Kind::Flag),
    ("haproxy", Kind::Flag),
];

/// How a Dovecot value is written in TOML.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// A string.
    Text,
    /// An integer.
    Number,
    /// `yes`/`no` as a boolean.
    Flag,
    /// A space-separated list as an array of strings.
    Words,
}

/// Why a configuration could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not Dovecot's configuration syntax.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The line number.
        line: usize,
        /// What is wrong, and what was expected.
        message: String,
    },
}

/// One item of a Dovecot configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    /// `key = value`.
    Setting { key: String, value: String },
    /// `kind [name] { … }`.
    Section {
        kind: String,
        name: String,
        children: Vec<Node>,
    },
}

/// Reads the configuration at `path`, following its includes.
fn parse_file(path: &Path) -> Result<Vec<Node>, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut stack: Vec<(String, String, Vec<Node>)> =
        vec![(String::new(), String::new(), Vec::new())];
    let syntax = |line: usize, message: String| ImportError::Syntax {
        path: path.to_owned(),
        line,
        message,
    };
    for (number, raw) in text.lines().enumerate() {
        let number = number + 1;
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("!include_try ")
            .map(|r| (r, true))
            .or_else(|| line.strip_prefix("!include ").map(|r| (r, false)))
        {
            let (pattern, optional) = rest;
            let nodes = include(path, unquote(pattern.trim()), optional)?;
            if let Some((_, _, children)) = stack.last_mut() {
                children.extend(nodes);
            }
            continue;
        }
        if line == "}" {
            if stack.len() < 2 {
                return Err(syntax(number, "a `}` closes no section".into()));
            }
            let Some((kind, name, children)) = stack.pop() else {
                return Err(syntax(number, "a `}` closes no section".into()));
            };
            if let Some((_, _, parent)) = stack.last_mut() {
                parent.push(Node::Section {
                    kind,
                    name,
                    children,
                });
            }
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            let mut words = head.split_whitespace();
            let kind = words.next().unwrap_or_default().to_owned();
            let name = unquote(words.collect::<Vec<_>>().join(" ").as_str()).to_owned();
            stack.push((kind, name, Vec::new()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax(
                number,
                format!("`{line}` is neither `key = value`, a section, nor `}}`"),
            ));
        };
        if let Some((_, _, children)) = stack.last_mut() {
            children.push(Node::Setting {
                key: key.trim().to_owned(),
                value: unquote(value.trim()).to_owned(),
            });
        }
    }
    if stack.len() != 1 {
        return Err(syntax(
            text.lines().count(),
            "a section is not closed; add its `}`".into(),
        ));
    }
    Ok(stack.pop().map(|(_, _, nodes)| nodes).unwrap_or_default())
}

/// The nodes of the files `pattern` names, relative to `from`'s directory;
/// a missing file is an error unless `optional`.
fn include(from: &Path, pattern: &str, optional: bool) -> Result<Vec<Node>, ImportError> {
    let dir = from.parent().unwrap_or(Path::new("."));
    let full = dir.join(pattern);
    let (parent, file) = (
        full.parent().unwrap_or(dir).to_owned(),
        full.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let mut files = Vec::new();
    if file.contains('*') {
        let (prefix, suffix) = file.split_once('*').unwrap_or((&file, ""));
        if let Ok(entries) = std::fs::read_dir(&parent) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(prefix)
                    && name.ends_with(suffix)
                    && name.len() >= prefix.len() + suffix.len()
                {
                    files.push(entry.path());
                }
            }
        }
        files.sort();
    } else if full.exists() || !optional {
        files.push(full);
    }
    let mut nodes = Vec::new();
    for file in files {
        nodes.extend(parse_file(&file)?);
    }
    Ok(nodes)
}

/// The line without a `#` comment outside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (at, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return line.get(..at).unwrap_or(line),
            _ => {}
        }
    }
    line
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// Settings in the order written, a later one replacing an earlier.
type Settings = Vec<(String, String)>;

/// A listener of a service.
#[derive(Debug)]
struct Listener {
    /// `unix_listener`, `fifo_listener` or `inet_listener`.
    kind: String,
    /// Its path or name.
    name: String,
    settings: Settings,
}

/// A service gathered from every block of its name.
#[derive(Debug, Default)]
struct Service {
    settings: Settings,
    listeners: Vec<Listener>,
    /// Sections inside it that warden has no place for.
    other: Vec<String>,
}

/// Imports the Dovecot configuration at `path` (its absolute path is
/// written as `dovecot_config`); `installed` says whether a binary exists.
pub fn import(path: &Path, installed: &dyn Fn(&Path) -> bool) -> Result<String, ImportError> {
    let nodes = parse_file(path)?;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    Ok(render(&nodes, &absolute, installed))
}

/// What a configuration says to Dovecot's master: its globals, `$name`
/// references expanded, and its services, each gathered from every block
/// of its name.
#[derive(Debug, Default)]
struct Master {
    globals: Settings,
    services: Vec<(String, Service)>,
}

impl Master {
    fn of(nodes: &[Node]) -> Master {
        let mut master = Master::default();
        for node in nodes {
            match node {
                Node::Setting { key, value } => {
                    let value = expand(value, &master.globals);
                    set(&mut master.globals, key, value);
                }
                Node::Section {
                    kind,
                    name,
                    children,
                } if kind == "service" => {
                    let at = match master.services.iter().position(|(n, _)| n == name) {
                        Some(at) => at,
                        None => {
                            master.services.push((name.clone(), Service::default()));
                            master.services.len() - 1
                        }
                    };
                    if let Some((_, service)) = master.services.get_mut(at) {
                        gather(service, children);
                    }
                }
                Node::Section { .. } => {}
            }
        }
        master
    }

    fn global(&self, key: &str) -> Option<&str> {
        self.globals
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The documented services, then the others the configuration names.
    fn service_names(&self) -> Vec<String> {
        let mut names: Vec<String> = DOCUMENTED.iter().map(|(n, _)| (*n).to_owned()).collect();
        for (name, _) in &self.services {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// Sets `key` in `settings`, replacing an earlier value.
fn set(settings: &mut Settings, key: &str, value: String) {
    settings.retain(|(k, _)| k != key);
    settings.push((key.to_owned(), value));
}

fn render(nodes: &[Node], path: &Path, installed: &dyn Fn(&Path) -> bool) -> String {
    let master = Master::of(nodes);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# warden.toml imported from {} by `warden import`.\n#\n# Dovecot's binaries go on reading that file through the config service;\n# this one holds what Dovecot's master read from it: its globals and\n# services. Settings not written here come from each service's built-in\n# plugin, with Dovecot's documented defaults.\n",
        path.display()
    );
    render_globals(&mut out, &master, path);
    for name in master.service_names() {
        let service = master
            .services
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s);
        let _ = writeln!(out);
        render_service(&mut out, &name, service, installed);
    }
    out
}

fn render_globals(out: &mut String, master: &Master, path: &Path) {
    let base_dir = master.global("base_dir").unwrap_or("/run/dovecot");
    let _ = writeln!(out, "base_dir = {}", quote(base_dir));
    let _ = writeln!(
        out,
        "dovecot_config = {}",
        quote(&path.display().to_string())
    );
    if let Some(protocols) = master.global("protocols") {
        let _ = writeln!(out, "protocols = {}", words(protocols));
    }
    for key in GLOBALS.iter().filter(|k| **k != "base_dir") {
        if let Some(value) = master.global(key) {
            let kind = match *key {
                "default_client_limit" | "default_process_limit" => Kind::Number,
                "shutdown_clients" => Kind::Flag,
                _ => Kind::Text,
            };
            let _ = writeln!(out, "{key} = {}", value_of(kind, value, key));
        }
    }
}

/// Writes the service `name`, with what its blocks say, or a comment when
/// its binary is not installed.
fn render_service(
    out: &mut String,
    name: &str,
    service: Option<&Service>,
    installed: &dyn Fn(&Path) -> bool,
) {
    let written = service
        .and_then(|s| s.settings.iter().find(|(k, _)| k == "executable"))
        .map(|(_, v)| v.as_str());
    let default = DOCUMENTED
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, executable)| executable);
    let executable = absolute_executable(written.unwrap_or(default));
    let binary = executable.split_whitespace().next().unwrap_or_default();
    if !installed(Path::new(binary)) {
        let _ = writeln!(
            out,
            "# service {name}: not written, {binary} is not installed (install its Dovecot package and run warden import again)"
        );
        return;
    }
    let table = key(name);
    let _ = writeln!(out, "[service.{table}]");
    let _ = writeln!(out, "executable = {}", quote(&executable));
    let _ = writeln!(out, "interface = \"dovecot\"");
    let Some(service) = service else {
        return;
    };
    let settings = service.settings.iter().filter(|(k, _)| k != "executable");
    write_settings(out, settings, &SERVICE_SETTINGS, "service");
    for other in &service.other {
        let _ = writeln!(
            out,
            "# not carried over: the section `{other}` (warden has no place for it)"
        );
    }
    for listener in &service.listeners {
        let _ = writeln!(out, "[[service.{table}.{}]]", listener.kind);
        let naming = if listener.kind == "inet_listener" {
            "name"
        } else {
            "path"
        };
        // Dovecot allows an unnamed inet listener; warden names it after
        // its service.
        let listener_name = if listener.name.is_empty() {
            name
        } else {
            &listener.name
        };
        let _ = writeln!(out, "{naming} = {}", quote(listener_name));
        write_settings(out, &listener.settings, &LISTENER_SETTINGS, "listener");
    }
}

/// Writes each of `settings` warden knows by `known`, and a comment for
/// each other, which a `what` (service, listener) of warden cannot have.
fn write_settings<'a>(
    out: &mut String,
    settings: impl IntoIterator<Item = &'a (String, String)>,
    known: &[(&str, Kind)],
    what: &str,
) {
    for (setting, value) in settings {
        match known.iter().find(|(k, _)| k == setting) {
            Some((_, kind)) => {
                let _ = writeln!(out, "{setting} = {}", value_of(*kind, value, setting));
            }
            None => {
                let _ = writeln!(
                    out,
                    "# not carried over: {setting} = {value} (warden has no such {what} setting)"
                );
            }
        }
    }
}

/// `value` with each `$name` of a global set before replaced by its value
/// (`protocols = $protocols imap` adds to the list), as Dovecot reads it;
/// a `$name` not set before stands for nothing.
fn expand(value: &str, globals: &[(String, String)]) -> String {
    value
        .split(' ')
        .map(|word| match word.strip_prefix('$') {
            Some(name) => globals
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map_or("", |(_, v)| v.as_str()),
            None => word,
        })
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Adds a `service` block's settings and listeners to `service`; a
/// listener named again is merged into the first.
fn gather(service: &mut Service, children: &[Node]) {
    for child in children {
        match child {
            Node::Setting { key, value } => set(&mut service.settings, key, value.clone()),
            Node::Section {
                kind,
                name,
                children,
            } if matches!(
                kind.as_str(),
                "unix_listener" | "fifo_listener" | "inet_listener"
            ) =>
            {
                let settings: Settings = children
                    .iter()
                    .filter_map(|c| match c {
                        Node::Setting { key, value } => Some((key.clone(), value.clone())),
                        Node::Section { .. } => None,
                    })
                    .collect();
                match service
                    .listeners
                    .iter_mut()
                    .find(|l| l.kind == *kind && l.name == *name)
                {
                    Some(existing) => {
                        for (key, value) in settings {
                            set(&mut existing.settings, &key, value);
                        }
                    }
                    None => service.listeners.push(Listener {
                        kind: kind.clone(),
                        name: name.clone(),
                        settings,
                    }),
                }
            }
            Node::Section { kind, name, .. } => service.other.push(format!("{kind} {name}")),
        }
    }
}

/// `executable` with its program made absolute against [`LIBEXEC_DIR`],
/// as Dovecot's master resolves it.
fn absolute_executable(executable: &str) -> String {
    if executable.starts_with('/') {
        executable.to_owned()
    } else {
        format!("{LIBEXEC_DIR}/{executable}")
    }
}

/// `value` written as TOML for a setting of `kind`; a value that is not of
/// the kind (a `$variable`, a unit) is written as a string, for `warden
/// check` to judge.
fn value_of(kind: Kind, value: &str, key: &str) -> String {
    match kind {
        Kind::Number if value.parse::<u64>().is_ok() => value.to_owned(),
        Kind::Flag if matches!(value, "yes" | "no") => (value == "yes").to_string(),
        Kind::Words if key != "address" => words(value),
        _ => quote(value),
    }
}

fn words(value: &str) -> String {
    let items: Vec<String> = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|w| !w.is_empty())
        .map(quote)
        .collect();
    format!("[{}]", items.join(", "))
}

fn quote(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// A service name as a TOML key: bare when it can be.
fn key(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        name.to_owned()
    } else {
        quote(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn imported(text: &str) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dovecot.conf");
        std::fs::write(&path, text).expect("write");
        import(&path, &|_| true).expect("import")
    }

    #[test]
    fn service_blocks_become_services_with_their_settings_and_listeners() {
        let text = imported(
            "protocols = imap\nprotocols = $protocols pop3\nbase_dir = /var/run/dovecot\n\
             service imap-login {\n  inet_listener imap {\n    port = 10143\n  }\n  \
             inet_listener imaps {\n    port = 0\n    ssl = yes\n  }\n  service_count = 0\n  \
             process_min_avail = 4\n  vsz_limit = 1G\n}\n",
        );
        let config: toml::Table = text.parse().expect("valid TOML");
        assert_eq!(config["base_dir"].as_str(), Some("/var/run/dovecot"));
        assert_eq!(
            config["protocols"].as_array().map(Vec::len),
            Some(2),
            "{text}"
        );
        let login = &config["service"]["imap-login"];
        assert_eq!(login["interface"].as_str(), Some("dovecot"));
        assert_eq!(
            login["executable"].as_str(),
            Some("/usr/lib/dovecot/imap-login")
        );
        assert_eq!(login["service_count"].as_integer(), Some(0));
        assert_eq!(login["process_min_avail"].as_integer(), Some(4));
        assert_eq!(login["vsz_limit"].as_str(), Some("1G"));
        let listeners = login["inet_listener"].as_array().expect("listeners");
        assert_eq!(listeners[0]["name"].as_str(), Some("imap"));
        assert_eq!(listeners[0]["port"].as_integer(), Some(10143));
        assert_eq!(listeners[1]["ssl"].as_bool(), Some(true));
    }

    #[test]
    fn includes_are_followed_and_repeated_blocks_merge() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("conf.d")).expect("mkdir");
        std::fs::write(
            dir.path().join("dovecot.conf"),
            "!include conf.d/*.conf\n!include_try local.conf\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("conf.d/10-master.conf"),
            "service auth {\n  unix_listener auth-userdb {\n    mode = 0600\n    user = vmail\n  }\n}\n",
        )
        .expect("write");
        std::fs::write(
            dir.path().join("conf.d/20-more.conf"),
            "service auth {\n  unix_listener auth-userdb {\n    mode = 0660 # group access\n  }\n  unknown_thing = 3\n}\n",
        )
        .expect("write");
        let text = import(&dir.path().join("dovecot.conf"), &|_| true).expect("import");
        let config: toml::Table = text.parse().expect("valid TOML");
        let listener = &config["service"]["auth"]["unix_listener"][0];
        assert_eq!(listener["path"].as_str(), Some("auth-userdb"));
        assert_eq!(listener["mode"].as_str(), Some("0660"));
        assert_eq!(listener["user"].as_str(), Some("vmail"));
        assert!(
            text.contains(
                "# not carried over: unknown_thing = 3 (warden has no such service setting)"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_service_whose_binary_is_missing_is_a_comment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dovecot.conf");
        std::fs::write(&path, "").expect("write");
        let text = import(&path, &|binary| !binary.ends_with("lmtp")).expect("import");
        assert!(
            text.contains("# service lmtp: not written, /usr/lib/dovecot/lmtp is not installed"),
            "{text}"
        );
        assert!(text.contains("[service.imap-login]"), "{text}");
        assert!(
            text.contains("executable = \"/usr/lib/dovecot/auth -w\""),
            "{text}"
        );
    }

    #[test]
    fn an_unclosed_section_names_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dovecot.conf");
        std::fs::write(&path, "service imap {\n").expect("write");
        let error = import(&path, &|_| true).expect_err("unclosed");
        assert!(
            error.to_string().contains("a section is not closed"),
            "{error}"
        );
    }
}
