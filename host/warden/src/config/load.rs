//! Reading a TOML document into the effective configuration.
//!
//! The reader visits every key it knows, turns each value into its typed
//! form, fills in what the file leaves unset, and resolves relative paths and
//! `$default_*` variables. Each mistake becomes a [`Problem`] and reading
//! goes on, so one pass finds them all; keys nobody asked for are reported
//! as unknown, with the closest known key as a suggestion.
//!
//! Checks that compare settings with each other live in `validate`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};
use toml_writer::ToTomlKey;

use super::value::{
    DOVECOT_DEFAULT_SIZE, DOVECOT_INFINITE_SECS, Duration, ListenAddress, Mode, Network,
    ServiceName, Size,
};
use super::{
    Config, Executable, FileListener, Globals, IdleKill, InetListener, Interface, MetricsListen,
    Origin, PluginSettings, Problem, Service, ServiceCount, ServiceKind, Setting, Spelling, Ssl,
    VszLimit,
};

/// The Dovecot configuration the `config` service of a `dovecot`-interface
/// service set reads, unless `dovecot_config` says otherwise.
const DEFAULT_DOVECOT_CONFIG: &str = "/etc/dovecot/dovecot.conf";

/// Where compiled plugins are kept unless `plugin_cache` says otherwise:
/// a cache, so that a reboot does not compile them again.
const DEFAULT_PLUGIN_CACHE: &str = "/var/cache/warden";

/// Reads `source`. Returns `None` only when the text is not TOML at all;
/// otherwise a configuration in which each bad value was replaced by its
/// default, with a problem pushed for it.
pub(super) fn load(
    source: &str,
    file_dir: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let document = match DeTable::parse(source) {
        Ok(document) => document,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            let message = format!(
                "this is not valid TOML: {}",
                error.message().trim_end().replace('\n', "; ")
            );
            problems.push(Problem::new("", span, message));
            return None;
        }
    };
    let mut root = Table::new(String::new(), document.span(), document.get_ref());
    let globals = read_globals(&mut root, file_dir, problems);
    let mut services = Vec::new();
    if let Some(item) = root.get("service") {
        for (name, table) in item.tables(problems) {
            if let Some(service) = read_service(name, table, &globals, problems) {
                services.push(service);
            }
        }
    }
    let mut plugins = Vec::new();
    if let Some(item) = root.get("plugin") {
        for (name, table) in item.tables(problems) {
            plugins.push(read_plugin(name, table, problems));
        }
    }
    root.finish(problems);
    Some(Config {
        globals,
        services,
        plugins,
    })
}

/// One TOML table being read: remembers which keys were asked for, so that
/// the rest can be reported as unknown.
struct Table<'a, 'i> {
    path: String,
    span: Range<usize>,
    table: &'a DeTable<'i>,
    known: Vec<&'static str>,
}

/// One value being read, with its key path for messages.
struct Item<'a, 'i> {
    path: String,
    value: &'a Spanned<DeValue<'i>>,
}

impl<'a, 'i> Table<'a, 'i> {
    fn new(path: String, span: Range<usize>, table: &'a DeTable<'i>) -> Self {
        Table {
            path,
            span,
            table,
            known: Vec::new(),
        }
    }

    fn child_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{}", self.path, key.to_toml_key())
        }
    }

    /// The value of `key`, if the file sets it.
    fn get(&mut self, key: &'static str) -> Option<Item<'a, 'i>> {
        self.known.push(key);
        let value = self.table.get(key)?;
        Some(Item {
            path: self.child_path(key),
            value,
        })
    }

    /// The value of `key` or of its Dovecot 2.4 spelling `alias`, and which
    /// of the two was written. Writing both is a problem.
    fn get_either(
        &mut self,
        key: &'static str,
        alias: &'static str,
        problems: &mut Vec<Problem>,
    ) -> Option<(Item<'a, 'i>, Option<&'static str>)> {
        match (self.get(key), self.get(alias)) {
            (Some(item), None) => Some((item, None)),
            (None, Some(item)) => Some((item, Some(alias))),
            (Some(item), Some(other)) => {
                problems.push(Problem::new(
                    other.path.clone(),
                    other.span(),
                    format!(
                        "`{alias}` is Dovecot 2.4's name for `{key}`, which is also set; keep one of them"
                    ),
                ));
                Some((item, None))
            }
            (None, None) => None,
        }
    }

    /// Reports every key of the table that was never asked for.
    fn finish(self, problems: &mut Vec<Problem>) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let hint = match super::nearest(name, self.known.iter().copied()) {
                Some(known) => format!("did you mean `{known}`?"),
                None => format!("the settings here are: {}", self.known.join(", ")),
            };
            let place = if self.path.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{}]", self.path)
            };
            problems.push(Problem::new(
                self.child_path(name),
                key.span(),
                format!("unknown setting `{name}` {place}; {hint}"),
            ));
        }
    }
}

impl<'a, 'i> Item<'a, 'i> {
    fn span(&self) -> Range<usize> {
        self.value.span()
    }

    fn problem(&self, message: impl Into<String>) -> Problem {
        Problem::new(self.path.clone(), self.span(), message)
    }

    fn wrong_type(&self, expected: &str) -> Problem {
        self.problem(format!(
            "expected {expected}, found {}",
            self.value.get_ref().type_str()
        ))
    }

    fn string(&self, problems: &mut Vec<Problem>) -> Option<&'a str> {
        let value = self.value.get_ref().as_str();
        if value.is_none() {
            problems.push(self.wrong_type("a string"));
        }
        value
    }

    /// An unsigned integer as written, read from its digits so that values
    /// above `i64::MAX` (Dovecot's `18446744073709551615`) are understood.
    fn unsigned(&self) -> Option<u64> {
        let integer = self.value.get_ref().as_integer()?;
        u64::from_str_radix(integer.as_str(), integer.radix()).ok()
    }

    fn uint(&self, problems: &mut Vec<Problem>) -> Option<u32> {
        let Some(integer) = self.value.get_ref().as_integer() else {
            problems.push(self.wrong_type("a whole number"));
            return None;
        };
        match self.unsigned().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                problems.push(self.problem(format!(
                    "{integer} is out of range; write a number from 0 to {}",
                    u32::MAX
                )));
                None
            }
        }
    }

    /// A boolean, also accepting Dovecot's `"yes"` and `"no"`.
    fn boolean(&self, problems: &mut Vec<Problem>) -> Option<bool> {
        match self.value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            DeValue::String(s) if s == "yes" => Some(true),
            DeValue::String(s) if s == "no" => Some(false),
            DeValue::String(s) => {
                problems.push(
                    self.problem(format!("`{s}` is not a yes/no value; write true or false")),
                );
                None
            }
            _ => {
                problems.push(self.wrong_type("true or false"));
                None
            }
        }
    }

    /// A list of words: a TOML array of strings, or one string of words
    /// separated by spaces or commas (Dovecot's spelling).
    fn words(&self, problems: &mut Vec<Problem>) -> Option<Vec<String>> {
        match self.value.get_ref() {
            DeValue::String(s) => Some(
                s.split([' ', ',', '\t'])
                    .filter(|w| !w.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            DeValue::Array(array) => {
                let mut words = Vec::new();
                for (index, element) in array.iter().enumerate() {
                    match element.get_ref().as_str() {
                        Some(word) => words.push(word.to_owned()),
                        None => problems.push(Problem::new(
                            format!("{}[{index}]", self.path),
                            element.span(),
                            format!("expected a string, found {}", element.get_ref().type_str()),
                        )),
                    }
                }
                Some(words)
            }
            _ => {
                problems.push(self.wrong_type("a list of strings"));
                None
            }
        }
    }

    /// Reads a value with `parse`, recording its error as a problem.
    fn parsed<T>(
        &self,
        problems: &mut Vec<Problem>,
        parse: impl FnOnce(&Self) -> Result<T, String>,
    ) -> Option<T> {
        parse(self).map_err(|e| problems.push(self.problem(e))).ok()
    }

    /// The sub-tables of a table of tables (`[service.NAME]`), with their names.
    fn tables(&self, problems: &mut Vec<Problem>) -> Vec<(&'a str, Table<'a, 'i>)> {
        let Some(table) = self.value.get_ref().as_table() else {
            problems.push(self.wrong_type("a table of services, like [service.imap]"));
            return Vec::new();
        };
        table
            .iter()
            .filter_map(|(key, value)| {
                let name: &'a str = key.get_ref().as_ref();
                let path = format!("{}.{}", self.path, name.to_toml_key());
                match value.get_ref().as_table() {
                    Some(table) => Some((name, Table::new(path, key.span(), table))),
                    None => {
                        let item = Item { path, value };
                        problems.push(item.wrong_type("a table"));
                        None
                    }
                }
            })
            .collect()
    }

    /// The tables of an array of tables (`[[service.NAME.unix_listener]]`).
    fn array_of_tables(&self, problems: &mut Vec<Problem>) -> Vec<Table<'a, 'i>> {
        let Some(array) = self.value.get_ref().as_array() else {
            problems
                .push(self.wrong_type(&format!("an array of tables, written [[{}]]", self.path)));
            return Vec::new();
        };
        array
            .iter()
            .enumerate()
            .filter_map(|(index, element)| {
                let path = format!("{}[{index}]", self.path);
                match element.get_ref().as_table() {
                    Some(table) => Some(Table::new(path, element.span(), table)),
                    None => {
                        problems.push(Problem::new(
                            path,
                            element.span(),
                            format!("expected a table, found {}", element.get_ref().type_str()),
                        ));
                        None
                    }
                }
            })
            .collect()
    }
}

/// The value the file gives, or `default` with its origin.
fn setting<'a, 'i, T>(
    item: Option<Item<'a, 'i>>,
    problems: &mut Vec<Problem>,
    read: impl FnOnce(&Item<'a, 'i>, &mut Vec<Problem>) -> Option<T>,
    default: impl FnOnce() -> Setting<T>,
) -> Setting<T> {
    item.and_then(|item| read(&item, problems).map(|v| Setting::new(v, Origin::file(item.span()))))
        .unwrap_or_else(default)
}

fn builtin<T>(value: T) -> impl FnOnce() -> Setting<T> {
    move || Setting::new(value, Origin::BUILTIN)
}

/// Resolves `path` against `base`. Relative paths may not leave `base` with
/// `..`; absolute ones are taken as they are. No path may hold a NUL byte,
/// which the system calls that take it cannot pass.
pub(super) fn resolve_under(base: &Path, path: &str) -> Result<PathBuf, String> {
    if path.contains('\0') {
        return Err(format!(
            "the path {path:?} contains a NUL byte, which no path can hold; remove it"
        ));
    }
    if Path::new(path).is_absolute() {
        return Ok(PathBuf::from(path));
    }
    let mut resolved = base.to_path_buf();
    let mut depth = 0usize;
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => {
                resolved.push(part);
                depth += 1;
            }
            Component::ParentDir if depth == 0 => {
                return Err(format!(
                    "`{path}` leaves base_dir ({}) with `..`; write a path inside base_dir, or an absolute path",
                    base.display()
                ));
            }
            Component::ParentDir => {
                resolved.pop();
                depth -= 1;
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Ok(resolved)
}

fn read_globals(
    root: &mut Table<'_, '_>,
    file_dir: Option<&Path>,
    problems: &mut Vec<Problem>,
) -> Globals {
    let base_dir =
        setting(
            root.get("base_dir"),
            problems,
            |item, problems| {
                let text = item.string(problems)?;
                if text.is_empty() {
                    problems.push(item.problem(
                        "base_dir cannot be empty; write a directory, like \"/run/warden\"",
                    ));
                    return None;
                }
                match file_dir {
                    // Relative to the file's own directory, so a configuration
                    // kept with a project finds its runtime files wherever the
                    // project is checked out.
                    Some(dir) if !Path::new(text).is_absolute() => Some(normalize(&dir.join(text))),
                    _ => read_absolute(item, problems, "/run/warden"),
                }
            },
            builtin(PathBuf::from("/run/warden")),
        );
    let protocols = setting(
        root.get("protocols"),
        problems,
        |item, problems| {
            let words = item.words(problems)?;
            // Dovecot writes an empty list as `protocols = none`.
            Some(if words == ["none"] { Vec::new() } else { words })
        },
        builtin(vec!["imap".into(), "pop3".into(), "lmtp".into()]),
    );
    let listen = setting(
        root.get("listen"),
        problems,
        read_addresses,
        builtin(vec![ListenAddress::AnyV4, ListenAddress::AnyV6]),
    );
    let ssl = setting(
        root.get("ssl"),
        problems,
        |item, problems| match item.value.get_ref() {
            DeValue::Boolean(true) => Some(Ssl::Yes),
            DeValue::Boolean(false) => Some(Ssl::No),
            DeValue::String(s) => match s.as_ref() {
                "yes" => Some(Ssl::Yes),
                "no" => Some(Ssl::No),
                "required" => Some(Ssl::Required),
                other => {
                    problems.push(item.problem(format!(
                        "`{other}` is not an ssl setting; write \"yes\", \"no\" or \"required\""
                    )));
                    None
                }
            },
            _ => {
                problems.push(item.wrong_type("\"yes\", \"no\" or \"required\""));
                None
            }
        },
        builtin(Ssl::Yes),
    );
    let default_client_limit = setting(
        root.get("default_client_limit"),
        problems,
        read_positive,
        builtin(1000),
    );
    let default_process_limit = setting(
        root.get("default_process_limit"),
        problems,
        read_positive,
        builtin(100),
    );
    let default_idle_kill = setting(
        root.get_either("default_idle_kill", "default_idle_kill_interval", problems)
            .map(|(item, _)| item),
        problems,
        |item, problems| {
            let duration = item.parsed(problems, read_duration)?;
            if duration.as_millis() == 0 {
                problems.push(item.problem(
                    "default_idle_kill must be longer than 0; write a duration like \"1m\"",
                ));
                return None;
            }
            Some(duration)
        },
        builtin(Duration::from_secs(60)),
    );
    let default_vsz_limit = setting(
        root.get("default_vsz_limit"),
        problems,
        |item, problems| match item.parsed(problems, read_vsz_limit)? {
            VszRead::Limit(limit) => Some(limit),
            VszRead::Default => {
                problems.push(item.problem(
                    "default_vsz_limit cannot refer to itself; write a size like \"256M\" or \"unlimited\"",
                ));
                None
            }
        },
        builtin(VszLimit::Bytes(Size(256 << 20))),
    );
    let user_setting = |item: Option<Item<'_, '_>>, problems: &mut Vec<Problem>, default: &str| {
        setting(
            item,
            problems,
            |item, problems| {
                let name = item.string(problems)?;
                item.parsed(problems, |item| {
                    if name.is_empty() {
                        Err(format!(
                            "{} cannot be empty; write a user or group name, like \"{default}\"",
                            item.path
                        ))
                    } else if name.starts_with('$') {
                        Err(format!(
                            "{} is a variable's value and cannot name another; write a name, like \"{default}\"",
                            item.path
                        ))
                    } else {
                        Ok(name.to_owned())
                    }
                })
            },
            builtin(default.to_owned()),
        )
    };
    let default_login_user = user_setting(root.get("default_login_user"), problems, "dovenull");
    let default_internal_user =
        user_setting(root.get("default_internal_user"), problems, "dovecot");
    let default_internal_group =
        user_setting(root.get("default_internal_group"), problems, "dovecot");
    let plugins_dir = setting(
        root.get("plugins_dir"),
        problems,
        |item, problems| read_absolute(item, problems, "/etc/warden/plugins"),
        builtin(PathBuf::from("/etc/warden/plugins")),
    );
    let shutdown_clients = setting(
        root.get("shutdown_clients"),
        problems,
        Item::boolean,
        builtin(true),
    );
    let base = base_dir.value.clone();
    let control_socket = setting(
        root.get("control_socket"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |_| {
                if text.is_empty() {
                    Err(
                        "the control socket cannot be turned off; write a path like \"control\""
                            .to_owned(),
                    )
                } else {
                    resolve_under(&base, text)
                }
            })
        },
        || Setting::new(base.join("control"), Origin::BUILTIN),
    );
    let metrics_listen = setting(
        root.get("metrics_listen"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |_| read_metrics_listen(&base, text))
        },
        builtin(None),
    );
    let process_limit_wait = setting(
        root.get("process_limit_wait"),
        problems,
        |item, problems| item.parsed(problems, read_duration),
        builtin(Duration::from_secs(10)),
    );
    let shutdown_grace = setting(
        root.get("shutdown_grace"),
        problems,
        |item, problems| item.parsed(problems, read_duration),
        builtin(Duration::from_secs(6)),
    );
    let plugin_cache = setting(
        root.get("plugin_cache"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |_| {
                if text.is_empty() {
                    Err(
                        "the plugin cache cannot be turned off; write a directory like \"/var/cache/warden\""
                            .to_owned(),
                    )
                } else {
                    resolve_under(&base, text)
                }
            })
        },
        builtin(PathBuf::from(DEFAULT_PLUGIN_CACHE)),
    );
    let dovecot_config = setting(
        root.get("dovecot_config"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |_| resolve_under(&base, text))
        },
        builtin(PathBuf::from(DEFAULT_DOVECOT_CONFIG)),
    );
    let haproxy_trusted_networks = setting(
        root.get("haproxy_trusted_networks"),
        problems,
        |item, problems| {
            let words = item.words(problems)?;
            let networks: Result<Vec<Network>, String> =
                words.iter().map(|word| Network::parse(word)).collect();
            item.parsed(problems, |_| networks)
        },
        builtin(Vec::new()),
    );
    let haproxy_timeout = setting(
        root.get("haproxy_timeout"),
        problems,
        |item, problems| {
            let duration = item.parsed(problems, read_duration)?;
            if duration.as_millis() == 0 {
                problems.push(item.problem(
                    "haproxy_timeout must be longer than 0; write a duration like \"3s\"",
                ));
                return None;
            }
            Some(duration)
        },
        builtin(Duration::from_secs(3)),
    );
    Globals {
        base_dir,
        protocols,
        listen,
        ssl,
        default_client_limit,
        default_process_limit,
        default_idle_kill,
        default_vsz_limit,
        default_login_user,
        default_internal_user,
        default_internal_group,
        plugins_dir,
        plugin_cache,
        dovecot_config,
        shutdown_clients,
        control_socket,
        metrics_listen,
        process_limit_wait,
        shutdown_grace,
        haproxy_trusted_networks,
        haproxy_timeout,
    }
}

/// `path` with `.` and `..` components resolved by name.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            Component::Normal(_) | Component::RootDir | Component::Prefix(_) => {
                normal.push(component);
            }
        }
    }
    normal
}

/// A directory that must be given as an absolute path, since it is what
/// relative paths are resolved against, or is read before anything else.
fn read_absolute(
    item: &Item<'_, '_>,
    problems: &mut Vec<Problem>,
    example: &str,
) -> Option<PathBuf> {
    let text = item.string(problems)?;
    item.parsed(problems, |item| {
        if Path::new(text).is_absolute() {
            Ok(PathBuf::from(text))
        } else {
            Err(format!(
                "{} must be an absolute path, like \"{example}\", not `{text}`",
                item.path
            ))
        }
    })
}

fn read_metrics_listen(base: &Path, text: &str) -> Result<Option<MetricsListen>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    if text.contains('/') || !text.contains(':') {
        return resolve_under(base, text).map(|path| Some(MetricsListen::Unix(path)));
    }
    text.parse::<SocketAddr>()
        .map(|address| Some(MetricsListen::Inet(address)))
        .map_err(|_| {
            format!(
                "`{text}` is neither an address with a port (\"127.0.0.1:9100\", \"[::1]:9100\") nor a socket path"
            )
        })
}

fn read_positive(item: &Item<'_, '_>, problems: &mut Vec<Problem>) -> Option<u32> {
    let n = item.uint(problems)?;
    if n == 0 {
        problems.push(item.problem(format!(
            "{} = 0 leaves services nothing to fall back on; write at least 1",
            item.path
        )));
        return None;
    }
    Some(n)
}

fn read_addresses(item: &Item<'_, '_>, problems: &mut Vec<Problem>) -> Option<Vec<ListenAddress>> {
    let words = item.words(problems)?;
    item.parsed(problems, |_| {
        words
            .iter()
            .map(|word| ListenAddress::parse(word))
            .collect()
    })
}

fn read_duration(item: &Item<'_, '_>) -> Result<Duration, String> {
    match item.value.get_ref() {
        DeValue::String(text) => Duration::parse(text),
        DeValue::Integer(_) => item
            .unsigned()
            .map(Duration::from_secs)
            .ok_or_else(|| "a duration cannot be negative; write one like \"60s\"".to_owned()),
        other => Err(format!(
            "expected a duration like \"60s\", found {}",
            other.type_str()
        )),
    }
}

/// What a `vsz_limit` value says.
enum VszRead {
    /// A limit, or explicitly none.
    Limit(VszLimit),
    /// Dovecot 2.3's `18446744073709551615`: use `default_vsz_limit`.
    Default,
}

fn read_vsz_limit(item: &Item<'_, '_>) -> Result<VszRead, String> {
    let bytes = match item.value.get_ref() {
        DeValue::String(text) if text == "unlimited" => {
            return Ok(VszRead::Limit(VszLimit::Unlimited));
        }
        DeValue::String(text) => Size::parse(text)?.0,
        DeValue::Integer(_) => item
            .unsigned()
            .ok_or_else(|| "a size cannot be negative; write one like \"256M\"".to_owned())?,
        other => {
            return Err(format!(
                "expected a size like \"256M\" or \"unlimited\", found {}",
                other.type_str()
            ));
        }
    };
    Ok(match bytes {
        0 => VszRead::Limit(VszLimit::Unlimited),
        DOVECOT_DEFAULT_SIZE => VszRead::Default,
        bytes => VszRead::Limit(VszLimit::Bytes(Size(bytes))),
    })
}

/// Replaces a `$default_*` variable in a user or group setting with the
/// global it names (Dovecot 2.3 writes `$default_login_user`, 2.4
/// `$SET:default_login_user`).
pub(super) fn expand_identity(
    text: &str,
    globals: &Globals,
) -> Result<(String, Option<Spelling>), String> {
    let Some(variable) = text.strip_prefix('$') else {
        return Ok((text.to_owned(), None));
    };
    let name = variable.strip_prefix("SET:").unwrap_or(variable);
    let (global, value) = match name {
        "default_login_user" => ("default_login_user", &globals.default_login_user.value),
        "default_internal_user" => (
            "default_internal_user",
            &globals.default_internal_user.value,
        ),
        "default_internal_group" => (
            "default_internal_group",
            &globals.default_internal_group.value,
        ),
        _ => {
            return Err(format!(
                "`{text}` is not a known variable; use $default_login_user, $default_internal_user or $default_internal_group"
            ));
        }
    };
    Ok((
        value.clone(),
        Some(Spelling::Variable {
            written: text.to_owned(),
            global,
        }),
    ))
}

fn identity_setting(
    item: Option<Item<'_, '_>>,
    globals: &Globals,
    problems: &mut Vec<Problem>,
    default: impl FnOnce() -> Setting<String>,
) -> Setting<String> {
    let Some(item) = item else {
        return default();
    };
    let Some(text) = item.string(problems) else {
        return default();
    };
    match expand_identity(text, globals) {
        Ok((value, note)) => Setting::new(
            value,
            Origin::File {
                span: item.span(),
                note,
            },
        ),
        Err(message) => {
            problems.push(item.problem(message));
            default()
        }
    }
}

fn identity_list_setting(
    item: Option<Item<'_, '_>>,
    globals: &Globals,
    problems: &mut Vec<Problem>,
) -> Setting<Vec<String>> {
    let Some(item) = item else {
        return Setting::new(Vec::new(), Origin::BUILTIN);
    };
    let Some(words) = item.words(problems) else {
        return Setting::new(Vec::new(), Origin::BUILTIN);
    };
    let mut notes = Vec::new();
    let mut names = Vec::new();
    for word in &words {
        match expand_identity(word, globals) {
            Ok((name, note)) => {
                notes.extend(note);
                names.push(name);
            }
            Err(message) => problems.push(item.problem(message)),
        }
    }
    let note = (!notes.is_empty()).then_some(Spelling::Several(notes));
    Setting::new(
        names,
        Origin::File {
            span: item.span(),
            note,
        },
    )
}

fn from_global<T: Clone>(
    global: &Setting<T>,
    key: &'static str,
    note: Option<String>,
) -> Setting<T> {
    Setting::new(global.value.clone(), Origin::Global { key, note })
}

fn read_service(
    name: &str,
    mut table: Table<'_, '_>,
    globals: &Globals,
    problems: &mut Vec<Problem>,
) -> Option<Service> {
    let name = match ServiceName::parse(name) {
        Ok(name) => name,
        Err(message) => {
            problems.push(Problem::new(
                table.path.clone(),
                table.span.clone(),
                message,
            ));
            return None;
        }
    };
    let base = &globals.base_dir.value;
    let header = table.span.clone();

    let executable = match table.get("executable") {
        Some(item) => item
            .string(problems)
            .and_then(|text| item.parsed(problems, |_| read_executable(base, text)))
            .map(|argv| Setting::new(Executable { argv }, Origin::file(item.span()))),
        None => {
            problems.push(Problem::new(
                table.path.clone(),
                header.clone(),
                format!("service {name} has no executable; add executable = \"/path/to/program\""),
            ));
            None
        }
    }
    .unwrap_or_else(|| Setting::new(Executable { argv: Vec::new() }, Origin::BUILTIN));

    let kind = setting(
        table.get("type"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |_| {
                ServiceKind::ALL
                    .into_iter()
                    .find(|t| t.as_str() == text)
                    .ok_or_else(|| {
                        format!(
                            "`{text}` is not a service type; use \"\", \"startup\", \"login\", \"log\", \"config\", \"anvil\" or \"worker\""
                        )
                    })
            })
        },
        builtin(ServiceKind::Default),
    );
    let protocol = setting(
        table.get("protocol"),
        problems,
        |item, problems| item.string(problems).map(str::to_owned),
        builtin(String::new()),
    );
    let interface = setting(
        table.get("interface"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |_| {
                Interface::ALL
                    .into_iter()
                    .find(|i| i.as_str() == text)
                    .ok_or_else(|| {
                        format!(
                            "`{text}` is not an interface; use \"systemd\", \"warden\", \"inetd\" or \"dovecot\""
                        )
                    })
            })
        },
        builtin(Interface::Systemd),
    );

    let user = identity_setting(table.get("user"), globals, problems, || {
        if kind.value == ServiceKind::Login {
            from_global(
                &globals.default_login_user,
                "default_login_user",
                Some("the user of login services".into()),
            )
        } else {
            Setting::new(
                String::new(),
                Origin::Builtin {
                    note: Some("empty: the process keeps the supervisor's user"),
                },
            )
        }
    });
    let group = identity_setting(table.get("group"), globals, problems, || {
        Setting::new(
            String::new(),
            Origin::Builtin {
                note: Some("empty: the user's primary group"),
            },
        )
    });
    let extra_groups = identity_list_setting(table.get("extra_groups"), globals, problems);
    let privileged_group =
        identity_setting(table.get("privileged_group"), globals, problems, || {
            Setting::new(String::new(), Origin::BUILTIN)
        });
    let chroot = setting(
        table.get("chroot"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            if text.is_empty() {
                return Some(None);
            }
            item.parsed(problems, |_| resolve_under(base, text))
                .map(Some)
        },
        builtin(None),
    );
    let drop_priv_before_exec = setting(
        table.get("drop_priv_before_exec"),
        problems,
        Item::boolean,
        builtin(false),
    );

    let client_limit = match table.get("client_limit") {
        Some(item) => match item.uint(problems) {
            Some(0) => from_global(
                &globals.default_client_limit,
                "default_client_limit",
                Some("client_limit = 0 in the file".into()),
            ),
            Some(n) => Setting::new(n, Origin::file(item.span())),
            None => from_global(&globals.default_client_limit, "default_client_limit", None),
        },
        None if interface.value == Interface::Inetd => Setting::new(
            1,
            Origin::Builtin {
                note: Some("interface inetd hands each process one connection"),
            },
        ),
        None => from_global(&globals.default_client_limit, "default_client_limit", None),
    };
    let service_count = read_service_count(&mut table, problems);
    let process_limit = match table.get("process_limit") {
        Some(item) => match item.uint(problems) {
            Some(0) => from_global(
                &globals.default_process_limit,
                "default_process_limit",
                Some("process_limit = 0 in the file".into()),
            ),
            Some(n) => Setting::new(n, Origin::file(item.span())),
            None => from_global(
                &globals.default_process_limit,
                "default_process_limit",
                None,
            ),
        },
        None => from_global(
            &globals.default_process_limit,
            "default_process_limit",
            None,
        ),
    };
    let process_min_avail = setting(
        table.get("process_min_avail"),
        problems,
        Item::uint,
        builtin(0),
    );
    let idle_kill = read_idle_kill(&mut table, globals, problems);
    let vsz_limit = match table.get("vsz_limit") {
        Some(item) => match item.parsed(problems, read_vsz_limit) {
            Some(VszRead::Limit(limit)) => Setting::new(limit, Origin::file(item.span())),
            Some(VszRead::Default) => from_global(
                &globals.default_vsz_limit,
                "default_vsz_limit",
                Some("vsz_limit = 18446744073709551615 in the file".into()),
            ),
            None => from_global(&globals.default_vsz_limit, "default_vsz_limit", None),
        },
        None => from_global(&globals.default_vsz_limit, "default_vsz_limit", None),
    };
    let policies = setting(
        table.get("policies"),
        problems,
        Item::words,
        builtin(Vec::new()),
    );
    let no_limit = || {
        Setting::new(
            0,
            Origin::Builtin {
                note: Some("0: no limit"),
            },
        )
    };
    let per_source_limit = setting(
        table.get("per_source_limit"),
        problems,
        Item::uint,
        no_limit,
    );
    let per_source_rate = setting(table.get("per_source_rate"), problems, Item::uint, no_limit);

    let mut unix_listeners = Vec::new();
    if let Some(item) = table.get("unix_listener") {
        for listener in item.array_of_tables(problems) {
            unix_listeners.push(read_file_listener(listener, globals, problems));
        }
    }
    let mut fifo_listeners = Vec::new();
    if let Some(item) = table.get("fifo_listener") {
        for listener in item.array_of_tables(problems) {
            fifo_listeners.push(read_file_listener(listener, globals, problems));
        }
    }
    let mut inet_listeners = Vec::new();
    if let Some(item) = table.get("inet_listener") {
        for listener in item.array_of_tables(problems) {
            inet_listeners.push(read_inet_listener(listener, globals, problems));
        }
    }
    table.finish(problems);

    Some(Service {
        name,
        span: header,
        executable,
        kind,
        protocol,
        interface,
        user,
        group,
        extra_groups,
        privileged_group,
        chroot,
        drop_priv_before_exec,
        client_limit,
        service_count,
        process_limit,
        process_min_avail,
        idle_kill,
        vsz_limit,
        policies,
        per_source_limit,
        per_source_rate,
        unix_listeners,
        fifo_listeners,
        inet_listeners,
    })
}

/// Reads a `[plugin.NAME]` table.
fn read_plugin(
    name: &str,
    mut table: Table<'_, '_>,
    problems: &mut Vec<Problem>,
) -> PluginSettings {
    let deadline = setting(
        table.get("deadline"),
        problems,
        |item, problems| {
            let duration = item.parsed(problems, read_duration)?;
            if duration.as_millis() == 0 || duration.as_millis() > 10_000 {
                problems.push(item.problem(format!(
                    "a plugin deadline of {duration} is out of range; write one from 1ms to 10s, like \"20ms\""
                )));
                return None;
            }
            Some(duration)
        },
        builtin(Duration::from_millis(20)),
    );
    let memory = setting(
        table.get("memory"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            let size = item.parsed(problems, |_| Size::parse(text))?;
            if size.0 < (1 << 20) || size.0 > (4 << 30) {
                problems.push(item.problem(format!(
                    "a plugin memory cap of {size} is out of range; write one from \"1M\" to \"4G\""
                )));
                return None;
            }
            Some(size)
        },
        builtin(Size(32 << 20)),
    );
    let directory = setting(
        table.get("directory"),
        problems,
        |item, problems| {
            let text = item.string(problems)?;
            item.parsed(problems, |item| {
                if text.is_empty() {
                    Ok(None)
                } else if Path::new(text).is_absolute() {
                    Ok(Some(PathBuf::from(text)))
                } else {
                    Err(format!(
                        "{} must be an absolute path, like \"/etc/warden/blocklist\", not `{text}`",
                        item.path
                    ))
                }
            })
        },
        builtin(None),
    );
    table.finish(problems);
    PluginSettings {
        name: name.to_owned(),
        deadline,
        memory,
        directory,
    }
}

/// Splits `executable` like a shell word list and resolves the program
/// against `base_dir`. A NUL byte is refused: exec cannot pass it in a
/// program's name or an argument.
fn read_executable(base: &Path, text: &str) -> Result<Vec<String>, String> {
    if text.contains('\0') {
        return Err(format!(
            "{text:?} contains a NUL byte, which no program name or argument can hold; remove it"
        ));
    }
    let Some(mut argv) = shlex::split(text) else {
        return Err(format!(
            "`{text}` has an unclosed quote or a trailing backslash; close the quote"
        ));
    };
    let Some(program) = argv.first_mut() else {
        return Err(
            "executable is empty; write the program to run, like \"/usr/lib/dovecot/imap\"".into(),
        );
    };
    if !Path::new(program.as_str()).is_absolute() {
        *program = normalize(&base.join(program.as_str()))
            .to_string_lossy()
            .into_owned();
    }
    Ok(argv)
}

fn read_service_count(
    table: &mut Table<'_, '_>,
    problems: &mut Vec<Problem>,
) -> Setting<ServiceCount> {
    let unlimited = || Setting::new(ServiceCount::Unlimited, Origin::BUILTIN);
    let Some((item, alias)) = table.get_either("service_count", "restart_request_count", problems)
    else {
        return unlimited();
    };
    let note = alias.map(|alias| Spelling::Alias(alias.to_owned()));
    let count = match item.value.get_ref() {
        DeValue::String(text) if text == "unlimited" => Some(ServiceCount::Unlimited),
        DeValue::Integer(_) => match (item.uint(problems), alias) {
            (Some(0), None) => Some(ServiceCount::Unlimited),
            (Some(0), Some(alias)) => {
                problems.push(item.problem(format!(
                    "{alias} = 0 is not valid; write \"unlimited\" for no limit"
                )));
                None
            }
            (Some(n), _) => NonZeroU32::new(n).map(ServiceCount::Limited),
            (None, _) => None,
        },
        DeValue::String(text) => {
            problems.push(item.problem(format!(
                "`{text}` is not a count; write a number of connections, or \"unlimited\""
            )));
            None
        }
        _ => {
            problems.push(item.wrong_type("a number of connections or \"unlimited\""));
            None
        }
    };
    match count {
        Some(count) => Setting::new(
            count,
            Origin::File {
                span: item.span(),
                note,
            },
        ),
        None => unlimited(),
    }
}

fn read_idle_kill(
    table: &mut Table<'_, '_>,
    globals: &Globals,
    problems: &mut Vec<Problem>,
) -> Setting<IdleKill> {
    let global = |note: Option<String>| {
        Setting::new(
            IdleKill::After(globals.default_idle_kill.value),
            Origin::Global {
                key: "default_idle_kill",
                note,
            },
        )
    };
    let Some((item, alias)) = table.get_either("idle_kill", "idle_kill_interval", problems) else {
        return global(None);
    };
    let alias_note = alias.map(|alias| Spelling::Alias(alias.to_owned()));
    let infinite = |note: Option<Spelling>| {
        Setting::new(
            IdleKill::Infinite,
            Origin::File {
                span: item.span(),
                note,
            },
        )
    };
    if let DeValue::String(text) = item.value.get_ref()
        && matches!(text.as_ref(), "infinite" | "unlimited")
    {
        return infinite(alias_note);
    }
    if item.unsigned() == Some(DOVECOT_INFINITE_SECS) {
        return infinite(Some(Spelling::Magic(format!(
            "{DOVECOT_INFINITE_SECS} is Dovecot's infinite"
        ))));
    }
    let Some(duration) = item.parsed(problems, read_duration) else {
        return global(None);
    };
    match (duration.as_millis(), alias) {
        (0, None) => global(Some("idle_kill = 0 in the file".into())),
        (0, Some(alias)) => {
            problems.push(item.problem(format!(
                "{alias} = 0 is not valid; write \"infinite\" to never kill idle processes"
            )));
            global(None)
        }
        _ => Setting::new(
            IdleKill::After(duration),
            Origin::File {
                span: item.span(),
                note: alias_note,
            },
        ),
    }
}

fn read_mode(item: &Item<'_, '_>) -> Result<Mode, String> {
    match item.value.get_ref() {
        DeValue::String(text) => Mode::parse(text),
        DeValue::Integer(integer) => {
            let bits = item.unsigned().and_then(|n| u32::try_from(n).ok());
            match (integer.radix(), bits) {
                (8, Some(bits)) | (10, Some(bits @ 0)) => Mode::new(bits),
                (10, Some(_)) => Err(Mode::decimal_error(integer.as_str())),
                _ => Err(format!(
                    "{integer} is not a mode; write the permission bits in octal, like \"0600\""
                )),
            }
        }
        other => Err(format!(
            "expected an octal mode like \"0600\", found {}",
            other.type_str()
        )),
    }
}

fn read_listener_type(item: Option<Item<'_, '_>>, problems: &mut Vec<Problem>) -> Setting<String> {
    setting(
        item,
        problems,
        |item, problems| item.string(problems).map(str::to_owned),
        builtin(String::new()),
    )
}

fn read_file_listener(
    mut table: Table<'_, '_>,
    globals: &Globals,
    problems: &mut Vec<Problem>,
) -> FileListener {
    let base = &globals.base_dir.value;
    let path = match table.get("path") {
        Some(item) => item
            .string(problems)
            .and_then(|text| {
                item.parsed(problems, |_| {
                    if text.is_empty() {
                        Err(
                            "a listener path cannot be empty; write one like \"auth-userdb\""
                                .into(),
                        )
                    } else {
                        resolve_under(base, text)
                    }
                })
            })
            .map(|path| Setting::new(path, Origin::file(item.span()))),
        None => {
            problems.push(Problem::new(
                table.path.clone(),
                table.span.clone(),
                "this listener has no path; add path = \"NAME\" (relative to base_dir)",
            ));
            None
        }
    }
    .unwrap_or_else(|| Setting::new(PathBuf::new(), Origin::BUILTIN));
    let owner_note = Origin::Builtin {
        note: Some("empty: owned by the supervisor's user"),
    };
    let user = identity_setting(table.get("user"), globals, problems, || {
        Setting::new(String::new(), owner_note.clone())
    });
    let group = identity_setting(table.get("group"), globals, problems, || {
        Setting::new(String::new(), owner_note.clone())
    });
    let mode = setting(
        table.get("mode"),
        problems,
        |item, problems| item.parsed(problems, read_mode),
        || Setting::new(Mode::DEFAULT, Origin::BUILTIN),
    );
    let kind = read_listener_type(table.get("type"), problems);
    let span = table.span.clone();
    table.finish(problems);
    FileListener {
        span,
        path,
        user,
        group,
        mode,
        kind,
    }
}

fn read_inet_listener(
    mut table: Table<'_, '_>,
    globals: &Globals,
    problems: &mut Vec<Problem>,
) -> InetListener {
    let name = match table.get("name") {
        Some(item) => item
            .string(problems)
            .and_then(|text| {
                item.parsed(problems, |_| {
                    if text.is_empty() || text.contains(char::is_whitespace) {
                        Err(format!(
                            "`{text}` is not a listener name; write one word, like \"imaps\""
                        ))
                    } else {
                        Ok(text.to_owned())
                    }
                })
            })
            .map(|name| Setting::new(name, Origin::file(item.span()))),
        None => {
            problems.push(Problem::new(
                table.path.clone(),
                table.span.clone(),
                "this inet listener has no name; add name = \"NAME\", like \"imap\"",
            ));
            None
        }
    }
    .unwrap_or_else(|| Setting::new(String::new(), Origin::BUILTIN));
    let address = match table.get_either("address", "listen", problems) {
        Some((item, alias)) => match read_addresses(&item, problems) {
            Some(addresses) => Setting::new(
                addresses,
                Origin::File {
                    span: item.span(),
                    note: alias.map(|alias| Spelling::Alias(alias.to_owned())),
                },
            ),
            None => from_global(&globals.listen, "listen", None),
        },
        None => from_global(&globals.listen, "listen", None),
    };
    let port = setting(
        table.get("port"),
        problems,
        |item, problems| {
            let n = item.uint(problems)?;
            match u16::try_from(n) {
                Ok(port) => Some(port),
                Err(_) => {
                    problems.push(item.problem(format!(
                        "port {n} does not exist; write a port from 1 to 65535, or 0 to disable the listener"
                    )));
                    None
                }
            }
        },
        || {
            Setting::new(
                0,
                Origin::Builtin {
                    note: Some("port 0: the listener is disabled"),
                },
            )
        },
    );
    let ssl = setting(table.get("ssl"), problems, Item::boolean, builtin(false));
    let haproxy = setting(
        table.get("haproxy"),
        problems,
        Item::boolean,
        builtin(false),
    );
    let kind = read_listener_type(table.get("type"), problems);
    let span = table.span.clone();
    table.finish(problems);
    InetListener {
        span,
        name,
        address,
        port,
        ssl,
        haproxy,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_under_base_dir() {
        let base = Path::new("/run/warden");
        assert_eq!(
            resolve_under(base, "login/imap"),
            Ok(PathBuf::from("/run/warden/login/imap"))
        );
        assert_eq!(
            resolve_under(base, "./a/../b"),
            Ok(PathBuf::from("/run/warden/b"))
        );
        assert_eq!(resolve_under(base, "."), Ok(PathBuf::from("/run/warden")));
        assert_eq!(
            resolve_under(base, "/var/run/x"),
            Ok(PathBuf::from("/var/run/x"))
        );
        assert!(resolve_under(base, "../etc/passwd").is_err());
        assert!(resolve_under(base, "a/../../etc").is_err());
        assert!(resolve_under(base, "/var/\0run").is_err());
    }

    #[test]
    fn executables_split_like_shell_words() {
        let base = Path::new("/run/warden");
        assert_eq!(
            read_executable(base, "/usr/lib/dovecot/imap -o 'a b'"),
            Ok(vec![
                "/usr/lib/dovecot/imap".to_owned(),
                "-o".to_owned(),
                "a b".to_owned()
            ])
        );
        assert_eq!(
            read_executable(base, "bin/echo"),
            Ok(vec!["/run/warden/bin/echo".to_owned()])
        );
        assert!(read_executable(base, "").is_err());
        assert!(read_executable(base, "   ").is_err());
        assert!(read_executable(base, "prog 'open").is_err());
        assert!(read_executable(base, "/bin/true\0x").is_err());
        assert!(read_executable(base, "/bin/echo a\0b").is_err());
    }

    #[test]
    fn metrics_listen_is_an_address_or_a_path() {
        let base = Path::new("/run/warden");
        assert_eq!(read_metrics_listen(base, ""), Ok(None));
        assert_eq!(
            read_metrics_listen(base, "127.0.0.1:9100"),
            Ok(Some(MetricsListen::Inet("127.0.0.1:9100".parse().unwrap())))
        );
        assert_eq!(
            read_metrics_listen(base, "metrics"),
            Ok(Some(MetricsListen::Unix("/run/warden/metrics".into())))
        );
        assert!(read_metrics_listen(base, "localhost:x").is_err());
    }
}
